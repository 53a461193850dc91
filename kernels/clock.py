"""Clock-driven neuron kernel: every neuron, every step.

Used by the dense fallback (layers so active that events no longer pay: the
synaptic input of all steps is one BLAS product computed by the caller) and
for time-varying analog input. It applies DESIGN.md's step literally:
leak, integrate (bias + input), fire, reset.
"""

import numpy as np

from ._jit import helper, run_samples, specialise
from .neuron import after_spike, append_fired, bias_of


@helper(choices=("reset_mode",))
def _plain_step(v, b, current, beta, threshold, reset_mode, v_reset, fired, listed, out_idx, n_out):
    """One step of plain IF/LIF neurons (no synaptic current, no refractory
    period), the arithmetic of :func:`clock_kernel`'s loop, ``v <- beta * v +
    b + current``, in one contiguous branch-free loop that vectorises (each
    neuron's last spike step, ``ref_until`` there, is read from the spikes
    after the sweep); then the spikes appended to ``out_idx`` in neuron
    order (``neuron.append_fired``, ``listed`` its scratch). Returns the new
    spike count, or -1 if ``out_idx`` is full."""
    n = v.shape[0]
    for j in range(n):
        v_new = beta * v[j] + b[j] + current[j]
        spike = v_new >= threshold
        fired[j] = spike
        v[j] = after_spike(v_new, threshold, reset_mode, v_reset) if spike else v_new
    return append_fired(fired, listed, 1, n, out_idx, n_out)


@specialise
def clock_kernel(has_current, has_refractory, reset_mode):
    """The kernel of :func:`clock_layer`, specialised to the neuron model's
    flags and its ``reset_mode`` (see ``kernels._jit``). Its arguments are
    :func:`clock_layer`'s without the compile-time choices, then ``first,
    stop``: it runs samples ``first .. stop - 1`` one after the other. Per
    sample, ``currents[T, n]`` is the synaptic input of each step (weights
    already summed) and ``state[n, 4]`` (mutated) ends as ``v, t_last, i,
    ref`` at step T - 1; an empty ``v_init`` continues from ``state`` (a
    later chunk of a run, steps shifted as ``kernels.event`` describes)."""

    def clock_layer_sample(
        currents_b,
        bias_b,
        alpha,
        beta,
        threshold,
        v_reset,
        refractory,
        v_init,
        state_b,
        out_tptr_b,
        out_idx_b,
        counts_b,
        first,
        stop,
    ):
        for sample in range(first, stop):  # the samples of this call, one after the other
            currents = currents_b[sample]
            bias = bias_b[sample % bias_b.shape[0]]  # [1, n]: shared by all samples
            state = state_b[sample]
            out_tptr = out_tptr_b[sample]
            out_idx = out_idx_b[sample]
            counts = counts_b[sample]
            n_steps, n = currents.shape
            cap = out_idx.shape[0]
            v = np.empty(n, state.dtype)
            i = np.empty(n, state.dtype)
            ref_until = np.empty(n, np.int64)
            if v_init.shape[0]:  # a new run (element by element: an array assignment's shape check
                for j in range(n):  # compiles numba's string formatting, ~3 s cold)
                    v[j] = v_init[j]
                    i[j] = 0.0
                    ref_until[j] = -1
            else:  # a chunk continuing ``state`` (steps counted from this chunk's start)
                for j in range(n):
                    v[j] = state[j, 0]
                    i[j] = state[j, 2]
                    ref_until[j] = np.int64(state[j, 3])
            b = np.empty(n, state.dtype)
            for j in range(n):
                b[j] = bias_of(bias, j)
            n_out = 0
            if not has_current and not has_refractory:  # plain IF/LIF: a branch-free sweep per step
                fired = np.empty(n, np.uint8)
                listed = np.empty(n, np.int32)  # a step's spikes, before out_idx
                for t in range(n_steps):
                    out_tptr[t] = n_out
                    n_out = _plain_step(
                        v,
                        b,
                        currents[t],
                        beta,
                        threshold,
                        reset_mode,
                        v_reset,
                        fired,
                        listed,
                        out_idx,
                        n_out,
                    )
                    if n_out < 0:
                        break
                if n_out >= 0:  # each neuron's last spike from the spikes (the sweep does not store it)
                    for t in range(n_steps):
                        stop = out_tptr[t + 1] if t + 1 < n_steps else n_out
                        for e in range(out_tptr[t], stop):
                            ref_until[out_idx[e]] = t
            for t in range(n_steps if has_current or has_refractory else 0):
                out_tptr[t] = n_out
                for j in range(n):
                    if has_current:
                        i[j] = alpha * i[j] + b[j] + currents[t, j]
                        v_new = beta * v[j] + i[j]
                    else:
                        v_new = beta * v[j] + b[j] + currents[t, j]
                    if has_refractory and ref_until[j] >= t:
                        continue
                    if v_new >= threshold:
                        if n_out >= cap:
                            n_out = -1
                            break
                        out_idx[n_out] = j
                        n_out += 1
                        v_new = after_spike(v_new, threshold, reset_mode, v_reset)
                        ref_until[j] = t + refractory
                    v[j] = v_new
                if n_out < 0:
                    break
            if n_out < 0:  # out_idx is full: the caller runs the sample again with more room
                counts[3] = 1
                continue
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

    return clock_layer_sample


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
    """A batch (``currents[B, T, n]``) through :func:`clock_kernel`'s
    kernel, samples in parallel. Other arguments and ``counts`` as in
    ``kernels.event`` (``bias`` ``[B or 1, n or 1]``); ``has_current``,
    ``refractory > 0`` and ``reset_mode`` choose the compiled kernel.
    Synaptic operations (``counts[:, 0]``) are left for the caller, who
    knows the input events."""
    run_samples(
        clock_kernel(bool(has_current), bool(refractory > 0), int(reset_mode)),
        len(currents),
        currents,
        bias,
        alpha,
        beta,
        threshold,
        v_reset,
        refractory,
        v_init,
        state,
        out_tptr,
        out_idx,
        counts,
    )
