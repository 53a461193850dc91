"""ANN-to-SNN conversion of trained PyTorch models.

``convert(model, calibration_data)`` traces the model (torch.fx, falling back
to walking nested ``Sequential`` containers), looks every module and function
up in a registry of handlers, folds BatchNorm into the preceding layer,
normalises each layer by a percentile of its ReLU activations on the
calibration data, and builds an event-driven network of IF neurons (reset by
subtraction, membrane starting at half threshold) whose last layer is read
out as accumulated membrane. The input is analog and constant: the first
layer multiplies it once and uses it as a bias.

Anything the registry does not know raises :class:`ConversionError` naming
the module or function, its path in the model, and how to register a
handler; nothing is passed through silently.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conv import AvgPool2d, Conv2d, MaxPool2d
from .energy import EnergyModel
from .layers import Linear
from .network import Network
from .neurons import IF
from .qcfs import QCFS
from .spiketrains import SpikeTrains

__all__ = [
    "ConversionError",
    "ConvertedGraph",
    "ConvertedNetwork",
    "EarlyExit",
    "Evaluation",
    "LayerCalibration",
    "Trajectory",
    "calibrate",
    "convert",
    "early_exit",
    "evaluate",
    "readout_trajectory",
    "register_function",
    "register_module",
]


class ConversionError(ValueError):
    """A model (or its data) that cannot be converted faithfully."""


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


def _is_chain(graph) -> bool:
    """Every node reads exactly the node before it (and nothing else)."""
    previous = None
    for node in graph.nodes:
        if node.op == "output":
            return True
        if node.op != "placeholder":
            tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node)]
            if len(tensor_args) != 1 or tensor_args[0] is not previous:
                return False
        previous = node
    return True


def _trace_ops(model, graph=None) -> list[Op]:
    graph = graph if graph is not None else _fx_graph(model)
    if graph is None:
        return _walk_ops(model, "")
    ops, previous = [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            break
        tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if len(tensor_args) != 1 or tensor_args[0] is not previous:
            what = (
                node.target if node.op != "call_function" else getattr(node.target, "__name__", node.target)
            )
            raise ConversionError(
                f"'{node.name}' ({what}) does not continue a single chain of layers: only sequential "
                "models are supported (no residual additions, concatenations or multiple inputs)"
            )
        path = str(node.target) if node.op == "call_module" else node.name
        if node.op == "call_module":
            ops += _module_ops(model.get_submodule(node.target), path)
        else:
            handler = _FUNCTION_HANDLERS.get(node.target)
            if handler is None:
                name = getattr(node.target, "__name__", str(node.target))
                raise ConversionError(
                    f"unsupported {'function' if node.op == 'call_function' else 'method'} '{name}' at "
                    f"'{path}'. To convert it, register a handler: "
                    f"snn.convert.register_function({name!r} or the function, handler)"
                )
            ops += handler(node, path)
        previous = node
    return ops


def _walk_ops(module, path) -> list[Op]:
    if isinstance(module, nn.Sequential):
        ops = []
        for name, child in module.named_children():
            ops += _walk_ops(child, f"{path}.{name}" if path else name)
        return ops
    return _module_ops(module, path or type(module).__name__)


# -- folding -------------------------------------------------------------------


def _fold(ops: list[Op]) -> list[Op]:
    """BatchNorm into the preceding affine op; AvgPool (then Flatten) into a
    following Linear, both exact."""
    folded: list[Op] = []
    for op in ops:
        if op.kind == "batchnorm":
            if not folded or folded[-1].kind != "affine":
                raise ConversionError(f"{op.path}: BatchNorm must follow a Linear or Conv2d to be folded")
            prev = folded[-1]
            shape = (-1,) + (1,) * (prev.weight.ndim - 1)
            prev.weight = prev.weight * op.scale.reshape(shape)
            prev.bias = prev.bias * op.scale + op.shift
        else:
            folded.append(op)
    return folded


def _shapes(ops, in_shape):
    """Attach the input and output shape (without batch) to every op."""
    shape = tuple(in_shape)
    for op in ops:
        op.meta["in_shape"] = shape
        if op.kind == "affine" and op.conv is None:
            if int(np.prod(shape)) != op.weight.shape[1]:
                raise ConversionError(f"{op.path}: expects {op.weight.shape[1]} inputs, gets shape {shape}")
            shape = (op.weight.shape[0],)
        elif op.kind == "affine":
            if len(shape) != 3:
                raise ConversionError(f"{op.path}: Conv2d needs (C, H, W) input, gets {shape}")
            g = op.conv
            out = []
            for d in range(2):
                k, s, p, dl = g["kernel_size"][d], g["stride"][d], g["padding"][d], g["dilation"][d]
                out.append((shape[1 + d] + 2 * p - dl * (k - 1) - 1) // s + 1)
            shape = (op.weight.shape[0], *out)
        elif op.kind in ("avgpool", "maxpool") and len(shape) != 3:
            raise ConversionError(f"{op.path}: pooling needs (C, H, W) input, gets {shape}")
        elif op.kind == "maxpool":
            (kh, kw), (sy, sx), (py, px) = _maxpool_window(op)
            out = ((shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1)
            if min(out) < 1:
                raise ConversionError(f"{op.path}: the {kh}x{kw} window does not fit its input {shape}")
            shape = (shape[0], *out)
        elif op.kind == "avgpool":
            if op.kernel == -1:
                op.kernel = shape[1] if shape[1] == shape[2] else None
                if op.kernel is None:
                    raise ConversionError(f"{op.path}: global pooling of a non-square {shape[1:]} plane")
            shape = (shape[0], shape[1] // op.kernel, shape[2] // op.kernel)
        elif op.kind == "flatten":
            shape = (int(np.prod(shape)),)
        op.meta["out_shape"] = shape
    return shape


def _fold_avgpool_into_linear(ops: list[Op]) -> list[Op]:
    out: list[Op] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        rest = ops[i + 1 : i + 3]
        nxt = [o for o in rest if o.kind != "flatten"][:1]
        if (
            op.kind == "avgpool"
            and nxt
            and nxt[0].kind == "affine"
            and nxt[0].conv is None
            and all(o.kind == "flatten" for o in rest[: rest.index(nxt[0])])
        ):
            lin = nxt[0]
            c, h, w = op.meta["in_shape"]
            k = op.kernel
            hp, wp = h // k, w // k
            wt = lin.weight.reshape(-1, c, hp, wp) / (k * k)
            full = np.zeros((wt.shape[0], c, h, w))
            full[:, :, : hp * k, : wp * k] = np.repeat(np.repeat(wt, k, axis=2), k, axis=3)
            lin.weight = full.reshape(wt.shape[0], -1)
            lin.meta["in_shape"] = (c * h * w,)
            lin.meta["pooled_from"] = op.path
            out.append(Op("flatten", op.path, meta={"in_shape": (c, h, w), "out_shape": (c * h * w,)}))
            out.append(lin)
            i += 1 + rest.index(lin) + 1
            continue
        out.append(op)
        i += 1
    return out


# -- the ANN, run on the folded ops (calibration and invariant checks) --------


def _apply(op: Op, x: torch.Tensor) -> torch.Tensor:
    if op.kind == "affine" and op.conv is None:
        return x.flatten(1) @ torch.from_numpy(op.weight).T + torch.from_numpy(op.bias)
    if op.kind == "affine":
        g = op.conv
        return F.conv2d(
            x,
            torch.from_numpy(op.weight),
            torch.from_numpy(op.bias),
            stride=g["stride"],
            padding=g["padding"],
            dilation=g["dilation"],
            groups=g["groups"],
        )
    if op.kind == "relu" and "clip" in op.meta:
        return _clip(x, op.meta["clip"])
    if op.kind == "relu":
        return F.relu(x)
    if op.kind == "avgpool":
        return F.avg_pool2d(x, op.kernel)
    if op.kind == "maxpool":
        k, s, p = _maxpool_window(op)
        return F.max_pool2d(x, k, s, p)
    if op.kind == "flatten":
        return x.flatten(1)
    raise AssertionError(op.kind)


def _clip(x: torch.Tensor, clip: dict) -> torch.Tensor:
    """A trained clip (``Op.meta["clip"]``), quantised to ``levels`` steps or not."""
    lam, levels = clip["threshold"], clip["levels"]
    if levels is None:
        return torch.clamp(x, 0, lam)
    return lam * torch.clamp(torch.floor(x * levels / lam + clip["shift"]) / levels, 0, 1)


def run_ops(ops: list[Op], x) -> torch.Tensor:
    """The folded ANN in float64 (for calibration and checks)."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    with torch.no_grad():
        for op in ops:
            x = _apply(op, x.reshape(-1, *op.meta["in_shape"]))
    return x


