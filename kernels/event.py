"""Event-driven layer kernels: work only where spikes arrive.

A layer is run over all ``T`` steps at once for each sample (feed-forward
stacks need nothing else: layer ``l`` never waits for layer ``l + 1``).

Spike trains, in and out, are per-sample time-CSR: the neurons that spiked at
step ``t`` of sample ``s`` are ``idx[s, tptr[s, t]:tptr[s, t + 1]]``.

Common arguments
----------------
bias : [B or 1, n or 1] state dtype; constant input per step (a cached
    ``W @ x`` of an analog input included); one column if shared by all.
table : [T + 1, 5] state dtype; propagator coefficients (see ``neuron``).
v_init : [n] state dtype; membrane before step 0.
state : [B, n, width] state dtype, mutated; per-sample neuron state, left at
    each neuron's last update (or settled to step T - 1 if ``settle``).
out_tptr : [B, T + 1] int64, mutated.  out_idx : [B, cap] int32, mutated.
counts : [B, 4] int64, mutated: synaptic operations, neuron state updates,
    output spikes, and a status (0 ok, 1 if ``out_idx`` was too small: the
    caller must run the sample again with more room).

Counting: a synaptic operation is one weight added to one target because a
spike arrived; a state update is one neuron brought forward to a step
(lazy leak) and checked against threshold.
"""

import numpy as np

from ._jit import helper, jit, pjit, prange, run_batch
from .conv import conv_sizes, spatial_taps
from .neuron import (
    NEVER,
    REF,
    T_LAST,
    I,
    V,
    advance,
    after_spike,
    bias_of,
    calendar_insert,
    calendar_remove,
    deliver,
    fire,
    next_due,
    sweep_step,
)

OK, OVERFLOW = 0, 1
CSR, CONV, DENSE = 0, 1, 2  # projection kinds (sparse_layer_sample takes CSR and CONV)
_NO_GEOM = np.zeros(15, np.int64)
_NO_ROWPTR = np.zeros(1, np.int64)
_NO_COLS = np.zeros(0, np.int32)


@jit
def _new_calendar(n_steps):
    """Bucket heads of steps 0..T-1 (empty: -1), then the count of neurons
    scheduled (0)."""
    head = np.full(n_steps + 1, -1, np.int32)
    head[n_steps] = 0
    return head


@helper
def _init_sample(
    state, bias, v_init, table, search_end, threshold, has_current, has_refractory, head, nxt, prv, due
):
    """Initial state (before step 0) and the calendar of the spikes due
    before step ``search_end``."""
    for j in range(state.shape[0]):
        state[j, V] = v_init[j]
        state[j, T_LAST] = -1
        if has_current:
            state[j, I] = 0
        if has_refractory:
            state[j, REF] = -1
        s = next_due(
            state, j, -1, search_end, bias_of(bias, j), threshold, table, has_current, has_refractory
        )
        if s != NEVER:
            calendar_insert(head, nxt, prv, due, j, s)


@helper
def _settle(state, bias, table, n_steps, has_current, has_refractory):
    """Bring every neuron to the end of the last step (for membrane readout)."""
    last = n_steps - 1
    for j in range(state.shape[0]):
        if state[j, T_LAST] != last:
            advance(state, j, last, bias_of(bias, j), table, has_current, has_refractory)


@helper
def _close_step(
    state,
    touched,
    n_touched,
    t,
    search_end,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    has_current,
    has_refractory,
    head,
    nxt,
    prv,
    due,
    out_idx,
    n_out,
):
    """Threshold check, reset and rescheduling (spikes due before step
    ``search_end``) of the neurons touched at step ``t``; appends spikes to
    ``out_idx``. Returns the new spike count, or -1 if ``out_idx`` is full."""
    cap = out_idx.shape[0]
    for q in range(n_touched):
        j = touched[q]
        if fire(state, j, t, threshold, reset_mode, v_reset, refractory, has_refractory):
            if n_out >= cap:
                return -1
            out_idx[n_out] = j
            n_out += 1
        calendar_remove(head, nxt, prv, due, j)
        s = next_due(state, j, t, search_end, bias_of(bias, j), threshold, table, has_current, has_refractory)
        if s != NEVER:
            calendar_insert(head, nxt, prv, due, j, s)
    return n_out


@helper
def _pop_due(state, t, bias, table, has_current, has_refractory, head, nxt, touched, n_touched):
    """Touch the neurons due to fire on their own at step ``t``."""
    j = head[t]
    while j >= 0:
        if state[j, T_LAST] != t:
            advance(state, j, t, bias_of(bias, j), table, has_current, has_refractory)
            touched[n_touched] = j
            n_touched += 1
        j = nxt[j]
    return n_touched


