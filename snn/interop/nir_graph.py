"""NIR export and import of graphs that are not chains: :class:`snn.Graph`
(branches, merges, recurrent edges, delays). Neuron nodes follow the
discretisation and the ``snn.*`` metadata of :mod:`snn.interop.nir`.

Export (``to_nir(graph)``)
--------------------------
- an input population: an ``Input`` node named after it (its shape);
- a neuron population: a neuron node named after it, as a stack's layer
  (``snn.*`` neuron metadata), plus ``snn.mode``, ``snn.order`` (its place
  in ``graph.populations``) and ``snn.poisson`` (see below);
- a projection, per delay group: ``[Delay] -> [Flatten] -> Linear`` (the
  synapses as a dense ``[n_target, n_source]`` matrix, repeated synapses
  summed) or ``-> Conv2d`` (a convolution projection), named after the
  projection (``"<name>.d<delay>"`` when it has several delays), metadata
  ``snn.name``, ``snn.order``, ``snn.delay``; ``Delay`` holds ``delay * dt``
  (time units) for every source neuron;
- a population's bias: the ``bias`` of its first incoming projection that
  can carry it (an ``Affine``; a ``Conv2d`` when the bias is uniform per
  channel); a bias with no such projection is refused (``NIRExportError``):
  NIR neuron nodes have no bias;
- ``Output`` nodes ``"<population>.output"`` for the neuron populations no
  projection leaves (all neuron populations when every one has outgoing
  projections);
- Poisson background: not in NIR. ``on_unsupported="warn"``: written as the
  target's ``snn.poisson`` metadata (rows ``[n_trains, rate Hz, weight]``),
  restored by :func:`from_nir`, ignored by other tools (a warning says so);
  ``"raise"``: ``NIRExportError``. Reset ``"none"``, subtraction,
  refractory periods and ``v_init`` as for stacks.

Import (graphs that are not one chain, or were written from a Graph)
--------------------------------------------------------------------
Populations: every ``Input`` node (spikes) and every neuron node. Each path
``source -> (Delay | Flatten)* -> projection -> (Delay | Flatten)* ->
neuron node`` is a projection (``Affine``/``Linear``: CSR synapses, a shared
weight when all are equal; ``Conv2d``/``AvgPool2d``/``SumPool2d``: a
convolution projection, never expanded). Several paths into one node add
(a merge); one node feeding several paths is a branch. A ``Delay`` of
``delay`` time units delays by ``delay / dt`` steps (an integer >= 0,
uniform or one per element: before the projection per source neuron, after
it per target neuron; summed along the path; one value on a convolution).
A cycle with no ``Delay`` node is accepted only as a neuron node onto itself
(snnTorch's ``RLeaky``/``RSynaptic`` export: ``lif -> w_rec -> lif``), with
a delay of one step (the previous step's spikes are fed back); any other
cycle needs a ``Delay`` node. Biases of all incoming projections (and a LIF's
``v_leak`` drive) add into the population's bias; a bias behind a ``Delay``
after the projection is refused (it would be missing in the first steps).
``LI``/``I``/``CubaLI`` (no firing) only feed ``Output`` nodes. Refused with
``NIRImportError`` naming the node: unknown node types, nested graphs, two
projections on one path, a neuron fed without a projection, a projection
into an ``Output``, dead ends and nodes on no path, delays that are not
whole steps.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import nir
import numpy as np

from ..model.graph import POP_MODES, ConvProjection, Graph, Population
from . import nir as _nir

__all__ = ["graph_from_nir", "graph_to_nir", "is_chain"]

_NEURONS = (nir.IF, nir.LIF, nir.CubaLIF, nir.I, nir.LI, nir.CubaLI)
_PROJECTIONS = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d)
_PASS = (nir.Flatten, nir.Delay)
DELAY_RULE = "a Delay of d*dt delays by d steps; a neuron node onto itself without a Delay: 1 step"


# -- export -----------------------------------------------------------------------------------


def graph_to_nir(graph: Graph, dt: float, on_unsupported: str) -> nir.NIRGraph:
    """``graph`` as a NIR graph (see the module docstring)."""
    gates = [p.name for p in graph.populations if p.pool is not None]
    if gates:
        raise ValueError(
            f"max-pool gate(s) {gates}: NIR {nir.__version__} has no max-pool node to export them to"
        )
    nodes: dict = {}
    edges: list = []
    for k, pop in enumerate(graph.populations):
        if pop.is_input:
            nodes[pop.name] = nir.Input(input_type=np.array(_shape(pop)), metadata={"snn.order": k})
        else:
            nodes[pop.name] = _population_node(graph, pop, k, dt, on_unsupported)
    carriers = _bias_carriers(graph)
    order = 0
    for proj in graph.projections:
        for g, delay in enumerate(proj.delays):
            name = proj.name if len(proj.delays) == 1 else f"{proj.name}.d{delay}"
            name = name if name not in nodes else f"{name}#{order}"  # two projections of one name
            carrier, bias = carriers.get(proj.target.name, (None, None))
            bias = bias if carrier is proj and g == 0 else None
            chain = _projection_nodes(proj, g, name, delay, dt, bias, order)
            order += 1
            for key, node in chain:
                _add_node(nodes, key, node)
            path = [proj.source.name, *(key for key, _ in chain), proj.target.name]
            edges += list(zip(path[:-1], path[1:], strict=True))
    for pop in _sinks(graph):
        key = f"{pop.name}.output"
        _add_node(nodes, key, nir.Output(output_type=np.array(_shape(pop))))
        edges.append((pop.name, key))
    metadata = {
        "snn.dt": float(dt),
        "snn.model": "Graph",
        "snn.discretisation": _nir.DISCRETISATION,
        "snn.fire": "v >= threshold (NIR: v > v_threshold; equal only at exact equality)",
        "snn.delays": DELAY_RULE,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _shape(pop: Population) -> tuple:
    return tuple(pop.shape) if pop.shape else (pop.n,)


def _add_node(nodes: dict, key: str, node) -> None:
    if key in nodes:
        raise _nir.NIRExportError(
            f"two NIR nodes would be named {key!r} (a population and a projection or output share a "
            "name); rename one"
        )
    nodes[key] = node


def _population_node(graph: Graph, pop: Population, k: int, dt: float, on_unsupported: str):
    where = f"population {pop.name!r}"
    _, node = _nir._export_neuron(pop, _shape(pop), dt, where, on_unsupported)
    node.metadata.update({"snn.order": k, "snn.mode": pop.mode})
    sources = [s for s in graph.sources if s.target is pop]
    if sources:
        text = (
            f"{where}: Poisson background ({len(sources)} source(s)) is not expressible in NIR; "
            "recorded as snn.poisson. Tools ignoring it run without that drive"
        )
        if on_unsupported == "raise":
            raise _nir.NIRExportError(text)
        warnings.warn(text, _nir.NIRExportWarning, stacklevel=4)
        node.metadata["snn.poisson"] = np.array([[s.n_trains, s.rate, s.weight] for s in sources], np.float64)
    return node


def _bias_carriers(graph: Graph) -> dict:
    """``{population name: (projection, bias)}`` for every population with a
    bias: the first incoming projection able to carry it (its first delay group)."""
    out: dict = {}
    for pop in graph.populations:
        if pop.is_input or not np.any(pop.bias != 0):
            continue
        for proj in graph.projections:
            if proj.target is pop and _can_carry(proj, pop):
                out[pop.name] = (proj, pop.bias.copy())
                break
        else:
            raise _nir.NIRExportError(
                f"population {pop.name!r}: its bias has no place in NIR (neuron nodes have no bias; it "
                "rides on an incoming projection: a dense one, or a convolution when the bias is "
                "uniform per channel)"
            )
    return out


def _can_carry(proj, pop: Population) -> bool:
    if not isinstance(proj, ConvProjection):
        return True
    per_channel = pop.bias.reshape(pop.shape[0], -1)
    return bool(np.all(per_channel == per_channel[:, :1]))


def _projection_nodes(proj, g: int, name: str, delay: int, dt: float, bias, order: int) -> list:
    """The NIR nodes of one delay group of ``proj``, source side first."""
    meta = {"snn.name": proj.name, "snn.order": order, "snn.delay": int(delay)}
    src, tgt = proj.source, proj.target
    chain = []
    if delay:
        chain.append((f"{name}.delay", nir.Delay(delay=np.full(_shape(src), delay * float(dt)))))
    if isinstance(proj, ConvProjection):
        return [*chain, (name, _conv_node(proj, bias, meta))]
    if tgt.shape is not None:
        raise _nir.NIRExportError(
            f"projection {proj.name!r}: a dense projection onto the image population {tgt.name!r} "
            f"{tgt.shape} (NIR has no reshape); give the target no shape, or use a convolution"
        )
    if src.shape is not None:
        chain.append(
            (f"{name}.flatten", nir.Flatten(input_type=np.array(src.shape), start_dim=0, end_dim=-1))
        )
    weight = _dense(proj, g)
    if bias is not None:
        return [*chain, (name, nir.Affine(weight=weight, bias=bias, metadata=meta))]
    return [*chain, (name, nir.Linear(weight=weight, metadata=meta))]


def _dense(proj, g: int) -> np.ndarray:
    """Delay group ``g`` of a CSR projection as ``[n_target, n_source]``
    float64 (float32 values; repeated synapses summed)."""
    _, rowptr, cols, w = proj.groups[g]
    dense = np.zeros((proj.target.n, proj.source.n))
    pre = np.repeat(np.arange(proj.source.n), np.diff(rowptr))
    np.add.at(dense, (cols, pre), np.float32(proj.weight) if w is None else w)
    return dense


def _conv_node(proj: ConvProjection, bias, meta: dict) -> nir.Conv2d:
    c_in, h, w, c_out, h_out, w_out, _, _, sy, sx, py, px, dy, dx, groups = (int(v) for v in proj.geom)
    per_channel = np.zeros(c_out) if bias is None else bias.reshape(c_out, -1)[:, 0].copy()
    node = nir.Conv2d(
        input_shape=(h, w),
        weight=np.asarray(proj.kernel, np.float64).copy(),
        stride=(sy, sx),
        padding=(py, px),
        dilation=(dy, dx),
        groups=groups,
        bias=per_channel,
        metadata=meta,
    )
    node.input_type = {"input": np.array([c_in, h, w])}  # nir 1.0.8 mis-derives them (see snn.interop.nir)
    node.output_type = {"output": np.array([c_out, h_out, w_out])}
    return node


def _sinks(graph: Graph) -> list:
    neurons = [p for p in graph.populations if not p.is_input]
    sinks = [p for p in neurons if not any(pr.source is p for pr in graph.projections)]
    return sinks or neurons


# -- import -----------------------------------------------------------------------------------


def is_chain(graph: nir.NIRGraph) -> bool:
    """True for one chain ``Input -> ... -> Output`` without a non-zero
    ``Delay`` (imported as a Network), unless written from a Graph."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if meta.get("snn.model") == "Graph":
        return False
    nodes = graph.nodes
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    succ, preds = _adjacency(graph)
    if len(inputs) != 1 or len(outputs) != 1 or any(len(v) > 1 for v in (*succ.values(), *preds.values())):
        return False
    seen, name = {inputs[0]}, inputs[0]
    while succ.get(name):
        name = succ[name][0]
        if name in seen:
            return False
        seen.add(name)
    delays = [n for n in nodes.values() if isinstance(n, nir.Delay)]
    if any(np.any(np.asarray(d.delay, dtype=np.float64) != 0) for d in delays if _numeric(d.delay)):
        return False
    return name == outputs[0] and len(seen) == len(nodes)


