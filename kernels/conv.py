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
