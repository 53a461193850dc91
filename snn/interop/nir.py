"""NIR (Neuromorphic Intermediate Representation, ``nir`` >= 1.0) export and import.

``to_nir(network, dt)`` writes a :class:`snn.Network` (a chain) or an
:class:`snn.Graph` as a ``nir.NIRGraph``; ``from_nir(graph, dt)`` reads a NIR
graph that is one chain back as a Network, and any other graph (branches,
merges, recurrent edges, ``Delay`` nodes; snnTorch's ``RLeaky`` export) as a
Graph. This module holds the discretisation, the neuron mapping and the
chain; graphs are in :mod:`snn.interop.nir_graph` (nodes, delays, cycles).

Discretisation
--------------
NIR neurons are continuous-time ODEs. We map them with **forward Euler at
step dt, a spike being a unit pulse for one step, the synaptic current
advanced before the membrane** (the interpretation snnTorch's NIR export and
import use; snnTorch writes ``dt = 1e-4``). With ``I`` the node's input (the
output of the preceding Affine/Conv/pool node, bias included):

==========  ====================================  ========================================
NIR node    NIR ODE                               one step of ours
==========  ====================================  ========================================
LIF         tau v' = (v_leak - v) + r I           beta = 1 - dt / tau;  v <- beta v + g I
                                                  + (dt / tau) v_leak,  g = dt r / tau
IF          v' = r I                              beta = 1;  v <- v + g I,  g = dt r
CubaLIF     tau_syn I' = -I + w_in S;             alpha = 1 - dt / tau_syn, beta = 1 - dt / tau_mem;
            tau_mem v' = (v_leak - v) + r I       i <- alpha i + g_i S,  v <- beta v + g_v i
                                                  g_i = dt w_in / tau_syn,  g_v = dt r / tau_mem
LI, I,      as above, no firing                   the same with threshold inf (membrane
CubaLI                                            readout, last layer only)
fire        z = (v > v_threshold)                 v >= nextafter(v_threshold, +inf): in float64
                                                  state exactly ``>``
reset       v <- v_reset                          reset "zero" (v_reset = 0) or "value"
==========  ====================================  ========================================

Gains are folded exactly: a spiking layer runs in units ``v / g`` (threshold,
``v_reset`` and the ``v_leak`` drive divided by ``g``; weights untouched), a
readout (``LI``/``I``/``CubaLI``) gets ``g`` multiplied into its weights and
bias so that ``result.membrane`` is in the node's units. Per-neuron
``v_leak`` (LIF/LI) becomes a per-neuron bias ``v_leak / r``. Weights are
stored as float32 like every layer of ours (NIR float64 weights are rounded).

Export writes ``r = tau / dt`` (``IF``: ``r = 1 / dt``; CubaLIF
``w_in = tau_syn / dt``), so every gain is 1, ``v_leak = 0``, and our
per-step ``bias`` is the Affine/Conv2d ``bias`` unchanged. ``tau = dt / (1 - beta)``.

Metadata (exact round trip)
---------------------------
Every node we write carries ``metadata`` with keys ``snn.*``: neuron nodes
``snn.model``, ``snn.beta``, ``snn.alpha`` (CubaLIF), ``snn.threshold``,
``snn.reset``, ``snn.v_reset``, ``snn.refractory``, ``snn.v_init`` (when
non-zero), ``snn.dt``, and ``snn.differences`` (what a tool ignoring the
metadata will do differently, see below); projection nodes ``snn.layer``
(``Linear``, ``SparseLinear``, ``Conv2d``, ``AvgPool2d``), ``snn.mode``,
``snn.name``; the graph ``snn.dt``, ``snn.discretisation``, ``snn.fire``.
On import, a neuron node's metadata is used when the node's NIR parameters
equal those our export derives from it at the given ``dt`` (relative
tolerance 1e-12); otherwise the metadata is stale (the graph was edited, or
``dt`` differs) and the NIR parameters are used, with a warning.

What NIR (1.0.8) cannot express, and what ``to_nir`` does
---------------------------------------------------------
=========================  ====================================================================
ours                       export
=========================  ====================================================================
reset "subtract"           NIR resets to ``v_reset`` only: written as ``v_reset = 0`` +
                           metadata; ``NIRExportWarning`` (or ``NIRExportError`` with
                           ``on_unsupported="raise"``): other tools reset to zero and lose
                           the residue, so they fire less whenever a step's input
                           overshoots the threshold
reset "none"               the same (``v_reset = 0`` + metadata + warning / error): other
                           tools reset after every spike
Poisson background         (graphs) not in NIR: the target's metadata + warning / error
refractory > 0             not in NIR: metadata + warning / error (others never hold v)
v_init != 0                not in NIR (state starts at 0): metadata + warning / error
fire on ``v >= thr``       NIR fires on ``v > thr``: differs only when v equals the
                           threshold exactly; stated in the graph metadata, no warning
threshold inf              exported as LI / I / CubaLI (a non-firing membrane readout)
CubaLIF beta or alpha = 1  refused: tau would be infinite (``r``, ``w_in`` undefined)
MaxPool2d (spike gate)     refused: NIR 1.0.8 has no max pooling
conv bias varying within   refused: NIR Conv2d bias is per channel
a channel
=========================  ====================================================================

Import refuses (``NIRImportError`` naming the node): a node type we do not
know (``Scale``, ``Threshold``, ``Conv1d``, a nested ``NIRGraph``: flatten
it), missing edges and dangling nodes, two projections or two neurons in a
row, a neuron directly on the input, per-neuron ``tau``/``r``/thresholds
within a layer,
``tau < dt`` (Euler unstable), ``r <= 0``, CubaLIF ``v_leak != 0`` (a drive
into ``v`` that our current-based neuron cannot carry), pooling with padding,
and shape mismatches; for graphs also the refusals listed in
:mod:`snn.interop.nir_graph` (e.g. a cycle through several neuron nodes with
no ``Delay`` node, delays that are not whole steps).

Graphs from snnTorch's ``export_to_nir`` (its ``dt = 1e-4``: pass
``dt=1e-4``) import with the NIR meaning of each node. snnTorch writes
``v_reset = 0`` for every reset mechanism and ``tau = inf`` for ``beta = 1``:
a model trained with reset by subtraction therefore imports as reset to zero
(NIR carries nothing else), and ``beta = 1`` layers are refused (``tau``
infinite); import such models with :func:`snn.from_snntorch` instead.
snnTorch exports an ``RLeaky``/``RSynaptic`` as the cycle ``lif -> w_rec ->
lif`` without a ``Delay``: it imports as a Graph whose self-projection has
delay 1 (the previous step's spikes, as snnTorch computes them).
nir 1.0.8 mis-derives the types of grouped or non-square ``Conv2d`` nodes
from the weight shape; ``to_nir`` states them itself, and files holding
such nodes are read back with ``nir.read(path, type_check=False)``.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import nir
import numpy as np

from ..model.conv import AvgPool2d, Conv2d, MaxPool2d
from ..model.graph import Graph
from ..model.layers import Layer, Linear, SparseLinear
from ..model.network import Network
from ..model.neurons import Neuron

__all__ = ["NIRExportError", "NIRExportWarning", "NIRImportError", "from_nir", "register", "to_nir"]

DISCRETISATION = "forward-euler: beta = 1 - dt/tau, gain dt*r/tau, current before membrane"
_REL_TOL = 1e-12


class NIRExportError(ValueError):
    """A network (or option) that NIR cannot express and export refuses."""


class NIRImportError(ValueError):
    """A NIR graph (or node) that cannot be imported faithfully."""


class NIRExportWarning(UserWarning):
    """Export wrote something other tools will run differently (the exact
    difference is in the message and in the node's ``snn.differences``)."""


# -- export -----------------------------------------------------------------------------------


def to_nir(
    network: Network | Graph, dt: float | None = None, *, on_unsupported: str = "warn"
) -> nir.NIRGraph:
    """Export a feed-forward :class:`snn.Network` or an :class:`snn.Graph`
    (recurrent, delayed, branching) as a ``nir.NIRGraph``.

    Parameters
    ----------
    network : a Network of layers ``Linear``, ``SparseLinear`` (written
        dense), ``Conv2d``, ``AvgPool2d`` with ``IF``/``LIF``/``CubaLIF``
        neurons (a ``Flatten`` node is inserted where a convolution feeds a
        dense layer), or a Graph (see :mod:`snn.interop.nir_graph`:
        populations as nodes, projections as ``Linear``/``Affine``/``Conv2d``
        nodes, delays as ``Delay`` nodes, recurrence as cycles).
    dt : step length in the time unit of the written ``tau`` values; default
        1.0 for a Network (``tau`` in steps; snnTorch uses 1e-4), the
        graph's ``dt`` (seconds) for a Graph.
    on_unsupported : ``"warn"`` (default) or ``"raise"``: what to do with a
        reset by subtraction or ``"none"``, a refractory period, a non-zero
        ``v_init`` or Poisson background, which NIR cannot express (see the
        module docstring). ``"warn"`` writes the nearest NIR node, the exact
        parameters as metadata and emits :class:`NIRExportWarning` stating
        the difference.

    Returns
    -------
    ``nir.NIRGraph``: for a Network ``input -> {k}.<projection> -> {k}.<neuron>
    -> ... -> output``; for a Graph one node per population, one node chain
    per projection (and delay); parameters follow the module's
    discretisation and the metadata makes :func:`from_nir` rebuild the
    model exactly.
    """
    if not isinstance(network, (Network, Graph)):
        raise TypeError(f"to_nir exports an snn.Network or snn.Graph, got {type(network).__name__}")
    if dt is None:
        dt = network.dt if isinstance(network, Graph) else 1.0
    _check_dt(dt, NIRExportError)
    if on_unsupported not in ("warn", "raise"):
        raise ValueError(f"on_unsupported must be 'warn' or 'raise', got {on_unsupported!r}")
    if isinstance(network, Graph):
        from .nir_graph import graph_to_nir

        return graph_to_nir(network, float(dt), on_unsupported)
    first = network.layers[0]
    shape = tuple(first.in_shape) if isinstance(first, Conv2d) else (first.n_in,)
    nodes: dict = {"input": nir.Input(input_type=np.array(shape))}
    chain = ["input"]
    for k, layer in enumerate(network.layers):
        where = f"layer {k} ({network.layer_name(k)})"
        if isinstance(layer, MaxPool2d):
            raise NIRExportError(
                f"{where}: MaxPool2d (our spike gate) has no NIR counterpart in nir "
                f"{nir.version}; use AvgPool2d"
            )
        if not isinstance(layer, Layer):
            raise NIRExportError(f"{where}: {type(layer).__name__} is not supported")
        if len(shape) == 3 and not isinstance(layer, Conv2d):
            nodes[f"{k}.flatten"] = nir.Flatten(input_type=np.array(shape), start_dim=0, end_dim=-1)
            chain.append(f"{k}.flatten")
        proj_name, proj = _export_projection(layer, where)
        out_shape = tuple(layer.out_shape) if isinstance(layer, Conv2d) else (layer.n_out,)
        neuron_name, neuron = _export_neuron(layer, out_shape, dt, where, on_unsupported)
        nodes[f"{k}.{proj_name}"], nodes[f"{k}.{neuron_name}"] = proj, neuron
        chain += [f"{k}.{proj_name}", f"{k}.{neuron_name}"]
        shape = out_shape
    nodes["output"] = nir.Output(output_type=np.array(shape))
    chain.append("output")
    metadata = {
        "snn.dt": float(dt),
        "snn.discretisation": DISCRETISATION,
        "snn.fire": "v >= threshold (NIR: v > v_threshold; equal only at exact equality)",
    }
    return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(chain)), metadata=metadata)