# -- building the SNN ------------------------------------------------------------


@dataclass
class ConvertedNetwork:
    """A converted model: the SNN, the scales used, and the ANN's cost.

    network : the event-driven :class:`snn.Network` (input: the flattened
        analog sample, constant over time; readout: last layer's membrane).
    input_shape : shape of one input sample of the ANN, e.g. ``(1, 8, 8)``.
    scales : activation scale (percentile) of each normalised layer.
    ann_macs : MACs of each Linear/Conv2d of the ANN per sample (BatchNorm
        folded; pooling adds not counted), keyed by layer path.
    calibration : what :func:`snn.convert_calibrate.calibrate` did, per
        layer (None if not calibrated).
    """

    network: Network
    input_shape: tuple
    scales: list
    ann_macs: dict
    ops: list = field(repr=False)
    calibration: list | None = field(default=None, repr=False)

    def run(self, x, T: int, **kwargs):
        """Run the SNN on analog samples ``x`` (``[N, *input_shape]``, finite
        floats, checked by :func:`check_samples`) for ``T`` steps."""
        return self.network.run(analog=self._flat(x), T=T, **kwargs)

    def predict(self, x, T: int) -> np.ndarray:
        """Class decisions (argmax of the readout membrane after ``T`` steps)."""
        return self.run(x, T).membrane.argmax(axis=1)

    def _flat(self, x, what: str = "x") -> np.ndarray:
        """Checked samples, flattened: a new float64 array ``[N, prod(input_shape)]``."""
        x = check_samples(x, what, self.input_shape)
        return x.reshape(len(x), -1)

    @property
    def ann_total_macs(self) -> int:
        return int(sum(self.ann_macs.values()))


# -- what the user gives: one check for samples, labels and models -------------


