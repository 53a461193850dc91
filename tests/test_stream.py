"""Streaming runs (issue 13 item 2): inputs fed chunk by chunk, drives
changed between chunks, spikes kept for a window only, and memory that does
not grow with the steps run (``Graph.start(T=None, ...)``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from tests.conftest import examples
from tests.naive import clock_run
from tests.test_graph import graphs


def _feed(sim, inputs, a, b):
    return sim.advance(b - a, inputs={k: v[a:b] for k, v in inputs.items()})


def _same_result(got, want, record, mode):
    """Bit for bit; state updates too unless ``mode="auto"`` (which may
    choose another path on a first chunk of other activity)."""
    assert got.n_steps == want.n_steps
    for name in want.names:
        np.testing.assert_array_equal(got.spikes(name), want.spikes(name), err_msg=name)
        k = want.names.index(name)
        for field in ("synops", "spikes", "input_events") + (("updates",) if mode else ()):
            np.testing.assert_array_equal(
                getattr(got.counts[k], field), getattr(want.counts[k], field), err_msg=f"{name} {field}"
            )
    for p in record:
        np.testing.assert_array_equal(got.v(p.name), want.v(p.name))


@given(graphs(exact=False), st.integers(0, 1000), st.data())
@settings(max_examples=examples(40))
def test_streams_equal_uncut_runs_of_the_same_epoch(case, seed, data):
    """A run whose inputs are fed in random chunks computes, bit for bit,
    what the uncut run of the same ``epoch`` computes; so does a stream
    (``T=None``) that keeps only the last ``history`` steps: its window,
    recordings, counts and spike counts are the uncut run's."""
    g, inputs, T, batch = case
    neurons = [p for p in g.populations if not p.is_input]
    record = {p: np.arange(p.n) for p in neurons if data.draw(st.booleans())}
    mode = data.draw(st.sampled_from(["event", "clock", None]))
    epoch = data.draw(st.integers(1, T + 1))
    kw = dict(seed=seed, record_v=record, mode=mode, epoch=epoch)
    whole = g.start(T, inputs=inputs, batch_size=None if inputs else batch, **kw).advance().result()
    fed = g.start(T, batch_size=batch, **kw)
    assert fed.fed == sorted(inputs)
    history = data.draw(st.integers(0, T))
    stream = g.start(None, batch_size=batch, history=history, count_spikes=[p.name for p in neurons], **kw)
    t = 0
    while t < T:
        step = min(T - t, data.draw(st.integers(1, T)))
        _feed(fed, inputs, t, t + step)
        _feed(stream, inputs, t, t + step)
        t += step
    _same_result(fed.result(), whole, record, mode)
    assert stream.t == T
    totals = stream.totals()
    for p in neurons:
        k = whole.names.index(p.name)
        np.testing.assert_array_equal(stream.spike_counts(p.name), whole.spikes(p.name).sum(axis=0))
        np.testing.assert_array_equal(totals[p.name][:, 0], whole.counts[k].synops)
        np.testing.assert_array_equal(totals[p.name][:, 2], whole.counts[k].spikes)
        window = stream.window(p.name, T - history, T).to_raster().astype(bool)
        np.testing.assert_array_equal(window, whole.spikes(p.name)[T - history :])
    for p in record:
        np.testing.assert_array_equal(stream.recorded(p.name)[..., :], whole.v(p.name)[T - history :])
    with pytest.raises(ValueError, match="keeps the spikes of its last"):
        stream.result()
    if history < T:
        with pytest.raises(ValueError, match="keeps the spikes of its last"):
            stream.window(neurons[0].name, 0, T)


@given(graphs(exact=True), st.integers(0, 1000), st.data())
@settings(max_examples=examples(40))
def test_epochs_change_nothing_in_exact_arithmetic(case, seed, data):
    """Settling every neuron each ``epoch`` steps (what bounds a stream's
    arrays) changes no spike, count or membrane when the arithmetic is exact."""
    g, inputs, T, batch = case
    neurons = [p for p in g.populations if not p.is_input]
    record = {p: np.arange(p.n) for p in neurons if data.draw(st.booleans())}
    mode = data.draw(st.sampled_from(["event", "clock", None]))
    bs = None if inputs else batch
    plain = g.run(T, inputs=inputs, batch_size=bs, seed=seed, record_v=record, mode=mode)
    epoch = data.draw(st.integers(1, T))
    sim = g.start(T, inputs=inputs, batch_size=bs, seed=seed, record_v=record, mode=mode, epoch=epoch)
    _same_result(sim.advance().result(), plain, record, mode)