def _export_projection(layer: Layer, where: str) -> tuple[str, nir.NIRNode]:
    meta = {"snn.layer": type(layer).__name__, "snn.mode": layer.mode}
    if layer.name is not None:
        meta["snn.name"] = str(layer.name)
    if isinstance(layer, Conv2d):
        return _export_conv(layer, where, meta)
    weight = layer.dense_rows(np.float32).T.copy()  # [n_out, n_in] float32, as stored
    if np.any(layer.bias != 0):
        return "affine", nir.Affine(weight=weight, bias=layer.bias.copy(), metadata=meta)
    return "linear", nir.Linear(weight=weight, metadata=meta)


def _export_conv(layer: Conv2d, where: str, meta: dict) -> tuple[str, nir.NIRNode]:
    c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups = (int(v) for v in layer.geom)
    per_channel = layer.bias.reshape(c_out, h_out * w_out)
    if np.any(per_channel != per_channel[:, :1]):
        raise NIRExportError(
            f"{where}: a bias varying within a channel is not expressible (NIR Conv2d "
            "has one bias per output channel)"
        )
    bias = per_channel[:, 0].copy()
    if isinstance(layer, AvgPool2d) and not bias.any() and (py, px, dy, dx) == (0, 0, 1, 1):
        return "avgpool", nir.AvgPool2d(
            kernel_size=np.array([kh, kw]), stride=np.array([sy, sx]), padding=np.array([0, 0]), metadata=meta
        )
    node = nir.Conv2d(
        input_shape=(h, w),
        weight=np.asarray(layer.weight).copy(),
        stride=(sy, sx),
        padding=(py, px),
        dilation=(dy, dx),
        groups=groups,
        bias=bias,
        metadata=meta,
    )
    # nir 1.0.8 derives the types from weight.shape[1] (C_in / groups when grouped) and weight.shape[2]
    # (the kernel height, used for both sides): state them ourselves
    node.input_type = {"input": np.array([c_in, h, w])}
    node.output_type = {"output": np.array([c_out, h_out, w_out])}
    return "conv", node


