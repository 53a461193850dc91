"""The plain clock path's fixed-shape convolution delivery
(``kernels.event._patch_tables``: rows of one length per layer, sums on a
plane with a halo, zero weights in the slots past the kernel).

- The patch tables are the convolution: the weights they add to the
  output pixels inside the halo build ``naive.conv_matrix`` exactly (each
  synapse once, nothing else but zeros), and each input's synaptic
  operations are its taps inside the output x C_out; geometries they do not
  cover (dilation, groups) get none.
- The CONV clock kernel with the patch tables gives bit for bit the spikes,
  membranes and counts it gives with the runs alone (``_conv_tables``), on
  random non-dyadic weights, float32 and float64 (any change in the order
  or the values of the additions shows).
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

import snn_kernels as kernels
from snn_kernels import conv as kconv
from snn_kernels.event import (
    PATCH_A,
    PATCH_LEN,
    PATCH_ORIGIN,
    PATCH_ROW_A,
    PATCH_ROW_W,
    PATCH_ROWS,
    PATCH_SIZE,
    PATCH_STRIDE,
    PATCH_SYNOPS,
    PATCH_W,
    ConvTables,
    conv_tables,
)

# (c_in, h, w, c_out, kh, kw, stride_y, stride_x, pad_y, pad_x, dil_y, dil_x, groups)
COVERED = [
    (4, 10, 10, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1),  # EVENT-DIGITS' second layer, smaller
    (2, 12, 12, 4, 5, 5, 2, 2, 2, 2, 1, 1, 1),  # its first, smaller
    (1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),  # DIGITS-CNN's first layer
    (2, 9, 11, 2, 3, 4, 1, 3, 1, 1, 1, 1, 1),  # stride 3 along x, kernel 4 wide
    (2, 7, 9, 3, 2, 4, 2, 1, 1, 2, 1, 1, 1),  # stride 2 along y only
    (3, 10, 9, 2, 2, 1, 3, 2, 0, 0, 1, 1, 1),  # a kernel narrower than the stride: inputs reached by nothing
    (2, 4, 5, 2, 4, 4, 1, 1, 2, 2, 1, 1, 1),  # kernel larger than the image with padding
    (1, 5, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1),  # 1x1
]
UNCOVERED = [
    (4, 6, 7, 4, 3, 2, 1, 1, 0, 1, 1, 1, 2),  # groups
    (2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 1, 2, 1),  # dilation along x
    (2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 2, 1, 1),  # dilation along y
]


def geometry(c_in, h, w, c_out, kh, kw, sy, sx, py, px, dy, dx, groups):
    h_out = naive.conv_out_size(h, kh, sy, py, dy)
    w_out = naive.conv_out_size(w, kw, sx, px, dx)
    return np.array([c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups], np.int64)


def random_weights(geom, rng):
    c_in, c_out, kh, kw, groups = (int(geom[k]) for k in (0, 3, 6, 7, 14))
    return rng.standard_normal((c_in // groups) * kh * kw * c_out).astype(np.float32)


@pytest.mark.parametrize("args", COVERED)
def test_patches_are_the_convolution(args):
    geom = geometry(*args)
    flat = random_weights(geom, np.random.default_rng(0))
    c_in, h_in, w_in, c_out, h_out, w_out = (int(g) for g in geom[:6])
    plane = h_out * w_out
    w_patch, pre_patch, patch = conv_tables(geom, flat, np.float64).patch
    assert patch.shape[0] and w_patch.dtype == np.float64
    length, stride, origin = (int(patch[f]) for f in (PATCH_LEN, PATCH_STRIDE, PATCH_ORIGIN))
    assert length % c_out == 0 and stride % c_out == 0 and origin % c_out == 0
    w_pad = stride // c_out
    m = np.zeros((c_in * h_in * w_in, c_out * plane))
    for pre in range(c_in * h_in * w_in):
        a, w = pre_patch[pre, PATCH_A], pre_patch[pre, PATCH_W]
        for _ in range(pre_patch[pre, PATCH_ROWS]):
            assert 0 <= a and a + length <= patch[PATCH_SIZE] and 0 <= w and w + length <= w_patch.shape[0]
            for q in range(length):
                pixel, co = divmod(int(a + q - origin), c_out)
                oy, ox = divmod(pixel, w_pad)
                if 0 <= oy < h_out and 0 <= ox < w_out:
                    m[pre, co * plane + oy * w_out + ox] += w_patch[w + q]
            a -= patch[PATCH_ROW_A]
            w += patch[PATCH_ROW_W]
    expected = naive.conv_matrix(geom, flat)
    np.testing.assert_array_equal(m, expected)
    n_taps = kconv.spatial_taps(geom)[0]
    np.testing.assert_array_equal(pre_patch[:, PATCH_SYNOPS], np.tile(n_taps, c_in) * c_out)


@pytest.mark.parametrize("args", UNCOVERED)
def test_no_patches_for_dilation_or_groups(args):
    geom = geometry(*args)
    w_patch, pre_patch, patch = conv_tables(
        geom, random_weights(geom, np.random.default_rng(1)), np.float32
    ).patch
    assert w_patch.shape == (0,) and w_patch.dtype == np.float32
    assert pre_patch.shape == (0, 4) and patch.shape == (0,)


def _trains(raster):
    batch, n_steps, _ = raster.shape
    tptr = np.zeros((batch, n_steps + 1), np.int64)
    idx = np.zeros((batch, max(1, int(raster.sum(axis=(1, 2)).max()))), np.int32)
    for b in range(batch):
        events = [np.flatnonzero(raster[b, t]) for t in range(n_steps)]
        tptr[b, 1:] = np.cumsum([len(e) for e in events])
        if tptr[b, -1]:
            idx[b, : tptr[b, -1]] = np.concatenate(events)
    return tptr, idx


def _clock(geom, flat, tables, tptr, idx, bias, v_init, beta, reset_mode, dtype):
    batch, n_steps = tptr.shape[0], tptr.shape[1] - 1
    n = int(geom[3] * geom[4] * geom[5])
    state = np.empty((batch, n, 2), dtype)
    out_tptr = np.empty((batch, n_steps + 1), np.int64)
    out_idx = np.empty((batch, n_steps * n), np.int32)
    counts = np.zeros((batch, 4), np.int64)
    table = naive.table(beta, None, n_steps).astype(dtype)
    kernels.conv_layer(
        tptr, idx, geom, flat, bias, table, dtype(1.0), reset_mode, dtype(0.25), 0, v_init, False, False,
        False, state, out_tptr, out_idx, counts, clock=True, tables=tables,
    )  # fmt: skip
    return state, out_tptr, out_idx, counts


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("args", COVERED)
def test_patched_clock_path_equals_the_runs(args, dtype):
    """Non-dyadic weights, membranes and biases: the same additions in the
    same order, so the same rounding, whichever tables deliver."""
    geom = geometry(*args)
    rng = np.random.default_rng(2)
    flat = random_weights(geom, rng) * 0.7
    n = int(geom[3] * geom[4] * geom[5])
    n_in = int(geom[0] * geom[1] * geom[2])
    tptr, idx = _trains(rng.random((3, 8, n_in)) < 0.35)
    bias = (rng.normal(0.05, 0.1, (1, n))).astype(dtype)
    v_init = rng.normal(0.2, 0.3, n).astype(dtype)
    patched = conv_tables(geom, flat, dtype)
    runs = ConvTables(tuple(patched))
    runs.patch = (np.zeros(0, dtype), np.zeros((0, 4), np.int64), np.zeros(0, np.int64))
    for beta, reset in ((1.0, kernels.RESET_SUBTRACT), (0.9, kernels.RESET_TO_VALUE)):
        a = _clock(geom, flat, patched, tptr, idx, bias, v_init, beta, reset, dtype)
        b = _clock(geom, flat, runs, tptr, idx, bias, v_init, beta, reset, dtype)
        state_a, tptr_a, idx_a, counts_a = a
        state_b, tptr_b, idx_b, counts_b = b
        np.testing.assert_array_equal(counts_a, counts_b)
        assert (counts_a[:, 3] == 0).all() and counts_a[:, 2].sum() > 0
        np.testing.assert_array_equal(tptr_a, tptr_b)
        for s in range(3):
            np.testing.assert_array_equal(idx_a[s, : tptr_a[s, -1]], idx_b[s, : tptr_b[s, -1]])
        np.testing.assert_array_equal(state_a, state_b)
