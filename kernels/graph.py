"""Event-driven kernel of a network that is a graph: populations joined by
projections with integer delays (recurrent ones included), stepped together.

Numbering
---------
Populations are numbered in processing order: input populations (spike
sources) first, then neuron populations ordered so that every zero-delay
projection goes from an earlier to a later one (the caller sorts and checks
this). Neurons have global ids; population ``p`` owns
``pop_start[p] .. pop_start[p + 1] - 1``.

Spike history instead of a ring buffer
--------------------------------------
Every spike of the run is kept in ``hist_idx`` (global ids), grouped by step
then population: the spikes of population ``p`` at step ``t`` are
``hist_idx[hist_ptr[t, p]:hist_ptr[t, p + 1]]`` (``hist_ptr[t, P]`` ends
step ``t``). A projection with delay ``d`` reads its source's spikes of step
``t - d`` from there when step ``t`` is computed, so delays cost neither a
buffer of pending input per neuron nor any work per step; per-synapse delays
are projections split by delay value (done by the caller). The recorded
spikes are the run's result anyway.

A step, for each neuron population in order
-------------------------------------------
1. arrivals: for every projection into it, every source spike of step
   ``t - d`` adds its weights to ``acc`` of its targets (one synaptic
   operation each); the first arrival marks a target as touched. A dense
   projection's row (consecutive targets) into a clock-stepped population
   is one contiguous add. A convolution scatters the spike through its
   kernel into sums kept channel-last (the output channels of one tap, or
   of a kernel row's taps reaching consecutive pixels, are one contiguous
   run of the kernel: vectorised, no branch per synapse), folded into
   ``acc`` once per step and neuron (all of a clock-stepped population; the
   pixels reached of an event-stepped one, marking their neurons touched);
2. background: each Poisson source draws the population's event count of
   the step, ``Poisson(lam * n)``, and sends each event to a uniformly drawn
   neuron (independent Poisson trains per neuron, split exactly);
3. neurons due to fire on their own (calendar) are touched too;
4. each touched neuron is brought forward in closed form (lazy leak), gets
   ``acc``, is checked against threshold, reset, and rescheduled.
Neurons that receive nothing cost nothing. A clock-stepped population
instead steps every neuron (``neuron.sweep_step``; an IF/LIF one in a
branch-free loop that vectorises, its spikes appended after it).

Early exit
----------
Specialised with ``exit_rule``, the kernel judges a rule
(``GraphInputs.exit_rule``, fields ``EXIT_*``: min steps, patience, margin,
confidence, check interval) on the recorded values (a readout population's
membrane) after every step of every sample, and stops stepping a sample
once it holds (``GraphState.exit_state`` notes its exit step), so that a
run with an early exit is one kernel call; :func:`exit_holds` is the same
rule for callers judging it outside the kernel.

Arguments
---------
Three named tuples, their fields documented on the classes (``P``
populations, ``N`` neurons, ``K`` projections, ``G`` background sources,
``R`` recorded neurons, ``B`` samples, ``T`` steps in all):
:class:`GraphPlan`, the plan's constants; :class:`GraphInputs`, a run's
constants; :class:`GraphState`, what a run mutates (per sample, leading
axis ``B``). The samples of a batch run in chunks on threads over one
compiled kernel (``kernels._jit.run_samples``).

Compile-time choices
--------------------
:func:`graph_kernel` is written once and specialised (``kernels._jit``) to
what a run uses (:func:`graph_choices`): which projection kinds there are
(CSR, convolution), whether any population has Poisson background, and the
neuron models (``MODEL_*``: with or without a current and a refractory
period) of the event-stepped, the clock-stepped and the recorded
populations. The helpers of each model are called with its flags as
constants, so a network of plain LIF populations compiles no current or
refractory code, a clock-stepped one no calendar, and so on. A caller may
ask for paths a run does not take (a population whose path is chosen from
its input), so that one kernel serves its runs.
"""

from typing import NamedTuple

import numpy as np

from ._jit import helper, jit, run_samples, specialise
from .conv import RUN_ACC, RUN_LEN, RUN_PIXEL, RUN_PIXELS, RUN_W, conv_sizes, delivery_weights, run_tables
from .event import CONV, CSR, _prefetch
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
    value_at,
)
from .rng import below, next_u64, poisson

ROW_REGISTERS = 16  # a dense projection of at most this many targets sums them in registers
ORDERED_CLOSE = 16  # close in index order once more than 1/16 of a population is touched
# a population's neuron model, 2 * has_current + has_refractory; a set of models is a bit mask
MODEL_PLAIN, MODEL_REF, MODEL_CUR, MODEL_CUR_REF = 0, 1, 2, 3
# graph_kernel's csr choice: no CSR projection; some; some whose rows are the same few targets
# (GraphPlan.proj_rows) into a population that may be clock-stepped (their sums kept in registers)
CSR_NONE, CSR_SCATTER, CSR_ROWS = 0, 1, 3


