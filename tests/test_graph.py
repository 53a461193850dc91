"""Graph networks (populations, projections with delays, recurrence, Poisson
background): event backend vs the clock-driven reference, counts, the
random generator's statistics, and bad input.

Tolerance rule (as for stacks, ``test_equivalence.py``): with IF neurons and
dyadic weights, biases, thresholds and initial membranes every sum is exact,
so spikes, counts and recorded membranes must be identical. Otherwise the
closed-form leak (``beta**k``) and the step-by-step leak round differently:
spike trains must be identical up to the first step where they differ, and
there every differing neuron's reference membrane must lie within
``TOL[dtype] * scale`` of threshold (scale: the largest of 1, the threshold
and the population's largest membrane magnitude at that step). After a
divergence a recurrent network may follow another trajectory, so nothing
later is compared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TOL, examples
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
import snn_kernels as kernels
from snn.run.reference import run_graph_reference
from snn.run.spiketrains import SpikeTrains
from snn_kernels import rng as krng

DYADIC = np.arange(-16, 17) / 8.0


@st.composite
def neuron_models(draw, exact):
    thr = draw(st.sampled_from([0.5, 1.0, 1.5, 2.0]))
    reset = draw(st.sampled_from(["subtract", "zero", "value", "none"]))
    kw = {"threshold": thr, "reset": reset, "refractory": draw(st.integers(0, 2))}
    if reset == "value":
        kw["v_reset"] = draw(st.sampled_from([-0.5, 0.25]))
    if exact:
        return snn.IF(**kw)
    kind = draw(st.sampled_from(["IF", "LIF", "CubaLIF"]))
    if kind == "IF":
        return snn.IF(**kw)
    beta = draw(st.floats(0.5, 1.0))
    if kind == "LIF":
        return snn.LIF(beta=beta, **kw)
    return snn.CubaLIF(beta=beta, alpha=draw(st.floats(0.3, 0.95)), **kw)


@st.composite
def graphs(draw, exact=False):
    """A random graph with 1-3 neuron populations, maybe an input, random
    projections (self ones with delay >= 1, zero-delay ones only forward)
    and maybe Poisson background; returns (graph, inputs, T, batch)."""
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    dtype = np.float64 if exact else draw(st.sampled_from([np.float64, np.float32]))
    g = snn.Graph(dt=1e-3, dtype=dtype)
    T = draw(st.integers(1, 25))
    batch = draw(st.integers(1, 2))

    def values(n, lo, hi):
        return rng.choice(DYADIC[(DYADIC >= lo) & (DYADIC <= hi)], n) if exact else rng.uniform(lo, hi, n)

    inputs = {}
    if draw(st.booleans()):
        n_in = draw(st.integers(1, 6))
        g.input(n_in, name="in")
        inputs["in"] = (rng.random((T, batch, n_in)) < draw(st.floats(0.0, 0.6))).astype(np.uint8)
    pops = []
    for k in range(draw(st.integers(1, 3))):
        shaped = draw(st.booleans())  # laid out as an image: convolutions may join it
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        n = int(np.prod(shape)) if shaped else draw(st.integers(1, 8))
        nrn = draw(neuron_models(exact))
        bias = values(n, -0.25, 0.5) if draw(st.booleans()) else 0.0
        pops.append(
            g.population(
                shape if shaped else n,
                nrn,
                bias=bias,
                v_init=values(n, -0.5, 0.75),
                name=f"p{k}",
                mode=draw(st.sampled_from(["auto", "event", "clock"])),
            )
        )
    sources = pops + ([g["in"]] if inputs else [])
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.sampled_from(sources))
        b = draw(st.sampled_from(pops))
        forward = a.is_input or pops.index(a) < pops.index(b)
        density = draw(st.floats(0.1, 1.0))
        w = values(a.n * b.n, -1.0, 1.5).reshape(b.n, a.n) * (rng.random((b.n, a.n)) < density)
        n_syn = int(np.count_nonzero(w))
        lo = 0 if forward else 1
        if draw(st.booleans()) and n_syn:
            delay = rng.integers(lo, lo + 3, n_syn)
        else:
            delay = draw(st.integers(lo, lo + 2))
        if not n_syn:
            continue
        window = _conv_window(draw, a.shape, b.shape)
        if window is not None and draw(st.booleans()):  # a convolution, never expanded
            c_out, c_in = b.shape[0], a.shape[0]
            kernel = values(
                c_out * c_in // window["groups"] * window["kernel"][0] * window["kernel"][1], -1, 1.5
            )
            g.conv(
                a,
                b,
                kernel.reshape(c_out, c_in // window["groups"], *window["kernel"]),
                stride=window["stride"],
                padding=window["padding"],
                dilation=window["dilation"],
                groups=window["groups"],
                delay=draw(st.integers(lo, lo + 2)),
            )
        elif draw(st.booleans()):  # dense matrix or CSR with per-synapse weights
            g.connect(a, b, w, delay=delay)
        else:
            post, pre = np.nonzero(w)
            order = np.lexsort((post, pre))
            rowptr = np.concatenate(([0], np.cumsum(np.bincount(pre, minlength=a.n))))
            g.connect(
                a,
                b,
                w[post[order], pre[order]],
                connectivity=(rowptr, post[order]),
                delay=delay if np.ndim(delay) == 0 else delay[order],
            )
    for pop in pops:
        if draw(st.booleans()):
            g.poisson_input(
                pop,
                draw(st.integers(1, 5)),
                draw(st.sampled_from([50.0, 200.0])),
                float(values(1, -1.0, 1.0)[0]),
            )
    return g, inputs, T, batch


def _conv_window(draw, in_shape, out_shape):
    """A convolution window (kernel, stride, padding, dilation per axis, and
    groups) mapping ``in_shape`` onto ``out_shape``, drawn among those that
    do, or None (either population is not an image, or nothing fits)."""
    if in_shape is None or out_shape is None:
        return None
    axes = []
    for size, out in zip(in_shape[1:], out_shape[1:]):
        fits = [
            (k, s, p, d)
            for k in range(1, 4)
            for s in (1, 2)
            for p in range(3)
            for d in (1, 2)
            if size + 2 * p - d * (k - 1) - 1 >= 0 and (size + 2 * p - d * (k - 1) - 1) // s + 1 == out
        ]
        if not fits:
            return None
        axes.append(draw(st.sampled_from(fits)))
    (ky, sy, py, dy), (kx, sx, px, dx) = axes
    c_in, c_out = in_shape[0], out_shape[0]
    groups = draw(st.sampled_from([g for g in (1, 2) if c_in % g == 0 and c_out % g == 0]))
    return {
        "kernel": (ky, kx),
        "stride": (sy, sx),
        "padding": (py, px),
        "dilation": (dy, dx),
        "groups": groups,
    }


def _rasters(result):
    return {name: result.spikes(name) for name in result.names}


@given(graphs(exact=True), st.integers(0, 1000), st.data())
def test_exact_graphs_identical(case, seed, data):
    g, inputs, T, batch = case
    # a recorded population is stepped; the others may run as layers over all steps
    recorded = data.draw(st.lists(st.sampled_from([p for p in g.populations if not p.is_input]), unique=True))
    record = {p: np.arange(p.n) for p in recorded}
    ev = g.run(T, inputs=inputs, batch_size=None if inputs else batch, seed=seed, record_v=record)
    ref = g.run(
        T,
        inputs=inputs,
        batch_size=None if inputs else batch,
        seed=seed,
        record_v=record,
        backend="reference",
    )
    for name in ev.names:
        np.testing.assert_array_equal(ev.spikes(name), ref.spikes(name), err_msg=name)
        for field in ("synops", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(ev.counts[ev.names.index(name)], field),
                getattr(ref.counts[ref.names.index(name)], field),
                err_msg=f"{name} {field}",
            )
    for p in record:
        np.testing.assert_array_equal(ev.v(p.name), ref.v(p.name))


@given(graphs(exact=False), st.integers(0, 1000))
def test_schedule_changes_speed_only(case, seed):
    """Populations run as layers over all steps give the spikes and counts
    they give stepped with the others, bit for bit, in any precision."""
    g, inputs, T, batch = case
    bs = None if inputs else batch
    neurons = [p for p in g.populations if not p.is_input]
    planned = g.run(T, inputs=inputs, batch_size=bs, seed=seed)
    stepped = g.run(T, inputs=inputs, batch_size=bs, seed=seed, record_v={p: [0] for p in neurons})
    assert all(stage.layer is None for stage in g.schedule(neurons))
    for name in planned.names:
        np.testing.assert_array_equal(planned.spikes(name), stepped.spikes(name), err_msg=name)
        for field in ("synops", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(planned.counts[planned.names.index(name)], field),
                getattr(stepped.counts[stepped.names.index(name)], field),
                err_msg=f"{name} {field}",
            )


@given(graphs(exact=False), st.integers(0, 1000), st.data())
def test_chunked_runs_equal_uncut_runs(case, seed, data):
    """``Graph.start``: a run advanced in random chunks computes the uncut
    run's spikes, counts and recorded membranes bit for bit (layer stages
    continue from the state, calendars and history their last chunk left,
    stepped ones from their generators too), and its result after ``t``
    steps is the run of ``t`` steps. A random subset is recorded, so the
    other populations may run as layers. (The same path for both: event and
    clock membranes differ in the last bits, see the tolerance test.)"""
    g, inputs, T, batch = case
    bs = None if inputs else batch
    neurons = [p for p in g.populations if not p.is_input]
    record = {p: np.arange(p.n) for p in neurons if data.draw(st.booleans())}
    mode = data.draw(st.sampled_from(["event", "clock"]))
    whole = g.run(T, inputs=inputs, batch_size=bs, seed=seed, record_v=record, mode=mode)
    sim = g.start(T, inputs=inputs, batch_size=bs, seed=seed, record_v=record, mode=mode)
    assert sim.t == 0
    cut = data.draw(st.integers(1, T))
    partial = sim.advance(cut).result()
    early = g.run(
        cut,
        inputs={k: v[:cut] for k, v in inputs.items()},
        batch_size=bs,
        seed=seed,
        record_v=record,
        mode=mode,
    )
    while sim.t < T:
        sim.advance(data.draw(st.integers(0, T)))
    for other, ran in ((partial, early), (sim.result(), whole)):
        assert other.n_steps == ran.n_steps
        for name in ran.names:
            np.testing.assert_array_equal(other.spikes(name), ran.spikes(name), err_msg=name)
            for field in ("synops", "spikes", "input_events"):
                k = ran.names.index(name)
                np.testing.assert_array_equal(getattr(other.counts[k], field), getattr(ran.counts[k], field))
        for p in record:
            np.testing.assert_array_equal(other.v(p.name), ran.v(p.name))


def test_chunked_run_refusals():
    g = snn.Graph()
    x = g.input((1, 4, 4), name="x")
    h = g.population((1, 4, 4), name="h")
    g.conv(x, h, np.ones((1, 1, 1, 1)), delay=0)
    sim = g.start(5, inputs={x: np.zeros((5, 1, 16))})
    with pytest.raises(ValueError, match="no step"):
        sim.result()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="steps"):
            sim.advance(bad)
    assert sim.advance(99).t == 5 and sim.result().n_steps == 5
    assert sim.advance(3).t == 5 and sim.advance().t == 5  # nothing left to run


@given(st.data())
@settings(max_examples=examples(25))
def test_chunked_layers_and_gates_equal_uncut_runs(data):
    """A convolutional graph with a max-pool gate, a delayed layer, a merge
    and a readout: each population runs as a layer or a gate (nothing is
    recorded), and a run cut into random chunks computes the uncut run's
    spikes and counts bit for bit on each path, float32 and float64, with
    currents, refractory periods and every reset (the state columns of
    steps are shifted between chunks, the propagator grows with the run)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    nrn = data.draw(neuron_models(False))
    g = snn.Graph(dtype=dtype)
    x = g.input((2, 6, 6), name="x")
    h = g.population((3, 6, 6), nrn, bias=float(rng.uniform(-0.1, 0.2)), name="h")
    gate = g.max_pool(h, 3, 2, 1, name="gate")
    d = g.population(gate.shape, nrn, name="d")  # a delayed one-projection layer
    o = g.population(4, data.draw(neuron_models(False)), bias=0.05, name="o")
    g.conv(x, h, rng.uniform(-0.5, 1.0, (3, 2, 3, 3)), padding=1, delay=0)
    g.conv(gate, d, rng.uniform(-0.5, 1.5, (3, 3, 1, 1)), delay=data.draw(st.integers(0, 3)))
    g.connect(gate, o, rng.uniform(-0.5, 1.0, (4, gate.n)), delay=0)
    g.connect(d, o, rng.uniform(-0.5, 1.0, (4, d.n)), delay=1)  # o: a merge, a layer (stepped in "event")
    T = data.draw(st.integers(1, 30))
    spikes = (rng.random((T, 2, 72)) < data.draw(st.floats(0.05, 0.6))).astype(np.uint8)
    mode = data.draw(st.sampled_from(["event", "clock"]))
    whole = g.run(T, inputs={x: spikes}, mode=mode)
    assert [st_.layer is not None for st_ in g.schedule()] == [True, True, True, True]
    sim = g.start(T, inputs={x: spikes}, mode=mode)
    while sim.t < T:
        sim.advance(data.draw(st.integers(1, 7)))
    cut = sim.result()
    for k, name in enumerate(whole.names):
        np.testing.assert_array_equal(cut.spikes(name), whole.spikes(name), err_msg=name)
        for field in ("synops", "updates", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(cut.counts[k], field), getattr(whole.counts[k], field), err_msg=(name, field)
            )
        assert cut.counts[k].mode == whole.counts[k].mode