def _numeric(value) -> bool:
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _adjacency(graph: nir.NIRGraph) -> tuple[dict, dict]:
    succ: dict = {}
    preds: dict = {}
    for a, z in graph.edges:
        succ.setdefault(a, []).append(z)
        preds.setdefault(z, []).append(a)
    return succ, preds


@dataclass
class _Path:
    """One projection: ``source -> ... -> target`` through ``nodes``."""

    source: str
    target: str
    nodes: list
    pending: dict | None = None  # the projection, from the handlers of snn.interop.nir
    pre_delay: np.ndarray | float = 0.0  # steps per source element (flattened) or scalar
    post_delay: np.ndarray | float = 0.0  # steps per target element or scalar
    end_shape: tuple = ()  # at the target, after any Flatten
    proj_shape: tuple = ()  # at the projection's output
    implicit: bool = False  # a Delay-free self-loop: delay 1


@dataclass
class _Import:
    """State of a graph import: node shapes (NIR signal shapes), paths."""

    graph: nir.NIRGraph
    dt: float
    shapes: dict = field(default_factory=dict)
    paths: list = field(default_factory=list)

    def error(self, name: str, message: str) -> _nir.NIRImportError:
        return _nir.NIRImportError(f"node {name!r}: {message}")


def graph_from_nir(graph: nir.NIRGraph, dt: float, dtype) -> Graph:
    """The NIR graph as an :class:`snn.Graph` (see the module docstring)."""
    state = _Import(graph, dt)
    _check_nodes(state)
    walks = _walks(state)
    _resolve_shapes(state, walks)
    g = Graph(dt=dt, dtype=dtype)
    mapped = {}
    for name in _population_order(state):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            g.input(_size(state.shapes[name]), name=name)
        else:
            mapped[name] = _map_neuron(state, name)
    for name, (mp, _) in mapped.items():
        _readout_feeds_output_only(state, name, mp)
    _add_populations(state, g, mapped)
    for path in _projection_order(state):
        _connect(state, g, path, mapped.get(path.target))
    if not any(not p.is_input for p in g.populations):
        raise _nir.NIRImportError("the graph has no neuron node")
    return g


