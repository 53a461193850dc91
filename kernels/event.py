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
v_init : [n] state dtype; membrane before step 0; or empty ``[0]``: the run
    continues from ``state`` (a chunk after an earlier one, see below).
state : [B, n, width] state dtype, mutated; per-sample neuron state, left at
    each neuron's last update (or settled to step T - 1 if ``settle``).

Chunks: a run cut into chunks of steps computes what one uncut run computes
if each chunk after the first gets the state the previous one left, with its
step columns (``T_LAST``, and ``REF`` of refractory layers) shifted back by
the previous chunk's length (steps count from the chunk's start, so a row
may be valid for a step < -1), ``v_init`` empty, and a ``table`` with a row
for every gap, i.e. as long as the steps run so far plus this chunk
(``table[k]`` does not depend on the table's length).
out_tptr : [B, T + 1] int64, mutated.  out_idx : [B, cap] int32, mutated.
counts : [B, 4] int64, mutated: synaptic operations, neuron state updates,
    output spikes, and a status (0 ok, 1 if ``out_idx`` was too small: the
    caller must run the sample again with more room).

Counting: a synaptic operation is one weight added to one target because a
spike arrived; a state update is one neuron brought forward to a step
(lazy leak) and checked against threshold.

Compiled kernels: :func:`sparse_kernel` and :func:`dense_kernel` build the
kernel of one projection kind, path (event or clock), neuron model and
reset, each written once and compiled only for the combinations a network
uses (``kernels._jit``); the layer functions (:func:`dense_layer`,
:func:`csr_layer`, :func:`conv_layer`) choose it from their flags and run
the samples of a batch in chunks on threads.
"""

import numpy as np

from ._jit import helper, jit, run_samples, specialise
from .conv import NO_TAPS, conv_sizes, tap_tables
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
CSR, CONV, DENSE = 0, 1, 2  # projection kinds (sparse_kernel takes CSR and CONV)
_NO_GEOM = np.zeros(15, np.int64)
_NO_ROWPTR = np.zeros(1, np.int64)
_NO_COLS = np.zeros(0, np.int32)


@jit
def _new_calendar(n_steps):
    """Bucket heads of steps 0..T-1 (empty: -1), then the count of neurons
    scheduled (0)."""
    head = np.empty(n_steps + 1, np.int32)  # np.empty and a fill: np.full would be one more compile
    head[:n_steps] = -1
    head[n_steps] = 0
    return head


@helper(choices=("has_current", "has_refractory"))
def _init_state(state, v_init, has_current, has_refractory):
    """State before step 0: ``v_init``, no step yet, no current, not refractory."""
    for j in range(state.shape[0]):
        state[j, V] = v_init[j]
        state[j, T_LAST] = -1
        if has_current:
            state[j, I] = 0
        if has_refractory:
            state[j, REF] = -1


@helper(choices=("has_current", "has_refractory"))
def _schedule_all(
    state, bias, table, search_end, threshold, has_current, has_refractory, head, nxt, prv, due
):
    """The calendar of the spikes due before step ``search_end``, from the
    state before step 0 (event path)."""
    before = np.int64(-1)
    for j in range(state.shape[0]):
        s = next_due(
            state, j, before, search_end, bias_of(bias, j), threshold, table, has_current, has_refractory
        )
        if s != NEVER:
            calendar_insert(head, nxt, prv, due, j, s)


@helper(choices=("has_current", "has_refractory"))
def _settle(state, bias, table, n_steps, has_current, has_refractory):
    """Bring every neuron to the end of the last step (for membrane readout)."""
    last = n_steps - 1
    for j in range(state.shape[0]):
        if state[j, T_LAST] != last:
            advance(state, j, last, bias_of(bias, j), table, has_current, has_refractory)


@helper(choices=("reset_mode", "has_current", "has_refractory"))
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


@helper(choices=("has_current", "has_refractory"))
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


@helper(choices=("has_current", "has_refractory"))
def _touch(state, j, t, w, bias, table, has_current, has_refractory, touched, n_touched):
    """Deliver weight ``w`` to neuron ``j`` at step ``t``, bringing it forward
    first if this is its first input of the step; returns the touched count."""
    if state[j, T_LAST] != t:
        advance(state, j, t, bias_of(bias, j), table, has_current, has_refractory)
        touched[n_touched] = j
        n_touched += 1
    deliver(state, j, t, w, has_current, has_refractory)
    return n_touched


@specialise
def sparse_kernel(kind, clock, has_current, has_refractory, reset_mode):
    """The kernel of a projection whose spikes reach some targets only,
    specialised to the projection ``kind`` (CSR or CONV), the path
    (``clock``), the neuron model's flags and its ``reset_mode`` (module
    docstring of ``kernels._jit``: each combination is compiled once).

    ``kind`` CSR: the targets of presynaptic ``p`` are
    ``cols[rowptr[p]:rowptr[p+1]]`` with ``weights`` alike; ``kind`` CONV:
    targets computed from ``geom`` and the flat kernel ``weights``
    (``kernels.conv``). ``clock`` False: only the neurons that receive
    input (or are due to fire on their own) are updated; True: synaptic
    input is still delivered per spike, but every neuron is updated at every
    step by a sequential sweep (``neuron.sweep_step``), which is cheaper once
    most neurons are touched at every step.

    The kernel's arguments are :func:`csr_layer`'s without the compile-time
    choices, ``rowptr, cols, weights, geom, n_taps, tap_pixel, tap_kernel``
    for the connectivity (the last three: ``kernels.conv.spatial_taps``;
    placeholders for what the kind does not use), and last ``first, stop``:
    it runs samples ``first .. stop - 1`` one after the other (see
    ``kernels._jit.run_samples``)."""

    def sparse_layer_sample(
        in_tptr_b,
        in_idx_b,
        rowptr,
        cols,
        weights,
        geom,
        n_taps,
        tap_pixel,
        tap_kernel,
        bias_b,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        state_b,
        out_tptr_b,
        out_idx_b,
        counts_b,
        first,
        stop,
    ):
        for sample in range(first, stop):  # the samples of this call, one after the other
            in_tptr = in_tptr_b[sample]
            in_idx = in_idx_b[sample]
            bias = bias_b[sample % bias_b.shape[0]]  # [1, n]: shared by all samples
            state = state_b[sample]
            out_tptr = out_tptr_b[sample]
            out_idx = out_idx_b[sample]
            counts = counts_b[sample]
            n = state.shape[0]
            n_steps = in_tptr.shape[0] - 1
            acc = np.empty(n, state.dtype)
            acc[:] = 0.0
            if v_init.shape[0]:  # a new run; otherwise ``state`` continues an earlier chunk
                _init_state(state, v_init, has_current, has_refractory)
            if not clock:  # the calendar of self-driven spikes, and the neurons touched in a step
                head = _new_calendar(n_steps)
                nxt = np.empty(n, np.int32)
                prv = np.empty(n, np.int32)
                due = np.empty(n, np.int32)
                due[:] = NEVER
                touched = np.empty(n, np.int32)
                _schedule_all(
                    state, bias, table, n_steps, threshold, has_current, has_refractory, head, nxt, prv, due
                )
            if kind == CONV:
                # input is summed channel-last (``acc_cl[pixel * c_out + c]``: the
                # output channels of one tap are contiguous, so the sum vectorises),
                # and the channels of a touched (group, pixel) are brought forward together
                hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
                acc_cl = np.empty(n, state.dtype)
                acc_cl[:] = 0.0
                pixel_stamp = np.empty(geom[14] * plane, np.int64)
                pixel_stamp[:] = -1
                pixels = np.empty(geom[14] * plane, np.int64)
            n_pixels = 0
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
                            p1 = p0 + 16 if p0 + 16 < plane else plane
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
                        break
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
                    break
            if n_out < 0:  # out_idx is full: the caller runs the sample again with more room
                counts[3] = OVERFLOW
                continue
            out_tptr[n_steps] = n_out
            if settle and not clock:
                _settle(state, bias, table, n_steps, has_current, has_refractory)
            counts[0] = synops
            counts[1] = updates
            counts[2] = n_out
            counts[3] = OK

    return sparse_layer_sample


@specialise
def dense_kernel(clock, has_current, has_refractory, reset_mode):
    """The kernel of a fully connected projection
    (``weights[n_in, n]``, row ``p`` = the contiguous targets of
    presynaptic neuron ``p``), specialised like :func:`sparse_kernel`. The
    input of a step is summed into a contiguous buffer first (SIMD), then
    applied to every neuron once. Event path: every neuron is updated at
    every step with input, so self-driven spikes are only searched for up to
    the next such step; clock path: every neuron at every step, by the
    sequential sweep of ``neuron.sweep_step``. The kernel's arguments are
    :func:`dense_layer`'s without the compile-time choices, then ``first,
    stop`` as in :func:`sparse_kernel`."""

    def dense_layer_sample(
        in_tptr_b,
        in_idx_b,
        weights,
        bias_b,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        state_b,
        out_tptr_b,
        out_idx_b,
        counts_b,
        first,
        stop,
    ):
        for sample in range(first, stop):  # the samples of this call, one after the other
            in_tptr = in_tptr_b[sample]
            in_idx = in_idx_b[sample]
            bias = bias_b[sample % bias_b.shape[0]]  # [1, n]: shared by all samples
            state = state_b[sample]
            out_tptr = out_tptr_b[sample]
            out_idx = out_idx_b[sample]
            counts = counts_b[sample]
            n = state.shape[0]
            n_steps = in_tptr.shape[0] - 1
            acc = np.empty(n, state.dtype)
            acc[:] = 0.0
            if v_init.shape[0]:  # a new run; otherwise ``state`` continues an earlier chunk
                _init_state(state, v_init, has_current, has_refractory)
            if not clock:  # the calendar of self-driven spikes (up to the next step with input)
                head = _new_calendar(n_steps)
                nxt = np.empty(n, np.int32)
                prv = np.empty(n, np.int32)
                due = np.empty(n, np.int32)
                due[:] = NEVER
                touched = np.empty(n, np.int32)
                everyone = np.empty(n, np.int32)
                for j in range(n):
                    everyone[j] = j
                next_input = np.empty(n_steps, np.int64)  # first step after t with input
                upcoming = n_steps
                for t in range(n_steps - 1, -1, -1):
                    next_input[t] = upcoming
                    if in_tptr[t + 1] > in_tptr[t]:
                        upcoming = t
                _schedule_all(
                    state, bias, table, upcoming, threshold, has_current, has_refractory, head, nxt, prv, due
                )
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
                    if clock:  # every neuron, every step: a sequential sweep
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
                            break
                        continue
                    if not has_current and not has_refractory and next_input[t] == t + 1:
                        # value_at + deliver + fire inlined by hand (same arithmetic);
                        # nothing to schedule: every neuron is updated at t + 1 anyway
                        for j in range(n):
                            k = t - np.int64(state[j, T_LAST])
                            v = state[j, V] * table[k, 0] + bias_of(bias, j) * table[k, 2] + acc[j]
                            acc[j] = 0
                            state[j, T_LAST] = t
                            if v >= threshold:
                                if n_out >= out_idx.shape[0]:
                                    n_out = -1
                                    break
                                out_idx[n_out] = j
                                n_out += 1
                                v = after_spike(v, threshold, reset_mode, v_reset)
                            state[j, V] = v
                        if n_out < 0:
                            break
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
                    n_touched = _pop_due(
                        state, t, bias, table, has_current, has_refractory, head, nxt, touched, 0
                    )
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
                    break
            if n_out < 0:  # out_idx is full: the caller runs the sample again with more room
                counts[3] = OVERFLOW
                continue
            out_tptr[n_steps] = n_out
            if settle and not clock:
                _settle(state, bias, table, n_steps, has_current, has_refractory)
            counts[0] = synops
            counts[1] = updates
            counts[2] = n_out
            counts[3] = OK

    return dense_layer_sample


def _choices(clock, has_current, has_refractory, reset_mode):
    """The compile-time choices of a call, as the plain values the kernel
    caches are keyed by."""
    return bool(clock), bool(has_current), bool(has_refractory), int(reset_mode)


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
    every neuron updated at every step (see :func:`sparse_kernel`). The
    flags (``clock``, ``has_current``, ``has_refractory``, ``reset_mode``)
    choose the compiled kernel."""
    run_samples(
        sparse_kernel(CSR, *_choices(clock, has_current, has_refractory, reset_mode)),
        len(in_tptr),
        in_tptr,
        in_idx,
        rowptr,
        cols,
        weights,
        _NO_GEOM,
        *NO_TAPS,
        bias,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
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
    in ``kernels.conv``), samples in parallel; ``clock`` and the flags as in
    :func:`csr_layer`."""
    run_samples(
        sparse_kernel(CONV, *_choices(clock, has_current, has_refractory, reset_mode)),
        len(in_tptr),
        in_tptr,
        in_idx,
        _NO_ROWPTR,
        _NO_COLS,
        weights,
        geom,
        *tap_tables(geom),
        bias,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
    )


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
    step; the flags as in :func:`csr_layer`."""
    run_samples(
        dense_kernel(*_choices(clock, has_current, has_refractory, reset_mode)),
        len(in_tptr),
        in_tptr,
        in_idx,
        weights,
        bias,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        state,
        out_tptr,
        out_idx,
        counts,
    )