@pytest.mark.parametrize("kind", ["csr", "conv"])
@pytest.mark.parametrize("mode", ["event", "clock", "dense"])
def test_layer_runner_resumes_on_every_path(kind, mode):
    """``snn.run.paths._run_layer`` continued chunk by chunk from the state it
    left (step columns shifted) equals one uncut call on every path, the
    dense (GEMM) one included, for a current-based refractory population."""
    from snn.run.paths import _run_layer
    from snn.run.schedule import _join, _ProjectionLayer, _slice
    from snn_kernels import REF, T_LAST

    rng = np.random.default_rng(3)
    g = snn.Graph()
    x = g.input((2, 5, 5), name="x")
    h = g.population((2, 5, 5), snn.CubaLIF(beta=0.9, alpha=0.7, refractory=2), name="h")
    if kind == "conv":
        proj = g.conv(x, h, rng.uniform(-0.3, 1.0, (2, 2, 3, 3)), padding=1, delay=0)
    else:
        proj = g.connect(x, h, rng.uniform(-0.3, 1.0, (50, 50)) * (rng.random((50, 50)) < 0.3), delay=0)
    layer = _ProjectionLayer(h, proj)
    source = snn.SpikeTrains.from_raster((rng.random((40, 3, 50)) < 0.3).astype(np.uint8))
    bias = np.full((1, 1), 0.02)
    whole, _, kc, _ = _run_layer(layer, source, bias, None, mode, 40, np.float64, False)
    outs, counts, state, t = [], 0, None, 0
    for steps in (1, 7, 13, 19):
        out, state, c, _ = _run_layer(
            layer, _slice(source, t, t + steps), bias, None, mode, steps, np.float64, False, state, t
        )
        state[..., T_LAST] -= steps
        state[..., REF] -= steps
        outs.append(out)
        counts, t = counts + c, t + steps
    joined = _join(outs)
    np.testing.assert_array_equal(joined.to_raster(), whole.to_raster())
    np.testing.assert_array_equal(counts[:, :3], kc[:, :3])


