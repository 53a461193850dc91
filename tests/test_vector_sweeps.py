"""The branch-free sweeps of plain IF/LIF neurons (no synaptic current, no
refractory period): ``kernels.clock_layer`` (a merge's sweep) and the clock
path of ``kernels.csr_layer`` (membranes in a row of their own, swept as a
conv layer's), against a numpy loop of the same arithmetic on random
(non-dyadic) values, so that any change in the order of operations shows;
their output buffers filled exactly, and overflowing; runs cut into chunks.
And the max-pool gate's window table against the windows themselves."""

import numpy as np
import pytest

import snn_kernels as kernels
from snn_kernels.neuron import RESET_NONE, RESET_SUBTRACT, RESET_TO_VALUE
from snn_kernels.pool import window_table, windows_of

RESETS = [RESET_SUBTRACT, RESET_TO_VALUE, RESET_NONE]


def after(v, thr, reset, v_reset):
    return v - thr if reset == RESET_SUBTRACT else (v if reset == RESET_NONE else v_reset)


def sweep_reference(currents, b, v0, decay, thr, reset, v_reset):
    """``v <- v * decay + b + current`` step by step, as the kernels order it;
    spikes per step in neuron order; the final membrane and each neuron's
    last spike step (-1 if none)."""
    v = v0.copy()
    last = np.full(len(v), -1, np.int64)
    spikes = []
    for t, current in enumerate(currents):
        fired = []
        for j in range(len(v)):
            x = v[j] * decay + b[j] + current[j]
            if x >= thr:
                fired.append(j)
                x = after(x, thr, reset, v_reset)
                last[j] = t
            v[j] = x
        spikes.append(fired)
    return spikes, v, last


def trains_of(out_tptr, out_idx):
    return [list(out_idx[out_tptr[t] : out_tptr[t + 1]]) for t in range(len(out_tptr) - 1)]


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_clock_layer_plain_sweep(reset, shared, seed):
    rng = np.random.default_rng(seed)
    batch, n_steps, n = 3, 9, 37
    currents = rng.normal(0.3, 0.7, (batch, n_steps, n))
    bias = rng.normal(0.1, 0.2, (1, 1 if shared else n))
    v_init = rng.normal(0, 0.5, n)
    beta, thr, v_reset = 0.93, 1.0, -0.125
    per_sample = []
    for s in range(batch):
        b = np.broadcast_to(bias[0], (n,))
        spikes, v, last = sweep_reference(currents[s], b, v_init, beta, thr, reset, v_reset)
        per_sample.append((spikes, v, last))
    most = max(sum(len(f) for f in spikes) for spikes, _, _ in per_sample)
    for cap in (most, n_steps * n, max(0, most - 1)):  # exactly enough, room for all, one short
        state = np.zeros((batch, n, 4))
        out_tptr = np.zeros((batch, n_steps + 1), np.int64)
        out_idx = np.full((batch, max(cap, 1) if cap else 0), -7, np.int32)
        counts = np.zeros((batch, 4), np.int64)
        kernels.clock_layer(
            currents, bias, 0.0, beta, thr, reset, v_reset, 0, v_init, False, state, out_tptr, out_idx, counts
        )
        for s, (spikes, v, last) in enumerate(per_sample):
            if sum(len(f) for f in spikes) > out_idx.shape[1]:
                assert counts[s, 3] == 1
                continue
            assert counts[s, 3] == 0 and counts[s, 2] == sum(len(f) for f in spikes)
            assert trains_of(out_tptr[s], out_idx[s]) == spikes
            assert np.array_equal(state[s, :, 0], v)
            assert (state[s, :, 1] == n_steps - 1).all()
            assert np.array_equal(state[s, :, 3], np.where(last >= 0, last, -1))


