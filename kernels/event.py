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

import numba
import numpy as np

from ._jit import helper, jit, run_samples, specialise
from .conv import (
    RUN_ACC,
    RUN_LEN,
    RUN_PIXEL,
    RUN_PIXELS,
    RUN_W,
    column_in_python,
    conv_sizes,
    merges_rows,
    run_tables,
)
from .neuron import (
    NEVER,
    REF,
    RESET_SUBTRACT,
    RESET_TO_VALUE,
    T_LAST,
    I,
    V,
    advance,
    after_spike,
    append_fired,
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
_NO_TABLES = (np.zeros((0, 5), np.int64), np.zeros((0, 5), np.int64))  # a CSR kernel's conv tables
_NO_MARKS = np.zeros((1, 0), np.uint64)  # no lazy start (sparse_kernel's ``seen_b``)
# _pop_due: up to this many neurons due at a step are put in index order by an insertion
# sort, more by marks (a calendar bucket lists them in runs of decreasing index)
_SORT_BY_INSERTION = 32
_LINE = 64  # bytes of a cache line (and of an AVX-512 vector)


@jit
def _aligned_empty(n, like):
    """An uninitialised array of ``n`` values of ``like``'s dtype that starts
    at a cache line (64 bytes). A convolution's delivery runs start at
    multiples of C_out values from the start of its weights and of its
    channel-last input sums, so with both aligned a run's vector loads do
    not straddle lines (measured: about 20 % off a float64 delivery)."""
    pad = _LINE // like.itemsize
    buf = np.empty(n + pad, like.dtype)
    skip = ((_LINE - buf.ctypes.data % _LINE) % _LINE) // like.itemsize
    return buf[skip : skip + n]


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


@helper
def _set_unmarked(state, seen, v_init):
    """A lazy start made whole: every neuron not marked in ``seen`` (bit
    ``j & 63`` of word ``j >> 6``) gets its initial state (``v_init``, no
    step yet: a plain IF/LIF row), and every neuron is marked."""
    n = state.shape[0]
    for w in range(seen.shape[0]):
        bits = seen[w]
        if bits != _ALL:
            end = (w + 1) << 6 if (w + 1) << 6 < n else n
            for j in range(w << 6, end):
                if not (bits >> np.uint64(j & 63)) & _ONE:
                    state[j, V] = v_init[j]
                    state[j, T_LAST] = -1
            seen[w] = _ALL


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
    ordered_from,
    bits,
    summary,
):
    """Threshold check, reset and rescheduling (spikes due before step
    ``search_end``) of the neurons touched at step ``t``; appends spikes to
    ``out_idx``. Returns the new spike count, or -1 if ``out_idx`` is full.

    The spikes of ``touched[ordered_from:n_touched]`` (the neurons due to
    fire on their own, as :func:`_pop_due` lists them: in their calendar
    bucket's order) leave in index order: a bucket lists neurons in the
    order they were scheduled, which a run cut into chunks changes (each
    chunk builds the calendar again from the state), and the order of a
    step's spikes is that of their delivery downstream, so of the rounding
    of the sums there. The neurons themselves are closed in the bucket's
    order (it groups neurons scheduled together, whose threshold searches
    take the same branches: in index order they mispredict, measured 1.3x
    slower for a layer that fires on its own); only their spikes are put in
    order, a few by an insertion sort, more by marks in ``bits`` and
    ``summary`` (as :func:`_mark` marks, zero on entry and on return) read
    back in index order, O(n / 4,096 + spikes)."""
    cap = out_idx.shape[0]
    mid = n_out
    for q in range(n_touched):
        if q == ordered_from:
            mid = n_out
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
    if ordered_from >= n_touched or n_out - mid < 2:
        return n_out
    if n_out - mid <= _SORT_BY_INSERTION:
        for q in range(mid + 1, n_out):
            x = out_idx[q]
            r = q
            while r > mid and out_idx[r - 1] > x:
                out_idx[r] = out_idx[r - 1]
                r -= 1
            out_idx[r] = x
        return n_out
    for q in range(mid, n_out):  # _mark, written out (no helper call on this path)
        m = np.int64(out_idx[q])
        w = m >> 6
        bits[w] |= _ONE << np.uint64(m & 63)
        summary[w >> 6] |= _ONE << np.uint64(w & 63)
    q = mid
    for sw in range(summary.shape[0]):
        x = summary[sw]
        if x == 0:
            continue
        summary[sw] = 0
        while x != 0:
            wi = (sw << 6) + np.int64(_tz(x))
            x &= x - _ONE
            y = bits[wi]
            bits[wi] = 0
            while y != 0:
                out_idx[q] = (wi << 6) + np.int64(_tz(y))
                y &= y - _ONE
                q += 1
    return n_out


@helper(choices=("has_current", "has_refractory"))
def _pop_due(state, t, bias, table, has_current, has_refractory, head, nxt, touched, n_touched):
    """Touch the neurons due to fire on their own at step ``t``, in their
    calendar bucket's order (:func:`_close_step` puts their spikes in index
    order)."""
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


if numba.config.DISABLE_JIT:  # the kernels run as Python (a CI leg): intrinsics have no Python body

    def _tz(x):
        """Index of the lowest set bit of ``x`` (> 0)."""
        x = int(x)
        return (x & -x).bit_length() - 1

    def _prefetch(array, i):
        """A hint to the CPU, nothing to do in Python."""

else:
    from numba.core import cgutils
    from numba.core import types as nb_types
    from numba.core.cgutils import ir as llvm_ir  # llvmlite's IR builder, through numba
    from numba.cpython.unsafe.numbers import trailing_zeros as _tz  # an intrinsic: inlined, no call
    from numba.extending import intrinsic

    @intrinsic
    def _prefetch(typingctx, array, i):
        """Ask the CPU to load the cache line of ``array[i]`` (of ``array[i,
        0]`` if 2-D; ``0 <= i < len``; no bounds check, no effect on results): LLVM's
        ``llvm.prefetch``, for reading, to every cache level. The rows of
        the next input spikes are known ahead, and loading them while the
        current row is delivered hides the memory latency that dominates
        delivery from a large connectivity (measured here: 100k neurons,
        10 M synapses, 8 ns per synaptic operation without, 3.4 with)."""

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            ary = context.make_array(array_type)(context, builder, args[0])
            index = [args[1]] + [context.get_constant(nb_types.intp, 0)] * (array_type.ndim - 1)
            ptr = cgutils.get_item_pointer(context, builder, array_type, ary, index, wraparound=False)
            i8p = builder.bitcast(ptr, llvm_ir.IntType(8).as_pointer())
            i32 = llvm_ir.IntType(32)
            fnty = llvm_ir.FunctionType(llvm_ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [i8p, i32(0), i32(3), i32(1)])  # read, high locality, data cache
            return context.get_dummy_value()

        return nb_types.void(array, i), codegen


