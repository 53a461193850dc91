"""``snn.events.EventBinner``: event streams arriving in packets, binned
chunk by chunk, give the spike trains ``bin_events`` makes of the whole
streams, cut at the same steps; and they feed a stream run."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_events import random_streams, stream

import snn
from snn.events import EVENT_DTYPE, EventBinner, EventsDroppedWarning, bin_events


def _in_packets(rng, streams, steps_us, cuts):
    """For each chunk ``[a, b)`` of ``cuts``: per sample, the events not
    handed out yet of steps ``< b``, plus a random few of later steps."""
    cursor = [0] * len(streams)
    for b in cuts[1:]:
        packets = []
        for s, events in enumerate(streams):
            need = int(np.searchsorted(events["t"] // steps_us, b))
            end = min(len(events), max(need, cursor[s]) + int(rng.integers(0, 4)))
            packets.append(events[cursor[s] : end])
            cursor[s] = end
        yield b, packets


@pytest.mark.parametrize("duplicates", ["carry", "merge"])
def test_chunks_of_packets_equal_the_whole_streams(duplicates):
    rng = np.random.default_rng(7)
    for trial in range(40):
        sensor = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 3)))
        batch = int(rng.integers(1, 4))
        # few pixels, many events: a pixel often has several events in a step, carried over chunk edges
        streams = random_streams(rng, sensor, batch, 120, 12_000)
        total = int(rng.integers(1, 16))
        cuts = np.unique(np.concatenate(([0, total], rng.integers(1, total + 1, int(rng.integers(0, 5))))))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            whole = bin_events(streams, sensor, 1e-3, total, duplicates=duplicates)
        binner = EventBinner(sensor, 1e-3, batch, duplicates=duplicates)
        rasters = []
        for b, packets in _in_packets(rng, streams, 1000, cuts):
            rasters.append(binner(int(b - binner.t), packets).to_raster())
        assert binner.t == total
        np.testing.assert_array_equal(np.concatenate(rasters), whole.to_raster(), err_msg=f"trial {trial}")
        # what the whole binning drops past its end is what still waits here (carry), or later events
        later = sum(int((s["t"] // 1000 >= total).sum()) for s in streams)
        handed = sum(int((s["t"] // 1000 < total).sum()) for s in streams)
        if duplicates == "carry":
            dropped = handed - int(whole.total)
            assert binner.pending >= dropped
            assert binner.pending <= dropped + later
            assert (dropped > 0) == bool(caught)


def test_carried_events_keep_their_counts_across_a_chunk_edge():
    # four events of one pixel in step 1 of a sensor 1x1x1: steps 1, 2 | 3, 4
    s = stream([(0, 0, 1000, 0), (0, 0, 1200, 0), (0, 0, 1300, 0), (0, 0, 1400, 0)])
    binner = EventBinner((1, 1, 1), 1e-3)
    first = binner(3, s)
    assert first.to_events().tolist() == [[1, 0, 0], [2, 0, 0]]  # (step, sample, neuron)
    assert binner.pending == 2
    second = binner(3, None)
    assert second.to_events().tolist() == [[0, 0, 0], [1, 0, 0]]  # steps 3 and 4 of the stream
    assert binner.pending == 0 and binner.t == 6


def test_binned_chunks_feed_a_stream_run():
    """A stream fed chunk by chunk from packets computes what the run of
    the whole binned stream computes."""
    rng = np.random.default_rng(2)
    sensor = (4, 4, 2)
    streams = random_streams(rng, sensor, 2, 300, 40_000)
    g = snn.Graph(dt=1e-3)
    x = g.input(32, name="x")
    h = g.population(10, snn.LIF(beta=0.9), name="h")
    g.connect(x, h, rng.uniform(0, 0.5, (10, 32)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventsDroppedWarning)  # carried past step 39: left waiting below
        whole = g.run(40, inputs={"x": bin_events(streams, sensor, 1e-3, 40)}, progress=False)
    sim = g.start(None, batch_size=2, count_spikes=["h"])
    binner = EventBinner(sensor, 1e-3, 2)
    for b, packets in _in_packets(rng, streams, 1000, [0, 7, 8, 25, 40]):
        sim.advance(b - binner.t, inputs={"x": binner(b - binner.t, packets)})
    np.testing.assert_array_equal(sim.spike_counts("h"), whole.spikes("h").sum(axis=0))


def test_errors():
    binner = EventBinner((2, 2, 1), 1e-3, 2)
    with pytest.raises(ValueError, match="one event array per sample"):
        binner(3, [stream([(0, 0, 0, 0)])])
    binner(3, [stream([(0, 0, 0, 0)]), None])
    with pytest.raises(ValueError, match="arrived after steps 0-2 were binned"):
        binner(3, [stream([(0, 0, 2500, 0)]), None])
    with pytest.raises(ValueError, match="T must be"):
        binner(0)
    with pytest.raises(ValueError, match="duplicates"):
        EventBinner((2, 2, 1), 1e-3, duplicates="drop")
    with pytest.raises(ValueError, match="sensor_size"):
        EventBinner((2, 2), 1e-3)
    with pytest.raises(ValueError, match="x must be in"):
        binner(2, [stream([(5, 0, 4000, 0)]), np.zeros(0, EVENT_DTYPE)])