def test_schedule_runs_populations_outside_cycles_as_layers():
    g = snn.Graph()
    x = g.input(4, name="x")
    a = g.population(3, snn.IF(), name="a")
    b = g.population(3, snn.IF(), name="b")
    c = g.population(2, snn.IF(), name="c")
    d = g.population(2, snn.IF(), name="d")
    e = g.population(2, snn.IF(), bias=0.3, name="e")  # bias only: a layer of no input
    g.connect(x, a, np.ones((3, 4)), delay=0)
    g.connect(a, b, np.ones((3, 3)), delay=0)
    g.connect(b, a, np.ones((3, 3)), delay=1)  # a and b: a cycle, stepped together
    g.connect(b, c, np.ones((2, 3)), delay=2)  # one projection, outside the cycle: a layer
    g.connect(c, d, np.ones((2, 2)), delay=0)
    g.connect(a, d, np.ones((2, 3)), delay=0)  # a merge of sources outside its set: a layer too
    g.connect(e, d, np.ones((2, 2)), delay=1)
    plan = g.schedule()
    kinds = {tuple(stage.names): stage.layer is not None for stage in plan}
    assert kinds == {("a", "b"): False, ("c",): True, ("d",): True, ("e",): True}
    position = {name: k for k, stage in enumerate(plan) for name in stage.names}
    assert all(position[p.source.name] <= position[p.target.name] for p in g.projections if p.source is not x)
    assert sorted((s.name, d) for s, d in plan[position["d"]].inputs) == [("a", 0), ("c", 0), ("e", 1)]
    recorded = g.schedule(["d"])  # recorded: stepped, with its sources as input populations
    assert sorted(p.name for p in recorded[position["d"]].plan.order if p.is_input) == ["a", "c", "e"]
    assert [stage.layer is not None for stage in g.schedule(["c", "e"])] == [False, False, False, True]
    spikes = (np.random.default_rng(0).random((12, 2, 4)) < 0.5).astype(np.uint8)
    ref = g.run(12, inputs={"x": spikes}, backend="reference")
    for mode in ("event", "clock"):
        ev = g.run(12, inputs={"x": spikes}, mode=mode)
        assert ev.counts[ev.names.index("c")].mode == mode
        for name in ev.names:
            np.testing.assert_array_equal(ev.spikes(name), ref.spikes(name), err_msg=name)
            np.testing.assert_array_equal(
                ev.counts[ev.names.index(name)].synops, ref.counts[ref.names.index(name)].synops
            )