class GraphPlan(NamedTuple):
    """The plan's constants, shared by every sample of a run.

    pop_start [P + 1] int64; n_inputs: the first ``n_inputs`` populations are
    inputs. thr, v_reset [P] state dtype; reset_mode, refractory [P] int64;
    model [P] int64 (``MODEL_*``). v_init [N] state dtype: membrane before
    step 0. in_ptr [P + 1] int64: the projections into ``p`` are ``in_ptr[p]
    .. in_ptr[p + 1] - 1`` (sorted by target); proj_src, proj_delay [K]
    int64; proj_rp [K] int64: projection ``k``'s rows start at
    ``rowptr[proj_rp[k]]`` (``n_src + 1`` entries, absolute synapse
    offsets); cols int32 (target index within the target population) and
    weights float32, per synapse; proj_w [K] state dtype and proj_shared [K]
    bool: one weight for all of a projection's synapses; otherwise synapse
    ``s`` has ``weights[s + proj_woff[k]]`` (``weights`` holds only the
    projections without a shared weight). proj_kind [K] int64: ``CSR`` (the
    rows above) or ``CONV``: a convolution, never expanded; its kernel is
    ``weights[proj_woff[k]:]`` laid out ``[C_in / groups, kh, kw, C_out]``,
    its geometry ``proj_geom[k]`` ([K, 15] int64, ``conv.GEOM_FIELDS``).
    bg_ptr [P + 1] int64: background sources of ``p`` are ``bg_ptr[p] ..
    bg_ptr[p + 1] - 1``; bg_lam [G] float64 expected events per neuron per
    step; bg_w [G] state dtype.

    Derived from the fields above by :func:`plan_tables` (the caller passes
    them on): proj_span [K] bool: every row of CSR projection ``k`` is one
    ascending run of consecutive targets (a dense projection), delivered as
    one contiguous add per spike; a convolution's delivery runs
    (``conv.spatial_runs``) for input position ``p``, ``run_n[run_off[k] +
    p]`` of them in ``runs[run_off[k] + p]`` (run_off [K], run_n [M] int64,
    runs [M, R, 5] int64), and its kernel as they read it
    (``conv.delivery_weights``, float32) at ``conv_w[conv_woff[k]:]``."""

    pop_start: np.ndarray
    n_inputs: int
    thr: np.ndarray
    reset_mode: np.ndarray
    v_reset: np.ndarray
    refractory: np.ndarray
    model: np.ndarray
    v_init: np.ndarray
    in_ptr: np.ndarray
    proj_src: np.ndarray
    proj_delay: np.ndarray
    proj_rp: np.ndarray
    proj_w: np.ndarray
    proj_shared: np.ndarray
    rowptr: np.ndarray
    cols: np.ndarray
    weights: np.ndarray
    proj_woff: np.ndarray
    proj_kind: np.ndarray
    proj_geom: np.ndarray
    bg_ptr: np.ndarray
    bg_lam: np.ndarray
    bg_w: np.ndarray
    proj_span: np.ndarray
    run_off: np.ndarray
    run_n: np.ndarray
    runs: np.ndarray
    conv_w: np.ndarray
    conv_woff: np.ndarray
    proj_rows: np.ndarray


# the fields of GraphPlan derived by plan_tables
DERIVED = ("proj_span", "run_off", "run_n", "runs", "conv_w", "conv_woff", "proj_rows")


def _consecutive_rows(ptr, cols, chunk=1 << 16):
    """True if each row ``cols[ptr[r] : ptr[r + 1]]`` is ascending
    consecutive targets: every synapse whose target is not its
    predecessor's plus one starts a row. Read in chunks (a few hundred KB of
    temporaries whatever the projection's size), stopping at the first
    chunk that says no."""
    starts = ptr[1:-1]  # synapses that start a row (the first synapse needs no check)
    for a in range(ptr[0], ptr[-1] - 1, chunk):
        b = min(ptr[-1] - 1, a + chunk)
        breaks = np.flatnonzero(np.diff(cols[a : b + 1]) != 1) + a + 1
        if not np.isin(breaks, starts[np.searchsorted(starts, a + 1) : np.searchsorted(starts, b + 1)]).all():
            return False
    return True


def plan_tables(pop_start, proj_src, proj_kind, proj_geom, proj_rp, rowptr, cols, weights, proj_woff):
    """The :class:`GraphPlan` fields derived from the projections (named in
    :data:`DERIVED`, by numpy, once per plan), as a dict: which CSR
    projections have rows of consecutive targets, and the delivery runs and
    kernels (float32) of the convolutions."""
    n_proj = len(proj_kind)
    span = np.zeros(n_proj, np.bool_)
    rows = np.zeros(n_proj, np.int64)
    run_off = np.zeros(n_proj, np.int64)
    counts, tables, kernels_ = [], [], []
    conv_woff = np.zeros(n_proj, np.int64)
    at = n_runs = 0
    for k in range(n_proj):
        if proj_kind[k] == CONV:
            geom = np.ascontiguousarray(proj_geom[k], np.int64)
            n, runs = run_tables(geom)
            run_off[k] = n_runs
            n_runs += len(n)
            counts.append(n)
            tables.append(runs)
            size = geom[6] * geom[7] * geom[0] // geom[14] * geom[3]
            out = np.empty(size, np.float32)  # read into the sums as they are: fits cache better
            delivery_weights(geom, weights[proj_woff[k] : proj_woff[k] + size], out)
            conv_woff[k] = at
            at += size
            kernels_.append(out)
            continue
        src = proj_src[k]
        n_src = pop_start[src + 1] - pop_start[src]
        ptr = rowptr[proj_rp[k] : proj_rp[k] + n_src + 1]
        span[k] = _consecutive_rows(ptr, cols)
        lengths = np.diff(ptr)
        if span[k] and n_src and 0 < lengths[0] <= ROW_REGISTERS and (lengths == lengths[0]).all():
            if (cols[ptr[:-1]] == cols[ptr[0]]).all():
                rows[k] = lengths[0]
    width = max([t.shape[1] for t in tables], default=1)
    runs = np.zeros((max(n_runs, 1), width, 5), np.int64)
    at_run = 0
    for t in tables:
        runs[at_run : at_run + len(t), : t.shape[1]] = t
        at_run += len(t)
    return dict(
        proj_span=span,
        run_off=run_off,
        run_n=np.concatenate(counts) if counts else np.zeros(1, np.int64),
        runs=runs,
        conv_w=np.concatenate(kernels_) if kernels_ else np.zeros(1, np.float32),
        conv_woff=conv_woff,
        proj_rows=rows,
    )


class GraphInputs(NamedTuple):
    """A run's constants. pop_clock [P] bool: populations stepped
    clock-driven (every neuron every step, see ``neuron.sweep_step``)
    instead of event-driven; tables [P, T + 1, 5] state dtype (propagators,
    see ``neuron``); bias [B, nb] state dtype (a constant input current is a
    per-sample bias) and bias_off [P + 1] int64: the bias of population
    ``p`` is ``bias[s, bias_off[p]:bias_off[p + 1]]``, one value per neuron
    or one shared by all (no random reads then); rec_ids, rec_pop, rec_var
    [R] int64: recorded neurons (global id, population) and variable (0
    membrane, 1 synaptic current); exit_rule float64: empty, or the
    ``EXIT_FIELDS`` of an early-exit rule judged on the recorded values (a
    kernel specialised with ``exit_rule``, see :func:`_exit_step`); in_tptr [B, T +
    1] int64, in_idx [B, E] int32: input spikes per step, global ids sorted
    within a step."""

    pop_clock: np.ndarray
    tables: np.ndarray
    bias: np.ndarray
    bias_off: np.ndarray
    rec_ids: np.ndarray
    rec_pop: np.ndarray
    rec_var: np.ndarray
    exit_rule: np.ndarray
    in_tptr: np.ndarray
    in_idx: np.ndarray


