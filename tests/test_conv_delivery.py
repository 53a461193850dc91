"""Convolution delivery by contiguous runs and the channel-last clock sweep
(``kernels.conv.spatial_runs``, ``kernels.event``'s CONV clock path).

- The runs, applied to the reordered weights (``delivery_weights``), are the
  convolution (and so are the kernel's flattened per-input tables,
  ``kernels.event._conv_tables``, which give each input the runs of its
  position in their order): the dense matrix they build equals ``naive.conv_matrix``
  exactly, and each run's pixel fields name the pixels its targets lie in;
  where ``merges_rows`` says so, the taps of a kernel row that an input
  reaches are one run (any stride), else each tap is one; the column order
  of the reordered weights is a permutation.
- The clock path of a plain IF/LIF conv layer (membranes kept channel-last
  during the run) against ``naive.clock_run`` on the summed input, in exact
  arithmetic (dyadic weights, biases and membranes; IF or a dyadic leak):
  the same spikes, in increasing neuron order within each step (the order
  the sweep of ``neuron.sweep_step`` gives), and the same final state
  (membrane, every neuron at the last step); a run cut into two chunks
  equals the uncut run; a too small spike buffer reports an overflow.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

import snn_kernels as kernels
from snn_kernels import conv as kconv
from snn_kernels.event import OK, OVERFLOW
from snn_kernels.neuron import T_LAST, V

# (c_in, h, w, c_out, kh, kw, stride_y, stride_x, pad_y, pad_x, dil_y, dil_x, groups)
GEOMETRIES = [
    (1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),  # DIGITS-CNN's first layer
    (3, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1),  # its second, smaller: rows merge
    (2, 10, 10, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1),  # EVENT-DIGITS' first, smaller: stride 2, rows merge
    (2, 9, 11, 2, 3, 4, 1, 3, 1, 1, 1, 1, 1),  # stride 3 along x, kernel 4 wide: rows merge
    (4, 6, 7, 4, 3, 2, 1, 1, 0, 1, 1, 1, 2),  # groups: one run per tap
    (2, 7, 9, 3, 2, 4, 2, 1, 1, 2, 1, 1, 1),  # stride 1 along x only: rows merge
    (2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 1, 2, 1),  # dilation along x: one run per tap
    (1, 5, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1),  # 1x1
    (2, 4, 5, 2, 4, 4, 1, 1, 2, 2, 1, 1, 1),  # kernel larger than the image with padding
]


def geometry(c_in, h, w, c_out, kh, kw, sy, sx, py, px, dy, dx, groups):
    h_out = naive.conv_out_size(h, kh, sy, py, dy)
    w_out = naive.conv_out_size(w, kw, sx, px, dx)
    return np.array([c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups], np.int64)


def dyadic_weights(geom, rng):
    """Flat weights ``[C_in/groups, kh, kw, C_out]``, multiples of 1/8."""
    c_in, c_out, kh, kw, groups = (int(geom[k]) for k in (0, 3, 6, 7, 14))
    return (rng.integers(-6, 9, (c_in // groups) * kh * kw * c_out) / 8).astype(np.float32)


@pytest.mark.parametrize("args", GEOMETRIES)
def test_runs_are_the_convolution(args):
    geom = geometry(*args)
    rng = np.random.default_rng(0)
    flat = dyadic_weights(geom, rng)
    c_in, h_in, w_in, c_out = (int(g) for g in geom[:4])
    groups = int(geom[14])
    cg_in, cg_out = c_in // groups, c_out // groups
    plane = int(geom[4] * geom[5])
    hw_in = h_in * w_in
    kk = int(geom[6] * geom[7])
    n_runs, runs = kconv.spatial_runs(geom)
    w = np.empty(flat.shape, np.float64)
    kconv.delivery_weights(geom, flat, w)
    m = np.zeros((c_in * hw_in, c_out * plane))
    for pre in range(c_in * hw_in):
        c, p = divmod(pre, hw_in)
        g = c // cg_in
        w_base = (c - g * cg_in) * kk * c_out + g * cg_out
        for r in range(n_runs[p]):
            acc0, w0, length, pixel0, n_pixels = runs[p, r]
            assert length == n_pixels * cg_out
            for q in range(length):
                a = acc0 + g * cg_out + q
                pixel, co = divmod(a, c_out)
                assert pixel0 <= pixel < pixel0 + n_pixels
                assert co // cg_out == g
                m[pre, co * plane + pixel] += w[w0 + w_base + q]
    np.testing.assert_array_equal(m, naive.conv_matrix(geom, flat))
    n_taps, _, tap = kconv.spatial_taps(geom)
    if kconv.merges_rows(geom):  # one run per kernel row that reaches the output
        rows = [len({int(k) // int(geom[7]) for k in tap[p, : n_taps[p]]}) for p in range(hw_in)]
        np.testing.assert_array_equal(n_runs, rows)
    else:  # one run per tap
        np.testing.assert_array_equal(n_runs, n_taps)


@pytest.mark.parametrize("args", GEOMETRIES)
def test_kernel_tables_are_the_runs_in_order(args):
    """``kernels.event._conv_tables`` (what the CONV kernel reads per input
    spike: one row per input neuron, the runs of its position flattened)
    gives each input neuron the runs of ``spatial_runs`` in their order
    (the order of the additions, so of the rounding), with its channel's
    offsets, and so the convolution."""
    from snn_kernels.event import PRE_ACC, PRE_END, PRE_FIRST, PRE_KEY, PRE_W, _conv_tables

    geom = geometry(*args)
    flat = dyadic_weights(geom, np.random.default_rng(4))
    c_in, h_in, w_in, c_out = (int(g) for g in geom[:4])
    groups = int(geom[14])
    cg_in, cg_out = c_in // groups, c_out // groups
    plane = int(geom[4] * geom[5])
    hw_in = h_in * w_in
    kk = int(geom[6] * geom[7])
    n_runs, runs = kconv.run_tables(geom)
    w_st, pre_rows, flat_runs = _conv_tables(geom, flat, n_runs, runs, np.zeros(1))
    expected_w = np.empty(flat.shape, np.float64)
    kconv.delivery_weights(geom, flat, expected_w)
    np.testing.assert_array_equal(w_st, expected_w)
    m = np.zeros((c_in * hw_in, c_out * plane))
    for pre in range(c_in * hw_in):
        c, p = divmod(pre, hw_in)
        g = c // cg_in
        assert pre_rows[pre, PRE_ACC] == g * cg_out
        assert pre_rows[pre, PRE_W] == (c - g * cg_in) * kk * c_out + g * cg_out
        assert pre_rows[pre, PRE_KEY] == g * plane
        mine = flat_runs[pre_rows[pre, PRE_FIRST] : pre_rows[pre, PRE_END]]
        np.testing.assert_array_equal(mine, runs[p, : n_runs[p]])
        for acc0, w0, length, _, _ in mine:
            for q in range(length):
                pixel, co = divmod(int(acc0 + pre_rows[pre, PRE_ACC] + q), c_out)
                m[pre, co * plane + pixel] += w_st[w0 + pre_rows[pre, PRE_W] + q]
    np.testing.assert_array_equal(m, naive.conv_matrix(geom, flat))


@pytest.mark.parametrize("kw", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_column_order_is_a_permutation(kw, stride):
    cols = [kconv.column(kx, kw, stride) for kx in range(kw)]
    assert sorted(cols) == list(range(kw))
    for kx in range(kw - stride):  # kx + stride comes just before kx
        assert cols[kx + stride] == cols[kx] - 1


def _raster(geom, n_steps, batch, p, rng):
    n_in = int(geom[0] * geom[1] * geom[2])
    return rng.random((batch, n_steps, n_in)) < p


def _trains(raster):
    """Per-sample time-CSR of a ``[B, T, n]`` bool raster."""
    batch, n_steps, _ = raster.shape
    tptr = np.zeros((batch, n_steps + 1), np.int64)
    idx = np.zeros((batch, max(1, int(raster.sum(axis=(1, 2)).max()))), np.int32)
    for b in range(batch):
        events = [np.flatnonzero(raster[b, t]) for t in range(n_steps)]
        tptr[b, 1:] = np.cumsum([len(e) for e in events])
        if tptr[b, -1]:
            idx[b, : tptr[b, -1]] = np.concatenate(events)
    return tptr, idx


def _clock(geom, flat, raster, bias, v_init, beta, reset_mode, state=None, cap=None, elapsed=0):
    """The CONV clock kernel on one batch; ``state`` given: continue it
    (``v_init`` empty)."""
    batch, n_steps, _ = raster.shape
    n = int(geom[3] * geom[4] * geom[5])
    tptr, idx = _trains(raster)
    table = naive.table(beta, None, elapsed + n_steps)
    if state is None:
        state = np.empty((batch, n, 2))
    else:
        v_init = np.zeros(0)
    cap = n_steps * n if cap is None else cap
    out_tptr = np.empty((batch, n_steps + 1), np.int64)
    out_idx = np.empty((batch, cap), np.int32)
    counts = np.zeros((batch, 4), np.int64)
    kernels.conv_layer(
        tptr, idx, geom, flat, bias, table, 1.0, reset_mode, 0.25, 0, v_init, False, False, False,
        state, out_tptr, out_idx, counts, clock=True,
    )  # fmt: skip
    return state, out_tptr, out_idx, counts


@pytest.mark.parametrize("args", GEOMETRIES)
@pytest.mark.parametrize("beta, reset_mode", [(1.0, kernels.RESET_SUBTRACT), (0.5, kernels.RESET_TO_VALUE)])
@pytest.mark.parametrize("shared_bias", [False, True])
def test_clock_sweep_matches_naive_clock_loop(args, beta, reset_mode, shared_bias):
    geom = geometry(*args)
    rng = np.random.default_rng(1)
    flat = dyadic_weights(geom, rng)
    n = int(geom[3] * geom[4] * geom[5])
    batch, n_steps = 3, 7
    raster = _raster(geom, n_steps, batch, 0.3, rng)
    bias = rng.integers(-2, 3, (1, 1 if shared_bias else n)) / 16
    v_init = rng.integers(0, 8, n) / 8
    state, out_tptr, out_idx, counts = _clock(geom, flat, raster, bias, v_init, beta, reset_mode)
    m = naive.conv_matrix(geom, flat)
    b = np.broadcast_to(bias[0], (n,))
    for s in range(batch):
        spikes, v, *_ = naive.clock_run(
            raster[s].astype(float) @ m, b, v_init, beta, None, 1.0, reset_mode, 0.25, 0
        )
        assert counts[s, 3] == OK
        assert counts[s, 2] == spikes.sum() == out_tptr[s, -1]
        assert counts[s, 1] == n_steps * n
        for t in range(n_steps):  # the same spikes, in increasing order
            got = out_idx[s, out_tptr[s, t] : out_tptr[s, t + 1]]
            np.testing.assert_array_equal(got, np.flatnonzero(spikes[t]))
        np.testing.assert_array_equal(state[s, :, V], v)
        assert np.all(state[s, :, T_LAST] == n_steps - 1)


@pytest.mark.parametrize("args", GEOMETRIES[:3])
def test_clock_sweep_in_chunks_equals_one_run(args):
    geom = geometry(*args)
    rng = np.random.default_rng(2)
    flat = dyadic_weights(geom, rng)
    n = int(geom[3] * geom[4] * geom[5])
    raster = _raster(geom, 9, 2, 0.3, rng)
    bias = rng.integers(-2, 3, (1, n)) / 16
    v_init = rng.integers(0, 8, n) / 8
    whole, tptr, idx, counts = _clock(geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT)
    first, tptr1, idx1, counts1 = _clock(geom, flat, raster[:, :4], bias, v_init, 1.0, kernels.RESET_SUBTRACT)
    first[:, :, T_LAST] -= 4  # steps count from the next chunk's start
    second, tptr2, idx2, counts2 = _clock(
        geom, flat, raster[:, 4:], bias, v_init, 1.0, kernels.RESET_SUBTRACT, state=first, elapsed=4
    )
    np.testing.assert_array_equal(second[:, :, V], whole[:, :, V])
    for s in range(2):
        joined = np.concatenate([idx1[s, : tptr1[s, -1]], idx2[s, : tptr2[s, -1]]])
        np.testing.assert_array_equal(joined, idx[s, : tptr[s, -1]])
        np.testing.assert_array_equal(np.concatenate([tptr1[s, :4], tptr2[s] + tptr1[s, -1]]), tptr[s])


def test_clock_sweep_reports_a_full_spike_buffer():
    geom = geometry(*GEOMETRIES[1])
    rng = np.random.default_rng(3)
    flat = dyadic_weights(geom, rng)
    n = int(geom[3] * geom[4] * geom[5])
    raster = _raster(geom, 6, 2, 0.5, rng)
    bias = np.full((1, 1), 0.5)
    v_init = np.full(n, 0.75)
    _, _, _, counts = _clock(geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT)
    assert np.all(counts[:, 3] == OK) and counts[:, 2].min() > n  # more spikes than one step's neurons
    for cap in (n // 2, n, int(counts[:, 2].min()) - 1):  # full inside a step, or after branch-free ones
        _, _, _, small = _clock(geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT, cap=cap)
        assert np.all(small[:, 3] == OVERFLOW), cap
    _, _, _, exact = _clock(
        geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT, cap=int(counts[:, 2].max())
    )
    np.testing.assert_array_equal(exact, counts)
