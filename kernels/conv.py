"""Convolution delivery: a spike at input ``(c, y, x)`` is scattered to the
outputs its receptive field reaches, computed from the shared kernel on the
fly; the convolution is never expanded into a matrix.

Geometry ``geom`` (int64, see :data:`GEOM_FIELDS`) describes a Conv2d with
stride, padding, dilation and groups. Neurons are numbered channel-first,
``(c * H + y) * W + x``, like a flattened torch tensor. Weights are flat
float32, laid out ``[C_in / groups, kh, kw, C_out]`` so that the output
channels of one tap are contiguous.
"""

from ._jit import helper

GEOM_FIELDS = ("c_in", "h_in", "w_in", "c_out", "h_out", "w_out", "kh", "kw",
               "stride_y", "stride_x", "pad_y", "pad_x", "dil_y", "dil_x", "groups")


@helper
def conv_targets(pre, geom, taps):
    """Fill ``taps[k] = (first output neuron, weight offset)`` for each kernel
    tap of input neuron ``pre`` that lands inside the output; returns the
    number of taps. Each tap then reaches ``C_out / groups`` output channels:
    neuron ``first + co * h_out * w_out`` with weight ``offset + co``."""
    c_in, h_in, w_in = geom[0], geom[1], geom[2]
    c_out, h_out, w_out = geom[3], geom[4], geom[5]
    kh, kw = geom[6], geom[7]
    sy, sx, py, px, dy, dx, groups = geom[8], geom[9], geom[10], geom[11], geom[12], geom[13], geom[14]
    cg_in = c_in // groups
    cg_out = c_out // groups
    c = pre // (h_in * w_in)
    y = (pre // w_in) % h_in
    x = pre % w_in
    g = c // cg_in
    c_local = c - g * cg_in
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
            taps[n, 0] = (g * cg_out * h_out + oy) * w_out + ox
            taps[n, 1] = ((c_local * kh + ky) * kw + kx) * c_out + g * cg_out
            n += 1
    return n