class GraphState(NamedTuple):
    """What a run mutates, per sample (leading axis ``B``): state [B, N,
    width]; acc [B, N] state dtype (zero between steps); mark [B, N] uint8
    (zero between steps); touched [B, N + 1] int32; head [B, P, T + 1] int32,
    nxt, prv, due [B, N] int32 (calendars of the event-stepped populations,
    see ``neuron``); rng [B, G, 4] uint64: one generator per background
    source (so a source draws the same events whichever populations are
    stepped with it); hist_ptr [B, T, P + 1] int64; hist_idx [B, H] int32;
    rec_v [B, T, R] state dtype (recorded variable at the end of each step);
    counts [B, P, 4] int64 (synaptic operations received, state updates,
    spikes, background events); progress [B, 3] int64 (spikes in the
    history so far, next step, 1 once the sample's state and calendars
    are set up; 2: the state is set, the calendars are to be built from it
    at the next step, after a bias change or a rebase); cacc [B, N] state
    dtype, cmark [B, N] int32 (zero between steps), clist [B, N] int32: a
    convolution's arrivals, summed channel-last (target population ``p``'s
    ``(pixel, channel)`` at ``pop_start[p] + pixel * C_out + channel``) and
    folded into ``acc`` once per step (``[B, 1]`` each when no projection is
    a convolution); exit_state [B, 4] int64 (a kernel with ``exit_rule``):
    the decision after the last step (-1 before step 1), the steps it has
    been unchanged, the exit step (0 while none) and 1 once the sample has
    stopped; vclk [B, N] state dtype: during a kernel call, the membranes
    of its clock-stepped IF/LIF populations, contiguous (the sweep
    vectorises; ``state``'s rows, whose ``V`` and ``T_LAST`` it leaves
    stale meanwhile, get them back at the end of the call, except those of
    a sample that has stopped at an early exit). Scratch: with
    a kernel call's samples run from their start to their end (an early
    exit, its history long enough for every step), the arrays of state,
    marks, calendars, sums, history and ``vclk`` may have one row, which
    the samples of the call share one after the other (it stays in cache);
    ``rng``, ``rec_v``, ``counts``, ``progress`` and ``exit_state`` are per
    sample always."""

    state: np.ndarray
    acc: np.ndarray
    mark: np.ndarray
    touched: np.ndarray
    head: np.ndarray
    nxt: np.ndarray
    prv: np.ndarray
    due: np.ndarray
    rng: np.ndarray
    hist_ptr: np.ndarray
    hist_idx: np.ndarray
    rec_v: np.ndarray
    counts: np.ndarray
    progress: np.ndarray
    cacc: np.ndarray
    cmark: np.ndarray
    clist: np.ndarray
    exit_state: np.ndarray
    vclk: np.ndarray


@helper
def _close_plain(
    state,
    acc,
    mark,
    touched,
    n_touched,
    t,
    n_steps,
    bias,
    base,
    table,
    threshold,
    reset_mode,
    v_reset,
    calendar,
    nxt,
    prv,
    due,
    hist_idx,
    n_hist,
):
    """The close of a step for an IF/LIF population (no current, no
    refractory period): ``advance``, ``deliver``, ``fire`` and rescheduling
    inlined by hand, same arithmetic; the self-driven search is skipped where
    it cannot find anything (no positive bias, below threshold)."""
    for q in range(n_touched):
        j = touched[q]
        mark[j] = 0
        b = bias_of(bias, j - base)
        k = t - np.int64(state[j, T_LAST])
        v = state[j, V] * table[k, 0] + b * table[k, 2] + acc[j]
        acc[j] = 0
        state[j, T_LAST] = t
        if v >= threshold:
            hist_idx[n_hist] = j
            n_hist += 1
            v = after_spike(v, threshold, reset_mode, v_reset)
        state[j, V] = v
        calendar_remove(calendar, nxt, prv, due, j)
        if b > 0 or v >= threshold:
            s = next_due(state, j, t, n_steps, b, threshold, table, False, False)
            if s != NEVER:
                calendar_insert(calendar, nxt, prv, due, j, s)
    return n_hist


@helper
def _close_general(
    state,
    acc,
    mark,
    touched,
    n_touched,
    t,
    n_steps,
    bias,
    base,
    table,
    threshold,
    reset_mode,
    v_reset,
    refractory,
    has_current,
    has_refractory,
    calendar,
    nxt,
    prv,
    due,
    hist_idx,
    n_hist,
):
    """The close of a step for the touched neurons of any model: bring each
    forward (lazy leak), add its input, fire, reset and reschedule."""
    for q in range(n_touched):
        j = touched[q]
        mark[j] = 0
        b = bias_of(bias, j - base)
        advance(state, j, t, b, table, has_current, has_refractory)
        deliver(state, j, t, acc[j], has_current, has_refractory)
        acc[j] = 0
        if fire(state, j, t, threshold, reset_mode, v_reset, refractory, has_refractory):
            hist_idx[n_hist] = j
            n_hist += 1
        calendar_remove(calendar, nxt, prv, due, j)
        s = next_due(state, j, t, n_steps, b, threshold, table, has_current, has_refractory)
        if s != NEVER:
            calendar_insert(calendar, nxt, prv, due, j, s)
    return n_hist


