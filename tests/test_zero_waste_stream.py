"""Streams in constant memory with reducers (issue 13 item 2): the peak memory
of a long stream recorded into a window and reducers (``SpikeCounts``,
``PopulationRate(last=...)``) does not grow with the steps run, and the
rates a bounded ``PopulationRate`` keeps are the last bins of the uncut
run's."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from tests.conftest import examples
from tests.test_observers import _graph


@given(st.integers(1, 7), st.integers(1, 6), st.data())
@settings(max_examples=examples(25), deadline=None)
def test_bounded_rates_are_the_last_bins_of_the_uncut_run(bin_steps, last, data):
    """``PopulationRate(last=k)`` fed in random chunks (some longer than
    ``k`` bins) keeps the last ``k`` bins of what the unbounded one and the
    uncut run's spikes give; ``keep`` follows the samples kept."""
    g, T, batch = _graph(), 41, 3
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    spikes = (rng.random((T, batch, 12)) < 0.3).astype(np.uint8)
    whole = g.run(T, inputs={"x": spikes})
    per_step = whole.spikes("out").sum(axis=2)  # [T, B]
    bounded = snn.observers.PopulationRate("out", bin_steps, last=last)
    every = snn.observers.PopulationRate("out", bin_steps)
    sim = g.start(None, batch_size=batch, epoch=data.draw(st.integers(1, 50)), observers=[bounded, every])
    t = 0
    while t < T:
        step = min(T - t, data.draw(st.integers(1, 3 * last * bin_steps)))
        sim.advance(step, inputs={"x": spikes[t : t + step]})
        t += step
        want = _rates(per_step[:t], bin_steps)  # the bins so far, the last over the steps it has
        assert bounded.first_bin == max(0, len(want) - last)
        np.testing.assert_allclose(every.compute(), want, rtol=1e-12)
        np.testing.assert_allclose(bounded.compute(), want[bounded.first_bin :], rtol=1e-12)
    assert bounded.compute().shape == (min(last, len(want)), batch)
    sim.keep([2, 0])
    np.testing.assert_allclose(bounded.compute(), want[bounded.first_bin :, [2, 0]], rtol=1e-12)


def _rates(per_step, bin_steps):
    """``[bins, B]`` Hz of a population of 4 (dt 1 ms) from its spikes per
    step ``[t, B]``, in bins of ``bin_steps`` (the last over the steps it has)."""
    bins = [per_step[a : a + bin_steps] for a in range(0, len(per_step), bin_steps)]
    return np.stack([b.sum(axis=0) / (4 * len(b) * 1e-3) for b in bins])


def test_rate_argument_refused():
    with pytest.raises(ValueError, match="last"):
        snn.observers.PopulationRate("h", 2, last=0)
    with pytest.raises(ValueError, match="last"):
        snn.observers.PopulationRate("h", 2, last=True)


def _stream_peak(steps, observers, chunk=5_000):
    """Peak bytes (tracemalloc, numpy's arrays included) above what was held
    before, over ``steps`` more steps of a warmed-up stream of a recurrent,
    driven population fed random input, recorded into a window of 100 steps
    and ``observers``."""
    g = _graph()
    rng = np.random.default_rng(0)
    sim = g.start(
        None,
        batch_size=2,
        drive={"h": np.full((2, 20), 0.05)},
        record_v={"h": [0]},
        history=100,
        epoch=1000,
        count_spikes=["out"],
        observers=observers,
    )
    feed = [rng.random((chunk, 2, 12)) < 0.05 for _ in range(4)]
    for k in range(4):  # warm up: compiled, buffers at their size
        sim.advance(chunk, inputs={"x": feed[k]})
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        for k in range(steps // chunk):
            sim.advance(chunk, inputs={"x": feed[k % 4]})
        peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert sim.spike_counts("out").sum() > 0 and sim.recorded("h").shape == (100, 2, 1)
    return peak


def test_peak_memory_of_a_stream_with_reducers_does_not_grow_with_steps():
    """The peak (not only what is held at the end) over 20k and 160k steps:
    the same within 256 KiB (under 2 bytes per step; the run itself varies
    by ~60 KiB), with a bounded rate reducer; an unbounded one
    grows (by its bins: 8 bytes per sample per bin, amortised)."""

    def reducers():
        return [
            snn.observers.SpikeCounts("h"),
            snn.observers.PopulationRate("out", 10, last=50),
            snn.observers.Callback(lambda chunk: chunk.t1),
        ]

    short, long = _stream_peak(20_000, reducers()), _stream_peak(160_000, reducers())
    assert long - short < 256 * 1024, (short, long)
    growing = _stream_peak(160_000, [snn.observers.PopulationRate("out", 1)])
    assert growing > 160_000 * 2 * 8 / 2  # the bins of a rate reducer kept whole