def _nir_params(neuron: Neuron, dt: float) -> tuple[str, dict]:
    """The NIR node type and scalar parameters our export writes for ``neuron``."""
    beta, alpha, thr = neuron.beta, neuron.alpha, neuron.threshold
    fires = thr != math.inf
    v_reset = {"v_threshold": thr, "v_reset": neuron.v_reset if neuron.reset != "subtract" else 0.0}
    if alpha is None and beta == 1.0:
        return ("IF", {"r": 1.0 / dt, **v_reset}) if fires else ("I", {"r": 1.0 / dt})
    if alpha is None:
        tau = dt / (1.0 - beta)
        params = {"tau": tau, "r": tau / dt, "v_leak": 0.0}
        return ("LIF", {**params, **v_reset}) if fires else ("LI", params)
    tau_mem, tau_syn = dt / (1.0 - beta), dt / (1.0 - alpha)
    params = {"tau_syn": tau_syn, "tau_mem": tau_mem, "r": tau_mem / dt, "v_leak": 0.0, "w_in": tau_syn / dt}
    return ("CubaLIF", {**params, **v_reset}) if fires else ("CubaLI", params)


def _export_neuron(layer: Layer, shape: tuple, dt: float, where: str, on_unsupported: str):
    neuron = layer.neuron
    if neuron.has_current and (neuron.beta == 1.0 or neuron.alpha == 1.0):
        raise NIRExportError(
            f"{where}: CubaLIF with beta={neuron.beta:g}, alpha={neuron.alpha:g}: NIR's "
            "CubaLIF has no non-decaying form (tau would be infinite)"
        )
    differences = _differences(layer)
    for text in differences:
        if on_unsupported == "raise":
            raise NIRExportError(f"{where}: {text}")
        warnings.warn(f"{where}: {text}", NIRExportWarning, stacklevel=3)
    kind, params = _nir_params(neuron, dt)
    meta = {
        "snn.model": neuron.name,
        "snn.beta": neuron.beta,
        "snn.threshold": neuron.threshold,
        "snn.reset": neuron.reset,
        "snn.v_reset": neuron.v_reset,
        "snn.refractory": neuron.refractory,
        "snn.dt": float(dt),
    }
    if neuron.alpha is not None:
        meta["snn.alpha"] = neuron.alpha
    if np.any(layer.v_init != 0):
        meta["snn.v_init"] = layer.v_init.copy()
    if differences:
        meta["snn.differences"] = "; ".join(differences)
    arrays = {key: np.full(shape, value, np.float64) for key, value in params.items()}
    return kind.lower(), getattr(nir, kind)(**arrays, metadata=meta)