def _check_nodes(state: _Import) -> None:
    for name, node in state.graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise state.error(
                name,
                "a nested NIRGraph is not supported; flatten it into the outer graph (snnTorch's "
                "export with nirtorch >= 2 writes flat graphs: lif -> w_rec -> lif)",
            )
        if not isinstance(node, (nir.Input, nir.Output, *_NEURONS, *_PROJECTIONS, *_PASS)):
            supported = sorted(t.__name__ for t in (nir.Input, nir.Output, *_NEURONS, *_PROJECTIONS, *_PASS))
            raise state.error(
                name,
                f"node type {type(node).__name__} is not supported by from_nir for graphs (supported: "
                f"{', '.join(supported)})",
            )


def _is_source(node) -> bool:
    return isinstance(node, (nir.Input, *_NEURONS))


def _walks(state: _Import) -> list:
    """Every node sequence from a source (Input or neuron node) through
    projections, Flatten and Delay nodes to a neuron node or an Output."""
    nodes = state.graph.nodes
    succ, _ = _adjacency(state.graph)
    walks, reached = [], set()
    for source in nodes:
        if not _is_source(nodes[source]):
            continue
        reached.add(source)
        stack = [(source, [])]
        while stack:
            name, path = stack.pop()
            nexts = succ.get(name, [])
            if not nexts and name != source:
                raise _nir.NIRImportError(
                    f"node {name!r} has no outgoing edge: the path from {source!r} never reaches a "
                    "neuron node or an Output (missing edge?)"
                )
            for nxt in reversed(nexts):
                node = nodes[nxt]
                reached.add(nxt)
                if isinstance(node, nir.Input):
                    raise state.error(nxt, f"an Input node receives an edge from {name!r}")
                if _is_source(node) or isinstance(node, nir.Output):
                    walks.append((source, nxt, path))
                elif nxt in path:
                    raise state.error(nxt, "a cycle without a neuron node (a projection feeding itself)")
                else:
                    stack.append((nxt, [*path, nxt]))
    stray = [k for k in nodes if k not in reached]
    if stray:
        raise _nir.NIRImportError(
            f"nodes {stray} are not on any path from an Input or a neuron node (missing edge, or "
            "dangling nodes)"
        )
    return walks