@helper
def _deliver_conv(
    spikes,
    first,
    base,
    geom,
    weights,
    run_n,
    runs,
    clock,
    cacc,
    cmark,
    clist,
    n_list,
    synops,
):
    """A convolution's arrivals: each source spike (global id, the source
    starting at ``first``) scattered through its delivery runs
    (``conv.spatial_runs`` of ``geom``, from the spike's position) to the
    output channels of its group; kernel ``weights`` as
    ``conv.delivery_weights`` lays it out, flat (float32). The
    sums go to ``cacc`` channel-last (target pixel ``x``, channel ``c`` at
    ``base + x * C_out + c``), so that a run (the channels of one tap, or of
    a kernel row's taps reaching consecutive pixels) is one contiguous run
    of the kernel added to one contiguous run of ``cacc`` (vectorised, no
    branch per synapse); each sum gets one weight per spike, so the sums
    are those of a delivery tap by tap. Event-stepped targets (``clock``
    False): the first channel of the group of each pixel reached is listed
    in ``clist`` once (in the order of the taps), its run length (the
    largest reaching it) in ``cmark``, for :func:`_fold_conv`. Returns the
    updated ``(synops, n_list)``."""
    hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
    for e in range(spikes.shape[0]):
        i = spikes[e] - first
        c = i // hw_in
        p = i - c * hw_in
        g = c // cg_in
        w_base = (c - g * cg_in) * kk * c_out + g * cg_out
        a_base = base + g * cg_out
        for r in range(run_n[p]):
            length = runs[p, r, RUN_LEN]
            synops += length
            a0 = a_base + runs[p, r, RUN_ACC]
            w0 = w_base + runs[p, r, RUN_W]
            target = cacc[a0 : a0 + length]  # views indexed from 0: the loop vectorises
            w = weights[w0 : w0 + length]
            for co in range(length):
                target[co] += w[co]
            if not clock:  # per pixel, not per synapse; last to first: the order of the taps
                o_first = a_base + runs[p, r, RUN_PIXEL] * c_out
                for q in range(runs[p, r, RUN_PIXELS] - 1, -1, -1):
                    o = o_first + q * c_out
                    if cmark[o] < cg_out:
                        if cmark[o] == 0:
                            clist[n_list] = o
                            n_list += 1
                        cmark[o] = cg_out
    return synops, n_list


@helper
def _fold_conv(cacc, cmark, clist, n_list, base, c_out, plane, acc, mark, touched, n_touched):
    """Move the channel-last sums of the runs listed in ``clist`` (by
    :func:`_deliver_conv`) into ``acc`` (neuron order: channel-first), mark
    their neurons touched, and zero what was read. Returns ``n_touched``."""
    for q in range(n_list):
        o = clist[q]
        run = cmark[o]
        cmark[o] = 0
        pixel = (o - base) // c_out
        j = base + (o - base - pixel * c_out) * plane + pixel
        for c in range(o, o + run):
            acc[j] += cacc[c]
            cacc[c] = 0
            touched[n_touched] = j  # kept only if j is new: no branch to mispredict
            n_touched += 1 - np.int64(mark[j])  # a uint8 would wrap with the JIT off
            mark[j] = 1
            j += plane
    return n_touched


@helper
def _fold_conv_all(cacc, base, c_out, plane, acc):
    """Move every channel-last sum of a clock-stepped population into
    ``acc`` (neuron order), pixel by pixel (its channels read as one
    contiguous run), then zero ``cacc`` in one contiguous pass."""
    for pixel in range(plane):
        source = cacc[base + pixel * c_out : base + (pixel + 1) * c_out]
        target = acc[base + pixel :]
        for c in range(c_out):
            target[c * plane] += source[c]
    done = cacc[base : base + c_out * plane]
    for o in range(done.shape[0]):
        done[o] = 0


@helper
def _sweep_plain(v, acc, base, n, bias, table, threshold, reset_mode, v_reset, fired, out_idx, n_out):
    """``neuron.sweep_step`` of a plain IF/LIF population (the same
    arithmetic: ``v * decay + bias * gain + acc``, then threshold and
    reset) on its membranes ``v[base : base + n]``, held contiguous
    (``GraphState.vclk``), in two passes: every neuron's step, its spike
    noted in ``fired[base : base + n]`` (zero before and after), in one
    branch-free loop that vectorises; then the spikes appended to
    ``out_idx`` in index order, eight marks read at once (a silent
    stretch costs one test per eight neurons). The caller has checked that
    ``out_idx`` has room for ``n`` more. Returns the new spike count."""
    decay = table[1, 0]
    gain = table[1, 2]
    vs = v[base : base + n]  # views indexed from 0: the loops vectorise
    a = acc[base : base + n]
    f = fired[base : base + n]

    def step(q, b):  # inlined (numba inlines inner functions)
        x = vs[q] * decay + b * gain + a[q]
        a[q] = 0
        spike = x >= threshold
        f[q] = spike
        vs[q] = after_spike(x, threshold, reset_mode, v_reset) if spike else x

    if bias.shape[0] == 1:  # a loop each, the bias's stride a constant in it
        for q in range(n):
            step(q, bias[0])
    else:
        for q in range(n):
            step(q, bias[q])
    words = n >> 3
    marks = f[: words << 3].view(np.uint64)
    for w in range(words):
        if marks[w] != 0:
            for q in range(w << 3, (w << 3) + 8):
                out_idx[n_out] = base + q
                n_out += np.int64(f[q])
            marks[w] = 0
    for q in range(words << 3, n):
        out_idx[n_out] = base + q
        n_out += np.int64(f[q])
        f[q] = 0
    return n_out


# fields of GraphInputs.exit_rule, float64: min_steps; patience (< 0: none);
# margin, confidence (NaN: none); every (steps between two checks of a
# chunked run, see exit_holds); earliest (the end of the first chunk)
EXIT_FIELDS = 6
EXIT_MIN, EXIT_PATIENCE, EXIT_MARGIN, EXIT_CONFIDENCE, EXIT_EVERY, EXIT_FIRST = range(EXIT_FIELDS)


@helper
def _argmax(r):
    """The first index of the largest value of ``r`` (numpy's argmax)."""
    best = 0
    for c in range(1, r.shape[0]):
        if r[c] > r[best]:
            best = c
    return best


@helper
def _exit_holds(r, t, unchanged, rule):
    """The built-in part of an exit rule (``rule``, ``EXIT_*`` fields) after
    step ``t`` on a readout ``r`` ``[C]`` whose decision has been the same
    for ``unchanged`` steps: ``t >= min_steps``; ``unchanged >= patience``;
    the gap between the two largest of ``r / t`` (float64) at least
    ``margin``; ``1 / sum(exp(r / t - max))`` (the largest softmax
    probability, summed in index order) at least ``confidence``."""
    if t < rule[EXIT_MIN]:
        return False
    if rule[EXIT_PATIENCE] >= 0 and unchanged < rule[EXIT_PATIENCE]:
        return False
    margin = rule[EXIT_MARGIN]
    confidence = rule[EXIT_CONFIDENCE]
    if margin != margin and confidence != confidence:  # neither given
        return True
    top = -np.inf
    second = -np.inf
    for c in range(r.shape[0]):
        x = np.float64(r[c]) / t
        if x > top:
            second = top
            top = x
        elif x > second:
            second = x
    if margin == margin and not top - second >= margin:
        return False
    if confidence == confidence:
        total = 0.0
        for c in range(r.shape[0]):
            total += np.exp(np.float64(r[c]) / t - top)
        if not 1.0 / total >= confidence:
            return False
    return True


