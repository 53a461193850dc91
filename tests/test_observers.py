"""Observers plugged into chunked runs (``snn.observers``): what they measure
equals what the uncut run's spikes give, however the run is cut."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from tests.conftest import examples


def _graph():
    """Input -> hidden (recurrent through a delay) -> out; dyadic weights."""
    rng = np.random.default_rng(5)
    g = snn.Graph(dt=1e-3)
    x = g.input(12, name="x")
    h = g.population(20, snn.LIF(beta=0.75), name="h")
    out = g.population(4, snn.IF(), name="out")
    g.connect(x, h, weight=rng.choice(np.arange(-2, 7) / 8.0, (20, 12)))
    g.connect(h, h, weight=rng.choice(np.arange(-3, 3) / 16.0, (20, 20)), delay=2)
    g.connect(h, out, weight=rng.choice(np.arange(-2, 6) / 8.0, (4, 20)))
    return g


@given(st.integers(1, 7), st.integers(1, 40), st.data())
@settings(max_examples=examples(25), deadline=None)
def test_observers_equal_the_uncut_run(bin_steps, epoch, data):
    """A stream fed in random chunks (settled every ``epoch`` steps, keeping
    no spikes): ``SpikeCounts`` and ``PopulationRate`` equal what the uncut
    run's spike trains give; ``Callback`` sees consecutive chunks that cover
    the run."""
    g, T, batch = _graph(), 37, 3
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    spikes = (rng.random((T, batch, 12)) < 0.3).astype(np.uint8)
    whole = g.run(T, inputs={"x": spikes})
    counts, rate = snn.observers.SpikeCounts("h"), snn.observers.PopulationRate("out", bin_steps)
    seen = []
    sim = g.start(
        None, batch_size=batch, epoch=epoch, observers=[counts, rate, snn.observers.Callback(seen.append)]
    )
    t = 0
    while t < T:
        step = min(T - t, data.draw(st.integers(1, 10)))
        sim.advance(step, inputs={"x": spikes[t : t + step]})
        t += step
    np.testing.assert_array_equal(counts.compute(), whole.spikes("h").sum(axis=0))
    per_step = whole.spikes("out").sum(axis=2)  # [T, B]
    bins = [per_step[a : a + bin_steps] for a in range(0, T, bin_steps)]
    want = np.stack([b.sum(axis=0) / (4 * len(b) * 1e-3) for b in bins])
    np.testing.assert_allclose(rate.compute(), want, rtol=1e-12)
    assert [c.t0 for c in seen] == [0] + [c.t1 for c in seen[:-1]] and seen[-1].t1 == T
    assert all(c.t1 - c.t0 <= epoch for c in seen)


def test_observers_follow_keep_and_stacks():
    """After ``keep(rows)`` an observer covers the samples kept; a stack's
    observers name its layers."""
    net = snn.Network(
        [snn.Linear(10, 8, snn.LIF(beta=0.5), seed=0), snn.Linear(8, 3, snn.IF(threshold=0.5), seed=1)]
    )
    x = np.random.default_rng(0).random((4, 10))
    counts = snn.observers.SpikeCounts(net.layer_name(0))
    sim = net.start(12, analog=x, observers=counts)
    sim.advance(5).keep([3, 1]).advance()
    full = net.run(analog=x, T=12).trains[0].to_raster()
    np.testing.assert_array_equal(counts.compute(), full[:, [3, 1]].sum(axis=0))


def test_observer_refusals():
    g = _graph()
    with pytest.raises(TypeError, match="reset, update, keep and compute"):
        g.start(5, batch_size=1, observers=[object()])
    with pytest.raises(ValueError, match="no population 'y'"):
        g.start(5, batch_size=1, observers=[snn.observers.SpikeCounts("y")])
    with pytest.raises(ValueError, match="bin_steps"):
        snn.observers.PopulationRate("h", 0)
    with pytest.raises(TypeError, match="callable"):
        snn.observers.Callback(3)