# A step of the CSR event path whose synaptic operations reach this fraction of
# the layer's neurons runs in two phases (sum and mark, then an index-ordered
# pass over the marked neurons); fewer are delivered directly, neuron by neuron
# (benchmarks/sparse_crossover.py: the crossover of the two).
TWO_PHASE_AT = 0.06
# ... if the state and the input sums (bytes) fit in cache; otherwise later: the
# visits in index order then miss about as often as direct ones
TWO_PHASE_STATE_BYTES = 8 << 20
TWO_PHASE_AT_OUT_OF_CACHE = 0.2
# ... and a step of an undriven layer (see _undriven) whose synaptic operations
# reach this fraction runs as a sweep of every neuron, as the clock path runs
# it (in cache and out of it: at 100k and 1M neurons a sweep step cost less
# than a two-phase one from about 0.12-0.15 x n synaptic operations, i.e.
# 11-14 % of the neurons touched; benchmarks/sparse_crossover.py)
SWEEP_AT = 0.15
# ... and while every neuron is at the step before (after a sweep, or a step
# that touched them all; not at the start of a run), a step sweeps from this
# fraction of ``sweep_at`` on, so that a run of sweeps does not break off and
# restart where the steps' synaptic operations hover around ``sweep_at``
# (each switch costs a pass over the neurons: at 14 % touched, alternating
# cost 1.4x sweeping every step at 100k neurons and 1.5x at 1M, 11-29;
# benchmarks/sparse_crossover.py's workload)
SWEEP_HOLD = 2 / 3

# A lazy start (sparse_kernel) pays a miss at each neuron's first input, where the
# pass that writes every neuron's initial state streams through memory and leaves the
# state in cache: it pays below this many synaptic operations per neuron in a run
# (the break-even with the state out of cache before the run, 100k and 1M neurons;
# more with the state in cache; measured 2026-11-29)
LAZY_START_BELOW = 0.04

_AHEAD = 4  # input spikes whose synapse rows are prefetched ahead of the one delivered
# A sweep step's input sums in a row larger than this (bytes) are added with each
# target prefetched this many synaptic operations ahead: the random visits to a row
# out of cache then overlap their misses (benchmarks/kernel_csr.py, 2M targets)
_TARGETS_FAR_BYTES = 8 << 20
_TARGETS_AHEAD = 64


@helper
def _prefetch_row(rowptr, cols, weights, pre):
    """Prefetch the synapses of presynaptic neuron ``pre`` (targets and
    weights, one hint per cache line)."""
    for s in range(rowptr[pre], rowptr[pre + 1], 16):
        _prefetch(cols, s)
        _prefetch(weights, s)


@helper
def _sum_prefetched(acc, rowptr, cols, weights, in_idx, e0, e_end):
    """``acc[cols[s]] += weights[s]`` over the synapses of the input spikes
    ``e0 .. e_end - 1``, in order (the same additions as the plain loop), with
    each target prefetched :data:`_TARGETS_AHEAD` synapses before its turn by
    a cursor that runs ahead through the rows, and each row
    (:func:`_prefetch_row`) :data:`_AHEAD` spikes ahead."""
    ea = e0 - 1  # the cursor: synapse sa of row ea's [.., ha); exhausted when sa >= ha
    sa = 0
    ha = 0
    for _ in range(_TARGETS_AHEAD + 1):
        sa += 1
        while sa >= ha and ea + 1 < e_end:
            ea += 1
            sa = rowptr[in_idx[ea]]
            ha = rowptr[in_idx[ea] + 1]
    for e in range(e0, e_end):
        if e + _AHEAD < e_end:
            _prefetch_row(rowptr, cols, weights, np.int64(in_idx[e + _AHEAD]))
        pre = in_idx[e]
        for s in range(rowptr[pre], rowptr[pre + 1]):
            if sa < ha:
                _prefetch(acc, np.int64(cols[sa]))
                sa += 1
                while sa >= ha and ea + 1 < e_end:
                    ea += 1
                    sa = rowptr[in_idx[ea]]
                    ha = rowptr[in_idx[ea] + 1]
            acc[cols[s]] += weights[s]


@helper
def _prefetch_targets(state, rowptr, cols, pre):
    """Prefetch the state rows of the targets of presynaptic neuron ``pre``
    (its synapse row already loaded or on its way: :func:`_prefetch_row`),
    so that the direct delivery's random visits overlap their misses."""
    for s in range(rowptr[pre], rowptr[pre + 1]):
        _prefetch(state, np.int64(cols[s]))


_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_V_AT = np.uint64(V)  # offsets in a neuron's row of the state, unsigned
_TWO = np.uint64(2)  # (table_flat[k + _TWO]: a propagator row's bias gain, column 2)
_SIX = np.uint64(6)
_LOW6 = np.uint64(63)
_T_LAST_AT = np.uint64(T_LAST)


@helper
def _mark(bits, summary, j):
    """Mark neuron ``j`` as touched in this step: bit ``j`` of ``bits``, and
    bit ``j >> 6`` of ``summary`` (one bit per word of ``bits``, so that the
    pass over the marks skips 4,096 untouched neurons per word it reads).
    Branch-free: marking twice is marking once. (The kernel's delivery loop
    writes these two lines out: a helper call per synapse costs more than
    the marking.)"""
    w = j >> 6
    bits[w] |= _ONE << np.uint64(j & 63)
    summary[w >> 6] |= _ONE << np.uint64(w & 63)


@helper
def _undriven(bias, table, threshold, has_current, has_refractory):
    """True if no neuron of the layer can reach threshold without input
    except at the very next step: no current, no refractory period, a decay
    ``<= 1`` and no positive bias. A neuron's free trajectory then never
    rises once it is at or above threshold (v >= threshold > 0), so
    ``neuron.next_due`` is the next step or never: the calendar reduces to
    the list of the neurons due at the next step."""
    if has_current or has_refractory or table.shape[0] < 2 or not 0 <= table[1, 0] <= 1 or not threshold > 0:
        return False
    for q in range(bias.shape[0]):
        if bias[q] > 0:
            return False
    return True