@jit
def exit_holds(readout, t, unchanged, rule, out):
    """``out[b]`` (bool ``[B]``): the built-in part of ``rule`` holds after
    step ``t`` for readout ``readout[b]`` (``[B, C]``), unchanged for
    ``unchanged[b]`` steps; the same arithmetic as a kernel specialised with
    ``exit_rule`` (so the chunked and the in-kernel early exit agree)."""
    for b in range(readout.shape[0]):
        out[b] = _exit_holds(readout[b], t, unchanged[b], rule)


@helper
def _exit_step(r, done, n_steps, rule, ex):
    """After step ``done`` (1-based) of a sample: update its decision and
    how long it has been unchanged (``exit_state`` row ``ex``), note its exit
    step when the rule first holds (or at the last step), and return True
    when the sample stops: its exit step is noted and ``done`` ends a check
    interval (the first at ``EXIT_FIRST``, then every ``EXIT_EVERY`` steps;
    with 1, at once), as a run cut into chunks checked between chunks would."""
    decision = _argmax(r)
    if decision == ex[0]:
        ex[1] += 1
    else:
        ex[1] = 0
    ex[0] = decision
    if ex[2] == 0 and (done == n_steps or _exit_holds(r, done, ex[1], rule)):
        ex[2] = done
    if ex[2] == 0:
        return False
    first = np.int64(rule[EXIT_FIRST])
    return done == n_steps or (done >= first and (done - first) % np.int64(rule[EXIT_EVERY]) == 0)


def _models(models) -> tuple:
    """A bit mask of ``MODEL_*`` as four bools (plain, refractory, current, both)."""
    return tuple(bool(models >> m & 1) for m in range(4))


