"""How a graph run is scheduled (DESIGN.md §6): which populations run one
after another over all steps, and which are stepped together.

A population outside every cycle whose input is one projection (of one
delay, CSR or convolution) or none (bias and drive only), with no Poisson
background and nothing recorded, runs as a layer (and a max-pool gate as
the stack's gate): over all ``T`` steps at once, from its source's complete
spike trains (shifted by the delay), by the layer kernels of feed-forward
stacks (event, clock or dense path, ``mode="auto"`` choosing by the same cost
model). A merge outside every cycle (several projections, or one of several
delays, CSR or convolution, all from earlier stages), with no Poisson
background and nothing recorded, runs as a layer too (unless its mode, or
the run's, is ``"event"``): its sources' spikes delivered event by event
into its currents of every step (``kernels.merge``), then the clock sweep
over them (``kernels.clock_layer``; its counts say ``"clock"``). Every
other population is stepped by ``snn.run.stepped``: the
populations of one strongly connected set (a cycle closed by delays)
together, each other one alone, with their sources' spikes as inputs. The
sets run in an order where every source comes first. All paths compute the
same spikes as the clock-driven reference, so the schedule changes the speed
of a run, never its result.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from dataclasses import dataclass

import numba
import numpy as np

import snn_kernels as kernels
from snn_kernels import REF, T_LAST
from snn_kernels.conv import delivery_weights, run_tables
from snn_kernels.neuron import V

from .._validate import numba_threads
from ..model.conv import conv_dense_rows, kernel_layout
from ..model.layers import csr_dense_rows
from .observers import Chunk, SpikeCounts
from .paths import (
    _NS_PER_CLOCK_UPDATE,
    _NS_PER_EVENT_UPDATE,
    _NS_PER_SYNOP,
    _choose_driven_mode,
    _choose_mode,
    _dense_currents,
    _run_layer,
    _run_maxpool,
    _synops,
    complete_state,
)
from .result import LayerCounts, RunResult
from .spiketrains import SpikeTrains
from .stepped import Part, SteppedPlan, SteppedRun


def _read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


# the connectivity of a layer with no input (a population fed by bias and drive only)
_NO_ROWS = _read_only(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))


@dataclass(frozen=True, eq=False)
class Stage:
    """Populations run together: one population run as a ``layer`` over all
    steps (a neuron population through its one incoming projection, or none;
    or a max-pool gate: ``layer`` its ``snn.MaxPool2d``) from the spikes of
    ``source`` ``delay`` steps late, or (``layer`` None) populations stepped
    together by ``plan``, a :class:`snn.run.stepped.SteppedPlan`."""

    populations: tuple
    plan: SteppedPlan | None = None
    layer: object = None
    source: object = None
    delay: int = 0

    @property
    def inputs(self) -> list:
        """``(source population, delay)`` of what a layer stage reads: its
        one source, or a merge's (:class:`_MergeLayer`) deliveries."""
        if isinstance(self.layer, _MergeLayer):
            return [(d.source, d.delay) for d in self.layer.deliveries]
        return [] if self.source is None else [(self.source, self.delay)]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.populations]


class Schedule(list):
    """The stages of a graph run in order (:func:`stages`), with what every
    run of them needs computed once: ``stage_of`` (population name -> stage
    index), ``lookback`` (name -> the longest delay a layer stage reads it
    with) and ``input_names`` (the graph's input populations, in order)."""

    def __init__(self, graph, stages_=()):
        super().__init__(stages_)
        self.stage_of = {p.name: k for k, stage in enumerate(self) for p in stage.populations}
        self.lookback = {}
        for stage in self:
            for source, delay in stage.inputs:
                self.lookback[source.name] = max(self.lookback.get(source.name, 0), delay)
        self.input_names = tuple(p.name for p in graph.populations if p.is_input)
        self.arrivals = _arrivals(graph)  # (source, target, delay) of every projection (_arriving)
        self._event = None  # the schedule of a run whose mode is "event" (merges stepped)
        # populations run as layers (or gates) from one source without delay: a run of them in one
        # chunk needs none of Simulation's machinery (_run_layers)
        self.layers_only = all(
            s.layer is not None and not isinstance(s.layer, _MergeLayer) and s.delay == 0 for s in self
        )
        # what _run_layers reads of each stage: (name, source name or None, gate or None, layer, population)
        self.steps = tuple(
            (s.populations[0].name, None if s.source is None else s.source.name, s.populations[0].pool)
            + (s.layer, s.populations[0])
            for s in self
        )
        self.readouts = (_readout(graph, False), _readout(graph, True))  # of a graph's result, a stack's

    def for_event(self, graph) -> Schedule:
        """This schedule for a run of mode ``"event"``: a merge's event path
        is the graph kernel's, so merges are stepped (made once)."""
        if not any(isinstance(s.layer, _MergeLayer) for s in self):
            return self
        if self._event is None:
            self._event = Schedule(
                graph, [s.layer.stepped(graph) if isinstance(s.layer, _MergeLayer) else s for s in self]
            )
        return self._event


def _as_schedule(graph, schedule) -> Schedule:
    return schedule if isinstance(schedule, Schedule) else Schedule(graph, schedule)


def stages(graph, stepped=frozenset(), together=False) -> Schedule:
    """The stages of ``graph`` in run order (every population after its
    sources); ``stepped``: names of populations that must be stepped (their
    membrane is recorded at every step); ``together``: one stage stepping
    every population (max-pool gates refused)."""
    incoming = {p.name: [] for p in graph.populations}
    for proj in graph.projections:
        incoming[proj.target.name].append(proj)
    if together:
        gates = [p.name for p in graph.populations if p.pool is not None]
        if gates:
            raise ValueError(f"max-pool gate(s) {gates} run as layers only: they cannot be stepped together")
        pops = [p for p in graph.populations if p.has_neurons]
        return Schedule(graph, [Stage(tuple(pops), plan=SteppedPlan(_part(graph, pops, incoming)))])
    driven = {s.target.name for s in graph.sources}
    out = []
    for component in _components(graph):
        pop = component[0]
        inputs = incoming[pop.name]
        gates = [p.name for p in component if p.pool is not None]
        if gates and len(component) > 1:
            raise ValueError(
                f"max-pool gate(s) {gates} in a cycle ({', '.join(p.name for p in component)}): "
                "a gate runs over all steps after its source; gating inside a recurrent loop is not supported"
            )
        if gates:
            out.append(Stage((pop,), layer=pop.pool, source=inputs[0].source))
        elif (
            len(component) == 1
            and pop.name not in stepped
            and pop.name not in driven
            and len(inputs) <= 1
            and all(p.source is not pop and len(p.delays) == 1 and p.kind in ("csr", "conv") for p in inputs)
        ):
            proj = inputs[0] if inputs else None
            out.append(
                Stage(
                    (pop,),
                    layer=_ProjectionLayer(pop, proj),
                    source=None if proj is None else proj.source,
                    delay=0 if proj is None else proj.delays[0],
                )
            )
        elif (
            len(component) == 1
            and pop.name not in stepped
            and pop.name not in driven
            and pop.mode != "event"
            and all(p.source is not pop and p.kind in ("csr", "conv") for p in inputs)
        ):
            out.append(Stage((pop,), layer=_MergeLayer(pop, inputs)))
        else:
            out.append(Stage(tuple(component), plan=SteppedPlan(_part(graph, component, incoming))))
    return Schedule(graph, out)