def _resolve_shapes(state: _Import, walks: list) -> None:
    """NIR signal shapes of the sources (Input: its type; neuron: its
    parameters, else what its incoming paths deliver) and the paths' projections."""
    nodes = state.graph.nodes
    for name, node in nodes.items():
        if isinstance(node, nir.Input):
            state.shapes[name] = _nir._input_shape(node)
        elif isinstance(node, _NEURONS):
            shape = _parameter_shape(node)
            if shape is not None:
                state.shapes[name] = shape
    todo = list(walks)
    while todo:
        ready = [w for w in todo if w[0] in state.shapes]
        if not ready:
            names = sorted({w[0] for w in todo})
            raise state.error(names[0], "its size cannot be inferred (scalar parameters and no sized input)")
        for walk in ready:
            todo.remove(walk)
            path = _evaluate(state, *walk)
            if path is None:
                continue
            known = state.shapes.get(path.target)
            if known is None:
                state.shapes[path.target] = path.end_shape
            elif math.prod(known) != math.prod(path.end_shape):
                raise state.error(
                    path.target,
                    f"receives shape {path.end_shape} from {path.nodes[-1]!r} but has shape {known}",
                )
            state.paths.append(path)


def _parameter_shape(node) -> tuple | None:
    for key in ("v_threshold", "tau", "tau_mem", "r"):
        value = getattr(node, key, None)
        if value is not None and _numeric(value) and np.asarray(value).size > 1:
            return tuple(int(s) for s in np.asarray(value).shape)
    return None