def _differences(layer: Layer) -> list[str]:
    """What a tool that ignores our metadata will run differently."""
    neuron, out = layer.neuron, []
    if neuron.reset == "subtract" and neuron.threshold != math.inf:
        out.append(
            f"reset by subtraction (v <- v - {neuron.threshold:g}) is not expressible in NIR "
            f"{nir.version} (v <- v_reset only); written as v_reset=0 with metadata snn.reset="
            "'subtract'. Tools ignoring it reset to 0 and drop the residue v - threshold, so they "
            "fire less whenever a step overshoots the threshold"
        )
    if neuron.reset == "none" and neuron.threshold != math.inf:
        out.append(
            f"reset 'none' (the membrane kept after a spike) is not expressible in NIR {nir.version} "
            "(v <- v_reset only); written as v_reset=0 with metadata snn.reset='none'. Tools ignoring "
            "it reset to 0 after every spike, so they fire less"
        )
    if neuron.refractory:
        out.append(
            f"refractory period of {neuron.refractory} steps is not expressible in NIR; recorded "
            "as snn.refractory. Tools ignoring it do not hold v after a spike"
        )
    if np.any(layer.v_init != 0):
        out.append(
            "initial membrane v_init != 0 is not expressible in NIR (state starts at 0); "
            "recorded as snn.v_init"
        )
    return out


# -- import -----------------------------------------------------------------------------------


@dataclass
class _Builder:
    """State of the walk along the chain: signal shape, the projection waiting
    for its neurons, the layers built."""

    shape: tuple
    dt: float
    n_nodes: int
    pending: dict | None = None
    layers: list = field(default_factory=list)
    index: int = 0
    name: str = ""

    def error(self, message: str) -> NIRImportError:
        return NIRImportError(f"node {self.name!r}: {message}")

    def start_projection(self, what: str, **pending):
        if self.pending is not None:
            raise self.error(
                f"{what} follows {self.pending['name']!r} without neurons in between; two "
                "projections in a row are not supported (our layers are a projection onto "
                "neurons)"
            )
        self.pending = {"name": self.name, **pending}

    def need_image(self, what: str) -> tuple:
        if len(self.shape) != 3:
            raise self.error(f"{what} needs a (C, H, W) input, but the signal has shape {self.shape}")
        return self.shape


