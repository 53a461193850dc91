"""Spiking max pooling by gating with accumulated spike counts.

Rule: output ``o`` spikes at step ``t`` iff some input of its window spiked
at ``t`` and that input's spike count (up to and including ``t``) is above
the highest count in the window before ``t``: iff the window's highest count
rises. So the output's spike count is, at every step, exactly the highest
spike count among its inputs (max pooling of the rates the spikes encode);
an input that only ties the leader passes nothing (passing ties lets two
inputs that alternate in the lead both through, up to twice the leader's
rate). The outcome does not depend on the order in which the step's spikes
are processed, and a window emits at most one spike per step (an input
spikes at most once per step, so the highest count rises by at most one).

Windows are those of ``torch.nn.MaxPool2d(kernel_size, stride, padding)``
(dilation 1, ``ceil_mode=False``): window ``(oy, ox)`` covers input rows
``oy * stride_y - pad_y ...`` (``kh`` of them) and columns ``ox * stride_x -
pad_x ...`` (``kw``); ``h_out = (h_in + 2 pad_y - kh) // stride_y + 1`` (and
likewise ``w_out``), as torch floors it. Windows may overlap (stride < kernel),
so an input may belong to several windows, up to ``ceil(kh / stride_y) *
ceil(kw / stride_x)``, and each of its spikes is checked against every window
that contains it; an input in no window (cropped by the floor) is never
checked. Padding positions never spike (their count stays 0, which never
raises a window's highest count: counts are >= 0).

Geometry ``geom`` (int64 ``[11]``, fields :data:`GEOM_FIELDS`). Neurons are
numbered channel-first, ``(c * H + y) * W + x``, input and output alike.

Why it is order-independent: within one step, a window's running maximum
stays its maximum before the step until some spike of the step passes the
test (a spike that fails has a count at most it), so "some spike of the step
passes against the running maximum" is "some spike of the step passes against
the maximum before the step", whichever spike comes first; and the running
maximum ends the step as the window's true highest count.
"""

import functools

import numpy as np

from ._jit import jit, pjit, prange, run_batch

GEOM_FIELDS = (
    "channels",
    "h_in",
    "w_in",
    "h_out",
    "w_out",
    "kh",
    "kw",
    "stride_y",
    "stride_x",
    "pad_y",
    "pad_x",
)