@helper
def _touch(state, j, t, w, bias, table, has_current, has_refractory, touched, n_touched):
    """Deliver weight ``w`` to neuron ``j`` at step ``t``, bringing it forward
    first if this is its first input of the step; returns the touched count."""
    if state[j, T_LAST] != t:
        advance(state, j, t, bias_of(bias, j), table, has_current, has_refractory)
        touched[n_touched] = j
        n_touched += 1
    deliver(state, j, t, w, has_current, has_refractory)
    return n_touched


@jit
def sparse_layer_sample(
    kind,
    clock,
    in_tptr,
    in_idx,
    rowptr,
    cols,
    weights,
    geom,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
):
    """One sample through a projection whose spikes reach some targets only,
    and its neurons. ``kind`` CSR: targets ``cols[rowptr[p]:rowptr[p+1]]``
    of presynaptic ``p`` with ``weights`` alike; ``kind`` CONV: targets
    computed from ``geom`` and the flat kernel ``weights`` (``kernels.conv``).
    ``clock`` False: only the neurons that receive input (or are due to fire
    on their own) are updated; True: synaptic input is still delivered per
    spike, but every neuron is updated at every step by a sequential sweep
    (``neuron.sweep_step``), which is cheaper once most neurons are touched
    at every step. See the module docstring for the other arguments."""
    n = state.shape[0]
    n_steps = in_tptr.shape[0] - 1
    head = _new_calendar(n_steps)
    nxt = np.empty(n, np.int32)
    prv = np.empty(n, np.int32)
    due = np.full(n, NEVER, np.int32)
    touched = np.empty(n, np.int32)
    acc = np.zeros(n, state.dtype)
    if kind == CONV:
        # input is summed channel-last (``acc_cl[pixel * c_out + c]``: the
        # output channels of one tap are contiguous, so the sum vectorises),
        # and the channels of a touched (group, pixel) are brought forward together
        n_taps, tap_pixel, tap_kernel = spatial_taps(geom)
        hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
        acc_cl = np.zeros(n, state.dtype)
        pixel_stamp = np.full(geom[14] * plane, -1, np.int64)
        pixels = np.empty(geom[14] * plane, np.int64)
    n_pixels = 0
    _init_sample(
        state,
        bias,
        v_init,
        table,
        0 if clock else n_steps,
        threshold,
        has_current,
        has_refractory,
        head,
        nxt,
        prv,
        due,
    )  # clock: nothing to schedule
    synops = 0
    updates = 0
    n_out = 0
    for t in range(n_steps):
        out_tptr[t] = n_out
        n_touched = 0
        for e in range(in_tptr[t], in_tptr[t + 1]):
            pre = in_idx[e]
            if kind == CSR:
                s0 = rowptr[pre]
                s1 = rowptr[pre + 1]
                synops += s1 - s0
                if clock:
                    for s in range(s0, s1):
                        acc[cols[s]] += weights[s]
                else:
                    for s in range(s0, s1):
                        n_touched = _touch(
                            state,
                            cols[s],
                            t,
                            weights[s],
                            bias,
                            table,
                            has_current,
                            has_refractory,
                            touched,
                            n_touched,
                        )
            else:  # CONV: sum into acc_cl (no branch per synapse), then per touched pixel
                c = pre // hw_in
                p = pre - c * hw_in
                g = c // cg_in
                w_base = (c - g * cg_in) * kk * c_out + g * cg_out
                synops += n_taps[p] * cg_out
                for k in range(n_taps[p]):
                    pixel = tap_pixel[p, k]
                    if not clock:
                        key = g * plane + pixel
                        if pixel_stamp[key] != t:
                            pixel_stamp[key] = t
                            pixels[n_pixels] = key
                            n_pixels += 1
                    a0 = pixel * c_out + g * cg_out
                    w0 = w_base + tap_kernel[p, k] * c_out
                    target = acc_cl[a0 : a0 + cg_out]  # views: the loop below vectorises
                    w = weights[w0 : w0 + cg_out]
                    for co in range(cg_out):
                        target[co] += w[co]
        if clock:
            if kind == CONV:  # to channel-first, the neurons' order, in cache-sized tiles
                for p0 in range(0, plane, 16):
                    p1 = min(p0 + 16, plane)
                    for c in range(c_out):
                        for pixel in range(p0, p1):
                            acc[c * plane + pixel] = acc_cl[pixel * c_out + c]
                            acc_cl[pixel * c_out + c] = 0
            updates += n
            n_out = sweep_step(
                state,
                acc,
                0,
                n,
                t,
                bias,
                table,
                threshold,
                reset_mode,
                v_reset,
                refractory,
                has_current,
                has_refractory,
                out_idx,
                n_out,
            )
            if n_out < 0:
                counts[3] = OVERFLOW
                return
            continue
        if kind == CONV:
            for q in range(n_pixels):
                g = pixels[q] // plane
                pixel = pixels[q] % plane
                for c in range(g * cg_out, (g + 1) * cg_out):
                    n_touched = _touch(
                        state,
                        c * plane + pixel,
                        t,
                        acc_cl[pixel * c_out + c],
                        bias,
                        table,
                        has_current,
                        has_refractory,
                        touched,
                        n_touched,
                    )
                    acc_cl[pixel * c_out + c] = 0
            n_pixels = 0
        n_touched = _pop_due(
            state, t, bias, table, has_current, has_refractory, head, nxt, touched, n_touched
        )
        updates += n_touched
        n_out = _close_step(
            state,
            touched,
            n_touched,
            t,
            n_steps,
            bias,
            table,
            threshold,
            reset_mode,
            v_reset,
            refractory,
            has_current,
            has_refractory,
            head,
            nxt,
            prv,
            due,
            out_idx,
            n_out,
        )
        if n_out < 0:
            counts[3] = OVERFLOW
            return
    out_tptr[n_steps] = n_out
    if settle and not clock:
        _settle(state, bias, table, n_steps, has_current, has_refractory)
    counts[0] = synops
    counts[1] = updates
    counts[2] = n_out
    counts[3] = OK


