"""What a run keeps between calls (issue 12, batch 1): a stack's graph and
schedule are made once and reused while the network is unchanged, and a
run of layers only (``snn.run.schedule._run_layers``) skips the chunked
machinery of :class:`snn.run.schedule.Simulation`. Checked here: a change
to the network after a run is honoured by the next run (it equals the run
of a fresh copy), the short path computes bit for bit what the
:class:`Simulation` computes, and a result is not touched by later runs."""

from __future__ import annotations

import copy
import pickle
import types

import numpy as np
import pytest
from conftest import build_network, examples, net_specs, run_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from snn.model.conv import kernel_layout
from snn.run import schedule as sched


def _conv_stack(rng, pool="avg", dtype=np.float64):
    """Conv - Conv - pool - Linear on 1x6x6 input, converted-network style
    (IF, subtract reset, random bias and initial membrane)."""
    c1 = snn.Conv2d(
        (1, 6, 6),
        4,
        3,
        padding=1,
        neuron=snn.IF(threshold=1.0),
        weight=rng.normal(0, 0.6, (4, 1, 3, 3)),
        bias=rng.normal(0, 0.05, 4),
        v_init=0.5,
    )
    c2 = snn.Conv2d(
        (4, 6, 6),
        5,
        3,
        padding=1,
        neuron=snn.IF(threshold=1.0),
        weight=rng.normal(0, 0.3, (5, 4, 3, 3)),
        v_init=0.5,
    )
    if pool == "avg":
        p = snn.AvgPool2d((5, 6, 6), 2, neuron=snn.IF(threshold=1.0), v_init=0.5)
    else:
        p = snn.MaxPool2d((5, 6, 6), 2)
    fc = snn.Linear(45, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, 45)))
    return snn.Network([c1, c2, p, fc], dtype=dtype)


def _same(a: snn.RunResult, b: snn.RunResult):
    assert a.names == b.names
    assert a.dt == b.dt
    assert [c.mode for c in a.counts] == [c.mode for c in b.counts]
    for k in range(len(a.names)):
        np.testing.assert_array_equal(a.trains[k].tptr, b.trains[k].tptr)
        for s, used in enumerate(a.trains[k].tptr[:, -1]):  # (past a sample's spikes: not written)
            np.testing.assert_array_equal(a.trains[k].idx[s, :used], b.trains[k].idx[s, :used])
        for field in ("synops", "macs", "updates", "dense_updates", "spikes", "input_events"):
            np.testing.assert_array_equal(getattr(a.counts[k], field), getattr(b.counts[k], field))
    if a.membrane is None:
        assert b.membrane is None
    else:
        np.testing.assert_array_equal(a.membrane, b.membrane)
    assert a.projection_synops.keys() == b.projection_synops.keys()
    for name, value in a.projection_synops.items():
        np.testing.assert_array_equal(value, b.projection_synops[name])


def _fresh(net: snn.Network) -> snn.Network:
    """A copy of ``net`` that has never run (pickles leave the graph out)."""
    copy = pickle.loads(pickle.dumps(net))
    assert copy._graph is None
    return copy


def _simulated(net, **kwargs) -> snn.RunResult:
    """The run through :class:`Simulation` (start, then advance to the end
    in one chunk, as ``run`` did before the short path; a run cut in chunks
    has the same spikes, in another order within a step on the event path)."""
    return net.start(**kwargs).advance().result()


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "change",
    ["bias", "v_init", "neuron", "mode", "replace_layer", "drop_layer", "append_layer", "dtype", "pool"],
)
def test_a_change_after_a_run_is_honoured_by_the_next_run(change):
    rng = np.random.default_rng(7)
    net = _conv_stack(rng)
    x = rng.random((2, 36))
    before = net.run(analog=x, T=12)
    graph = net.graph()
    assert net.run(analog=x, T=12).names == before.names and net.graph() is graph  # kept while unchanged
    if change == "bias":
        net.layers[1].bias = net.layers[1].bias + 0.3
    elif change == "v_init":
        net.layers[0].v_init = 0.0
    elif change == "neuron":
        net.layers[1].neuron = snn.IF(threshold=0.5)
    elif change == "mode":
        net.layers[0].mode = "event"
    elif change == "replace_layer":
        net.layers[3] = snn.Linear(45, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, 45)))
    elif change == "drop_layer":
        del net.layers[3]
    elif change == "append_layer":
        net.layers.append(snn.Linear(3, 2, snn.IF(threshold=0.25), weight=rng.normal(0, 1.0, (2, 3))))
    elif change == "dtype":
        net.dtype = np.float32
    elif change == "pool":
        net.layers[2] = snn.MaxPool2d((5, 6, 6), 2)
    after = net.run(analog=x, T=12)
    assert net.graph() is not graph
    _same(after, _fresh(net).run(analog=x, T=12))
    ref = _fresh(net).run(analog=x, T=12, backend="reference")
    np.testing.assert_array_equal(after.spikes(-1), ref.spikes(-1))
    if change in ("bias", "v_init", "neuron"):
        assert any(not np.array_equal(after.spikes(k), before.spikes(k)) for k in range(len(net.layers))), (
            "the change should change some spikes"
        )


