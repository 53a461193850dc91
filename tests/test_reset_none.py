"""Reset ``"none"`` (DESIGN.md §1: a neuron that fires and keeps its membrane)
on every path: stacks (event, clock, dense) are covered by the equivalence
properties (``conftest.neurons`` draws it); here the graph paths (event,
clock, reference), the self-driven search for a neuron that stays above
threshold, golden trajectories, save/load, and the delayed subtraction it
expresses with a self-projection of weight ``-threshold`` and delay 1.

Agreement: exact arithmetic (IF, dyadic values, float64) gives identical
spike trains; otherwise identical up to the first step where a reference
membrane lies within ``TOL[dtype] * scale`` of threshold (as tests/test_graph.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TOL, examples, neurons
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from snn.run.reference import run_graph_reference

DYADIC = np.arange(-16, 17) / 8.0


@st.composite
def none_graphs(draw, exact):
    """1-3 populations (the first with reset "none"), an input, random
    projections (self ones with delay >= 1), maybe Poisson background."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dtype = np.float64 if exact else draw(st.sampled_from([np.float64, np.float32]))
    g = snn.Graph(dt=1e-3, dtype=dtype)
    T, batch = draw(st.integers(1, 25)), draw(st.integers(1, 2))

    def values(n, lo, hi):
        return rng.choice(DYADIC[(DYADIC >= lo) & (DYADIC <= hi)], n) if exact else rng.uniform(lo, hi, n)

    n_in = draw(st.integers(1, 6))
    x = g.input(n_in, name="in")
    inputs = {"in": (rng.random((T, batch, n_in)) < draw(st.floats(0.0, 0.6))).astype(np.uint8)}
    pops = []
    for k in range(draw(st.integers(1, 3))):
        nrn = draw(neurons(exact=exact))
        if k == 0 and nrn.reset != "none":
            nrn = snn.Neuron(nrn.beta, nrn.alpha, nrn.threshold, "none", 0.0, nrn.refractory, nrn.name)
        n = draw(st.integers(1, 8))
        bias = values(n, -0.25, 0.5) if draw(st.booleans()) else 0.0
        mode = draw(st.sampled_from(["auto", "event", "clock"]))
        pops.append(g.population(n, nrn, bias=bias, v_init=values(n, -0.5, 1.5), name=f"p{k}", mode=mode))
    for _ in range(draw(st.integers(1, 5))):
        a, b = draw(st.sampled_from([x, *pops])), draw(st.sampled_from(pops))
        lo = 0 if a.is_input or pops.index(a) < pops.index(b) else 1
        w = values(a.n * b.n, -1.0, 1.5).reshape(b.n, a.n) * (rng.random((b.n, a.n)) < 0.7)
        if np.count_nonzero(w):
            g.connect(a, b, w, delay=draw(st.integers(lo, lo + 2)))
    if not exact and draw(st.booleans()):
        g.poisson_input(pops[0], 2, 200.0, float(values(1, -1.0, 1.0)[0]))
    return g, inputs, T


@settings(max_examples=examples(60))
@given(none_graphs(exact=True), st.sampled_from([None, "event", "clock"]))
def test_exact_none_graphs_identical(case, mode):
    g, inputs, T = case
    record = {p: np.arange(p.n) for p in g.populations if not p.is_input}
    ev = g.run(T, inputs=inputs, mode=mode, record_v=record)
    ref = g.run(T, inputs=inputs, backend="reference", record_v=record)
    for name in ev.names:
        np.testing.assert_array_equal(ev.spikes(name), ref.spikes(name), err_msg=name)
    for p in record:
        np.testing.assert_array_equal(ev.v(p.name), ref.v(p.name))
    for k in range(len(ev.names)):
        for field in ("synops", "spikes", "input_events"):
            np.testing.assert_array_equal(getattr(ev.counts[k], field), getattr(ref.counts[k], field))


@settings(max_examples=examples(60))
@given(none_graphs(exact=False), st.integers(0, 1000), st.sampled_from([None, "event", "clock"]))
def test_none_graphs_agree_within_tolerance(case, seed, mode):
    g, inputs, T = case
    ev = g.run(T, inputs=inputs, seed=seed, mode=mode)
    given_trains, batch = g._inputs(inputs, T, None)
    traces = {}
    ref = run_graph_reference(g, T, given_trains, batch, seed, [], traces)
    for t in range(T):
        differ = {name: np.argwhere(ev.spikes(name)[t] != ref.spikes(name)[t]) for name in traces}
        if not any(len(d) for d in differ.values()):
            continue
        for name, where in differ.items():
            v, thr = traces[name][t], g[name].neuron.threshold
            for b, j in where:
                scale = max(1.0, abs(thr), float(np.abs(v[b]).max()))
                assert abs(v[b, j] - thr) <= TOL[g.dtype] * scale, f"{name} neuron {j} step {t}"
        return  # diverged legitimately near threshold: later steps may differ
    for name in ev.names:
        np.testing.assert_array_equal(ev.spikes(name), ref.spikes(name))