@jit
def dense_layer_sample(
    clock,
    in_tptr,
    in_idx,
    weights,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
):
    """One sample through a fully connected projection (``weights[n_in, n]``,
    row ``p`` = the contiguous targets of presynaptic neuron ``p``) and its
    neurons. The input of a step is summed into a contiguous buffer first
    (SIMD), then applied to every neuron once. Every neuron is updated at
    every step with input (``clock``: at every step), so self-driven spikes
    are only searched for up to the next such step. See the module docstring."""
    n = state.shape[0]
    n_steps = in_tptr.shape[0] - 1
    head = _new_calendar(n_steps)
    nxt = np.empty(n, np.int32)
    prv = np.empty(n, np.int32)
    due = np.full(n, NEVER, np.int32)
    touched = np.empty(n, np.int32)
    everyone = np.arange(n).astype(np.int32)
    acc = np.zeros(n, state.dtype)
    next_input = np.empty(n_steps, np.int64)  # first step after t with input (clock: every step)
    upcoming = n_steps
    for t in range(n_steps - 1, -1, -1):
        next_input[t] = t + 1 if clock else upcoming
        if clock or in_tptr[t + 1] > in_tptr[t]:
            upcoming = t
    _init_sample(
        state, bias, v_init, table, upcoming, threshold, has_current, has_refractory, head, nxt, prv, due
    )
    plain = not has_current and not has_refractory
    synops = 0
    updates = 0
    n_out = 0
    for t in range(n_steps):
        out_tptr[t] = n_out
        e0 = in_tptr[t]
        e1 = in_tptr[t + 1]
        if clock or e1 > e0:
            for e in range(e0, e1):
                row = weights[in_idx[e]]
                for j in range(n):
                    acc[j] += row[j]
            synops += (e1 - e0) * n
            updates += n
            if plain and next_input[t] == t + 1:
                # value_at + deliver + fire inlined by hand (same arithmetic);
                # nothing to schedule: every neuron is updated at t + 1 anyway
                for j in range(n):
                    k = t - np.int64(state[j, T_LAST])
                    v = state[j, V] * table[k, 0] + bias_of(bias, j) * table[k, 2] + acc[j]
                    acc[j] = 0
                    state[j, T_LAST] = t
                    if v >= threshold:
                        if n_out >= out_idx.shape[0]:
                            counts[3] = OVERFLOW
                            return
                        out_idx[n_out] = j
                        n_out += 1
                        v = after_spike(v, threshold, reset_mode, v_reset)
                    state[j, V] = v
                continue
            for j in range(n):
                advance(state, j, t, bias_of(bias, j), table, has_current, has_refractory)
                deliver(state, j, t, acc[j], has_current, has_refractory)
                acc[j] = 0
            n_out = _close_step(
                state,
                everyone,
                n,
                t,
                next_input[t],
                bias,
                table,
                threshold,
                reset_mode,
                v_reset,
                refractory,
                has_current,
                has_refractory,
                head,
                nxt,
                prv,
                due,
                out_idx,
                n_out,
            )
        else:
            n_touched = _pop_due(state, t, bias, table, has_current, has_refractory, head, nxt, touched, 0)
            updates += n_touched
            n_out = _close_step(
                state,
                touched,
                n_touched,
                t,
                next_input[t],
                bias,
                table,
                threshold,
                reset_mode,
                v_reset,
                refractory,
                has_current,
                has_refractory,
                head,
                nxt,
                prv,
                due,
                out_idx,
                n_out,
            )
        if n_out < 0:
            counts[3] = OVERFLOW
            return
    out_tptr[n_steps] = n_out
    if settle:
        _settle(state, bias, table, n_steps, has_current, has_refractory)
    counts[0] = synops
    counts[1] = updates
    counts[2] = n_out
    counts[3] = OK


