"""A stack's runs of one sample on constant analog input (issue 12): kept
per graph, ``T`` and ``mode`` (``snn.model.network._OneSample``), they call
the compiled kernels directly. Checked here: the same results as the
general path (``Network._run_graph``) for every mode and dtype, a kept plan
made again after the network or a layer changed, results never written by
later calls, and the dispatcher kept where no compiled code can be named
(the JIT off)."""

from __future__ import annotations

import pickle

import numba
import numpy as np
import pytest

import snn
from snn.model import network as netmod
from snn.model.conv import kernel_layout

MODES = (None, "event", "clock", "dense", "auto")


def _stack(rng, dtype=np.float64, pool=False):
    c1 = snn.Conv2d(
        (1, 6, 6),
        4,
        3,
        padding=1,
        neuron=snn.IF(threshold=1.0),
        weight=rng.normal(0.3, 0.6, (4, 1, 3, 3)),
        bias=rng.normal(0.0, 0.05, 4),
    )
    c2 = snn.Conv2d(
        (4, 6, 6), 6, 3, padding=1, neuron=snn.IF(threshold=1.0), weight=rng.normal(0.1, 0.5, (6, 4, 3, 3))
    )
    layers = [c1, c2]
    n = 6 * 36
    if pool:
        layers.append(snn.MaxPool2d((6, 6, 6), 2))
        n = 6 * 9
    fc = snn.Linear(n, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, n)))
    return snn.Network([*layers, fc], dtype=dtype)


def _outcome(result):
    """Everything a result shows, as plain lists."""
    return (
        result.names,
        [
            (t.tptr.tolist(), [t.idx[b, : t.tptr[b, -1]].tolist() for b in range(len(t.tptr))])
            for t in result.trains
        ],
        [
            (c.name, c.mode, *(getattr(c, f).tolist() for f in ("synops", "macs", "updates", "spikes")))
            + (c.dense_updates.tolist(), c.input_events.tolist())
            for c in result.counts
        ],
        result.membrane.tolist(),
        {k: v.tolist() for k, v in result.projection_synops.items()},
    )


def _general(net, x, T, mode=None):
    """The run by the general path (no kept plan)."""
    return net._run_graph(net.graph(), None, x, T, "event", mode, {"v": {}, "i": {}}, False)


def _inputs(rng):
    xs = [rng.uniform(0, 1, (1, 36)) * (rng.random((1, 36)) < p) for p in (0.2, 0.6, 1.0)]
    return [np.zeros((1, 36)), *xs, np.full((1, 36), 3.0)]  # silent, sparse to dense, saturating


def _plans(net):
    return net._one[2]


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pool", [False, True])
def test_one_sample_equals_the_general_path(dtype, pool):
    """Every mode, two lengths, inputs from silent to saturating: what the
    kept plan returns is what the general path returns (paths, spikes,
    counts, membrane, SynOps by projection), over repeated calls."""
    rng = np.random.default_rng(11)
    net = _stack(rng, dtype, pool)
    for T in (4, 9):
        for mode in MODES:
            for x in _inputs(rng) * 2:
                assert _outcome(net.run(analog=x, T=T, mode=mode)) == _outcome(_general(net, x, T, mode))
            assert (T, mode, False) in _plans(net)
    modes = {c.mode for T in (4, 9) for x in _inputs(rng) for c in net.run(analog=x, T=T).counts}
    assert {"event", "clock"} <= modes  # "auto" chose both on these inputs (else the choice is untested)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "change",
    ["weights", "bias", "neuron", "dtype", "layers"],
)
def test_a_kept_plan_follows_the_network(change):
    """After a run keeps a plan, a change to a layer or the network makes
    the next run a fresh network's (the plan is made again)."""
    rng = np.random.default_rng(12)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    before = _outcome(net.run(analog=x, T=6))
    plan = _plans(net)[6, None, False]
    first = net.layers[0]
    if change == "weights":
        first.weight = -first.weight
        first.kernel_weights = kernel_layout(first.weight)
    elif change == "bias":
        first.bias = first.bias + 0.5
    elif change == "neuron":
        net.layers[1].neuron = snn.IF(threshold=0.5)
    elif change == "dtype":
        net.dtype = np.float32
    else:
        net.layers = [net.layers[0], net.layers[1], snn.Linear(6 * 36, 2, snn.IF(threshold=np.inf), seed=1)]
    after = net.run(analog=x, T=6)
    assert _plans(net)[6, None, False] is not plan
    assert _outcome(after) == _outcome(_general(net, x, 6))
    assert _outcome(after) != before  # the change shows (else the test could not fail)


