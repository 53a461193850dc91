"""Convolution delivery: a spike at input ``(c, y, x)`` is scattered to the
outputs its receptive field reaches, computed from the shared kernel; the
convolution is never expanded into a matrix.

Geometry ``geom`` (int64, see :data:`GEOM_FIELDS`) describes a Conv2d with
stride, padding, dilation and groups. Neurons are numbered channel-first,
``(c * H + y) * W + x``, like a flattened torch tensor. Weights are flat
float32, laid out ``[C_in / groups, kh, kw, C_out]`` so that the output
channels of one tap are contiguous.

Which output pixels an input reaches depends on its position ``(y, x)``
only, so the taps are tabulated once per call over the ``H_in x W_in``
positions (:func:`spatial_taps`, by numpy) and handed to the kernels; the
channel adds an offset.
"""

import functools

import numpy as np

from ._jit import helper

GEOM_FIELDS = (
    "c_in",
    "h_in",
    "w_in",
    "c_out",
    "h_out",
    "w_out",
    "kh",
    "kw",
    "stride_y",
    "stride_x",
    "pad_y",
    "pad_x",
    "dil_y",
    "dil_x",
    "groups",
)


@helper
def conv_sizes(geom):
    """``(H_in * W_in, C_in / groups, C_out, C_out / groups, kh * kw,
    H_out * W_out)`` of a geometry."""
    return (
        geom[1] * geom[2],
        geom[0] // geom[14],
        geom[3],
        geom[3] // geom[14],
        geom[6] * geom[7],
        geom[4] * geom[5],
    )