@specialise
def graph_kernel(csr, conv, background, event_models, clock_models, record_models, exit_rule=False):
    """The graph kernel specialised to the compile-time choices of
    :func:`graph_choices` (each combination compiled once, ``kernels._jit``):
    ``csr``: ``CSR_NONE``, ``CSR_SCATTER`` (some projection is CSR) or
    ``CSR_ROWS`` (and the register sums of rows of the same few targets,
    ``GraphPlan.proj_rows``, into a clock-stepped population: compiled only
    for a plan that has such rows and a population that may be
    clock-stepped); ``conv``: some projection is a convolution; ``background``: some
    population has Poisson background; ``event_models``, ``clock_models``,
    ``record_models``: bit masks of the models (``1 << MODEL_*``) of the
    event-stepped, clock-stepped and recorded populations; ``exit_rule``:
    an early exit judged inside the kernel on the recorded values (the
    readout), ``inputs.exit_rule`` its rule, ``state.exit_state`` each
    sample's progress on it (see :func:`_exit_step`): a sample stops being
    stepped at the step it stops, its exit step noted.

    The kernel, ``(t_end, plan, inputs, state, first, stop)``, runs samples
    ``first .. stop - 1`` (``kernels._jit.run_samples``) one after the other:
    it initialises a sample whose ``progress[2]`` is 0 (state before step 0
    and the calendars of self-driven spikes; 2: the calendars only, from the
    state as it is at step ``progress[1]``), then runs it from step
    ``progress[1]`` up to ``t_end`` (exclusive). It stops a sample early,
    before a step, when ``hist_idx`` might not hold that step's spikes (fewer
    than ``N`` free slots): the caller grows it and calls again. With
    ``exit_rule``, a sample that has stopped is skipped."""
    ev_plain, ev_ref, ev_cur, ev_both = _models(event_models)
    ck_plain, ck_ref, ck_cur, ck_both = _models(clock_models)
    rc_plain, rc_ref, rc_cur, rc_both = _models(record_models)
    csr_rows = csr == CSR_ROWS  # else no register sums to compile
    record = record_models != 0
    event = event_models != 0
    mixed = event and clock_models != 0  # else every neuron population is stepped one way
    clock_only = not event

    def graph_samples(t_end, plan, inputs, st, first, stop):
        pop_start = plan.pop_start
        n_inputs = plan.n_inputs
        thr = plan.thr
        tables = inputs.tables
        bias_off = inputs.bias_off
        n_pops = pop_start.shape[0] - 1
        n_total = pop_start[n_pops]
        for sample in range(first, stop):
            bias = inputs.bias[sample]
            in_tptr = inputs.in_tptr[sample]
            in_idx = inputs.in_idx[sample]
            # scratch of one row: shared by the samples of this call, run one after the other
            slot = 0 if st.state.shape[0] == 1 else sample
            state = st.state[slot]
            acc = st.acc[slot]
            mark = st.mark[slot]
            touched = st.touched[slot]
            head = st.head[slot]
            nxt = st.nxt[slot]
            prv = st.prv[slot]
            due = st.due[slot]
            rng = st.rng[sample]
            hist_ptr = st.hist_ptr[slot]
            hist_idx = st.hist_idx[slot]
            rec_v = st.rec_v[sample]
            counts = st.counts[sample]
            progress = st.progress[sample]
            cacc = st.cacc[slot]
            cmark = st.cmark[slot]
            clist = st.clist[slot]
            ex = st.exit_state[sample]
            vclk = st.vclk[slot]
            n_steps = head.shape[1] - 1
            if exit_rule and ex[3] != 0:
                continue  # stopped
            fresh = progress[2] == 0  # the state before step 0 set below (v_init)
            if progress[2] != 1:  # 0: state before step 0; 2: state given; calendars from it
                if not clock_only:  # calendars: none in a kernel of sweeps only
                    head[:, :n_steps] = -1
                    head[:, n_steps] = 0
                    due[:] = NEVER
                before = progress[1] - 1  # the last step done
                for p in range(n_inputs, n_pops):
                    base = pop_start[p]
                    if progress[2] == 0:  # views indexed from 0, the row width a constant: it vectorises
                        rows = state[base : pop_start[p + 1]]
                        v0 = plan.v_init[base : pop_start[p + 1]]
                        if state.shape[1] == 2:
                            for q in range(rows.shape[0]):
                                rows[q, V] = v0[q]
                                rows[q, T_LAST] = -1
                        else:
                            for q in range(rows.shape[0]):
                                rows[q, V] = v0[q]
                                rows[q, T_LAST] = -1
                                rows[q, I] = 0
                                rows[q, REF] = -1
                    if clock_only or (mixed and inputs.pop_clock[p]):
                        continue  # a sweep needs no calendar
                    bp = bias[bias_off[p] : bias_off[p + 1]]
                    table = tables[p]
                    model = plan.model[p]
                    for j in range(base, pop_start[p + 1]):
                        b = bias_of(bp, j - base)
                        s = NEVER
                        if ev_plain and model == MODEL_PLAIN:
                            s = next_due(state, j, before, n_steps, b, thr[p], table, False, False)
                        elif ev_ref and model == MODEL_REF:
                            s = next_due(state, j, before, n_steps, b, thr[p], table, False, True)
                        elif ev_cur and model == MODEL_CUR:
                            s = next_due(state, j, before, n_steps, b, thr[p], table, True, False)
                        elif ev_both and model == MODEL_CUR_REF:
                            s = next_due(state, j, before, n_steps, b, thr[p], table, True, True)
                        if s != NEVER:
                            calendar_insert(head[p], nxt, prv, due, j, s)
                progress[2] = 1
            n_hist = progress[0]
            t = progress[1]
            if ck_plain:  # membranes of the plain clock-stepped populations to vclk, contiguous
                for p in range(n_inputs, n_pops):
                    if plan.model[p] == MODEL_PLAIN and (clock_only or inputs.pop_clock[p]):
                        if fresh:  # what the state's rows were just given: a contiguous copy
                            for j in range(pop_start[p], pop_start[p + 1]):
                                vclk[j] = plan.v_init[j]
                        else:
                            for j in range(pop_start[p], pop_start[p + 1]):
                                vclk[j] = state[j, V]
            t_first = t
            while t < t_end and hist_idx.shape[0] - n_hist >= n_total:
                e = in_tptr[t]
                e_end = in_tptr[t + 1]
                for p in range(n_inputs):  # copy this step's input spikes, grouped by population
                    hist_ptr[t, p] = n_hist
                    while e < e_end and in_idx[e] < pop_start[p + 1]:
                        hist_idx[n_hist] = in_idx[e]
                        n_hist += 1
                        e += 1
                    counts[p, 2] += n_hist - hist_ptr[t, p]
                for p in range(n_inputs, n_pops):
                    hist_ptr[t, p] = n_hist
                    base = pop_start[p]
                    n_p = pop_start[p + 1] - base
                    n_touched = 0
                    synops = 0
                    n_list = 0  # runs of convolution sums listed (event-stepped)
                    conv_in = False  # some convolution delivered this step
                    c_out = plane = 1
                    clock = inputs.pop_clock[p] if mixed else clock_only
                    for k in range(plan.in_ptr[p], plan.in_ptr[p + 1]):
                        ts = t - plan.proj_delay[k]
                        if ts < 0:
                            continue
                        src = plan.proj_src[k]
                        src_first = pop_start[src]
                        if conv and (not csr or plan.proj_kind[k] == CONV):
                            geom = plan.proj_geom[k]
                            c_out = geom[3]
                            plane = geom[4] * geom[5]
                            if hist_ptr[ts, src] < hist_ptr[ts, src + 1]:
                                conv_in = True
                                synops, n_list = _deliver_conv(
                                    hist_idx[hist_ptr[ts, src] : hist_ptr[ts, src + 1]],
                                    src_first,
                                    base,
                                    geom,
                                    plan.conv_w[plan.conv_woff[k] :],
                                    plan.run_n[plan.run_off[k] :],
                                    plan.runs[plan.run_off[k] :],
                                    clock,
                                    cacc,
                                    cmark,
                                    clist,
                                    n_list,
                                    synops,
                                )
                            continue
                        if csr:
                            rp = plan.proj_rp[k]
                            shared = plan.proj_shared[k]
                            w = plan.proj_w[k]
                            woff = plan.proj_woff[k]
                            e0 = hist_ptr[ts, src]
                            e1 = hist_ptr[ts, src + 1]
                            if csr_rows and clock and plan.proj_rows[k] > 0 and e1 > e0:
                                # every row the same few targets: their sums kept in registers over the
                                # spikes, four targets at a time (each target's adds in spike order)
                                n_row = plan.proj_rows[k]
                                synops += n_row * (e1 - e0)
                                a0 = base + plan.cols[plan.rowptr[rp]]
                                for a in range(0, n_row - 3, 4):
                                    sum0 = acc[a0 + a]
                                    sum1 = acc[a0 + a + 1]
                                    sum2 = acc[a0 + a + 2]
                                    sum3 = acc[a0 + a + 3]
                                    for e in range(e0, e1):
                                        if shared:
                                            sum0 += w
                                            sum1 += w
                                            sum2 += w
                                            sum3 += w
                                        else:  # unsigned offsets (>= 0): no negative-index wrap-around
                                            urow = np.uint64(rp + hist_idx[e] - src_first)
                                            us = np.uint64(plan.rowptr[urow] + woff + a)
                                            sum0 += plan.weights[us]
                                            sum1 += plan.weights[us + np.uint64(1)]
                                            sum2 += plan.weights[us + np.uint64(2)]
                                            sum3 += plan.weights[us + np.uint64(3)]
                                    acc[a0 + a] = sum0
                                    acc[a0 + a + 1] = sum1
                                    acc[a0 + a + 2] = sum2
                                    acc[a0 + a + 3] = sum3
                                for a in range(n_row - n_row % 4, n_row):
                                    sum0 = acc[a0 + a]
                                    for e in range(e0, e1):
                                        if shared:
                                            sum0 += w
                                        else:
                                            urow = np.uint64(rp + hist_idx[e] - src_first)
                                            sum0 += plan.weights[np.uint64(plan.rowptr[urow] + woff + a)]
                                    acc[a0 + a] = sum0
                                continue
                            if clock and plan.proj_span[k]:  # rows of consecutive targets: one add a row
                                for e in range(e0, e1):
                                    row = rp + hist_idx[e] - src_first
                                    s0 = plan.rowptr[row]
                                    n_s = plan.rowptr[row + 1] - s0
                                    synops += n_s
                                    if n_s == 0:
                                        continue
                                    target = acc[base + plan.cols[s0] : base + plan.cols[s0] + n_s]
                                    if shared:
                                        for s in range(n_s):
                                            target[s] += w
                                    else:
                                        ws = plan.weights[s0 + woff : s0 + woff + n_s]
                                        for s in range(n_s):
                                            target[s] += ws[s]
                                continue
                            e_end = hist_ptr[ts, src + 1]
                            for e in range(hist_ptr[ts, src], e_end):
                                if e + 1 < e_end:  # the next spike's synapses on their way meanwhile
                                    ahead = rp + hist_idx[e + 1] - src_first  # (inline: no helper to compile)
                                    a0 = plan.rowptr[ahead]
                                    a1 = plan.rowptr[ahead + 1]
                                    for s in range(a0, a1 + 15, 16):  # a hint per cache line and the last
                                        last = min(s, a1 - 1)
                                        if last >= a0:
                                            _prefetch(plan.cols, last)
                                            if not shared:
                                                _prefetch(plan.weights, last + woff)
                                    if e + 2 < e_end:
                                        _prefetch(plan.rowptr, rp + hist_idx[e + 2] - src_first)
                                row = rp + hist_idx[e] - src_first
                                s0 = plan.rowptr[row]
                                s1 = plan.rowptr[row + 1]
                                synops += s1 - s0
                                for s in range(s0, s1):
                                    j = base + plan.cols[s]
                                    acc[j] += w if shared else plan.weights[s + woff]
                                    if not clock:
                                        touched[n_touched] = j  # kept only if j is new: no branch
                                        n_touched += 1 - np.int64(mark[j])  # (uint8: wraps, JIT off)
                                        mark[j] = 1
                    if conv and conv_in:  # the channel-last sums into acc, once per neuron
                        if clock:
                            _fold_conv_all(cacc, base, c_out, plane, acc)
                        else:
                            n_touched = _fold_conv(
                                cacc, cmark, clist, n_list, base, c_out, plane, acc, mark, touched, n_touched
                            )
                    if background:
                        for g in range(plan.bg_ptr[p], plan.bg_ptr[p + 1]):
                            draws = rng[g]
                            n_events = poisson(draws, plan.bg_lam[g] * n_p)
                            counts[p, 3] += n_events
                            w = plan.bg_w[g]
                            # each event's neuron: below(draws, n_p), next_u64 inlined on a copy of the
                            # generator in registers (the same numbers: a store to acc cannot alias it)
                            n64 = np.uint64(n_p)
                            x0, x1, x2, x3 = draws[0], draws[1], draws[2], draws[3]
                            for _ in range(n_events):
                                bits = x1 * np.uint64(5)
                                bits = ((bits << np.uint64(7)) | (bits >> np.uint64(57))) * np.uint64(9)
                                t17 = x1 << np.uint64(17)
                                x2 ^= x0
                                x3 ^= x1
                                x1 ^= x2
                                x0 ^= x3
                                x2 ^= t17
                                x3 = (x3 << np.uint64(45)) | (x3 >> np.uint64(19))
                                m = (bits >> np.uint64(32)) * n64
                                if (m & np.uint64(0xFFFFFFFF)) < n64:  # rare: below's rejection loop
                                    floor = (np.uint64(0x100000000) - n64) % n64
                                    draws[0], draws[1], draws[2], draws[3] = x0, x1, x2, x3
                                    while (m & np.uint64(0xFFFFFFFF)) < floor:
                                        m = (next_u64(draws) >> np.uint64(32)) * n64
                                    x0, x1, x2, x3 = draws[0], draws[1], draws[2], draws[3]
                                j = base + np.int64(m >> np.uint64(32))
                                acc[j] += w
                                if not clock:
                                    touched[n_touched] = j
                                    n_touched += 1 - np.int64(mark[j])  # a uint8 would wrap with the JIT off
                                    mark[j] = 1
                            draws[0], draws[1], draws[2], draws[3] = x0, x1, x2, x3
                    table = tables[p]
                    bp = bias[bias_off[p] : bias_off[p + 1]]
                    model = plan.model[p]
                    threshold = thr[p]
                    reset_mode = plan.reset_mode[p]
                    v_reset = plan.v_reset[p]
                    refractory = plan.refractory[p]
                    if clock:
                        # room was checked before the step
                        if ck_plain and model == MODEL_PLAIN:
                            n_hist = _sweep_plain(
                                vclk,
                                acc,
                                base,
                                n_p,
                                bp,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                mark,
                                hist_idx,
                                n_hist,
                            )
                        elif ck_ref and model == MODEL_REF:
                            n_hist = sweep_step(
                                state,
                                acc,
                                base,
                                n_p,
                                t,
                                bp,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                False,
                                True,
                                hist_idx,
                                n_hist,
                            )
                        elif ck_cur and model == MODEL_CUR:
                            n_hist = sweep_step(
                                state,
                                acc,
                                base,
                                n_p,
                                t,
                                bp,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                True,
                                False,
                                hist_idx,
                                n_hist,
                            )
                        elif ck_both and model == MODEL_CUR_REF:
                            n_hist = sweep_step(
                                state,
                                acc,
                                base,
                                n_p,
                                t,
                                bp,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                True,
                                True,
                                hist_idx,
                                n_hist,
                            )
                        n_touched = n_p
                    else:
                        calendar = head[p]
                        j = calendar[t]
                        while j >= 0:  # due to fire on their own
                            if mark[j] == 0:
                                mark[j] = 1
                                touched[n_touched] = j
                                n_touched += 1
                            j = nxt[j]
                        if n_touched * ORDERED_CLOSE > n_p:
                            # many touched: list them in index order (one pass over the marks)
                            # so the close walks memory forwards instead of at random
                            n_touched = 0
                            for j in range(base, base + n_p):
                                touched[n_touched] = j
                                n_touched += np.int64(mark[j])  # a uint8 would wrap with the JIT off
                        if ev_plain and model == MODEL_PLAIN:
                            n_hist = _close_plain(
                                state,
                                acc,
                                mark,
                                touched,
                                n_touched,
                                t,
                                n_steps,
                                bp,
                                base,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                calendar,
                                nxt,
                                prv,
                                due,
                                hist_idx,
                                n_hist,
                            )
                        elif ev_ref and model == MODEL_REF:
                            n_hist = _close_general(
                                state,
                                acc,
                                mark,
                                touched,
                                n_touched,
                                t,
                                n_steps,
                                bp,
                                base,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                False,
                                True,
                                calendar,
                                nxt,
                                prv,
                                due,
                                hist_idx,
                                n_hist,
                            )
                        elif ev_cur and model == MODEL_CUR:
                            n_hist = _close_general(
                                state,
                                acc,
                                mark,
                                touched,
                                n_touched,
                                t,
                                n_steps,
                                bp,
                                base,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                True,
                                False,
                                calendar,
                                nxt,
                                prv,
                                due,
                                hist_idx,
                                n_hist,
                            )
                        elif ev_both and model == MODEL_CUR_REF:
                            n_hist = _close_general(
                                state,
                                acc,
                                mark,
                                touched,
                                n_touched,
                                t,
                                n_steps,
                                bp,
                                base,
                                table,
                                threshold,
                                reset_mode,
                                v_reset,
                                refractory,
                                True,
                                True,
                                calendar,
                                nxt,
                                prv,
                                due,
                                hist_idx,
                                n_hist,
                            )
                    counts[p, 0] += synops
                    counts[p, 1] += n_touched
                    counts[p, 2] += n_hist - hist_ptr[t, p]
                hist_ptr[t, n_pops] = n_hist
                if record:
                    for r in range(inputs.rec_ids.shape[0]):
                        j = inputs.rec_ids[r]
                        p = inputs.rec_pop[r]
                        b = bias_of(bias[bias_off[p] : bias_off[p + 1]], j - pop_start[p])
                        var = inputs.rec_var[r]
                        model = plan.model[p]
                        if rc_plain and model == MODEL_PLAIN:
                            if ck_plain and (clock_only or inputs.pop_clock[p]):
                                rec_v[t, r] = vclk[j]  # swept at step t: v and i (the same, no current)
                            else:
                                rec_v[t, r] = value_at(state, j, t, b, tables[p], False, False)[var]
                        elif rc_ref and model == MODEL_REF:
                            rec_v[t, r] = value_at(state, j, t, b, tables[p], False, True)[var]
                        elif rc_cur and model == MODEL_CUR:
                            rec_v[t, r] = value_at(state, j, t, b, tables[p], True, False)[var]
                        elif rc_both and model == MODEL_CUR_REF:
                            rec_v[t, r] = value_at(state, j, t, b, tables[p], True, True)[var]
                t += 1
                if exit_rule and _exit_step(rec_v[t - 1], t, n_steps, inputs.exit_rule, ex):
                    ex[3] = 1
                    break
            if ck_plain and not (exit_rule and ex[3] != 0):  # and back to the state's rows, as of
                # the last step done (a sample that has stopped is never stepped again: not needed)
                stamp = state.dtype.type(t - 1)
                for p in range(n_inputs, n_pops):
                    if plan.model[p] == MODEL_PLAIN and (clock_only or inputs.pop_clock[p]):
                        for j in range(pop_start[p], pop_start[p + 1]):
                            state[j, V] = vclk[j]
                            if t > t_first:
                                state[j, T_LAST] = stamp
            progress[0] = n_hist
            progress[1] = t

    return graph_samples