@given(graphs(exact=False), st.integers(0, 1000))
def test_graphs_agree_within_tolerance(case, seed):
    g, inputs, T, batch = case
    bs = None if inputs else batch
    ev = g.run(T, inputs=inputs, batch_size=bs, seed=seed)
    given_trains, batch = g._inputs(inputs, T, bs)
    traces = {}
    ref = run_graph_reference(g, T, given_trains, batch, seed, [], traces)
    ev_r, ref_r = _rasters(ev), _rasters(ref)
    order = [p for p in g._order() if not p.is_input]
    diverged = False
    for t in range(T):
        differ = {p.name: np.argwhere(ev_r[p.name][t] != ref_r[p.name][t]) for p in order}
        if not any(len(d) for d in differ.values()):
            continue
        for p in order:
            v = traces[p.name][t]
            thr = p.neuron.threshold
            for b, j in differ[p.name]:
                scale = max(1.0, abs(thr), float(np.abs(v[b]).max()))
                assert abs(v[b, j] - thr) <= TOL[g.dtype] * scale, (
                    f"{p.name} neuron {j} sample {b} step {t}: reference v={v[b, j]!r}, threshold {thr}"
                )
        diverged = True
        break
    if not diverged:
        for k in range(len(ev.names)):
            for field in ("synops", "spikes", "input_events"):
                np.testing.assert_array_equal(getattr(ev.counts[k], field), getattr(ref.counts[k], field))


def test_feed_forward_graph_equals_network():
    """A stack as a graph with zero-delay projections = the same stack as a Network."""
    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.6, (20, 12)).astype(np.float32)
    w2 = rng.normal(0, 0.6, (5, 20)).astype(np.float32)
    nrn = snn.LIF(beta=0.875, threshold=1.0)
    spikes = (rng.random((30, 3, 12)) < 0.3).astype(np.uint8)
    net = snn.Network([snn.Linear(12, 20, nrn, weight=w1, bias=0.05), snn.Linear(20, 5, nrn, weight=w2)])
    g = snn.Graph()
    x = g.input(12, name="x")
    h = g.population(20, nrn, bias=0.05, name="h")
    o = g.population(5, nrn, name="o")
    g.connect(x, h, w1, delay=0)
    g.connect(h, o, w2, delay=0)
    a, b = net.run(spikes), g.run(30, inputs={x: spikes})
    np.testing.assert_array_equal(a.spikes(0), b.spikes("h"))
    np.testing.assert_array_equal(a.spikes(1), b.spikes("o"))
    np.testing.assert_array_equal(a.counts[1].synops, b.counts[2].synops)


def test_delays_shift_arrival_exactly():
    """One input spike at step 2 through delays 1..4 reaches IF neurons at 3..6."""
    g = snn.Graph()
    x = g.input(1, name="x")
    out = g.population(4, snn.IF(threshold=1.0), name="out")
    g.connect(x, out, 1.0, connectivity=(np.array([0, 4]), np.arange(4)), delay=np.array([1, 2, 3, 4]))
    spikes = np.zeros((10, 1, 1), np.uint8)
    spikes[2] = 1
    r = g.run(10, inputs={x: spikes}, mode="event")  # (auto sweeps so small a population)
    fired = np.argwhere(r.spikes("out")[:, 0])
    assert fired.tolist() == [[3, 0], [4, 1], [5, 2], [6, 3]]
    assert r.counts[1].synops.tolist() == [4] and r.counts[1].updates.tolist() == [4]


def test_silent_population_costs_nothing():
    g = snn.Graph()
    a = g.population(50, snn.LIF(beta=0.9), name="a")
    b = g.population(50, snn.LIF(beta=0.9), name="b")
    g.connect(a, b, 0.5, connectivity=snn.fixed_probability(50, 50, 0.2, seed=0))
    r = g.run(200)
    assert r.total("updates") == 0 and r.total("synops") == 0 and r.total("spikes") == 0


def test_history_grows_when_everyone_fires_every_step():
    g = snn.Graph()
    g.population(300, snn.IF(threshold=1.0), bias=1.0, name="a")
    r = g.run(400)
    assert r.total("spikes") == 300 * 400
    assert r.spikes("a").all()


def test_threads_and_progress_do_not_change_results():
    g = snn.models.brunel(400, seed=1)
    a = g.run(300, seed=5, batch_size=3, progress=False, n_threads=1)
    b = g.run(300, seed=5, batch_size=3, progress=True, n_threads=2)
    for name in a.names:
        np.testing.assert_array_equal(a.spikes(name), b.spikes(name))
    c = g.run(300, seed=6, batch_size=1, progress=False)
    assert not np.array_equal(a.spikes("exc")[:, :1], c.spikes("exc"))


def test_brunel_statistics_small():
    """BRUNEL-100 at N = 2000 for 0.3 s: asynchronous irregular activity
    (rates and CV in a broad band: a regression check, not the benchmark)."""
    r = snn.models.brunel(2000, seed=0).run(3000, seed=0)
    assert 4.0 < r.rate_hz() < 25.0
    assert 0.4 < r.isi_cv() < 1.2
    assert r.counts[0].input_events.sum() > 0


# -- the random generator ------------------------------------------------------


def _xoshiro_reference(state, n):
    s = [int(x) for x in state]
    mask = (1 << 64) - 1

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & mask

    out = []
    for _ in range(n):
        out.append(rotl((s[1] * 5) & mask, 7) * 9 & mask)
        t = (s[1] << 17) & mask
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return out


def test_xoshiro_matches_reference_implementation():
    state = kernels.seed_state(7, 3)
    expected = _xoshiro_reference(state, 20)
    got = [int(krng.next_u64(state)) for _ in range(20)]
    assert got == expected
    assert not np.array_equal(kernels.seed_state(7, 3), kernels.seed_state(7, 4))


def test_seed_states_share_no_words():
    """Neighbouring seeds, streams and substreams start from unrelated
    states: no 64-bit word appears twice among them (a linear start gave
    seed s + 1 three of seed s's four words)."""
    states = [
        kernels.seed_state(seed, stream, sub) for seed in range(40) for stream in range(5) for sub in range(3)
    ]
    words = np.concatenate(states)
    assert len(np.unique(words)) == len(words)


@pytest.mark.parametrize("lam", [0.3, 4.0, 12.0, 600.0])
def test_poisson_sampler_statistics(lam):
    """Mean within 5 standard errors, variance/mean within 5 standard errors
    of 1 (for n draws the dispersion index has s.e. about sqrt(2 / n))."""
    n = 20000
    draws = _draw_poisson(kernels.seed_state(11, 0), lam, n)
    assert abs(draws.mean() - lam) < 5 * math.sqrt(lam / n)
    assert abs(draws.var() / lam - 1.0) < 5 * math.sqrt(2.0 / n)


def _draw_poisson(state, lam, n):
    out = np.zeros(n, np.int64)
    for k in range(n):
        out[k] = krng.poisson(state, lam)
    return out