@pytest.mark.usefixtures("warm_kernels")
def test_an_assignment_is_counted_even_of_the_same_value():
    """A layer assigned an attribute, even an equal one, gets a new graph:
    the key counts assignments, it does not compare values."""
    rng = np.random.default_rng(8)
    net = _conv_stack(rng)
    graph = net.graph()
    net.layers[3].name = net.layers[3].name
    assert net.graph() is not graph


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", [None, "event", "clock", "dense"])
def test_the_short_path_equals_the_simulation(pool, dtype, mode):
    rng = np.random.default_rng(9)
    net = _conv_stack(rng, pool, dtype)
    if pool == "max" and mode == "dense":
        mode = "clock"
    for batch, T in ((1, 1), (1, 7), (3, 16)):
        x = rng.random((batch, 36)) * (rng.random((batch, 36)) < 0.7)
        spikes = (rng.random((T, batch, 36)) < 0.3).astype(np.uint8)
        assert net.graph().schedule().layers_only
        _same(net.run(analog=x, T=T, mode=mode), _simulated(net, analog=x, T=T, mode=mode))
        _same(net.run(spikes, mode=mode), _simulated(net, T=T, spikes=spikes, mode=mode))


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(40), deadline=None)
@given(spec=net_specs(input_kinds=("spikes", "analog_const")), mode=st.sampled_from([None, "event", "clock"]))
def test_the_short_path_equals_the_simulation_on_random_stacks(spec, mode):
    net = build_network(spec)
    kwargs = run_kwargs(spec)
    _same(net.run(**kwargs, mode=mode), _simulated(net, **{"T": spec.T, **kwargs}, mode=mode))
    # a graph's run (its input population listed, dt kept) likewise
    graph = net.graph()
    name = graph.populations[0].name
    if "spikes" in kwargs:
        inputs, drive = {name: kwargs["spikes"]}, None
    else:
        inputs = {name: np.zeros((spec.T, len(spec.x), net.n_in), np.uint8)}
        drive = {net.layer_name(0): net._analog_drive(np.asarray(spec.x, np.float64))[0]}
    short = graph.run(spec.T, inputs=inputs, drive=drive, mode=mode)
    sim = graph.start(spec.T, inputs=inputs, drive=drive, mode=mode).advance().result()
    _same(short, sim)


@pytest.mark.usefixtures("warm_kernels")
def test_a_result_is_not_touched_by_later_runs():
    rng = np.random.default_rng(10)
    net = _conv_stack(rng)
    x = rng.random((1, 36))
    first = net.run(analog=x, T=9)
    membrane = first.membrane.copy()
    kept = [(t.tptr.copy(), t.idx.copy()) for t in first.trains]
    counts = [c.spikes.copy() for c in first.counts]
    for _ in range(3):
        net.run(analog=rng.random((1, 36)) * 3, T=9)
    np.testing.assert_array_equal(first.membrane, membrane)
    for (tptr, idx), t in zip(kept, first.trains, strict=True):
        np.testing.assert_array_equal(t.tptr, tptr)
        np.testing.assert_array_equal(t.idx, idx)
    for c, spikes in zip(first.counts, counts, strict=True):
        np.testing.assert_array_equal(c.spikes, spikes)


@pytest.mark.usefixtures("warm_kernels")
def test_a_lazy_membrane_read_after_later_runs():
    """The membrane of a result is computed when first read: from that
    run's own state, whatever ran since."""
    rng = np.random.default_rng(11)
    net = _conv_stack(rng)
    xs = [rng.random((1, 36)) * s for s in (1, 2, 3)]
    lazy = [net.run(analog=x, T=5) for x in xs]
    for x, result in zip(xs, lazy, strict=True):
        np.testing.assert_array_equal(result.membrane, net.run(analog=x, T=5).membrane)