def check_samples(x, what: str, input_shape: tuple | None = None) -> np.ndarray:
    """``x`` as a new float64 array ``[N, *input_shape]`` (the caller's array
    or tensor is never changed nor kept).

    Raises :class:`ConversionError` (a ``ValueError``) unless ``x`` is a
    non-empty batch ``[N >= 1, ...]`` of finite floating-point numbers, of
    sample shape ``input_shape`` when given. Integers are refused: images
    stored as integers (e.g. 0..255) must first be scaled as the model was
    trained. ``what`` names the argument in the messages.
    """
    x = _as_numpy(x, what)
    if x.ndim < 2:
        expected = f"[N, {', '.join(map(str, input_shape))}]" if input_shape is not None else "[N, ...]"
        raise ConversionError(f"{what} must be a batch {expected} of samples, got shape {x.shape}")
    if len(x) == 0:
        raise ConversionError(f"{what} is an empty batch (shape {x.shape}): give at least one sample")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ConversionError(
            f"{what}: input samples must have shape {tuple(input_shape)} (the model's), "
            f"got {tuple(x.shape[1:])} (batch shape {x.shape})"
        )
    if x.dtype.kind != "f":
        raise ConversionError(
            f"{what} must be floating-point samples, got dtype {x.dtype}; scale integer data as the "
            "model was trained (e.g. x.astype(np.float32) / 255 for 8-bit images) before passing it"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        samples = np.unique(np.nonzero(bad.reshape(len(x), -1))[0])
        raise ConversionError(
            f"{what} must be finite: {int(bad.sum())} NaN or inf value(s), in sample(s) {_few(samples)}"
        )
    return x.astype(np.float64)  # always a copy


def check_labels(y, what: str, n_samples: int, n_classes: int) -> np.ndarray:
    """``y`` as a new int64 array ``[n_samples]`` of classes in ``[0, n_classes)``;
    :class:`ConversionError` otherwise."""
    y = _as_numpy(y, what)
    if y.shape != (n_samples,):
        raise ConversionError(f"{what} must hold one label per sample, shape ({n_samples},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ConversionError(f"{what} must be integer class labels, got dtype {y.dtype}")
    out_of_range = (y < 0) | (y >= n_classes)
    if out_of_range.any():
        raise ConversionError(
            f"{what} must be classes in [0, {n_classes}) (the readout has {n_classes} outputs); "
            f"sample(s) {_few(np.nonzero(out_of_range)[0])} have {_few(np.unique(y[out_of_range]))}"
        )
    return y.astype(np.int64)


def _as_numpy(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{what} must be an array of numbers: {err}") from err
    if x.dtype == object:
        raise ConversionError(f"{what} must be an array of numbers (not ragged, not objects), got {x.dtype}")
    return x


def _few(values, limit: int = 5) -> str:
    values = [v.item() for v in values[: limit + 1]]
    return ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "")


def check_eval_mode(model: nn.Module) -> None:
    """:class:`ConversionError` naming every (sub)module of ``model`` still
    in training mode: BatchNorm would normalise by the batch and update its
    running statistics, Dropout would drop."""
    training = [
        f"'{name}'" if name else "the model itself" for name, m in model.named_modules() if m.training
    ]
    if training:
        raise ConversionError(
            f"the model has {len(training)} module(s) in training mode: {', '.join(training[:10])}"
            f"{', ...' if len(training) > 10 else ''} (Dropout and BatchNorm behave differently, and "
            "BatchNorm would update its running statistics); call model.eval() before converting"
        )


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy to run and trace, so that nothing the converter does (a
    forward pass, tracing, ``.double()``) can touch the user's model; the
    model itself if it cannot be copied (it is in eval mode and only run
    under ``no_grad`` then)."""
    try:
        return copy.deepcopy(model)
    except Exception:  # noqa: BLE001 -- an uncopyable attribute: fall back to the checked original
        return model


def ann_outputs(model: nn.Module, x: np.ndarray, what: str = "the samples") -> torch.Tensor:
    """The ANN's outputs on ``x`` (checked samples), computed on a private
    copy in the model's own dtype without gradients; the model must be in eval
    mode. :class:`ConversionError` if the outputs hold NaN or inf."""
    check_eval_mode(model)
    model = _private_copy(model)
    with torch.no_grad():
        out = _apply_module(model, torch.from_numpy(x))
    _check_finite_output(out, f"the model's output on {what}")
    return out


def _check_finite_output(out, what: str) -> None:
    if isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).reshape(len(out), -1).any(dim=1).nonzero().reshape(-1).numpy()
        raise ConversionError(
            f"{what} contains NaN or inf (sample(s) {_few(bad)}): the ANN itself overflows or divides "
            "by zero; check its weights and the scale of the data"
        )


def _check_model(model, calibration_data):
    """The checked model and calibration data (float64 ``[N, ...]`` tensor, a copy)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_eval_mode(model)
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ConversionError(f"parameter '{name}' contains NaN or inf")
    return torch.from_numpy(check_samples(calibration_data, "calibration_data"))


def convert(
    model: nn.Module,
    calibration_data,
    *,
    percentile: float = 99.99,
    per_channel: bool = False,
    v_init: float = 0.5,
    dtype=np.float64,
    maxpool: str | None = None,
) -> ConvertedNetwork | ConvertedGraph:
    """Convert a trained ReLU (or QCFS) network to an event-driven SNN of IF neurons.

    A chain of layers becomes a :class:`ConvertedNetwork` over an
    :class:`snn.Network`; a model whose torch.fx graph is not a chain
    (residual adds ``+``/``torch.add``/``+=``, ``torch.cat`` along
    channels, ``x.view(x.size(0), -1)``...) becomes a
    :class:`snn.convert_graph.ConvertedGraph` over an :class:`snn.Graph`
    (see :mod:`snn.convert_graph` for what it supports and how it
    normalises through the merges).

    Parameters
    ----------
    model : a ``torch.nn.Module`` in eval mode, a chain of supported layers
        (Linear, Conv2d, BatchNorm1d/2d, ReLU, :class:`snn.qcfs.QCFS`,
        AvgPool2d, AdaptiveAvgPool2d to 1x1, MaxPool2d (any kernel, stride
        and padding, overlapping windows included; dilation 1 and
        ``ceil_mode=False``), Flatten, Dropout, Identity, nested Sequential,
        functional relu/flatten) ending in a Linear or Conv2d (the readout).
    calibration_data : ``[N, *input_shape]`` samples (training data) used to
        find each ReLU layer's activation scale.
    percentile : the activation percentile that maps to the firing threshold
        (100 = max-norm; 99.9-99.99 clip rare outliers and converge faster).
        A QCFS layer ignores it: its scale is its trained threshold lambda.
    per_channel : one scale per output channel instead of per layer (a QCFS
        layer repeats its single lambda).
    v_init : initial membrane of the ReLU-converted layers, in units of
        threshold (0.5 centres the rounding error of rate coding). A QCFS
        layer starts at its shift (1/2: half its threshold).
    dtype : state precision of the SNN.
    maxpool : models that are not chains only: ``None`` converts a
        MaxPool2d to a spiking max-pool gate (``snn.Graph.max_pool``),
        ``"avg"`` replaces it by an average pool of the same window (kernel,
        stride, zero padding) -- a different function than the ANN's, the
        user's choice.
    """
    data = _check_model(model, calibration_data)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if maxpool not in (None, "avg"):
        raise ValueError(f"maxpool must be None or 'avg', got {maxpool!r}")
    input_shape = tuple(data.shape[1:])
    model = _private_copy(model)  # traced and run below: the user's model is never touched
    graph = _fx_graph(model)
    if graph is not None and not _is_chain(graph):
        from .convert_graph import convert_graph

        return convert_graph(
            model,
            graph,
            data,
            percentile=percentile,
            per_channel=per_channel,
            v_init=v_init,
            dtype=dtype,
            maxpool=maxpool,
        )
    ops = _fold(_trace_ops(model, graph))
    affine = [op for op in ops if op.kind == "affine"]
    if not affine:
        raise ConversionError("the model has no Linear or Conv2d layer")
    if ops[-1].kind != "affine":
        raise ConversionError(
            f"the model must end with a Linear or Conv2d readout, it ends with "
            f"{ops[-1].kind} at '{ops[-1].path}'"
        )
    _shapes(ops, input_shape)
    ann_macs = {op.path: _macs(op) for op in ops if op.kind == "affine"}
    ops = _fold_avgpool_into_linear(ops)
    with torch.no_grad():
        try:
            # a quantised activation amplifies float32 rounding into whole levels: check in float64
            quantised = any("clip" in op.meta for op in ops)
            expected = _apply_module(copy.deepcopy(model).double() if quantised else model, data[:2])
        except Exception as exc:  # noqa: BLE001 -- any failure is reported, with its message
            raise ConversionError(
                f"the model does not accept calibration samples of shape {input_shape}: {exc}"
            ) from exc
    _check_finite_output(expected, "the model's output on calibration samples 0-1")
    folded = run_ops(ops, data[:2])
    if not torch.allclose(folded.reshape(expected.shape), expected.double(), rtol=1e-4, atol=1e-4):
        raise ConversionError("folding changed the model's output (an unsupported construct?)")
    layers, scales = _build_layers(ops, data, percentile, per_channel, v_init)
    return ConvertedNetwork(Network(layers, dtype=dtype), input_shape, scales, ann_macs, ops)


def _apply_module(model, x):
    param = next(model.parameters(), None)
    return model(x.to(param.dtype if param is not None else torch.float32))


def _macs(op: Op) -> int:
    out = op.meta["out_shape"]
    return int(np.prod(out) * np.prod(op.weight.shape[1:]))


def _channel_of(shape):
    """Index of the channel of every element of a flattened ``shape``."""
    if len(shape) == 3:
        return np.repeat(np.arange(shape[0]), shape[1] * shape[2])
    return np.arange(shape[0])


def _build_layers(ops, data, percentile, per_channel, v_init):
    layers, scales = [], []
    prev_scale = None  # scale of the current input, per element of its flattened shape (None: analog input)
    x = data.reshape(len(data), *ops[0].meta["in_shape"])
    last_affine = max(i for i, op in enumerate(ops) if op.kind == "affine")
    i = 0
    while i < len(ops):
        op = ops[i]
        if op.kind == "flatten":
            x = _apply(op, x)
            i += 1
            continue
        if op.kind in ("maxpool", "avgpool"):  # an avgpool here is not followed by a Linear
            x = _apply(op, x)
            if op.kind == "maxpool":
                layers.append(MaxPool2d(op.meta["in_shape"], *_maxpool_window(op), name=op.path))
            else:  # a spiking AvgPool2d (rates re-quantised)
                layers.append(
                    AvgPool2d(op.meta["in_shape"], op.kernel, neuron=IF(), v_init=v_init, name=op.path)
                )
            if prev_scale is not None:  # channel scales (one per channel) survive pooling
                c, h_out, w_out = op.meta["out_shape"]
                prev_scale = np.repeat(prev_scale.reshape(c, -1)[:, 0], h_out * w_out)
            i += 1
            continue
        if op.kind == "relu":
            raise ConversionError(f"{op.path}: a ReLU must follow a Linear or Conv2d")
        # affine, possibly followed by relu
        has_relu = i + 1 < len(ops) and ops[i + 1].kind == "relu"
        z = _apply(op, x.reshape(-1, *op.meta["in_shape"]))
        _check_finite_output(z, f"layer '{op.path}' (folded, float64) on the calibration data")
        weight, bias = op.weight.copy(), op.bias.copy()
        in_flat = int(np.prod(op.meta["in_shape"]))
        if prev_scale is not None:  # undo the previous layer's normalisation on the inputs
            s_in = prev_scale if prev_scale.size == in_flat else np.full(in_flat, prev_scale[0])
            if op.conv is None:
                weight = weight * s_in[None, :]
            else:
                c_in = op.meta["in_shape"][0]
                per_c = s_in.reshape(c_in, -1)[:, 0]
                g = op.conv["groups"]
                cg = c_in // g
                idx = (np.arange(weight.shape[0]) // (weight.shape[0] // g))[:, None] * cg + np.arange(cg)[
                    None, :
                ]
                weight = weight * per_c[idx][:, :, None, None]
        out_shape = op.meta["out_shape"]
        if i == last_affine:
            if has_relu:
                raise ConversionError(f"{op.path}: the readout layer must not be followed by a ReLU")
            layers.append(_make_layer(op, weight, bias, IF(threshold=math.inf), 0.0))
            break
        if not has_relu:
            found = f"{ops[i + 1].kind} at '{ops[i + 1].path}'" if i + 1 < len(ops) else "nothing"
            raise ConversionError(
                f"{op.path}: a hidden Linear/Conv2d must be followed by a ReLU (found {found})"
            )
        clip = ops[i + 1].meta.get("clip")
        if clip is None:
            a = F.relu(z)
            lam = _scale(a, percentile, per_channel)
            start = v_init
        else:  # trained threshold: no calibration; start at the shift (QCFS: half threshold)
            a = _clip(z, clip)
            lam = np.full(weight.shape[0], clip["threshold"]) if per_channel else clip["threshold"]
            start = clip["shift"]
        scales.append(lam)
        s_out = lam[_channel_of(out_shape)] if per_channel else np.full(int(np.prod(out_shape)), lam)
        c_out = weight.shape[0]
        chan = lam if per_channel else np.full(c_out, lam)
        weight = weight / chan.reshape((-1,) + (1,) * (weight.ndim - 1))
        bias = bias / chan
        layers.append(_make_layer(op, weight, bias, IF(threshold=1.0), start))
        prev_scale = s_out
        x = a
        i += 2
    return layers, scales


def _scale(a: torch.Tensor, percentile, per_channel):
    a = a.detach().numpy()
    if per_channel:
        flat = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
        lam = np.array([np.percentile(row, percentile) if row.max() > 0 else 1.0 for row in flat])
        return np.where(lam > 0, lam, np.maximum(flat.max(axis=1), 1e-12))
    lam = float(np.percentile(a, percentile))
    return lam if lam > 0 else max(float(a.max()), 1e-12)


def _make_layer(op, weight, bias, neuron, v_init):
    if op.conv is None:
        return Linear(
            weight.shape[1], weight.shape[0], neuron, weight=weight, bias=bias, v_init=v_init, name=op.path
        )
    g = op.conv
    return Conv2d(
        op.meta["in_shape"],
        weight.shape[0],
        g["kernel_size"],
        neuron,
        stride=g["stride"],
        padding=g["padding"],
        dilation=g["dilation"],
        groups=g["groups"],
        weight=weight,
        bias=bias,
        v_init=v_init,
        name=op.path,
    )


# -- one run read at every step ---------------------------------------------------


@dataclass
class Trajectory:
    """The readout and cumulative counts of one run to ``T`` steps, at every step.

    Exact at every ``t <= T`` by causality: the network is feed-forward, its
    input is constant and its neurons see only the past, so the spikes of
    steps ``< t`` of a run to ``T`` are those of a run to ``t`` (same input,
    state precision and layer paths); only the readout membrane's rounding
    differs (summation order, ~1e-12 relative in float64).

    readout : ``[T, B, n_out]`` float64; ``readout[t - 1]`` is the readout
        membrane after ``t`` steps, ``v_init + t * bias + W @ c_t`` with
        ``c_t`` the readout's input spike counts of steps ``< t``. It
        approximates ``t`` times the ANN's logits.
    synops : ``[L, T + 1, B]`` int64; ``synops[l, t]`` is the number of
        synaptic operations layer ``l`` performed in steps ``< t`` (its input
        spikes of those steps times their fan-out).
    macs : ``[L, B]`` int64; multiply-accumulates of the analog first layer,
        done once (the same for every ``t >= 1``).
    """

    readout: np.ndarray
    synops: np.ndarray
    macs: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.readout.shape[0]

    @property
    def batch_size(self) -> int:
        return self.readout.shape[1]

    def decisions(self) -> np.ndarray:
        """Class decision after each step, ``[T, B]`` (argmax of the readout)."""
        return self.readout.argmax(axis=2)

    def synops_at(self, steps) -> np.ndarray:
        """SynOps of all layers in the first ``steps`` steps (an int, or one
        per sample), ``[B]`` int64."""
        steps = np.broadcast_to(np.asarray(steps, np.int64), (self.batch_size,))
        if steps.min(initial=0) < 0 or steps.max(initial=0) > self.n_steps:
            raise ValueError(f"steps must be in [0, {self.n_steps}]")
        return self.synops[:, steps, np.arange(self.batch_size)].sum(axis=0)


def readout_trajectory(converted: ConvertedNetwork, x, result) -> Trajectory:
    """Read a run of ``converted`` on analog samples ``x`` (``[B, *input_shape]``,
    the input of ``result = converted.run(x, T)``) at every step ``1..T``.

    Uses only the spike trains and counts in ``result`` (and ``x`` when the
    readout is the first layer); see :class:`Trajectory` for what is exact.
    A :class:`snn.convert_graph.ConvertedGraph`'s readout is its recorded
    membrane (:func:`snn.convert_graph.graph_trajectory`).
    """
    if _is_graph(converted):
        from .convert_graph import graph_trajectory

        return graph_trajectory(converted, x, result)
    layers = converted.network.layers
    n_steps, batch = result.n_steps, result.batch_size
    if result.counts[0].synops.any():
        raise ValueError("readout_trajectory reads runs on constant analog input (converted.run)")
    synops = np.zeros((len(layers), n_steps + 1, batch), np.int64)
    for k in range(1, len(layers)):
        synops[k] = _cumulative_synops(result.trains[k - 1], layers[k].fan_out)
    macs = np.stack([c.macs for c in result.counts]).astype(np.int64)
    readout_layer = layers[-1]
    if len(layers) > 1:
        readout = _readout_from_spikes(readout_layer, result.trains[-2])
    else:  # the readout multiplies the analog input: a constant current
        flat = converted._flat(x).astype(np.float64)
        current = np.asarray(readout_layer.bias, np.float64) + flat @ readout_layer.dense_rows(np.float64)
        t = np.arange(1, n_steps + 1, dtype=np.float64)[:, None, None]
        readout = np.asarray(readout_layer.v_init, np.float64) + t * current[None]
    return Trajectory(readout, synops, macs)


def _cumulative_synops(trains, fan_out) -> np.ndarray:
    """``[T + 1, B]`` int64: input spikes of steps ``< t`` times their fan-out."""
    out = np.zeros((trains.n_steps + 1, trains.batch_size), np.int64)
    for b in range(trains.batch_size):
        n = trains.tptr[b, -1]
        cum = np.zeros(n + 1, np.int64)
        np.cumsum(fan_out[trains.idx[b, :n]], out=cum[1:])
        out[:, b] = cum[trains.tptr[b]]
    return out


def _readout_from_spikes(layer, trains) -> np.ndarray:
    """``[T, B, n_out]``: ``v_init + t * bias + W @ (input counts of steps < t)``, t = 1..T;
    each step's input current summed by a kernel, then summed over steps."""
    bias = np.broadcast_to(np.asarray(layer.bias, np.float64), (layer.n_out,))
    start = np.broadcast_to(np.asarray(layer.v_init, np.float64), (layer.n_out,))
    current = trains.currents(layer.dense_rows(np.float64))  # [n_in, n_out], the float32 weights exactly
    t = np.arange(1, trains.n_steps + 1, dtype=np.float64)[:, None, None]
    return start + t * bias + np.cumsum(current, axis=1).transpose(1, 0, 2)


# -- early exit ---------------------------------------------------------------------


@dataclass
class EarlyExit:
    """Per-sample early exit on the readout of one run, under a user rule.

    Every sample stops at the first step ``t`` (``min_steps <= t <= T``) at
    which the rule holds on the readouts of steps ``<= t`` (a causal, online
    rule), and at ``T`` if it never does:

    - ``patience = k``: the decision (readout argmax) has not changed over
      the last ``k`` steps (it is the same after steps ``t - k .. t``);
    - ``margin = m``: the gap between the two largest readout values divided
      by ``t`` is at least ``m``, in the units of the ANN's logits (the
      readout after ``t`` steps approximates ``t`` times the logits);
    - both given: both must hold.

    The SynOps are those an engine advancing all layers step by step and
    stopping after ``exit_step`` steps would perform -- exact, by causality
    (see :class:`Trajectory`). They are a count, not a measured saving of
    time: this library's event engine runs each layer over all ``T`` steps
    in turn, so the run it read cost the full ``T``.

    Also reported, in hindsight (not a rule: it looks at the future), the
    ``stable_step``: the first step after which the decision never changes
    up to ``T``, the least any exit rule can spend and keep every decision
    of step ``T``.

    Attributes (per sample, ``[B]``)
    --------------------------------
    exit_step : steps run (1..T).   decision : class decided at the exit.
    synops : SynOps up to the exit (all layers).   full_synops : to ``T``.
    macs : MACs of the analog first layer (once, exit or not).
    stable_step, stable_synops : the hindsight bound.
    accuracy, full_accuracy : of the exit decisions and of step ``T``'s.
    """

    rule: str
    n_steps: int
    exit_step: np.ndarray
    decision: np.ndarray
    synops: np.ndarray
    full_synops: np.ndarray
    macs: np.ndarray
    stable_step: np.ndarray
    stable_synops: np.ndarray
    accuracy: float
    full_accuracy: float

    @property
    def synops_saved(self) -> float:
        """Fraction of the SynOps of the full run that the exits avoid."""
        full = self.full_synops.sum()
        return float(1 - self.synops.sum() / full) if full else 0.0

    def summary(self, energy: EnergyModel | None = None) -> str:
        """Two lines: the rule's exits, and the hindsight bound, per sample."""
        energy = energy or EnergyModel()
        n = len(self.exit_step)

        def mean(a):
            return float(a.sum()) / n

        full_pj = energy.energy_pj(mean(self.full_synops), mean(self.macs))
        exit_pj = energy.energy_pj(mean(self.synops), mean(self.macs))
        stable_saved = 1 - self.stable_synops.sum() / max(self.full_synops.sum(), 1)
        return (
            f"early exit ({self.rule}): accuracy {self.accuracy:.2%} (T={self.n_steps}: "
            f"{self.full_accuracy:.2%}), mean exit step {mean(self.exit_step):.1f} of {self.n_steps}, "
            f"SynOps {mean(self.synops):,.0f} vs {mean(self.full_synops):,.0f} per sample "
            f"({self.synops_saved:.1%} saved), energy {exit_pj / full_pj:.3f} x the full run\n"
            f"hindsight (decision final from then on): mean step {mean(self.stable_step):.1f}, "
            f"SynOps {mean(self.stable_synops):,.0f} ({stable_saved:.1%} saved) at "
            f"{self.full_accuracy:.2%}\n"
            "(exit SynOps: what an engine stopping at the exit step performs, counted exactly by "
            "causality; not wall time: the run itself went to T)"
        )


def early_exit(
    trajectory: Trajectory,
    labels,
    *,
    patience: int | None = None,
    margin: float | None = None,
    min_steps: int = 1,
) -> EarlyExit:
    """Decide per sample when to stop, with the rule of :class:`EarlyExit`.

    Parameters
    ----------
    trajectory : the readout of a run at every step (:func:`readout_trajectory`).
    labels : ``[B]`` true classes.
    patience : steps over which the decision must not have changed (>= 0).
    margin : least top-2 gap of the readout per step, logit units (>= 0).
    min_steps : never stop before this many steps (>= 1).
    """
    if patience is None and margin is None:
        raise ValueError("give a rule: patience= (steps) and/or margin= (logit units)")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0
    ):
        raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if isinstance(min_steps, bool) or not isinstance(min_steps, (int, np.integer)) or min_steps < 1:
        raise ValueError(f"min_steps must be an integer >= 1, got {min_steps!r}")
    n_steps, batch = trajectory.n_steps, trajectory.batch_size
    labels = check_labels(labels, "labels", batch, trajectory.readout.shape[2])
    decisions = trajectory.decisions()
    ok = np.zeros((n_steps, batch), bool)
    ok[min_steps - 1 :] = True
    if patience is not None:
        ok &= _unchanged_for(decisions) >= patience
    if margin is not None:
        if trajectory.readout.shape[2] < 2:
            raise ValueError("margin needs a readout of at least two classes")
        top2 = np.sort(trajectory.readout, axis=2)[:, :, -2:]
        gap = (top2[:, :, 1] - top2[:, :, 0]) / np.arange(1, n_steps + 1)[:, None]
        ok &= gap >= margin
    ok[-1] = True  # no rule met: run to the end
    exit_step = ok.argmax(axis=0) + 1
    decision = decisions[exit_step - 1, np.arange(batch)]
    stable = _stable_step(decisions)
    rule = ", ".join(
        part
        for part in (
            f"patience {patience}" if patience is not None else "",
            f"margin {margin:g}" if margin is not None else "",
            f"min {min_steps} steps" if min_steps > 1 else "",
        )
        if part
    )
    return EarlyExit(
        rule,
        n_steps,
        exit_step,
        decision,
        trajectory.synops_at(exit_step),
        trajectory.synops_at(n_steps),
        trajectory.macs.sum(axis=0),
        stable,
        trajectory.synops_at(stable),
        float(np.mean(decision == labels)),
        float(np.mean(decisions[-1] == labels)),
    )


def _unchanged_for(decisions) -> np.ndarray:
    """``[T, B]``: how many steps back the decision has been the same."""
    run = np.zeros(decisions.shape, np.int64)
    for t in range(1, len(decisions)):
        run[t] = np.where(decisions[t] == decisions[t - 1], run[t - 1] + 1, 0)
    return run


def _stable_step(decisions) -> np.ndarray:
    """``[B]``: first step (1-based) from which the decision equals the last one."""
    changed = decisions != decisions[-1]
    last_changed = len(decisions) - 1 - changed[::-1].argmax(axis=0)
    return np.where(changed.any(axis=0), last_changed + 2, 1)


# -- evaluation and accounting ---------------------------------------------------


@dataclass
class Evaluation:
    """Accuracy and cost of a converted network for several T (per sample).

    rows : one dict per T with ``T``, ``accuracy``, ``synops``, ``macs``
        (SNN, analog first layer), ``updates``, ``dense_updates`` (``T`` x
        the neurons), ``energy_pj`` and ``ms_per_sample`` (whole set, all
        cores). In a single pass, ``updates`` and ``ms_per_sample`` are
        measured for the one run to ``T_max`` and are NaN on the other rows.
    ann_accuracy, ann_macs, ann_energy_pj : the ANN's, for comparison.
    single_pass : the rows were read from one run to ``T_max``.
    trajectory, labels : that run at every step, and the labels (single
        pass only), for :meth:`early_exit`.
    readout_ms_per_sample : time spent reading the run at every step (single
        pass only), on top of the run's.
    """

    rows: list
    ann_accuracy: float
    ann_macs: int
    ann_energy_pj: float
    energy: EnergyModel
    single_pass: bool = False
    trajectory: Trajectory | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    readout_ms_per_sample: float = math.nan

    def early_exit(
        self, *, patience: int | None = None, margin: float | None = None, min_steps: int = 1
    ) -> EarlyExit:
        """Early exit on the single-pass run (see :func:`early_exit`)."""
        if self.trajectory is None:
            raise ValueError("early exit needs evaluate(..., single_pass=True)")
        return early_exit(self.trajectory, self.labels, patience=patience, margin=margin, min_steps=min_steps)

    def table(self) -> str:
        head = (
            f"{'T':>4} {'accuracy':>9} {'SynOps':>11} {'SynOps/MAC':>10} {'SNN MACs':>9} "
            f"{'energy/ANN':>10} {'updates':>8} {'ms/sample':>9}"
        )
        ann = (
            f"{'ANN':>4} {self.ann_accuracy:>9.2%} {'-':>11} {'-':>10} {self.ann_macs:>9,} "
            f"{1:>10.3f} {'-':>8} {'-':>9}"
        )
        lines = [head, ann]
        for r in self.rows:
            updates = (
                f"{r['updates'] / r['dense_updates']:>8.1%}" if not math.isnan(r["updates"]) else f"{'-':>8}"
            )
            ms = f"{r['ms_per_sample']:>9.3f}" if not math.isnan(r["ms_per_sample"]) else f"{'-':>9}"
            lines.append(
                f"{r['T']:>4} {r['accuracy']:>9.2%} {r['synops']:>11,.0f} "
                f"{r['synops'] / self.ann_macs:>10.3f} {r['macs']:>9,.0f} "
                f"{r['energy_pj'] / self.ann_energy_pj:>10.3f} {updates} {ms}"
            )
        note = ""
        if self.single_pass:
            t_max = max(r["T"] for r in self.rows)
            note = (
                f"\nsingle pass: one run to T={t_max} read at every T (exact: the dynamics are causal); "
                f"updates and ms/sample are that run's (reading it at every step: "
                f"{self.readout_ms_per_sample:.3f} ms/sample more)"
            )
        return (
            "\n".join(lines)
            + note
            + (
                "\nper sample. SynOps: weights added to a target because a spike arrived (ACs); "
                "SNN MACs: the analog input multiplied once by the first layer; "
                "ANN MACs: Linear/Conv2d multiply-accumulates "
                f"(BatchNorm folded, pooling excluded); updates: neuron updates done vs a clock-driven run; "
                f"{self.energy.describe()}"
            )
        )


def evaluate(
    converted: ConvertedNetwork,
    x,
    y,
    steps=(4, 8, 16, 32, 64),
    *,
    single_pass: bool = True,
    energy: EnergyModel | None = None,
    ann_model: nn.Module | None = None,
    mode: str | None = None,
    progress: bool = False,
    client=None,
) -> Evaluation:
    """Accuracy, exact counts and time per sample of ``converted`` on ``x``
    (``[N, *input_shape]``, labels ``y`` ``[N]``) for each T in ``steps``.

    Parameters
    ----------
    single_pass : run once to ``T_max = max(steps)`` on the event backend
        and read accuracy and SynOps at every T from that run
        (:func:`readout_trajectory`; equal to separate runs by causality);
        its time is the ``T_max`` run's. ``False``: one timed run per T.
    energy : pJ per AC / MAC (default :class:`EnergyModel`).
    ann_model : the ANN, for its accuracy on ``x``.
    mode : passed to ``Network.run`` (None: each layer's own choice).
    progress : a progress bar over the separate runs.
    client : a Dask client (or a scheduler address, or ``"local"``): split
        the samples across its workers, same numbers (see
        :func:`snn.distributed.evaluate`; needs the ``dask`` extra).

    Kernels are compiled before the timed runs.
    """
    from tqdm.auto import tqdm

    if client is not None:
        if _is_graph(converted):
            raise NotImplementedError(
                "evaluate(client=...) distributes converted chains (ConvertedNetwork) only; "
                "run a ConvertedGraph without client="
            )
        from .distributed import evaluate as distributed_evaluate

        return distributed_evaluate(
            converted,
            x,
            y,
            steps,
            single_pass=single_pass,
            energy=energy,
            ann_model=ann_model,
            mode=mode,
            progress=progress,
            client=client,
        )
    _check_converted(converted)
    steps = [_positive_int("steps", t) for t in np.atleast_1d(steps).tolist()]
    if not steps:
        raise ValueError("steps must name at least one T")
    energy = energy or EnergyModel()
    x = check_samples(x, "x", converted.input_shape)
    y = check_labels(y, "y", len(x), _n_out(converted))
    if ann_model is not None and not isinstance(ann_model, nn.Module):
        raise TypeError(f"ann_model must be a torch.nn.Module, got {type(ann_model).__name__}")
    converted.network.prepare()
    trajectory, readout_ms = None, math.nan
    if single_pass:
        rows, trajectory, readout_ms = _single_pass_rows(converted, x, y, steps, energy, mode)
    else:
        rows = [
            _run_row(converted, x, y, t, energy, mode)
            for t in tqdm(steps, desc="evaluating", disable=not progress, leave=False)
        ]
    return evaluation(converted, rows, ann_model, x, y, energy, single_pass, trajectory, readout_ms)


def evaluation(converted, rows, ann_model, x, y, energy, single_pass, trajectory, readout_ms) -> Evaluation:
    """An :class:`Evaluation` of ``rows``, with the ANN's accuracy on
    ``x`` (NaN without ``ann_model``, which runs in this process)."""
    ann_accuracy = float("nan")
    if ann_model is not None:
        ann_accuracy = float(np.mean(ann_outputs(ann_model, x, "x").argmax(1).numpy() == y))
    macs = converted.ann_total_macs
    return Evaluation(
        rows,
        ann_accuracy,
        macs,
        energy.energy_pj(0, macs),
        energy,
        single_pass,
        trajectory,
        y if single_pass else None,
        readout_ms,
    )


def _check_converted(converted) -> None:
    from .convert_graph import ConvertedGraph

    if not isinstance(converted, (ConvertedNetwork, ConvertedGraph)):
        raise TypeError(
            "expected a ConvertedNetwork or ConvertedGraph (the result of snn.convert.convert), "
            f"got {type(converted).__name__}"
        )


def _is_graph(converted) -> bool:
    from .convert_graph import ConvertedGraph

    return isinstance(converted, ConvertedGraph)


def _n_out(converted) -> int:
    """Outputs of the readout."""
    return converted.n_out if _is_graph(converted) else converted.network.layers[-1].n_out


def _n_neurons(converted) -> int:
    """Neurons updated per step by a clock-driven run."""
    if _is_graph(converted):
        return converted.network.n_neurons
    return sum(layer.n_out for layer in converted.network.layers)


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be positive integers, got {value!r}")
    return int(value)


def _run_row(converted, x, y, n_steps, energy, mode) -> dict:
    """One timed run to ``n_steps``."""
    start = time.perf_counter()
    result = converted.run(x, n_steps, mode=mode)
    elapsed = time.perf_counter() - start
    return run_row(n_steps, result.membrane.argmax(axis=1), result, y, energy, 1e3 * elapsed / len(y))


def run_row(n_steps, decisions, result, y, energy, ms_per_sample) -> dict:
    """The evaluation's row of a run to ``n_steps``: its decisions ``[B]``,
    its counts (``result.total``), the labels ``y``; the one place these
    figures are computed, for a run in this process and for a partitioned one."""
    n = len(y)
    synops, macs = result.total("synops") / n, result.total("macs") / n
    return {
        "T": n_steps,
        "accuracy": float(np.mean(decisions == y)),
        "synops": synops,
        "macs": macs,
        "updates": result.total("updates") / n,
        "dense_updates": result.total("dense_updates") / n,
        "energy_pj": energy.energy_pj(synops, macs),
        "ms_per_sample": ms_per_sample,
    }


def trajectory_rows(trajectory, updates, n_neurons, y, steps, energy, run_ms) -> list[dict]:
    """The evaluation's rows, one per ``T`` in ``steps``, read from a run to
    ``max(steps)``: its readout and SynOps trajectory, its neuron updates
    (summed over samples), the neurons updated per step by a clock-driven
    run, the labels ``y``, and its ms per sample. The one place these figures
    are computed, for a run in this process and for a partitioned one."""
    t_max, n = max(steps), len(y)
    macs = trajectory.macs.sum() / n
    rows = []
    for t in steps:
        synops = trajectory.synops[:, t].sum() / n
        last = t == t_max
        rows.append(
            {
                "T": t,
                "accuracy": float(np.mean(trajectory.readout[t - 1].argmax(axis=1) == y)),
                "synops": synops,
                "macs": macs,
                "updates": updates / n if last else math.nan,
                "dense_updates": float(t * n_neurons),
                "energy_pj": energy.energy_pj(synops, macs),
                "ms_per_sample": run_ms if last else math.nan,
            }
        )
    return rows


def _single_pass_rows(converted, x, y, steps, energy, mode):
    """Rows read from one timed run to ``max(steps)``; returns ``(rows, trajectory, ms/sample to read)``."""
    t_max = max(steps)
    n = len(y)
    start = time.perf_counter()
    result = converted.run(x, t_max, mode=mode)
    run_ms = 1e3 * (time.perf_counter() - start) / n
    SpikeTrains.empty(1, 1, 1).currents(np.zeros((1, 1)))  # compile (or load) the reading kernel, untimed
    start = time.perf_counter()
    trajectory = readout_trajectory(converted, x, result)
    readout_ms = 1e3 * (time.perf_counter() - start) / n
    rows = trajectory_rows(
        trajectory, result.total("updates"), _n_neurons(converted), y, steps, energy, run_ms
    )
    return rows, trajectory, readout_ms


# the calibration pass lives in its own module, which builds on the names above
from .convert_calibrate import LayerCalibration, calibrate  # noqa: E402
from .convert_graph import ConvertedGraph  # noqa: E402
