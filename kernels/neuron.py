"""Per-neuron helpers shared by every event-driven kernel.

State layout
------------
A layer's state is a 2-D array ``state[n, width]`` of the state dtype
(float32 or float64), one row per neuron, so that the columns a synaptic
event needs sit side by side in one cache line:

- column ``V`` (0): membrane potential at the end of step ``t_last``;
- column ``T_LAST`` (1): the step ``t_last`` the row is valid for (-1 before
  the run; stored as a float, exact below 2**24 steps in float32);
- column ``I`` (2): synaptic current (current-based neurons only);
- column ``REF`` (3): last refractory step (-1 if none; refractory layers only).

``width`` is 2 for plain IF/LIF layers and 4 when the layer has a current or
a refractory period.

Propagator table
----------------
``table[k]`` (shape ``[K + 1, 5]``, state dtype) holds the coefficients of
``k`` input-free steps of the model, bias included:
``v_k = v*table[k,0] + i*table[k,1] + b*table[k,2]`` and
``i_k = i*table[k,3] + b*table[k,4]``. For IF/LIF only columns 0 and 2 are
used (``beta**k`` and ``sum(beta**j, j < k)``). Tables replace ``exp`` and
``pow`` per event by one lookup.

Compile-time choices
--------------------
The model's flags (``has_current``, ``has_refractory``) and the reset
(``reset_mode``) are parameters of these helpers, declared as compile-time
``choices``: a layer kernel passes them as constants, so each helper is
compiled once per combination a network uses, without the branches the
combination rules out (``kernels._jit``). Called with runtime values (the
graph kernel, tests), a helper is compiled once with every branch.
"""

import numpy as np

from ._jit import helper, jit

V, T_LAST, I, REF = 0, 1, 2, 3  # noqa: E741 -- I: the synaptic current, as in the equations
RESET_SUBTRACT, RESET_TO_VALUE, RESET_NONE = 0, 1, 2  # RESET_NONE: fire, keep v
NEVER = -1


@helper(choices=("reset_mode",))
def after_spike(v, threshold, reset_mode, v_reset):
    """Membrane after a spike fired at ``v``: ``v - threshold`` (subtract),
    ``v_reset`` (to value) or ``v`` itself (none: the neuron keeps firing
    while ``v`` stays at or above threshold)."""
    # one expression (selects, no branches): the sweeps that call it vectorise
    return v - threshold if reset_mode == RESET_SUBTRACT else (v if reset_mode == RESET_NONE else v_reset)


@helper(choices=("has_current", "has_refractory"))
def value_at(state, j, t, b, table, has_current, has_refractory):
    """Return ``(v, i)`` of neuron ``j`` brought to the end of step ``t``
    without input, from its row in ``state`` (not mutated).

    Refractory steps come first in the interval: ``v`` is held during them
    while the current (if any) keeps evolving.
    """
    t_last = np.int64(state[j, T_LAST])
    k = t - t_last
    v = state[j, V]
    m = 0
    if has_refractory:
        m = np.int64(state[j, REF]) - t_last
        if m < 0:
            m = 0
        elif m > k:
            m = k
    k -= m
    if has_current:
        i = state[j, I]
        if m > 0:
            i = i * table[m, 3] + b * table[m, 4]
        v_new = v * table[k, 0] + i * table[k, 1] + b * table[k, 2]
        i_new = i * table[k, 3] + b * table[k, 4]
        return v_new, i_new
    v_new = v * table[k, 0] + b * table[k, 2]
    return v_new, v_new


@helper(choices=("has_current", "has_refractory"))
def advance(state, j, t, b, table, has_current, has_refractory):
    """Bring neuron ``j`` to the end of step ``t`` (lazy leak); mutates ``state``."""
    v, i = value_at(state, j, t, b, table, has_current, has_refractory)
    state[j, V] = v
    state[j, T_LAST] = t
    if has_current:
        state[j, I] = i


@jit(choices=("has_current", "has_refractory"))
def settle(state, t, bias, table, has_current, has_refractory):
    """Bring every neuron of ``state`` ``[B, n, width]`` to the end of step
    ``t`` without input (:func:`advance`; mutates ``state``): before its
    bias changes, or before the step columns are rebased, so that no gap
    outruns a table. ``bias``: ``[B or 1, n or 1]``; ``table`` must cover
    every neuron's gap ``t - t_last``."""
    for s in range(state.shape[0]):
        row = bias[s] if bias.shape[0] > 1 else bias[0]
        for j in range(state.shape[1]):
            advance(state[s], j, t, bias_of(row, j), table, has_current, has_refractory)


@helper(choices=("has_current", "has_refractory"))
def deliver(state, j, t, w, has_current, has_refractory):
    """Add input ``w`` to neuron ``j`` at step ``t`` (already advanced to ``t``).

    A refractory neuron's membrane ignores input; its current does not.
    """
    if has_current:
        state[j, I] += w
    if has_refractory and state[j, REF] >= t:
        return
    state[j, V] += w


