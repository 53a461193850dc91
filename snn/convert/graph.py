"""Conversion of models that are not chains (residual adds, channel
concatenations) to an event-driven :class:`snn.Graph`.

The torch.fx graph of the model is read node by node into symbolic values:

- a **population**: the output of a ReLU, spikes of IF neurons;
- an **expression**: a sum of *terms* plus a constant bias; a term is a
  population (or the analog input) seen through pooling / flatten ops, at
  most one Linear or Conv2d, and a per-channel factor (a folded BatchNorm);
- a **concatenation** along channels: a list of parts, never materialised.

Linear ops distribute over sums and concatenations (a convolution of a
concatenation is one convolution per part, its weight cut along the input
channels; a BatchNorm of a concatenation is one per part). A ReLU of an
expression becomes a population fed by one projection per term (a residual
add is two projections into one population); a ReLU of a concatenation is
one per part, so the concatenated population is the union of its parts (no
extra layer of spikes); a ReLU of a population is the population.

Normalisation (data-based, per population): ``lambda_P`` is the scale of
ReLU ``P``'s activation on the calibration data (a percentile, or the code
of least error at a given T: :func:`snn.convert.convert`; per channel if asked);
every projection from population ``a`` into ``b`` has weights
``W * lambda_a / lambda_b`` (per source and target channel), the target's
bias is ``b / lambda_b``, and the analog input's scale is 1. The readout
(the model's output, an expression) has scale 1, so the normalised network's
logits equal the ANN's wherever no activation exceeds its scale.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.conv import conv_fan_out, conv_geometry
from ..model.graph import Graph
from ..model.neurons import IF
from .base import ConversionError, _apply_module, _check_finite_output, _clip, check_samples
from .ops import _function_handler, _maxpool, _maxpool_window, _module_ops

MAX_DENSE = 1 << 26  # entries of a dense composite matrix (pooling folded into a Linear)


# -- symbolic values ----------------------------------------------------------


@dataclass
class Term:
    """``factor * op(pre(atom))``: ``atom`` a population name (None: the
    analog input); ``pre`` pooling/flatten ops; ``op`` an affine :class:`Op`
    or None; ``factor`` per output channel, or None (1)."""

    atom: str | None
    shape: tuple  # output shape of the term (without batch)
    pre: list = field(default_factory=list)
    op: object = None
    factor: np.ndarray | None = None  # [*shape] per element (a folded BatchNorm), or None (1)

    @property
    def bare(self) -> bool:
        """The atom itself, up to pooling and flatten (no weights, no factor)."""
        return self.op is None and self.factor is None


@dataclass
class Expr:
    terms: list
    shape: tuple
    bias: np.ndarray | None = None  # [*shape] or None (0)

    @property
    def pure(self) -> bool:
        """A sum of bare terms (no weights, no factor, no bias)."""
        return self.bias is None and all(t.bare for t in self.terms)

    @property
    def population(self) -> str | None:
        """The population's name if this is exactly one population."""
        if self.pure and len(self.terms) == 1 and not self.terms[0].pre and self.terms[0].atom is not None:
            return self.terms[0].atom
        return None


@dataclass
class Cat:
    parts: list  # Expr, each a block of channels
    shape: tuple


@dataclass
class Batch:
    """``x.size(0)`` / ``x.shape[0]``: the batch size, for ``view``/``reshape``."""


@dataclass
class Shape:
    """``x.shape`` / ``x.size()``."""


# -- the program: populations and realised projections (unnormalised) -------


@dataclass
class Proj:
    """A realised projection into a population, before normalisation.

    kind ``dense`` (``weight`` ``[n_target, n_source]``), ``conv``
    (``weight`` torch layout, ``geom`` dict of stride/padding/dilation/
    groups), ``one2one`` (``weight`` ``[n]`` per element) or ``maxpool``
    (``geom`` the pooling spec: window ``k``, stride ``s``, padding ``p``)."""

    source: str | None  # None: the analog input
    kind: str
    weight: np.ndarray
    geom: dict | None = None


@dataclass
class PopDef:
    """A population: ``kind`` ``relu``, ``pool`` (a materialised average
    pooling of one population; scale inherited), ``maxpool`` (a max-pool
    gate, no neurons; scale inherited) or ``readout``."""

    name: str
    shape: tuple
    kind: str
    projections: list
    bias: np.ndarray  # [n] unnormalised
    clip: dict | None = None  # QCFS clip of the ReLU (trained threshold)
    path: str = ""


def _channels(shape) -> int:
    return shape[0]


def _channel_of(shape) -> np.ndarray:
    """Channel of every element of a flattened ``shape`` (a flat shape: each element its own)."""
    if len(shape) == 3:
        return np.repeat(np.arange(shape[0]), shape[1] * shape[2])
    return np.arange(int(np.prod(shape)))


# -- evaluating ops in torch (float64) -----------------------------------------


