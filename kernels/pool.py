"""Spiking max pooling by gating with accumulated spike counts.

Rule: output ``o`` spikes at step ``t`` iff some input of its window spiked
at ``t`` and that input's spike count (up to and including ``t``) is at least
the highest count in the window before ``t``. The leading input passes its
spikes; the output rate follows the window's highest input rate. The outcome
does not depend on the order in which the step's spikes are processed.
Windows are ``k x k`` with stride ``k`` and no padding.
"""

import numpy as np

from ._jit import jit, pjit, prange, run_batch


@jit
def maxpool_sample(in_tptr, in_idx, channels, height, width, k, out_tptr, out_idx, counts):
    """One sample: input ``(c, y, x)`` channel-first over ``[channels, height,
    width]``, output over ``[channels, height // k, width // k]``.
    ``counts`` (mutated): gate evaluations, spikes, status (0 ok)."""
    h_out = height // k
    w_out = width // k
    n_out = channels * h_out * w_out
    spike_count = np.zeros(channels * height * width, np.int32)
    window_max = np.zeros(n_out, np.int32)
    stamp = np.full(n_out, -1, np.int64)
    cap = out_idx.shape[0]
    emitted = 0
    for t in range(in_tptr.shape[0] - 1):
        out_tptr[t] = emitted
        for e in range(in_tptr[t], in_tptr[t + 1]):
            p = in_idx[e]
            c = p // (height * width)
            y = (p // width) % height
            x = p % width
            spike_count[p] += 1
            if y >= h_out * k or x >= w_out * k:
                continue  # outside every window (torch floors the output size)
            o = (c * h_out + y // k) * w_out + x // k
            if spike_count[p] >= window_max[o]:
                window_max[o] = spike_count[p]
                if stamp[o] != t:
                    stamp[o] = t
                    if emitted >= cap:
                        counts[3] = 1
                        return
                    out_idx[emitted] = o
                    emitted += 1
        counts[1] += in_tptr[t + 1] - in_tptr[t]
    out_tptr[in_tptr.shape[0] - 1] = emitted
    counts[2] = emitted
    counts[3] = 0


def maxpool_layer(in_tptr, in_idx, channels, height, width, k, out_tptr, out_idx, counts):
    """A batch through :func:`maxpool_sample`, samples in parallel."""
    run_batch(
        _maxpool_layer,
        maxpool_sample,
        in_tptr,
        in_idx,
        channels,
        height,
        width,
        k,
        out_tptr,
        out_idx,
        counts,
        batched=(0, 1, 6, 7, 8),
    )


@pjit
def _maxpool_layer(in_tptr, in_idx, channels, height, width, k, out_tptr, out_idx, counts):
    for s in prange(in_tptr.shape[0]):
        maxpool_sample(in_tptr[s], in_idx[s], channels, height, width, k, out_tptr[s], out_idx[s], counts[s])
