"""Merges run as layers (issue 11, item 2): a population with several
incoming projections (or one of several delays), all from outside its
strongly connected set, with no Poisson background and not recorded, runs
over all steps: each projection's spikes delivered event by event into its
currents (``kernels.merge``), then the clock sweep (``kernels.clock_layer``).

Checked here: the delivery kernels against slow, obviously correct twins;
random merge graphs against the clock-driven reference (bit-identical in
exact arithmetic: IF neurons, dyadic weights), against the stepped path
(the old schedule: the merges recorded), chunked runs (delays across chunk
boundaries, inputs fed chunk by chunk, epochs) against uncut ones, SynOps
per projection against an independent count, and a converted residual
network's readout and spikes against its stepped run."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
import snn_kernels as kernels
from snn.model.conv import conv_dense_rows, conv_geometry, kernel_layout
from snn.run.schedule import _MergeLayer
from snn.run.spiketrains import SpikeTrains
from snn_kernels.conv import delivery_weights, run_tables

DYADIC = np.arange(-16, 17) / 8.0


def _merge_names(g):
    return {s.names[0] for s in g.schedule() if isinstance(s.layer, _MergeLayer)}


# -- the delivery kernels against their slow twins ----------------------------------------------------


def _trains(rng, T, batch, n, p):
    return SpikeTrains.from_raster((rng.random((T, batch, n)) < p).astype(np.uint8))


def _naive_currents(trains, dense, fan_out, dtype):
    """``currents[b, t] = spikes[b, t] @ dense`` one weight at a time, and
    SynOps = spikes x fan-out: the definition."""
    raster = trains.to_raster()  # [T, B, n_in]
    T, batch, _ = raster.shape
    out = np.zeros((batch, T, dense.shape[1]), dtype)
    synops = np.zeros(batch, np.int64)
    for b in range(batch):
        for t in range(T):
            for i in np.flatnonzero(raster[t, b]):
                synops[b] += fan_out[i]
                for j in range(dense.shape[1]):
                    out[b, t, j] += dtype(dense[i, j])
    return out, synops


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_csr_and_dense_delivery_match_naive(dtype, seed):
    rng = np.random.default_rng(seed)
    n_in, n, T, batch = rng.integers(1, 9), rng.integers(1, 9), rng.integers(1, 7), rng.integers(1, 4)
    trains = _trains(rng, T, batch, n_in, rng.uniform(0, 0.7))
    w = rng.choice(DYADIC, (n_in, n)) * (rng.random((n_in, n)) < 0.6)
    pre, post = np.nonzero(w)
    rowptr = np.concatenate(([0], np.cumsum(np.bincount(pre, minlength=n_in)))).astype(np.int64)
    cols, weights = post.astype(np.int32), w[pre, post].astype(np.float32)
    want, want_syn = _naive_currents(trains, w, np.diff(rowptr), dtype)
    got, syn = np.zeros((batch, T, n), dtype), np.zeros(batch, np.int64)
    kernels.csr_currents(trains.tptr, trains.idx, rowptr, cols, weights, got, syn)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(syn, want_syn)
    rows = w.astype(np.float32)
    want, want_syn = _naive_currents(trains, rows, np.full(n_in, n), dtype)
    got, syn = np.zeros((batch, T, n), dtype), np.zeros(batch, np.int64)
    kernels.dense_currents(trains.tptr, trains.idx, rows, got, syn)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(syn, want_syn)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(8))
def test_conv_delivery_matches_naive(dtype, seed):
    """One convolution folding each step's sums, and two sharing them (the
    first leaves them, the second folds), against the expanded matrices."""
    rng = np.random.default_rng(seed)
    groups = int(rng.choice([1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 4))
    h, w = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride, pad, dil = int(rng.integers(1, 3)), int(rng.integers(0, 2)), int(rng.integers(1, 3))
    if h + 2 * pad - dil * (kh - 1) < 1 or w + 2 * pad - dil * (kw - 1) < 1:
        pad = max(dil * (kh - 1), dil * (kw - 1))
    geoms, kernels_, denses = [], [], []
    for _ in range(2):
        geom = conv_geometry((c_in, h, w), c_out, (kh, kw), stride, pad, dil, groups)
        kernel = rng.choice(DYADIC, (c_out, c_in // groups, kh, kw)).astype(np.float32)
        geoms.append(geom)
        kernels_.append(kernel)
        denses.append(conv_dense_rows(geom, kernel, np.float64))
    n_in, n = c_in * h * w, denses[0].shape[1]
    T, batch = int(rng.integers(1, 6)), int(rng.integers(1, 3))
    trains = [_trains(rng, T, batch, n_in, rng.uniform(0, 0.5)) for _ in range(2)]
    fan_out = np.count_nonzero(conv_dense_rows(geoms[0], np.ones_like(kernels_[0])), axis=1)

    def deliver(k, sums, fold, currents, synops, shared=False):
        weights = np.empty(kernels_[k].size, np.float32)
        delivery_weights(geoms[k], kernel_layout(kernels_[k]), weights)
        tables = run_tables(geoms[k])
        trains_k = trains[k]
        kernels.conv_currents(
            trains_k.tptr, trains_k.idx, geoms[k], weights, *tables, sums, fold, currents, synops, shared
        )

    one, syn = np.zeros((batch, T, n), dtype), np.zeros(batch, np.int64)
    deliver(0, np.zeros((batch, 1, n), dtype), True, one, syn)
    want, want_syn = _naive_currents(trains[0], denses[0], fan_out, dtype)
    np.testing.assert_array_equal(one, want)
    np.testing.assert_array_equal(syn, want_syn)
    two, syn2 = np.zeros((batch, T, n), dtype), np.zeros(batch, np.int64)
    sums = np.zeros((batch, T, n), dtype)
    deliver(0, sums, False, two, syn2, True)
    assert not two.any()
    deliver(1, sums, True, two, syn2, True)  # folds every step, spikes of its own or not (T = 1 too)
    assert not sums.any()
    other, other_syn = _naive_currents(trains[1], denses[1], fan_out, dtype)
    np.testing.assert_array_equal(two, want + other)
    np.testing.assert_array_equal(syn2, want_syn + other_syn)


@pytest.mark.parametrize("seed", range(6))
def test_conv_delivery_takes_spikes_in_any_order(seed):
    """Spikes of a step in any order (a gate emits them unsorted), jumping
    between channels and groups and back: the delivery finds each spike's
    channel (it keeps the last one's) and sums what the expanded matrix
    gives (dyadic weights: exact in any order)."""
    rng = np.random.default_rng(seed)
    groups, c_in, c_out, h, w = 2, 4, 6, 5, 4
    geom = conv_geometry((c_in, h, w), c_out, (3, 3), 1, 1, 1, groups)
    kernel = rng.choice(DYADIC, (c_out, c_in // groups, 3, 3)).astype(np.float32)
    dense = conv_dense_rows(geom, kernel, np.float64)
    n_in, n = c_in * h * w, dense.shape[1]
    T, batch = 5, 2
    trains = _trains(rng, T, batch, n_in, 0.4)
    for b in range(batch):  # shuffle the spikes of every step
        for t in range(T):
            a, z = trains.tptr[b, t], trains.tptr[b, t + 1]
            trains.idx[b, a:z] = rng.permutation(trains.idx[b, a:z])
    weights = np.empty(kernel.size, np.float32)
    delivery_weights(geom, kernel_layout(kernel), weights)
    got, syn = np.zeros((batch, T, n)), np.zeros(batch, np.int64)
    kernels.conv_currents(
        trains.tptr, trains.idx, geom, weights, *run_tables(geom), np.zeros((batch, 1, n)), True, got, syn
    )
    fan_out = np.count_nonzero(conv_dense_rows(geom, np.ones_like(kernel)), axis=1)
    want, want_syn = _naive_currents(trains, dense, fan_out, np.float64)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(syn, want_syn)


# -- random merge graphs -----------------------------------------------------------------------------


@st.composite
def merge_graphs(draw, exact=True, plain=False):
    """A feed-forward graph of images: an input, 2-4 populations each fed by
    1-3 projections from earlier ones (convolutions, CSR with per-synapse or
    shared weights, one-to-one, fully connected; zero or positive delays,
    sometimes per synapse), maybe a self-projection or Poisson background
    on one (which keeps it stepped); returns ``(graph, inputs, T, batch)``.
    ``plain``: IF and LIF neurons without refractory period only (whose
    clock step the graph kernel computes with the reference's arithmetic;
    it steps a synaptic current or a refractory neuron in the closed form's
    order, so that membranes may differ in the last bit)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dtype = np.float64 if exact else draw(st.sampled_from([np.float32, np.float64]))
    g = snn.Graph(dt=1e-3, dtype=dtype)
    T, batch = draw(st.integers(1, 20)), draw(st.integers(1, 3))

    def values(n, lo, hi):
        return rng.choice(DYADIC[(DYADIC >= lo) & (DYADIC <= hi)], n) if exact else rng.uniform(lo, hi, n)

    def neuron():
        thr = float(draw(st.sampled_from([0.5, 1.0, 1.5])))
        reset = draw(st.sampled_from(["subtract", "zero", "value", "none"]))
        kw = {"threshold": thr, "reset": reset, "refractory": 0 if plain else draw(st.integers(0, 2))}
        if reset == "value":
            kw["v_reset"] = -0.25
        kind = "IF" if exact else draw(st.sampled_from(["IF", "LIF"] if plain else ["IF", "LIF", "CubaLIF"]))
        if kind == "IF":
            return snn.IF(**kw)
        if kind == "LIF":
            return snn.LIF(beta=draw(st.floats(0.5, 1.0)), **kw)
        return snn.CubaLIF(beta=draw(st.floats(0.5, 1.0)), alpha=draw(st.floats(0.3, 0.95)), **kw)

    x = g.input((2, 4, 4), name="x")
    inputs = {"x": (rng.random((T, batch, x.n)) < draw(st.floats(0.05, 0.6))).astype(np.uint8)}
    pops = [x]
    special = draw(st.sampled_from(["none", "self", "poisson", "event"]))
    n_pops = draw(st.integers(2, 4))
    for k in range(n_pops):
        shape = (draw(st.integers(1, 3)), *draw(st.sampled_from([(4, 4), (2, 2)])))
        n = int(np.prod(shape))
        mode = "event" if special == "event" and k == 0 else draw(st.sampled_from(["auto", "clock", "dense"]))
        pop = g.population(
            shape,
            neuron(),
            bias=values(n, -0.25, 0.375) if draw(st.booleans()) else 0.0,
            v_init=values(n, -0.5, 0.75),
            name=f"p{k}",
            mode=mode,
        )
        for j in range(draw(st.integers(1, 3))):
            src = draw(st.sampled_from(pops))
            delay = draw(st.integers(0, 3))
            kind = draw(st.sampled_from(["conv", "csr", "shared", "one", "dense", "per_synapse"]))
            name = f"{src.name}->{pop.name}#{j}"
            if kind == "conv" and src.shape[1] >= shape[1]:
                (_, h, w), (_, h_out, _) = src.shape, shape
                stride = h // h_out
                kh = draw(st.sampled_from([1, 3])) if stride == 1 else 3
                groups = 2 if src.shape[0] % 2 == 0 and shape[0] % 2 == 0 and draw(st.booleans()) else 1
                kernel = values(shape[0] * src.shape[0] // groups * kh * kh, -1.0, 1.5)
                kernel = kernel.reshape(shape[0], src.shape[0] // groups, kh, kh)
                g.conv(
                    src, pop, kernel, stride=stride, padding=kh // 2, groups=groups, delay=delay, name=name
                )
                continue
            if kind in ("one", "conv") and src.n == n:
                g.connect(
                    src, pop, 0.5, connectivity=(np.arange(n + 1), np.arange(n)), delay=delay, name=name
                )
                continue
            w = values(n * src.n, -1.0, 1.5).reshape(n, src.n) * (rng.random((n, src.n)) < 0.5)
            if kind == "dense":
                g.connect(src, pop, w, connectivity="all", delay=delay, name=name)
                continue
            post, pre = np.nonzero(w)
            if not len(pre):
                continue
            order = np.lexsort((post, pre))
            rowptr = np.concatenate(([0], np.cumsum(np.bincount(pre, minlength=src.n))))
            d = rng.integers(0, 4, len(pre)) if kind == "per_synapse" else delay
            weight = 0.25 if kind == "shared" else w[post[order], pre[order]]
            g.connect(src, pop, weight, connectivity=(rowptr, post[order]), delay=d, name=name)
        if k == 0 and special == "self":
            g.connect(pop, pop, values(n * n, -0.5, 0.5).reshape(n, n), delay=1, name="loop")
        if k == 0 and special == "poisson":
            g.poisson_input(pop, 2, 200.0, 0.5)
        pops.append(pop)
    return g, inputs, T, batch


def _same(a, b, names=None, fields=("synops", "updates", "spikes", "input_events")):
    for name in names or a.names:
        np.testing.assert_array_equal(a.spikes(name), b.spikes(name), err_msg=name)
        ka, kb = a.counts[a.names.index(name)], b.counts[b.names.index(name)]
        for field in fields:
            np.testing.assert_array_equal(getattr(ka, field), getattr(kb, field), err_msg=f"{name} {field}")


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(40))
@given(merge_graphs(exact=True), st.integers(0, 100))
def test_merge_layers_equal_the_reference_exactly(case, seed):
    """Exact arithmetic: spikes, SynOps, spikes and input events, and the
    readout's final membrane, bit for bit; state updates T * n (the clock
    path's count) for a merge layer."""
    g, inputs, T, _ = case
    ours = g.run(T, inputs=inputs, seed=seed)
    ref = g.run(T, inputs=inputs, seed=seed, backend="reference")
    _same(ours, ref, fields=("synops", "spikes", "input_events"))
    np.testing.assert_array_equal(ours.membrane, ref.membrane)
    for name in _merge_names(g):
        c = ours.counts[ours.names.index(name)]
        assert c.mode == "clock"
        np.testing.assert_array_equal(c.updates, T * g[name].n)


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(40))
@given(merge_graphs(exact=False, plain=True), st.integers(0, 100))
def test_merge_layers_equal_the_stepped_path(case, seed):
    """Any precision, IF and LIF neurons: a merge run as a layer gives the
    spikes, counts and membrane of the same population stepped on the clock
    path (the old schedule: recorded, it is stepped) bit for bit, its sums
    made in the same order."""
    g, inputs, T, _ = case
    merges = _merge_names(g)
    layers = g.run(T, inputs=inputs, seed=seed, mode="clock")
    stepped = g.run(T, inputs=inputs, seed=seed, mode="clock", record_v={name: [0] for name in merges})
    assert not _merge_names_of(g.schedule(merges))
    _same(layers, stepped)
    for name in merges:
        assert layers.counts[layers.names.index(name)].mode == "clock"
    if g.readout in merges:
        np.testing.assert_array_equal(layers.membrane, stepped.membrane)


def _merge_names_of(plan):
    return {s.names[0] for s in plan if isinstance(s.layer, _MergeLayer)}


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(30))
@given(merge_graphs(exact=False), st.integers(0, 100), st.data())
def test_chunked_merge_layers_equal_uncut_runs(case, seed, data):
    """Cut into random chunks (delays reaching back over chunk boundaries,
    the input fed chunk by chunk): spikes, counts and final membrane equal
    the uncut run's; SynOps per projection equal the source's delivered
    spikes times their fan-out, counted here."""
    g, inputs, T, _ = case
    mode = data.draw(st.sampled_from(["clock", "event"]))  # (auto: a layer's path chosen on the first chunk)
    whole = g.run(T, inputs=inputs, seed=seed, mode=mode)
    fed = data.draw(st.booleans())
    sim = g.start(T, inputs=None if fed else inputs, batch_size=inputs["x"].shape[1], seed=seed, mode=mode)
    while sim.t < T:
        t = sim.t
        steps = min(data.draw(st.integers(1, max(1, T // 2))), T - t)
        sim.advance(steps, inputs={"x": inputs["x"][t : t + steps]} if fed else None)
    cut = sim.result()
    _same(cut, whole)
    np.testing.assert_array_equal(cut.membrane, whole.membrane)
    merges = _merge_names(g) if mode != "event" else set()  # (a run in mode "event" steps them)
    assert bool(sim._proj_synops) == any(p.target.name in merges for p in g.projections)
    by_name = {proj.name: proj for proj in g.projections}
    for proj in g.projections:
        if proj.target.name not in merges:
            continue
        spikes = whole.spikes(proj.source.name)  # [T, B, n]
        for d, *rest in [(proj.delay, None)] if proj.kind == "conv" else proj.groups:
            fan_out = proj.fan_out() if proj.kind == "conv" else np.diff(rest[0])
            want = spikes[: max(T - d, 0)].sum(axis=0, dtype=np.int64) @ fan_out
            np.testing.assert_array_equal(sim._proj_synops[proj.name, d], want, err_msg=f"{proj.name} {d}")
    for name in merges:
        k = whole.names.index(name)
        per_projection = sum(c for (p, _), c in sim._proj_synops.items() if by_name[p].target.name == name)
        np.testing.assert_array_equal(whole.counts[k].synops, per_projection)


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(15))
@given(merge_graphs(exact=False), st.integers(0, 100), st.integers(1, 6), st.data())
def test_epochs_and_kept_samples(case, seed, epoch, data):
    """A run settled every ``epoch`` steps computes the same however it is
    cut; ``keep(rows)`` (an early exit) goes on with those samples only,
    as a run of them alone does. (Mode clock: ``"auto"`` chooses a layer's
    path on its first chunk, so its counts of updates depend on the cut.)"""
    g, inputs, T, batch = case
    one = g.start(T, inputs=inputs, seed=seed, epoch=epoch, mode="clock").advance().result()
    sim = g.start(T, inputs=inputs, seed=seed, epoch=epoch, mode="clock")
    while sim.t < T:
        sim.advance(data.draw(st.integers(1, T)))
    _same(sim.result(), one)
    if batch < 2 or g.sources:
        return
    rows = [batch - 1, 0]
    kept = g.start(T, inputs=inputs, mode="clock").advance(T // 2).keep(rows).advance().result()
    alone = g.run(T, inputs={"x": inputs["x"][:, rows]}, mode="clock")
    _same(kept, alone)


def test_one_step_chunks_fold_every_convolution():
    """Regression: a merge of two convolutions run in chunks of one step
    folded its shared sums only on steps where its last convolution had
    spikes of its own, so the input of the others was lost (found by
    hypothesis: a refractory IF merge with a convolution of delay 2)."""
    g = snn.Graph()
    x = g.input((1, 3, 3), name="x")
    m = g.population((1, 3, 3), snn.IF(threshold=1.5), name="m")
    g.conv(x, m, np.full((1, 1, 3, 3), 2.0), padding=1, delay=0, name="now")
    g.conv(x, m, np.full((1, 1, 1, 1), 0.25), delay=2, name="later")
    assert [type(stage.layer).__name__ for stage in g.schedule()][-1] == "_MergeLayer"
    spikes = np.zeros((4, 1, 9), np.uint8)
    spikes[1:, 0, 4] = 1  # the delayed convolution has nothing to deliver at step 1
    whole = g.run(4, inputs={"x": spikes})
    sim = g.start(4, inputs={"x": spikes})
    for _ in range(4):
        sim.advance(1)
    ref = g.run(4, inputs={"x": spikes}, backend="reference")
    assert ref.spikes("m")[1].any()  # step 1: the first convolution alone makes neurons fire
    for run in (whole, sim.result()):
        np.testing.assert_array_equal(run.spikes("m"), ref.spikes("m"))


# -- the schedule -------------------------------------------------------------------------------------


def test_which_merges_run_as_layers():
    g = snn.Graph()
    x = g.input(4, name="x")
    a = g.population(3, snn.IF(), name="a")
    b = g.population(3, snn.IF(), name="b")
    m = g.population(2, snn.IF(), name="m")  # two projections from outside: a layer
    d = g.population(2, snn.IF(), name="d")  # one projection of two delays: a layer
    s = g.population(2, snn.IF(), name="s")  # a self-projection: stepped
    p = g.population(2, snn.IF(), name="p")  # Poisson background: stepped
    e = g.population(2, snn.IF(), name="e", mode="event")  # its own mode event: stepped
    c1 = g.population(2, snn.IF(), name="c1")  # a cycle: stepped together
    c2 = g.population(2, snn.IF(), name="c2")
    g.connect(x, a, np.ones((3, 4)), delay=0)
    g.connect(x, b, np.ones((3, 4)), delay=1)
    for target in (m, s, p, e, c1):
        g.connect(a, target, np.ones((2, 3)), delay=0)
        g.connect(b, target, np.ones((2, 3)) * 0.5, delay=2)
    g.connect(a, d, np.ones((2, 3)), delay=np.array([0, 1, 0, 1, 0, 1]))
    g.connect(s, s, np.ones((2, 2)), delay=1)
    g.poisson_input(p, 1, 100.0, 0.5)
    g.connect(c1, c2, np.ones((2, 2)), delay=0)
    g.connect(c2, c1, np.ones((2, 2)), delay=1)
    plan = g.schedule()
    kinds = {tuple(st_.names): type(st_.layer).__name__ for st_ in plan}
    assert kinds[("m",)] == kinds[("d",)] == "_MergeLayer"
    assert kinds[("s",)] == kinds[("p",)] == kinds[("e",)] == kinds[("c1", "c2")] == "NoneType"
    assert kinds[("a",)] == kinds[("b",)] == "_ProjectionLayer"
    merge = next(st_ for st_ in plan if st_.names == ["m"])
    assert sorted((src.name, delay) for src, delay in merge.inputs) == [("a", 0), ("b", 2)]
    assert not _merge_names_of(g.schedule(["m", "d"]))  # recorded: stepped
    spikes = (np.random.default_rng(0).random((12, 2, 4)) < 0.5).astype(np.uint8)
    ref = g.run(12, inputs={"x": spikes}, backend="reference")
    for mode in ("auto", "event", "clock", "dense"):  # a run in mode "event" steps every merge
        ours = g.run(12, inputs={"x": spikes}, mode=mode)
        assert ours.counts[ours.names.index("m")].mode == ("event" if mode == "event" else "clock")
        if mode != "event":  # the sweep: every neuron every step
            np.testing.assert_array_equal(ours.counts[ours.names.index("d")].updates, 12 * 2)
        _same(ours, ref, [n for n in ours.names if n != "p"], ("synops", "spikes", "input_events"))


def test_drives_and_recorded_membrane_of_a_merge():
    """A constant drive and a drive over time reach a merge layer as the
    reference adds them; recording a merge steps it, with the same spikes;
    its final membrane (read from the layer's state) is the reference's."""
    rng = np.random.default_rng(3)
    g = snn.Graph()
    x = g.input((2, 4, 4), name="x")
    h = g.population((2, 4, 4), snn.IF(threshold=1.0), name="h")
    m = g.population((2, 4, 4), snn.IF(threshold=1.0, reset="zero"), name="m")
    g.conv(x, h, rng.choice(DYADIC, (2, 2, 3, 3)), padding=1, delay=0)
    g.conv(h, m, rng.choice(DYADIC, (2, 2, 3, 3)), padding=1, delay=1)
    g.conv(x, m, rng.choice(DYADIC, (2, 2, 1, 1)), delay=0)
    g.connect(h, m, 0.5, connectivity=(np.arange(33), np.arange(32)), delay=0)
    assert _merge_names(g) == {"m"}
    spikes = (rng.random((10, 2, 32)) < 0.3).astype(np.uint8)
    for drive in (rng.choice(DYADIC, (2, 32)) / 4, rng.choice(DYADIC, (10, 2, 32)) / 4):
        ours = g.run(10, inputs={x: spikes}, drive={m: drive})
        ref = g.run(10, inputs={x: spikes}, drive={m: drive}, backend="reference")
        _same(ours, ref, fields=("synops", "spikes", "input_events"))
        np.testing.assert_array_equal(ours.membrane, ref.membrane)
        if drive.ndim == 2:
            rec = g.run(10, inputs={x: spikes}, drive={m: drive}, record_v={m: np.arange(32)})
            _same(rec, ours, fields=("synops", "spikes", "input_events"))
            np.testing.assert_array_equal(rec.v("m")[-1], ours.membrane)


# -- a converted residual network ---------------------------------------------------------------------


def test_converted_residual_network_unchanged():
    """A small residual CNN (conv branch + identity, and a strided block
    with a 1x1 shortcut) converted: its merges run as layers, and the
    readout and every population's spikes and SynOps equal its run with
    the merges stepped."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from snn.convert import convert

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.down = None
            if stride != 1 or c_in != c_out:
                self.down = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
                )

        def forward(self, x):
            identity = x if self.down is None else self.down(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += identity
            return self.relu(out)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU())
            self.b1, self.b2 = Block(4, 4, 1), Block(4, 8, 2)
            self.pool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.b2(self.b1(self.stem(x)))), 1))

    torch.manual_seed(0)
    model = Net()
    x = np.random.default_rng(0).random((24, 1, 8, 8)).astype(np.float32)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.from_numpy(x))
    model.eval()
    converted = convert(model, x[:16])
    net = converted.network
    merges = _merge_names(net)
    assert len(merges) >= 2
    new = converted.run(x[16:], 24)
    plan = net.schedule([converted.readout, *merges])
    assert not _merge_names_of(plan)
    net.schedule = lambda stepped=(), together=False: plan  # the old schedule: merges stepped
    try:
        old = converted.run(x[16:], 24)
    finally:
        del net.schedule
    _same(new, old, fields=("synops", "spikes", "input_events"))
    np.testing.assert_array_equal(new.membrane, old.membrane)
    np.testing.assert_array_equal(new.membrane.argmax(1), old.membrane.argmax(1))