@helper(choices=("reset_mode", "has_current", "has_refractory"))
def _close_marked(
    state,
    acc,
    bits,
    summary,
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
    undriven,
    head,
    nxt,
    prv,
    due,
    due_next,
    n_due,
    out_idx,
    n_out,
):
    """Second phase of an event-driven step ``t``: every neuron marked in
    ``bits`` (input summed into ``acc``, or due to fire on its own), in
    index order (near-sequential in memory, whatever order the input came
    in), is brought forward to ``t``, given its summed input (``acc``
    zeroed), checked against threshold, reset; marks are cleared. Then the
    neuron's next self-driven spike (before ``search_end``) is scheduled:
    ``undriven`` layers (see :func:`_undriven`) append the neurons due at
    ``t + 1`` to ``due_next`` (``n_due`` of them so far), the others use the
    calendar. Spikes are appended to ``out_idx``. Returns ``(n_out, n_due,
    processed)``: ``n_out`` -1 if ``out_idx`` is full, ``processed`` the
    neurons updated."""
    cap = out_idx.shape[0]
    processed = 0
    shared = bias.shape[0] == 1
    b = bias[0]
    # plain IF/LIF, undriven: value_at, deliver, fire and next_due inlined below (same arithmetic)
    decay1 = table[1, 0]  # the table has a row per step run so far, and this is one of them
    gain1 = table[1, 2]
    soon = t + 1 < search_end
    stamp = state.dtype.type(t)
    for sw in range(summary.shape[0]):
        x = summary[sw]
        if x == 0:
            continue
        summary[sw] = 0
        while x != 0:
            wi = (sw << 6) + np.int64(_tz(x))
            x &= x - _ONE
            y = bits[wi]
            bits[wi] = 0
            while y != 0:
                j = (wi << 6) + np.int64(_tz(y))
                y &= y - _ONE
                processed += 1
                if not shared:
                    b = bias[j]
                if undriven and not has_current and not has_refractory:
                    k = t - np.int64(state[j, T_LAST])
                    v = state[j, V] * table[k, 0] + b * table[k, 2]
                    v += acc[j]
                    acc[j] = 0
                    state[j, T_LAST] = stamp
                    if v >= threshold:
                        if n_out >= cap:
                            return -1, n_due, processed
                        out_idx[n_out] = j
                        n_out += 1
                        # after_spike, written out (a helper call costs more than this)
                        if reset_mode == RESET_SUBTRACT:
                            v = v - threshold
                        elif reset_mode == RESET_TO_VALUE:
                            v = v_reset
                    state[j, V] = v
                    # next_due: t + 1 or never, and never if v < threshold (a free
                    # trajectory from there never rises to it: see _undriven)
                    if v >= threshold and soon and v * decay1 + b * gain1 >= threshold:
                        due_next[n_due] = j
                        n_due += 1
                    continue
                advance(state, j, t, b, table, has_current, has_refractory)
                deliver(state, j, t, acc[j], has_current, has_refractory)
                acc[j] = 0
                if fire(state, j, t, threshold, reset_mode, v_reset, refractory, has_refractory):
                    if n_out >= cap:
                        return -1, n_due, processed
                    out_idx[n_out] = j
                    n_out += 1
                calendar_remove(head, nxt, prv, due, j)
                s = next_due(state, j, t, search_end, b, threshold, table, has_current, has_refractory)
                if s != NEVER:
                    calendar_insert(head, nxt, prv, due, j, s)
    return n_out, n_due, processed


@helper(choices=("reset_mode",))
def _close_touched_undriven(
    state_flat,
    width,
    touched,
    n_touched,
    t,
    search_end,
    bias,
    table,
    threshold,
    reset_mode,
    v_reset,
    due_next,
    n_due,
    out_idx,
    n_out,
):
    """End of a direct step ``t`` of an undriven layer (:func:`_undriven`):
    the ``touched`` neurons (brought forward to ``t``, input added) are
    checked against threshold and reset, and those due at ``t + 1`` on their
    own appended to ``due_next`` (``n_due`` so far), the same rule as
    :func:`_close_marked`'s. ``state_flat``: the state as one row, ``width``
    (uint64) values a neuron. Returns ``(n_out, n_due)``, ``n_out`` -1 if
    ``out_idx`` is full."""
    cap = out_idx.shape[0]
    shared = bias.shape[0] == 1
    b = bias[0]
    decay1 = table[1, 0]
    gain1 = table[1, 2]
    soon = t + 1 < search_end
    for q in range(n_touched):
        j = touched[q]
        row = np.uint64(j) * width + _V_AT  # (unsigned: no wrap-around of negative indices)
        v = state_flat[row]
        if v >= threshold:
            if n_out >= cap:
                return -1, n_due
            out_idx[n_out] = j
            n_out += 1
            if reset_mode == RESET_SUBTRACT:
                v = v - threshold
            elif reset_mode == RESET_TO_VALUE:
                v = v_reset
            state_flat[row] = v
            if not shared:
                b = bias[j]
            if v >= threshold and soon and v * decay1 + b * gain1 >= threshold:
                due_next[n_due] = j
                n_due += 1
    return n_out, n_due


@helper(choices=("reset_mode",))
def _sweep_undriven(
    state, acc, t, search_end, bias, table, threshold, reset_mode, v_reset, due_next, out_idx, n_out
):
    """A sweep step ``t`` of an undriven layer (:func:`_undriven`) on the
    event path, for a step whose input reaches most neurons: every neuron,
    in index order, is brought forward to ``t`` (from its own last step, the
    arithmetic of :func:`_close_marked`), given its summed input ``acc``
    (zeroed), checked against threshold and reset; those due at ``t + 1``
    on their own are listed in ``due_next``. Returns ``(n_out, n_due)``,
    ``n_out`` -1 if ``out_idx`` is full."""
    cap = out_idx.shape[0]
    shared = bias.shape[0] == 1
    b = bias[0]
    decay1 = table[1, 0]
    gain1 = table[1, 2]
    soon = t + 1 < search_end
    stamp = state.dtype.type(t)
    n_due = 0
    for j in range(state.shape[0]):
        if not shared:
            b = bias[j]
        k = t - np.int64(state[j, T_LAST])  # a gather from a small table, no branch: k varies from j to j
        v = state[j, V] * table[k, 0] + b * table[k, 2]
        v += acc[j]
        acc[j] = 0
        state[j, T_LAST] = stamp
        if v >= threshold:
            if n_out >= cap:
                return -1, n_due
            out_idx[n_out] = j
            n_out += 1
            if reset_mode == RESET_SUBTRACT:
                v = v - threshold
            elif reset_mode == RESET_TO_VALUE:
                v = v_reset
            if v >= threshold and soon and v * decay1 + b * gain1 >= threshold:
                due_next[n_due] = j
                n_due += 1
        state[j, V] = v
    return n_out, n_due


@helper
def _due_after(state, t, search_end, bias, table, threshold, due_next):
    """The neurons of an undriven layer (:func:`_undriven`), all updated at
    step ``t``, that are due to fire on their own at ``t + 1`` (the rule of
    :func:`_close_marked`), listed in ``due_next``; returns their count."""
    n_due = 0
    if t + 1 >= search_end:
        return n_due
    shared = bias.shape[0] == 1
    b = bias[0]
    decay1 = table[1, 0]
    gain1 = table[1, 2]
    for j in range(state.shape[0]):
        v = state[j, V]
        if v >= threshold:
            if not shared:
                b = bias[j]
            if v * decay1 + b * gain1 >= threshold:
                due_next[n_due] = j
                n_due += 1
    return n_due


@helper
def _first_due(state, bias, table, n_steps, threshold, due_next):
    """The neurons of an undriven layer (:func:`_undriven`) due to fire on
    their own at step 0, from the state before it (``neuron.next_due`` from
    step -1: step 0 or never); returns their count."""
    n_due = 0
    if n_steps < 1:
        return n_due
    shared = bias.shape[0] == 1
    b = bias[0]
    for j in range(state.shape[0]):
        if not shared:
            b = bias[j]
        k = -np.int64(state[j, T_LAST])
        if state[j, V] * table[k, 0] + b * table[k, 2] >= threshold:
            due_next[n_due] = j
            n_due += 1
    return n_due


PRE_FIRST, PRE_END, PRE_ACC, PRE_W, PRE_KEY = range(5)  # the fields of an input's row in _conv_tables