@pytest.mark.parametrize("mode", ["event", "clock"])
def test_neuron_above_threshold_keeps_firing_on_its_own(mode):
    """v_init = 3, beta = 0.5, threshold 0.25, no input: v_t = 3 / 2**(t+1)
    (exact, kept after each spike) is 1.5, 0.75, 0.375, then 0.1875 < 0.25:
    three spikes found by the self-driven search, none after."""
    g = snn.Graph()
    g.population(1, snn.LIF(beta=0.5, threshold=0.25, reset="none"), v_init=3.0, name="a", mode=mode)
    r = g.run(8, record_v={"a": [0]})
    assert r.spikes("a")[:, 0, 0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(r.v("a")[:, 0, 0], 3.0 / 2.0 ** np.arange(1, 9))


def test_current_driven_none_neuron_fires_while_above():
    """A CubaLIF 'none' neuron kicked once: fires on every step its free
    trajectory (rise then decay) is at or above threshold, event = reference."""
    g = snn.Graph()
    x = g.input(1, name="x")
    a = g.population(
        1, snn.CubaLIF(beta=0.75, alpha=0.5, threshold=1.0, reset="none"), name="a", mode="event"
    )
    g.connect(x, a, np.array([[2.0]]), delay=0)
    spikes = np.zeros((30, 1, 1), np.uint8)
    spikes[1] = 1
    ev, ref = g.run(30, inputs={x: spikes}), g.run(30, inputs={x: spikes}, backend="reference")
    np.testing.assert_array_equal(ev.spikes("a"), ref.spikes("a"))
    fired = np.flatnonzero(ev.spikes("a")[:, 0, 0])
    assert len(fired) > 1 and np.all(np.diff(fired) == 1), "fires on consecutive steps while above"


def test_delayed_subtraction_as_none_plus_self_projection():
    """mem[t] = beta mem[t-1] + x[t] - threshold s[t-1] (snnTorch's default
    delayed subtraction) equals a 'none' population with a self-projection
    of weight -threshold and delay 1 (golden loop, dyadic values: exact)."""
    rng = np.random.default_rng(4)
    beta, thr, T, n = 0.75, 1.0, 40, 5
    w = rng.choice(DYADIC[DYADIC > -0.5], (n, 3))
    x_spk = (rng.random((T, 2, 3)) < 0.5).astype(np.uint8)
    g = snn.Graph()
    x = g.input(3, name="x")
    a = g.population(n, snn.LIF(beta=beta, threshold=thr, reset="none"), name="a")
    g.connect(x, a, w, delay=0)
    g.connect(a, a, -thr, connectivity=(np.arange(n + 1), np.arange(n)), delay=1)
    mem, s = np.zeros((2, n)), np.zeros((2, n))
    expected = []
    for t in range(T):
        mem = beta * mem + x_spk[t] @ w.T - thr * s
        s = (mem >= thr).astype(float)
        expected.append(s.copy())
    for backend in ("event", "reference"):
        np.testing.assert_array_equal(g.run(T, inputs={x: x_spk}, backend=backend).spikes("a"), expected)


def test_none_reset_round_trips_through_save(tmp_path):
    g = snn.Graph()
    g.population(3, snn.CubaLIF(beta=0.9, alpha=0.5, reset="none", refractory=1), v_init=2.0, name="a")
    snn.save(g, tmp_path / "g.npz")
    back = snn.load(tmp_path / "g.npz")
    assert back["a"].neuron == g["a"].neuron and back["a"].neuron.reset == "none"
    np.testing.assert_array_equal(back.run(10).spikes("a"), g.run(10).spikes("a"))
    net = snn.Network([snn.Linear(2, 3, snn.LIF(beta=0.5, reset="none"), weight=np.ones((3, 2)))])
    snn.save(net, tmp_path / "n.npz")
    assert snn.load(tmp_path / "n.npz").layers[0].neuron.reset == "none"


def test_none_reset_refuses_a_reset_value():
    with pytest.raises(ValueError, match="reset='none' keeps the membrane"):
        snn.LIF(beta=0.9, reset="none", v_reset=0.5)
    assert snn.IF(reset="none").reset_code == 2