def _mask(models) -> int:
    """The bit mask of a set of ``MODEL_*`` codes."""
    return sum(1 << int(m) for m in set(models.tolist()))


def graph_choices(plan: GraphPlan, inputs: GraphInputs, may_event=None, may_clock=None) -> tuple:
    """The compile-time choices of :func:`graph_kernel` for a run:
    ``may_event``, ``may_clock`` [P] bool: the populations that may be
    stepped each way (default: as ``inputs.pop_clock`` says), so that the
    kernel compiled for one run serves the runs whose paths differ (a
    population whose path is chosen from its input); the run's own paths
    are always included."""
    clock = inputs.pop_clock
    event = ~clock if may_event is None else ~clock | may_event
    clock = clock if may_clock is None else clock | may_clock
    neuron = np.arange(len(plan.model)) >= plan.n_inputs
    is_csr = plan.proj_kind == CSR
    clock_models = _mask(plan.model[neuron & clock])
    csr = CSR_NONE if not is_csr.any() else CSR_SCATTER
    if csr and clock_models and (plan.proj_rows[is_csr] > 0).any():
        csr = CSR_ROWS
    return (
        csr,
        bool((plan.proj_kind == CONV).any()),
        len(plan.bg_lam) > 0,
        _mask(plan.model[neuron & event]),
        clock_models,
        _mask(plan.model[inputs.rec_pop]),
    ) + ((True,) if len(inputs.exit_rule) else ())  # exit_rule: named only when set