@jit
def window_table(geom):
    """For each input neuron ``(c, y, x)``, the windows containing it, packed
    in one int64: the first one's output neuron ``(c * h_out + oy_lo) * w_out
    + ox_lo`` (bits 0-39), and how many window rows (bits 40-47) and columns
    (bits 48-55) from there. Made once per call, so that the gate divides
    nothing per spike."""
    channels, height, width = geom[0], geom[1], geom[2]
    h_out, w_out, kh, kw = geom[3], geom[4], geom[5], geom[6]
    sy, sx, py, px = geom[7], geom[8], geom[9], geom[10]
    table = np.empty(channels * height * width, np.int64)
    for c in range(channels):
        for y in range(height):
            # windows containing row y: oy * sy - py <= y <= oy * sy - py + kh - 1
            lo = y + py - kh + 1
            oy_lo = 0 if lo <= 0 else (lo + sy - 1) // sy
            oy_hi = min(h_out - 1, (y + py) // sy)
            for x in range(width):
                lo = x + px - kw + 1
                ox_lo = 0 if lo <= 0 else (lo + sx - 1) // sx
                ox_hi = min(w_out - 1, (x + px) // sx)
                rows = max(0, oy_hi - oy_lo + 1)
                cols = max(0, ox_hi - ox_lo + 1)
                base = (c * h_out + oy_lo) * w_out + ox_lo if rows and cols else 0
                table[(c * height + y) * width + x] = base | (rows << 40) | (cols << 48)
    return table


def windows_of(geom) -> np.ndarray:
    """:func:`window_table` of ``geom`` (int64 ``[11]``), made once per
    geometry (the last few remembered: a run calls the gate at every
    chunk). Writeable (numba compiles read-only arrays as another type),
    never written."""
    return _windows(geom.tobytes())


@functools.lru_cache(maxsize=64)
def _windows(geom_bytes):
    return window_table(np.frombuffer(geom_bytes, np.int64).copy())


@jit
def maxpool_sample(in_tptr, in_idx, geom, windows, spike_count, window_max, out_tptr, out_idx, counts):
    """One sample of :func:`maxpool_layer` (the same arguments without the
    leading sample axis; ``windows`` from :func:`window_table`). Returns
    nothing; see ``counts``."""
    w_out = geom[4]
    n_out = geom[0] * geom[3] * w_out
    stamp = np.full(n_out, -1, np.int64)
    cap = out_idx.shape[0]
    emitted = 0
    checks = 0
    mask = (np.int64(1) << 40) - 1
    for t in range(in_tptr.shape[0] - 1):
        out_tptr[t] = emitted
        for e in range(in_tptr[t], in_tptr[t + 1]):
            p = in_idx[e]
            spike_count[p] += 1
            n = spike_count[p]
            packed = windows[p]
            base = packed & mask
            rows = (packed >> 40) & 255
            cols = (packed >> 48) & 255
            for r in range(rows):
                for o in range(base + r * w_out, base + r * w_out + cols):
                    checks += 1
                    if n > window_max[o]:
                        window_max[o] = n
                        if stamp[o] != t:
                            stamp[o] = t
                            if emitted >= cap:
                                counts[1] = checks
                                counts[2] = emitted
                                counts[3] = 1
                                return
                            out_idx[emitted] = o
                            emitted += 1
    out_tptr[in_tptr.shape[0] - 1] = emitted
    counts[1] = checks
    counts[2] = emitted
    counts[3] = 0


def maxpool_layer(in_tptr, in_idx, geom, spike_count, window_max, out_tptr, out_idx, counts):
    """Max-pool gate of a batch of samples (in parallel over samples).

    Parameters
    ----------
    in_tptr : int64 ``[B, T + 1]``, input spikes as time-CSR: those of step
        ``t`` of sample ``s`` are ``in_idx[s, in_tptr[s, t] : in_tptr[s, t + 1]]``.
    in_idx : int32 ``[B, E]``, input neuron ``(c * h_in + y) * w_in + x``;
        an input spikes at most once per step.
    geom : int64 ``[11]``, the window geometry, fields :data:`GEOM_FIELDS`:
        ``channels, h_in, w_in, h_out, w_out, kh, kw, stride_y, stride_x,
        pad_y, pad_x``. Trusted: the caller checks ``kh, kw, stride >= 1``,
        ``pad >= 0`` and ``h_out = (h_in + 2 pad_y - kh) // stride_y + 1 >= 1``
        (likewise ``w_out``); a ``ValueError`` if an input lies in more than
        255 rows or columns of windows (the window table packs them in bytes).
    spike_count : int32 ``[B, channels * h_in * w_in]``, mutated: each input's
        spike count so far (zeros for a new run).
    window_max : int32 ``[B, n_out]``, mutated: each window's highest count so
        far (zeros for a new run). A run cut into chunks of steps computes
        what one uncut run computes if each chunk gets the counts the last
        one left.
    out_tptr : int64 ``[B, T + 1]``, mutated: output spikes as time-CSR.
    out_idx : int32 ``[B, cap]``, mutated: output neuron ``(c * h_out + oy)
        * w_out + ox``, within a step in the order emitted (not sorted), each
        output at most once per step. A sample emits at most ``min(checks,
        n_out * T)`` spikes (``checks`` below; at most ``ceil(kh / stride_y)
        * ceil(kw / stride_x)`` per input spike); ``cap`` = its input spike
        count always suffices when windows do not overlap.
    counts : int64 ``[B, 4]``, mutated (overwritten): ``[0]`` untouched
        (no synaptic operations: a gate compares, it does not accumulate);
        ``[1]`` gate evaluations = ``(input spike, window containing it)``
        pairs checked; ``[2]`` output spikes; ``[3]`` status: 0 ok, 1 the
        sample overflowed ``out_idx`` (its outputs are then incomplete and
        ``[1]``, ``[2]`` partial and the two count arrays changed: run it
        again from copies of them with a larger ``cap``).
    """
    kh, kw, sy, sx = (int(geom[k]) for k in (5, 6, 7, 8))
    if -(-kh // sy) > 255 or -(-kw // sx) > 255 or int(geom[0] * geom[3] * geom[4]) >= 1 << 40:
        raise ValueError("max-pool window too large for the gate's window table (over 255 windows a row)")
    geom = np.ascontiguousarray(geom, np.int64)
    run_batch(
        _maxpool_layer,
        maxpool_sample,
        in_tptr,
        in_idx,
        geom,
        windows_of(geom),
        spike_count,
        window_max,
        out_tptr,
        out_idx,
        counts,
        batched=(0, 1, 4, 5, 6, 7, 8),
    )


@pjit
def _maxpool_layer(in_tptr, in_idx, geom, windows, spike_count, window_max, out_tptr, out_idx, counts):
    for s in prange(in_tptr.shape[0]):
        maxpool_sample(
            in_tptr[s],
            in_idx[s],
            geom,
            windows,
            spike_count[s],
            window_max[s],
            out_tptr[s],
            out_idx[s],
            counts[s],
        )