def test_background_drive_statistics():
    """Events per neuron over T steps ~ Poisson(n_trains * rate * dt * T):
    a membrane-only population (IF, threshold inf) counts them exactly."""
    g = snn.Graph(dt=1e-3)
    pop = g.population(500, snn.IF(threshold=math.inf), name="p")
    g.poisson_input(pop, n_trains=4, rate=25.0, weight=1.0)
    T = 400
    r = g.run(T, seed=2, record_v={pop: np.arange(500)})
    counts = r.v("p")[-1, 0]
    lam = 4 * 25.0 * 1e-3 * T
    assert np.all(counts == np.round(counts))
    assert abs(counts.mean() - lam) < 5 * math.sqrt(lam / 500)
    assert abs(counts.var() / lam - 1.0) < 5 * math.sqrt(2.0 / 500)
    assert int(r.counts[0].input_events[0]) == int(counts.sum())


@pytest.mark.parametrize("mode", ["clock", "event"])
def test_background_events_are_below_s_draws_rejections_included(mode):
    """The graph kernel draws each background event's neuron with its own
    copy of ``rng.below`` (the generator inlined): the events of each step
    are those ``kernels.background_step`` (``below`` itself, as the reference
    backend replays them) puts on the same stream. On a million neurons the
    bounded draw's rejection (probability 2**32 % n / 2**32 = 2.3e-4 per
    event, ~34 of the 150,000 events here) is taken too."""
    n, T, seed = 1_000_000, 3, 11
    g = snn.Graph(dt=1e-3)
    pop = g.population(n, snn.IF(threshold=math.inf), name="p")
    source = g.poisson_input(pop, n_trains=1, rate=50.0, weight=1.0)
    r = g.run(T, seed=seed, record_v={pop: np.arange(n)}, mode=mode)
    state = kernels.sample_states(seed, 1, [0])[0, 0].copy()
    want = np.zeros(n)
    for t in range(T):
        kernels.background_step(state, source.events_per_step(g.dt) * n, 1.0, want)
        np.testing.assert_array_equal(r.v("p")[t, 0], want, err_msg=f"step {t}")
    assert int(r.counts[0].input_events[0]) == int(want.sum())


# -- bad input -----------------------------------------------------------------


def _two_pops():
    g = snn.Graph()
    return g, g.population(3, name="a"), g.population(2, name="b")


@pytest.mark.parametrize(
    "delay, match",
    [
        (0, "delay < 1 on a recurrent projection"),
        (-1, "delay must be >= 0"),
        (1.5, "integer number of steps"),
        ("1", "integer number of steps"),
    ],
)
def test_bad_delays_on_self_projection(delay, match):
    g, a, _ = _two_pops()
    with pytest.raises(ValueError, match=match):
        g.connect(a, a, np.ones((3, 3)), delay=delay)