def run(
    graph, schedule, n_steps, given, batch, seed, record, progress, force_mode, drives, macs=None, stack=False
):
    """Run ``schedule`` (from :func:`stages`) over ``n_steps``; arguments as
    checked by :meth:`snn.Graph.run` (``given``: input spikes by name;
    ``macs``: as :meth:`snn.Graph._run` takes them; ``stack``: the result
    of a stack, :meth:`Simulation._result`). One chunk of a
    :class:`Simulation`; returns its :class:`RunResult`."""
    schedule = _as_schedule(graph, schedule)
    if not record and not progress and schedule.layers_only and all(d.ndim == 2 for d in drives.values()):
        return _run_layers(graph, schedule, n_steps, given, batch, force_mode, drives, macs, stack)
    sim = Simulation(graph, schedule, n_steps, given, batch, seed, record, force_mode, drives)
    bar = None
    if progress:  # (graph.n_neurons sums over the populations: not on every call)
        bar = progress_bar(progress, n_steps * len(schedule), graph.n_neurons * n_steps * batch)
    sim.advance(n_steps, bar=bar)
    if bar is not None:
        bar.close()
    return sim._result(True, macs, stack)


def _run_layers(graph, schedule, n_steps, given, batch, force_mode, drives, macs, stack) -> RunResult:
    """:func:`run` of a schedule of layers and gates, each reading one source
    without delay (``Schedule.layers_only``; constant ``drives`` only,
    nothing recorded): what a :class:`Simulation` of one chunk computes,
    stage by stage with the same calls (``_run_as_layer`` from no carried
    state, the propagator of ``n_steps`` rows), without its bookkeeping for
    chunks, streams and stepped stages, which a run of one sample pays at
    every call."""
    start = time.perf_counter()
    dtype = graph.dtype
    trains = dict(given)
    counts, modes = {}, {}
    readout = schedule.readouts[bool(stack)]
    membrane = None
    for name, source_name, pool, layer, pop in schedule.steps:
        source = silent_trains(n_steps, batch, 0) if source_name is None else trains[source_name]
        if pool is not None:
            out, kc, _ = _run_maxpool(pool, source)
            none = np.zeros(batch, np.int64)  # no SynOps, no background
            counts[name] = np.stack([none, kc[:, 1], kc[:, 2], none], axis=1)
            modes[name] = "gate"
        else:
            drive = drives.get(name)
            bias = layer.bias(dtype) if drive is None else _layer_bias(dtype, pop, drive)
            # (a lazy start: the state is read by _final_membrane only, which completes it)
            out, counts[name], mode, state, seen = _run_as_layer(
                dtype, layer, source, force_mode, bias, None, n_steps, None, drive is not None, False
            )
            modes[name] = mode
            if name == readout:
                unset = None if seen is None else (seen, layer.v_init_row(dtype))
                membrane = functools.partial(
                    _final_membrane, pop, state, bias[1], mode != "dense", n_steps, dtype, unset
                )
        trains[name] = out
    seconds = time.perf_counter() - start
    return _assemble(
        graph, n_steps, trains, counts, modes, {}, seconds, membrane, macs, int(stack), schedule.arrivals
    )


_SILENT = threading.local()  # per thread: the trains silent_trains made last


def silent_trains(n_steps, batch, n) -> SpikeTrains:
    """``SpikeTrains.empty(n_steps, batch, n)``, the same object again while
    asked for the same (kept per thread): for a run's own inputs, which the
    kernels only read and no result shows (a stack's analog input, a layer
    of no input), never for trains a caller receives."""
    kept = getattr(_SILENT, "trains", None)
    if kept is None or kept.n != n or kept.tptr.shape != (batch, n_steps + 1):
        kept = _SILENT.trains = SpikeTrains.empty(n_steps, batch, n)
    return kept


def _readout(graph, stack) -> str | None:
    """The population whose final membrane a run's result holds: the
    graph's readout, or for a stack's result (``stack``) its last layer
    (none if that is a gate)."""
    if not stack:
        return graph.readout
    last = graph.populations[-1]
    return last.name if last.has_neurons else None


def _final_membrane(pop, state, bias, lazy, n_steps, dtype, unset=None) -> np.ndarray:
    """``[B, n]``: the membrane of layer ``pop`` at the end of a run of
    ``n_steps`` that left ``state`` (steps counted from the run's start), its
    lazy neurons brought forward on a copy (:meth:`Simulation.membrane`);
    ``unset``: ``(seen, v_init)`` of a lazy start, whose rows not marked in
    ``seen`` are completed first (``snn.run.paths.complete_state``)."""
    state = state.copy()
    if unset is not None:
        complete_state(state, *unset)
    state[..., T_LAST] -= n_steps
    if state.shape[2] > REF:
        state[..., REF] -= n_steps
    if lazy:
        kernels.settle(state, -1, bias, pop.neuron.propagator(n_steps, dtype), *_flags(pop.neuron))
    return state[..., V]


# steps between two settles of a stream (or a run given ``epoch``): the
# arrays of a stepped stage hold this many steps (plus its longest delay)
STREAM_EPOCH = 4096