def _conv_tables(geom, weights, n_runs, runs, like):
    """The tables of a convolution's delivery (:func:`conv_tables`): the flat weights in the
    state dtype (that of the array ``like``; converted once instead of at every
    synaptic operation: the same values), laid out as ``kernels.conv.delivery_weights``
    lays them; the delivery runs of ``kernels.conv.spatial_runs`` (``n_runs, runs``)
    flattened, those of input position ``p`` in consecutive rows (fields ``RUN_ACC ...``);
    and for each input neuron ``(c, y, x)`` one row (fields :data:`PRE_FIRST` ...): its
    position's runs ``PRE_FIRST .. PRE_END``, the offset of its group's
    channels in a channel-last pixel (``g * C_out/groups``), of its weights
    (``(c_local * kh * kw) * C_out + g * C_out/groups``) and of its group's
    pixels (``g * H_out * W_out``), so that delivery divides nothing and
    reads one row per input spike and one per run (no gather from separate
    tables). By numpy, once per layer and dtype: no kernel of its own to compile."""
    c_in, h_in, w_in, c_out, h_out, w_out, kh, kw = (int(v) for v in geom[:8])
    hw_in, groups, plane = h_in * w_in, int(geom[14]), h_out * w_out
    cg_in, cg_out, kk = c_in // groups, c_out // groups, kh * kw
    # delivery_weights: each kernel row's columns reordered where rows merge, converted exactly
    cols = (
        [column_in_python(kx, kw, int(geom[9])) for kx in range(kw)] if merges_rows(geom) else list(range(kw))
    )
    rows = weights.shape[0] // (kw * c_out) if kw * c_out else 0
    w_st = _aligned_in_python(weights.shape[0], like.dtype)  # see _aligned_empty
    w_st[: rows * kw * c_out].reshape(rows, kw, c_out)[:, cols] = weights[: rows * kw * c_out].reshape(
        rows, kw, c_out
    )
    n_runs = np.asarray(n_runs, np.int64)[:hw_in]
    start = np.zeros(hw_in + 1, np.int64)
    np.cumsum(n_runs, out=start[1:])
    flat_runs = np.ascontiguousarray(runs[:hw_in][np.arange(runs.shape[1]) < n_runs[:, None]], np.int64)
    pre = np.arange(c_in * hw_in, dtype=np.int64)
    c = pre // hw_in if hw_in else pre
    g = c // cg_in if cg_in else c
    p = pre - c * hw_in
    pre_rows = np.empty((pre.shape[0], 5), np.int64)
    pre_rows[:, PRE_FIRST] = start[p]
    pre_rows[:, PRE_END] = start[p + 1]
    pre_rows[:, PRE_ACC] = g * cg_out
    pre_rows[:, PRE_W] = (c - g * cg_in) * kk * c_out + g * cg_out
    pre_rows[:, PRE_KEY] = g * plane
    return w_st, pre_rows, flat_runs


def _aligned_in_python(n, dtype):
    """:func:`_aligned_empty` for numpy: ``n`` uninitialised values of
    ``dtype`` from a cache line on (a view of a larger buffer)."""
    size = np.dtype(dtype).itemsize
    buf = np.empty(n * size + _LINE, np.uint8)
    skip = -buf.ctypes.data % _LINE
    return buf[skip : skip + n * size].view(dtype)


def conv_tables(geom, weights, dtype) -> tuple:
    """``(w_st, pre_rows, flat_runs)``, what the CONV kernel reads of a
    convolution (:func:`_conv_tables`) for a state of ``dtype``: they depend
    on the geometry, the flat ``weights`` and ``dtype`` only, so a caller
    that runs a layer again builds them once (:func:`conv_layer`'s
    ``tables``). Writeable (numba compiles read-only arrays as another
    type), never written."""
    geom = np.ascontiguousarray(geom, np.int64)
    return _conv_tables(geom, weights, *run_tables(geom), np.empty(0, dtype))


@helper
def _to_channel_last(state, v_init, bias, table, n_steps, c_out, plane, v_cl, b_cl):
    """The membranes of a conv layer channel-last in ``v_cl`` (``pixel *
    C_out + c``): ``v_init`` (channel-first) if given, else those of
    ``state``; and the bias of one step (``bias * table[1, 2]``, what
    ``neuron.sweep_step`` adds) likewise in ``b_cl``."""
    gain = table[1, 2] if n_steps > 0 else table[0, 2]
    fresh = v_init.shape[0] > 0
    for c in range(c_out):
        for pixel in range(plane):
            j = c * plane + pixel
            v_cl[pixel * c_out + c] = v_init[j] if fresh else state[j, V]
            b_cl[pixel * c_out + c] = bias_of(bias, j) * gain


@helper
def _from_channel_last(state, v_cl, t, c_out, plane):
    """Back from :func:`_to_channel_last`: membranes into ``state``, every
    neuron at step ``t``."""
    stamp = state.dtype.type(t)
    for c in range(c_out):
        for pixel in range(plane):
            j = c * plane + pixel
            state[j, V] = v_cl[pixel * c_out + c]
            state[j, T_LAST] = stamp


_U = np.uint64
# _deliver_conv's field offsets in the flattened tables, unsigned (an unsigned index compiles
# without numba's wrap-around of negative indices; a mixed signed/unsigned sum would be a float)
# the strides: the tables' widths (their last field, plus one)
_PRE_STRIDE, _U_FIRST, _U_END, _U_PRE_ACC, _U_PRE_W, _U_KEY = (
    _U(k) for k in (PRE_KEY + 1, PRE_FIRST, PRE_END, PRE_ACC, PRE_W, PRE_KEY)
)
_RUN_STRIDE, _U_RUN_ACC, _U_RUN_W, _U_LEN, _U_PIXEL, _U_PIXELS = (
    _U(k) for k in (RUN_PIXELS + 1, RUN_ACC, RUN_W, RUN_LEN, RUN_PIXEL, RUN_PIXELS)
)


@helper(choices=("stamp",))
def _deliver_conv(
    in_idx, e0, e_end, weights, pre_flat, runs_flat, acc_cl, stamp, t, pixel_stamp, pixels, n_pixels
):
    """A convolution's delivery of the input spikes ``in_idx[e0:e_end]`` of step
    ``t`` (channel-first indices): each spike's contiguous runs of weights
    (:func:`conv_tables`, flattened runs of ``kernels.conv.spatial_runs``) added
    to ``acc_cl`` (channel-last), in the order of the spikes and of their runs.
    ``pre_flat``, ``runs_flat``: :func:`conv_tables`'s ``pre_rows`` and
    ``flat_runs`` flattened and read as uint64 (views; with unsigned
    indices, about 20 % less time a synaptic operation on EVENT-DIGITS'
    second convolution). ``stamp`` (the event path): each (group, pixel)
    reached for the first time at step ``t`` is stamped in ``pixel_stamp`` and
    appended to ``pixels`` after its first ``n_pixels``. Returns the synaptic
    operations and the new ``n_pixels``. A function of its own: compiled
    inside the layer kernel, the loop's speed varied with the code around it."""
    synops = _U(0)
    e = _U(e0)
    while e < _U(e_end):
        pre = _U(in_idx[e]) * _PRE_STRIDE
        a_base = pre_flat[pre + _U_PRE_ACC]
        w_base = pre_flat[pre + _U_PRE_W]
        r = pre_flat[pre + _U_FIRST] * _RUN_STRIDE
        r_end = pre_flat[pre + _U_END] * _RUN_STRIDE
        while r < r_end:
            length = runs_flat[r + _U_LEN]
            synops += length
            if stamp:
                key = np.int64(pre_flat[pre + _U_KEY] + runs_flat[r + _U_PIXEL])
                # the run's pixels last to first: the order of its taps (kx ascending)
                for q in range(np.int64(runs_flat[r + _U_PIXELS]) - 1, -1, -1):
                    if pixel_stamp[key + q] != t:
                        pixel_stamp[key + q] = t
                        pixels[n_pixels] = key + q
                        n_pixels += 1
            a0 = runs_flat[r + _U_RUN_ACC] + a_base
            w0 = runs_flat[r + _U_RUN_W] + w_base
            for co in range(length):
                acc_cl[a0 + co] += weights[w0 + co]
            r += _RUN_STRIDE
        e += _U(1)
    return np.int64(synops), n_pixels


