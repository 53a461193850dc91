"""The converter's intermediate form and what it knows: an :class:`Op` is
one step of a chain (affine, relu, pooling, flatten, batchnorm); a registry
maps torch module types and functions to handlers that return ops
(:func:`register_module`, :func:`register_function`); and a torch.fx
tracer keeps every module the registry knows whole. Both converters (a
chain, :mod:`snn.convert.chain`, and a graph, :mod:`snn.convert.graph`)
read a model through it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import ConversionError
from .qcfs import QCFS

# -- the intermediate form: a chain of simple operations -------------------


@dataclass
class Op:
    """One step of the chain. ``kind``: affine, relu, avgpool, maxpool,
    flatten or batchnorm. Affine ops hold float64 numpy copies of the
    weights; ``conv`` holds Conv2d geometry (None for Linear).

    A relu op may carry a trained clip in ``meta["clip"]``, a dict with
    ``threshold`` (lambda > 0, activation units), ``levels`` (L, or None for
    a plain clip at lambda) and ``shift`` (phi): the activation is then
    ``lambda * clamp(floor(x L / lambda + phi) / L, 0, 1)`` (QCFS), and the
    converted layer gets its scale from lambda (no calibration percentile)
    and its initial membrane from phi (in units of threshold)."""

    kind: str
    path: str
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    conv: dict | None = None
    kernel: int = 0
    scale: np.ndarray | None = None  # batchnorm: y = x * scale + shift, per channel
    shift: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def _affine_linear(m: nn.Linear, path):
    bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_features)
    return [Op("affine", path, m.weight.detach().double().numpy().copy(), bias.copy())]


def _affine_conv(m: nn.Conv2d, path):
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise ConversionError(
            f"{path}: Conv2d with padding={m.padding!r}, padding_mode={m.padding_mode!r} "
            "is not supported; use integer zero padding"
        )
    bias = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(m.out_channels)
    geometry = {
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "dilation": m.dilation,
        "groups": m.groups,
    }
    return [Op("affine", path, m.weight.detach().double().numpy().copy(), bias.copy(), conv=geometry)]


def _batchnorm(m, path):
    if not m.track_running_stats or m.running_mean is None:
        raise ConversionError(f"{path}: BatchNorm without running statistics cannot be folded")
    std = np.sqrt(m.running_var.detach().double().numpy() + m.eps)
    gamma = m.weight.detach().double().numpy() if m.affine else np.ones_like(std)
    beta = m.bias.detach().double().numpy() if m.affine else np.zeros_like(std)
    mean = m.running_mean.detach().double().numpy()
    return [Op("batchnorm", path, scale=gamma / std, shift=beta - mean * gamma / std)]


def _pool_kernel(m, path, name):
    k = m.kernel_size if isinstance(m.kernel_size, int) else tuple(m.kernel_size)
    s = m.stride if m.stride is not None else k
    s = s if isinstance(s, int) else tuple(s)
    pad = m.padding if isinstance(m.padding, int) else tuple(m.padding)
    if isinstance(k, tuple):
        k = k[0] if k[0] == k[1] else None
    if isinstance(s, tuple):
        s = s[0] if s[0] == s[1] else None
    if (
        k is None
        or s != k
        or pad not in (0, (0, 0))
        or getattr(m, "ceil_mode", False)
        or getattr(m, "dilation", 1) not in (1, (1, 1))
    ):
        raise ConversionError(
            f"{path}: {name} is supported with square windows, stride equal to the "
            "kernel size, no padding, no dilation and ceil_mode=False"
        )
    return k


def _avgpool(m, path):
    if m.divisor_override is not None:
        raise ConversionError(f"{path}: AvgPool2d with divisor_override is not supported")
    if not m.count_include_pad and m.padding:
        raise ConversionError(f"{path}: AvgPool2d with count_include_pad=False and padding is not supported")
    return [Op("avgpool", path, kernel=_pool_kernel(m, path, "AvgPool2d"))]


def _adaptive_avgpool(m, path):
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    if tuple(size) != (1, 1):
        raise ConversionError(f"{path}: AdaptiveAvgPool2d is supported only to 1x1 (global average)")
    return [Op("avgpool", path, kernel=-1)]  # -1: the whole plane


def _maxpool(m, path):
    """Any window of ``nn.MaxPool2d`` (overlapping, padded) but dilation and
    ceil_mode: ``meta["window"]`` = ``(kernel, stride, padding)``, pairs.
    Max pooling keeps the scale of its input (``max(lam a) = lam max(a)``
    for ``lam > 0``, per channel; padding, -inf in torch, is never the max
    of post-ReLU activations >= 0, and never spikes in the SNN)."""

    def pair(v):
        return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)

    k = pair(m.kernel_size)
    s = pair(m.stride if m.stride is not None else m.kernel_size)
    p = pair(m.padding)
    if pair(m.dilation) != (1, 1):
        raise ConversionError(
            f"{path}: MaxPool2d with dilation={m.dilation!r} is not supported (dilation 1 only)"
        )
    if m.ceil_mode:
        raise ConversionError(
            f"{path}: MaxPool2d with ceil_mode=True is not supported (ceil_mode=False only)"
        )
    if m.return_indices:
        raise ConversionError(f"{path}: MaxPool2d with return_indices=True is not supported")
    if min(k) < 1 or min(s) < 1 or min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ConversionError(
            f"{path}: MaxPool2d(kernel_size={m.kernel_size!r}, stride={m.stride!r}, padding={m.padding!r}) "
            "is not a valid window (padding at most half the kernel size)"
        )
    return [Op("maxpool", path, kernel=k[0], meta={"window": (k, s, p)})]


def _maxpool_window(op: Op) -> tuple:
    """``(kernel, stride, padding)`` pairs of a maxpool op: its ``meta["window"]``,
    or, for an op a registered handler made with ``kernel`` only, ``kernel``
    square with stride = kernel and no padding."""
    if "window" in op.meta:
        return op.meta["window"]
    return (op.kernel, op.kernel), (op.kernel, op.kernel), (0, 0)


def _flatten(m, path):
    if getattr(m, "start_dim", 1) != 1 or getattr(m, "end_dim", -1) != -1:
        raise ConversionError(f"{path}: Flatten is supported from dim 1 to the end")
    return [Op("flatten", path)]


def _relu(m, path):
    return [Op("relu", path)]


def _nothing(m, path):
    return []


def _qcfs(m: QCFS, path):
    threshold = float(m.threshold.detach())
    if not threshold > 0:
        raise ConversionError(
            f"{path}: QCFS threshold must be > 0 to become a firing threshold, got {threshold}"
        )
    return [Op("relu", path, meta={"clip": {"threshold": threshold, "levels": m.levels, "shift": m.shift}})]


_MODULE_HANDLERS: dict[type, Callable] = {
    nn.Linear: _affine_linear,
    nn.Conv2d: _affine_conv,
    nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm,
    nn.ReLU: _relu,
    nn.AvgPool2d: _avgpool,
    nn.AdaptiveAvgPool2d: _adaptive_avgpool,
    nn.MaxPool2d: _maxpool,
    nn.Flatten: _flatten,
    nn.Dropout: _nothing,
    nn.Identity: _nothing,
}

_FUNCTION_HANDLERS: dict[Callable, Callable] = {
    F.relu: _relu,
    torch.relu: _relu,
    torch.flatten: lambda node, path: _flatten_call(node, path),
    "relu": _relu,  # x.relu()
    "flatten": lambda node, path: _flatten_call(node, path),  # x.flatten(1)
}


def _pool_call(module_type):
    """A handler of ``F.avg_pool2d`` / ``F.max_pool2d`` /
    ``F.adaptive_avg_pool2d``: the module of the same arguments, handled as
    the module is (so the same windows are supported and refused)."""

    def handler(node, path):
        args = list(node.args[1:])
        try:
            module = module_type(*args, **node.kwargs)
        except TypeError as err:
            raise ConversionError(
                f"{path}: {module_type.__name__} arguments {args, node.kwargs}: {err}"
            ) from None
        return _MODULE_HANDLERS[module_type](module, path)

    return handler


def _flatten_call(node, path):
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    if start != 1 or end != -1:
        raise ConversionError(f"{path}: flatten is supported from dim 1 (keep the batch dimension)")
    return [Op("flatten", path)]


def register_module(module_type: type, handler: Callable) -> None:
    """Teach the converter a module type. ``handler(module, path)`` returns a
    list of :class:`Op` (e.g. ``[]`` for a module that is the identity at
    inference)."""
    _MODULE_HANDLERS[module_type] = handler


def register_function(function: Callable | str, handler: Callable) -> None:
    """Teach the converter a function (or a tensor method, by name)."""
    _FUNCTION_HANDLERS[function] = handler


register_module(QCFS, _qcfs)
for _fn, _module_type in (
    (F.avg_pool2d, nn.AvgPool2d),
    (F.max_pool2d, nn.MaxPool2d),
    (F.adaptive_avg_pool2d, nn.AdaptiveAvgPool2d),
):
    register_function(_fn, _pool_call(_module_type))

# -- reading a model into ops ------------------------------------------------


def _module_ops(module, path):
    for cls in type(module).__mro__:
        if cls in _MODULE_HANDLERS:
            return _MODULE_HANDLERS[cls](module, path)
    raise ConversionError(
        f"unsupported module {type(module).__name__} at '{path}'. Supported: "
        f"{', '.join(sorted(c.__name__ for c in _MODULE_HANDLERS))}. To convert it, register a handler: "
        f"snn.convert.register_module({type(module).__name__}, handler) returning a list of Op"
    )


class _Tracer(torch.fx.Tracer):
    """torch.fx tracer that keeps every module with a registered handler
    whole (a user's or QCFS module is not traced into)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return any(cls in _MODULE_HANDLERS for cls in type(m).__mro__) or super().is_leaf_module(m, qualname)


def _fx_graph(model):
    """The model's torch.fx graph, or None if fx cannot trace it."""
    try:
        return _Tracer().trace(model)
    except Exception:  # noqa: BLE001 -- dynamic control flow: a plain walk of Sequential containers
        return None


def _function_handler(target) -> Callable | None:
    """The handler registered for a function (or a method, by name); None if none."""
    return _FUNCTION_HANDLERS.get(target)
