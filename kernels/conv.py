"""Convolution delivery: a spike at input ``(c, y, x)`` is scattered to the
outputs its receptive field reaches, computed from the shared kernel; the
convolution is never expanded into a matrix.

Geometry ``geom`` (int64, see :data:`GEOM_FIELDS`) describes a Conv2d with
stride, padding, dilation and groups. Neurons are numbered channel-first,
``(c * H + y) * W + x``, like a flattened torch tensor. Weights are flat
float32, laid out ``[C_in / groups, kh, kw, C_out]`` so that the output
channels of one tap are contiguous.

Which output pixels an input reaches depends on its position ``(y, x)``
only, so the taps are tabulated once per run over the ``H_in x W_in``
positions (:func:`spatial_taps`); the channel adds an offset.
"""

import numpy as np

from ._jit import helper, jit

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


@jit
def spatial_taps(geom):
    """Tap tables of a geometry: for input position ``p = y * W_in + x``,
    ``n_taps[p]`` kernel taps land inside the output; tap ``k`` reaches
    output pixel ``pixel[p, k]`` (``oy * W_out + ox``) through kernel
    position ``tap[p, k]`` (``ky * kw + kx``). Input channel ``c`` of group
    ``g`` then reaches output channels ``g * C_out/groups ...`` of that
    pixel, with weights ``(c_local * kh * kw + tap) * C_out + g * C_out/groups``
    onwards."""
    h_in, w_in = geom[1], geom[2]
    h_out, w_out = geom[4], geom[5]
    kh, kw = geom[6], geom[7]
    sy, sx, py, px, dy, dx = geom[8], geom[9], geom[10], geom[11], geom[12], geom[13]
    n_taps = np.zeros(h_in * w_in, np.int64)
    pixel = np.empty((h_in * w_in, kh * kw), np.int64)
    tap = np.empty((h_in * w_in, kh * kw), np.int64)
    for y in range(h_in):
        for x in range(w_in):
            p = y * w_in + x
            n = 0
            for ky in range(kh):
                ny = y + py - ky * dy
                if ny < 0 or ny % sy != 0:
                    continue
                oy = ny // sy
                if oy >= h_out:
                    continue
                for kx in range(kw):
                    nx = x + px - kx * dx
                    if nx < 0 or nx % sx != 0:
                        continue
                    ox = nx // sx
                    if ox >= w_out:
                        continue
                    pixel[p, n] = oy * w_out + ox
                    tap[p, n] = ky * kw + kx
                    n += 1
            n_taps[p] = n
    return n_taps, pixel, tap