def _evaluate(state: _Import, source: str, target: str, names: list) -> _Path | None:
    """Run the handlers of snn.interop.nir along one walk; None for a walk
    into an Output without a projection (nothing to simulate)."""
    nodes = state.graph.nodes
    b = _nir._Builder(state.shapes[source], state.dt, 0)
    path = _Path(source, target, names)
    for b.name in names:
        node = nodes[b.name]
        if isinstance(node, nir.Delay):
            steps = _steps(state, b.name, node, b.shape)
            if b.pending is None:
                path.pre_delay = path.pre_delay + steps
            else:
                path.post_delay = path.post_delay + steps
        elif isinstance(node, nir.Flatten):
            _nir._flatten(node, b)
        else:
            _nir._HANDLERS[type(node)](node, b)
            path.proj_shape = b.shape
    if isinstance(nodes[target], nir.Output):
        if b.pending is not None:
            raise state.error(
                b.pending["name"], "a projection into an Output: end the path with a neuron node"
            )
        return None
    if b.pending is None:
        raise state.error(
            target,
            f"{type(nodes[target]).__name__} receives {source!r} without a projection (our "
            "populations are joined by projections: Affine, Linear, Conv2d or pooling)",
        )
    path.pending, path.end_shape = b.pending, b.shape
    delays = [n for n in names if isinstance(nodes[n], nir.Delay)]
    path.implicit = source == target and not delays
    if np.any(path.post_delay != 0) and np.any(path.pending["bias"] != 0):
        raise state.error(
            path.pending["name"],
            "a bias behind a non-zero Delay would be missing in the first steps; our bias is "
            "constant (put the Delay before the projection)",
        )
    return path


def _steps(state: _Import, name: str, node: nir.Delay, shape: tuple) -> np.ndarray | float:
    """A Delay node in steps: a scalar, or one integer per element (flattened)."""
    try:
        delay = np.asarray(node.delay, dtype=np.float64) / state.dt
    except (TypeError, ValueError) as exc:
        raise state.error(name, f"delay is not numeric: {exc}") from exc
    steps = np.round(delay)
    if not np.all(np.isfinite(delay)) or np.any(np.abs(delay - steps) > 1e-9 * np.maximum(1.0, steps)):
        raise state.error(name, f"delay {node.delay!r} is not a whole number of steps of dt={state.dt:g}")
    if np.any(steps < 0):
        raise state.error(name, "delay must be >= 0")
    if steps.size == 1:
        return float(steps.reshape(-1)[0])
    if steps.size != math.prod(shape):
        raise state.error(name, f"delay has {steps.size} values but the signal has shape {shape}")
    return steps.reshape(-1)


def _population_order(state: _Import) -> list:
    """Sources in ``snn.order`` (graphs we wrote), else inputs first, then node order."""
    nodes = state.graph.nodes
    names = [k for k, n in nodes.items() if _is_source(n)]
    orders = [_nir._meta(nodes[k]).get("snn.order") for k in names]
    if all(o is not None for o in orders):
        return [k for _, k in sorted(zip((int(o) for o in orders), names, strict=True))]
    return sorted(names, key=lambda k: not isinstance(nodes[k], nir.Input))


def _size(shape: tuple):
    return shape if len(shape) == 3 else math.prod(shape)


def _map_neuron(state: _Import, name: str):
    """``(_Mapped, population shape)`` of a neuron node."""
    shape = state.shapes.get(name)
    if shape is None:
        raise state.error(name, "its size cannot be inferred (scalar parameters and no incoming path)")
    b = _nir._Builder(shape, state.dt, 0, name=name)
    mapped = _nir._from_metadata(state.graph.nodes[name], b) or _nir._from_euler(state.graph.nodes[name], b)
    images = [shape] + [
        p.proj_shape for p in state.paths if p.target == name and p.pending["kind"] != "linear"
    ]
    return mapped, next((tuple(s) for s in images if len(s) == 3), None)


def _readout_feeds_output_only(state: _Import, name: str, mapped) -> None:
    if mapped.neuron.threshold != math.inf:
        return
    for path in state.paths:
        if path.source == name:
            raise state.error(
                name,
                f"{type(state.graph.nodes[name]).__name__} does not fire and passes its membrane on "
                f"(to {path.target!r}); a non-firing node may only feed an Output",
            )


