"""Merge layers run their samples in blocks (``snn.run.schedule._merge_block``):
the currents of a block are delivered and swept in one buffer reused by every
block. Checked here: whatever the block size (uneven last blocks included),
a batch whose samples differ gives each sample what it gives run alone:
spikes, counts, SynOps per projection and the final membrane, also over
chunks of steps (the carried state split by block) and with per-sample
drives (constant and over time)."""

from __future__ import annotations

import numpy as np
import pytest

import snn
import snn.run.schedule as schedule
from snn.run.schedule import _MergeLayer

DYADIC = np.arange(-16, 17) / 8.0
T, BATCH = 12, 5


def _graph():
    """Two merges: a convolution and a one-to-one CSR projection (the residual
    add, delayed), and two convolutions sharing their sums (the strided block's
    shortcut), the second merge the readout."""
    rng = np.random.default_rng(7)
    g = snn.Graph()
    x = g.input((2, 6, 6), name="x")
    h = g.population((3, 6, 6), snn.IF(threshold=1.0), name="h")
    m1 = g.population((3, 6, 6), snn.IF(threshold=1.0), name="m1", bias=rng.choice(DYADIC, 108) / 8)
    m2 = g.population((4, 3, 3), snn.IF(threshold=1.5, reset="zero"), name="m2")
    g.conv(x, h, rng.choice(DYADIC, (3, 2, 3, 3)), padding=1)
    g.conv(h, m1, rng.choice(DYADIC, (3, 3, 3, 3)), padding=1, name="h-m1")
    g.connect(h, m1, 0.75, connectivity=(np.arange(109), np.arange(108)), delay=1, name="h=m1")
    g.conv(m1, m2, rng.choice(DYADIC, (4, 3, 3, 3)), stride=2, padding=1, name="m1-m2")
    g.conv(h, m2, rng.choice(DYADIC, (4, 3, 1, 1)), stride=2, name="h-m2")
    assert {s.names[0] for s in g.schedule() if isinstance(s.layer, _MergeLayer)} == {"m1", "m2"}
    return g


def _inputs():
    rng = np.random.default_rng(11)
    rates = rng.uniform(0.05, 0.6, BATCH)  # samples of different activity
    spikes = (rng.random((T, BATCH, 72)) < rates[None, :, None]).astype(np.uint8)
    drive = {"m1": rng.choice(DYADIC, (BATCH, 108)) / 4, "m2": rng.choice(DYADIC, (T, BATCH, 36)) / 4}
    return spikes, drive


def _sample(drive, rows):
    return {k: (d[rows] if d.ndim == 2 else d[:, rows]) for k, d in drive.items()}


def _run(g, spikes, drive, chunks=None):
    """Result and SynOps per projection of a run, cut into ``chunks`` (steps)."""
    sim = g.start(T, inputs={"x": spikes}, drive=drive, mode="clock")
    for steps in chunks or [T]:
        sim.advance(steps)
    return sim.result(), sim._proj_synops


@pytest.mark.parametrize("size", [1, 2, 3, BATCH])
@pytest.mark.parametrize("chunks", [None, [5, 1, 6]])
def test_blocks_keep_samples_apart(monkeypatch, size, chunks):
    g = _graph()
    spikes, drive = _inputs()
    alone = [_run(g, spikes[:, [b]], _sample(drive, [b])) for b in range(BATCH)]
    blocks = []
    real = schedule._merge_block
    monkeypatch.setattr(schedule, "_merge_block", lambda *a: blocks.append(real(*a)) or size)
    batch, synops = _run(g, spikes, drive, chunks)
    assert blocks  # the merges ran in blocks of ``size``
    for b, (one, one_synops) in enumerate(alone):
        for name in one.names:
            np.testing.assert_array_equal(batch.spikes(name)[:, b], one.spikes(name)[:, 0], err_msg=name)
            kb, k1 = batch.counts[batch.names.index(name)], one.counts[one.names.index(name)]
            for field in ("synops", "updates", "spikes", "input_events"):
                np.testing.assert_array_equal(getattr(kb, field)[b], getattr(k1, field)[0], err_msg=field)
        for key, count in one_synops.items():
            assert synops[key][b] == count[0], key
        np.testing.assert_array_equal(batch.membrane[b], one.membrane[0])
    assert all(batch.spikes(name).any() for name in ("m1", "m2"))


