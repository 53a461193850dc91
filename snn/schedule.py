"""How a graph run is scheduled (DESIGN.md §6): which populations run one
after another over all steps, and which are stepped together.

A population outside every cycle whose input is one projection (of one
delay, CSR or convolution) or none (bias and drive only), with no Poisson
background and nothing recorded, runs as a layer (and a max-pool gate as
the stack's gate): over all ``T`` steps at once, from its source's complete
spike trains (shifted by the delay), by the layer kernels of feed-forward
stacks (event, clock or dense path, ``mode="auto"`` choosing by the same cost
model). Every other population is stepped by ``snn.stepped``: the
populations of one strongly connected set (a cycle closed by delays)
together, each other one alone, with their sources' spikes as inputs. The
sets run in an order where every source comes first. All paths compute the
same spikes as the clock-driven reference, so the schedule changes the speed
of a run, never its result.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ._validate import numba_threads
from .conv import conv_dense_rows, kernel_layout
from .graph_result import GraphResult
from .layers import csr_dense_rows
from .network import (
    _NS_PER_CLOCK_UPDATE,
    _NS_PER_EVENT_UPDATE,
    _NS_PER_SYNOP,
    _choose_driven_mode,
    _choose_mode,
    _run_layer,
    _run_maxpool,
    _synops,
)
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
    together by ``plan``, a :class:`snn.stepped.SteppedPlan`."""

    populations: tuple
    plan: SteppedPlan | None = None
    layer: object = None
    source: object = None
    delay: int = 0

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.populations]


def stages(graph, stepped=frozenset()) -> list[Stage]:
    """The stages of ``graph`` in run order (every population after its
    sources); ``stepped``: names of populations that must be stepped (their
    membrane is recorded at every step)."""
    incoming = {p.name: [] for p in graph.populations}
    for proj in graph.projections:
        incoming[proj.target.name].append(proj)
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
        else:
            out.append(Stage(tuple(component), plan=SteppedPlan(_part(graph, component, incoming))))
    return out


def run(graph, schedule, n_steps, given, batch, seed, record, progress, force_mode, drives) -> GraphResult:
    """Run ``schedule`` (from :func:`stages`) over ``n_steps``; arguments as
    checked by :meth:`snn.Graph.run` (``given``: input spikes by name)."""
    trains, counts, modes, recorded = dict(given), {}, {}, {}
    bar = progress_bar(progress, n_steps * len(schedule), graph.n_neurons * n_steps * batch)
    start = time.perf_counter()
    for stage in schedule:
        if stage.layer is not None:
            pop = stage.populations[0]
            if stage.source is None:
                source = SpikeTrains.empty(n_steps, batch, 0)
            else:
                source = _delayed(trains[stage.source.name], stage.delay)
            if pop.pool is not None:
                trains[pop.name], kc = _run_maxpool(pop.pool, source)
                none = np.zeros(batch, np.int64)  # no SynOps, no background
                counts[pop.name] = np.stack([none, kc[:, 1], kc[:, 2], none], axis=1)
                modes[pop.name] = "gate"
            else:
                trains[pop.name], counts[pop.name], modes[pop.name] = _run_as_layer(
                    graph.dtype, stage.layer, source, force_mode, drives.get(pop.name)
                )
            if bar is not None:
                bar.update(n_steps)
            continue
        inputs = {p.name: trains[p.name] for p in stage.plan.order if p.is_input}
        mine = [r for r in record if r[0] in stage.populations]
        chosen = _stepped_modes(stage, trains, n_steps)
        out = stage.plan.run(n_steps, inputs, batch, seed, mine, bar, force_mode, drives, chosen)
        trains.update(out["trains"])
        counts.update(out["counts"])
        modes.update(out["modes"])
        recorded.update(out["recorded"])
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    return GraphResult.assemble(graph, n_steps, trains, counts, modes, recorded, seconds)


def stepped_whole(graph) -> SteppedPlan:
    """Every population of ``graph`` stepped together (what a chunked run
    steps)."""
    incoming = {p.name: [] for p in graph.populations}
    for proj in graph.projections:
        incoming[proj.target.name].append(proj)
    return SteppedPlan(_part(graph, [p for p in graph.populations if not p.is_input], incoming))