@pytest.mark.usefixtures("warm_kernels")
def test_plans_are_kept_per_length_and_mode():
    """Another ``T`` or ``mode`` has a plan of its own; the same asks keep it."""
    rng = np.random.default_rng(13)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    for T, mode in [(4, None), (5, None), (4, "clock"), (4, None)]:
        assert _outcome(net.run(analog=x, T=T, mode=mode)) == _outcome(_general(net, x, T, mode))
    plans = _plans(net)
    assert set(plans) == {(4, None, False), (5, None, False), (4, "clock", False)}
    kept = plans[4, None, False]
    net.run(analog=x, T=4)
    assert _plans(net)[4, None, False] is kept


@pytest.mark.usefixtures("warm_kernels")
def test_a_result_is_not_written_by_later_calls():
    """Each call returns arrays of its own: a result read after later calls
    (of other inputs, and a lazy membrane or counts read late) is what it
    was; the caller's input is not changed."""
    rng = np.random.default_rng(14)
    net = _stack(rng)
    xs = _inputs(rng)
    kept = [x.copy() for x in xs]
    first = [net.run(analog=x, T=5) for x in xs]
    later = [net.run(analog=x, T=5) for x in reversed(xs)]
    for x, k in zip(xs, kept, strict=True):
        np.testing.assert_array_equal(x, k)
    for result, x in zip(first, xs, strict=True):
        assert _outcome(result) == _outcome(_general(net, x, 5))
    assert _outcome(later[-1]) == _outcome(first[0])


@pytest.mark.usefixtures("warm_kernels")
def test_without_compiled_code_the_dispatcher_runs(monkeypatch):
    """Where no compiled function can be named (the JIT off), a plan keeps
    calling the dispatcher, with the same results; with the JIT on, it
    calls the compiled function after its first call."""
    rng = np.random.default_rng(15)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    want = _outcome(_general(net, x, 7))
    monkeypatch.setattr(netmod, "_compiled", lambda dispatcher, args: None)
    for _ in range(3):
        assert _outcome(net.run(analog=x, T=7, mode="event")) == _outcome(_general(net, x, 7, "event"))
    layer = net.graph().schedule(())[0].layer
    call = layer.calls["one", "event", np.float64, 7][0]
    assert call is netmod._sample_kernel(layer, "event", np.float64, 7)[0]  # the dispatcher
    monkeypatch.undo()
    net = pickle.loads(pickle.dumps(net))  # (no copy carries the calls)
    for _ in range(2):
        assert _outcome(net.run(analog=x, T=7)) == want
    layer = net.graph().schedule(())[0].layer
    if not numba.config.DISABLE_JIT:
        calls = [v for k, v in layer.calls.items() if k[0] == "one"]
        assert calls and all(not isinstance(v[0], numba.core.dispatcher.Dispatcher) for v in calls)


def _spiking_stack(rng, dtype=np.float64, v_init=0.0, conv=False):
    """Spikes of 50 inputs in: a sparse first layer (a lazy start where
    ``v_init`` is below threshold), a fully connected layer and a sparse
    readout; or (``conv``) a convolution, a max-pool gate and a sparse
    readout that may start lazily."""
    readout = snn.SparseLinear.fixed_in_degree(
        16, 5, 4, weight=0.4, neuron=snn.LIF(beta=0.95), seed=2, v_init=v_init
    )
    if conv:
        c1 = snn.Conv2d(
            (2, 5, 5),
            4,
            3,
            padding=1,
            neuron=snn.IF(threshold=1.0),
            weight=rng.normal(0.2, 0.5, (4, 2, 3, 3)),
        )
        return snn.Network([c1, snn.MaxPool2d((4, 5, 5), 2), readout], dtype=dtype)
    s1 = snn.SparseLinear.fixed_in_degree(
        50, 64, 6, weight=lambda g, k: g.normal(0.35, 0.3, k), neuron=snn.LIF(beta=0.9), seed=1, v_init=v_init
    )
    fc = snn.Linear(64, 16, snn.IF(threshold=1.0), weight=rng.normal(0.1, 0.4, (16, 64)))
    return snn.Network([s1, fc, readout], dtype=dtype)