def from_nir(
    graph: nir.NIRGraph, dt: float | None = None, *, dtype=np.float64, as_graph: bool = False
) -> Network | Graph:
    """Import a NIR graph as a :class:`snn.Network` (one chain) or an
    :class:`snn.Graph` (anything else: branches, merges, recurrent edges,
    delays; and graphs written from a Graph).

    Parameters
    ----------
    graph : a ``nir.NIRGraph``, or the path (``str`` or ``os.PathLike``) of a
        NIR file, read with ``nir.read(path, type_check=False)`` (nir 1.0.8
        mis-derives grouped convolutions' types; the import checks every
        shape itself). A chain ``Input -> (projection -> neuron)+ -> Output``
        (projections ``Affine``, ``Linear``, ``Conv2d``, ``AvgPool2d``,
        ``SumPool2d``; neurons ``IF``, ``LIF``, ``CubaLIF``; ``I``, ``LI``,
        ``CubaLI`` as a last-layer membrane readout; ``Flatten`` and zero
        ``Delay`` anywhere) imports as a Network. Other graphs follow the
        rules of :mod:`snn.interop.nir_graph` (e.g. snnTorch's export of
        ``RLeaky``: ``lif -> w_rec -> lif``, the previous step's spikes fed back).
    dt : step length for the forward-Euler mapping, in the unit of the
        graph's ``tau`` values (snnTorch's export: 1e-4). Default: the
        graph's ``snn.dt`` metadata (graphs written by :func:`to_nir`).
    dtype : state precision of the network.
    as_graph : import a chain as a Graph too.

    Returns
    -------
    Network whose spikes for an input of shape ``[T, B, prod(input shape)]``
    (channel-first flattened) follow the module's discretisation, or a Graph
    (``dt`` seconds per step) with one input population per ``Input`` node
    and one population per neuron node, named after the nodes
    (``graph.run(T, inputs={"input": spikes})``); exactly the exported
    model for graphs written by :func:`to_nir`.

    Raises
    ------
    NIRImportError naming the node and what is not supported, or a file that
    is not a NIR graph. TypeError: ``graph`` is neither a graph nor a path.
    FileNotFoundError: no file at the path.
    """
    graph = _graph_of(graph)
    if dt is None:
        dt = _metadata_dt(graph)
    _check_dt(dt, NIRImportError)
    _check_edges(graph)
    from .nir_graph import graph_from_nir, is_chain

    if as_graph or not is_chain(graph):
        return graph_from_nir(graph, float(dt), dtype)
    input_name, chain = _chain(graph)
    shape = _input_shape(graph.nodes[input_name])
    b = _Builder(shape, dt, len(chain))
    for b.index, (b.name, node) in enumerate(chain):
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise b.error(
                f"node type {type(node).__name__} is not supported by from_nir (supported: "
                f"{', '.join(sorted(t.__name__ for t in _HANDLERS))}); see snn.interop.nir.register"
            )
        handler(node, b)
    if b.pending is not None:
        raise NIRImportError(f"node {b.pending['name']!r} is not followed by neurons before the Output")
    if not b.layers:
        raise NIRImportError("the graph has no layers")
    return Network(b.layers, dtype=dtype)


def _graph_of(graph) -> nir.NIRGraph:
    """``graph`` itself, or the graph read from the NIR file at that path."""
    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, os.PathLike)):
        if not os.path.isfile(graph):
            raise FileNotFoundError(f"no NIR file at {os.fspath(graph)!r}")
        try:
            read = nir.read(graph, type_check=False)
        except Exception as exc:  # noqa: BLE001 -- h5py and nir raise many kinds; all mean "not a NIR file"
            raise NIRImportError(f"{os.fspath(graph)}: not a readable NIR file ({exc})") from exc
        if not isinstance(read, nir.NIRGraph):
            raise NIRImportError(f"{os.fspath(graph)}: holds a {type(read).__name__}, not a NIR graph")
        return read
    raise TypeError(
        "from_nir takes a nir.NIRGraph or the path of a NIR file (str or os.PathLike), "
        f"got {type(graph).__name__}"
    )


def _metadata_dt(graph: nir.NIRGraph) -> float:
    """The step length our export stored in the graph's metadata."""
    dt = graph.metadata.get("snn.dt") if isinstance(graph.metadata, dict) else None
    if dt is None:
        raise NIRImportError(
            "from_nir needs dt= (the step length in the unit of the graph's tau "
            "values; graphs exported by snnTorch use dt=1e-4)"
        )
    try:
        return float(np.asarray(dt, dtype=np.float64).item())
    except (TypeError, ValueError) as exc:
        raise NIRImportError(f"the graph's metadata 'snn.dt' is not a number ({dt!r}); pass dt=") from exc