@pytest.mark.parametrize("recorded", [False, True])  # a layer stage, or a stepped one
@pytest.mark.parametrize("mode", ["event", "clock", "auto"])
@pytest.mark.parametrize("model", ["IF", "CubaIF"])
def test_drive_changed_between_chunks_is_the_reference(recorded, mode, model):
    """``advance(drive=...)``: the neurons run on the old drive up to the
    change and on the new one after it, as a step-by-step loop computes it
    (exact dyadic values: bit for bit), on every path, with the lazy
    neurons of the event path settled at the change."""
    rng = np.random.default_rng(3)
    n, batch, cuts = 7, 2, [0, 5, 6, 13, 20]
    neuron = snn.IF(threshold=1.0, refractory=1) if model == "IF" else snn.CubaLIF(alpha=0.5, beta=1.0)
    g = snn.Graph()
    pop = g.population(n, neuron, v_init=np.arange(n) / 8.0, name="p", mode=mode)
    drives = [rng.choice(np.arange(-4, 9) / 16.0, (batch, n)) for _ in cuts[:-1]]
    sim = g.start(cuts[-1], drive={pop: drives[0]}, record_v={"p": np.arange(n)} if recorded else None)
    for (a, b), d in zip(zip(cuts, cuts[1:], strict=False), drives, strict=True):
        sim.advance(b - a, drive={"p": d})
    got = sim.result().spikes("p")
    for s in range(batch):
        currents = np.zeros((cuts[-1], n))
        for (a, b), d in zip(zip(cuts, cuts[1:], strict=False), drives, strict=True):
            currents[a:b] = d[s] - drives[0][s]
        alpha = None if model == "IF" else 0.5
        spikes, *_ = clock_run(
            currents, drives[0][s], np.arange(n) / 8.0, 1.0, alpha, 1.0, 0, 0.0, neuron.refractory
        )
        np.testing.assert_array_equal(got[:, s], spikes, err_msg=f"sample {s}")


