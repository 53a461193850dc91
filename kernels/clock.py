"""Clock-driven neuron kernel: every neuron, every step.

Used by the dense fallback (layers so active that events no longer pay: the
synaptic input of all steps is one BLAS product computed by the caller) and
for time-varying analog input. It applies DESIGN.md's step literally:
leak, integrate (bias + input), fire, reset.
"""

import numpy as np

from ._jit import jit, pjit, prange, run_batch
from .neuron import after_spike, bias_of


@jit
def clock_layer_sample(
    currents,
    bias,
    alpha,
    beta,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    state,
    out_tptr,
    out_idx,
    counts,
):
    """One sample: ``currents[T, n]`` is the synaptic input per step (weights
    already summed), ``state[n, 4]`` (mutated) ends as ``v, t_last, i, ref``
    at step T - 1. Other arguments and ``counts`` as in ``kernels.event``."""
    n_steps, n = currents.shape
    cap = out_idx.shape[0]
    v = v_init.copy()
    i = np.zeros(n, state.dtype)
    b = np.empty(n, state.dtype)
    for j in range(n):
        b[j] = bias_of(bias, j)
    ref_until = np.full(n, -1, np.int64)
    n_out = 0
    for t in range(n_steps):
        out_tptr[t] = n_out
        for j in range(n):
            if has_current:
                i[j] = alpha * i[j] + b[j] + currents[t, j]
                v_new = beta * v[j] + i[j]
            else:
                v_new = beta * v[j] + b[j] + currents[t, j]
            if ref_until[j] >= t:
                continue
            if v_new >= threshold:
                if n_out >= cap:
                    counts[3] = 1
                    return
                out_idx[n_out] = j
                n_out += 1
                v_new = after_spike(v_new, threshold, reset_mode, v_reset)
                ref_until[j] = t + refractory
            v[j] = v_new
    out_tptr[n_steps] = n_out
    for j in range(n):
        state[j, 0] = v[j]
        state[j, 1] = n_steps - 1
        if state.shape[1] > 2:
            state[j, 2] = i[j]
            state[j, 3] = ref_until[j]
    counts[1] = n_steps * n
    counts[2] = n_out
    counts[3] = 0


def clock_layer(
    currents,
    bias,
    alpha,
    beta,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    state,
    out_tptr,
    out_idx,
    counts,
):
    """A batch (``currents[B, T, n]``) through :func:`clock_layer_sample`,
    samples in parallel. Synaptic operations (``counts[:, 0]``) are left for
    the caller, who knows the input events."""
    run_batch(
        _clock_layer,
        clock_layer_sample,
        currents,
        bias,
        alpha,
        beta,
        threshold,
        reset_mode,
        v_reset,
        refractory,
        v_init,
        has_current,
        state,
        out_tptr,
        out_idx,
        counts,
        batched=(0, 1, 10, 11, 12, 13),
    )


@pjit
def _clock_layer(
    currents,
    bias,
    alpha,
    beta,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    state,
    out_tptr,
    out_idx,
    counts,
):
    n_bias = bias.shape[0]
    for s in prange(currents.shape[0]):
        clock_layer_sample(
            currents[s],
            bias[s % n_bias],
            alpha,
            beta,
            threshold,
            reset_mode,
            v_reset,
            refractory,
            v_init,
            has_current,
            state[s],
            out_tptr[s],
            out_idx[s],
            counts[s],
        )