@pytest.mark.parametrize("seed", range(3))
def test_clock_layer_plain_sweep_in_two_chunks(seed):
    """A run cut in two (the second chunk continues the state, its steps
    counted from its start, ``ref`` shifted as the caller shifts it): the
    spikes, membranes and each neuron's last spike step of the uncut run;
    a neuron silent in the second chunk keeps the step it carried."""
    rng = np.random.default_rng(20 + seed)
    batch, n_steps, n, cut = 2, 10, 29, 6
    currents = rng.normal(0.2, 0.6, (batch, n_steps, n))
    bias = rng.normal(0.0, 0.1, (1, n))
    v_init = rng.normal(0, 0.5, n)
    args = (0.0, 0.9, 1.0, RESET_SUBTRACT, 0.0, 0, v_init, False)

    def run(cur, state, v0):
        out_tptr = np.zeros((batch, cur.shape[1] + 1), np.int64)
        out_idx = np.zeros((batch, cur.shape[1] * n), np.int32)
        counts = np.zeros((batch, 4), np.int64)
        kernels.clock_layer(cur, bias, *args[:6], v0, False, state, out_tptr, out_idx, counts)
        return [trains_of(out_tptr[s], out_idx[s]) for s in range(batch)]

    whole = np.zeros((batch, n, 4))
    spikes = run(currents, whole, v_init)
    state = np.zeros((batch, n, 4))
    first = run(np.ascontiguousarray(currents[:, :cut]), state, v_init)
    state[..., 1] -= cut
    state[..., 3] -= cut
    second = run(np.ascontiguousarray(currents[:, cut:]), state, np.zeros(0))
    for s in range(batch):
        assert first[s] + second[s] == spikes[s]
    np.testing.assert_array_equal(state[..., 0], whole[..., 0])
    np.testing.assert_array_equal(state[..., 3] + cut, whole[..., 3])
    silent = [j for j in range(n) if not any(j in f for f in second[0])]
    assert silent and any(any(j in f for f in first[0]) for j in silent)  # carried, not rewritten


def _csr(rng, n_in, n, density):
    dense = np.where(rng.random((n_in, n)) < density, rng.normal(0, 0.4, (n_in, n)), 0.0)
    rowptr = np.zeros(n_in + 1, np.int64)
    cols, weights = [], []
    for i in range(n_in):
        js = rng.permutation(np.flatnonzero(dense[i]))  # unsorted targets: the order of the adds matters
        cols.extend(js)
        weights.extend(dense[i, js])
        rowptr[i + 1] = rowptr[i] + len(js)
    return rowptr, np.array(cols, np.int32), np.array(weights, np.float32)


