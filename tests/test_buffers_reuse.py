"""Output buffers of whole-batch layer runs (``snn.run.paths._run_layer``):
the spikes of a batch are packed in the memory the kernel wrote them to
(no copy), a layer's buffer is taken again by its next run once nothing
holds the last one (memory given back and taken again costs its page
faults again), and never while a result or a view of one holds it; a run
of one sample does not shrink the next batch's buffer."""

from __future__ import annotations

import threading
import weakref

import numpy as np
import pytest

import snn
from snn.run import paths


def _net(rng, dtype=np.float64):
    """Conv - Conv - Linear on 2x8x8 spikes; samples of different activity."""
    c1 = snn.Conv2d(
        (2, 8, 8), 6, 3, padding=1, neuron=snn.IF(), weight=rng.normal(0.2, 0.5, (6, 2, 3, 3)), v_init=0.5
    )
    c2 = snn.Conv2d(
        (6, 8, 8),
        4,
        3,
        stride=2,
        padding=1,
        neuron=snn.LIF(beta=0.9),
        weight=rng.normal(0.1, 0.4, (4, 6, 3, 3)),
    )
    fc = snn.Linear(64, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, 64)))
    return snn.Network([c1, c2, fc], dtype=dtype)


def _spikes(rng, batch, n_steps=30):
    rates = rng.uniform(0.05, 0.5, (1, batch, 1))  # (each sample its own rate: rows of different lengths)
    return (rng.random((n_steps, batch, 128)) < rates).astype(np.uint8)


def _copies(result):
    return [
        (t.tptr.copy(), [t.idx[b, : t.tptr[b, -1]].copy() for b in range(len(t.tptr))]) for t in result.trains
    ]


def _assert_same(trains, copies):
    for t, (tptr, rows) in zip(trains, copies, strict=True):
        np.testing.assert_array_equal(t.tptr, tptr)
        for b, row in enumerate(rows):
            np.testing.assert_array_equal(t.idx[b, : t.tptr[b, -1]], row)


