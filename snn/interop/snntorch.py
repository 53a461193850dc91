"""Import snnTorch models: ``from_snntorch(nn.Sequential(...))`` -> :class:`snn.Network`.

Step semantics, snnTorch (``snntorch`` 0.9 - 1.0, ``Leaky`` / ``Synaptic``),
per step ``t`` with input current ``x[t]`` (the preceding layer's output,
bias included), spikes ``s[t] = (mem[t] > threshold)``:

- ``Leaky``:    ``mem[t] = beta mem[t-1] + x[t] - R[t]``;
- ``Synaptic``: ``syn[t] = alpha syn[t-1] + x[t]``; ``mem[t] = beta mem[t-1] + syn[t] - R[t]``.

``reset_delay=True`` (snnTorch's default): the reset of a spike at ``t - 1``
is applied at step ``t``, *after* the leak: subtract gives
``R[t] = threshold s[t-1]``; zero gives ``mem[t-1] <- 0`` before the leak
(``Synaptic`` also zeroes ``syn`` and drops ``x[t]``). ``reset_delay=False``:
the reset is applied in the step of the spike, like ours.

Ours (``snn.neurons``): ``v[t] = beta (v[t-1] - threshold s[t-1]) + x[t]``,
the subtraction before the leak. Hence, exactly (up to rounding):

=================  =============  ===========================================
snnTorch           reset_delay    ours
=================  =============  ===========================================
Leaky subtract     False          LIF(beta), subtract  (*)
Leaky subtract     True, beta=1   IF, subtract (the delay commutes with no leak)
Leaky subtract     True, beta<1   refused: equals a reset by threshold / beta,
                                  which our neurons (one threshold for firing
                                  and subtracting) cannot express
Leaky zero         True or False  LIF(beta), zero (``beta * 0 + x[t]`` either way)
Synaptic subtract  False          CubaLIF(beta, alpha), subtract  (*)
Synaptic subtract  True, beta=1   CubaLIF(1, alpha), subtract
Synaptic subtract  True, beta<1   refused (as Leaky)
Synaptic zero      False          CubaLIF, zero (``syn`` kept, as in snnTorch)
Synaptic zero      True           refused: snnTorch zeroes the current too and
                                  drops that step's input
any "none"         -              refused (our neurons always reset), except
                                  the last layer with ``membrane_readout=True``
=================  =============  ===========================================

(*) snnTorch with ``reset_delay=False`` applies an extra, delayed subtraction
when a membrane is *still* above threshold after its reset (its "avoid double
reset" term); ours then fires again. The two agree while no post-reset
membrane exceeds threshold, i.e. no neuron receives more than about one
threshold of net input in a step beyond what its spike removes.

snnTorch fires on ``mem > threshold``, ours on ``v >= threshold``: they
differ only when a membrane equals the threshold exactly.

Layers: ``nn.Linear``, ``nn.Conv2d`` (integer zero padding) followed by a
neuron; ``nn.AvgPool2d`` on spikes followed by a neuron
(:class:`snn.AvgPool2d`); ``nn.MaxPool2d`` on spikes, which is the per-step
OR of the window, imported exactly as a depthwise convolution of ones onto
IF neurons (threshold 1, reset to zero); ``nn.Flatten`` (from dim 1);
``nn.Dropout`` / ``nn.Identity`` (identities at inference). Pooling applied to
currents (``Conv2d -> MaxPool2d -> Leaky``, snnTorch's tutorial order) is
refused: move the pool after the neuron.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import snntorch
import torch
from torch import nn

from ..conv import AvgPool2d, Conv2d
from ..layers import Linear
from ..network import Network
from ..neurons import IF, LIF, CubaLIF

__all__ = ["SnnTorchImportError", "from_snntorch", "register"]


class SnnTorchImportError(ValueError):
    """An snnTorch model (or option) that cannot be imported faithfully."""


@dataclass
class _Builder:
    """State of the walk: the shape of the current signal (``(C, H, W)`` or
    ``(n,)``), the projection waiting for its neurons, the layers built."""

    shape: tuple | None
    membrane_readout: bool
    n_modules: int
    pending: dict | None = None
    layers: list = field(default_factory=list)
    index: int = 0
    where: str = ""

    def error(self, message: str) -> SnnTorchImportError:
        return SnnTorchImportError(f"{self.where}: {message}")

    def need_spikes(self, what: str):
        if self.pending is not None:
            raise self.error(
                f"{what} applied to the currents of {self.pending['where']} is not supported "
                "(it is not linear in spikes or not expressible by our layers); place it after "
                "the spiking neuron so that it acts on spikes"
            )

    def need_image(self, what: str) -> tuple:
        if self.shape is None or len(self.shape) != 3:
            raise self.error(f"{what} needs a (C, H, W) input; pass in_shape=(C, H, W) to from_snntorch")
        return self.shape


# -- layer handlers -------------------------------------------------------------


def _linear(m: nn.Linear, b: _Builder):
    b.need_spikes("nn.Linear")
    if b.shape is not None and b.shape != (m.in_features,):
        raise b.error(
            f"nn.Linear expects {m.in_features} inputs but receives shape {b.shape}; "
            "add nn.Flatten() before it"
        )
    bias = _array(m.bias) if m.bias is not None else 0.0
    b.pending = {
        "kind": "linear",
        "where": b.where,
        "weight": _array(m.weight),
        "bias": bias,
        "n_in": m.in_features,
    }
    b.shape = (m.out_features,)


def _conv2d(m: nn.Conv2d, b: _Builder):
    b.need_spikes("nn.Conv2d")
    shape = b.need_image("nn.Conv2d")
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise b.error(
            f"nn.Conv2d with padding={m.padding!r}, padding_mode={m.padding_mode!r} is not "
            "supported; use integer zero padding"
        )
    bias = _array(m.bias) if m.bias is not None else 0.0
    layer_kwargs = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
    probe = Conv2d(shape, m.out_channels, m.kernel_size, IF(), weight=_array(m.weight), **layer_kwargs)
    b.pending = {
        "kind": "conv",
        "where": b.where,
        "in_shape": shape,
        "out_channels": m.out_channels,
        "kernel_size": m.kernel_size,
        "weight": _array(m.weight),
        "bias": bias,
        "kwargs": layer_kwargs,
    }
    b.shape = probe.out_shape


def _pool_geometry(m, b: _Builder, name: str):
    k = _pair(m.kernel_size)
    stride = _pair(m.stride if m.stride is not None else m.kernel_size)
    if (
        _pair(m.padding) != (0, 0)
        or getattr(m, "ceil_mode", False)
        or _pair(getattr(m, "dilation", 1)) != (1, 1)
        or getattr(m, "divisor_override", None)
    ):
        raise b.error(f"{name} is supported without padding, dilation, ceil_mode or divisor_override")
    return k, stride


def _avgpool2d(m: nn.AvgPool2d, b: _Builder):
    b.need_spikes("nn.AvgPool2d")
    shape = b.need_image("nn.AvgPool2d")
    k, stride = _pool_geometry(m, b, "nn.AvgPool2d")
    probe = AvgPool2d(shape, k, stride)
    b.pending = {"kind": "avgpool", "where": b.where, "in_shape": shape, "kernel_size": k, "stride": stride}
    b.shape = probe.out_shape


def _maxpool2d(m: nn.MaxPool2d, b: _Builder):
    """Max of 0/1 spikes over a window = any spike in the window this step:
    a depthwise convolution of ones onto IF neurons, threshold 1, reset to
    zero (the membrane holds an integer count, so the test is exact)."""
    b.need_spikes("nn.MaxPool2d")
    shape = b.need_image("nn.MaxPool2d")
    k, stride = _pool_geometry(m, b, "nn.MaxPool2d")
    c = shape[0]
    layer = Conv2d(
        shape,
        c,
        k,
        IF(threshold=1.0, reset="zero"),
        stride=stride,
        groups=c,
        weight=np.ones((c, 1) + k),
        name=f"{b.index}:MaxPool2d",
    )
    b.layers.append(layer)
    b.shape = layer.out_shape


def _flatten(m: nn.Flatten, b: _Builder):
    if m.start_dim != 1 or m.end_dim != -1:
        raise b.error("nn.Flatten is supported from dim 1 to the end (keep the batch dimension)")
    if b.shape is not None:
        b.shape = (int(np.prod(b.shape)),)


def _identity(m, b: _Builder):
    """Dropout and Identity: identities at inference."""


def _neuron_layer(m, b: _Builder):
    if b.pending is None:
        raise b.error(
            f"{type(m).__name__} must follow nn.Linear, nn.Conv2d or nn.AvgPool2d (our layers "
            "are a projection onto neurons); two neurons in a row or a neuron first is not "
            "supported"
        )
    neuron = _neuron(m, b)
    p, b.pending = b.pending, None
    name = f"{b.index}:{type(m).__name__}"
    if p["kind"] == "linear":
        n_out = p["weight"].shape[0]
        b.layers.append(Linear(p["n_in"], n_out, neuron, weight=p["weight"], bias=p["bias"], name=name))
    elif p["kind"] == "conv":
        b.layers.append(
            Conv2d(
                p["in_shape"],
                p["out_channels"],
                p["kernel_size"],
                neuron,
                weight=p["weight"],
                bias=p["bias"],
                name=name,
                **p["kwargs"],
            )
        )
    else:
        b.layers.append(AvgPool2d(p["in_shape"], p["kernel_size"], p["stride"], neuron, name=name))


# -- neurons ----------------------------------------------------------------------

_RESETS = {0: "subtract", 1: "zero", 2: "none"}


def _neuron(m, b: _Builder):
    kind = type(m).__name__
    _refuse_options(m, b, kind)
    beta = _uniform(m.beta.detach().clamp(0, 1), b, "beta")
    threshold = _uniform(m.threshold.detach(), b, "threshold")
    alpha = _uniform(m.alpha.detach().clamp(0, 1), b, "alpha") if kind == "Synaptic" else None
    if not threshold > 0:
        raise b.error(f"{kind} threshold must be > 0, got {threshold}")
    reset = _RESETS[int(m.reset_mechanism_val)]
    delay = bool(getattr(m, "reset_delay", True))
    last = b.index == b.n_modules - 1
    if reset == "none":
        if not (b.membrane_readout and last):
            raise b.error(
                f"{kind}(reset_mechanism='none') keeps firing without reset; our neurons always "
                "reset. For a membrane readout as the last module pass membrane_readout=True "
                "(it then never fires; read result.membrane)"
            )
        threshold, reset = math.inf, "subtract"
    elif delay:
        _check_delayed_reset(kind, reset, beta, b)
    if alpha is not None:
        return CubaLIF(beta, alpha, threshold=threshold, reset=reset)
    if beta == 1.0:
        return IF(threshold=threshold, reset=reset)
    return LIF(beta, threshold=threshold, reset=reset)


def _refuse_options(m, b: _Builder, kind: str):
    if getattr(m, "inhibition", False):
        raise b.error(f"{kind}(inhibition=True) (winner-take-all across the batch) is not supported")
    if getattr(m, "state_quant", False):
        raise b.error(f"{kind}(state_quant=...) quantises the state; not supported")
    graded = getattr(m, "graded_spikes_factor", None)
    if graded is not None and not torch.all(torch.as_tensor(graded) == 1):
        raise b.error(
            f"{kind} graded_spikes_factor != 1 emits graded spikes; ours are binary. Fold the "
            "factor into the next layer's weights and set it to 1"
        )


def _check_delayed_reset(kind: str, reset: str, beta: float, b: _Builder):
    fix = (
        f"construct it with {kind}(..., reset_delay=False) (same parameters, reset in the step of the "
        "spike) and fine-tune briefly"
    )
    if reset == "subtract" and beta != 1.0:
        raise b.error(
            f"{kind}(reset_mechanism='subtract', reset_delay=True) with beta={beta:g} < 1 "
            "subtracts the threshold after the next step's leak, i.e. a reset by threshold / beta, "
            f"which our neurons cannot express (they fire and subtract the same threshold); {fix}"
        )
    if reset == "zero" and kind == "Synaptic":
        raise b.error(
            "Synaptic(reset_mechanism='zero', reset_delay=True) zeroes the synaptic current too "
            "and drops the next step's input, which our CubaLIF (current kept) cannot express; "
            f"{fix}"
        )


def _uniform(t: torch.Tensor, b: _Builder, name: str) -> float:
    values = t.reshape(-1)
    if values.numel() == 0:
        raise b.error(f"{name} is empty")
    if values.is_floating_point() and torch.isnan(values).any():
        raise b.error(f"{name} is NaN")
    if not torch.all(values == values[0]):
        raise b.error(
            f"per-neuron {name} values (shape {tuple(t.shape)}) are not supported: a layer's "
            "neurons share one model"
        )
    return float(values[0])


# -- registry and walk ---------------------------------------------------------------

_HANDLERS: dict[type, Callable] = {
    nn.Linear: _linear,
    nn.Conv2d: _conv2d,
    nn.AvgPool2d: _avgpool2d,
    nn.MaxPool2d: _maxpool2d,
    nn.Flatten: _flatten,
    nn.Dropout: _identity,
    nn.Identity: _identity,
    snntorch.Leaky: _neuron_layer,
    snntorch.Synaptic: _neuron_layer,
}


def register(module_type: type, handler: Callable) -> None:
    """Teach the importer a module type (matched exactly, subclasses are not
    assumed to behave alike). ``handler(module, builder)`` updates the
    builder: sets ``builder.pending`` for a projection, appends finished
    layers to ``builder.layers``, updates ``builder.shape``."""
    _HANDLERS[module_type] = handler


def _modules(module) -> list:
    if isinstance(module, (list, tuple)):
        return [m for item in module for m in _modules(item)]
    if isinstance(module, nn.Sequential):
        return [m for child in module for m in _modules(child)]
    if isinstance(module, nn.Module) and type(module) in _HANDLERS:
        return [module]
    if isinstance(module, nn.Module):
        raise SnnTorchImportError(
            f"{type(module).__name__}: pass an nn.Sequential (or a list of modules in forward order); a "
            "custom forward() cannot be read faithfully"
        )
    raise TypeError(f"from_snntorch needs an nn.Sequential or a list of modules, got {type(module).__name__}")


def from_snntorch(module, in_shape=None, *, membrane_readout: bool = False, dtype=np.float64) -> Network:
    """Import an snnTorch model as an event-driven :class:`snn.Network`.

    Parameters
    ----------
    module : ``nn.Sequential`` (nested ones are flattened) or a list of
        modules in forward order: ``nn.Linear``/``nn.Conv2d``/``nn.AvgPool2d``
        followed by ``snntorch.Leaky``/``snntorch.Synaptic``, ``nn.MaxPool2d``
        and ``nn.Flatten`` on spikes, ``nn.Dropout``/``nn.Identity``.
        Learnable ``beta``/``alpha``/``threshold`` are taken at their current
        (trained) values, clamped to [0, 1] like snnTorch does.
    in_shape : ``(C, H, W)`` of one input sample when the model starts with a
        convolution or pooling (the network's input is the flattened
        channel-first sample, ``x.reshape(B, -1)``); ``None`` for models
        starting with ``nn.Linear``.
    membrane_readout : import a last neuron with ``reset_mechanism="none"``
        as a never-firing membrane (threshold inf): ``result.membrane`` is
        snnTorch's final ``mem``.
    dtype : state precision of the network (float64: closest to snnTorch
        run in float64).

    Returns
    -------
    Network whose spike trains equal snnTorch's for the same input (analog
    ``[T, B, n]`` or constant ``[B, n]`` currents, or 0/1 spikes), see the
    module docstring for the exact correspondence and what is refused.

    Raises
    ------
    SnnTorchImportError naming the module, its position and what to do.
    """
    modules = _modules(module)
    if not modules:
        raise SnnTorchImportError("the model has no modules")
    b = _Builder(_in_shape(in_shape), membrane_readout, len(modules))
    for b.index, m in enumerate(modules):
        b.where = f"module {b.index} ({type(m).__name__})"
        try:
            _HANDLERS[type(m)](m, b)
        except SnnTorchImportError:
            raise
        except (TypeError, ValueError) as exc:  # a layer constructor refused what the module holds
            raise b.error(str(exc)) from exc
    if b.pending is not None:
        raise SnnTorchImportError(
            f"{b.pending['where']} is not followed by a spiking neuron; the model must end with "
            "snntorch.Leaky or snntorch.Synaptic (use reset_mechanism='none' and membrane_readout=True "
            "for a membrane readout)"
        )
    return Network(b.layers, dtype=dtype)


# -- helpers -------------------------------------------------------------------------


def _in_shape(in_shape) -> tuple | None:
    """``in_shape`` as a tuple of positive ints (None stays None); refused
    unless it is a sequence of positive integers (a float such as 8.5 is not
    rounded)."""
    if in_shape is None:
        return None
    try:
        values = list(in_shape)
    except TypeError:
        raise TypeError(f"in_shape must be a sequence such as (C, H, W), got {in_shape!r}") from None
    if not values or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise SnnTorchImportError(f"in_shape must be positive integers such as (C, H, W), got {in_shape!r}")
    return tuple(int(v) for v in values)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _pair(value) -> tuple:
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)