def _add_populations(state: _Import, g: Graph, mapped: dict) -> None:
    for name, (mp, image) in mapped.items():
        n = math.prod(state.shapes[name])
        bias = np.zeros(n) + mp.drive
        for path in state.paths:
            if path.target == name:
                bias = bias + path.pending["bias"]
        if mp.neuron.threshold == math.inf:  # a readout: membrane in the node's units
            bias = bias * mp.gain
        meta = _nir._meta(state.graph.nodes[name])
        mode = str(meta.get("snn.mode", "auto"))
        try:
            pop = g.population(
                image or n,
                mp.neuron,
                bias=bias,
                v_init=mp.v_init,
                name=name,
                mode=mode if mode in POP_MODES else "auto",
            )
            for n_trains, rate, weight in np.asarray(meta.get("snn.poisson", np.zeros((0, 3)))).reshape(
                -1, 3
            ):
                g.poisson_input(pop, int(n_trains), float(rate), float(weight))
        except (ValueError, TypeError) as exc:
            raise state.error(name, str(exc)) from exc


def _projection_order(state: _Import) -> list:
    """Paths in ``snn.order`` of their projection node (graphs we wrote), else found order."""
    nodes = state.graph.nodes
    orders = [_nir._meta(nodes[p.pending["name"]]).get("snn.order") for p in state.paths]
    if all(o is not None for o in orders):
        return [state.paths[k] for k in sorted(range(len(orders)), key=lambda k: (int(orders[k]), k))]
    return list(state.paths)


def _connect(state: _Import, g: Graph, path: _Path, mapped) -> None:
    """Add the projection of one path (gain of a readout target folded in)."""
    p = path.pending
    mp = mapped[0]
    gain = mp.gain if mp.neuron.threshold == math.inf else 1.0
    meta = _nir._meta(state.graph.nodes[p["name"]])
    name = str(meta.get("snn.name", p["name"]))
    if any(q.name == name for q in g.projections):  # a projection of several delays, a node per delay
        name = None  # a default name, made unique
    source, target = g[path.source], g[path.target]
    try:
        if p["kind"] == "linear":
            _connect_linear(g, source, target, p["weight"] * gain, path, name)
        else:
            _connect_conv(g, source, target, p, gain, path, name)
    except ValueError as exc:
        hint = (
            "; in NIR, close a cycle through several neuron nodes with a Delay node (only a neuron "
            "node onto itself gets an implicit delay of one step)"
            if "cycle" in str(exc)
            else ""
        )
        raise state.error(p["name"], f"{exc}{hint}") from exc


def _connect_linear(g: Graph, source, target, weight: np.ndarray, path: _Path, name: str) -> None:
    w = weight.astype(np.float32)
    post, pre = np.nonzero(w)
    order = np.lexsort((post, pre))
    pre, post = pre[order], post[order]
    rowptr = np.zeros(source.n + 1, np.int64)
    np.cumsum(np.bincount(pre, minlength=source.n), out=rowptr[1:])
    values = w[post, pre]
    delay = _synapse_delays(path, pre, post)
    shared = len(values) and np.all(values == values[0])
    g.connect(
        source, target, values[0] if shared else values, connectivity=(rowptr, post), delay=delay, name=name
    )


def _synapse_delays(path: _Path, pre: np.ndarray, post: np.ndarray):
    """One delay per synapse (or one for all) from the path's Delay nodes."""
    if path.implicit:
        return 1
    pre_d, post_d = np.asarray(path.pre_delay), np.asarray(path.post_delay)
    if pre_d.ndim == 0 and post_d.ndim == 0:
        return int(pre_d + post_d)
    d = (pre_d[pre] if pre_d.ndim else pre_d) + (post_d[post] if post_d.ndim else post_d)
    return np.asarray(d, np.int64)


def _connect_conv(g: Graph, source, target, p: dict, gain: float, path: _Path, name: str) -> None:
    pre, post = np.unique(np.ravel(path.pre_delay)), np.unique(np.ravel(path.post_delay))
    if len(pre) > 1 or len(post) > 1:
        raise ValueError("per-neuron delays on a convolution (it has one delay)")
    delay = 1 if path.implicit else int(pre[0] + post[0])
    if p["kind"] == "conv":
        g.conv(source, target, p["weight"] * gain, **p["kwargs"], delay=delay, name=name)
        return
    c = p["in_shape"][0]
    kh, kw = p["kernel"]
    value = 1.0 / (kh * kw) if p["kind"] == "avgpool" else 1.0
    kernel = np.full((c, 1, kh, kw), value * gain)
    g.conv(source, target, kernel, stride=p["stride"], groups=c, delay=delay, name=name)