def _overflowing():
    """A merge whose sample 3 fires at every step (over the first guess of
    the output buffer, 1024 spikes), its inputs and drive."""
    g = snn.Graph()
    x = g.input(300, name="x")
    m = g.population(300, snn.IF(threshold=1.0), name="m")
    g.connect(x, m, 0.5, connectivity=(np.arange(301), np.arange(300)), delay=0, name="now")
    g.connect(x, m, 0.25, connectivity=(np.arange(301), np.arange(300)), delay=1, name="later")
    (layer,) = [s.layer for s in g.schedule() if isinstance(s.layer, _MergeLayer)]
    rng = np.random.default_rng(5)
    spikes = (rng.random((T, BATCH, 300)) < 0.3).astype(np.uint8)
    drive = {"m": np.array([0.0, 0.0, 0.125, 2.0, 0.0])[:, None] * np.ones((BATCH, 300))}  # 3: every step
    return g, layer, spikes, drive


def test_a_block_that_overflows_the_output_buffer_runs_again(monkeypatch):
    """A block whose spikes overflow the output buffer (a guess) is swept
    again with a larger one, the rows of the blocks before it kept."""
    g, layer, spikes, drive = _overflowing()
    alone = [_run(g, spikes[:, [b]], _sample(drive, [b]))[0] for b in range(BATCH)]
    assert alone[3].spikes("m").sum() == T * 300 > 1024  # over the first guess (1024 spikes)
    sweeps = []
    real = schedule.kernels.clock_layer
    monkeypatch.setattr(schedule.kernels, "clock_layer", lambda *a: sweeps.append(len(a[0])) or real(*a))
    monkeypatch.setattr(schedule, "_merge_block", lambda *a: 2)
    layer.spikes_per_step = 0.0  # the guess, not what the runs alone left
    batch = _run(g, spikes, drive)[0]
    assert sweeps == [2, 2, 2, 1]  # blocks 0-1, 2-3 (overflows: again), 4
    for b, one in enumerate(alone):
        np.testing.assert_array_equal(batch.spikes("m")[:, b], one.spikes("m")[:, 0])
        np.testing.assert_array_equal(batch.counts[-1].spikes[b], one.counts[-1].spikes[0])
    np.testing.assert_array_equal(batch.membrane, np.concatenate([one.membrane for one in alone]))


def test_block_size_follows_the_budget(monkeypatch):
    """Blocks hold MERGE_BLOCK_BYTES of currents (and shared sums), at least
    one sample, and at least one per thread."""
    g = _graph()
    m1, m2 = (s.layer for s in g.schedule() if isinstance(s.layer, _MergeLayer))
    per_m1 = 10 * 108 * 8  # 10 steps of currents, float64
    monkeypatch.setattr(schedule.numba, "get_num_threads", lambda: 1)
    monkeypatch.setattr(schedule, "MERGE_BLOCK_BYTES", 3 * per_m1)
    assert schedule._merge_block(m1, 10, np.float64, 32) == 3
    assert schedule._merge_block(m1, 10, np.float32, 32) == 6
    assert schedule._merge_block(m2, 10, np.float64, 32) == 3 * per_m1 // (2 * 10 * 36 * 8)  # shared sums
    assert schedule._merge_block(m1, 10, np.float64, 2) == 2
    monkeypatch.setattr(schedule, "MERGE_BLOCK_BYTES", 1)
    assert schedule._merge_block(m1, 10, np.float64, 32) == 1
    monkeypatch.setattr(schedule.numba, "get_num_threads", lambda: 2)
    assert schedule._merge_block(m1, 10, np.float64, 32) == 2


def test_a_run_with_no_samples_left():
    """keep([]) (every sample left early): the merges run no block."""
    g = _graph()
    spikes, drive = _inputs()
    sim = g.start(T, inputs={"x": spikes}, drive=drive, mode="clock").advance(4).keep([])
    result = sim.advance().result()
    assert all(c.spikes.shape == (0,) for c in result.counts)


def test_an_overflowing_block_of_a_later_chunk_starts_again_from_its_state(monkeypatch):
    """In a chunk that continues a run, a block swept again after an
    overflow starts from the state the chunk began with: its samples that
    did not overflow are not stepped twice."""
    g, layer, spikes, drive = _overflowing()
    whole = _run(g, spikes, drive)[0]
    monkeypatch.setattr(schedule, "_merge_block", lambda *a: 2)
    sim = g.start(T, inputs={"x": spikes}, drive=drive, mode="clock")
    sweeps = []
    real = schedule.kernels.clock_layer
    monkeypatch.setattr(schedule.kernels, "clock_layer", lambda *a: sweeps.append(len(a[0])) or real(*a))
    for steps in (5, 7):
        layer.spikes_per_step = (
            0.0  # the first guess again: the block of samples 2-3 overflows in both chunks
        )
        sim.advance(steps)
    assert sweeps == [2, 2, 2, 1] * 2
    cut = sim.result()
    np.testing.assert_array_equal(cut.spikes("m"), whole.spikes("m"))
    np.testing.assert_array_equal(cut.counts[-1].spikes, whole.counts[-1].spikes)
    np.testing.assert_array_equal(cut.membrane, whole.membrane)