def spatial_taps(geom):
    """Tap tables of a geometry: for input position ``p = y * W_in + x``,
    ``n_taps[p]`` kernel taps land inside the output; tap ``k`` reaches
    output pixel ``pixel[p, k]`` (``oy * W_out + ox``) through kernel
    position ``tap[p, k]`` (``ky * kw + kx``), in the order of ``(ky, kx)``.
    Input channel ``c`` of group ``g`` then reaches output channels ``g *
    C_out/groups ...`` of that pixel, with weights ``(c_local * kh * kw +
    tap) * C_out + g * C_out/groups`` onwards. Three int64 arrays
    (``[H_in * W_in]``, ``[H_in * W_in, kh * kw]`` twice; entries past
    ``n_taps[p]`` are unspecified).

    Computed by numpy, once per call of a layer function (not per sample),
    so that no kernel of its own is compiled for it."""
    h_in, w_in, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx = (
        int(v) for v in geom[[1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
    )
    y = np.arange(h_in, dtype=np.int64)[:, None]
    x = np.arange(w_in, dtype=np.int64)[None, :]
    reached = np.zeros((h_in * w_in, kh * kw), bool)
    pixel = np.zeros((h_in * w_in, kh * kw), np.int64)
    for ky in range(kh):
        ny = y + py - ky * dy  # the output row oy reads input row y through ky iff ny == oy * sy
        oy = ny // sy
        row_ok = (ny >= 0) & (ny % sy == 0) & (oy < h_out)
        for kx in range(kw):
            nx = x + px - kx * dx
            ox = nx // sx
            col_ok = (nx >= 0) & (nx % sx == 0) & (ox < w_out)
            reached[:, ky * kw + kx] = (row_ok & col_ok).ravel()
            pixel[:, ky * kw + kx] = (oy * w_out + ox).ravel()
    tap = np.argsort(~reached, axis=1, kind="stable")  # the taps that land first, in (ky, kx) order
    return reached.sum(axis=1, dtype=np.int64), np.take_along_axis(pixel, tap, axis=1), tap.astype(np.int64)


def tap_tables(geom):
    """:func:`spatial_taps` of ``geom``, read-only, remembered for the last
    few geometries (a layer's runs reuse them)."""
    return _tap_tables(np.ascontiguousarray(geom, np.int64).tobytes())


@functools.lru_cache(maxsize=64)
def _tap_tables(geom_bytes):
    tables = spatial_taps(np.frombuffer(geom_bytes, np.int64))
    for table in tables:
        table.flags.writeable = False
    return tables


NO_TAPS = _tap_tables(np.zeros(15, np.int64).tobytes())  # placeholders of the same types (not a convolution)


RUN_ACC, RUN_W, RUN_LEN, RUN_PIXEL, RUN_PIXELS = range(5)  # the fields of a delivery run


def merges_rows(geom):
    """True if the taps of one kernel row that an input reaches land on
    consecutive output pixels (dilation 1 along x: the columns ``kx``, ``kx
    + stride``, ... reach pixels ``ox``, ``ox - 1``, ...) and their channels
    are contiguous there (one group): with the kernel's columns reordered
    (:func:`column`), their channel-last targets and their weights are then
    one contiguous run each."""
    return int(geom[13]) == 1 and int(geom[14]) == 1


@helper
def column(kx, kw, stride):
    """Where kernel column ``kx`` goes in a row of :func:`delivery_weights`
    when rows merge: the columns grouped by ``kx % stride`` (an input
    reaches the columns of one group only), each group in decreasing ``kx``
    (increasing output pixel)."""
    r = kx % stride
    before = 0
    for q in range(r):
        before += (kw - q + stride - 1) // stride
    return before + (kw - 1 - kx) // stride


column_in_python = getattr(column, "py_func", column)  # the same, called from Python: no wrapper to compile


def spatial_runs(geom):
    """Delivery runs of a geometry: for input position ``p = y * W_in + x``,
    ``n_runs[p]`` runs ``runs[p, r]`` (int64 fields :data:`RUN_ACC` ...):
    add weights ``w[RUN_W + c_local * kh * kw * C_out + g * C_out/groups
    ...]`` (``w``: :func:`delivery_weights`) to the channel-last input sums
    ``acc[RUN_ACC + g * C_out/groups ...]`` (``acc[pixel * C_out + c]``),
    ``RUN_LEN`` of them, reaching ``RUN_PIXELS`` output pixels from
    ``RUN_PIXEL`` on. Where :func:`merges_rows`, a run is a whole kernel row
    (``RUN_LEN`` = its taps inside the output x C_out), otherwise a tap
    (C_out/groups). Built from :func:`spatial_taps`, in its order of rows;
    entries past ``n_runs[p]`` are unspecified."""
    n_taps, pixel, tap = spatial_taps(geom)
    kw, c_out, sx, groups = int(geom[7]), int(geom[3]), int(geom[9]), int(geom[14])
    cg_out = c_out // groups if groups else 0
    n_pos, n_tap = pixel.shape
    runs = np.zeros((n_pos, max(n_tap, 1), 5), np.int64)
    n_runs = np.zeros(n_pos, np.int64)
    merge = merges_rows(geom)
    for p in range(n_pos):
        r, last_ky, last_kx = -1, -1, -1
        for k in range(int(n_taps[p])):
            ky, kx = divmod(int(tap[p, k]), kw)
            # taps in (ky, kx) order: along a row, kx + stride reaches the pixel before
            # (ox = (x + px - kx) / stride)
            if merge and r >= 0 and ky == last_ky and kx == last_kx + sx:
                runs[p, r, RUN_ACC] -= c_out
                runs[p, r, RUN_W] -= c_out  # reordered columns: kx + stride comes just before kx
                runs[p, r, RUN_LEN] += c_out
                runs[p, r, RUN_PIXEL] -= 1
                runs[p, r, RUN_PIXELS] += 1
            else:
                r += 1
                col = column_in_python(kx, kw, sx) if merge else kx
                runs[p, r] = (pixel[p, k] * c_out, (ky * kw + col) * c_out, cg_out, pixel[p, k], 1)
            last_ky, last_kx = ky, kx
        n_runs[p] = r + 1
    return n_runs, runs


def run_tables(geom):
    """:func:`spatial_runs` of ``geom``, read-only, remembered for the last
    few geometries."""
    return _run_tables(np.ascontiguousarray(geom, np.int64).tobytes())


@functools.lru_cache(maxsize=64)
def _run_tables(geom_bytes):
    tables = spatial_runs(np.frombuffer(geom_bytes, np.int64))
    for table in tables:
        table.flags.writeable = False
    return tables


NO_RUNS = _run_tables(np.zeros(15, np.int64).tobytes())  # placeholders of the same types


@helper
def delivery_weights(geom, weights, out):
    """The flat weights ``[C_in / groups, kh, kw, C_out]`` as
    :func:`spatial_runs` reads them, in ``out`` (any float dtype: converted
    once, exactly, instead of at every synaptic operation): the same layout,
    with each kernel row's columns reordered (:func:`column`) where
    :func:`merges_rows`."""
    kw = geom[7]
    c_out = geom[3]
    merge = geom[13] == 1 and geom[14] == 1
    rows = weights.shape[0] // (kw * c_out)
    for row in range(rows):
        for kx in range(kw):
            col = column(kx, kw, geom[9]) if merge else kx
            src = (row * kw + kx) * c_out
            dst = (row * kw + col) * c_out
            for co in range(c_out):
                out[dst + co] = weights[src + co]
