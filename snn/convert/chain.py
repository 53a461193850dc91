"""A chain of layers to a stack: the model read into a chain of ops (its
torch.fx graph, or a walk of nested ``Sequential`` containers), BatchNorm
folded into the layer before it and an average pool (then Flatten) into the
Linear after it, each ReLU layer normalised by a scale of its activation
on the calibration data (see :func:`snn.convert.convert`; a QCFS layer by its trained
threshold), and the :class:`snn.Network` of IF layers built;
:class:`ConvertedNetwork` holds it with what it was built from."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.conv import AvgPool2d, Conv2d, MaxPool2d
from ..model.layers import Linear
from ..model.network import Network
from ..model.neurons import IF
from .base import ConversionError, _apply_module, _check_finite_output, _clip, check_samples
from .ops import Op, _function_handler, _fx_graph, _maxpool_window, _module_ops

# -- reading a model into a chain of ops ------------------------------------------


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
            handler = _function_handler(node.target)
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
    scales : activation scale of each normalised layer.
    ann_macs : MACs of each Linear/Conv2d of the ANN per sample (BatchNorm
        folded; pooling adds not counted), keyed by layer path.
    calibration : what :func:`snn.convert.calibrate` did, per
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


def convert_chain(model, graph, data, *, scale_of, per_channel, v_init, dtype) -> ConvertedNetwork:
    """Convert a model that is a chain of layers (its fx graph ``graph``, or
    None if fx cannot trace it: its Sequential containers are walked) to a
    stack; ``data`` the checked calibration data, float64 tensor;
    ``scale_of(activation, per_channel)`` a ReLU layer's scale
    (:func:`snn.convert.base.percentile_scale`)."""
    input_shape = tuple(data.shape[1:])
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
    layers, scales = _build_layers(ops, data, scale_of, per_channel, v_init)
    return ConvertedNetwork(Network(layers, dtype=dtype), input_shape, scales, ann_macs, ops)


def _macs(op: Op) -> int:
    out = op.meta["out_shape"]
    return int(np.prod(out) * np.prod(op.weight.shape[1:]))


def _channel_of(shape):
    """Index of the channel of every element of a flattened ``shape``."""
    if len(shape) == 3:
        return np.repeat(np.arange(shape[0]), shape[1] * shape[2])
    return np.arange(shape[0])


def _build_layers(ops, data, scale_of, per_channel, v_init):
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
            lam = scale_of(a, per_channel)
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