def graph_run(t_end: int, plan: GraphPlan, inputs: GraphInputs, state: GraphState, choices=None) -> None:
    """Run every sample up to step ``t_end`` (see :func:`graph_kernel`; a
    sample may stop early, its ``hist_idx`` full), the samples in chunks on
    threads (``kernels._jit.run_samples``), with the kernel specialised to
    ``choices`` (default: :func:`graph_choices` of the run)."""
    kernel = graph_kernel(*(graph_choices(plan, inputs) if choices is None else choices))
    run_samples(kernel, state.state.shape[0], t_end, plan, inputs, state)


def graph_init(plan: GraphPlan, inputs: GraphInputs, state: GraphState, choices=None) -> None:
    """Initialise the samples not yet initialised (``progress[:, 2]`` 0):
    state before step 0 and calendars of self-driven spikes; runs no step.
    ``choices`` as :func:`graph_run` takes them."""
    graph_run(0, plan, inputs, state, choices)


@jit
def background_step(rng, lam_n, w, out):
    """One step of one Poisson background source, drawn exactly as
    ``graph_sample`` draws it (same calls, same order): adds ``w`` to
    ``out[j]`` (``[n]``) per event; returns the number of events. For the
    reference backend, which replays the event backend's draws."""
    n_events = poisson(rng, lam_n)
    for _ in range(n_events):
        out[below(rng, out.shape[0])] += w
    return n_events