@helper(choices=("reset_mode",))
def _conv_sweep(
    v_cl, acc_cl, b_cl, decay, threshold, reset_mode, v_reset, fired, listed, c_out, plane, out_idx, n_out
):
    """Clock-driven step of a plain IF/LIF conv layer kept channel-last
    (:func:`_to_channel_last`): every neuron ``v <- v * decay + b + input``
    (``neuron.sweep_step``'s arithmetic, in one contiguous branch-free loop
    that vectorises), input ``acc_cl`` zeroed, threshold, reset; then the
    spikes appended to ``out_idx`` as channel-first indices in increasing
    order (the order of ``sweep_step``; ``neuron.append_fired``, ``listed``
    its scratch). Returns the new spike count, or -1 if ``out_idx`` is
    full."""
    n = v_cl.shape[0]
    for j in range(n):
        v = v_cl[j] * decay + b_cl[j] + acc_cl[j]
        acc_cl[j] = 0
        spike = v >= threshold
        fired[j] = spike
        if reset_mode == RESET_SUBTRACT:
            v_cl[j] = v - threshold if spike else v
        elif reset_mode == RESET_TO_VALUE:
            v_cl[j] = v_reset if spike else v
        else:
            v_cl[j] = v
    return append_fired(fired, listed, c_out, plane, out_idx, n_out)


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

    CSR, event path: each step chooses its delivery from its synaptic
    operations S (summed from the row lengths first), so that a step costs
    what its own activity costs whatever the others do: S < ``two_phase_at``
    x n: each weight added directly to its neuron, brought forward at its
    first input (few neurons: no second pass); then, two phases (the input
    summed into ``acc`` and its targets marked, then the marked neurons in
    index order, :func:`_close_marked`); an undriven layer (:func:`_undriven`)
    with S >= ``sweep_at`` x n, or S >= :data:`SWEEP_HOLD` x ``sweep_at`` x n
    while every neuron is at the step before (after a sweep, or a step that
    touched them all; not at a run's first step): a sweep of every neuron
    (the clock path's arithmetic: :func:`_sweep_undriven`; while every
    neuron is at the step before, :func:`_conv_sweep` on the membranes in a
    contiguous row, as the clock path keeps them, written back when the run
    of sweeps ends). The choice depends on the step and on the state before
    it (a chunk that continues a run reads whether every neuron is at the
    step before from the state), so a run cut into chunks takes the paths
    one run takes; the paths give the same results except for the rounding
    of summed input (direct delivery adds each weight to the membrane, the
    others add their sum).

    The kernel's arguments are :func:`csr_layer`'s without the compile-time
    choices, ``rowptr, cols, weights, geom, pre_rows, flat_runs`` for the
    connectivity (CONV: ``weights`` the delivery weights in the state dtype
    and the last two as :func:`conv_tables` makes them; placeholders for
    what the kind does not use), ``two_phase_at, sweep_at``
    and ``lazy_below`` after ``settle`` (floats; CONV ignores them), then
    ``seen_b`` (below), and last ``first, stop``: it runs samples ``first
    .. stop - 1`` one after the other (see ``kernels._jit.run_samples``).

    Lazy start (CSR event path): ``seen_b`` ``[B, ceil(n / 64)]`` uint64
    (``[1, 0]``: none) lets a fresh run of an undriven layer whose input
    has fewer than ``lazy_below`` synaptic operations per neuron leave the
    neurons its input never reaches unwritten, so that they cost nothing:
    a neuron's row is set (``v_init``, no step yet) at its first input, and
    marked in ``seen_b`` (bit ``j & 63`` of word ``j >> 6``); rows not
    marked hold garbage, and stand for that initial state (the caller
    completes them where it reads them; a run not started lazily marks
    every bit). The caller promises that every ``v_init`` is below
    ``threshold`` (no neuron is due on its own at step 0). A step in two
    phases or as a sweep, or ``settle``, first writes every unmarked row and
    marks every bit."""

    def sparse_layer_sample(
        in_tptr_b,
        in_idx_b,
        rowptr,
        cols,
        weights,
        geom,
        pre_rows,
        flat_runs,
        bias_b,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        two_phase_at,
        sweep_at,
        lazy_below,
        seen_b,
        state_b,
        out_tptr_b,
        out_idx_b,
        counts_b,
        first,
        stop,
    ):
        if kind == CONV:
            hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
        # a plain IF/LIF layer on the clock path keeps its membranes and one step's bias
        # channel-last (below): the same for every sample of a fresh run with a shared bias,
        # so moved there once per call
        plain_clock = clock and not has_current and not has_refractory
        shared_start = plain_clock and bias_b.shape[0] == 1 and v_init.shape[0] > 0 and stop > first
        v_cl0 = _aligned_empty(state_b.shape[1] if shared_start else 0, state_b)
        b_cl0 = _aligned_empty(v_cl0.shape[0], state_b)
        if shared_start:
            steps = in_tptr_b.shape[1] - 1
            c_cl, plane_cl = (c_out, plane) if kind == CONV else (1, v_cl0.shape[0])
            _to_channel_last(state_b[first], v_init, bias_b[0], table, steps, c_cl, plane_cl, v_cl0, b_cl0)
        listed = np.empty(state_b.shape[1], np.int32)  # a step's spikes, before out_idx
        pre_flat = pre_rows.reshape(-1).view(np.uint64)  # what _deliver_conv reads
        runs_flat = flat_runs.reshape(-1).view(np.uint64)
        # CSR direct steps: targets, state and propagator read through unsigned indices (numba
        # wraps negative signed indices around: measured 25 % of a touch, 2026-11-29)
        cols_u = cols.view(np.uint32)
        table_flat = table.reshape(-1)
        table_width = np.uint64(table.shape[1])
        state_width = np.uint64(state_b.shape[2])
        for sample in range(first, stop):  # the samples of this call, one after the other
            in_tptr = in_tptr_b[sample]
            in_idx = in_idx_b[sample]
            bias = bias_b[sample % bias_b.shape[0]]  # [1, n]: shared by all samples
            state = state_b[sample]
            state_flat = state.reshape(-1)  # (a view: state_b is C-contiguous)
            seen = seen_b[sample if seen_b.shape[0] > 1 else 0]
            out_tptr = out_tptr_b[sample]
            out_idx = out_idx_b[sample]
            counts = counts_b[sample]
            n = state.shape[0]
            n_steps = in_tptr.shape[0] - 1
            # synaptic operations of a step from which it runs in two phases, or as a sweep
            two_phase_from = two_phase_at * n
            sweep_from = sweep_at * n
            hold_from = SWEEP_HOLD * sweep_from  # ... while every neuron is at the step before
            undriven = False  # CSR event path: see _undriven
            if not clock:
                undriven = kind == CSR and _undriven(bias, table, threshold, has_current, has_refractory)
            # input sums in neuron order (a convolution sums channel-last, into acc_cl below)
            # CSR event path: zeroed at its first step in two phases or as a sweep (few
            # touched neurons never need it: one pass over n fewer per run). Arrays of the
            # step loop are made before it, not in it: one assigned in the loop costs its
            # reference counting at every step (an empty step: 59 -> 12.5 ns, 2026-11-29)
            acc_zeroed = kind != CSR or clock
            acc = np.empty(
                0 if kind == CONV and (not clock or not has_current and not has_refractory) else n,
                state.dtype,
            )
            if acc_zeroed:
                acc[:] = 0.0
            # CSR event path, a run of sweep steps: the membranes in a row of their own (as the
            # clock path keeps them), set at the second sweep in a row and written back when
            # the run of sweeps ends; b_row set at the first
            row_width = n if undriven else 0
            v_row = np.empty(row_width, state.dtype)
            b_row = np.empty(row_width, state.dtype)
            fired_row = np.empty(row_width, np.uint8)
            b_row_set = False
            in_row = False
            fresh = v_init.shape[0] > 0  # a new run; otherwise ``state`` continues an earlier chunk
            # no neuron due at step 0 on its own: an undriven layer, a gain table[1, 2] >= 0, and the
            # caller's promise (``seen`` given: v_init below threshold); then a lazy start if the
            # run's input reaches few neurons (lazy_below: LAZY_START_BELOW unless a test asks)
            none_due = undriven and fresh and seen.shape[0] > 0 and n_steps > 0 and table[1, 2] >= 0
            lazy = none_due
            if lazy:
                run_synops = 0
                for e in range(in_tptr[n_steps]):
                    run_synops += rowptr[in_idx[e] + 1] - rowptr[in_idx[e]]
                lazy = run_synops < lazy_below * n
            if not lazy:
                seen[:] = _ALL  # (if given) every row written
            stamp0 = state.dtype.type(-1)  # the step of a neuron before the run's first
            shared = bias.shape[0] == 1  # (bias_of, written out)
            b_shared = bias[0]
            if fresh and not undriven:
                if clock and not has_current and not has_refractory and n_steps > 0:
                    pass  # membranes start in a row of their own; state is written once, after the steps
                else:
                    _init_state(state, v_init, has_current, has_refractory)
            if not clock:  # the calendar of self-driven spikes, and the neurons touched in a step
                head = _new_calendar(n_steps)
                in_calendar = 0 if undriven else n  # (an undriven layer keeps no calendar)
                nxt = np.empty(in_calendar, np.int32)
                prv = np.empty(in_calendar, np.int32)
                due = np.empty(in_calendar, np.int32)
                touched = np.empty(n, np.int32)
                due_next = np.empty(n if undriven else 0, np.int32)  # undriven: the neurons due at t + 1
                n_due = 0
                if lazy:
                    seen[:] = 0
                elif none_due:  # the initial state only (vectorised: no neuron is due at step 0)
                    for j in range(n):
                        state_flat[np.uint64(j) * state_width + _V_AT] = v_init[j]
                        state_flat[np.uint64(j) * state_width + _T_LAST_AT] = stamp0
                elif undriven and fresh:
                    # _init_state and _first_due in one pass (same arithmetic: v_init is in the
                    # state dtype, and a neuron at step -1 is k = 1 step before step 0)
                    decay0 = table[1, 0] if n_steps > 0 else state.dtype.type(0)
                    gain0 = table[1, 2] if n_steps > 0 else state.dtype.type(0)
                    b = bias[0]
                    for j in range(n):
                        v = v_init[j]
                        state[j, V] = v
                        state[j, T_LAST] = stamp0
                        if bias.shape[0] != 1:
                            b = bias[j]
                        if n_steps > 0 and v * decay0 + b * gain0 >= threshold:
                            due_next[n_due] = j
                            n_due += 1
                elif undriven:
                    n_due = _first_due(state, bias, table, n_steps, threshold, due_next)
                else:
                    due[:] = NEVER
                    _schedule_all(
                        state,
                        bias,
                        table,
                        n_steps,
                        threshold,
                        has_current,
                        has_refractory,
                        head,
                        nxt,
                        prv,
                        due,
                    )
                # marks of the neurons touched in a step (see _mark), or due (_pop_due)
                bits = np.zeros((n + 63) >> 6, np.uint64)
                summary = np.zeros((bits.shape[0] + 63) >> 6, np.uint64)
            if kind == CONV:
                # input is summed channel-last (``acc_cl[pixel * c_out + c]``: the
                # output channels of one tap are contiguous, so the sum vectorises),
                # and the channels of a touched (group, pixel) are brought forward together
                acc_cl = _aligned_empty(n, state)
                acc_cl[:] = 0.0
                # event path: the (group, pixel)s touched in a step, and when each was last
                pixel_stamp = np.empty(0 if clock else geom[14] * plane, np.int64)
                pixel_stamp[:] = -1
                pixels = np.empty(pixel_stamp.shape[0], np.int64)
            if plain_clock:
                # conv: membranes and one step's bias channel-last, spikes of a step as flags; CSR:
                # the membranes in a row of their own and swept as a conv layer's (_conv_sweep with
                # one channel: branch-free, vectorised; same arithmetic as sweep_step)
                fired = np.empty(n, np.uint8)
                decay = table[1, 0] if n_steps > 0 else state.dtype.type(1)
                v_cl = _aligned_empty(n, state)
                if shared_start:
                    v_cl[:] = v_cl0
                    b_cl = b_cl0
                else:
                    b_cl = _aligned_empty(n, state)
                    c_cl, plane_cl = (c_out, plane) if kind == CONV else (1, n)
                    _to_channel_last(state, v_init, bias, table, n_steps, c_cl, plane_cl, v_cl, b_cl)
            n_pixels = 0
            # CSR event path: every neuron is at step t - 1 after a step of this run (1 yes, 0 no
            # or a run's first step, -1 not known: a chunk that continues a run reads it from the
            # state when a step needs it)
            all_at_prev = 0 if fresh else -1
            synops = 0
            updates = 0
            n_out = 0
            e_chunk = in_tptr[n_steps]  # the input spikes of all the steps
            for t in range(n_steps):
                out_tptr[t] = n_out
                n_touched = 0
                e_end = in_tptr[t + 1]
                if kind == CSR and not clock:
                    stamp = state.dtype.type(t)
                    e0 = in_tptr[t]
                    step_synops = 0
                    for e in range(e0, e_end):
                        pre = in_idx[e]
                        step_synops += rowptr[pre + 1] - rowptr[pre]
                    synops += step_synops
                    if undriven and all_at_prev < 0 and hold_from <= step_synops < sweep_from:
                        all_at_prev = 1
                        for j in range(n):
                            if state[j, T_LAST] != stamp - 1:
                                all_at_prev = 0
                                break
                    sweep = undriven and (
                        step_synops >= sweep_from or all_at_prev == 1 and step_synops >= hold_from
                    )
                    if not acc_zeroed and (sweep or step_synops >= two_phase_from):
                        acc[:] = 0.0
                        acc_zeroed = True
                    if lazy and (sweep or step_synops >= two_phase_from):  # rows read by position
                        _set_unmarked(state, seen, v_init)
                        lazy = False
                    if sweep:
                        # a sweep: the input summed, then every neuron in index order
                        if n * acc.itemsize > _TARGETS_FAR_BYTES:
                            _sum_prefetched(acc, rowptr, cols, weights, in_idx, e0, e_end)
                        else:
                            for e in range(e0, e_end):
                                if e + _AHEAD < e_end:
                                    _prefetch_row(rowptr, cols, weights, np.int64(in_idx[e + _AHEAD]))
                                pre = in_idx[e]
                                for s in range(rowptr[pre], rowptr[pre + 1]):
                                    acc[cols[s]] += weights[s]
                        if all_at_prev == 1:  # the clock path's sweep (same arithmetic)
                            if not in_row:
                                if not b_row_set:
                                    b_row_set = True
                                    for j in range(n):  # one step's bias, as neuron.sweep_step adds it
                                        b_row[j] = bias_of(bias, j) * table[1, 2]
                                for j in range(n):
                                    v_row[j] = state[j, V]
                                in_row = True
                            n_out = _conv_sweep(
                                v_row,
                                acc,
                                b_row,
                                table[1, 0],
                                threshold,
                                reset_mode,
                                v_reset,
                                fired_row,
                                listed,
                                1,
                                n,
                                out_idx,
                                n_out,
                            )
                            n_due = -1  # the list of neurons due at t + 1: not made (see below)
                        else:
                            n_out, n_due = _sweep_undriven(
                                state,
                                acc,
                                t,
                                n_steps,
                                bias,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                due_next,
                                out_idx,
                                n_out,
                            )
                        n_touched = n
                    elif n_due < 0:  # after a run of sweeps: the neurons due now, from the state it left
                        if in_row:
                            _from_channel_last(state, v_row, t - 1, 1, n)
                            in_row = False
                        n_due = _due_after(state, t - 1, n_steps, bias, table, threshold, due_next)
                    if sweep:
                        pass
                    elif step_synops >= two_phase_from:
                        # two phases: sum the input and mark the targets (no neuron state
                        # read), then the marked neurons in index order. A step with at least
                        # as many synaptic operations as words of marks marks most words: the
                        # summary then marks them all, once, instead of a dependent read-
                        # modify-write of one of its few words per synapse
                        n_words = bits.shape[0]
                        by_synapse = step_synops < n_words
                        if not by_synapse:
                            for sw in range(summary.shape[0]):
                                left = n_words - (sw << 6)
                                summary[sw] = _ALL if left >= 64 else (_ONE << np.uint64(left)) - _ONE
                        for e in range(e0, e_end):
                            if e + _AHEAD < e_end:
                                _prefetch_row(rowptr, cols, weights, np.int64(in_idx[e + _AHEAD]))
                            pre = in_idx[e]
                            for s in range(rowptr[pre], rowptr[pre + 1]):
                                j = np.int64(cols[s])
                                acc[j] += weights[s]
                                word = j >> 6  # _mark(bits, summary, j), written out
                                bits[word] |= _ONE << np.uint64(j & 63)
                                if by_synapse:
                                    summary[word >> 6] |= _ONE << np.uint64(word & 63)
                        if undriven:
                            for q in range(n_due):
                                _mark(bits, summary, np.int64(due_next[q]))
                        else:
                            j = head[t]
                            while j >= 0:
                                _mark(bits, summary, np.int64(j))
                                j = nxt[j]
                        n_out, n_due, n_touched = _close_marked(
                            state,
                            acc,
                            bits,
                            summary,
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
                            undriven,
                            head,
                            nxt,
                            prv,
                            due,
                            due_next,
                            0,
                            out_idx,
                            n_out,
                        )
                    else:
                        # direct: each synaptic weight added to its neuron, brought
                        # forward at its first input of the step (few neurons touched:
                        # cheaper than a second pass over them)
                        # the highest membrane the step leaves a touched neuron with (undriven):
                        # below threshold, none fires and none is due at t + 1, so the pass over
                        # them (_close_touched_undriven) has nothing to do
                        peak = -np.inf
                        if undriven:  # the neurons due on their own now, then the list is empty
                            for q in range(n_due):
                                j = np.int64(due_next[q])
                                advance(state, j, t, bias_of(bias, j), table, False, False)
                                touched[n_touched] = j
                                n_touched += 1
                                peak = max(peak, state[j, V])
                            n_due = 0
                        if e0 < e_end:
                            _prefetch_targets(state, rowptr, cols, np.int64(in_idx[e0]))
                        for e in range(e0, e_end):
                            # rows ahead across the steps too: a sparse step's few spikes would
                            # otherwise each wait for a row from memory
                            if e + _AHEAD < e_chunk:
                                _prefetch_row(rowptr, cols, weights, np.int64(in_idx[e + _AHEAD]))
                            if e + 1 < e_end:
                                _prefetch_targets(state, rowptr, cols, np.int64(in_idx[e + 1]))
                            pre = in_idx[e]
                            if undriven and not has_current and not has_refractory:
                                # _touch written out (same arithmetic): a call per synapse costs more
                                for s in range(rowptr[pre], rowptr[pre + 1]):
                                    j = np.uint64(cols_u[s])
                                    at = j * state_width  # state_flat[at + _V_AT]: its membrane
                                    last = state_flat[at + _T_LAST_AT]
                                    v = state_flat[at + _V_AT]
                                    if lazy:  # a neuron's first input of the run: its row set now
                                        word = j >> _SIX
                                        bit = _ONE << (j & _LOW6)
                                        if not seen[word] & bit:
                                            seen[word] |= bit
                                            v = v_init[j]
                                            last = stamp0
                                    if last != stamp:
                                        k = np.uint64(t - np.int64(last)) * table_width
                                        b = b_shared if shared else bias[j]  # (bias_of, written out)
                                        v = v * table_flat[k] + b * table_flat[k + _TWO]
                                        state_flat[at + _T_LAST_AT] = stamp
                                        touched[n_touched] = j
                                        n_touched += 1
                                    v = v + weights[s]
                                    state_flat[at + _V_AT] = v
                                    peak = max(peak, v)
                                continue
                            for s in range(rowptr[pre], rowptr[pre + 1]):
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
                        if undriven and peak >= threshold:
                            n_out, n_due = _close_touched_undriven(
                                state_flat,
                                state_width,
                                touched,
                                n_touched,
                                t,
                                n_steps,
                                bias,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                due_next,
                                0,
                                out_idx,
                                n_out,
                            )
                        elif not undriven:
                            due_from = n_touched  # the due neurons: touched[due_from:]
                            n_touched = _pop_due(
                                state,
                                t,
                                bias,
                                table,
                                has_current,
                                has_refractory,
                                head,
                                nxt,
                                touched,
                                n_touched,
                            )
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
                                due_from,
                                bits,
                                summary,
                            )
                    updates += n_touched
                    all_at_prev = 1 if n_touched == n else 0
                    if n_out < 0:
                        break
                    continue
                if kind == CONV:  # summed into acc_cl, no branch per synapse (then per touched pixel)
                    delivered, n_pixels = _deliver_conv(
                        in_idx,
                        in_tptr[t],
                        e_end,
                        weights,
                        pre_flat,
                        runs_flat,
                        acc_cl,
                        not clock,
                        t,
                        pixel_stamp,
                        pixels,
                        n_pixels,
                    )
                    synops += delivered
                else:
                    for e in range(in_tptr[t], e_end):
                        pre = in_idx[e]
                        if e + _AHEAD < e_end:
                            _prefetch_row(rowptr, cols, weights, np.int64(in_idx[e + _AHEAD]))
                        s0 = rowptr[pre]
                        s1 = rowptr[pre + 1]
                        synops += s1 - s0
                        for s in range(s0, s1):  # the clock path (the event path's steps: above)
                            acc[cols[s]] += weights[s]
                if clock:
                    if (
                        kind == CONV and not has_current and not has_refractory
                    ):  # channel-last, no transposition (same arithmetic)
                        updates += n
                        n_out = _conv_sweep(
                            v_cl,
                            acc_cl,
                            b_cl,
                            decay,
                            threshold,
                            reset_mode,
                            v_reset,
                            fired,
                            listed,
                            c_out,
                            plane,
                            out_idx,
                            n_out,
                        )
                        if n_out < 0:
                            break
                        continue
                    if kind == CSR and not has_current and not has_refractory:
                        updates += n
                        n_out = _conv_sweep(
                            v_cl,
                            acc,
                            b_cl,
                            decay,
                            threshold,
                            reset_mode,
                            v_reset,
                            fired,
                            listed,
                            1,
                            n,
                            out_idx,
                            n_out,
                        )
                        if n_out < 0:
                            break
                        continue
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
                due_from = n_touched  # the due neurons: touched[due_from:]
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
                    due_from,
                    bits,
                    summary,
                )
                if n_out < 0:
                    break
            if n_out < 0:  # out_idx is full: the caller runs the sample again with more room
                counts[3] = OVERFLOW
                continue
            out_tptr[n_steps] = n_out
            if in_row:  # the steps ended in a run of sweeps
                _from_channel_last(state, v_row, n_steps - 1, 1, n)
            if kind == CONV and clock and not has_current and not has_refractory and n_steps > 0:
                _from_channel_last(state, v_cl, n_steps - 1, c_out, plane)
            if kind == CSR and clock and not has_current and not has_refractory and n_steps > 0:
                _from_channel_last(state, v_cl, n_steps - 1, 1, n)
            if settle and not clock:
                if lazy:
                    _set_unmarked(state, seen, v_init)
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
                bits = np.zeros((n + 63) >> 6, np.uint64)  # _pop_due's marks
                summary = np.zeros((bits.shape[0] + 63) >> 6, np.uint64)
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
                        n,  # every neuron is touched by input: none due
                        bits,
                        summary,
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
                        0,  # the neurons due, all of them
                        bits,
                        summary,
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


def state_in_cache(n, width, dtype) -> bool:
    """Whether the state of ``n`` neurons (``width`` values of ``dtype`` each)
    and their input sums take at most :data:`TWO_PHASE_STATE_BYTES` (a CSR
    layer's event path then runs two-phase steps from :data:`TWO_PHASE_AT`,
    else from :data:`TWO_PHASE_AT_OUT_OF_CACHE`)."""
    return n * (width + 1) * np.dtype(dtype).itemsize <= TWO_PHASE_STATE_BYTES


def default_two_phase_at(n, width, dtype) -> float:
    """The fraction of its ``n`` neurons from which a CSR layer's event path
    runs a step in two phases by default (see :func:`state_in_cache`)."""
    return TWO_PHASE_AT if state_in_cache(n, width, dtype) else TWO_PHASE_AT_OUT_OF_CACHE


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
    two_phase_at=None,
    sweep_at=None,
    seen=None,
    lazy_below=LAZY_START_BELOW,
):
    """A batch through a sparse CSR projection (``rowptr`` int64 ``[n_in+1]``,
    ``cols`` int32, ``weights`` float32), samples in parallel; ``clock``:
    every neuron updated at every step (see :func:`sparse_kernel`). The
    flags (``clock``, ``has_current``, ``has_refractory``, ``reset_mode``)
    choose the compiled kernel. ``two_phase_at``: on the event path, a step
    whose synaptic operations reach this fraction of the layer's neurons
    runs in two phases, the others deliver directly (default
    :data:`TWO_PHASE_AT`, or :data:`TWO_PHASE_AT_OUT_OF_CACHE` for a state
    larger than :data:`TWO_PHASE_STATE_BYTES`; 0: every step in two phases,
    ``inf``: none; the results are the same up to the rounding of summed
    input). ``sweep_at``: likewise, the steps of an undriven layer run as a
    sweep of every neuron (default :data:`SWEEP_AT`; ``inf``: never, so that
    the event path updates only the neurons its input reaches or that are
    due; a sweep counts every neuron as updated). ``seen``: ``[B,
    ceil(n / 64)]`` uint64 for a lazy start (:func:`sparse_kernel`; the
    caller's promise: every ``v_init`` below ``threshold``), default none,
    taken by a run of fewer than ``lazy_below`` synaptic operations per
    neuron."""
    if two_phase_at is None:
        two_phase_at = default_two_phase_at(*state.shape[1:], state.dtype)
    if sweep_at is None:
        sweep_at = SWEEP_AT
    run_samples(
        sparse_kernel(CSR, *_choices(clock, has_current, has_refractory, reset_mode)),
        len(in_tptr),
        in_tptr,
        in_idx,
        rowptr,
        cols,
        weights,
        _NO_GEOM,
        *_NO_TABLES,
        bias,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        float(two_phase_at),
        float(sweep_at),
        float(lazy_below),
        _NO_MARKS if seen is None else seen,
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
    tables=None,
):
    """A batch through a Conv2d projection (``geom`` and flat ``weights`` as
    in ``kernels.conv``), samples in parallel; ``clock`` and the flags as in
    :func:`csr_layer`. ``tables``: :func:`conv_tables` of ``geom``,
    ``weights`` and the state's dtype (default: built here, for this call)."""
    w_st, pre_rows, flat_runs = conv_tables(geom, weights, state.dtype) if tables is None else tables
    run_samples(
        sparse_kernel(CONV, *_choices(clock, has_current, has_refractory, reset_mode)),
        len(in_tptr),
        in_tptr,
        in_idx,
        _NO_ROWPTR,
        _NO_COLS,
        w_st,
        geom,
        pre_rows,
        flat_runs,
        bias,
        table,
        threshold,
        v_reset,
        refractory,
        v_init,
        settle,
        0.0,  # two_phase_at, sweep_at and a lazy start: CSR only
        0.0,
        0.0,
        _NO_MARKS,
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