@pjit
def _sparse_layer(
    kind,
    clock,
    in_tptr,
    in_idx,
    rowptr,
    cols,
    weights,
    geom,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
):
    n_bias = bias.shape[0]
    for s in prange(in_tptr.shape[0]):
        sparse_layer_sample(
            kind,
            clock,
            in_tptr[s],
            in_idx[s],
            rowptr,
            cols,
            weights,
            geom,
            bias[s % n_bias],
            table,
            threshold,
            reset_mode,
            v_reset,
            refractory,
            v_init,
            has_current,
            has_refractory,
            settle,
            state[s],
            out_tptr[s],
            out_idx[s],
            counts[s],
        )


def csr_layer(
    in_tptr,
    in_idx,
    rowptr,
    cols,
    weights,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
    clock=False,
):
    """A batch through a sparse CSR projection (``rowptr`` int64 ``[n_in+1]``,
    ``cols`` int32, ``weights`` float32), samples in parallel; ``clock``:
    every neuron updated at every step (see :func:`sparse_layer_sample`)."""
    run_batch(
        _sparse_layer,
        sparse_layer_sample,
        CSR,
        clock,
        in_tptr,
        in_idx,
        rowptr,
        cols,
        weights,
        _NO_GEOM,
        bias,
        table,
        threshold,
        reset_mode,
        v_reset,
        refractory,
        v_init,
        has_current,
        has_refractory,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
        batched=_SPARSE_BATCHED,
    )


def conv_layer(
    in_tptr,
    in_idx,
    geom,
    weights,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
    clock=False,
):
    """A batch through a Conv2d projection (``geom`` and flat ``weights`` as
    in ``kernels.conv``), samples in parallel; ``clock`` as in :func:`csr_layer`."""
    run_batch(
        _sparse_layer,
        sparse_layer_sample,
        CONV,
        clock,
        in_tptr,
        in_idx,
        _NO_ROWPTR,
        _NO_COLS,
        weights,
        geom,
        bias,
        table,
        threshold,
        reset_mode,
        v_reset,
        refractory,
        v_init,
        has_current,
        has_refractory,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
        batched=_SPARSE_BATCHED,
    )


_SPARSE_BATCHED = (2, 3, 8, 18, 19, 20, 21)  # in_tptr, in_idx, bias, state, out_tptr, out_idx, counts


def dense_layer(
    in_tptr,
    in_idx,
    weights,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
    clock=False,
):
    """A batch through a fully connected projection (``weights[n_in, n]``
    float32), samples in parallel; ``clock``: every neuron updated at every
    step."""
    run_batch(
        _dense_layer,
        dense_layer_sample,
        clock,
        in_tptr,
        in_idx,
        weights,
        bias,
        table,
        threshold,
        reset_mode,
        v_reset,
        refractory,
        v_init,
        has_current,
        has_refractory,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
        batched=(1, 2, 4, 14, 15, 16, 17),
    )


@pjit
def _dense_layer(
    clock,
    in_tptr,
    in_idx,
    weights,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    v_init,
    has_current,
    has_refractory,
    settle,
    state,
    out_tptr,
    out_idx,
    counts,
):
    n_bias = bias.shape[0]
    for s in prange(in_tptr.shape[0]):
        dense_layer_sample(
            clock,
            in_tptr[s],
            in_idx[s],
            weights,
            bias[s % n_bias],
            table,
            threshold,
            reset_mode,
            v_reset,
            refractory,
            v_init,
            has_current,
            has_refractory,
            settle,
            state[s],
            out_tptr[s],
            out_idx[s],
            counts[s],
        )
