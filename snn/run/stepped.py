"""The step-by-step engine of graph runs: a set of populations flattened
into the arrays of ``kernels.graph`` and stepped together, every population
at step ``t`` before any at ``t + 1`` (what recurrence through delays
needs). The schedule (``snn.run.schedule``) gives it the populations that cannot
run one after another over all steps, with their sources' spikes as inputs.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

import snn_kernels as kernels
from snn_kernels import REF, T_LAST
from snn_kernels.drive import bias_drive_of  # noqa: F401 -- for snn.convert.stopping
from snn_kernels.graph import (  # noqa: F401 -- EXIT_* and exit_holds: for snn.convert.stopping
    EXIT_CONFIDENCE,
    EXIT_EVERY,
    EXIT_FIELDS,
    EXIT_FIRST,
    EXIT_MARGIN,
    EXIT_MIN,
    EXIT_PATIENCE,
    GraphInputs,
    GraphPlan,
    GraphState,
    exit_holds,
    graph_choices,
    graph_kernel,
    plan_tables,
)

from ..model.conv import kernel_layout
from ..model.neurons import LIF
from .spiketrains import SpikeTrains

# "auto" steps a population clock-driven when its Poisson background brings
# at least this many events per neuron per step (measured on BRUNEL-100 with
# benchmarks/brunel.py --mode: there, at 0.2, the sweep is faster)
CLOCK_BACKGROUND = 0.1


@dataclass(frozen=True)
class Part:
    """Populations stepped together (sources outside the part among them as
    input populations), the projections into them and their background
    sources; ``streams[k]``: the generator stream of ``sources[k]`` (its
    position in the whole graph)."""

    dt: float
    dtype: type
    populations: list
    projections: list
    sources: list
    streams: list


def zero_delay_order(populations, projections) -> list:
    """Inputs first, then neuron populations so that every zero-delay
    projection goes forward; raises if zero-delay projections form a cycle."""
    order = [p for p in populations if p.is_input]
    rest = [p for p in populations if not p.is_input]
    instant = [(pr.source, pr.target, pr.name) for pr in projections if 0 in pr.delays]
    while rest:
        ready = [p for p in rest if not any(t is p and s in rest for s, t, _ in instant)]
        if not ready:
            cycle = [name for s, t, name in instant if s in rest and t in rest]
            raise ValueError(
                f"zero-delay projections form a cycle ({', '.join(cycle)}): a recurrent "
                "projection needs delay >= 1"
            )
        order += ready
        rest = [p for p in rest if p not in ready]
    return order


class SteppedPlan:
    """A :class:`Part` flattened into the kernel's arrays (``kernels.graph``),
    held together in :attr:`arrays` (a ``GraphPlan``). Projections' arrays are
    rebound to views into the concatenated ones, so connectivity is held once."""

    def __init__(self, graph: Part):
        dtype = graph.dtype
        self.graph, self.dtype = graph, dtype
        order = zero_delay_order(graph.populations, graph.projections)
        self.order = order
        self.pop_index = {p.name: k for k, p in enumerate(order)}
        sizes = np.array([p.n for p in order], np.int64)
        self.pop_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.n_inputs = sum(p.is_input for p in order)
        neurons = [p.neuron or LIF(beta=1.0) for p in order]  # inputs: placeholders, never read
        self.thr = np.array([n.threshold for n in neurons], dtype)
        self.reset_mode = np.array([n.reset_code for n in neurons], np.int64)
        self.v_reset = np.array([n.v_reset for n in neurons], dtype)
        self.refractory = np.array([n.refractory for n in neurons], np.int64)
        self.has_cur = np.array([n.has_current for n in neurons], np.bool_)
        self.has_ref = np.array([n.refractory > 0 for n in neurons], np.bool_)
        self.model = (2 * self.has_cur + self.has_ref).astype(np.int64)  # kernels.graph.MODEL_*
        self.width = 4 if (self.has_cur.any() or self.has_ref.any()) else 2
        self.neurons = neurons
        self.biases = [
            np.zeros(1) if p.is_input else (p.bias[:1] if np.all(p.bias == p.bias[0]) else p.bias)
            for p in order
        ]  # one value when shared: no per-neuron reads
        self.v_init = np.concatenate([np.zeros(p.n) if p.is_input else p.v_init for p in order]).astype(dtype)
        self._flatten_projections(graph, order)
        bg = sorted(range(len(graph.sources)), key=lambda g: self.pop_index[graph.sources[g].target.name])
        self.bg_stream = [graph.streams[g] for g in bg]
        bg = [graph.sources[g] for g in bg]
        self.bg_ptr = np.searchsorted(
            [self.pop_index[s.target.name] for s in bg], np.arange(len(order) + 1)
        ).astype(np.int64)
        self.bg_lam = np.array([s.events_per_step(graph.dt) for s in bg], np.float64)
        self.bg_w = np.array([s.weight for s in bg], dtype)
        derived = plan_tables(
            self.pop_start,
            self.proj_src,
            self.proj_kind,
            self.proj_geom,
            self.proj_rp,
            self.rowptr,
            self.cols,
            self.weights,
            self.proj_woff,
        )
        given = {name: getattr(self, name) for name in GraphPlan._fields if name not in derived}
        self.arrays = GraphPlan(**given, **derived)

    def _flatten_projections(self, graph, order):
        """One kernel projection per (projection, delay group), sorted by
        target; weights are stored only for groups without a shared weight,
        and a convolution's kernel (``proj_kind`` CONV, its geometry in
        ``proj_geom``, see ``kernels.graph``)."""
        rows = sorted(
            (
                (self.pop_index[p.target.name], self.pop_index[p.source.name], g, p)
                for p in graph.projections
                for g in range(len(p.delays))
            ),
            key=lambda r: r[0],
        )
        groups = [_kernel_group(p, g) for _, _, g, p in rows]
        conv = [p.kind == "conv" for *_, p in rows]
        self.in_ptr = np.searchsorted([r[0] for r in rows], np.arange(len(order) + 1)).astype(np.int64)
        self.proj_src = np.array([r[1] for r in rows], np.int64)
        self.proj_delay = np.array([d for d, *_ in groups], np.int64)
        self.proj_kind = np.array([kernels.CONV if c else kernels.CSR for c in conv], np.int64)
        n_syn = [len(cols) for _, _, cols, _ in groups]
        syn_off = np.concatenate(([0], np.cumsum(n_syn))).astype(np.int64)
        self.proj_rp = np.concatenate(([0], np.cumsum([len(r) for _, r, _, _ in groups])))[:-1].astype(
            np.int64
        )
        self.rowptr = np.concatenate(
            [r + syn_off[k] for k, (_, r, _, _) in enumerate(groups)] or [np.zeros(1, np.int64)]
        )
        w_off = np.concatenate(([0], np.cumsum([len(w) if w is not None else 0 for *_, w in groups]))).astype(
            np.int64
        )
        # CSR synapse s reads weights[s + proj_woff]; a kernel starts at weights[proj_woff]
        self.proj_woff = np.where(conv, w_off[:-1], w_off[:-1] - syn_off[:-1]).astype(np.int64)
        self.proj_shared = np.array(
            [p.weight is not None if p.kind == "csr" else False for *_, p in rows], np.bool_
        )
        self.proj_w = np.array(
            [p.weight if p.kind == "csr" and p.weight is not None else 0.0 for *_, p in rows], self.dtype
        )
        self._geometries(rows)
        del groups
        # Hold the connectivity once: each group is copied into the plan's arrays and the
        # projection rebound to a view at once, so its own array is freed before the next
        # copy (the build's peak stays near one copy of the synapses).
        self.cols = np.empty(syn_off[-1], np.int32)
        self.weights = np.empty(w_off[-1], np.float32)
        for k, (_, _, g, p) in enumerate(rows):
            if p.kind == "conv":
                self.weights[w_off[k] : w_off[k + 1]] = _kernel_group(p, g)[3]
                continue
            d, rowptr, cols, w = p.groups[g]
            self.cols[syn_off[k] : syn_off[k + 1]] = cols
            view_w = None
            if w is not None:
                view_w = self.weights[w_off[k] : w_off[k + 1]]
                view_w[:] = w
                view_w.flags.writeable = False
            view_cols = self.cols[syn_off[k] : syn_off[k + 1]]
            view_cols.flags.writeable = False  # the projection's handle reads, never writes, the plan
            new = list(p.groups)
            new[g] = (d, rowptr, view_cols, view_w)
            del cols, w
            object.__setattr__(p, "groups", tuple(new))

    def _geometries(self, rows):
        """Geometry of the convolutions (zeros for the other projections);
        their delivery tables are derived by ``kernels.graph.plan_tables``."""
        self.proj_geom = np.zeros((max(len(rows), 1), 15), np.int64)
        for k, (*_, p) in enumerate(rows):
            if p.kind == "conv":
                self.proj_geom[k] = p.geom

    def modes(self, force: str | None, chosen: dict) -> list[str]:
        """The path each population (in plan order) runs: ``"input"``,
        ``"event"`` or ``"clock"``; ``chosen``: the path of ``"auto"``
        populations the caller chose from their input (by name), else clock
        under heavy Poisson background."""
        out = []
        for k, pop in enumerate(self.order):
            mode = force or pop.mode
            if pop.is_input:
                mode = "input"
            elif mode == "auto" and pop.name in chosen:
                mode = chosen[pop.name]
            elif mode == "auto":
                mode = (
                    "clock"
                    if self.bg_lam[self.bg_ptr[k] : self.bg_ptr[k + 1]].sum() >= CLOCK_BACKGROUND
                    else "event"
                )
            out.append(mode)
        return out

    def may_paths(self, force: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The populations that may be stepped event-driven, and clock-driven,
        in a run with this ``force`` mode ([P] bool each): as :meth:`modes`
        says, both for an ``"auto"`` population whose path the caller may
        choose from its input (fed only by the part's inputs, no background),
        so that a run prepared with no input compiles the kernel a run with
        input uses."""
        default = np.array([m == "clock" for m in self.modes(force, {})])
        open_ = np.array(
            [
                force is None
                and pop.mode == "auto"
                and not pop.is_input
                and self.bg_ptr[k] == self.bg_ptr[k + 1]
                and bool((self.proj_src[self.in_ptr[k] : self.in_ptr[k + 1]] < self.n_inputs).all())
                for k, pop in enumerate(self.order)
            ],
            np.bool_,
        )
        return ~default | open_, default | open_

    def bias_rows(self, batch, drives) -> tuple[np.ndarray, np.ndarray]:
        """The bias of every sample as the kernel reads it, ``[B, nb]`` of
        the state dtype, and its offsets ``[P + 1]``: one value for a
        population whose neurons share it, else one per neuron; a driven
        population's is its bias plus the sample's drive (summed in float64)."""
        parts = [
            self.order[k].bias + drives[pop.name]
            if pop.name in drives and not pop.is_input
            else np.broadcast_to(b, (batch, len(b)))
            for k, (pop, b) in enumerate(zip(self.order, self.biases, strict=True))
        ]
        offsets = np.concatenate(([0], np.cumsum([part.shape[1] for part in parts]))).astype(np.int64)
        return np.concatenate(parts, axis=1).astype(self.dtype), offsets

    def run(self, n_steps, given, batch, seed, record, bar, force_mode, drives, chosen=None) -> dict:
        """Step the part over ``n_steps``; ``given``: the spikes of its
        input populations by name; ``bar``: a progress bar to advance, or
        None; the other arguments as :class:`SteppedRun` takes them.
        Returns :meth:`SteppedRun.outputs`."""
        stepping = SteppedRun(self, n_steps, batch, seed, record, force_mode, drives, chosen)
        chunk = n_steps if bar is None else max(1, n_steps // 100)
        while stepping.t < n_steps:
            done = stepping.t
            stepping.advance(min(n_steps, done + chunk), given)
            if bar is not None:
                bar.update(stepping.t - done)
        return stepping.outputs()

    def _outputs(self, n_steps, hist_ptr, hist_idx, counts, rec_v, record, modes) -> dict:
        """The kernel's spike history and counters, by population name."""
        batch = hist_ptr.shape[0]
        per_step = np.diff(hist_ptr, axis=2)  # [B, T, P] spikes per population and step
        out = {"trains": {}, "counts": {}, "modes": {}, "recorded": {}}
        for k, pop in enumerate(self.order):
            if pop.is_input:
                continue
            tptr = np.zeros((batch, n_steps + 1), np.int64)
            np.cumsum(per_step[:, :, k], axis=1, out=tptr[:, 1:])
            idx = np.zeros((batch, int(tptr[:, -1].max(initial=0))), np.int32)
            for b in range(batch):
                starts = hist_ptr[b, :, k]
                sel = np.repeat(starts - tptr[b, :-1], per_step[b, :, k]) + np.arange(tptr[b, -1])
                idx[b, : tptr[b, -1]] = hist_idx[b, sel] - self.pop_start[k]
            out["trains"][pop.name] = SpikeTrains(tptr, idx, pop.n)
            out["counts"][pop.name] = counts[:, k].copy()
            out["modes"][pop.name] = modes[k]
        col = 0
        for pop, idx, var in record:
            out["recorded"][pop.name, var] = (
                idx,
                rec_v[:, :, col : col + len(idx)].transpose(1, 0, 2).copy(),
            )
            col += len(idx)
        return out

    def _input_arrays(self, given, batch, n_steps):
        """Per-sample input spikes with global ids, sorted within each step
        (spikes of populations outside the part are not read)."""
        given = {name: trains for name, trains in given.items() if name in self.pop_index}
        if not given:
            return np.zeros((batch, n_steps + 1), np.int64), np.zeros((batch, 1), np.int32)
        merged = SpikeTrains.concatenate(
            sorted(
                ((trains, int(self.pop_start[self.pop_index[name]])) for name, trains in given.items()),
                key=lambda part: part[1],
            ),
            int(self.pop_start[-1]),
        )
        idx = merged.idx if merged.idx.shape[1] else np.zeros((batch, 1), np.int32)
        return merged.tptr, idx


class SteppedRun:
    """A run of a :class:`SteppedPlan` in progress: neuron state, calendars,
    generators, spike history and counters live here between calls of
    :meth:`advance`, so a run cut into chunks of steps computes what one
    uncut run computes. ``record``: ``[(population, indices, "v" | "i")]``;
    ``chosen``: see :meth:`SteppedPlan.modes`."""

    def __init__(self, plan, n_steps, batch, seed, record, force_mode, drives, chosen=None):
        self.plan, self.n_steps, self.batch, self.record = plan, n_steps, batch, record
        self.t = 0  # steps done
        dtype = plan.dtype
        self.bias, self.bias_off = plan.bias_rows(batch, drives)
        self.modes = modes = plan.modes(force_mode, chosen or {})
        self.pop_clock = np.array([m == "clock" for m in modes], np.bool_)
        self.tables = np.stack([n.propagator(n_steps, dtype) for n in plan.neurons])
        n_total = int(plan.pop_start[-1])
        n_pops = len(plan.order)
        self.rec_ids = np.concatenate(
            [plan.pop_start[plan.pop_index[p.name]] + idx for p, idx, _ in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self.rec_pop = np.concatenate(
            [np.full(len(idx), plan.pop_index[p.name]) for p, idx, _ in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self.rec_var = np.concatenate(
            [np.full(len(idx), int(var == "i")) for _, idx, var in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        self.state = np.empty((batch, n_total, plan.width), dtype)
        self.acc = np.zeros((batch, n_total), dtype)
        self.mark = np.zeros((batch, n_total), np.uint8)
        self.touched = np.empty((batch, n_total + 1), np.int32)
        self.head = np.empty((batch, n_pops, n_steps + 1), np.int32)
        self.nxt = np.empty((batch, n_total), np.int32)
        self.prv = np.empty((batch, n_total), np.int32)
        self.due = np.empty((batch, n_total), np.int32)
        self.rng = kernels.sample_states(seed, batch, plan.bg_stream)
        self.hist_ptr = np.zeros((batch, n_steps, n_pops + 1), np.int64)
        self.hist_idx = np.empty((batch, 2 * n_total + min(n_total * n_steps // 1000, 1 << 24)), np.int32)
        self.rec_v = np.zeros((batch, n_steps, len(self.rec_ids)), dtype)
        self.counts = np.zeros((batch, n_pops, 4), np.int64)
        self.progress = np.zeros((batch, 3), np.int64)  # spikes in the history, next step, initialised
        conv = int(plan.pop_start[-1]) if (plan.proj_kind == kernels.CONV).any() else 1
        self.cacc = np.zeros((batch, conv), dtype)  # convolution sums, channel-last
        self.cmark = np.zeros((batch, conv), np.int32)
        self.clist = np.empty((batch, conv), np.int32)
        self.exit_rule = np.zeros(0)  # no early exit (snn.convert.stopping sets one)
        self.exit_state = np.zeros((batch, 4), np.int64)
        self.vclk = np.empty((batch, n_total), dtype)  # clock-stepped membranes during a kernel call
        self._given = self._arrays = None  # the input trains of the last advance, as the kernel reads them
        inputs = self._inputs(*plan._input_arrays({}, batch, n_steps))
        self.choices = graph_choices(plan.arrays, inputs, *plan.may_paths(force_mode))  # compile-time
        kernels.graph_init(plan.arrays, inputs, self._state(), self.choices)

    def _inputs(self, in_tptr, in_idx) -> GraphInputs:
        """The run's constants as the kernel takes them, with these input spikes."""
        fixed = {name: getattr(self, name) for name in GraphInputs._fields[:-2]}
        return GraphInputs(**fixed, in_tptr=in_tptr, in_idx=in_idx)

    def _state(self) -> GraphState:
        """The run's per-sample arrays as the kernel takes them (read from the
        attributes at each call: ``hist_idx`` grows)."""
        return GraphState(**{name: getattr(self, name) for name in GraphState._fields})

    def advance(self, t_end: int, given: dict) -> None:
        """Run steps ``self.t .. t_end - 1``; ``given``: the spikes of the
        part's input populations by name, known at least up to ``t_end``."""
        plan, batch = self.plan, self.batch
        if self._given is not given:  # the same trains as the last call: the same arrays
            self._given = given
            self._arrays = self._inputs(*plan._input_arrays(given, batch, self.n_steps))
        inputs = self._arrays
        while self.progress[:, 1].min() < t_end:
            kernels.graph_run(t_end, plan.arrays, inputs, self._state(), self.choices)
            if self.progress[:, 1].min() < t_end:  # the spike history is full: grow it
                grown = np.empty((batch, 2 * self.hist_idx.shape[1]), np.int32)
                grown[:, : self.hist_idx.shape[1]] = self.hist_idx
                self.hist_idx = grown
        self.t = t_end

    def outputs(self, a: int = 0, b: int | None = None) -> dict:
        """What steps ``a .. b - 1`` (default: every step done) computed: by
        population name its ``trains`` (of ``b - a`` steps), kernel
        ``counts`` ``[B, 4]`` of the whole run (synaptic operations received,
        updates, spikes, background events) and ``modes``, and the
        ``recorded`` variables by ``(name, var)``: ``(indices, [b - a, B, R])``."""
        b = self.t if b is None else b
        hist_ptr, rec_v = self.hist_ptr[:, a:b], self.rec_v[:, a:b]
        return self.plan._outputs(b - a, hist_ptr, self.hist_idx, self.counts, rec_v, self.record, self.modes)

    def settle(self) -> None:
        """Bring every neuron to the end of the last step done without input
        (``kernels.settle``); the calendars are built again from there at
        the next :meth:`advance`."""
        if self.t == 0:
            return
        plan = self.plan
        for k, neuron in enumerate(plan.neurons):
            if plan.order[k].is_input:
                continue
            rows = self.state[:, plan.pop_start[k] : plan.pop_start[k + 1]]
            bias = self.bias[:, self.bias_off[k] : self.bias_off[k + 1]]
            kernels.settle(rows, self.t - 1, bias, self.tables[k], neuron.has_current, neuron.refractory > 0)
        self.progress[:, 2] = 2

    def set_drives(self, drives: dict) -> None:
        """Drives by population name (``[B, n]``) from the next step on; the
        steps done keep the drives they had."""
        self.settle()
        self.bias, self.bias_off = self.plan.bias_rows(self.batch, drives)
        self._given = self._arrays = None

    def rebase(self, shift: int) -> None:
        """Forget steps ``0 .. shift - 1``: step ``shift`` becomes step 0 (the
        spikes of the steps kept stay in the history, where delayed
        projections read them), so that a run of any length fits arrays of
        :attr:`n_steps` steps. Every neuron is settled first, so that no gap
        outruns the propagator tables. Input trains given later count steps
        from the new step 0."""
        if not 0 <= shift <= self.t:
            raise ValueError(f"cannot forget {shift} of {self.t} steps")
        self.settle()
        t, kept = self.t, self.t - shift
        first = (self.hist_ptr[:, shift, 0] if kept else self.progress[:, 0]).copy()
        for s, (a, b) in enumerate(zip(first, self.progress[:, 0], strict=True)):
            self.hist_idx[s, : b - a] = self.hist_idx[s, a:b]
        self.hist_ptr[:, :kept] = self.hist_ptr[:, shift:t] - first[:, None, None]
        self.rec_v[:, :kept] = self.rec_v[:, shift:t]
        self.progress[:, 0] -= first
        self.progress[:, 1] -= shift
        self.state[..., T_LAST] -= shift
        if self.state.shape[2] > REF:
            self.state[..., REF] -= shift
        self.t = kept
        self._given = self._arrays = None

    def recorded(self, name: str, var: str, a: int = 0) -> np.ndarray | None:
        """``[t - a, B, R]``: the recorded ``var`` of population ``name`` in
        steps ``a .. t - 1`` (None if not recorded here), without assembling
        the spikes."""
        k = self.plan.pop_index.get(name)
        cols = np.flatnonzero((self.rec_pop == k) & (self.rec_var == int(var == "i")))
        if k is None or not len(cols):
            return None
        return self.rec_v[:, a : self.t, cols].transpose(1, 0, 2)

    def keep(self, rows) -> None:
        """Go on with the samples ``rows`` (indices into the batch) only."""
        for name in ("bias", *GraphState._fields):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[rows]))
        self.batch = len(rows)
        self._given = self._arrays = None


def _kernel_group(proj, g):
    """Delay group ``g`` of a projection as the plan flattens it: ``(delay,
    rowptr, cols, weights)``; a convolution has no rows, its kernel as weights."""
    if proj.kind == "conv":
        return (proj.delay, np.zeros(0, np.int64), np.zeros(0, np.int32), kernel_layout(proj.kernel))
    return proj.groups[g]


class SteppedExit:
    """Runs of a :class:`SteppedPlan` over at most ``n_steps`` in which each
    sample stops once an early-exit rule holds on the membrane of the
    ``readout`` population, judged inside the kernel after every step
    (``kernels.graph``'s ``exit_rule``): a run is one kernel call, whatever
    the batch, and a sample that has stopped costs nothing more. What a
    sample computes up to its exit step is what an uncut run computes
    (the same kernel, the same arithmetic). Built once per (plan, steps,
    readout, paths) and reused by every run.

    ``force_mode`` as :meth:`SteppedPlan.modes` takes it; ``None``: each
    population's own mode, ``"auto"`` meaning the clock path for a
    population fed by a convolution or given a drive (those of a converted
    network are touched at nearly every neuron every step, where a sweep
    costs less than visiting touched neurons and keeping calendars) and for
    the readout (read at every step anyway), else the plan's choice."""

    def __init__(self, plan: SteppedPlan, n_steps: int, readout: str, force_mode=None, driven=()):
        self.plan, self.n_steps = plan, n_steps
        dtype = plan.dtype
        k = plan.pop_index[readout]
        chosen = {}
        for p, pop in enumerate(plan.order):
            into = plan.proj_kind[plan.in_ptr[p] : plan.in_ptr[p + 1]]
            if not pop.is_input and (pop.name in driven or p == k or (into == kernels.CONV).any()):
                chosen[pop.name] = "clock"
        self.modes = plan.modes(force_mode, chosen)
        self.pop_clock = np.array([m == "clock" for m in self.modes], np.bool_)
        self.tables = np.stack([n.propagator(n_steps, dtype) for n in plan.neurons])
        n_out = plan.order[k].n
        self.n_out = n_out
        self.rec_ids = plan.pop_start[k] + np.arange(n_out, dtype=np.int64)
        self.rec_pop = np.full(n_out, k, np.int64)
        self.rec_var = np.zeros(n_out, np.int64)
        self._silent = {}  # batch -> empty input arrays
        self._rng = {}  # batch -> its (empty) generator states, when the plan has no background
        self._rows = {}  # batch -> np.arange(batch)
        self._scratch = {}  # thread -> its row of scratch arrays, kept from run to run
        self._lock = threading.Lock()  # one run at a time uses them (another makes its own)
        self.choices = None
        self._kernel = None
        self._entry = None  # the compiled kernel for this runner's argument types (see run)
        self._one = None  # the function that runs one sample (see one_sample)
        # bias rows as the kernel reads them: population k's at bias[:, off[k]:off[k + 1]],
        # its own bias (one value when shared) or, driven, its bias plus the sample's drive
        parts = [
            (pop if pop.name in driven and not pop.is_input else None, b)
            for pop, b in zip(plan.order, plan.biases, strict=True)
        ]
        widths = [pop.n if pop is not None else len(b) for pop, b in parts]
        off = np.concatenate(([0], np.cumsum(widths))).astype(np.int64)
        self._bias_off = off
        # the row of every sample before the drives are added: the biases not driven (cast to the
        # state dtype once, here), zeros where a drive goes; the driven populations' slices
        self._bias_fixed = np.zeros((1, off[-1]), dtype)
        self._bias_driven = []
        for k, (pop, b) in enumerate(parts):
            if pop is None:
                self._bias_fixed[:, off[k] : off[k + 1]] = b
            else:
                self._bias_driven.append((pop, int(off[k]), int(off[k + 1])))
        self._bias_fixed.flags.writeable = False
        self._driven = frozenset(driven)
        self.driven = tuple(pop.name for pop, _, _ in self._bias_driven)  # one_sample's order

    def _bias_rows(self, batch, drives):
        """:meth:`SteppedPlan.bias_rows` for this runner's driven populations
        (the same values: bias plus drive summed in float64, then cast)."""
        if drives.keys() != self._driven:
            raise ValueError(f"drives must be given for {sorted(self._driven)}, got {sorted(drives)}")
        bias = np.empty((batch, self._bias_fixed.shape[1]), self.plan.dtype)
        bias[:] = self._bias_fixed
        for pop, a, b in self._bias_driven:
            bias[:, a:b] = pop.bias + drives[pop.name]
        return bias, self._bias_off

    def run(self, drives: dict, batch: int, seed: int, rule: np.ndarray) -> tuple:
        """Run ``batch`` samples (``drives``: by population name, ``[B,
        n]``) under ``rule`` (``kernels.graph.EXIT_FIELDS`` float64).
        Returns ``(exit_step [B], readout [B, C] at the exit step, counts
        [B, 4] of the steps run, summed over the populations)``.

        The samples are split into one contiguous range per thread, and
        each thread runs its range in one kernel call over one row of
        scratch (state, sums, calendars, a spike history long enough for
        every step: ``kernels.graph.GraphState``), kept from run to run, so
        that the arrays a sample works on are in cache (a row per sample
        costs more in cache misses and page faults than the few steps an
        exiting sample runs).

        What is the same from run to run is made once (the biases not
        driven, the empty inputs, the scratch); every array the kernel
        writes for a sample and the caller gets back is new at each run.
        The kernel is called through numba's dispatcher once, then directly
        through the compiled function for the argument types a run passes
        (each built here, of the same dtype, layout and shape rank at every
        run), which saves the dispatcher's typing of the ~60 arrays of the
        argument tuples at every call (batch 1: a sample that exits after a
        few steps costs little more than that). A run of one sample reuses
        the arrays of the last one (:meth:`one_sample`)."""
        if batch == 1 and self._entry is not None:
            one = self.one_sample()
            if one is not None:
                if drives.keys() != self._driven:
                    raise ValueError(f"drives must be given for {sorted(self._driven)}, got {sorted(drives)}")
                out = one([drives[name] for name in self.driven], rule, seed)
                if out is not None:
                    return out
        plan, n_steps = self.plan, self.n_steps
        bias, bias_off = self._bias_rows(batch, drives)
        fields = np.empty(EXIT_FIELDS)  # a new float64 row, whatever array the caller gave
        fields[:] = rule
        silent = self._silent.get(batch)
        if silent is None:
            silent = self._silent[batch] = plan._input_arrays({}, batch, n_steps)
        inputs = GraphInputs(
            self.pop_clock,
            self.tables,
            bias,
            bias_off,
            self.rec_ids,
            self.rec_pop,
            self.rec_var,
            fields,
            *silent,
        )
        if self.choices is None:
            self.choices = graph_choices(plan.arrays, inputs)
            self._kernel = graph_kernel(*self.choices)
        if plan.bg_stream:
            rng = kernels.sample_states(seed, batch, plan.bg_stream)
        else:  # no generator: an empty array, never written
            rng = self._rng.get(batch)
            if rng is None:
                rng = self._rng[batch] = kernels.sample_states(seed, batch, plan.bg_stream)
        exit_state = np.zeros((batch, 4), np.int64)
        exit_state[:, 0] = -1
        rec_v = np.empty((batch, n_steps, self.n_out), plan.dtype)
        counts = np.zeros((batch, len(plan.order), 4), np.int64)
        own = dict(  # per sample
            rng=rng,
            rec_v=rec_v,
            counts=counts,
            progress=np.zeros((batch, 3), np.int64),
            exit_state=exit_state,
        )
        threads = 1 if batch == 1 else min(numba.get_num_threads(), batch)
        mine = self._lock.acquire(blocking=False)  # else another run holds the scratch: make new
        try:
            scratch = [self._scratch.get(k) if mine else None for k in range(threads)]
            scratch = [s if s is not None else self._new_scratch() for s in scratch]
            states = [GraphState(**scratch[k], **own) for k in range(threads)]
            args = (n_steps, plan.arrays, inputs)
            kernel = self._entry or self._kernel
            cuts = [batch * k // threads for k in range(threads + 1)]
            jobs = [_pool().submit(kernel, *args, states[k], cuts[k], cuts[k + 1]) for k in range(1, threads)]
            try:
                kernel(*args, states[0], 0, cuts[1])
            finally:
                for job in jobs:
                    job.result()
            if self._entry is None:
                self._entry = _compiled(self._kernel, (*args, states[0], 0, cuts[1]))
            if mine:
                self._scratch.update(enumerate(scratch))
        finally:
            if mine:
                self._lock.release()
        if not exit_state[:, 3].all():  # cannot happen: the history holds every step
            raise RuntimeError("a sample did not finish its run")
        steps = exit_state[:, 2].copy()
        rows = self._rows.get(batch)
        if rows is None:
            rows = self._rows[batch] = np.arange(batch)
        readout = rec_v[rows, steps - 1]  # a new array
        if readout.dtype != np.float64:
            readout = readout.astype(np.float64)
        return steps, readout, counts.sum(axis=1)

    def one_sample(self):
        """``f(rows, rule, seed=0, fill=None)``: :meth:`run` of one sample
        (``rows``: the drives ``[1, n]`` float64 of the populations
        :attr:`driven`, in that order; or ``fill(biases)``, which writes them
        itself: ``biases`` a ``(bias, out)`` pair for each, ``out[0] = bias +
        drive`` to be written as ``np.add`` would), or None before the kernel
        has been compiled (:meth:`run` of a batch first). ``f`` returns
        :meth:`run`'s result, new arrays, or None when another run holds the
        arrays it runs over (then call :meth:`run`, which makes its own).

        ``f`` runs over the arrays of the last such run (:meth:`_one_arrays`:
        the inputs and the state as the kernel takes them, made once); each
        run writes what changes (the driven biases, the rule, the
        generators), resets what the kernel counts on (progress, counts and
        exit state: views of one buffer, reset in one copy) and calls the
        compiled kernel. What it reads is bound in ``f`` once, so that a run
        of a sample that exits after a few steps costs little more than
        the kernel (no attribute or dict look-ups at each call)."""
        if self._one is None and self._entry is not None and self._lock.acquire(blocking=False):
            try:
                self._one = self._one_function()
            finally:
                self._lock.release()
        return self._one

    def _one_function(self):
        """The function :meth:`one_sample` returns (the caller holds the lock)."""
        inputs, state, counters, reset, driven = self._one_arrays()
        entry, n_steps, arrays, streams = self._entry, self.n_steps, self.plan.arrays, self.plan.bg_stream
        acquire, release = self._lock.acquire, self._lock.release
        rule_row, rng, rec_v, counts, exit_state = (
            inputs.exit_rule,
            state.rng,
            state.rec_v,
            state.counts,
            state.exit_state,
        )
        biases = [(bias, out) for bias, _, out in driven]
        add, total, float64 = np.add, np.add.reduce, np.float64

        def one(rows, rule, seed=0, fill=None):
            if not acquire(False):
                return None
            try:
                if fill is not None:
                    fill(biases)
                else:
                    for (bias, out), row in zip(biases, rows, strict=True):  # in float64, then cast
                        add(bias, row, out=out)
                rule_row[:] = rule
                if streams:
                    rng[:] = kernels.sample_states(seed, 1, streams)
                counters[:] = reset
                entry(n_steps, arrays, inputs, state, 0, 1)
                if not exit_state[0, 3]:  # cannot happen: the history holds every step
                    raise RuntimeError("a sample did not finish its run")
                steps = exit_state[:, 2].copy()
                step = steps[0]
                return steps, rec_v[0, step - 1 : step].astype(float64), total(counts, 1)  # new arrays
            finally:
                release()

        return one

    def _one_arrays(self) -> tuple:
        """``(inputs, state, counters, reset, driven)`` of a run of one
        sample on the first scratch row, made as :meth:`run` makes them (the
        same types: the compiled kernel is called on them directly); the
        state's progress, counts and exit state are C-contiguous views of
        ``counters`` (int64), which ``reset`` holds as a run starts them;
        ``driven``: ``(bias, name, view)`` of each driven population, the
        view the slice of ``inputs.bias`` where its bias plus drive goes."""
        plan, n_steps = self.plan, self.n_steps
        scratch = self._scratch.get(0)
        if scratch is None:
            scratch = self._scratch[0] = self._new_scratch()
        silent = self._silent.get(1)
        if silent is None:
            silent = self._silent[1] = plan._input_arrays({}, 1, n_steps)
        n_counts = len(plan.order) * 4
        counters = np.zeros(3 + n_counts + 4, np.int64)
        progress = counters[:3].reshape(1, 3)
        counts = counters[3 : 3 + n_counts].reshape(1, len(plan.order), 4)
        exit_state = counters[3 + n_counts :].reshape(1, 4)
        exit_state[:, 0] = -1
        reset = counters.copy()
        inputs = GraphInputs(
            self.pop_clock,
            self.tables,
            self._bias_fixed.copy(),  # writeable; the driven slices are written by each run
            self._bias_off,
            self.rec_ids,
            self.rec_pop,
            self.rec_var,
            np.empty(EXIT_FIELDS),
            *silent,
        )
        state = GraphState(
            **scratch,
            rng=kernels.sample_states(0, 1, plan.bg_stream),
            rec_v=np.empty((1, n_steps, self.n_out), plan.dtype),
            counts=counts,
            progress=progress,
            exit_state=exit_state,
        )
        driven = [(pop.bias, pop.name, inputs.bias[:, a:b]) for pop, a, b in self._bias_driven]
        return inputs, state, counters, reset, driven

    def _new_scratch(self) -> dict:
        """One row of each scratch array of ``kernels.graph.GraphState``
        (what is zero between steps zeroed); the spike history holds every
        step, so that a run never stops for room (a sample stopped half way
        could not go on: the next one reuses the row)."""
        plan, dtype = self.plan, self.plan.dtype
        n_total, n_pops, n_steps = int(plan.pop_start[-1]), len(plan.order), self.n_steps
        n_conv = n_total if (plan.proj_kind == kernels.CONV).any() else 1
        return dict(
            state=np.empty((1, n_total, plan.width), dtype),
            acc=np.zeros((1, n_total), dtype),
            mark=np.zeros((1, n_total), np.uint8),
            touched=np.empty((1, n_total + 1), np.int32),
            head=np.empty((1, n_pops, n_steps + 1), np.int32),
            nxt=np.empty((1, n_total), np.int32),
            prv=np.empty((1, n_total), np.int32),
            due=np.empty((1, n_total), np.int32),
            hist_ptr=np.zeros((1, n_steps, n_pops + 1), np.int64),
            hist_idx=np.empty((1, n_total * (n_steps + 1)), np.int32),
            cacc=np.zeros((1, n_conv), dtype),
            cmark=np.zeros((1, n_conv), np.int32),
            clist=np.empty((1, n_conv), np.int32),
            vclk=np.empty((1, n_total), dtype),
        )


def _compiled(dispatcher, args):
    """The compiled function (numba's entry point, which converts the
    arguments to those types without checking) that ``dispatcher`` runs for
    ``args``, once it has been called with them; None when there is none to
    name (the JIT disabled, or the types not found): the dispatcher is then
    called."""
    overloads = getattr(dispatcher, "overloads", None)
    if not overloads:
        return None
    try:
        sig = tuple(dispatcher.typeof_pyval(a) for a in args)
    except Exception:  # noqa: BLE001 -- a type numba cannot name here: keep the dispatcher
        return None
    found = overloads.get(sig)
    return None if found is None else found.entry_point


_POOL = None  # (pid, ThreadPoolExecutor) of SteppedExit's threads, made on first use


def _pool():
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():  # none yet, or inherited by a forked child
        _POOL = (os.getpid(), ThreadPoolExecutor(max(1, numba.config.NUMBA_NUM_THREADS - 1), "snn-exit"))
    return _POOL[1]