def test_stream_memory_does_not_grow_with_steps():
    """A driven, recurrent population streamed with a recorded neuron and a
    delayed readout: the memory held after 40k steps is what it was after
    10k (tracemalloc; spikes and recordings kept for 100 steps)."""
    g = snn.Graph()
    x = g.input(20, name="x")
    h = g.population(50, snn.LIF(beta=0.9), name="h")
    out = g.population(5, snn.IF(), name="out")
    rng = np.random.default_rng(0)
    g.connect(x, h, rng.uniform(0, 0.6, (50, 20)))
    g.connect(h, h, rng.uniform(-0.2, 0.2, (50, 50)), delay=2)
    g.connect(h, out, rng.uniform(0, 0.3, (5, 50)), delay=3)
    sim = g.start(
        None,
        batch_size=2,
        drive={h: np.full((2, 50), 0.05)},
        record_v={"h": [0]},
        history=100,
        epoch=1000,
        count_spikes=["out"],
    )
    chunk = 500

    def run(steps):
        for _ in range(steps // chunk):
            spikes = rng.random((chunk, 2, 20)) < 0.05
            sim.advance(chunk, inputs={"x": spikes})

    run(10_000)
    tracemalloc.start()
    run(10_000)
    held = tracemalloc.get_traced_memory()[0]
    run(30_000)
    grown = tracemalloc.get_traced_memory()[0] - held
    tracemalloc.stop()
    assert sim.t == 50_000 and sim.spike_counts("out").sum() > 0
    assert sim.recorded("h").shape == (100, 2, 1)
    assert grown < 200_000, f"memory grew by {grown} bytes over 30k steps"


def test_stream_refusals():
    g = snn.Graph()
    x = g.input(3, name="x")
    h = g.population(2, name="h")
    g.connect(x, h, np.ones((2, 3)))
    with pytest.raises(ValueError, match="chunk by chunk"):
        g.start(None, inputs={x: np.zeros((4, 1, 3))})
    with pytest.raises(ValueError, match="history"):
        g.start(None, history=-1)
    with pytest.raises(ValueError, match="epoch"):
        g.start(None, epoch=0)
    with pytest.raises(ValueError, match="count_spikes"):
        g.start(None, count_spikes=["nope"])
    sim = g.start(None, batch_size=2)
    assert sim.fed == ["x"]
    with pytest.raises(ValueError, match="no end"):
        sim.advance()
    with pytest.raises(ValueError, match=r"needs the spikes of \['x'\]"):
        sim.advance(3)
    with pytest.raises(ValueError, match="must be spikes"):
        sim.advance(3, inputs={"x": np.zeros((2, 2, 3))})
    with pytest.raises(ValueError, match="samples"):
        sim.advance(3, inputs={"x": np.zeros((3, 2, 3))}, drive={"h": np.zeros((3, 2))})
    with pytest.raises(KeyError, match="count_spikes"):
        sim.spike_counts("h")
    sim.advance(3, inputs={"x": np.ones((3, 2, 3))})
    assert sim.window("h", 3, 3).n_steps == 0
    with pytest.raises(ValueError, match="keeps the spikes"):
        sim.window("h", 2, 3)


def test_a_stream_keeps_its_own_copy_of_the_drives():
    """A drive array the caller changes in place after handing it over does
    not change the run (nor is the caller's array written or frozen)."""
    g = snn.Graph()
    a = g.population(3, snn.IF(), name="a")
    b = g.population(3, snn.IF(), name="b")
    g.connect(a, b, np.eye(3) * 0.5, delay=1)
    g.connect(b, a, np.eye(3) * 0.25, delay=1)  # one stepped stage: both drives rebuilt together
    d_a, d_b = np.full((1, 3), 0.3), np.full((1, 3), 0.2)
    runs = []
    for spoil in (False, True):
        sim = g.start(20, drive={a: d_a.copy()} if not spoil else {a: d_a}, batch_size=1)
        if spoil:
            d_a[:] = 5.0  # after the hand-over
        sim.advance(10, drive={b: d_b})
        runs.append(sim.advance().result().spikes("a"))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert d_a.flags.writeable and np.all(d_a == 5.0)


@pytest.mark.parametrize("mode", ["event", None])
def test_chunks_keep_the_order_of_self_driven_spikes(mode):
    """The spikes of neurons due to fire on their own at one step leave in
    index order (``kernels.event._close_step``), not in the order their
    calendar bucket lists them: a layer run chunk by chunk builds its
    calendars again from the state at each chunk, and the order of a step's
    spikes is that of their delivery downstream, so of the rounding of the
    float32 sums there (cut at step 2, a run used to give membranes 1 ULP
    off the uncut run's)."""
    rng = np.random.default_rng(3)
    g = snn.Graph(dt=1e-3, dtype=np.float32)
    g.input(3, name="in")  # fed chunk by chunk: the layers run chunk by chunk too
    n = 800  # a few dozen due per step: under 1/16 of the population (no pass over it in index order)
    a = g.population(
        n,
        snn.CubaLIF(beta=0.97, alpha=0.5, threshold=1.0, refractory=1),
        bias=rng.uniform(0.01, 0.05, n),
        v_init=rng.uniform(0, 1, n),
        name="a",
        mode="event",
    )
    b = g.population(40, snn.CubaLIF(beta=0.9, alpha=0.7, threshold=50.0), name="b", mode="event")
    g.connect(a, b, rng.uniform(-1, 1.5, (40, n)).astype(np.float32), delay=1)
    T = 30
    x = np.zeros((T, 2, 3), np.uint8)
    kw = dict(record_v={b: np.arange(40)}, mode=mode, seed=0, epoch=20)  # (a run of one epoch is not cut)
    whole = g.start(T, inputs={"in": x}, **kw).advance().result()
    assert 1 < whole.spikes("a").sum(axis=2).max() < n // 16
    for chunks in ([2, 28], [1] * 30, [7, 9, 14]):
        sim = g.start(T, batch_size=2, **kw)
        t = 0
        for c in chunks:
            sim.advance(c, inputs={"in": x[t : t + c]})
            t += c
        got = sim.result()
        np.testing.assert_array_equal(got.spikes("a"), whole.spikes("a"))
        np.testing.assert_array_equal(got.v("b"), whole.v("b"), err_msg=str(chunks))