class Simulation:
    """A run of a graph's schedule advanced chunk by chunk (made by
    :meth:`snn.Graph.start`; :func:`run` is one chunk), its state kept
    between chunks: cut anywhere, it computes what one uncut run computes.

    Each stage runs a chunk after the stages before it have: a layer stage
    continues from the state its last chunk left (``kernels.event``'s
    chunks), a gate from its counts, a stepped stage's
    :class:`snn.run.stepped.SteppedRun` from where it stopped. ``mode="auto"``
    chooses each path on the first chunk's activity and keeps it.

    Streams (``n_steps`` None, or inputs fed chunk by chunk) run in bounded
    memory: the spikes of a population are kept for ``history`` steps (and
    as long as a delayed projection reads them), recordings for ``history``
    steps, and every ``epoch`` steps each neuron is brought forward to that
    step (``kernels.settle``) and step counters start again from it, so that
    no array grows with the steps run. Settling changes no spike in exact
    arithmetic (and rounding at most in the last bits): two runs of the same
    ``epoch`` compute the same, however they are cut."""

    def __init__(
        self,
        graph,
        schedule,
        n_steps,
        given,
        batch,
        seed,
        record,
        force_mode,
        drives,
        n_threads=None,
        history=None,
        epoch=None,
        count_spikes=(),
        observers=(),
    ):
        schedule = _as_schedule(graph, schedule)
        if force_mode == "event":  # a merge's event path is the graph kernel's: stepped
            schedule = schedule.for_event(graph)
        self.graph, self.schedule, self.n_steps, self.batch = graph, schedule, n_steps, batch
        self._record, self._force = record, force_mode
        # the caller's arrays may change later: copies. Drives over time ([T, B, n]) are currents
        # added to the synaptic input of each step: [B, T, n] in the state dtype, as the dense path reads them
        self._drives = {name: np.array(d) for name, d in drives.items() if d.ndim == 2}
        self._currents = {
            name: np.ascontiguousarray(d.transpose(1, 0, 2), graph.dtype)
            for name, d in drives.items()
            if d.ndim == 3
        }
        for stage in schedule if self._currents else ():
            varying = [n for n in stage.names if n in self._currents]
            if varying and stage.layer is None:
                raise ValueError(
                    f"population(s) {varying} have a drive over time ([T, B, n]), which only a "
                    "population run as a layer takes; they are stepped (recorded, in a cycle or a merge, "
                    "or with Poisson background): give them a constant drive [B, n]"
                )
        self._seed, self.n_threads = seed, n_threads
        self.fed = sorted(name for name in schedule.input_names if name not in given)
        self.history = (None if n_steps is not None else 0) if history is None else int(history)
        self.epoch = int(epoch or (n_steps or STREAM_EPOCH))
        self._uncut = n_steps is not None and self.epoch >= n_steps  # no epoch ends before the run's end
        # the longest gap a lazy neuron can have (settled every epoch): one
        # propagator table of this length serves every chunk (cached once)
        self._span = self.epoch if n_steps is None else min(self.epoch, n_steps)
        self.t = 0  # steps done
        self.seconds = 0.0  # in advance, all chunks
        self._pieces = {name: [(0, trains)] for name, trains in given.items()}  # name -> [(step, trains)]
        self._whole = set(given)  # names whose one piece holds the whole run
        self._stage_of = schedule.stage_of  # (shared with every run of the schedule: never changed)
        self._lookback = schedule.lookback  # name -> the longest delay a layer stage reads it with
        self._carry = {}  # layer stage -> its state (see _carried)
        self._unshifted = {}  # layer stage -> steps of its last chunk, still counted in its carried state
        self._runs, self._base, self._live_from = {}, {}, {}  # stepped stage -> run, its step 0, unkept from
        self._rec_pieces = {}  # (name, var) -> [(step, [steps, B, R])] of earlier epochs
        self._counts, self._modes = {}, {}
        self._static = {}  # stage index -> its inputs when all are the run's given trains
        self._bias = {}  # stage index -> a layer's bias (_layer_bias)
        self._assembled = {}  # stage index -> (key, outputs of its SteppedRun's unkept steps)
        self._tally = {name: SpikeCounts(name) for name in count_spikes}  # spike_counts(name)
        self._proj_synops = {}  # (projection name, delay) -> [B]: SynOps delivered to merge layers
        self._observers = (*self._tally.values(), *observers)  # snn.run.observers: updated after every chunk
        for observer in self._observers:
            observer.reset(self)

    def __repr__(self):
        of = "a stream" if self.n_steps is None else f"{self.n_steps} steps"
        return f"Simulation(t={self.t} of {of}, {self.batch} samples)"

    def advance(self, steps: int | None = None, *, inputs=None, drive=None, bar=None) -> Simulation:
        """Run ``steps`` more steps (default: to the end; fewer if the run
        ends first); returns the simulation. ``inputs``: the spikes of the
        input populations not given to ``start`` (:attr:`fed`) in these
        steps, by name: :class:`SpikeTrains` or rasters ``[steps, B, n]``.
        ``drive``: new drives by population name (``[B, n]``), in force from
        this chunk's first step on (the steps done keep theirs). ``bar``: a
        progress bar to advance, or None."""
        if steps is None:
            if self.n_steps is None:
                raise ValueError("a stream has no end: give the number of steps")
            steps = self.n_steps - self.t
        elif isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        t0 = self.t
        t1 = t0 + int(steps) if self.n_steps is None else min(self.n_steps, t0 + int(steps))
        fed = self._fed_chunk(inputs, int(steps), t1 - t0)
        if drive is not None:
            self._set_drives(drive)
        if t1 == t0:
            return self
        start = time.perf_counter()
        for name, trains in fed.items():
            self._pieces.setdefault(name, []).append((t0, trains))
        with numba_threads(self.n_threads):
            t = t0
            while t < t1:
                end = min(t1, (t // self.epoch + 1) * self.epoch)
                for k, stage in enumerate(self.schedule):
                    if stage.layer is not None:
                        self._layer_chunk(k, stage, t, end)
                        if bar is not None:
                            bar.update(end - t)
                    else:
                        self._stepped_chunk(k, stage, t, end, bar)
                if self._observers:
                    spikes = functools.partial(self._window, a=t, b=end)
                    chunk = Chunk(t, end, self.graph.dt, self.batch, spikes)
                    for observer in self._observers:
                        observer.update(chunk)
                self.t = t = end
                if t % self.epoch == 0 and t != self.n_steps:
                    self._settle_all(t)
        self._forget()
        self.seconds += time.perf_counter() - start
        return self

    def result(self, lazy: bool = False) -> RunResult:
        """Spikes, counts and recordings of the steps done (a run of
        :attr:`t` steps); for a run that keeps every spike (``history``
        None). ``lazy``: the final membrane is computed when first read
        (for a run that goes no further: :func:`run`)."""
        return self._result(lazy)

    def _result(self, lazy, macs=None, stack=False) -> RunResult:
        """:meth:`result`; ``macs`` as :func:`_assemble` takes them; ``stack``:
        the result of a :class:`snn.Network` run as this graph (its layers,
        without the input population; no time unit; the membrane of its
        last layer, none if that is a gate)."""
        t = self.t
        if t == 0:
            raise ValueError("no step has run yet: call advance() first")
        if self.history is not None:
            raise ValueError(
                f"this run keeps the spikes of its last {self.history} steps only: read them with "
                "window(), the counts with totals() and spike_counts()"
            )
        trains = {p.name: self._window(p.name, 0, t) for p in self.graph.populations}
        recorded = {(pop.name, var): (idx, self.recorded(pop.name, var)) for pop, idx, var in self._record}
        counts, modes = self.totals(), self.modes()
        graph = self.graph
        readout = _readout(graph, stack)
        membrane = None
        if readout is not None:
            membrane = (lambda: self.membrane(readout)) if lazy else self.membrane(readout)
        return _assemble(
            graph,
            t,
            trains,
            counts,
            modes,
            recorded,
            self.seconds,
            membrane,
            macs,
            int(stack),
            self.schedule.arrivals,
        )

    def keep(self, rows) -> Simulation:
        """Go on with the samples ``rows`` only (indices into the current
        batch, in the order given): the others leave the run (an early exit),
        and what is later computed, counted and returned covers these."""
        rows = np.asarray(rows, np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= self.batch)):
            raise ValueError(f"rows must be indices into the batch of {self.batch} samples")
        self._pieces = {name: [(s, _rows(tr, rows)) for s, tr in ps] for name, ps in self._pieces.items()}
        self._rec_pieces = {key: [(s, v[:, rows]) for s, v in ps] for key, ps in self._rec_pieces.items()}
        self._static, self._assembled = {}, {}
        self._bias = {k: _bias_rows(b, rows) for k, b in self._bias.items()}
        self._drives = {name: d[rows] for name, d in self._drives.items()}
        self._currents = {name: np.ascontiguousarray(c[rows]) for name, c in self._currents.items()}
        self._counts = {name: c[rows] for name, c in self._counts.items()}
        for observer in self._observers:
            observer.keep(rows)
        self._proj_synops = {key: c[rows] for key, c in self._proj_synops.items()}
        self._carry = {
            k: tuple(a[rows] for a in c) if isinstance(c, tuple) else c[rows] for k, c in self._carry.items()
        }
        for run in self._runs.values():
            run.keep(rows)
        self.batch = len(rows)
        return self

    def totals(self) -> dict:
        """Counts of the steps done so far by population name, ``[B, 4]``
        int64 each (synaptic operations, state updates, spikes, background
        events), without assembling the spikes (zeros before a population
        has run)."""
        out = {
            p.name: np.zeros((self.batch, 4), np.int64)
            for p in self.graph.populations
            if p.has_neurons and p.name not in self._counts
        }
        out.update(self._counts)
        for run in self._runs.values():
            for k, pop in enumerate(run.plan.order):
                if not pop.is_input:
                    out[pop.name] = run.counts[:, k].copy()
        return out

    def modes(self) -> dict:
        """The path each neuron population runs on, by name (once it has run)."""
        out = dict(self._modes)
        for run in self._runs.values():
            out.update((p.name, m) for p, m in zip(run.plan.order, run.modes, strict=True) if not p.is_input)
        return out

    def membrane(self, name: str) -> np.ndarray:
        """``[B, n]``: the membrane of population ``name`` at the end of the
        last step done (its initial membrane before the first), its lazy
        neurons brought forward on a copy (the run goes on unchanged)."""
        pop = self.graph[name]
        if not pop.has_neurons:
            raise ValueError(f"population {name!r} has no neurons, so no membrane")
        k = self._stage_of[name]
        dtype = self.graph.dtype
        if k in self._carry:  # a layer stage: its state, steps counted from the next chunk's start
            state = self._carried(k).copy()
            if self._lazy(k):
                table = pop.neuron.propagator(self._span, dtype)
                kernels.settle(state, -1, self._bias[k][1], table, *_flags(pop.neuron))
            return state[..., V]
        run = self._runs.get(k)
        if run is None or run.t == 0:
            return np.tile(pop.v_init.astype(dtype), (self.batch, 1))
        j = run.plan.pop_index[name]
        a, b = run.plan.pop_start[j], run.plan.pop_start[j + 1]
        state = run.state[:, a:b].copy()
        bias = run.bias[:, run.bias_off[j] : run.bias_off[j + 1]]
        kernels.settle(state, run.t - 1, bias, run.tables[j], *_flags(pop.neuron))
        return state[..., V]

    def spike_counts(self, name: str) -> np.ndarray:
        """``[B, n]`` int64: the spikes of each neuron of population ``name``
        in all the steps done (named in ``count_spikes`` at the start: a
        reducer, kept whatever ``history`` is)."""
        if name not in self._tally:
            raise KeyError(f"population {name!r} is not in this run's count_spikes")
        return self._tally[name].compute()

    def recorded(self, name: str, var: str = "v") -> np.ndarray:
        """``[steps, B, R]``: the variable ``var`` (``"v"`` or ``"i"``) of the
        recorded neurons of population ``name``, at the end of each step kept
        (every step done, or the last ``history``)."""
        k = self._stage_of.get(name)
        run = self._runs.get(k)
        values = None if run is None else run.recorded(name, var, self._live_from[k] - self._base[k])
        if values is None:
            raise KeyError(f"{var} of population {name!r} is not recorded in this run")
        earlier = [v for _, v in self._rec_pieces.get((name, var), ())]
        values = np.concatenate([*earlier, values]) if earlier else values
        kept = len(values) if self.history is None else min(self.history, len(values))
        return values[len(values) - kept :]

    def window(self, name: str, a: int, b: int) -> SpikeTrains:
        """Spikes of population ``name`` in steps ``a .. b - 1`` (``0 <= a <=
        b <= t``, within the ``history`` kept) as trains of ``b - a`` steps."""
        if not 0 <= a <= b <= self.t:
            raise ValueError(f"steps {a}..{b} are not within the {self.t} steps done")
        if self.history is not None and a < self.t - self.history:
            raise ValueError(f"this run keeps the spikes of its last {self.history} steps only")
        return self._window(name, a, b)

    def _window(self, name, a, b) -> SpikeTrains:
        """Spikes of population ``name`` in steps ``a .. b - 1`` (``b - a``
        steps; those before step 0 or not yet run are empty)."""
        pieces = self._pieces.get(name, [])
        if len(pieces) == 1 and a == pieces[0][0] == 0 and pieces[0][1].n_steps == b:
            return pieces[0][1]  # the whole of one chunk (an uncut run)
        k = self._stage_of.get(name)
        if k in self._runs:
            pieces = [*pieces, (self._live_from[k], self._unkept(k)["trains"][name])]
        parts, first, last = [], None, None
        for start, trains in pieces:
            lo, hi = max(a, start), min(b, start + trains.n_steps)
            if lo < hi:
                parts.append(_slice(trains, lo - start, hi - start))
                first = lo if first is None else first
                last = hi
        n = self.graph[name].n
        if not parts:
            return SpikeTrains.empty(b - a, self.batch, n)
        if first > a:  # before step 0 (a delayed source)
            parts.insert(0, SpikeTrains.empty(first - a, self.batch, n))
        if last < b:  # not run yet
            parts.append(SpikeTrains.empty(b - last, self.batch, n))
        return _join(parts)

    def _unkept(self, k) -> dict:
        """``SteppedRun.outputs`` of stage ``k`` since its last epoch,
        assembled once per state."""
        run = self._runs[k]
        key = (run.t, run.batch)
        if self._assembled.get(k, (None,))[0] != key:
            self._assembled[k] = (key, run.outputs(self._live_from[k] - self._base[k]))
        return self._assembled[k][1]

    def _fed_chunk(self, inputs, steps, runs) -> dict:
        """The input spikes of this chunk (``steps`` asked, ``runs`` run), checked."""
        inputs = dict(inputs or {})
        names = {(k if isinstance(k, str) else getattr(k, "name", k)): v for k, v in inputs.items()}
        if set(names) != set(self.fed):
            extra = sorted(set(map(str, names)) - set(self.fed))
            raise ValueError(
                f"advance() needs the spikes of {self.fed or 'no input population'}"
                + (f"; {extra} are not fed chunk by chunk (given to start, or not inputs)" if extra else "")
            )
        out = {}
        for name, spikes in names.items():
            trains = spikes if isinstance(spikes, SpikeTrains) else SpikeTrains.from_raster(spikes)
            n = self.graph[name].n
            if trains.n != n or trains.n_steps != steps or trains.batch_size != self.batch:
                raise ValueError(
                    f"input {name!r} must be spikes [steps={steps}, batch={self.batch}, {n}], got "
                    f"{trains.n_steps} steps of {trains.batch_size} x {trains.n} neurons"
                )
            out[name] = trains if runs == steps else _slice(trains, 0, runs)
        return out

    def _set_drives(self, drive) -> None:
        """New drives from the next step on: each layer settled with its old
        bias (its lazy neurons brought to the last step done), then given
        the new one; each stepped run likewise."""
        drives = self.graph._drives(drive)
        wrong = sorted({len(d) for d in drives.values()} - {self.batch})
        if wrong:
            raise ValueError(f"drives have {wrong[0]} samples but the run has {self.batch}")
        self.graph._check_precision(drives)
        self._drives.update((name, np.array(d)) for name, d in drives.items())
        for k, stage in enumerate(self.schedule):
            if not set(stage.names) & set(drives):
                continue
            if stage.layer is not None:
                self._settle_layer(k, stage)
                self._bias.pop(k, None)
            elif k in self._runs:
                self._runs[k].set_drives(self._drives)
                self._assembled.pop(k, None)

    def _settle_layer(self, k, stage) -> None:
        """Bring the neurons of layer stage ``k`` to the last step done."""
        state, pop = self._carried(k), stage.populations[0]
        if state is not None and pop.pool is None and self._lazy(k):
            neuron = pop.neuron
            table = neuron.propagator(self._span, self.graph.dtype)
            kernels.settle(state, -1, self._bias[k][1], table, neuron.has_current, neuron.refractory > 0)

    def _settle_all(self, t) -> None:
        """End an epoch at step ``t``: every neuron settled; a stepped run's
        steps before ``t`` kept as trains (and recordings), its arrays
        rebased to hold only the steps its delays still read."""
        for k, stage in enumerate(self.schedule):
            if stage.layer is not None:
                self._settle_layer(k, stage)
                continue
            run = self._runs[k]
            done = self._unkept(k)
            for name, trains in done["trains"].items():
                self._pieces.setdefault(name, []).append((self._live_from[k], trains))
            for (name, var), (_, values) in done["recorded"].items():
                self._rec_pieces.setdefault((name, var), []).append((self._live_from[k], values))
            shift = max(0, run.t - int(stage.plan.proj_delay.max(initial=0)))
            run.rebase(shift)
            self._base[k] += shift
            self._live_from[k] = t
            self._assembled.pop(k, None)

    def _forget(self) -> None:
        """Drop the spikes and recordings no longer kept (``history``) and no
        longer read (delays)."""
        if self.history is None:
            return
        for name, pieces in self._pieces.items():
            keep_from = self.t - max(self.history, self._lookback.get(name, 0))
            self._pieces[name] = [(s, tr) for s, tr in pieces if s + tr.n_steps > keep_from]
        for key, pieces in self._rec_pieces.items():
            kept = []
            for s, values in pieces:
                cut = max(0, self.t - self.history - s)
                if cut < len(values):
                    kept.append((s + cut, values[cut:]))
            self._rec_pieces[key] = kept

    def _lazy(self, k) -> bool:
        """Whether layer stage ``k`` leaves lazy neurons (event or clock
        path: ``kernels.settle`` brings them forward); the sweeps of the
        dense path and of a merge leave every neuron at the last step."""
        pop = self.schedule[k].populations[0]
        return self._modes[pop.name] != "dense" and not isinstance(self.schedule[k].layer, _MergeLayer)

    def _merge_chunk(self, k, stage, t0, t1) -> tuple:
        """Merge stage ``k`` over steps ``t0 .. t1 - 1``: its trains, counts
        ``[B, 4]`` and state. Samples run in blocks (:func:`_merge_block`):
        a block's currents ``[b, steps, n]`` (state dtype) are delivered (its
        drive over time added last, as the reference adds it), then swept by
        ``kernels.clock_layer`` while they are still in cache, in buffers
        reused by every block (:func:`_scratch`). The SynOps of each delivery
        are added to ``_proj_synops``."""
        layer, pop, steps, batch = stage.layer, stage.populations[0], t1 - t0, self.batch
        n, dtype, neuron = layer.n_out, self.graph.dtype, pop.neuron
        if k not in self._bias:
            drive = self._drives.get(pop.name)
            self._bias[k] = layer.bias(dtype) if drive is None else _layer_bias(dtype, pop, drive)
        bias = self._bias[k][1]
        drive = self._currents.get(pop.name)
        spikes = []
        for d in layer.deliveries:
            src = self._window(d.source.name, t0 - d.delay, t1 - d.delay)
            spikes.append((np.ascontiguousarray(src.tptr), np.ascontiguousarray(src.idx)))
        synops = [np.zeros(batch, np.int64) for _ in layer.deliveries]
        size = _merge_block(layer, steps, dtype, batch)
        currents = _scratch("currents", (size, steps, n), dtype)
        if layer.n_conv:  # channel-last sums, each step's shared by several convolutions: zero, and
            # left zero by the convolution that folds them
            sums = _scratch("sums", (size, steps if layer.n_conv > 1 else 1, n), dtype)
            sums.fill(0)
        carried = self._carried(k)
        state = np.empty((batch, n, 4), dtype) if carried is None else carried.copy()
        v_init = layer.v_init_row(dtype) if carried is None else np.zeros(0, dtype)
        thr, v_reset = neuron.constants(dtype)
        constants = (dtype(neuron.alpha or 0.0), dtype(neuron.beta), thr, neuron.reset_code, v_reset)
        # output buffer: a guess, or the busiest sample's spikes per step of the layer's last run
        cap = min(steps * n, max(1024, steps * n // 8, int(1.25 * layer.spikes_per_step * steps)))
        out_tptr = np.empty((batch, steps + 1), np.int64)
        out_idx = np.empty((batch, cap), np.int32)
        counts = np.zeros((batch, 4), np.int64)
        for s0 in range(0, batch, size):
            s1 = min(batch, s0 + size)
            block = currents[: s1 - s0]
            block.fill(0)
            convs = 0
            for d, (tptr, idx), count in zip(layer.deliveries, spikes, synops, strict=True):
                tptr, idx, count = tptr[s0:s1], idx[s0:s1], count[s0:s1]
                if d.kind == "conv":
                    convs += 1
                    fold = convs == layer.n_conv  # the last convolution folds the sums into the currents
                    shared = layer.n_conv > 1
                    kernels.conv_currents(
                        tptr, idx, d.geom, d.weights, *d.tables, sums[: s1 - s0], fold, block, count, shared
                    )
                elif d.kind == "dense":
                    kernels.dense_currents(tptr, idx, d.weights, block, count)
                else:
                    kernels.csr_currents(tptr, idx, d.rowptr, d.cols, d.weights, block, count)
            if drive is not None:
                block += drive[s0:s1, t0:t1]
            while True:  # (a sample whose spikes overflow out_idx leaves its state as it was)
                kernels.clock_layer(
                    block,
                    bias if len(bias) == 1 else bias[s0:s1],
                    *constants,
                    neuron.refractory,
                    v_init,
                    neuron.has_current,
                    state[s0:s1],
                    out_tptr[s0:s1],
                    out_idx[s0:s1],
                    counts[s0:s1],
                )
                if not counts[s0:s1, 3].any():
                    break
                if carried is not None:  # swept again from the state the chunk began with (the
                    state[s0:s1] = carried[s0:s1]  # samples that did not overflow have moved on)
                cap = min(cap * 4, steps * n)
                grown = np.empty((batch, cap), np.int32)
                grown[:s0, : out_idx.shape[1]] = out_idx[:s0]
                out_idx = grown
        for d, count in zip(layer.deliveries, synops, strict=True):
            self._proj_synops[d.key] = self._proj_synops.get(d.key, 0) + count
        used = int(counts[:, 2].max(initial=0))
        layer.spikes_per_step = used / steps
        counts[:, 0] = sum(synops)
        return SpikeTrains(out_tptr, out_idx[:, :used].copy(), n), counts, state

    def _layer_chunk(self, k, stage, t0, t1):
        pop, steps = stage.populations[0], t1 - t0
        if isinstance(stage.layer, _MergeLayer):
            out, counts, self._carry[k] = self._merge_chunk(k, stage, t0, t1)
            self._modes[pop.name] = "clock"
            self._unshifted[k] = steps
            self._pieces.setdefault(pop.name, []).append((t0, out))
            self._add_counts(pop.name, counts)
            return
        if stage.source is None:
            source = SpikeTrains.empty(steps, self.batch, 0)
        else:
            source = self._window(stage.source.name, t0 - stage.delay, t1 - stage.delay)
        if pop.pool is not None:
            out, kc, self._carry[k] = _run_maxpool(pop.pool, source, self._carry.get(k))
            none = np.zeros(self.batch, np.int64)  # no SynOps, no background
            counts = np.stack([none, kc[:, 1], kc[:, 2], none], axis=1)
            self._modes[pop.name] = "gate"
        else:
            if k not in self._bias:
                drive = self._drives.get(pop.name)
                dtype = self.graph.dtype
                self._bias[k] = stage.layer.bias(dtype) if drive is None else _layer_bias(dtype, pop, drive)
            currents = self._currents.get(pop.name)
            out, counts, self._modes[pop.name], self._carry[k], _ = _run_as_layer(
                self.graph.dtype,
                stage.layer,
                source,
                self._modes.get(pop.name, self._force),
                self._bias[k],
                self._carried(k),
                self._span,
                None if currents is None else np.ascontiguousarray(currents[:, t0:t1]),
                pop.name in self._drives,
            )
            self._unshifted[k] = steps
        self._pieces.setdefault(pop.name, []).append((t0, out))
        self._add_counts(pop.name, counts)

    def _add_counts(self, name, counts) -> None:
        """Add a chunk's ``counts`` (a new array, now the run's) to population ``name``'s."""
        done = self._counts.get(name)
        self._counts[name] = counts if done is None else done + counts

    def _carried(self, k):
        """The state layer stage ``k`` continues from (None before its first
        chunk), its steps counted from the next chunk's start: the kernels
        count them from the start of the chunk that made it, and the shift
        is applied here, when first needed (never in a run of one chunk)."""
        state, steps = self._carry.get(k), self._unshifted.pop(k, 0)
        if steps:
            state[..., T_LAST] -= steps
            if state.shape[2] > REF:
                state[..., REF] -= steps
        return state

    def _stepped_chunk(self, k, stage, t0, t1, bar):
        names = [p.name for p in stage.plan.order if p.is_input]
        if k not in self._runs:
            mine = [r for r in self._record if r[0] in stage.populations]
            windows = {name: self._window(name, t0, t1) for name in names}
            chosen = _stepped_modes(stage, windows, t1 - t0, {r[0].name for r in mine})
            steps = self.n_steps if self._uncut else self.epoch + int(stage.plan.proj_delay.max(initial=0))
            force = "clock" if self._force == "dense" else self._force  # no GEMM when stepped
            self._runs[k] = SteppedRun(
                stage.plan, steps, self.batch, self._seed, mine, force, self._drives, chosen
            )
            self._base[k] = self._live_from[k] = 0
        run, base = self._runs[k], self._base[k]
        if self._uncut and all(name in self._whole for name in names):
            given = self._static.get(k)  # known for the whole run: the same trains
            if given is None:
                given = self._static[k] = {name: self._pieces[name][0][1] for name in names}
        else:
            given = {name: _placed(self._window(name, t0, t1), t0 - base, run.n_steps) for name in names}
        step = t1 - t0 if bar is None else max(1, (self.n_steps or self.epoch) // 100)
        while run.t < t1 - base:
            done = run.t
            run.advance(min(t1 - base, done + step), given)
            if bar is not None:
                bar.update(run.t - done)


def _assemble(
    graph, n_steps, trains, counts, modes, recorded, seconds, membrane, macs=None, first=0, arrivals=None
) -> RunResult:
    """The result of the stages of an event run: ``trains`` of every
    population by name, kernel ``counts`` ``[B, 4]`` (synaptic operations
    received, updates, spikes, background events) and ``modes`` of the
    neuron populations, ``recorded`` variables by ``(name, var)``, the
    readout's final ``membrane``, ``macs`` ``[B]`` by name (done outside
    the graph on analog input; default none). ``first``: 1 for a stack's
    result (the populations from the second on, its layers; no ``dt``);
    ``arrivals`` as :func:`_arriving` takes them. The counts are assembled
    when first read (:func:`_layer_counts`)."""
    pops = tuple(graph.populations[first:])  # (the graph as it is now: the counts may be read after an edit)
    names = [p.name for p in pops]
    if arrivals is None:
        arrivals = _arrivals(graph)
    return RunResult(
        [trains[n] for n in names],
        functools.partial(_layer_counts, graph, pops, n_steps, trains, counts, modes, macs, arrivals),
        membrane,
        "event",
        names=names,
        recorded={n: r for (n, var), r in recorded.items() if var == "v"} if recorded else None,
        recorded_i={n: r for (n, var), r in recorded.items() if var == "i"} if recorded else None,
        dt=None if first else graph.dt,
        seconds=seconds,
        projection_synops=lambda: projection_synops(graph, trains, n_steps),
    )


def _layer_counts(graph, pops, n_steps, trains, counts, modes, macs, arrivals) -> list:
    """The :class:`LayerCounts` of populations ``pops`` in a run's result
    (arguments as :func:`_assemble` takes them)."""
    batch = next(iter(trains.values())).batch_size
    if callable(macs):  # counted now, when first read
        macs = macs()
    arriving = _arriving(graph, trains, n_steps, arrivals)
    layer_counts = []
    for pop in pops:
        name = pop.name
        if pop.is_input:
            spikes, zero = trains[name].per_sample, np.zeros(batch, np.int64)
            layer_counts.append(LayerCounts(name, "input", zero, zero, zero, zero, spikes, zero.copy()))
            continue
        c = counts[name]
        into = arriving.get(name)
        layer_counts.append(
            LayerCounts(
                name,
                modes[name],
                c[:, 0],  # views of this run's own counts
                np.zeros(batch, np.int64) if macs is None or name not in macs else macs[name],
                c[:, 1],
                _filled(batch, n_steps * pop.n),
                c[:, 2],
                c[:, 3].copy() if into is None else into + c[:, 3],
            )
        )
    return layer_counts


def _filled(batch, value) -> np.ndarray:
    out = np.empty(batch, np.int64)
    out.fill(value)
    return out


def projection_synops(graph, trains, n_steps) -> dict:
    """Synaptic operations of each projection of ``graph`` (by name, ``[B]``
    int64) in a run of ``n_steps`` with spikes ``trains`` by population
    name: the fan-out, in its delay group, of every source spike that
    arrives within the run (emitted at a step ``< n_steps - delay``),
    whichever path delivered it. Max-pool gates do none."""
    out = {}
    for proj in graph.projections:
        if proj.kind == "maxpool":
            continue
        src = trains[proj.source.name]
        if proj.kind == "conv":
            groups = [(proj.delay, proj.fan_out())]
        else:
            groups = [(d, np.diff(rowptr)) for d, rowptr, _, _ in proj.groups]
        total = np.zeros(src.batch_size, np.int64)
        kept = np.arange(src.idx.shape[1])
        for d, fan_out in groups:
            arrived = kept < src.tptr[:, max(n_steps - d, 0), None]  # [B, spikes]: the spikes that arrive
            total += np.where(arrived, fan_out[np.where(arrived, src.idx, 0)], 0).sum(axis=1)
        out[proj.name] = total
    return out


def _arriving(graph, trains, n_steps, arrivals=None):
    """Source spikes delivered to each population that has a projection
    into it: spikes of the source at steps ``< T - d`` per projection delay
    group, per sample ``[B]``, by name. ``arrivals``: the graph's
    ``(source, target, delay)`` names and delays (:attr:`Schedule.arrivals`),
    if known."""
    out = {}
    for source, name, d in _arrivals(graph) if arrivals is None else arrivals:
        got = trains[source].tptr[:, max(n_steps - d, 0)]
        out[name] = got.copy() if name not in out else out[name] + got
    return out


def _arrivals(graph) -> tuple:
    """``(source name, target name, delay)`` of each delay group of each
    projection of ``graph``, in order."""
    return tuple((p.source.name, p.target.name, d) for p in graph.projections for d in p.delays)


def _flags(neuron) -> tuple:
    """``(has_current, has_refractory)`` of a neuron model, as kernels take them."""
    return neuron.has_current, neuron.refractory > 0


def _slice(trains: SpikeTrains, a: int, b: int) -> SpikeTrains:
    """Steps ``a .. b - 1`` of ``trains`` as trains of ``b - a`` steps (steps
    outside ``trains`` are empty)."""
    batch = trains.batch_size
    lo, hi = min(max(a, 0), trains.n_steps), min(max(b, 0), trains.n_steps)
    if (lo, hi) == (0, trains.n_steps) and (a, b) == (lo, hi):
        return trains
    if hi <= lo:
        return SpikeTrains.empty(b - a, batch, trains.n)
    first = trains.tptr[:, lo]
    part = trains.tptr[:, lo : hi + 1] - first[:, None]
    tptr = np.zeros((batch, b - a + 1), np.int64)
    tptr[:, lo - a : hi - a + 1] = part
    tptr[:, hi - a + 1 :] = part[:, -1:]
    width = int(part[:, -1].max(initial=0))
    if width == 0:
        return SpikeTrains(tptr, np.zeros((batch, 0), np.int32), trains.n)
    at = np.minimum(first[:, None] + np.arange(width), trains.idx.shape[1] - 1)
    return SpikeTrains(tptr, np.take_along_axis(trains.idx, at, axis=1), trains.n)


def _rows(trains: SpikeTrains, rows) -> SpikeTrains:
    """The samples ``rows`` of ``trains``."""
    return SpikeTrains(trains.tptr[rows], trains.idx[rows], trains.n)


def _join(chunks) -> SpikeTrains:
    """Trains of consecutive chunks of steps as one."""
    if len(chunks) == 1:
        return chunks[0]
    batch = chunks[0].batch_size
    per_step = np.concatenate([np.diff(c.tptr, axis=1) for c in chunks], axis=1)
    tptr = np.zeros((batch, per_step.shape[1] + 1), np.int64)
    np.cumsum(per_step, axis=1, out=tptr[:, 1:])
    idx = np.zeros((batch, int(tptr[:, -1].max(initial=0))), np.int32)
    offset = np.zeros(batch, np.int64)
    for c in chunks:
        count = c.per_sample
        sample = np.repeat(np.arange(batch), count)
        rank = np.arange(len(sample)) - np.repeat(np.cumsum(count) - count, count)
        idx[sample, offset[sample] + rank] = c.idx[sample, rank]
        offset += count
    return SpikeTrains(tptr, idx, chunks[0].n)


def _placed(window: SpikeTrains, t0: int, n_steps: int) -> SpikeTrains:
    """The spikes of ``window`` (steps ``t0 ..``) as trains of ``n_steps``
    steps, empty elsewhere (what a stepped run reads, step by step)."""
    if t0 == 0 and window.n_steps == n_steps:
        return window
    tptr = np.zeros((window.batch_size, n_steps + 1), np.int64)
    t1 = t0 + window.n_steps
    tptr[:, t0 : t1 + 1] = window.tptr
    tptr[:, t1 + 1 :] = window.tptr[:, -1:]
    return SpikeTrains(tptr, window.idx, window.n)


def progress_bar(progress, total, work):
    """A tqdm bar of ``total`` steps, or None. ``"auto"``: for runs of about a
    second or more (``work`` neuron-steps), and only if tqdm is installed."""
    auto = progress == "auto"
    if auto:
        progress = work >= 2e8
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        if auto:
            return None
        raise ImportError("progress=True needs tqdm: pip install tqdm (or pass progress=False)") from err
    return tqdm(total=total, unit="step", desc="simulating", leave=False)


class _ProjectionLayer:
    """A population and its one incoming projection (or None) seen as a
    layer of a stack (what ``snn.run.paths``'s layer runner and cost model
    read); without a projection, a CSR layer of no input."""

    def __init__(self, pop, proj):
        self.pop, self.proj, self.neuron, self.n_out = pop, proj, pop.neuron, pop.n
        self._rows, self._v_init, self._bias = {}, {}, {}  # by dtype
        self.spikes_per_step = 0.0  # of the busiest sample in the last run: the next run's buffer
        # its kernel calls by (path, dtype, rows, settle, fresh) (snn.run.paths._run_layer): all it
        # binds is fixed while this layer lives (the population and projection are immutable)
        self.calls = {}
        self.n_in, self.kind = (0, "csr") if proj is None else (proj.source.n, proj.kind)
        if proj is None:
            self.rowptr, self.cols, self.weights = _NO_ROWS
            self.fan_out = np.zeros(0, np.int64)
        elif proj.kind == "conv":
            self.geom, self.kernel_weights = proj.geom, kernel_layout(proj.kernel)
            self.fan_out = proj.fan_out()
        elif proj.rows is not None:  # fully connected: the dense kernels read its rows
            self.kind, self.weight_rows = "dense", proj.rows
            self.fan_out = np.full(proj.source.n, pop.n, np.int64)
        else:
            _, self.rowptr, self.cols, weights = proj.groups[0]
            if weights is None:  # one shared weight: the layer kernels read one per synapse
                weights = np.full(len(self.cols), proj.weight, np.float32)
                weights.flags.writeable = False
            self.weights = weights
            self.fan_out = np.diff(self.rowptr)
        self.n_synapses = int(self.fan_out.sum())

    def __getstate__(self):  # a copy or pickle makes its kernel calls (closures) again
        return {**self.__dict__, "calls": {}}

    def v_init_row(self, dtype):
        """The initial membrane in ``dtype``, made once (writeable, never
        written: numba compiles read-only arrays as another type)."""
        key = np.dtype(dtype)
        if key not in self._v_init:
            self._v_init[key] = self.pop.v_init.astype(key)
        return self._v_init[key]

    def bias(self, dtype) -> tuple:
        """:func:`_layer_bias` of the population without a drive, made once."""
        made = self._bias.get(dtype)
        if made is None:
            made = self._bias[dtype] = _layer_bias(np.dtype(dtype).type, self.pop, None)
        return made

    def dense_rows(self, dtype):
        """``[n_in, n_out]`` weights (the dense path's GEMM operand), built
        once per dtype."""
        key = np.dtype(dtype)
        if key not in self._rows:
            if self.kind == "conv":
                self._rows[key] = conv_dense_rows(self.geom, self.proj.kernel, key)
            elif self.kind == "dense":
                self._rows[key] = self.weight_rows.astype(key)
            else:
                self._rows[key] = csr_dense_rows(self.rowptr, self.cols, self.weights, self.n_out, key)
        return self._rows[key]


@dataclass(frozen=True, eq=False)
class _Delivery:
    """One projection (or one delay group of it) into a merge: ``kind``
    ``"csr"`` (``rowptr, cols, weights``), ``"dense"`` (``weights`` its rows
    ``[n_source, n]``) or ``"conv"`` (``geom``, ``weights`` as
    ``kernels.conv.delivery_weights`` lays them out, ``tables`` its
    ``run_tables``); ``key`` ``(projection name, delay)``."""

    source: object
    delay: int
    kind: str
    key: tuple
    weights: np.ndarray
    rowptr: np.ndarray | None = None
    cols: np.ndarray | None = None
    geom: np.ndarray | None = None
    tables: tuple = ()


class _MergeLayer(_ProjectionLayer):
    """A population with several incoming projections (or one of several
    delays), all from earlier stages, run as a layer: each projection's
    spikes delivered into the currents of every step (``kernels.merge``),
    then the clock sweep over them. Deliveries in the order the graph kernel
    sums them (CSR and dense ones in the order of the projections, then the
    convolutions), so that sums round as they do stepped."""

    def __init__(self, pop, projections):
        super().__init__(pop, None)
        flat, convs = [], []
        for proj in projections:
            if proj.kind == "conv":
                weights = np.empty(proj.kernel.size, np.float32)
                delivery_weights(proj.geom, kernel_layout(proj.kernel), weights)
                convs.append(
                    _Delivery(
                        proj.source,
                        proj.delay,
                        "conv",
                        (proj.name, proj.delay),
                        weights,
                        geom=np.ascontiguousarray(proj.geom, np.int64),
                        tables=run_tables(proj.geom),
                    )
                )
            elif proj.rows is not None:  # fully connected: contiguous rows
                delay = proj.delays[0]
                flat.append(_Delivery(proj.source, delay, "dense", (proj.name, delay), proj.rows))
            else:
                for delay, rowptr, cols, weights in proj.groups:
                    if weights is None:  # one shared weight: one per synapse, as the layer kernels read
                        weights = np.full(len(cols), proj.weight, np.float32)
                    flat.append(
                        _Delivery(
                            proj.source, delay, "csr", (proj.name, delay), weights, rowptr=rowptr, cols=cols
                        )
                    )
        self.deliveries = tuple(flat + convs)
        self.n_conv = len(convs)
        self.projections = tuple(projections)
        self._stepped = None

    def stepped(self, graph) -> Stage:
        """The population as a stepped stage (a run whose ``mode`` is
        ``"event"``: the graph kernel's event path), made once."""
        if self._stepped is None:
            part = _part(graph, [self.pop], {self.pop.name: list(self.projections)})
            self._stepped = Stage((self.pop,), plan=SteppedPlan(part))
        return self._stepped


# bytes of a merge stage's currents (and shared sums) a block of samples holds: written by the
# deliveries, then read by the sweep, while they are still in the shared cache (32 MB here)
MERGE_BLOCK_BYTES = 4 << 20


def _merge_block(layer, steps, dtype, batch) -> int:
    """Samples per block of merge layer ``layer`` over ``steps`` steps:
    as many as :data:`MERGE_BLOCK_BYTES` holds (at least one, and one per
    thread, which run the samples of a block in parallel)."""
    rows = steps + (steps if layer.n_conv > 1 else 0)  # the currents, and the sums of each step if shared
    per_sample = rows * layer.n_out * np.dtype(dtype).itemsize
    return max(1, min(batch, max(numba.get_num_threads(), MERGE_BLOCK_BYTES // max(1, per_sample))))


_SCRATCH = threading.local()  # per thread: name -> the buffer _scratch keeps


def _scratch(name, shape, dtype) -> np.ndarray:
    """An uninitialised array ``shape`` of ``dtype`` for this thread's merge
    blocks: views of one buffer per ``name`` kept by the thread (grown as
    needed; one of over ``2 * MERGE_BLOCK_BYTES`` is not kept), so that a
    run does not fault in new pages for every merge and call."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    kept = getattr(_SCRATCH, name, None)
    if kept is None or kept.nbytes < nbytes:
        kept = np.empty(nbytes, np.uint8)
        if nbytes <= 2 * MERGE_BLOCK_BYTES:
            setattr(_SCRATCH, name, kept)
    return kept[:nbytes].view(dtype).reshape(shape)


def _layer_bias(dtype, pop, drive) -> tuple:
    """``(bias [B or 1, n], as the kernels read it, positive)`` of a
    population with its drive (summed in float64, as the stepped path does);
    the kernels' is one value when all are equal (no per-neuron reads);
    ``positive``: whether some bias is positive (None where not yet known:
    :func:`_positive`; known without a drive, or when all are equal)."""
    if drive is None:
        bias = np.atleast_2d(pop.bias).astype(dtype)  # a copy (the population's is read-only)
    else:
        bias = (pop.bias + drive).astype(dtype, copy=False)
    first = bias.flat[0]
    if not (bias.size > 1 and first != bias.flat[1]) and (bias == first).all():  # the first two tell most
        return bias, np.ascontiguousarray(bias[:1, :1]), bool(first > 0)
    return bias, bias, bool(bias.max() > 0) if drive is None else None


def _bias_rows(bias, rows) -> tuple:
    """:func:`_layer_bias`'s ``bias`` of the samples ``rows`` (whether some
    is positive known again only where it is shared by all samples)."""
    full, kernel, positive = bias
    if len(full) == 1:
        return bias
    return full[rows], kernel[rows] if len(kernel) > 1 else kernel, positive if len(kernel) == 1 else None


def _positive(bias) -> bool:
    """Whether some bias of :func:`_layer_bias`'s ``bias`` is positive."""
    return bias[2] if bias[2] is not None else bool(bias[0].max() > 0)


def _run_as_layer(
    dtype, layer, source, mode, bias, carried=None, span=None, currents=None, has_drive=False, complete=True
):
    """One population over a chunk of steps by the layer kernels, from the
    state ``carried`` over from an earlier chunk (None: a new run);
    ``span``: the longest gap a neuron may have by the chunk's end (the
    propagator table's rows less one; default: the chunk's steps); ``bias``
    from :func:`_layer_bias`; ``currents``: a drive over time ``[B, steps,
    n]`` (state dtype), which runs the dense path; ``has_drive``: a constant
    drive is part of ``bias`` (a silent source then leaves "dense" nothing
    to multiply: it runs "clock"). Returns its trains, counts
    ``[B, 4]``, the path that ran (``mode``, or the cost model's choice if
    ``"auto"``) and the state a next chunk continues from (its steps counted
    from this chunk's start: ``Simulation._carried``), and the marks of a
    lazy start (``complete`` False: ``snn.run.paths._run_layer``) or None."""
    full, kernel_bias = bias[0], bias[1]
    mode = mode or layer.pop.mode
    silent = source.total == 0  # driven by its bias and drive alone (e.g. a stack's analog input)
    if currents is not None:
        mode = "dense"
        if not silent:
            currents = currents + _dense_currents(source, layer, dtype)
    elif silent and has_drive and mode == "dense":
        mode = "clock"  # driven, no input to multiply: the dense path's clock-driven neurons
    elif mode == "auto" and (layer.proj is None or silent):
        mode = _choose_driven_mode(layer, full, source.n_steps)
    elif mode == "auto":
        mode = _choose_mode(layer, source, source.n_steps, dtype, _positive(bias))
    steps = source.n_steps
    before = 0 if span is None else span - steps  # _run_layer's table: before + steps rows
    out, state, kc, seen = _run_layer(
        layer, source, kernel_bias, currents, mode, steps, dtype, False, carried, before, complete
    )
    if mode == "dense":
        kc[:, 0] = _synops(source, layer.fan_out)
    # kc[:, 3], the kernels' overflow flags, is 0 (_run_layer ran until none overflowed): no background events
    return out, kc, mode, state, seen


def _stepped_modes(stage, trains, n_steps, recorded=frozenset()) -> dict:
    """Event or clock path for the populations of a stepped stage whose
    sources are all outside it (a merge), from their input activity in this
    run and the layers' cost model (``snn.run.paths``), per sample: a sweep of
    every neuron every step once most are touched most steps.

    A recorded population (names in ``recorded``) runs the clock path: its
    membrane is read at every step anyway, and a path chosen from activity
    would be chosen from the first chunk's, so that a run cut otherwise
    could take the other path, whose recorded membranes differ in the last
    bits (the event path reads a lazy neuron in closed form over its silent
    steps, the clock path steps it), breaking "cut anywhere, the same run"."""
    inside = set(stage.names)
    driven = {s.target.name for s in stage.plan.graph.sources}
    chosen = {}
    for pop in stage.populations:
        incoming = [p for p in stage.plan.graph.projections if p.target is pop]
        if any(p.source.name in inside for p in incoming) or pop.name in driven:
            continue  # activity known only as the run goes (or Poisson: the background rule)
        if pop.name in recorded:
            chosen[pop.name] = "clock"
            continue
        event = clock = synops = 0.0
        per_update = _NS_PER_EVENT_UPDATE["csr"][1]  # a stepped neuron: visited in random order
        for proj in incoming:
            source = trains[proj.source.name]
            kind = "conv" if proj.kind == "conv" else "csr"
            arriving = source.total / source.batch_size * proj.n_synapses / proj.source.n
            event += arriving * _NS_PER_SYNOP["event"][kind]
            clock += arriving * _NS_PER_SYNOP["clock"][kind]
            synops += arriving
        event += min(synops, n_steps * pop.n) * per_update
        clock += n_steps * pop.n * _NS_PER_CLOCK_UPDATE
        chosen[pop.name] = "clock" if clock < event else "event"
    return chosen


def _part(graph, component, incoming) -> Part:
    """The populations of ``component`` with their sources outside it as
    input populations (same names and sizes), the projections into them and
    their background sources."""
    names = {p.name for p in component}
    # a stepped population has no GEMM to run "dense" with: it runs "clock"
    component = [dataclasses.replace(p, mode="clock") if p.mode == "dense" else p for p in component]
    projections = [proj for p in component for proj in incoming[p.name]]
    outside = {}
    for proj in projections:
        if proj.source.name not in names:
            outside[proj.source.name] = dataclasses.replace(
                proj.source, neuron=None, bias=None, v_init=None, mode="auto", pool=None
            )
    sources = [(g, s) for g, s in enumerate(graph.sources) if s.target.name in names]
    return Part(
        graph.dt,
        graph.dtype,
        list(outside.values()) + list(component),
        projections,
        [s for _, s in sources],
        [g for g, _ in sources],
    )


def _components(graph) -> list[list]:
    """Strongly connected sets of neuron populations (through projections of
    any delay), in an order where every projection between two sets goes
    forward (Tarjan's algorithm, iterative); populations in graph order
    within a set."""
    pops = [p for p in graph.populations if not p.is_input]
    index = {p.name: k for k, p in enumerate(pops)}
    succ = [[] for _ in pops]
    for proj in graph.projections:
        if proj.source.name in index:
            succ[index[proj.source.name]].append(index[proj.target.name])
    order, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in range(len(pops)):
        if root in order:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                order[v] = low[v] = len(order)
                stack.append(v)
                on_stack.add(v)
            if i < len(succ[v]):
                work.append((v, i + 1))
                w = succ[v][i]
                if w not in order:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], order[w])
                continue
            if low[v] == order[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return [[pops[k] for k in component] for component in reversed(found)]