class Simulation:
    """A graph run advanced chunk by chunk (made by :meth:`snn.Graph.start`),
    its state kept between chunks."""

    def __init__(self, graph, plan, n_steps, given, batch, seed, record, mode, drives, n_threads):
        self.graph, self.n_steps, self.n_threads = graph, n_steps, n_threads
        self._given = given
        self._run = SteppedRun(plan, n_steps, batch, seed, record, mode, drives)
        self.seconds = 0.0  # in advance, all chunks

    @property
    def t(self) -> int:
        """Steps done."""
        return self._run.t

    def advance(self, steps: int | None = None) -> Simulation:
        """Run ``steps`` more steps (default: to the end; fewer if the run
        ends first); returns the simulation."""
        if steps is None:
            steps = self.n_steps - self.t
        elif isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        start = time.perf_counter()
        with numba_threads(self.n_threads):
            self._run.advance(min(self.n_steps, self.t + int(steps)), self._given)
        self.seconds += time.perf_counter() - start
        return self

    def result(self) -> GraphResult:
        """Spikes, counts and recordings of the steps done (a run of
        :attr:`t` steps)."""
        t = self.t
        if t == 0:
            raise ValueError("no step has run yet: call advance() first")
        out = self._run.outputs()
        trains = {
            name: SpikeTrains(tr.tptr[:, : t + 1].copy(), tr.idx, tr.n) for name, tr in self._given.items()
        }
        trains.update(out["trains"])
        return GraphResult.assemble(
            self.graph, t, trains, out["counts"], out["modes"], out["recorded"], self.seconds
        )

    def __repr__(self):
        return f"Simulation(t={self.t} of {self.n_steps} steps)"


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
    layer of a stack (what ``snn.network``'s layer runner and cost model
    read); without a projection, a CSR layer of no input."""

    def __init__(self, pop, proj):
        self.pop, self.proj, self.neuron, self.n_out = pop, proj, pop.neuron, pop.n
        self._rows = {}  # dense_rows by dtype
        self.n_in, self.kind = (0, "csr") if proj is None else (proj.source.n, proj.kind)
        if proj is None:
            self.rowptr, self.cols, self.weights = _NO_ROWS
            self.fan_out = np.zeros(0, np.int64)
        elif proj.kind == "conv":
            self.geom, self.kernel_weights = proj.geom, kernel_layout(proj.kernel)
            self.fan_out = proj.fan_out()
        else:
            _, self.rowptr, self.cols, weights = proj.groups[0]
            if weights is None:  # one shared weight: the layer kernels read one per synapse
                weights = np.full(len(self.cols), proj.weight, np.float32)
                weights.flags.writeable = False
            self.weights = weights
            self.fan_out = np.diff(self.rowptr)
        self.n_synapses = int(self.fan_out.sum())

    def v_init_row(self, dtype):
        return self.pop.v_init.astype(dtype)  # a writeable copy, never written

    def dense_rows(self, dtype):
        """``[n_in, n_out]`` weights (the dense path's GEMM operand), built
        once per dtype."""
        key = np.dtype(dtype)
        if key not in self._rows:
            if self.kind == "conv":
                self._rows[key] = conv_dense_rows(self.geom, self.proj.kernel, key)
            else:
                self._rows[key] = csr_dense_rows(self.rowptr, self.cols, self.weights, self.n_out, key)
        return self._rows[key]


def _run_as_layer(dtype, layer, source, force_mode, drive):
    """One population over all steps by the layer kernels; returns its
    trains, counts ``[B, 4]`` and the path that ran."""
    pop = layer.pop
    bias = pop.bias if drive is None else pop.bias + drive  # summed in float64, as the stepped path does
    bias = np.atleast_2d(bias).astype(dtype)
    driven = bool(np.any(bias > 0))
    mode = force_mode or pop.mode
    if mode == "auto" and layer.proj is None:
        mode = _choose_driven_mode(layer, bias, source.n_steps)
    elif mode == "auto":
        mode = _choose_mode(layer, source, source.n_steps, dtype, driven)
    if np.all(bias == bias.flat[0]):  # shared: one value, no per-neuron reads
        bias = np.ascontiguousarray(bias[:1, :1])
    out, _, kc = _run_layer(layer, source, bias, None, mode, source.n_steps, dtype, settle=False)
    synops = kc[:, 0] if mode != "dense" else _synops(source, layer.fan_out)
    counts = np.stack([synops, kc[:, 1], kc[:, 2], np.zeros_like(synops)], axis=1)
    return out, counts, mode


def _stepped_modes(stage, trains, n_steps) -> dict:
    """Event or clock path for the populations of a stepped stage whose
    sources are all outside it (a merge), from their input activity in this
    run and the layers' cost model (``snn.network``), per sample: a sweep of
    every neuron every step once most are touched most steps."""
    inside = set(stage.names)
    driven = {s.target.name for s in stage.plan.graph.sources}
    chosen = {}
    for pop in stage.populations:
        incoming = [p for p in stage.plan.graph.projections if p.target is pop]
        if any(p.source.name in inside for p in incoming) or pop.name in driven:
            continue  # activity known only as the run goes (or Poisson: the background rule)
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


def _delayed(trains: SpikeTrains, delay: int) -> SpikeTrains:
    """``trains`` as they arrive ``delay`` steps later (spikes of the last
    ``delay`` steps fall beyond the run)."""
    if delay == 0:
        return trains
    tptr = np.zeros_like(trains.tptr)
    kept = max(trains.n_steps + 1 - delay, 0)
    tptr[:, delay : delay + kept] = trains.tptr[:, :kept]
    return SpikeTrains(tptr, trains.idx, trains.n)


def _part(graph, component, incoming) -> Part:
    """The populations of ``component`` with their sources outside it as
    input populations (same names and sizes), the projections into them and
    their background sources."""
    names = {p.name for p in component}
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
