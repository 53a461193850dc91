"""``SpikeTrains.checked`` on input spikes: the samples are screened
together (neurons in range and increasing within each step) and only
those that fail are checked one by one, so that checking a whole set
costs little; its verdict, and the sample it names, are those of checking
every sample one by one (the reference below)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snn.run.spiketrains import SpikeTrains


def _reference(trains):
    """The message of the first invalid sample's error, None if valid."""
    tptr, idx, n = trains.tptr, trains.idx, trains.n
    for b in range(len(tptr)):
        used = idx[b, : tptr[b, -1]]
        if len(used) and (used.min() < 0 or used.max() >= n):
            return f"SpikeTrains: sample {b} has neurons outside [0, {n})"
        step = np.repeat(np.arange(tptr.shape[1] - 1), np.diff(tptr[b]))
        if len(np.unique(step * np.int64(n) + used)) != len(used):
            return f"SpikeTrains: a neuron spikes twice in one step of sample {b}"
    return None


def _trains(rng, batch, n_steps, n, shuffle):
    raster = (rng.random((n_steps, batch, n)) < rng.uniform(0, 0.4)).astype(np.uint8)
    trains = SpikeTrains.from_raster(raster)
    idx = np.full(
        (batch, trains.idx.shape[1] + int(rng.integers(0, 4))), -7, np.int32
    )  # junk past the spikes
    idx[:, : trains.idx.shape[1]] = trains.idx
    if shuffle:  # valid, in another order within some steps
        for b in range(batch):
            for t in range(n_steps):
                rng.shuffle(idx[b, trains.tptr[b, t] : trains.tptr[b, t + 1]])
    return SpikeTrains(trains.tptr, idx, n)


def _corrupt(rng, trains):
    """A copy with a few entries changed: a neuron out of range, or another
    spike's neuron (often a repeat within its step)."""
    idx = trains.idx.copy()
    for _ in range(int(rng.integers(1, 4))):
        b = int(rng.integers(len(idx)))
        count = int(trains.tptr[b, -1])
        if count == 0:
            continue
        j = int(rng.integers(count))
        if rng.random() < 0.3:
            idx[b, j] = rng.choice([-1, trains.n, trains.n + 5])
        else:
            step = int(np.searchsorted(trains.tptr[b], j, side="right")) - 1
            lo, hi = trains.tptr[b, step], trains.tptr[b, step + 1]
            idx[b, j] = idx[b, int(rng.integers(lo, hi))]
    return SpikeTrains(trains.tptr, idx, trains.n)


@pytest.mark.parametrize("seed", range(40))
def test_checked_agrees_with_checking_every_sample(seed):
    rng = np.random.default_rng(seed)
    trains = _trains(
        rng, int(rng.integers(1, 140)), int(rng.integers(1, 9)), int(rng.integers(1, 12)), seed % 2
    )
    for case in (trains, _corrupt(rng, trains)):
        want = _reference(case)
        if want is None:
            assert case.checked() is case
        else:
            with pytest.raises(ValueError) as err:
                case.checked()
            assert str(err.value) == want


def test_checked_names_the_first_invalid_sample():
    tptr = np.array([[0, 2, 3], [0, 1, 2], [0, 2, 2]], np.int64)
    idx = np.array([[1, 4, 0], [0, 0, 0], [3, 3, 0]], np.int32)  # sample 2: neuron 3 twice at step 0
    with pytest.raises(ValueError, match="twice in one step of sample 2"):
        SpikeTrains(tptr, idx, 5).checked()
    idx[1, 1] = 5  # sample 1: out of range, before sample 2
    with pytest.raises(ValueError, match="sample 1 has neurons outside"):
        SpikeTrains(tptr, idx, 5).checked()
    idx[1, 1] = 0  # sample 1 at steps 0 and 1: neuron 0 in both, a neuron may spike at every step
    idx[2, 1] = 2  # sample 2: 3 then 2 within step 0, not increasing but valid
    assert SpikeTrains(tptr, idx, 5).checked() is not None


@pytest.mark.parametrize("bad, at", [([1, 1, 2], "start"), ([0, 2, 1], "decrease"), ([0, 1, 4], "past idx")])
def test_offsets_are_refused_before_the_spikes_they_point_to(bad, at):
    """Offsets the kernels cannot read are refused (``screen_trains`` names the
    first such sample, having read none of its spikes), also after a sample
    with a neuron out of range: the offsets are reported first."""
    import snn_kernels as kernels

    tptr = np.array([[0, 1, 2], bad, [0, 0, 1]], np.int64)
    idx = np.array([[0, 9, 0], [0, 1, 2], [3, 0, 0]], np.int32)  # sample 0: neuron 9 of 5
    suspect = np.full(3, 7, np.uint8)
    assert kernels.screen_trains(tptr, idx, 5, suspect) == 1, at
    assert suspect[0] == 1
    with pytest.raises(ValueError, match="start at 0, not decrease, and stay within idx"):
        SpikeTrains(tptr, idx, 5).checked()
    tptr[1] = [0, 1, 2]
    assert kernels.screen_trains(tptr, idx, 5, suspect) == -1
    assert suspect.tolist() == [1, 0, 0]


@settings(max_examples=100, deadline=None)
@given(counts=st.lists(st.lists(st.integers(0, 40), min_size=0, max_size=30), min_size=1, max_size=4))
def test_busiest_step_is_the_most_spikes_of_a_step(counts):
    """``busiest_step`` (auto's bound on a run's synaptic operations) is the
    largest count of any step of any sample, 0 without steps."""
    import snn_kernels as kernels

    n_steps = len(counts[0])
    per_step = np.array([(c + [0] * n_steps)[:n_steps] for c in counts], np.int64).reshape(
        len(counts), n_steps
    )
    tptr = np.zeros((len(counts), n_steps + 1), np.int64)
    np.cumsum(per_step, axis=1, out=tptr[:, 1:])
    assert kernels.busiest_step(tptr) == per_step.max(initial=0)