def _spike_inputs(rng, T):
    rasters = [(rng.random((T, 1, 50)) < p).astype(np.uint8) for p in (0.0, 0.02, 0.3, 0.9)]
    return [snn.SpikeTrains.from_raster(r) for r in rasters]


def _general_spiking(net, trains, mode=None):
    return net._run_graph(net.graph(), trains, None, trains.n_steps, "event", mode, {"v": {}, "i": {}}, False)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("v_init", [0.0, 2.0])
@pytest.mark.parametrize("conv", [False, True])
def test_one_sample_of_spikes_equals_the_general_path(dtype, v_init, conv):
    """Spike input of one sample: every mode, inputs from silent to dense
    (raster and trains), a first layer that starts lazily or not (initial
    membranes above threshold), sparse, dense and conv layers and a gate:
    the kept plan returns what the general path returns, membranes
    included, over repeated calls."""
    rng = np.random.default_rng(16)
    net = _spiking_stack(rng, dtype, v_init, conv)
    for T in (5, 12):
        for mode in MODES:
            for trains in _spike_inputs(rng, T) * 2:
                want = _outcome(_general_spiking(net, trains, mode))
                assert _outcome(net.run(spikes=trains, mode=mode)) == want
                raster = np.zeros((T, 1, 50), np.uint8)
                t, _, i = trains.to_events().T
                raster[t, 0, i] = 1
                assert _outcome(net.run(spikes=raster, mode=mode)) == want
            assert (T, mode, True) in _plans(net)
    if conv:  # "auto" chose both on these inputs (else the choice by count is untested)
        assert {"event", "clock"} <= {
            c.mode for x in _spike_inputs(rng, 12) for c in net.run(spikes=x).counts
        }


@pytest.mark.usefixtures("warm_kernels")
def test_a_lazy_start_of_one_sample_completes_its_membrane():
    """A readout that starts lazily (few inputs reach it) reports the
    initial membrane of the neurons no input reached, as the reference does."""
    rng = np.random.default_rng(17)
    layer = snn.SparseLinear.fixed_in_degree(
        30, 400, 2, weight=0.3, neuron=snn.LIF(beta=0.9), seed=3, v_init=rng.uniform(-0.5, 0.5, 400)
    )
    net = snn.Network([layer])
    raster = np.zeros((20, 1, 30), np.uint8)
    raster[3, 0, 7] = 1  # one spike: far below a lazy start's bound of synaptic operations per neuron
    result = net.run(spikes=raster, mode="event")
    call = [v for k, v in net.graph().schedule(())[0].layer.calls.items() if k[0] == "one"][0]
    assert call[4]  # the plan starts lazily (else this test checks nothing new)
    reference = net.run(spikes=raster, backend="reference")
    np.testing.assert_allclose(result.membrane, reference.membrane, rtol=1e-12, atol=1e-12)
    untouched = np.setdiff1d(np.arange(400), layer.cols[layer.rowptr[7] : layer.rowptr[8]])
    np.testing.assert_allclose(result.membrane[0, untouched], layer.v_init[untouched] * 0.9**20, rtol=1e-12)


@pytest.mark.usefixtures("warm_kernels")
def test_spikes_in_arrays_of_another_type_take_the_general_path(monkeypatch):
    """Trains in read-only arrays (numba compiles them as another type than
    the kept calls were made for) are run by the general path, with the same
    result; the caller's arrays are not changed."""
    rng = np.random.default_rng(18)
    net = _spiking_stack(rng)
    trains = _spike_inputs(rng, 8)[2]
    runs = []
    plan_run = netmod._OneSample._run
    monkeypatch.setattr(netmod._OneSample, "_run", lambda self, *a: runs.append(1) or plan_run(self, *a))
    want = _outcome(net.run(spikes=trains))
    assert len(runs) == 1  # writeable trains: the plan (else this test checks nothing)
    tptr, idx = trains.tptr.copy(), trains.idx.copy()
    tptr.flags.writeable = idx.flags.writeable = False
    frozen = snn.SpikeTrains(tptr, idx, trains.n)
    assert _outcome(net.run(spikes=frozen)) == want
    assert len(runs) == 1  # no plan ran them
    np.testing.assert_array_equal(frozen.tptr, trains.tptr)
    np.testing.assert_array_equal(frozen.idx, trains.idx)