@helper(choices=("reset_mode", "has_refractory"))
def fire(state, j, t, threshold, reset_mode, v_reset, refractory, has_refractory):
    """Threshold check and reset of neuron ``j`` at step ``t``; True if it spiked."""
    if has_refractory and state[j, REF] >= t:
        return False
    v = state[j, V]
    if v >= threshold:
        state[j, V] = after_spike(v, threshold, reset_mode, v_reset)
        if has_refractory:
            state[j, REF] = t + refractory
        return True
    return False


@helper(choices=("has_current", "has_refractory"))
def _v_at(state, j, t, b, table, has_current, has_refractory):
    return value_at(state, j, t, b, table, has_current, has_refractory)[0]


@helper(choices=("has_current", "has_refractory"))
def _first_crossing(state, j, lo, hi, b, threshold, table, has_current, has_refractory):
    """Smallest s in (lo, hi] with v(s) >= threshold, given v(lo) < threshold <=
    v(hi) and v non-decreasing on [lo, hi]."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _v_at(state, j, mid, b, table, has_current, has_refractory) >= threshold:
            hi = mid
        else:
            lo = mid
    return hi


@helper(choices=("has_current", "has_refractory"))
def next_due(state, j, t, end, b, threshold, table, has_current, has_refractory):
    """First step ``s`` in ``(t, end)`` at which neuron ``j``, receiving no
    more input, would reach threshold on its own; ``NEVER`` if none (``end``
    is the number of steps, or an earlier step at which the neuron will be
    updated anyway).

    Exact with respect to :func:`value_at` (the same expression is evaluated),
    so a neuron popped from the calendar at ``s`` is found above threshold.
    Without a current the free trajectory is monotone; with one it is a sum of
    two exponentials and a constant, so it has at most one extremum: a
    galloping search for a peak (or for a first point at or above threshold),
    then a binary search for the crossing, costs O(log T). The gallop may
    overshoot the peak and still land higher than where it was (a peak between
    its last two points, a crossing before it): it brackets the peak by the
    points around it, never assumes it at the horizon.
    """
    lo = t + 1
    if has_refractory:
        r = np.int64(state[j, REF]) + 1
        if r > lo:
            lo = r
    last = end - 1
    if lo > last:
        return NEVER
    if not has_current:
        # v_k = beta^k v + b * sum(beta^i): never rises above max(v, ...) if b <= 0.
        if b <= 0 and state[j, V] < threshold:
            return NEVER
        if _v_at(state, j, lo, b, table, False, has_refractory) >= threshold:
            return lo
        if _v_at(state, j, last, b, table, False, has_refractory) < threshold:
            return NEVER
        return _first_crossing(state, j, lo, last, b, threshold, table, False, has_refractory)
    f_lo = _v_at(state, j, lo, b, table, True, has_refractory)
    if f_lo >= threshold:
        return lo
    if lo == last:
        return NEVER
    f_next = _v_at(state, j, lo + 1, b, table, True, has_refractory)
    if f_next <= f_lo:
        # falling first: a valley, then rising for good, so "v >= threshold"
        # is false up to the crossing and true after it
        if _v_at(state, j, last, b, table, True, has_refractory) < threshold:
            return NEVER
        return _first_crossing(state, j, lo, last, b, threshold, table, True, has_refractory)
    if f_next >= threshold:
        return lo + 1
    # rising: gallop (1, 2, 4, ... steps) to bracket the first peak, so that
    # rounding noise on a flat tail far away cannot mislead the search; a
    # point found at or above threshold ends it (the steps at or above
    # threshold of a one-peak trajectory are one interval: the crossing is
    # the first of them, between the last point below and that one)
    prev, cur, f_cur, span = lo, lo + 1, f_next, 1
    peak = cur  # cur == last: rising up to the horizon
    if cur < last:
        while True:
            span *= 2
            ahead = min(cur + span, last)
            f_ahead = _v_at(state, j, ahead, b, table, True, has_refractory)
            if f_ahead >= threshold:  # v(cur) < threshold <= v(ahead)
                return _first_crossing(state, j, cur, ahead, b, threshold, table, True, has_refractory)
            if f_ahead <= f_cur:  # the peak lies in (prev, ahead): v(ahead) <= v(ahead - 1)
                a, c = prev, ahead - 1
                break
            if ahead == last:
                # still higher at the horizon than at cur, so the peak lies in
                # (cur, last], not necessarily at last: the trajectory may have
                # turned between cur and last and crossed on the way
                a, c = cur, last
                break
            prev, cur, f_cur = cur, ahead, f_ahead
        # first m in (a, c] with v(m + 1) <= v(m), or c if none before it (mid < c:
        # v(last + 1), beyond the horizon, is never evaluated)
        while c - a > 1:
            mid = (a + c) // 2
            if _v_at(state, j, mid + 1, b, table, True, has_refractory) <= _v_at(
                state, j, mid, b, table, True, has_refractory
            ):
                c = mid
            else:
                a = mid
        peak = c
    if _v_at(state, j, peak, b, table, True, has_refractory) < threshold:
        return NEVER
    return _first_crossing(state, j, lo, peak, b, threshold, table, True, has_refractory)


@helper
def bias_of(bias, j):
    """Bias of neuron ``j``: ``bias`` holds one value per neuron, or a single
    value shared by all (no random access per neuron then)."""
    return bias[j] if bias.shape[0] > 1 else bias[0]


@helper
def calendar_insert(head, nxt, prv, due, j, s):
    """Put neuron ``j`` in the bucket of step ``s`` (doubly linked lists).
    ``head[s]`` is the first neuron of bucket ``s``; the last slot of
    ``head`` counts the neurons scheduled."""
    head[head.shape[0] - 1] += 1
    first = head[s]
    nxt[j] = first
    prv[j] = -1
    if first >= 0:
        prv[first] = j
    head[s] = j
    due[j] = s


@helper
def calendar_remove(head, nxt, prv, due, j):
    """Take neuron ``j`` out of its bucket, if it is in one."""
    if head[head.shape[0] - 1] == 0:  # nobody scheduled: skip the random read of due[j]
        return
    s = due[j]
    if s < 0:
        return
    p = prv[j]
    q = nxt[j]
    if p >= 0:
        nxt[p] = q
    else:
        head[s] = q
    if q >= 0:
        prv[q] = p
    due[j] = NEVER
    head[head.shape[0] - 1] -= 1


@helper
def append_fired(fired, listed, c_out, plane, out_idx, n_out):
    """Append the spikes of a step, noted channel-last in ``fired`` (uint8,
    ``fired[pixel * c_out + c]``, ``c_out * plane`` neurons; one channel:
    neuron order), to ``out_idx`` after its first ``n_out`` entries, as
    channel-first indices ``c * plane + pixel`` in increasing order. Without
    a branch per neuron: every neuron's index is written and the count moves
    by its spike, in ``out_idx`` if it has room for all the neurons, else in
    ``listed`` (int32, at least ``c_out * plane`` entries, scratch) and then
    copied (a branch per spike would be mispredicted at most spikes of a
    layer firing a few percent of its neurons). Returns the new spike count,
    or -1 if ``out_idx`` is full."""
    cap = out_idx.shape[0]
    direct = n_out + c_out * plane <= cap
    target = out_idx if direct else listed
    m = np.uint64(n_out if direct else 0)  # unsigned: no negative-index wrap-around on the count's chain
    for c in range(c_out):
        for pixel in range(plane):
            target[m] = c * plane + pixel
            m += np.uint64(fired[pixel * c_out + c])
    if direct:
        return np.int64(m)
    count = np.int64(m)
    if n_out + count > cap:
        return -1
    for k in range(count):
        out_idx[n_out + k] = listed[k]
    return n_out + count


@helper(choices=("reset_mode", "has_current", "has_refractory"))
def sweep_step(
    state,
    acc,
    base,
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
):
    """Clock-driven step ``t`` of neurons ``base .. base + n`` (all of them
    were updated at step ``t - 1``, so every advance is one step: the
    reference's arithmetic exactly): add the summed input ``acc`` (then
    zeroed), fire, reset; spikes are appended to ``out_idx``. ``bias`` is
    indexed from ``base``. Returns the new spike count, or -1 if ``out_idx``
    is full. For neurons touched so often that a sequential sweep is cheaper
    than visiting the touched ones in random order and scheduling them."""
    cap = out_idx.shape[0]
    if not has_current and not has_refractory:
        decay = table[1, 0]
        shared = bias.shape[0] == 1
        b = bias[0] * table[1, 2]
        stamp = state.dtype.type(t)
        for q in range(n):
            j = base + q
            if not shared:
                b = bias[q] * table[1, 2]
            v = state[j, V] * decay + b + acc[j]
            acc[j] = 0
            state[j, T_LAST] = stamp
            if v >= threshold:
                if n_out >= cap:
                    return -1
                out_idx[n_out] = j
                n_out += 1
                v = after_spike(v, threshold, reset_mode, v_reset)
            state[j, V] = v
        return n_out
    for q in range(n):
        j = base + q
        advance(state, j, t, bias_of(bias, q), table, has_current, has_refractory)
        deliver(state, j, t, acc[j], has_current, has_refractory)
        acc[j] = 0
        if fire(state, j, t, threshold, reset_mode, v_reset, refractory, has_refractory):
            if n_out >= cap:
                return -1
            out_idx[n_out] = j
            n_out += 1
    return n_out