def test_schedules_are_marked_layers_only_when_they_are():
    g = snn.Graph()
    x = g.input(4)
    a = g.population(3, snn.IF(), name="a")
    b = g.population(3, snn.IF(), name="b")
    g.connect(x, a, np.ones((3, 4)), delay=0)
    g.connect(a, b, np.ones((3, 3)), delay=0)
    assert g.schedule().layers_only
    c = g.population(2, snn.IF(), name="c")
    g.connect(b, c, np.ones((2, 3)), delay=2)  # a layer reading a delayed source: Simulation
    assert not g.schedule().layers_only
    g.connect(c, c, np.eye(2), delay=1)  # a cycle: stepped
    assert not g.schedule().layers_only
    assert sched.Schedule(g, g.schedule()).stage_of == g.schedule().stage_of


def _layer_run(layer, source, mode, dtype):
    """``snn.run.paths._run_layer`` of ``layer`` from a new state: spikes as a raster, final state, counts."""
    from snn.run.paths import _run_layer

    out, state, kc, _ = _run_layer(
        layer, source, layer.bias_row(dtype)[0], None, mode, source.n_steps, dtype, False
    )
    return out.to_raster(), state, kc


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", ["event", "clock", "dense"])
def test_what_a_layer_keeps_between_runs_follows_its_weights_neuron_and_dtype(mode):
    """``_run_layer`` keeps per layer what depends on it alone (a
    convolution's delivery tables, by dtype; its neuron's constants and
    propagator): a layer given new weights or a new neuron, or run in
    another dtype, runs as a fresh copy of it does (a copy keeps nothing)."""
    rng = np.random.default_rng(12)
    layer = snn.Conv2d(
        (2, 5, 5),
        3,
        3,
        padding=1,
        neuron=snn.LIF(beta=0.9),
        weight=rng.normal(0.3, 0.4, (3, 2, 3, 3)),
        bias=0.05,
    )
    source = snn.SpikeTrains.from_raster((rng.random((9, 2, 50)) < 0.3).astype(np.uint8))
    last = None
    for dtype, change in (
        (np.float64, None),
        (np.float32, None),
        (np.float64, None),
        (np.float64, "weight"),
        (np.float32, "weight"),
        (np.float64, "neuron"),
    ):
        if change == "weight" and mode == "dense":  # (its matrix is the layer's own cache: not ours)
            continue
        if change == "weight":
            layer.weight = -layer.weight
            layer.kernel_weights = kernel_layout(layer.weight)
        elif change == "neuron":
            layer.neuron = snn.IF(threshold=0.5)
        ran = _layer_run(layer, source, mode, dtype)
        fresh = _layer_run(copy.deepcopy(layer), source, mode, dtype)
        for a, b in zip(ran, fresh, strict=True):
            np.testing.assert_array_equal(a, b)
        if change is not None:  # the change shows (else the test could not fail)
            assert not np.array_equal(ran[0], last[0])
        last = ran


def _check_driven_mode(kind, bias, n_steps, threshold):
    """``_choose_driven_mode`` chooses what the cost model's full formula chooses."""
    from snn.run import paths

    batch, n = bias.shape
    layer = types.SimpleNamespace(kind=kind, n_out=n, neuron=snn.IF(threshold=threshold))
    positive = bias > 0
    spikes = min(float(np.sum(bias, where=positive)) / batch / threshold * n_steps, n_steps * n)
    event_ns = (np.count_nonzero(positive) / batch + spikes) * paths._NS_PER_EVENT_UPDATE[kind][True]
    expected = "event" if event_ns <= n_steps * n * paths._NS_PER_CLOCK_UPDATE else "clock"
    assert paths._choose_driven_mode(layer, bias, n_steps) == expected


@settings(max_examples=examples(200), deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(["dense", "conv", "csr"]),
    n_steps=st.integers(1, 64),
    threshold=st.sampled_from([0.25, 1.0, 3.0, np.inf]),
)
def test_the_driven_mode_is_the_cost_models_choice(data, kind, n_steps, threshold):
    """``_choose_driven_mode`` skips summing the drive once the neurons it
    schedules alone make the event path dearer: the same choice."""
    batch, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 40))
    values = st.sampled_from([-1.0, 0.0, 1e-3, 0.05, 0.5, 2.0])
    bias = np.array(data.draw(st.lists(values, min_size=batch * n, max_size=batch * n)))
    _check_driven_mode(kind, bias.reshape(batch, n), n_steps, threshold)


def test_the_driven_mode_at_a_tie():
    """Event and clock paths of equal cost: the event path, as the cost
    model breaks ties (scheduled neurons alone cost what the sweep costs)."""
    _check_driven_mode("dense", np.array([[0.5, 0.0]]), 1, np.inf)
    _check_driven_mode("dense", np.array([[0.5, 0.0]]), 1, 1.0)