def _pool_out(shape, pool) -> tuple:
    c, h, w = shape
    (kh, kw), (sy, sx), (py, px) = pool["k"], pool["s"], pool["p"]
    return (c, (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1)


def _apply_pre(pre, x):
    for p in pre:
        if p["kind"] == "flatten":
            x = x.flatten(1)
        elif p["kind"] == "avg":
            x = F.avg_pool2d(x, p["k"], p["s"], p["p"], count_include_pad=True)
        else:
            raise AssertionError(p)
    return x


def _apply_proj(proj: Proj, x: torch.Tensor, shape) -> torch.Tensor:
    """The projection's (unnormalised) contribution, ``[N, *shape]``."""
    w = torch.from_numpy(proj.weight)
    if proj.kind == "dense":
        return (x.flatten(1) @ w.T).reshape(len(x), *shape)
    if proj.kind == "conv":
        g = proj.geom
        return F.conv2d(x, w, None, g["stride"], g["padding"], g["dilation"], g["groups"])
    if proj.kind == "maxpool":
        return F.max_pool2d(x, proj.geom["k"], proj.geom["s"], proj.geom["p"])
    return (x.flatten(1) * w).reshape(len(x), *shape)


def _activation(pop: PopDef, z: torch.Tensor) -> torch.Tensor:
    if pop.kind in ("readout", "pool", "maxpool"):
        return z
    if pop.clip is not None:
        return _clip(z, pop.clip)
    return F.relu(z)


def run_program(pops: list, x: torch.Tensor, keep=None) -> dict:
    """ANN activations of every population (the readout: logits) on ``x``
    (float64 ``[N, *input_shape]``), ``{name: [N, *shape]}``; ``keep``:
    names to return (default all)."""
    acts = {}
    users = {}
    for k, pop in enumerate(pops):
        for p in pop.projections:
            users[p.source] = k
    for k, pop in enumerate(pops):
        z = torch.from_numpy(pop.bias).reshape(1, *pop.shape).expand(len(x), *pop.shape).clone()
        for p in pop.projections:
            z = z + _apply_proj(p, x if p.source is None else acts[p.source], pop.shape)
        acts[pop.name] = _activation(pop, z)
        if keep is not None:  # free what no later population reads
            for name in [n for n in acts if users.get(n, -1) <= k and n not in keep]:
                del acts[name]
    return acts


# -- tracing ---------------------------------------------------------------------


class _Builder:
    """Reads an fx graph into populations (:class:`PopDef`), in topological order."""

    def __init__(self, model, gm, input_shape, maxpool):
        self.model, self.gm, self.maxpool = model, gm, maxpool
        self.input_shape = tuple(input_shape)
        self.pops: list[PopDef] = []
        self.pooled: dict = {}  # (atom, pools) -> materialised population name
        self.names: set = set()
        self.macs: dict = {}  # ANN MACs per Linear/Conv2d path (BatchNorm folded, pooling excluded)

    # values ----------------------------------------------------------------

    def read(self):
        env = {}
        order = {n: i for i, n in enumerate(self.gm.nodes)}
        for node in self.gm.nodes:
            if node.op == "placeholder":
                if env:
                    raise ConversionError(f"'{node.name}': only models of one input are supported")
                env[node] = Expr([Term(None, self.input_shape)], self.input_shape)
            elif node.op == "output":
                out = node.args[0]
                if not isinstance(out, torch.fx.Node):
                    raise ConversionError("the model must return one tensor (the logits)")
                return self._readout(env[out], out)
            elif node.op == "get_attr":
                raise ConversionError(
                    f"'{node.name}': a parameter used as a tensor ({node.target}) is not supported"
                )
            else:
                self._check_inplace(node, order)
                env[node] = self._node(node, env)
        raise ConversionError("the traced model has no output")

    def _check_inplace(self, node, order):
        inplace = node.kwargs.get("inplace", False) or (
            node.op == "call_method" and str(node.target).endswith("_")
        )
        if node.op == "call_module":
            inplace = getattr(self.model.get_submodule(node.target), "inplace", False)
        if node.target in (operator.iadd, torch.relu_):
            inplace = True
        arg = node.args[0] if node.args else None
        if inplace and isinstance(arg, torch.fx.Node):
            later = [u for u in arg.users if u is not node and order[u] > order[node]]
            if later:
                raise ConversionError(
                    f"'{node.name}' changes '{arg.name}' in place, which '{later[0].name}' reads "
                    "afterwards; the converter reads values, not mutations: make the op out of place"
                )

    def _node(self, node, env):
        args = list(torch.fx.node.map_arg(node.args, lambda n: env[n]))
        kwargs = dict(torch.fx.node.map_arg(node.kwargs, lambda n: env[n]))
        target, name = node.target, getattr(node.target, "__name__", str(node.target))
        if node.op == "call_module":
            return self._module(node, args)
        if target in (operator.add, operator.iadd, torch.add) or (
            node.op == "call_method" and target in ("add", "add_")
        ):
            return self._add(node, args, kwargs)
        if target is torch.cat or target is torch.concat:
            return self._cat(node, args, kwargs)
        if node.op == "call_method" and target == "size":
            return Batch() if (args[1:] or [kwargs.get("dim")])[0] in (0,) else Shape()
        if target is getattr and args[1] == "shape":
            return Shape()
        if target is operator.getitem and isinstance(args[0], Shape):
            if args[1] != 0:
                raise ConversionError(f"'{node.name}': only the batch size (dim 0) of a shape is supported")
            return Batch()
        if node.op == "call_method" and target in ("view", "reshape") or target is torch.reshape:
            return self._reshape(node, args)
        handler = _function_handler(target)
        if handler is None:
            kind = "function" if node.op == "call_function" else "method"
            raise ConversionError(
                f"unsupported {kind} '{name}' at '{node.name}'. To convert it, register a handler: "
                f"snn.convert.register_function({name!r} or the function, handler)"
            )
        value = self._single(node, args)
        for op in handler(node, node.name):
            value = self._op(op, value, node)
        return value

    def _single(self, node, args):
        tensors = [a for a in args if isinstance(a, (Expr, Cat))]
        if len(tensors) != 1:
            raise ConversionError(
                f"'{node.name}' takes {len(tensors)} tensors; only add and cat merge branches"
            )
        return tensors[0]

    def _module(self, node, args):
        module = self.model.get_submodule(node.target)
        value = self._single(node, args)
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            return self._pool(_pool_spec(module, node.target, self.maxpool), value, node)
        for op in _module_ops(module, node.target):
            value = self._op(op, value, node)
        return value

    def _reshape(self, node, args):
        value, dims = args[0], args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = list(dims[0])
        n = int(np.prod(value.shape))
        ok = len(dims) == 2 and (isinstance(dims[0], Batch) or dims[0] == -1) and dims[1] in (-1, n)
        if not ok:
            raise ConversionError(
                f"'{node.name}': {node.target} is supported only as flatten to (batch, -1), "
                f"e.g. x.view(x.size(0), -1); got {node.args[1:]}"
            )
        return self._flatten(value)

    # ops -------------------------------------------------------------------

    def _op(self, op, value, node):
        if op.kind == "affine":
            out = self._affine(op, value, node)
            macs = int(np.prod(out.shape) * np.prod(op.weight.shape[1:]))
            self.macs[op.path] = self.macs.get(op.path, 0) + macs
            return out
        if op.kind == "batchnorm":
            return self._batchnorm(op, value, node)
        if op.kind == "relu":
            return self._relu(value, node, op.meta.get("clip"))
        if op.kind == "flatten":
            return self._flatten(value)
        if op.kind in ("avgpool", "maxpool"):  # from a registered or function handler
            if op.kind == "maxpool":
                return self._pool(_max_spec(*_maxpool_window(op), self.maxpool), value, node)
            k = op.kernel
            if k == -1:
                k = value.shape[1:]
            return self._pool({"kind": "avg", "k": _pair(k), "s": _pair(k), "p": (0, 0)}, value, node)
        raise ConversionError(f"'{node.name}': op kind {op.kind!r} is not supported in a graph")

    def _affine(self, op, value, node):
        if isinstance(value, Cat):
            return self._affine_cat(op, value, node)
        if not value.pure:
            raise ConversionError(
                f"'{op.path}': a Linear/Conv2d must read ReLU outputs (spikes) or the input; its input "
                "here is a pre-activation (two Linear/Conv2d, or a merge, without a ReLU between)"
            )
        terms = []
        for t in value.terms:
            if t.atom is None and any(p["kind"] != "flatten" for p in t.pre):
                raise ConversionError(f"'{op.path}': pooling of the analog input is not supported")
            terms.append(self._weighted(t, op, node))
        out = terms[0].shape
        return Expr(terms, out, _broadcast(op.bias, out))

    def _weighted(self, t: Term, op, node) -> Term:
        if op.conv is None:
            n = op.weight.shape[1]
            if int(np.prod(t.shape)) != n:
                raise ConversionError(f"'{op.path}': expects {n} inputs, gets shape {t.shape}")
            return Term(t.atom, (op.weight.shape[0],), list(t.pre), op)
        if len(t.shape) != 3:
            raise ConversionError(f"'{op.path}': Conv2d needs (C, H, W) input, gets {t.shape}")
        if any(p["kind"] != "flatten" for p in t.pre):
            t = self._materialise(t, node)
        geom = conv_geometry(t.shape, op.weight.shape[0], **_geom_kwargs(op.conv))
        return Term(t.atom, tuple(int(v) for v in geom[3:6]), list(t.pre), op)

    def _affine_cat(self, op, value: Cat, node):
        if op.conv is not None and op.conv["groups"] != 1:
            raise ConversionError(f"'{op.path}': a grouped convolution of a concatenation is not supported")
        parts, start = [], 0
        for part in value.parts:
            if op.conv is not None:
                size = _channels(part.shape)
                w = op.weight[:, start : start + size]
            else:
                size = int(np.prod(part.shape))
                w = op.weight[:, start : start + size]
            start += size
            piece = replace(op, weight=np.ascontiguousarray(w), bias=np.zeros_like(op.bias))
            parts.append(self._affine(piece, part, node))
        width = op.weight.shape[1] if op.conv is not None else op.weight.shape[1]
        if start != width:
            raise ConversionError(
                f"'{op.path}': expects {width} input channels, the concatenation has {start}"
            )
        out = parts[0].shape
        return Expr([t for p in parts for t in p.terms], out, _broadcast(op.bias, out))

    def _batchnorm(self, op, value, node):
        if isinstance(value, Cat):
            parts, start = [], 0
            for part in value.parts:
                c = _channels(part.shape)
                piece = replace(op, scale=op.scale[start : start + c], shift=op.shift[start : start + c])
                parts.append(self._batchnorm(piece, part, node))
                start += c
            return Cat(parts, value.shape)
        if len(op.scale) != _channels(value.shape):
            raise ConversionError(
                f"'{op.path}': BatchNorm of {len(op.scale)} channels on shape {value.shape}"
            )
        terms = []
        for t in value.terms:
            if t.atom is None and t.op is None:
                raise ConversionError(
                    f"'{op.path}': BatchNorm of the analog input is not supported (fold it into the data)"
                )
            scale = _broadcast(op.scale, value.shape)
            terms.append(replace(t, factor=scale if t.factor is None else t.factor * scale))
        bias = _broadcast(op.shift, value.shape)
        if value.bias is not None:
            bias = bias + value.bias * _broadcast(op.scale, value.shape)
        return Expr(terms, value.shape, bias)

    def _flatten(self, value):
        if isinstance(value, Cat):
            parts = [self._flatten(p) for p in value.parts]
            return Cat(parts, (int(np.prod(value.shape)),))
        flat = (int(np.prod(value.shape)),)
        terms = []
        for t in value.terms:  # channel-first numbering: flatten is a no-op on the elements
            factor = None if t.factor is None else t.factor.reshape(flat)
            pre = t.pre + [{"kind": "flatten"}] if t.op is None else t.pre
            terms.append(replace(t, pre=pre, shape=flat, factor=factor))
        bias = None if value.bias is None else value.bias.reshape(flat)
        return Expr(terms, flat, bias)

    def _pool(self, pool, value, node):
        if isinstance(value, Cat):
            parts = [self._pool(pool, p, node) for p in value.parts]
            return Cat(parts, _pool_out(value.shape, pool))
        if len(value.shape) != 3:
            raise ConversionError(f"'{node.name}': pooling needs (C, H, W) input, gets {value.shape}")
        if not value.pure or any(t.atom is None for t in value.terms):
            raise ConversionError(
                f"'{node.name}': pooling must read ReLU outputs (spikes); pooling of a pre-activation "
                "or of the analog input is not supported"
            )
        out = _pool_out(value.shape, pool)
        if pool["kind"] == "max":  # not linear: never folded, a gate population at once
            if len(value.terms) != 1:
                raise ConversionError(
                    f"'{node.name}': max pooling of a sum of populations is not supported "
                    "(max(a + b) is not a sum of maxima); put a ReLU before the pooling"
                )
            t = self._materialise(value.terms[0], node) if value.terms[0].pre else value.terms[0]
            name = self._name(f"{t.atom}_maxpool")
            proj = Proj(t.atom, "maxpool", np.zeros(0), pool)
            self.pops.append(
                PopDef(name, out, "maxpool", [proj], np.zeros(int(np.prod(out))), path=node.name)
            )
            return Expr([Term(name, out)], out)
        return Expr([replace(t, pre=t.pre + [pool], shape=out) for t in value.terms], out)

    def _materialise(self, t: Term, node) -> Term:
        """A population holding the pooling of ``t`` (IF neurons at the
        source's scale, like a spiking AvgPool layer), as a bare term."""
        key = (t.atom, repr(t.pre))
        if key not in self.pooled:
            if any(p["kind"] == "flatten" for p in t.pre):
                raise ConversionError(
                    f"'{node.name}': a convolution of flattened pooled spikes is not supported"
                )
            source, shape = t.atom, self._shape(t.atom)
            for k, pool in enumerate(t.pre):
                out = _pool_out(shape, pool)
                name = self._name(f"{source}_pool" if k == 0 else f"{source}_pool{k}")
                proj = Proj(source, "conv", *_pool_kernel(shape[0], pool))
                self.pops.append(
                    PopDef(name, out, "pool", [proj], np.zeros(int(np.prod(out))), path=node.name)
                )
                source, shape = name, out
            self.pooled[key] = source
        return Term(self.pooled[key], t.shape)

    def _relu(self, value, node, clip=None):
        if isinstance(value, Cat):
            return Cat([self._relu(p, node, clip) for p in value.parts], value.shape)
        if value.population is not None and clip is None:
            return value  # ReLU of spikes: the identity
        if any(t.atom is None and t.op is None for t in value.terms):
            raise ConversionError(f"'{node.name}': a ReLU of the analog input itself is not supported")
        name = self._name(node.name)
        projections = [self._realise(t, value.shape, node) for t in value.terms]
        bias = np.zeros(value.shape) if value.bias is None else value.bias
        self.pops.append(
            PopDef(name, value.shape, "relu", projections, bias.reshape(-1), clip, str(node.target))
        )
        return Expr([Term(name, value.shape)], value.shape)

    def _realise(self, t: Term, shape, node) -> Proj:
        """A term as one projection into a population of ``shape``."""
        n_out = int(np.prod(shape))
        row = np.ones(n_out) if t.factor is None else t.factor.reshape(-1)
        pools = [p for p in t.pre if p["kind"] != "flatten"]
        if t.op is not None and t.op.conv is not None and len(shape) == 3:
            w = t.op.weight * row.reshape(shape)[:, 0, 0].reshape(-1, 1, 1, 1)
            return Proj(t.atom, "conv", w, _geom_kwargs(t.op.conv))
        if t.op is None and pools and (t.atom, repr(t.pre)) in self.pooled:  # already a population
            t = replace(t, atom=self.pooled[t.atom, repr(t.pre)], pre=[])
            pools = []
        src_shape = self.input_shape if t.atom is None else self._shape(t.atom)
        if t.op is None and not pools:
            if int(np.prod(src_shape)) != n_out:
                raise ConversionError(f"'{node.name}': adds tensors of different sizes")
            return Proj(t.atom, "one2one", np.ascontiguousarray(row, np.float64))
        if t.op is None and len(pools) == 1 and len(shape) == 3 and len(src_shape) == 3:
            w, geom = _pool_kernel(src_shape[0], pools[0])
            return Proj(t.atom, "conv", w * row.reshape(shape)[:, 0, 0].reshape(-1, 1, 1, 1), geom)
        n_src = int(np.prod(src_shape))
        if n_src * max(n_out, n_src) > MAX_DENSE:
            raise ConversionError(
                f"'{node.name}': a projection of {n_src} x {n_out} is too large to expand densely"
            )
        basis = torch.eye(n_src, dtype=torch.float64).reshape(n_src, *src_shape)
        with torch.no_grad():
            y = _apply_pre(t.pre, basis)
            if t.op is not None and t.op.conv is not None:
                g = _geom_kwargs(t.op.conv)
                y = F.conv2d(
                    y,
                    torch.from_numpy(t.op.weight),
                    None,
                    g["stride"],
                    g["padding"],
                    g["dilation"],
                    g["groups"],
                )
            elif t.op is not None:
                y = y.flatten(1) @ torch.from_numpy(t.op.weight).T
        w = y.reshape(n_src, -1).T.numpy()  # [n_out, n_src]
        return Proj(t.atom, "dense", np.ascontiguousarray(w * row[:, None]))

    def _add(self, node, args, kwargs):
        if kwargs.get("alpha", 1) != 1 or len(args) != 2:
            raise ConversionError(f"'{node.name}': add is supported for two tensors with alpha=1")
        a, b = args
        if not all(isinstance(v, Expr) for v in (a, b)):
            what = "a concatenation" if any(isinstance(v, Cat) for v in (a, b)) else "a constant"
            raise ConversionError(f"'{node.name}' (add): adding {what} to a tensor is not supported")
        self._no_raw_input(node, "add", a, b)
        if a.shape != b.shape:
            raise ConversionError(f"'{node.name}': add of shapes {a.shape} and {b.shape} (no broadcasting)")
        bias = None if a.bias is None and b.bias is None else _zero(a.bias, a.shape) + _zero(b.bias, a.shape)
        return Expr(a.terms + b.terms, a.shape, bias)

    def _cat(self, node, args, kwargs):
        parts = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if any(not isinstance(p, (Expr, Cat)) for p in parts):
            raise ConversionError(f"'{node.name}': cat of something that is not a tensor")
        self._no_raw_input(node, "cat", *parts)
        ndim = len(parts[0].shape) + 1
        if dim % ndim != 1 or any(
            len(p.shape) + 1 != ndim or p.shape[1:] != parts[0].shape[1:] for p in parts
        ):
            raise ConversionError(
                f"'{node.name}' (cat): only a concatenation along channels (dim 1) is supported"
            )
        flat = [q for p in parts for q in (p.parts if isinstance(p, Cat) else [p])]
        shape = (sum(p.shape[0] for p in parts), *parts[0].shape[1:])
        return Cat(flat, shape)

    def _no_raw_input(self, node, what, *values):
        for v in values:
            if isinstance(v, Expr) and any(t.atom is None and t.op is None for t in v.terms):
                raise ConversionError(
                    f"'{node.name}' ({what}) merges the analog input itself: it does not continue a "
                    "single chain of layers, and the graph converter merges spiking branches only "
                    "(the input is not spikes; it may only feed a Linear or Conv2d)"
                )

    def _readout(self, value, node):
        if isinstance(value, Cat) or value.population is not None or value.pure:
            raise ConversionError(
                f"the model must end with a Linear or Conv2d readout, it ends with '{node.name}' "
                "(a ReLU, pooling or concatenation)"
            )
        if any(t.bare for t in value.terms):
            raise ConversionError(
                f"'{node.name}': the readout adds a branch that has no Linear/Conv2d of its own"
            )
        name = self._name(node.name)
        projections = [self._realise(t, value.shape, node) for t in value.terms]
        bias = np.zeros(value.shape) if value.bias is None else value.bias
        self.pops.append(PopDef(name, value.shape, "readout", projections, bias.reshape(-1), path=name))
        return self.pops

    # helpers -------------------------------------------------------------------

    def _shape(self, name):
        return next(p.shape for p in self.pops if p.name == name)

    def _name(self, base):
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(int(x) for x in v)


def _geom_kwargs(conv: dict) -> dict:
    return {
        "kernel_size": tuple(conv["kernel_size"]),
        "stride": tuple(conv["stride"]),
        "padding": tuple(conv["padding"]),
        "dilation": tuple(conv["dilation"]),
        "groups": int(conv["groups"]),
    }


def _pool_kernel(channels, pool):
    """An average pool as a depthwise convolution: ``(weight, geom)``."""
    kh, kw = pool["k"]
    w = np.full((channels, 1, kh, kw), 1.0 / (kh * kw))
    return w, {"stride": pool["s"], "padding": pool["p"], "dilation": (1, 1), "groups": channels}


def _max_spec(k, s, p, maxpool):
    """A max-pool window: a spiking max-pool gate, or with ``maxpool="avg"``
    an average pool of the same window."""
    return {"kind": "avg" if maxpool == "avg" else "max", "k": _pair(k), "s": _pair(s), "p": _pair(p)}


def _pool_spec(m, path, maxpool):
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    if m.ceil_mode or _pair(getattr(m, "dilation", 1)) != (1, 1):
        raise ConversionError(f"'{path}': {type(m).__name__} with ceil_mode or dilation is not supported")
    if isinstance(m, nn.MaxPool2d):
        _maxpool(m, path)  # refuses dilation, ceil_mode, return_indices and invalid windows by name
        return _max_spec(k, s, p, maxpool)
    if not m.count_include_pad and p != (0, 0):
        raise ConversionError(
            f"'{path}': AvgPool2d with count_include_pad=False and padding is not supported"
        )
    if getattr(m, "divisor_override", None):
        raise ConversionError(f"'{path}': AvgPool2d with divisor_override is not supported")
    return {"kind": "avg", "k": k, "s": s, "p": p}


def _broadcast(v, shape) -> np.ndarray:
    """Per-channel ``v`` as a full tensor of ``shape``."""
    v = np.asarray(v, np.float64)
    if len(shape) == 3:
        return np.broadcast_to(v.reshape(-1, 1, 1), shape).copy()
    return np.broadcast_to(v, shape).copy()


def _zero(v, shape):
    return np.zeros(shape) if v is None else v


def trace_program(model, gm, input_shape, maxpool) -> tuple:
    """``(populations, ANN MACs per layer path)`` of ``model`` (fx graph
    ``gm``): the populations unnormalised, in topological order."""
    builder = _Builder(model, gm, input_shape, maxpool)
    return builder.read(), builder.macs


# -- normalisation and the graph -----------------------------------------------------


def population_scales(pops, acts, scale_of, per_channel) -> dict:
    """``{name: lambda [C]}``: each ReLU population's scale from its
    activation, ``scale_of(activation, per_channel)`` (a trained clip: its
    threshold); a pooled population inherits its source's; the readout 1."""
    scales = {}
    for pop in pops:
        c = _channels(pop.shape)
        if pop.kind == "readout":
            scales[pop.name] = np.ones(c)
        elif pop.kind in ("pool", "maxpool"):  # pooling keeps the scale of its source, per channel
            scales[pop.name] = scales[pop.projections[0].source]
        elif pop.clip is not None:
            scales[pop.name] = np.full(c, pop.clip["threshold"])
        else:
            a = acts[pop.name]
            lam = scale_of(a, per_channel)
            scales[pop.name] = np.asarray(lam, np.float64) if per_channel else np.full(c, lam)
    return scales


def normalised(proj: Proj, lam_src, lam_tgt, src_shape, tgt_shape) -> np.ndarray:
    """The projection's weights scaled by ``lambda_source / lambda_target``."""
    if proj.kind == "conv":
        groups = proj.geom["groups"]
        c_out, cg = proj.weight.shape[:2]
        in_ch = (np.arange(c_out) // (c_out // groups))[:, None] * cg + np.arange(cg)[None, :]
        ratio = lam_src[in_ch] / lam_tgt[:, None]
        return proj.weight * ratio[:, :, None, None]
    out_lam = lam_tgt[_channel_of(tgt_shape)]
    if proj.kind == "dense":
        return proj.weight * lam_src[_channel_of(src_shape)][None, :] / out_lam[:, None]
    return proj.weight * lam_src[_channel_of(src_shape)] / out_lam


def build_graph(pops, scales, input_shape, v_init, dtype, v_inits=None, biases=None, weights=None):
    """The :class:`snn.Graph` of the normalised populations (no input
    population: projections from the analog input become drives). Returns
    ``(graph, drives)``: ``drives[name]`` the normalised input projections
    of that population. ``v_inits``, ``biases``: ``{name: [n]}`` added to the
    initial membranes / biases; ``weights``: ``{name: [per projection of the
    population, in its order: an array of the weight's shape]}`` added to the
    normalised weights (calibration's corrections, threshold units)."""
    graph = Graph(dt=1e-3, dtype=dtype)
    shapes = {p.name: p.shape for p in pops}
    handles, drives = {}, {}
    for pop in pops:
        if pop.kind == "maxpool":  # a gate: no neurons, nothing to normalise
            (proj,) = pop.projections
            window = proj.geom["k"], proj.geom["s"], proj.geom["p"]
            handles[pop.name] = graph.max_pool(handles[proj.source], *window, name=pop.name)
            continue
        lam = scales[pop.name]
        n = int(np.prod(pop.shape))
        readout = pop.kind == "readout"
        neuron = IF(threshold=math.inf) if readout else IF(threshold=1.0)
        bias = pop.bias / lam[_channel_of(pop.shape)]
        start = 0.0 if readout else (pop.clip["shift"] if pop.clip is not None else v_init)
        start = np.full(n, start)
        if v_inits is not None and pop.name in v_inits:
            start = start + v_inits[pop.name]
        if biases is not None and pop.name in biases:
            bias = bias + biases[pop.name]
        size = pop.shape if len(pop.shape) == 3 else n
        handles[pop.name] = graph.population(size, neuron, bias=bias, v_init=start, name=pop.name)
        for j, proj in enumerate(pop.projections):
            src_shape = input_shape if proj.source is None else shapes[proj.source]
            lam_src = np.ones(input_shape[0] if len(input_shape) == 3 else int(np.prod(input_shape)))
            if proj.source is not None:
                lam_src = scales[proj.source]
            w = normalised(proj, lam_src, lam, src_shape, pop.shape)
            if weights is not None and pop.name in weights:
                w = w + weights[pop.name][j]
            if proj.source is None:
                drives.setdefault(pop.name, []).append(replace(proj, weight=w))
            else:
                _connect(graph, handles[proj.source], handles[pop.name], proj, w)
    return graph, drives


def _connect(graph, source, target, proj, w):
    name = f"{source.name}->{target.name}"
    k = sum(p.name.startswith(name) for p in graph.projections)
    name = name if k == 0 else f"{name}#{k}"
    if proj.kind == "conv":
        g = proj.geom
        graph.conv(
            source,
            target,
            w,
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
            groups=g["groups"],
            delay=0,
            name=name,
        )
    elif proj.kind == "dense":
        graph.connect(source, target, w, delay=0, name=name)
    else:
        keep = w != 0
        rowptr = np.concatenate(([0], np.cumsum(keep))).astype(np.int64)
        cols = np.flatnonzero(keep).astype(np.int64)
        graph.connect(source, target, w[keep], connectivity=(rowptr, cols), delay=0, name=name)


def drive_currents(drives, input_shape, x: np.ndarray) -> tuple:
    """``({name: [B, n] float64}, {name: MACs [B] int64})`` of the analog
    input ``x`` (``[B, *input_shape]``) through the normalised input
    projections (MACs: non-zero inputs times their fan-out, once per sample).
    Torch runs them on one thread: its OpenMP threads wait behind the
    kernels' spinning ones (measured on the digits ResNet at T = 16, batch
    1: 27-31 ms per sample with two torch threads, 3.5 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _drive_currents(drives, input_shape, x)
    finally:
        torch.set_num_threads(threads)


def _drive_currents(drives, input_shape, x):
    xt = torch.from_numpy(x.reshape(len(x), *input_shape))
    nonzero = (x.reshape(len(x), -1) != 0).astype(np.int64)
    currents, macs = {}, {}
    for name, projs in drives.items():
        total, count = None, np.zeros(len(x), np.int64)
        for proj in projs:
            out_shape_n = None
            with torch.no_grad():
                if proj.kind == "conv":
                    g = proj.geom
                    y = F.conv2d(
                        xt,
                        torch.from_numpy(proj.weight),
                        None,
                        g["stride"],
                        g["padding"],
                        g["dilation"],
                        g["groups"],
                    )
                    geom = conv_geometry(
                        input_shape,
                        proj.weight.shape[0],
                        proj.weight.shape[2:],
                        **{k: g[k] for k in ("stride", "padding", "dilation", "groups")},
                    )
                    fan = conv_fan_out(geom)
                else:
                    w = torch.from_numpy(proj.weight)
                    y = xt.flatten(1) @ w.T if proj.kind == "dense" else xt.flatten(1) * w
                    fan = (
                        (proj.weight != 0).sum(axis=0)
                        if proj.kind == "dense"
                        else np.ones(w.shape[0], np.int64)
                    )
            y = y.reshape(len(x), -1).numpy()
            out_shape_n = y.shape[1]
            total = y if total is None else total + y
            count += nonzero @ fan.astype(np.int64)
        assert out_shape_n is not None
        currents[name], macs[name] = total, count
    return currents, macs


# -- the converted graph ------------------------------------------------------------


@dataclass
class ConvertedGraph:
    """A converted model that is not a chain: the SNN is a :class:`snn.Graph`.

    Same interface as :class:`snn.convert.ConvertedNetwork` (``run``,
    ``predict``, ``ann_total_macs``, ``network``, ``input_shape``,
    ``scales``, ``ann_macs``, ``calibration``): ``evaluate`` and
    ``calibrate`` take either.

    network : the graph (no input population: the analog input is a
        constant drive of the populations its Linear/Conv2d feed, computed
        once per sample with torch and counted as MACs).
    scales : ``{population: lambda per channel}`` (1 for the readout).
    readout : name of the readout population (infinite threshold; its
        membrane, recorded at every step, is the output).
    pops : the unnormalised program the graph was built from (for
        calibration and checks).
    """

    network: Graph
    input_shape: tuple
    scales: dict
    ann_macs: dict
    pops: list = field(repr=False)
    drives: dict = field(repr=False)
    readout: str = ""
    v_init: float = 0.5
    calibration: list | None = field(default=None, repr=False)
    v_shift: dict = field(default_factory=dict, repr=False)  # calibration: initial membrane added
    b_shift: dict = field(default_factory=dict, repr=False)  # calibration: bias added
    w_shift: dict = field(default_factory=dict, repr=False)  # calibration: normalised weights added

    @property
    def ann_total_macs(self) -> int:
        return int(sum(self.ann_macs.values()))

    @property
    def n_out(self) -> int:
        return self.network[self.readout].n

    def run(self, x, T: int, **kwargs):
        """Run the SNN on analog samples ``x`` (``[N, *input_shape]``) for
        ``T`` steps; a :class:`snn.RunResult` whose
        ``membrane`` is the readout after ``T`` steps and whose counts
        include the MACs of the analog input. ``kwargs`` go to
        :meth:`snn.Graph.run` (``mode``, ``n_threads``, ``backend``...)."""
        x = check_samples(x, "x", self.input_shape)
        currents, macs = drive_currents(self.drives, self.input_shape, x)
        kwargs.setdefault("progress", False)
        record = {self.readout: np.arange(self.n_out)}
        result = self.network.run(T, drive=currents, record_v=record, batch_size=len(x), **kwargs)
        result.membrane = result.v(self.readout)[-1]
        for k, c in enumerate(result.counts):
            if c.name in macs:
                result.counts[k] = replace(c, macs=macs[c.name])
        return result

    def predict(self, x, T: int) -> np.ndarray:
        """Class decisions (argmax of the readout membrane after ``T`` steps)."""
        return self.run(x, T).membrane.argmax(axis=1)

    def ann_activations(self, x) -> dict:
        """The folded ANN's activations per population (readout: logits) on
        ``x`` (``[N, *input_shape]``), float64 numpy ``[N, n]``."""
        x = torch.from_numpy(check_samples(x, "x", self.input_shape))
        with torch.no_grad():
            acts = run_program(self.pops, x)
        return {k: v.reshape(len(x), -1).numpy() for k, v in acts.items()}

    def rebuilt(self, v_shift=None, b_shift=None, w_shift=None) -> ConvertedGraph:
        """A copy whose graph is rebuilt with calibration shifts (``{name: [n]}``,
        in threshold units) added to the initial membranes / biases, and
        ``w_shift`` (``{name: [per projection: array of the weight's shape]}``)
        to the normalised weights. ``pops`` (the ANN) is never changed."""
        v_shift = dict(v_shift if v_shift is not None else self.v_shift)
        b_shift = dict(b_shift if b_shift is not None else self.b_shift)
        w_shift = dict(w_shift if w_shift is not None else self.w_shift)
        graph, drives = build_graph(
            self.pops,
            self.scales,
            self.input_shape,
            self.v_init,
            self.network.dtype,
            v_shift,
            b_shift,
            w_shift,
        )
        return replace(self, network=graph, drives=drives, v_shift=v_shift, b_shift=b_shift, w_shift=w_shift)


def convert_graph(model, gm, data, *, scale_of, per_channel, v_init, dtype, maxpool) -> ConvertedGraph:
    """Convert a model whose fx graph ``gm`` is not a chain (see the module
    docstring); ``data`` the checked calibration data, float64 tensor;
    ``scale_of`` as :func:`snn.convert.chain.convert_chain` takes it."""
    input_shape = tuple(data.shape[1:])
    pops, macs = trace_program(model, gm, input_shape, maxpool)
    with torch.no_grad():
        try:
            reference = _max_as_avg(model) if maxpool == "avg" else model
            expected = _apply_module(reference, data[:2])
        except Exception as exc:  # noqa: BLE001 -- any failure is reported, with its message
            raise ConversionError(
                f"the model does not accept calibration samples of shape {input_shape}: {exc}"
            ) from exc
        _check_finite_output(expected, "the model's output on calibration samples 0-1")
        folded = run_program(pops, data[:2])[pops[-1].name]
        if not torch.allclose(folded.reshape(expected.shape), expected.double(), rtol=1e-4, atol=1e-4):
            raise ConversionError("folding changed the model's output (an unsupported construct?)")
        acts = run_program(pops, data, keep={p.name for p in pops if p.kind == "relu" and p.clip is None})
    for name, a in acts.items():
        _check_finite_output(a, f"population '{name}' (folded, float64) on the calibration data")
    scales = population_scales(pops, acts, scale_of, per_channel)
    graph, drives = build_graph(pops, scales, input_shape, v_init, dtype)
    return ConvertedGraph(graph, input_shape, scales, macs, pops, drives, pops[-1].name, v_init)


def _max_as_avg(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every MaxPool2d an AvgPool2d of the same
    window (what ``maxpool="avg"`` converts)."""
    model = copy.deepcopy(model)
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.MaxPool2d):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], nn.AvgPool2d(m.kernel_size, m.stride, m.padding))
    return model
