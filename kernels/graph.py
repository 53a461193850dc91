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
   operation each; a convolution scatters the spike through its kernel);
   the first arrival marks a target as touched;
2. background: each Poisson source draws the population's event count of
   the step, ``Poisson(lam * n)``, and sends each event to a uniformly drawn
   neuron (independent Poisson trains per neuron, split exactly);
3. neurons due to fire on their own (calendar) are touched too;
4. each touched neuron is brought forward in closed form (lazy leak), gets
   ``acc``, is checked against threshold, reset, and rescheduled.
Neurons that receive nothing cost nothing.

Arguments (``P`` populations, ``N`` neurons, ``K`` projections, ``G``
background sources, ``R`` recorded neurons, ``T`` steps in all)
---------
pop_start [P + 1] int64; n_inputs: the first ``n_inputs`` populations are
inputs. thr, v_reset [P] state dtype; reset_mode, refractory [P] int64;
has_cur, has_ref [P] bool; pop_clock [P] bool: populations stepped clock-driven
(every neuron every step, see ``neuron.sweep_step``) instead of event-driven;
tables [P, T + 1, 5] state dtype (propagators, see ``neuron``); bias state dtype
(this sample's: a constant input current is a per-sample bias) and
bias_off [P + 1] int64: the bias of population ``p`` is
``bias[bias_off[p]:bias_off[p + 1]]``, one value per neuron or one shared by all (no random reads then).
in_ptr [P + 1], in_proj: projections into ``p`` are
``in_proj[in_ptr[p]:in_ptr[p + 1]]``; proj_src, proj_delay [K] int64;
proj_rp [K] int64: projection ``k``'s rows start at ``rowptr[proj_rp[k]]``
(``n_src + 1`` entries, absolute synapse offsets); cols int32 (target index
within the target population) and weights float32, per synapse;
proj_w [K] state dtype and proj_shared [K] bool: one weight for all of a
projection's synapses; otherwise synapse ``s`` has ``weights[s + proj_woff[k]]``
(float32; ``weights`` holds only the projections without a shared weight).
proj_kind [K] int64: ``CSR`` (the rows above) or ``CONV``: a convolution,
never expanded; its kernel is ``weights[proj_woff[k]:]`` laid out
``[C_in / groups, kh, kw, C_out]``, its geometry ``proj_geom[k]`` ([K, 15]
int64, ``conv.GEOM_FIELDS``) and its spatial taps (``conv.spatial_taps``)
the rows ``tap_off[k] + p`` of ``tap_n`` [M] and ``tap_pixel``,
``tap_kernel`` [M, taps] int64 for input position ``p``.
bg_ptr [P + 1] int64: background sources of ``p`` are
``bg_ptr[p] .. bg_ptr[p + 1] - 1``; bg_lam [G] float64 expected events per
neuron per step; bg_w [G] state dtype.
rec_ids, rec_pop, rec_var [R] int64: recorded neurons (global id, population)
and variable (0 membrane, 1 synaptic current).
in_tptr [T + 1] int64, in_idx int32: this sample's input spikes per step,
global ids sorted within a step.
Mutated, per sample: state [N, width]; acc [N] state dtype (zero between
steps); mark [N] uint8 (zero between steps); touched [N + 1] int32; head
[P, T + 1] int32, nxt, prv, due [N] int32 (calendars, see ``neuron``); rng
[G, 4] uint64: one generator per background source (so a source draws the
same events whichever populations are stepped with it); hist_ptr [T, P + 1]
int64; hist_idx int32; rec_v [T, R] state dtype (recorded variable at the end of each step); counts [P, 4]
int64 (synaptic operations received, state updates, spikes, background
events); progress [2] int64 (spikes in the history so far, next step).
"""

import numpy as np

from ._jit import helper, jit, pjit, prange, run_batch
from .conv import conv_sizes
from .event import CONV
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
from .rng import below, poisson

ORDERED_CLOSE = 16  # close in index order once more than 1/16 of a population is touched


@jit
def graph_init(
    pop_start, n_inputs, thr, has_cur, has_ref, tables, bias, bias_off, v_init, state, head, nxt, prv, due
):
    """State before step 0 and the calendars of self-driven spikes (one
    sample; ``v_init`` [N] state dtype)."""
    n_steps = head.shape[1] - 1
    head[:, :n_steps] = -1
    head[:, n_steps] = 0
    due[:] = NEVER
    for p in range(n_inputs, pop_start.shape[0] - 1):
        bp = bias[bias_off[p] : bias_off[p + 1]]
        for j in range(pop_start[p], pop_start[p + 1]):
            state[j, V] = v_init[j]
            state[j, T_LAST] = -1
            if state.shape[1] > 2:
                state[j, I] = 0
                state[j, REF] = -1
            s = next_due(
                state,
                j,
                -1,
                n_steps,
                bias_of(bp, j - pop_start[p]),
                thr[p],
                tables[p],
                has_cur[p],
                has_ref[p],
            )
            if s != NEVER:
                calendar_insert(head[p], nxt, prv, due, j, s)


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
    tap_n,
    tap_pixel,
    tap_kernel,
    clock,
    acc,
    mark,
    touched,
    n_touched,
    synops,
):
    """A convolution's arrivals: each source spike (global id, the source
    starting at ``first``) scattered through its taps (``spatial_taps`` of
    ``geom``, from the spike's position) to the output channels of its group;
    kernel ``weights`` ``[C_in / groups, kh, kw, C_out]`` flat. Returns the
    updated ``(synops, n_touched)``."""
    hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
    for e in range(spikes.shape[0]):
        i = spikes[e] - first
        c = i // hw_in
        p = i - c * hw_in
        g = c // cg_in
        w_base = (c - g * cg_in) * kk * c_out + g * cg_out
        out_base = base + g * cg_out * plane
        synops += tap_n[p] * cg_out
        for q in range(tap_n[p]):
            pixel = tap_pixel[p, q]
            w0 = w_base + tap_kernel[p, q] * c_out
            for co in range(cg_out):
                j = out_base + co * plane + pixel
                acc[j] += weights[w0 + co]
                if not clock:
                    touched[n_touched] = j  # kept only if j is new: no branch to mispredict
                    n_touched += 1 - mark[j]
                    mark[j] = 1
    return synops, n_touched


@jit
def graph_sample(
    t_end,
    pop_start,
    n_inputs,
    thr,
    reset_mode,
    v_reset,
    refractory,
    has_cur,
    has_ref,
    pop_clock,
    tables,
    bias,
    bias_off,
    in_ptr,
    in_proj,
    proj_src,
    proj_delay,
    proj_rp,
    proj_w,
    proj_shared,
    rowptr,
    cols,
    weights,
    proj_woff,
    proj_kind,
    proj_geom,
    tap_off,
    tap_n,
    tap_pixel,
    tap_kernel,
    bg_ptr,
    bg_lam,
    bg_w,
    rec_ids,
    rec_pop,
    rec_var,
    in_tptr,
    in_idx,
    state,
    acc,
    mark,
    touched,
    head,
    nxt,
    prv,
    due,
    rng,
    hist_ptr,
    hist_idx,
    rec_v,
    counts,
    progress,
):
    """Run one sample from step ``progress[1]`` up to ``t_end`` (exclusive).
    Stops early, before a step, when ``hist_idx`` might not hold that step's
    spikes (fewer than ``N`` free slots): the caller grows it and calls
    again. See the module docstring for the arguments."""
    n_pops = pop_start.shape[0] - 1
    n_total = pop_start[n_pops]
    n_steps = head.shape[1] - 1
    n_hist = progress[0]
    t = progress[1]
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
            clock = pop_clock[p]
            for q in range(in_ptr[p], in_ptr[p + 1]):
                k = in_proj[q]
                ts = t - proj_delay[k]
                if ts < 0:
                    continue
                src = proj_src[k]
                first = pop_start[src]
                if proj_kind[k] == CONV:
                    synops, n_touched = _deliver_conv(
                        hist_idx[hist_ptr[ts, src] : hist_ptr[ts, src + 1]],
                        first,
                        base,
                        proj_geom[k],
                        weights[proj_woff[k] :],
                        tap_n[tap_off[k] :],
                        tap_pixel[tap_off[k] :],
                        tap_kernel[tap_off[k] :],
                        clock,
                        acc,
                        mark,
                        touched,
                        n_touched,
                        synops,
                    )
                    continue
                rp = proj_rp[k]
                shared = proj_shared[k]
                w = proj_w[k]
                woff = proj_woff[k]
                for e in range(hist_ptr[ts, src], hist_ptr[ts, src + 1]):
                    row = rp + hist_idx[e] - first
                    s0 = rowptr[row]
                    s1 = rowptr[row + 1]
                    synops += s1 - s0
                    for s in range(s0, s1):
                        j = base + cols[s]
                        acc[j] += w if shared else weights[s + woff]
                        if not clock:
                            touched[n_touched] = j  # kept only if j is new: no branch to mispredict
                            n_touched += 1 - mark[j]
                            mark[j] = 1
            for g in range(bg_ptr[p], bg_ptr[p + 1]):
                draws = rng[g]
                n_events = poisson(draws, bg_lam[g] * n_p)
                counts[p, 3] += n_events
                w = bg_w[g]
                for _ in range(n_events):
                    j = base + below(draws, n_p)
                    acc[j] += w
                    if not clock:
                        touched[n_touched] = j
                        n_touched += 1 - mark[j]
                        mark[j] = 1
            table = tables[p]
            bp = bias[bias_off[p] : bias_off[p + 1]]
            calendar = head[p]
            hc = has_cur[p]
            hr = has_ref[p]
            if clock:
                n_hist = sweep_step(
                    state,
                    acc,
                    base,
                    n_p,
                    t,
                    bp,
                    table,
                    thr[p],
                    reset_mode[p],
                    v_reset[p],
                    refractory[p],
                    hc,
                    hr,
                    hist_idx,
                    n_hist,
                )  # room was checked before the step
                n_touched = n_p
            else:
                j = head[p, t]
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
                        n_touched += mark[j]
                if not hc and not hr:
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
                        thr[p],
                        reset_mode[p],
                        v_reset[p],
                        calendar,
                        nxt,
                        prv,
                        due,
                        hist_idx,
                        n_hist,
                    )
                else:
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
                        thr[p],
                        reset_mode[p],
                        v_reset[p],
                        refractory[p],
                        hc,
                        hr,
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
        for r in range(rec_ids.shape[0]):
            j = rec_ids[r]
            p = rec_pop[r]
            b = bias_of(bias[bias_off[p] : bias_off[p + 1]], j - pop_start[p])
            rec_v[t, r] = value_at(state, j, t, b, tables[p], has_cur[p], has_ref[p])[rec_var[r]]
        t += 1
    progress[0] = n_hist
    progress[1] = t


@pjit
def _graph_batch(
    t_end,
    pop_start,
    n_inputs,
    thr,
    reset_mode,
    v_reset,
    refractory,
    has_cur,
    has_ref,
    pop_clock,
    tables,
    bias,
    bias_off,
    in_ptr,
    in_proj,
    proj_src,
    proj_delay,
    proj_rp,
    proj_w,
    proj_shared,
    rowptr,
    cols,
    weights,
    proj_woff,
    proj_kind,
    proj_geom,
    tap_off,
    tap_n,
    tap_pixel,
    tap_kernel,
    bg_ptr,
    bg_lam,
    bg_w,
    rec_ids,
    rec_pop,
    rec_var,
    in_tptr,
    in_idx,
    state,
    acc,
    mark,
    touched,
    head,
    nxt,
    prv,
    due,
    rng,
    hist_ptr,
    hist_idx,
    rec_v,
    counts,
    progress,
):
    for s in prange(state.shape[0]):
        graph_sample(
            t_end,
            pop_start,
            n_inputs,
            thr,
            reset_mode,
            v_reset,
            refractory,
            has_cur,
            has_ref,
            pop_clock,
            tables,
            bias[s],
            bias_off,
            in_ptr,
            in_proj,
            proj_src,
            proj_delay,
            proj_rp,
            proj_w,
            proj_shared,
            rowptr,
            cols,
            weights,
            proj_woff,
            proj_kind,
            proj_geom,
            tap_off,
            tap_n,
            tap_pixel,
            tap_kernel,
            bg_ptr,
            bg_lam,
            bg_w,
            rec_ids,
            rec_pop,
            rec_var,
            in_tptr[s],
            in_idx[s],
            state[s],
            acc[s],
            mark[s],
            touched[s],
            head[s],
            nxt[s],
            prv[s],
            due[s],
            rng[s],
            hist_ptr[s],
            hist_idx[s],
            rec_v[s],
            counts[s],
            progress[s],
        )


_GRAPH_BATCHED = (11, *range(36, 52))  # bias, in_tptr .. progress: one per sample


def graph_run(*args):
    """``graph_sample`` over a batch (every argument from ``in_tptr`` on has
    a leading sample axis), samples in parallel."""
    run_batch(_graph_batch, graph_sample, *args, batched=_GRAPH_BATCHED)


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
