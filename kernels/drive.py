"""Synaptic drive computed outside the neuron kernels, in float64.

- :func:`dense_drive`, :func:`conv_drive`, :func:`csr_drive`: a constant
  analog input multiplied once, ``drive[b] = x[b] @ W``, by scattering each
  non-zero input through its synapses (the connectivity arguments of
  ``kernels.event``'s layer functions: no expanded matrix for a
  convolution, no BLAS call whose worker threads would spin against the
  kernels' own). ``x`` ``[B, n_in]`` float64; ``drive`` ``[B, n]`` float64,
  mutated.
- :func:`spike_currents`: the input current of every step of a spike train
  through a dense ``[n_in, n]`` matrix (reading a readout at every step).
"""

import numpy as np

from ._jit import jit
from .conv import conv_sizes, spatial_taps
from .event import _NO_COLS, _NO_GEOM, _NO_ROWPTR, CONV, CSR, DENSE


@jit
def drive_sample(kind, x, rowptr, cols, weights, geom, drive):
    """One sample (``x`` [n_in], ``drive`` [n], zeroed here)."""
    n = drive.shape[0]
    drive[:] = 0.0
    if kind == CONV:  # summed channel-last (contiguous channels of a tap), then reordered
        n_taps, tap_pixel, tap_kernel = spatial_taps(geom)
        hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
        acc_cl = np.zeros(n)
    for pre in range(x.shape[0]):
        value = x[pre]
        if value == 0:
            continue
        if kind == CSR:
            for s in range(rowptr[pre], rowptr[pre + 1]):
                drive[cols[s]] += value * weights[s]
        elif kind == DENSE:
            row = weights[pre * n : (pre + 1) * n]
            for j in range(n):
                drive[j] += value * row[j]
        else:
            c = pre // hw_in
            p = pre - c * hw_in
            g = c // cg_in
            w_base = (c - g * cg_in) * kk * c_out + g * cg_out
            for k in range(n_taps[p]):
                a0 = tap_pixel[p, k] * c_out + g * cg_out
                w0 = w_base + tap_kernel[p, k] * c_out
                target = acc_cl[a0 : a0 + cg_out]
                w = weights[w0 : w0 + cg_out]
                for co in range(cg_out):
                    target[co] += value * w[co]
    if kind == CONV:
        for pixel in range(plane):
            for c in range(c_out):
                drive[c * plane + pixel] = acc_cl[pixel * c_out + c]


@jit
def _drive(kind, x, rowptr, cols, weights, geom, drive):
    """A batch through :func:`drive_sample`, one sample after the other (a
    few microseconds each: not worth a parallel kernel's compile time)."""
    for s in range(x.shape[0]):
        drive_sample(kind, x[s], rowptr, cols, weights, geom, drive[s])


def dense_drive(x, weights, drive):
    """``drive = x @ weights`` for a fully connected projection
    (``weights[n_in, n]`` float32, C-contiguous)."""
    _drive(DENSE, x, _NO_ROWPTR, _NO_COLS, weights.reshape(-1), _NO_GEOM, drive)


def conv_drive(x, geom, weights, drive):
    """``drive = x @ W`` for a Conv2d projection (``geom`` and flat
    ``weights`` as in ``kernels.conv``)."""
    _drive(CONV, x, _NO_ROWPTR, _NO_COLS, weights, geom, drive)


def csr_drive(x, rowptr, cols, weights, drive):
    """``drive = x @ W`` for a sparse CSR projection (as ``kernels.csr_layer``)."""
    _drive(CSR, x, rowptr, cols, weights, _NO_GEOM, drive)


@jit
def spike_currents_sample(in_tptr, in_idx, weights, current):
    """One sample: ``current[t] = sum of the rows weights[p]`` over the
    neurons ``p`` that spiked at step ``t`` (``weights`` ``[n_in, n]``
    float64, ``current`` ``[T, n]`` float64, mutated), in event order."""
    current[:] = 0.0
    for t in range(in_tptr.shape[0] - 1):
        target = current[t]
        for e in range(in_tptr[t], in_tptr[t + 1]):
            row = weights[in_idx[e]]
            for j in range(target.shape[0]):
                target[j] += row[j]


@jit
def spike_currents(in_tptr, in_idx, weights, current):
    """A batch (time-CSR trains as in ``kernels.event``; ``current``
    ``[B, T, n]``) through :func:`spike_currents_sample`, one sample after
    the other."""
    for s in range(in_tptr.shape[0]):
        spike_currents_sample(in_tptr[s], in_idx[s], weights, current[s])