@pytest.mark.parametrize("mode", ["clock", "event"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_batch_packs_the_spikes_of_each_sample_run_alone(mode, dtype):
    rng = np.random.default_rng(1)
    net, x = _net(rng, dtype), _spikes(rng, 9)
    for _ in range(2):  # the first run guesses its buffers, the second sizes them from the first's spikes
        batch = net.run(x, mode=mode)
        for k, t in enumerate(batch.trains[:2]):
            counts = t.tptr[:, -1]
            assert t.idx.shape == (9, counts.max()) and t.idx.flags.c_contiguous
            assert len(set(counts.tolist())) > 1  # rows of different lengths were moved
            for b in range(9):
                alone = net.run(x[:, b : b + 1], mode=mode).trains[k]
                np.testing.assert_array_equal(t.tptr[b], alone.tptr[0])
                np.testing.assert_array_equal(t.idx[b, : counts[b]], alone.idx[0, : counts[b]])
    # packed where the kernel wrote them, in at most twice their size (no buffer guessed from 4x the input)
    for t in batch.trains[:2]:
        assert t.idx.base is not None and t.idx.base.nbytes <= 2 * t.idx.nbytes


def test_packed_moves_rows_in_place():
    rng = np.random.default_rng(2)
    counts = np.array([3, 0, 7, 7, 1, 5], np.int64)
    out = rng.integers(0, 1000, (6, 11)).astype(np.int32)
    want = [out[b, : counts[b]].copy() for b in range(6)]
    packed = paths._packed(out, counts, 7)
    assert packed.shape == (6, 7) and packed.flags.c_contiguous and np.shares_memory(packed, out)
    for b in range(6):
        np.testing.assert_array_equal(packed[b, : counts[b]], want[b])


def test_a_layer_takes_its_buffer_again_once_nothing_holds_it():
    rng = np.random.default_rng(3)
    net, x = _net(rng), _spikes(rng, 8)
    net.run(x, mode="clock")  # buffers sized from this run's spikes
    first = net.run(x, mode="clock")
    kept = [weakref.ref(t.idx.base) for t in first.trains[:2]]
    want = _copies(first)
    del first
    again = net.run(x, mode="clock")
    assert all(t.idx.base is ref() is not None for t, ref in zip(again.trains[:2], kept, strict=True))
    _assert_same(again.trains, want)


@pytest.mark.parametrize("hold", ["result", "view"])
def test_a_held_result_is_not_touched_by_later_runs(hold):
    rng = np.random.default_rng(4)
    net = _net(rng)
    x = _spikes(rng, 8)
    net.run(x, mode="clock")
    first = net.run(x, mode="clock")
    want = _copies(first)
    held = first if hold == "result" else [t.idx[:, :] for t in first.trains]
    del first
    for _ in range(3):
        other = net.run(_spikes(rng, 8), mode="clock")
        assert all(not np.shares_memory(a.idx, b) for a, b in zip(other.trains, _held_idx(held)))
    if hold == "result":
        _assert_same(held.trains, want)
    else:
        for idx, (tptr, rows) in zip(held, want, strict=True):
            for b, row in enumerate(rows):
                np.testing.assert_array_equal(idx[b, : tptr[b, -1]], row)


def _held_idx(held):
    return [t.idx for t in held.trains] if isinstance(held, snn.RunResult) else held


def test_runs_in_threads_at_once_compute_what_runs_one_by_one_do():
    rng = np.random.default_rng(5)
    net = _net(rng)
    inputs = [_spikes(rng, 6) for _ in range(4)]
    want = [_copies(net.run(x, mode="clock")) for x in inputs]
    got = [None] * len(inputs)

    def work(k):
        for _ in range(5):
            got[k] = net.run(inputs[k], mode="clock", n_threads=1)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result, copies in zip(got, want, strict=True):
        _assert_same(result.trains, copies)


def test_a_run_of_one_sample_does_not_shrink_the_next_batch_buffer():
    rng = np.random.default_rng(6)
    net = _net(rng)
    x = _spikes(rng, 8)
    net.run(x, mode="clock")
    calls = []
    run = paths._out_buffer

    def counted(layer, batch, cap):
        calls.append(cap)
        return run(layer, batch, cap)

    quiet = int(np.argmin(x.sum(axis=(0, 2))))
    net.run(x[:, quiet : quiet + 1], mode="clock")
    paths._out_buffer = counted
    try:
        net.run(x, mode="clock")
    finally:
        paths._out_buffer = run
    assert len(calls) == 3  # one buffer per layer: none overflowed after the quiet sample's run


def test_release_memory_lets_go_of_kept_buffers_and_changes_no_result():
    rng = np.random.default_rng(7)
    net, x = _net(rng), _spikes(rng, 8)
    snn.release_memory()  # (what earlier tests' networks still keep)
    net.run(x, mode="clock")
    first = net.run(x, mode="clock")
    want = _copies(first)
    kept = [weakref.ref(t.idx.base) for t in first.trains[:2]]
    released = snn.release_memory()
    assert released >= sum(ref().nbytes for ref in kept)  # the held result's buffers too
    assert snn.release_memory() == 0  # nothing kept any more
    _assert_same(first.trains, want)  # a held result keeps its spikes
    del first
    assert all(ref() is None for ref in kept)  # gone with the last result that held them
    again = net.run(x, mode="clock")  # in new memory, the same spikes
    _assert_same(again.trains, want)
    assert snn.release_memory() > 0


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_a_large_batch_of_analog_input_is_multiplied_on_threads_as_one_by_one(kind):
    """A constant analog input of a batch large enough to be multiplied on
    threads (``paths._THREADED_DRIVE_FROM``): the same drive, bit for bit,
    as each sample's alone, and the same run on one thread or two."""
    rng = np.random.default_rng(7)
    batch = paths._THREADED_DRIVE_FROM + 9
    if kind == "conv":
        net = _net(rng)
    else:
        hidden = snn.Linear(128, 20, snn.IF(), weight=rng.normal(0.1, 0.3, (20, 128)))
        net = snn.Network(
            [hidden, snn.Linear(20, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, 20)))]
        )
    x = rng.uniform(0, 1, (batch, 128)) * (rng.random((batch, 128)) < 0.6)
    drive = paths._vecmat(x, net.layers[0])
    for b in range(0, batch, 7):
        np.testing.assert_array_equal(drive[b], paths._vecmat(x[b : b + 1], net.layers[0])[0])
    one, two = (net.run(analog=x, T=6, n_threads=k) for k in (1, 2))
    np.testing.assert_array_equal(one.membrane, two.membrane)
    _assert_same(two.trains, _copies(one))