def _input_shape(node) -> tuple:
    """The Input node's shape: positive integers."""
    try:
        value = np.asarray(node.input_type["input"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise NIRImportError(f"the Input node has no readable input_type ({exc})") from exc
    if (
        value.size == 0
        or value.dtype.kind not in "iuf"
        or np.any(value != np.round(value))
        or np.any(value < 1)
    ):
        raise NIRImportError(f"the Input node's shape must be positive integers, got {value.tolist()}")
    return _shape(value)


def _check_edges(graph: nir.NIRGraph) -> None:
    for a, z in graph.edges:
        for end in (a, z):
            if end not in graph.nodes:
                raise NIRImportError(f"edge ({a!r}, {z!r}) refers to node {end!r}, which is not in the graph")


def _chain(graph: nir.NIRGraph) -> tuple[str, list]:
    """The nodes between the single Input and the single Output, in order."""
    nodes = graph.nodes
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(
            f"the graph must have exactly one Input and one Output node, got inputs "
            f"{inputs} and outputs {outputs}"
        )
    succ: dict = {}
    preds: dict = {}
    for a, z in graph.edges:
        succ.setdefault(a, []).append(z)
        preds.setdefault(z, []).append(a)
    for name in nodes:
        for label, table in (("outgoing", succ), ("incoming", preds)):
            if len(table.get(name, [])) > 1:
                raise NIRImportError(
                    f"node {name!r} has {len(table[name])} {label} edges "
                    f"{table[name]}; only a single chain Input -> ... -> Output "
                    "(no branches, no recurrence) can be imported"
                )
    chain, seen, name = [], {inputs[0]}, inputs[0]
    while name != outputs[0]:
        if not succ.get(name):
            raise NIRImportError(
                f"node {name!r} has no outgoing edge: the chain from {inputs[0]!r} never "
                f"reaches the Output {outputs[0]!r} (missing edge?)"
            )
        name = succ[name][0]
        if name in seen:
            raise NIRImportError(
                f"node {name!r} is reached twice: the graph is recurrent, and our Network "
                "is a feed-forward stack"
            )
        seen.add(name)
        if name != outputs[0]:
            chain.append((name, nodes[name]))
    stray = [k for k in nodes if k not in seen]
    if stray:
        raise NIRImportError(
            f"nodes {stray} are not on the chain from {inputs[0]!r} to {outputs[0]!r} "
            "(missing edge, or a recurrent loop)"
        )
    return inputs[0], chain


# -- import handlers: projections -------------------------------------------------------------


def _affine(node, b: _Builder):
    weight = _array(node.weight, b, "weight")
    if weight.ndim != 2:
        raise b.error(f"weight must be 2-D [out, in], got shape {weight.shape}")
    if b.shape != (weight.shape[1],):
        raise b.error(
            f"weight expects {weight.shape[1]} inputs but receives shape {b.shape}"
            + ("; add a Flatten node before it" if len(b.shape) > 1 else "")
        )
    bias = _array(node.bias, b, "bias") if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
    if bias.shape not in ((), (1,), (weight.shape[0],)):
        raise b.error(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
    b.start_projection(
        type(node).__name__,
        kind="linear",
        weight=weight,
        bias=np.broadcast_to(bias, (weight.shape[0],)).copy(),
        meta=_meta(node),
    )
    b.shape = (weight.shape[0],)


def _conv2d(node: nir.Conv2d, b: _Builder):
    c_in = b.need_image("Conv2d")[0]
    weight = _array(node.weight, b, "weight")
    groups = int(node.groups)
    if weight.ndim != 4 or weight.shape[1] * groups != c_in:
        raise b.error(
            f"weight of shape {weight.shape} with groups={groups} does not take {c_in} input "
            f"channels (signal shape {b.shape})"
        )
    kernel = weight.shape[2:]
    stride, dilation = _pair(node.stride, b, "stride"), _pair(node.dilation, b, "dilation")
    padding = _padding(node.padding, kernel, stride, dilation, b)
    bias = _array(node.bias, b, "bias")
    if bias.shape not in ((), (1,), (weight.shape[0],)):
        raise b.error(f"bias must have one value per output channel ({weight.shape[0]}), got {bias.shape}")
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    try:
        probe = Conv2d(b.shape, weight.shape[0], kernel, weight=weight, **kwargs)
    except ValueError as exc:
        raise b.error(str(exc)) from exc
    b.start_projection(
        "Conv2d",
        kind="conv",
        in_shape=b.shape,
        weight=weight,
        kwargs=kwargs,
        bias=np.repeat(np.broadcast_to(bias, (weight.shape[0],)), probe.out_shape[1] * probe.out_shape[2]),
        meta=_meta(node),
    )
    b.shape = probe.out_shape


def _pool(node, b: _Builder):
    name = type(node).__name__
    shape = b.need_image(name)
    kernel, stride = _pair(node.kernel_size, b, "kernel_size"), _pair(node.stride, b, "stride")
    if _pair(node.padding, b, "padding") != (0, 0):
        raise b.error(f"{name} with padding is not supported (its border semantics are not fixed by NIR)")
    try:
        probe = AvgPool2d(shape, kernel, stride)
    except ValueError as exc:
        raise b.error(str(exc)) from exc
    b.start_projection(
        name,
        kind="avgpool" if name == "AvgPool2d" else "sumpool",
        in_shape=shape,
        kernel=kernel,
        stride=stride,
        bias=np.zeros(probe.n_out),
        meta=_meta(node),
    )
    b.shape = probe.out_shape


def _flatten(node: nir.Flatten, b: _Builder):
    from nir.ir.utils import calc_flatten_output

    b.shape = _shape(calc_flatten_output(list(b.shape), int(node.start_dim), int(node.end_dim)))


def _delay(node: nir.Delay, b: _Builder):
    if np.any(_array(node.delay, b, "delay") != 0):
        raise b.error(
            "a non-zero Delay is not supported: in our Network spikes reach the next layer in "
            "the same step (use snn.Graph projections with integer delays)"
        )


def _subgraph(node, b: _Builder):
    raise b.error(
        "a nested NIRGraph is not supported; flatten it into the outer graph (snnTorch's export "
        "with nirtorch >= 2 writes its RLeaky/RSynaptic flat: lif -> w_rec -> lif)"
    )


# -- import handlers: neurons -----------------------------------------------------------------


@dataclass
class _Mapped:
    """A NIR neuron node in our terms: the model, the factor ``g`` between
    its membrane and ours, a per-neuron drive (v_leak term, our units)."""

    neuron: Neuron
    gain: float = 1.0
    drive: np.ndarray | float = 0.0
    v_init: np.ndarray | float = 0.0
    exact: bool = False


def _neuron_node(node, b: _Builder):
    if b.pending is None:
        raise b.error(
            f"{type(node).__name__} must follow an Affine, Linear, Conv2d or pooling node (our "
            "layers are a projection onto neurons); neurons on the input or two neuron nodes in a "
            "row are not supported"
        )
    mapped = _from_metadata(node, b) or _from_euler(node, b)
    p, b.pending = b.pending, None
    meta = p["meta"]
    bias = p["bias"] + mapped.drive
    weight = p.get("weight")
    readout = mapped.neuron.threshold == math.inf
    if readout and b.index != b.n_nodes - 1:
        raise b.error(
            f"{type(node).__name__} does not fire and passes its membrane on; only a last node "
            "(membrane readout) is supported"
        )
    if readout and mapped.gain != 1.0:  # membrane in the node's units: fold g into weights and bias
        bias = bias * mapped.gain
        weight = None if weight is None else weight * mapped.gain
        if p["kind"] in ("avgpool", "sumpool"):
            raise b.error("a pooling readout with gain != 1 is not supported")
    # our export omits snn.name for unnamed layers; foreign graphs: name the layer after its neuron node
    name = str(meta["snn.name"]) if "snn.name" in meta else (None if "snn.layer" in meta else b.name)
    common = {"name": name, "mode": str(meta.get("snn.mode", "auto"))}
    try:
        layer = _make_layer(p, mapped.neuron, weight, common, meta)
        layer.bias = layer._per_neuron("bias", bias)
        layer.v_init = layer._per_neuron("v_init", mapped.v_init)
    except (ValueError, TypeError) as exc:
        raise b.error(str(exc)) from exc
    b.layers.append(layer)


def _make_layer(p: dict, neuron: Neuron, weight, common: dict, meta: dict) -> Layer:
    if p["kind"] == "linear":
        if meta.get("snn.layer") == "SparseLinear":
            return SparseLinear.from_dense(weight, neuron, **common)
        return Linear(weight.shape[1], weight.shape[0], neuron, weight=weight, **common)
    if p["kind"] == "conv" and meta.get("snn.layer") == "AvgPool2d":
        pool = AvgPool2d(
            p["in_shape"],
            weight.shape[2:],
            p["kwargs"]["stride"],
            neuron,
            padding=p["kwargs"]["padding"],
            dilation=p["kwargs"]["dilation"],
            **common,
        )
        if np.array_equal(pool.weight, weight):
            return pool
    if p["kind"] == "conv":
        return Conv2d(
            p["in_shape"], weight.shape[0], weight.shape[2:], neuron, weight=weight, **p["kwargs"], **common
        )
    if p["kind"] == "avgpool":
        return AvgPool2d(p["in_shape"], p["kernel"], p["stride"], neuron, **common)
    c = p["in_shape"][0]  # SumPool2d: a depthwise convolution of ones
    return Conv2d(
        p["in_shape"],
        c,
        p["kernel"],
        neuron,
        stride=p["stride"],
        groups=c,
        weight=np.ones((c, 1) + p["kernel"]),
        **common,
    )


def _from_metadata(node, b: _Builder) -> _Mapped | None:
    """Our exact neuron from the node's ``snn.*`` metadata, if present and
    consistent with the node's NIR parameters at this dt."""
    meta = _meta(node)
    if "snn.model" not in meta:
        return None
    try:
        alpha = float(meta["snn.alpha"]) if "snn.alpha" in meta else None
        neuron = Neuron(
            float(meta["snn.beta"]),
            alpha,
            float(meta["snn.threshold"]),
            str(meta["snn.reset"]),
            float(meta["snn.v_reset"]),
            int(meta["snn.refractory"]),
            str(meta["snn.model"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        warnings.warn(
            f"node {b.name!r}: unreadable snn metadata ({exc}); using the NIR parameters", stacklevel=4
        )
        return None
    kind, params = _nir_params(neuron, b.dt)
    consistent = kind == type(node).__name__ and all(
        np.allclose(_array(getattr(node, key), b, key), value, rtol=_REL_TOL, atol=0.0)
        for key, value in params.items()
    )
    if not consistent:
        warnings.warn(
            f"node {b.name!r}: its snn metadata does not match its NIR parameters at dt={b.dt:g} "
            "(graph edited after export, or another dt); using the NIR parameters",
            stacklevel=4,
        )
        return None
    return _Mapped(neuron, v_init=np.asarray(meta.get("snn.v_init", 0.0), np.float64), exact=True)


def _from_euler(node, b: _Builder) -> _Mapped:
    """The forward-Euler mapping of the module docstring."""
    kind = type(node).__name__
    dt = b.dt
    fires = kind in ("IF", "LIF", "CubaLIF")
    r = _uniform(node.r, b, "r")
    if not r > 0:
        raise b.error(f"r must be > 0, got {r:g}")
    drive: np.ndarray | float = 0.0
    alpha = None
    if kind in ("IF", "I"):
        beta, gain = 1.0, dt * r
    elif kind in ("LIF", "LI"):
        tau = _tau(node.tau, b, "tau")
        beta, gain = 1.0 - dt / tau, dt * r / tau
        drive = _param(node.v_leak, b, "v_leak") / r  # (dt / tau) v_leak in units of v / g
    else:
        tau_syn, tau_mem = _tau(node.tau_syn, b, "tau_syn"), _tau(node.tau_mem, b, "tau_mem")
        w_in = _uniform(node.w_in, b, "w_in")
        if np.any(_param(node.v_leak, b, "v_leak") != 0):
            raise b.error(
                "CubaLIF with v_leak != 0 drives v directly, which our current-based neuron (bias "
                "and input enter the current) cannot express"
            )
        if not w_in > 0:
            raise b.error(f"w_in must be > 0, got {w_in:g}")
        alpha, beta = 1.0 - dt / tau_syn, 1.0 - dt / tau_mem
        gain = (dt * w_in / tau_syn) * (dt * r / tau_mem)
    threshold, v_reset, reset = math.inf, 0.0, "zero"
    if fires:
        v_thr = _uniform(node.v_threshold, b, "v_threshold")
        reset_value = _uniform(node.v_reset, b, "v_reset")
        if not math.isfinite(v_thr) or v_thr <= reset_value or v_thr <= 0:
            raise b.error(f"v_threshold={v_thr:g} must be finite, > 0 and above v_reset={reset_value:g}")
        threshold = float(np.nextafter(v_thr / gain, math.inf))  # NIR fires on v > v_threshold
        v_reset = reset_value / gain
        reset = "zero" if v_reset == 0.0 else "value"
    try:
        neuron = Neuron(
            beta,
            alpha,
            threshold,
            reset,
            v_reset,
            0,
            kind if kind in ("IF", "LIF", "CubaLIF") else {"I": "IF", "LI": "LIF", "CubaLI": "CubaLIF"}[kind],
        )
    except (ValueError, TypeError) as exc:
        raise b.error(str(exc)) from exc
    return _Mapped(neuron, gain=gain if not fires else 1.0, drive=drive)


# -- registry -----------------------------------------------------------------------------------

_HANDLERS: dict[type, Callable] = {
    nir.Affine: _affine,
    nir.Linear: _affine,
    nir.Conv2d: _conv2d,
    nir.AvgPool2d: _pool,
    nir.SumPool2d: _pool,
    nir.Flatten: _flatten,
    nir.Delay: _delay,
    nir.NIRGraph: _subgraph,
    nir.IF: _neuron_node,
    nir.LIF: _neuron_node,
    nir.CubaLIF: _neuron_node,
    nir.I: _neuron_node,
    nir.LI: _neuron_node,
    nir.CubaLI: _neuron_node,
}


def register(node_type: type, handler: Callable) -> None:
    """Teach :func:`from_nir` a NIR node type (matched exactly).
    ``handler(node, builder)`` updates the builder like the built-in ones."""
    _HANDLERS[node_type] = handler


# -- helpers -----------------------------------------------------------------------------------


def _check_dt(dt, error: type):
    if (
        isinstance(dt, bool)
        or not isinstance(dt, (int, float, np.integer, np.floating))
        or not math.isfinite(dt)
        or dt <= 0
    ):
        raise error(f"dt must be a finite number > 0, got {dt!r}")


def _meta(node) -> dict:
    return node.metadata if isinstance(node.metadata, dict) else {}


def _array(value, b: _Builder, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise b.error(f"{name} is not numeric: {exc}") from exc


def _param(value, b: _Builder, name: str) -> np.ndarray:
    """A per-neuron parameter: a scalar/size-1 array or one of the signal's shape, flattened."""
    arr = _array(value, b, name)
    if arr.size == 1:
        return np.full(int(np.prod(b.shape)), float(arr.reshape(-1)[0]))
    if arr.shape != b.shape:
        raise b.error(f"{name} has shape {arr.shape} but the signal reaching it has shape {b.shape}")
    return arr.reshape(-1)


def _uniform(value, b: _Builder, name: str) -> float:
    arr = _param(value, b, name)
    if np.any(arr != arr[0]):
        raise b.error(f"per-neuron {name} values are not supported: a layer's neurons share one model")
    return float(arr[0])


def _tau(value, b: _Builder, name: str) -> float:
    tau = _uniform(value, b, name)
    if not (math.isfinite(tau) and tau >= b.dt):
        raise b.error(
            f"{name}={tau:g} must be finite and >= dt={b.dt:g} (forward Euler gives a decay "
            "1 - dt/tau in [0, 1) only then)"
        )
    return tau


def _shape(value) -> tuple:
    return tuple(int(s) for s in np.asarray(value).reshape(-1))


def _pair(value, b: _Builder, name: str) -> tuple:
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2 or np.any(arr != np.round(arr)):
        raise b.error(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(arr[0]), int(arr[1])


def _padding(value, kernel, stride, dilation, b: _Builder) -> tuple:
    if isinstance(value, (str, bytes)):
        value = value.decode() if isinstance(value, bytes) else value
        if value == "valid":
            return (0, 0)
        span = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        if value == "same" and stride == (1, 1) and all(s % 2 == 0 for s in span):
            return (span[0] // 2, span[1] // 2)
        raise b.error(
            f"padding={value!r} is supported as 'valid', or 'same' with stride 1 and a symmetric "
            "(odd) effective kernel"
        )
    return _pair(value, b, "padding")
