"""Synaptic drive computed outside the neuron kernels, in float64.

- :func:`dense_drive`, :func:`conv_drive`, :func:`csr_drive` (and
  :func:`bound_drive`, the same call with its arguments made once): a constant
  analog input multiplied once, ``drive[b] = x[b] @ W``, by scattering each
  non-zero input through its synapses (the connectivity arguments of
  ``kernels.event``'s layer functions: no expanded matrix for a
  convolution, no BLAS call whose worker threads would spin against the
  kernels' own). ``x`` ``[B, n_in]`` float64; ``drive`` ``[B, n]`` float64,
  mutated. One kernel per projection kind (:func:`drive_kernel`), so a
  network compiles the kinds it has.
- :func:`spike_currents`: the input current of every step of a spike train
  through a dense ``[n_in, n]`` matrix (reading a readout at every step).
"""

import numpy as np

from ._jit import jit, specialise
from .conv import NO_TAPS, conv_sizes, tap_tables
from .event import _NO_COLS, _NO_GEOM, _NO_ROWPTR, CONV, CSR, DENSE


@specialise
def drive_kernel(kind):
    """The kernel of one projection ``kind`` (CSR, CONV or DENSE; see
    ``kernels._jit``): a batch, one sample after the other (a few
    microseconds each; a caller with a large batch runs slices of it on
    threads, each sample computed alone). Arguments: ``x, rowptr, cols,
    weights, geom, n_taps, tap_pixel, tap_kernel, drive`` (the connectivity
    of ``kind`` as in ``kernels.event``, placeholders for the rest)."""

    def drive_batch(x, rowptr, cols, weights, geom, n_taps, tap_pixel, tap_kernel, drive):
        n = drive.shape[1]
        drive[:] = 0.0
        if kind == CONV:  # summed channel-last (contiguous channels of a tap), then reordered
            hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
            acc_cl = np.empty(n, drive.dtype)  # zeroed per sample below
        for sample in range(x.shape[0]):
            out = drive[sample]
            if kind == CONV:
                acc_cl[:] = 0.0
            for pre in range(x.shape[1]):
                value = x[sample, pre]
                if value == 0:
                    continue
                if kind == CSR:
                    for s in range(rowptr[pre], rowptr[pre + 1]):
                        out[cols[s]] += value * weights[s]
                elif kind == DENSE:
                    row = weights[pre * n : (pre + 1) * n]
                    for j in range(n):
                        out[j] += value * row[j]
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
                        out[c * plane + pixel] = acc_cl[pixel * c_out + c]

    return drive_batch


@specialise
def bias_drive_kernel(kind):
    """:func:`drive_kernel` of ``kind`` followed by what a run of the drive
    needs of it, in one call: ``kernel(x, rowptr, cols, weights, geom,
    n_taps, tap_pixel, tap_kernel, drive, fan_out, bias, out, macs)`` writes
    ``drive`` as :func:`drive_kernel` does, then ``out[b] = bias + drive[b]``
    (summed in float64, then cast to ``out``'s dtype, as ``np.add(bias,
    drive, out=out)``; ``bias`` ``[n]`` or one value ``[1]``) and ``macs[b]``
    (int64): the sum of ``fan_out[i]`` (int64 ``[n_in]``) over the non-zero
    inputs ``x[b, i]`` (the multiplications the drive took)."""
    drive_batch = drive_kernel(kind)

    def bias_drive(
        x, rowptr, cols, weights, geom, n_taps, tap_pixel, tap_kernel, drive, fan_out, bias, out, macs
    ):
        drive_batch(x, rowptr, cols, weights, geom, n_taps, tap_pixel, tap_kernel, drive)
        for sample in range(x.shape[0]):
            total = 0
            for pre in range(x.shape[1]):
                if x[sample, pre] != 0:
                    total += fan_out[pre]
            macs[sample] = total
            row = out[sample]
            d = drive[sample]
            if bias.shape[0] == 1:
                for j in range(row.shape[0]):
                    row[j] = bias[0] + d[j]
            else:
                for j in range(row.shape[0]):
                    row[j] = bias[j] + d[j]

    return bias_drive


def bias_drive_of(kernel):
    """:func:`bias_drive_kernel` of the kind whose :func:`drive_kernel` is ``kernel``."""
    (kind,) = [kind for kind in (CSR, CONV, DENSE) if drive_kernel(kind) is kernel]
    return bias_drive_kernel(kind)


def bound_drive(kind, weights, geom=None, rowptr=None, cols=None) -> tuple:
    """``(kernel, args)`` of one projection: ``kernel(x, *args, drive)``
    writes ``drive = x @ W`` (``x`` ``[B, n_in]``, ``drive`` ``[B, n]``,
    float64). ``kind`` CSR, CONV or DENSE with that kind's connectivity
    (DENSE: ``weights[n_in, n]`` float32, C-contiguous; CONV: ``geom`` and
    flat ``weights`` as in ``kernels.conv``; CSR: ``rowptr``, ``cols``,
    ``weights`` as ``kernels.csr_layer`` takes them). Made once, called
    many times (a batch-1 caller skips building the arguments)."""
    if kind == DENSE:
        args = (_NO_ROWPTR, _NO_COLS, weights.reshape(-1), _NO_GEOM, *NO_TAPS)
    elif kind == CONV:
        args = (_NO_ROWPTR, _NO_COLS, weights, geom, *tap_tables(geom))
    elif kind == CSR:
        args = (rowptr, cols, weights, _NO_GEOM, *NO_TAPS)
    else:
        raise ValueError(f"unknown projection kind {kind!r}")
    return drive_kernel(kind), args


def dense_drive(x, weights, drive):
    """``drive = x @ weights`` for a fully connected projection
    (``weights[n_in, n]`` float32, C-contiguous)."""
    kernel, args = bound_drive(DENSE, weights)
    kernel(x, *args, drive)


def conv_drive(x, geom, weights, drive):
    """``drive = x @ W`` for a Conv2d projection (``geom`` and flat
    ``weights`` as in ``kernels.conv``)."""
    kernel, args = bound_drive(CONV, weights, geom)
    kernel(x, *args, drive)


def csr_drive(x, rowptr, cols, weights, drive):
    """``drive = x @ W`` for a sparse CSR projection (as ``kernels.csr_layer``)."""
    kernel, args = bound_drive(CSR, weights, rowptr=rowptr, cols=cols)
    kernel(x, *args, drive)


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