def _csr_currents(tptr, idx, rowptr, cols, weights, n_steps, n):
    """Each step's input summed from zero in delivery order (float64)."""
    out = np.zeros((n_steps, n))
    for t in range(n_steps):
        for e in range(tptr[t], tptr[t + 1]):
            for s in range(rowptr[idx[e]], rowptr[idx[e] + 1]):
                out[t, cols[s]] += np.float64(weights[s])
    return out


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("seed", range(3))
def test_csr_clock_plain_sweep_and_chunks(reset, seed):
    rng = np.random.default_rng(10 + seed)
    n_in, n, n_steps = 20, 41, 12
    rowptr, cols, weights = _csr(rng, n_in, n, 0.3)
    raster = rng.random((n_steps, n_in)) < 0.3
    tptr = np.zeros((1, n_steps + 1), np.int64)
    tptr[0, 1:] = np.cumsum(raster.sum(axis=1))
    idx = np.array([np.flatnonzero(raster[t]) for t in range(n_steps)], dtype=object)
    idx = np.concatenate(list(idx)).astype(np.int32)[None, :]
    bias = rng.normal(0.05, 0.1, (1, n))
    v_init = rng.normal(0, 0.5, n)
    decay, gain, thr, v_reset = 0.9, 0.75, 1.0, -0.25
    table = np.zeros((n_steps + 1, 5))
    table[:, 0] = decay ** np.arange(n_steps + 1)
    table[:, 2] = gain  # the plain sweep reads table[1] only
    currents = _csr_currents(tptr[0], idx[0], rowptr, cols, weights, n_steps, n)
    spikes, v, _ = sweep_reference(currents, bias[0] * gain, v_init, decay, thr, reset, v_reset)

    def run(t0, t1, state, v0):
        tp = tptr[:, t0 : t1 + 1] - tptr[:, t0 : t0 + 1]
        ix = (
            np.ascontiguousarray(idx[:, tptr[0, t0] : tptr[0, t1]])
            if tp[0, -1]
            else np.zeros((1, 1), np.int32)
        )
        out_tptr = np.zeros((1, t1 - t0 + 1), np.int64)
        out_idx = np.zeros((1, (t1 - t0) * n + 1), np.int32)
        counts = np.zeros((1, 4), np.int64)
        kernels.csr_layer(
            tp, ix, rowptr, cols, weights, bias, table, thr, reset, v_reset, 0, v0, False, False, False,
            state, out_tptr, out_idx, counts, clock=True,
        )  # fmt: skip
        assert counts[0, 3] == 0 and counts[0, 1] == n * (t1 - t0)
        assert counts[0, 0] == sum(rowptr[i + 1] - rowptr[i] for i in ix[0, : tp[0, -1]])
        return trains_of(out_tptr[0], out_idx[0])

    state = np.zeros((1, n, 2))
    assert run(0, n_steps, state, v_init) == spikes
    assert np.array_equal(state[0, :, 0], v) and (state[0, :, 1] == n_steps - 1).all()
    cut = int(rng.integers(1, n_steps))
    state = np.zeros((1, n, 2))
    first = run(0, cut, state, v_init)
    state[:, :, 1] -= cut  # the next chunk counts steps from its start
    second = run(cut, n_steps, state, np.zeros(0))
    assert first + second == spikes
    assert np.array_equal(state[0, :, 0], v)


@pytest.mark.parametrize(
    "c, h, w, kh, kw, sy, sx, py, px",
    [
        (2, 16, 16, 3, 3, 2, 2, 1, 1),
        (1, 7, 5, 2, 3, 1, 2, 1, 1),
        (3, 6, 6, 2, 2, 2, 2, 0, 0),
        (1, 9, 9, 2, 2, 3, 3, 1, 0),
    ],
)
def test_window_table(c, h, w, kh, kw, sy, sx, py, px):
    """Each input's packed windows are those of torch's MaxPool2d containing it, in row-major order."""
    h_out, w_out = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    geom = np.array([c, h, w, h_out, w_out, kh, kw, sy, sx, py, px], np.int64)
    table = window_table(geom)
    for ch in range(c):
        for y in range(h):
            for x in range(w):
                want = [
                    (ch * h_out + oy) * w_out + ox
                    for oy in range(h_out)
                    for ox in range(w_out)
                    if oy * sy - py <= y < oy * sy - py + kh and ox * sx - px <= x < ox * sx - px + kw
                ]
                packed = int(table[(ch * h + y) * w + x])
                base, rows, cols = packed & ((1 << 40) - 1), (packed >> 40) & 255, (packed >> 48) & 255
                got = [base + r * w_out + q for r in range(rows) for q in range(cols)]
                assert got == want


def test_window_table_made_once_per_geometry():
    """The gate's window table is remembered per geometry: equal geometries
    (other arrays) get the same table, equal to a fresh one; another
    geometry gets its own."""
    geom = np.array([3, 7, 6, 4, 3, 3, 3, 2, 2, 1, 1], np.int64)
    table = windows_of(geom)
    assert windows_of(geom.copy()) is table
    np.testing.assert_array_equal(table, window_table(geom))
    other = geom.copy()
    other[9] = 0  # no padding: other windows
    other[3] = 3
    assert windows_of(other) is not table
    np.testing.assert_array_equal(windows_of(other), window_table(other))