def test_zero_delay_cycle_is_refused():
    g, a, b = _two_pops()
    g.connect(a, b, np.ones((2, 3)), delay=0)
    with pytest.raises(ValueError, match="cycle"):
        g.connect(b, a, np.ones((3, 2)), delay=0)
    assert len(g.projections) == 1  # the refused projection is not kept


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_population_size(n):
    with pytest.raises(ValueError, match="population size"):
        snn.Graph().population(n)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(bad):
    g, a, b = _two_pops()
    w = np.ones((2, 3))
    w[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        g.connect(a, b, w)
    with pytest.raises(ValueError, match="NaN or inf"):
        g.connect(a, b, bad, connectivity=(np.array([0, 1, 1, 2]), np.array([0, 1])))


@pytest.mark.parametrize(
    "rows, match",
    [
        ((np.array([0, 1, 2, 3]), np.array([0, 1, 2])), "cols must index targets"),
        ((np.array([0, 1, 2, 3]), np.array([0, -1, 1])), "cols must index targets"),
        ((np.array([0, 2, 1, 3]), np.array([0, 1, 1])), "non-decreasing"),
        ((np.array([0, 1, 3]), np.array([0, 1, 1])), "shape"),
        ((np.array([0, 1, 2, 4]), np.array([0, 1, 1])), "cols must be 1-D with rowptr"),
        ((np.array([0.0, 1, 2, 3]), np.array([0, 1, 1])), "integer arrays"),
    ],
)
def test_bad_csr(rows, match):
    g, a, b = _two_pops()
    with pytest.raises((ValueError, TypeError), match=match):
        g.connect(a, b, 1.0, connectivity=rows)


def test_shapes_that_do_not_chain():
    g, a, b = _two_pops()
    with pytest.raises(ValueError, match=r"\[n_target, n_source\] = \[2, 3\]"):
        g.connect(a, b, np.ones((3, 2)))
    with pytest.raises(ValueError, match="one value per synapse"):
        g.connect(a, b, np.ones(5), connectivity=(np.array([0, 1, 1, 2]), np.array([0, 1])))
    with pytest.raises(ValueError, match="one value per synapse"):
        g.connect(a, b, 1.0, connectivity=(np.array([0, 1, 1, 2]), np.array([0, 1])), delay=[1, 2, 3])


def test_bad_run_inputs():
    g = snn.Graph()
    x = g.input(4, name="x")
    p = g.population(2, name="p")
    g.connect(x, p, np.ones((2, 4)), delay=0)
    with pytest.raises(ValueError, match="no spikes given"):
        g.run(5)
    with pytest.raises(ValueError, match=r"must be spikes \[T=5, batch, 4\]"):
        g.run(5, inputs={x: np.zeros((5, 1, 3), np.uint8)})
    with pytest.raises(ValueError, match="only 0 and 1"):
        g.run(5, inputs={x: np.full((5, 1, 4), 2)})
    with pytest.raises(ValueError, match="record_v"):
        g.run(5, inputs={x: np.zeros((5, 1, 4))}, record_v={p: [2]})
    with pytest.raises(ValueError, match="T must be"):
        g.run(0, inputs={x: np.zeros((5, 1, 4))})
    with pytest.raises(ValueError, match="seed"):
        g.run(5, inputs={x: np.zeros((5, 1, 4))}, seed=-1)
    with pytest.raises(ValueError, match="inputs receive no synapses"):
        g.connect(p, x, np.ones((4, 2)))
    with pytest.raises(ValueError, match="population of this graph"):
        g.connect(snn.Graph().population(2), p, np.ones((2, 2)))
    with pytest.raises(ValueError, match="already exists"):
        g.population(3, name="p")


def test_bad_poisson_input():
    g, a, _ = _two_pops()
    with pytest.raises(ValueError, match="rate must be >= 0"):
        g.poisson_input(a, 10, -1.0, 0.5)
    with pytest.raises(ValueError, match="n_trains"):
        g.poisson_input(a, 0, 5.0, 0.5)
    with pytest.raises(ValueError, match="NaN or inf"):
        g.poisson_input(a, 10, 5.0, np.nan)
    with pytest.raises(ValueError, match="dt must be"):
        snn.Graph(dt=0.0)


def test_record_current_matches_reference_and_hand_computation():
    """record_i: the synaptic current of CubaLIF neurons, i <- alpha*i + bias + input."""
    g = snn.Graph()
    x = g.input(1, name="x")
    pop = g.population(2, snn.CubaLIF(beta=0.5, alpha=0.75, threshold=100.0), bias=[0.0, 0.25], name="c")
    g.connect(x, pop, np.array([[1.0], [2.0]]), delay=0)
    spikes = np.zeros((6, 1, 1), np.uint8)
    spikes[[1, 4]] = 1
    ev = g.run(6, inputs={x: spikes}, record_i={pop: [0, 1]}, record_v={pop: [0]}, mode="event")
    ref = g.run(6, inputs={x: spikes}, record_i={pop: [0, 1]}, record_v={pop: [0]}, backend="reference")
    i, expected = np.zeros(2), []
    for t in range(6):
        i = 0.75 * i + np.array([0.0, 0.25]) + spikes[t, 0, 0] * np.array([1.0, 2.0])
        expected.append(i.copy())
    np.testing.assert_allclose(ev.i("c")[:, 0], np.array(expected), rtol=1e-12)
    np.testing.assert_allclose(ref.i("c"), ev.i("c"), rtol=1e-12)
    np.testing.assert_allclose(ref.v("c"), ev.v("c"), rtol=1e-12)
    with pytest.raises(ValueError, match="has no synaptic current"):
        snn.models.brunel(100).run(5, record_i={"exc": [0]})


# -- convolutions in graphs ---------------------------------------------------------


def _dyadic_kernel(rng, shape):
    return (rng.integers(-4, 5, shape) / 8).astype(np.float32)


def test_conv_graph_equals_conv_stack():
    """A chain of convolutions as a graph (delay 0) gives the stack's spikes
    and SynOps exactly."""
    rng = np.random.default_rng(3)
    w1, w2 = _dyadic_kernel(rng, (4, 2, 3, 3)), _dyadic_kernel(rng, (6, 2, 2, 2))
    net = snn.Network(
        [
            snn.Conv2d((2, 5, 5), 4, 3, snn.IF(), padding=1, weight=w1),
            snn.Conv2d((4, 5, 5), 6, 2, snn.IF(threshold=0.5), stride=2, groups=2, weight=w2),
        ]
    )
    g = snn.Graph()
    x = g.input((2, 5, 5), name="x")
    h = g.population((4, 5, 5), snn.IF(), v_init=0.0, name="h", mode="event")
    o = g.population((6, 2, 2), snn.IF(threshold=0.5), v_init=0.0, name="o", mode="event")
    g.conv(x, h, w1, padding=1, delay=0)
    g.conv(h, o, w2, stride=2, groups=2, delay=0)
    spikes = snn.bernoulli(np.full((2, 50), 0.4), T=12, seed=0)
    stack, graph = net.run(spikes, mode="event"), g.run(12, inputs={x: spikes})
    for k, name in enumerate(("h", "o")):
        np.testing.assert_array_equal(graph.spikes(name), stack.spikes(k))
        np.testing.assert_array_equal(graph.counts[k + 1].synops, stack.counts[k].synops)


@pytest.mark.parametrize("window", [(2, None, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_max_pool_gate_equals_the_stack_and_the_reference(window):
    """A gate with torch's windows (overlapping and padded ones too) between
    a convolution and a dense layer: the stack's spikes and counts, and the
    reference's, exactly."""
    kernel, stride, padding = window
    rng = np.random.default_rng(4)
    w1 = _dyadic_kernel(rng, (3, 2, 3, 3))
    pool = snn.MaxPool2d((3, 6, 6), kernel, stride, padding)
    w2 = rng.choice(DYADIC[DYADIC != 0], (4, pool.n_out))  # a graph keeps non-zero weights as synapses
    net = snn.Network(
        [
            snn.Conv2d((2, 6, 6), 3, 3, snn.IF(), padding=1, weight=w1),
            pool,
            snn.Linear(pool.n_out, 4, snn.IF(), weight=w2),
        ]
    )
    g = snn.Graph()
    x = g.input((2, 6, 6), name="x")
    h = g.population((3, 6, 6), snn.IF(), v_init=0.0, name="h")
    gate = g.max_pool(h, kernel, stride, padding, name="gate")
    o = g.population(4, snn.IF(), v_init=0.0, name="o")
    g.conv(x, h, w1, padding=1, delay=0)
    g.connect(gate, o, w2, delay=0)
    assert gate.shape == pool.out_shape and not gate.is_input and not gate.has_neurons
    spikes = snn.bernoulli(np.full((3, 72), 0.3), T=15, seed=1)
    stack, graph = net.run(spikes, mode="event"), g.run(15, inputs={x: spikes})
    ref = g.run(15, inputs={x: spikes}, backend="reference")
    assert graph.counts[2].mode == "gate"
    for k, name in enumerate(("h", "gate", "o")):
        for other in (stack.spikes(k), ref.spikes(name)):
            np.testing.assert_array_equal(graph.spikes(name), other, err_msg=name)
        for field in ("synops", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(graph.counts[k + 1], field), getattr(stack.counts[k], field), err_msg=name
            )
            np.testing.assert_array_equal(
                getattr(graph.counts[k + 1], field), getattr(ref.counts[k + 1], field), err_msg=name
            )
    np.testing.assert_array_equal(graph.counts[2].updates, stack.counts[1].updates)  # gate evaluations


def test_max_pool_gate_refusals():
    g = snn.Graph()
    x = g.input((1, 4, 4), name="x")
    flat = g.population(16, name="flat")
    h = g.population((1, 4, 4), name="h")
    g.conv(x, h, np.ones((1, 1, 1, 1)), delay=0)
    with pytest.raises(ValueError, match="shape"):
        g.max_pool(flat, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        g.max_pool(h, 5)
    gate = g.max_pool(h, 2, name="gate")
    with pytest.raises(ValueError, match="max-pool gate"):
        g.connect(x, gate, np.ones((4, 16)))
    for bad in ({"drive": {gate: np.zeros((1, 4))}}, {"record_v": {gate: [0]}}):
        with pytest.raises(ValueError, match="neuron populations"):
            g.run(3, inputs={x: np.zeros((3, 1, 16))}, **bad)
    with pytest.raises(ValueError, match="neuron population"):
        g.poisson_input(gate, 1, 10.0, 1.0)
    assert g.run(3, inputs={x: np.ones((3, 1, 16))}).spikes("gate").shape == (3, 1, 4)
    loop = g.population((1, 2, 2), name="loop")
    g.conv(gate, loop, np.ones((1, 1, 1, 1)), delay=0)
    g.connect(loop, h, np.ones((16, 4)), delay=1)  # h -> gate -> loop -> h: a gate in a cycle
    with pytest.raises(ValueError, match="gate.*in a cycle"):
        g.run(3, inputs={x: np.zeros((3, 1, 16))})


@pytest.mark.parametrize("mode", ["event", "clock"])
def test_merges_and_convolutional_recurrence_exact(mode):
    """Two projections into one population (a residual merge: a convolution
    and a CSR projection) and a convolution of a population onto itself
    (delay 1): bit-identical to the reference, SynOps equal to source spikes
    times fan-out (counted independently here)."""
    rng = np.random.default_rng(7)
    g = snn.Graph()
    x = g.input((2, 6, 6), name="x")
    h = g.population((4, 6, 6), snn.IF(), v_init=0.25, name="h", mode=mode)
    o = g.population((3, 3, 3), snn.LIF(beta=0.75), name="o", mode=mode)
    down = g.conv(h, o, _dyadic_kernel(rng, (3, 4, 3, 3)), stride=2, padding=1, delay=0)
    skip = g.connect(x, o, np.full((27, 72), 0.125, np.float32), delay=2)
    up = g.conv(x, h, _dyadic_kernel(rng, (4, 2, 3, 3)), padding=1, delay=0)
    loop = g.conv(h, h, _dyadic_kernel(rng, (4, 2, 3, 3)), padding=1, groups=2, delay=1)
    spikes = snn.bernoulli(np.full((2, 72), 0.3), T=16, seed=1)
    record = {h: np.arange(h.n), o: np.arange(o.n)}
    ev = g.run(16, inputs={x: spikes}, record_v=record)
    ref = g.run(16, inputs={x: spikes}, record_v=record, backend="reference")
    for name in ("h", "o"):
        np.testing.assert_array_equal(ev.spikes(name), ref.spikes(name))
        np.testing.assert_array_equal(ev.v(name), ref.v(name))
    assert ev.spikes("h").any() and ev.spikes("o").any()

    def delivered(proj, src):
        counts = ev.spikes(src)[: 16 - proj.delays[0]].sum(axis=0)  # [batch, n_source]
        return counts @ proj.fan_out() if proj.kind == "conv" else counts @ np.diff(proj.groups[0][1])

    expect = {
        "h": delivered(up, "x") + delivered(loop, "h"),
        "o": delivered(down, "h") + delivered(skip, "x"),
    }
    for name, synops in expect.items():
        np.testing.assert_array_equal(ev.counts[ev.names.index(name)].synops, synops)


def test_conv_refusals():
    g = snn.Graph()
    x, flat = g.input((1, 4, 4), name="x"), g.input(16, name="flat")
    h = g.population((2, 4, 4), name="h")
    w = np.ones((2, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"made with a shape \(C, H, W\)"):
        g.conv(flat, h, w, padding=1)
    with pytest.raises(ValueError, match=r"maps 'x' \(1, 4, 4\) to \(2, 2, 2\), but target 'h' has shape"):
        g.conv(x, h, w)
    with pytest.raises(ValueError, match="a convolution has one delay"):
        g.conv(x, h, w, padding=1, delay=[1, 2])
    with pytest.raises(ValueError, match="delay < 1 on a recurrent projection"):
        g.conv(h, h, np.ones((2, 2, 3, 3)), padding=1, delay=0)
    with pytest.raises(ValueError, match=r"weight must have shape \(2, 1, 3, 3\)"):
        g.conv(x, h, np.ones((2, 2, 3, 3)), padding=1)
    with pytest.raises(ValueError, match="population's shape must be"):
        g.population((2, 4), name="bad")
    g.conv(x, h, w, padding=1, delay=0)
    o = g.population((2, 4, 4), name="o")
    g.conv(h, o, np.ones((2, 2, 3, 3)), padding=1, delay=0)
    with pytest.raises(ValueError, match="zero-delay projections form a cycle"):
        g.conv(o, h, np.ones((2, 2, 3, 3)), padding=1, delay=0)
    assert len(g.projections) == 2


# -- constant input currents (drive) ---------------------------------------------------


@pytest.mark.parametrize("mode", ["event", "clock"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_drive_is_a_per_sample_bias(mode, dtype):
    """A population driven by a constant current per sample runs as the
    stack runs constant analog input (the first layer's ``W x`` as a bias):
    the same spikes and membranes; the reference agrees bit for bit."""
    rng = np.random.default_rng(5)
    w1, w2 = (rng.integers(-8, 9, (6, 4)) / 8).astype(np.float32), (rng.integers(-8, 9, (3, 6)) / 8)
    x = rng.integers(0, 9, (3, 4)) / 8
    net = snn.Network(
        [snn.Linear(4, 6, snn.IF(), weight=w1, bias=0.125), snn.Linear(6, 3, snn.IF(), weight=w2)], dtype
    )
    g = snn.Graph(dtype=dtype)
    h = g.population(6, snn.IF(), bias=0.125, v_init=0.0, name="h", mode=mode)
    o = g.population(3, snn.IF(), v_init=0.0, name="o", mode=mode)
    g.connect(h, o, w2, delay=0)
    drive = {"h": x @ w1.T.astype(np.float64)}
    stack = net.run(analog=x, T=10, mode=mode)
    for backend in ("event", "reference"):
        result = g.run(10, drive=drive, backend=backend, record_v={o: [0, 1, 2]})
        np.testing.assert_array_equal(result.spikes("h"), stack.spikes(0))
        np.testing.assert_array_equal(result.spikes("o"), stack.spikes(1))
        np.testing.assert_array_equal(result.v("o")[-1], stack.membrane)
    assert stack.spikes(1).any()


def test_drive_refusals():
    g = snn.Graph()
    inp = g.input(2, name="in")
    p = g.population(3, name="p")
    g.connect(inp, p, np.ones((3, 2)), delay=0)
    spikes = np.zeros((4, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="drive keys must be neuron populations"):
        g.run(4, inputs={inp: spikes}, drive={inp: np.ones((2, 2))})
    # a name the graph does not have: refused as a bad argument, not a KeyError (found by test_fuzz)
    with pytest.raises(ValueError, match="drive keys must be neuron populations of this graph, got 'nope'"):
        g.run(4, inputs={inp: spikes}, drive={"nope": np.ones((2, 3))})
    with pytest.raises(ValueError, match="inputs keys must be input populations of this graph, got 'nope'"):
        g.run(4, inputs={"nope": spikes})
    with pytest.raises(
        ValueError, match="record_v keys must be neuron populations of this graph, got 'nope'"
    ):
        g.run(4, inputs={inp: spikes}, record_v={"nope": [0]})
    with pytest.raises(ValueError, match=r"drive\['p'\] must be \[batch, 3\]"):
        g.run(4, inputs={inp: spikes}, drive={p: np.ones((2, 2))})
    with pytest.raises(ValueError, match="drives have 3 samples but the run has 2"):
        g.run(4, inputs={inp: spikes}, drive={p: np.ones((3, 3))})
    with pytest.raises(ValueError, match="NaN or inf"):
        g.run(4, inputs={inp: spikes}, drive={p: np.full((2, 3), np.nan)})
    g32 = snn.Graph(dtype=np.float32)
    q = g32.population(3, name="q")
    with pytest.raises(ValueError, match="too large for float32"):
        g32.run(4, drive={q: np.full((1, 3), 1e39)})
    assert g32.run(4, drive={q: np.full((2, 3), 0.5)}).batch_size == 2


@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 6), st.integers(1, 3))
def test_concatenated_trains_are_the_union_sorted_within_steps(seed, batch, T, n_parts):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_parts)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    rasters = [(rng.random((T, batch, n)) < rng.random()).astype(np.uint8) for n in sizes]
    parts = [(SpikeTrains.from_raster(r), int(o)) for r, o in zip(rasters, offsets, strict=False)]
    order = rng.permutation(n_parts)  # any order: spikes follow the parts' order within a step
    merged = SpikeTrains.concatenate([parts[k] for k in order], int(offsets[-1]))
    np.testing.assert_array_equal(merged.to_raster(), np.concatenate(rasters, axis=2))
    position = np.empty(n_parts, np.int64)
    position[order] = np.arange(n_parts)  # where each part comes within a step
    for b in range(batch):
        for t in range(T):
            step = merged.idx[b, merged.tptr[b, t] : merged.tptr[b, t + 1]]
            key = position[np.searchsorted(offsets, step, side="right") - 1] * offsets[-1] + step
            assert np.all(np.diff(key) > 0)


@pytest.mark.parametrize("mode", ["clock", "event"])
def test_recurrent_network_with_background_exact(mode):
    """A small BRUNEL-like network (two populations joined both ways with
    delay 1, Poisson background) in exact arithmetic: stepped clock-driven
    (membranes swept in a contiguous row, ``GraphState.vclk``, written back
    to the state at the end of each kernel call) or event-driven, whole or
    cut into chunks, it gives the reference's spikes and recorded membranes
    bit for bit."""
    from snn.model.connectivity import fixed_probability

    neuron = snn.LIF(beta=0.5, threshold=1.0, reset="value", v_reset=0.25)
    g = snn.Graph(dt=1e-3)
    rng = np.random.default_rng(3)
    exc = g.population(80, neuron, v_init=rng.integers(0, 4, 80) / 4, name="exc")
    inh = g.population(20, neuron, v_init=rng.integers(0, 4, 20) / 4, name="inh")
    for k, (source, weight) in enumerate(((exc, 0.25), (inh, -0.5))):
        for m, target in enumerate((exc, inh)):
            rows = fixed_probability(source.n, target.n, 0.1, seed=2 * k + m)
            g.connect(source, target, weight, connectivity=rows, delay=1)
    for target in (exc, inh):
        g.poisson_input(target, n_trains=10, rate=40.0, weight=0.5)
    record = {exc: np.arange(0, 80, 7), inh: np.arange(20)}
    ref = g.run(60, batch_size=2, seed=5, record_v=record, backend="reference")
    whole = g.run(60, batch_size=2, seed=5, record_v=record, mode=mode)
    sim = g.start(60, batch_size=2, seed=5, record_v=record, mode=mode)
    for cut in (7, 1, 30, 22):
        sim.advance(cut)
    for run in (whole, sim.result()):
        assert run.total("spikes") > 0
        for name in ("exc", "inh"):
            np.testing.assert_array_equal(run.spikes(name), ref.spikes(name), err_msg=name)
            np.testing.assert_array_equal(run.v(name), ref.v(name), err_msg=name)


_ROWS = st.tuples(st.integers(0, 9), st.integers(0, 5), st.integers(-1, 6))  # first target, length, broken at


@given(st.lists(_ROWS, max_size=8), st.integers(1, 4))
def test_consecutive_rows_found(rows, chunk):
    """``plan_tables`` delivers a CSR projection as one contiguous add per
    spike only if every row is consecutive targets: its chunked check
    agrees with a row-by-row one (rows empty, of one target, broken at
    any place; chunks of any size)."""
    from snn_kernels.graph import _consecutive_rows

    cols, ptr = [], [0]
    for first, length, broken in rows:
        row = list(range(first, first + length))
        if 0 <= broken < length:
            row[broken] += 2
        cols += row
        ptr.append(len(cols))
    cols, ptr = np.array(cols, np.int32), np.array(ptr, np.int64)
    naive = all(np.all(np.diff(cols[a:b]) == 1) for a, b in zip(ptr[:-1], ptr[1:]))
    assert _consecutive_rows(ptr, cols, chunk) == naive
