"""Import snnTorch models: ``from_snntorch(nn.Sequential(...))`` -> :class:`snn.Network`
(a chain) or :class:`snn.Graph` (recurrent, or a delayed subtraction).

Step semantics, snnTorch (``snntorch`` 0.9 - 1.0, ``Leaky`` / ``Synaptic`` /
``RLeaky`` / ``RSynaptic``), per step ``t`` with input current ``x[t]`` (the
preceding layer's output, bias included), spikes ``s[t] = (mem[t] > threshold)``:

- ``Leaky``:    ``mem[t] = beta mem[t-1] + x[t] - R[t]``;
- ``Synaptic``: ``syn[t] = alpha syn[t-1] + x[t]``; ``mem[t] = beta mem[t-1] + syn[t] - R[t]``;
- ``RLeaky`` / ``RSynaptic``: the same with ``x[t] + rec(s[t-1])`` in place
  of ``x[t]``, ``rec`` an ``nn.Linear`` (bias included), an ``nn.Conv2d``
  (``all_to_all=True``) or ``V * s`` (``all_to_all=False``).

``reset_delay=True`` (snnTorch's default): the reset of a spike at ``t - 1``
is applied at step ``t``, *after* the leak: subtract gives
``R[t] = threshold s[t-1]``; zero gives ``mem[t-1] <- 0`` before the leak
for ``Leaky``, and ``mem[t] = 0`` (that step's drive to ``mem`` dropped;
``syn`` keeps integrating) for ``Synaptic``, ``RLeaky`` and ``RSynaptic``.
``reset_delay=False``: the reset is applied in the step of the spike, like ours.

Ours (``snn.model.neurons``): ``v[t] = beta (v[t-1] - threshold s[t-1]) + x[t]``,
the subtraction before the leak. Hence, exactly (up to rounding):

=====================  =============  ==========================================
snnTorch               reset_delay    ours
=====================  =============  ==========================================
Leaky subtract         False          LIF(beta), subtract  (*)
Leaky subtract         True, beta=1   IF, subtract (the delay commutes with no leak)
Leaky subtract         True, beta<1   LIF(beta), reset "none" + a self-projection
                                      of weight -threshold, delay 1 (a Graph)
Leaky zero             True or False  LIF(beta), zero (``beta * 0 + x[t]`` either way)
Synaptic subtract      False          CubaLIF(beta, alpha), subtract  (*)
Synaptic subtract      True, beta=1   CubaLIF(1, alpha), subtract
Synaptic subtract      True, beta<1   refused: the delayed subtraction acts on
                                      ``mem`` only, and a projection of ours
                                      feeds the current of a CubaLIF
Synaptic zero          False          CubaLIF, zero (``syn`` kept, as in snnTorch)
Synaptic zero          True           CubaLIF, zero, refractory 1 (``mem`` held
                                      at 0 one step, ``syn`` integrating)
RLeaky                 as Leaky       plus the recurrent self-projection, delay
                                      1 (a Graph); zero with reset_delay=True:
                                      LIF, zero, refractory 1 (the step after a
                                      spike is zeroed, input included)
RSynaptic              True           as Synaptic, plus the recurrent projection
RSynaptic              False          refused: snnTorch 1.0 itself fails on it
                                      (its forward reads the ``spk``/``mem``
                                      arguments, None under ``init_hidden``)
any "none"             -              reset "none" (fires, keeps mem); the last
                                      module with ``membrane_readout=True``: a
                                      never-firing membrane (threshold inf)
=====================  =============  ==========================================

(*) snnTorch with ``reset_delay=False`` applies an extra, delayed subtraction
when a membrane is *still* above threshold after its reset (its "avoid double
reset" term); ours then fires again. The two agree while no post-reset
membrane exceeds threshold, i.e. no neuron receives more than about one
threshold of net input in a step beyond what its spike removes.

snnTorch fires on ``mem > threshold``, ours on ``v >= threshold``: they
differ only when a membrane equals the threshold exactly.

Recurrent weights (``nn.Linear``, ``V``, an ``nn.Conv2d`` kernel) and the
``-threshold`` of a delayed subtraction are stored as float32 like every
weight of ours (exact for snnTorch's float32 parameters); a
recurrent ``nn.Linear``/``nn.Conv2d`` bias is added to the population's bias
(it enters every step, as in snnTorch, where ``rec(0)`` is that bias).

Chains without recurrence or delayed subtraction import as an
:class:`snn.Network` (inputs: analog currents or spikes, as before). Any other
model imports as an :class:`snn.Graph`: an input population ``"input"``
(spikes only: ``graph.run(T, inputs={"input": spikes})``), one population per
neuron module, named like the layers (``"1:RLeaky"``), feed-forward
projections of delay 0 and self-projections of delay 1 (``"1:RLeaky.rec"``,
``"1:Leaky.reset"``).

Layers: ``nn.Linear``, ``nn.Conv2d`` (integer zero padding) followed by a
neuron; ``nn.AvgPool2d`` on spikes followed by a neuron
(:class:`snn.AvgPool2d`); ``nn.MaxPool2d`` on spikes, which is the per-step
OR of the window, imported exactly as a depthwise convolution of ones onto
IF neurons (threshold 1, reset to zero); ``nn.Flatten`` (from dim 1);
``nn.Dropout`` / ``nn.Identity`` (identities at inference). Pooling applied to
currents (``Conv2d -> MaxPool2d -> Leaky``, snnTorch's tutorial order) is
refused: move the pool after the neuron. In a Graph, convolutions and
pooling are convolution projections between image populations (never
expanded); a recurrent ``nn.Conv2d`` is a convolution of the population
onto itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import snntorch
import torch
from torch import nn

from ..model.conv import AvgPool2d, Conv2d
from ..model.graph import Graph
from ..model.layers import Linear
from ..model.network import Network
from ..model.neurons import IF, LIF, CubaLIF, Neuron

__all__ = ["SnnTorchImportError", "from_snntorch", "register"]


class SnnTorchImportError(ValueError):
    """An snnTorch model (or option) that cannot be imported faithfully."""


@dataclass(frozen=True)
class _SelfProjection:
    """A projection of a layer's population onto itself with delay 1:
    ``weight`` ``[n, n]`` (torch layout ``[target, source]``), ``[n]``
    (one-to-one) or a convolution kernel ``[C, C / groups, kh, kw]`` with
    its ``conv`` arguments (stride, padding, dilation, groups); ``label``
    names it (``"rec"``, ``"reset"``)."""

    label: str
    weight: np.ndarray
    conv: dict | None = None


@dataclass
class _Builder:
    """State of the walk: the shape of the current signal (``(C, H, W)`` or
    ``(n,)``), the projection waiting for its neurons, the layers built and,
    per layer index, its self-projections (recurrence, delayed reset)."""

    shape: tuple | None
    membrane_readout: bool
    n_modules: int
    pending: dict | None = None
    layers: list = field(default_factory=list)
    selfs: dict = field(default_factory=dict)
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
    neuron, selfs = _neuron(m, b)
    extra_bias = 0.0
    if isinstance(m, _RECURRENT):
        rec, extra_bias = _recurrent(m, b)
        selfs = [rec, *selfs]
    p, b.pending = b.pending, None
    layer = _layer(p, neuron, f"{b.index}:{type(m).__name__}")
    if np.any(extra_bias != 0):
        layer.bias = layer.bias + extra_bias
    if selfs:
        b.selfs[len(b.layers)] = selfs
    b.layers.append(layer)


def _layer(p: dict, neuron: Neuron, name: str):
    """The layer of a pending projection onto ``neuron``."""
    if p["kind"] == "linear":
        n_out = p["weight"].shape[0]
        return Linear(p["n_in"], n_out, neuron, weight=p["weight"], bias=p["bias"], name=name)
    if p["kind"] == "conv":
        return Conv2d(
            p["in_shape"],
            p["out_channels"],
            p["kernel_size"],
            neuron,
            weight=p["weight"],
            bias=p["bias"],
            name=name,
            **p["kwargs"],
        )
    return AvgPool2d(p["in_shape"], p["kernel_size"], p["stride"], neuron, name=name)


def _recurrent(m, b: _Builder) -> tuple[_SelfProjection, np.ndarray | float]:
    """RLeaky/RSynaptic's feedback of the previous step's spikes: the
    self-projection (delay 1) and the per-neuron bias it adds every step."""
    rec, n = m.recurrent, int(np.prod(b.shape))
    if not m.all_to_all:  # RecurrentOneToOne: s * V, V a scalar or one value per neuron
        v = _array(torch.as_tensor(rec.V)).reshape(-1)
        if v.size not in (1, n):
            raise b.error(f"V has {v.size} values but the layer has {n} neurons")
        if np.isnan(v).any():
            raise b.error("V is NaN")
        return _SelfProjection("rec", np.broadcast_to(v, (n,)).copy()), 0.0
    bias = _array(rec.bias) if rec.bias is not None else None
    if isinstance(rec, nn.Linear):
        if (rec.in_features, rec.out_features) != (n, n):
            raise b.error(
                f"the recurrent nn.Linear({rec.in_features}, {rec.out_features}) does not map the "
                f"layer's {n} neurons onto themselves (linear_features={n})"
            )
        return _SelfProjection("rec", _array(rec.weight)), (0.0 if bias is None else bias)
    if isinstance(rec, nn.Conv2d):
        shape = b.need_image("a recurrent nn.Conv2d")
        if rec.padding_mode != "zeros" or isinstance(rec.padding, str):
            raise b.error("a recurrent nn.Conv2d is supported with integer zero padding")
        window = {
            "stride": rec.stride,
            "padding": rec.padding,
            "dilation": rec.dilation,
            "groups": rec.groups,
        }
        weight = _array(rec.weight)
        conv = Conv2d(shape, rec.out_channels, rec.kernel_size, IF(), weight=weight, **window)
        if conv.out_shape != shape:
            raise b.error(
                f"the recurrent nn.Conv2d maps {shape} onto {conv.out_shape}, not onto the layer "
                "itself (use an odd kernel_size)"
            )
        per_neuron = 0.0 if bias is None else np.repeat(bias, shape[1] * shape[2])
        return _SelfProjection("rec", weight, window), per_neuron
    raise b.error(f"recurrent module {type(rec).__name__} is not supported (nn.Linear, nn.Conv2d or V)")


# -- neurons ----------------------------------------------------------------------

_RESETS = {0: "subtract", 1: "zero", 2: "none"}
_RECURRENT = (snntorch.RLeaky, snntorch.RSynaptic)
_WITH_CURRENT = (snntorch.Synaptic, snntorch.RSynaptic)


def _neuron(m, b: _Builder) -> tuple[Neuron, list]:
    """Our neuron for snnTorch neuron module ``m`` (see the module's table)
    and the self-projections its reset needs (a delayed subtraction)."""
    kind = type(m).__name__
    _refuse_options(m, b, kind)
    beta = _uniform(m.beta.detach().clamp(0, 1), b, "beta")
    threshold = _uniform(m.threshold.detach(), b, "threshold")
    alpha = _uniform(m.alpha.detach().clamp(0, 1), b, "alpha") if isinstance(m, _WITH_CURRENT) else None
    if not threshold > 0:
        raise b.error(f"{kind} threshold must be > 0, got {threshold}")
    reset = _RESETS[int(m.reset_mechanism_val)]
    delay = bool(getattr(m, "reset_delay", True))
    refractory, selfs = 0, []
    if reset == "none":
        if b.membrane_readout and b.index == b.n_modules - 1:
            threshold, reset = math.inf, "subtract"
    elif isinstance(m, snntorch.RSynaptic) and not delay:
        raise b.error(
            "RSynaptic(reset_delay=False) fails in snnTorch itself (its forward reads the spk/mem "
            "arguments, None under init_hidden=True), so there is no behaviour to import; use "
            "reset_delay=True"
        )
    elif delay and reset == "subtract" and beta != 1.0:
        if alpha is not None:
            raise b.error(
                f"{kind}(reset_mechanism='subtract', reset_delay=True) with beta={beta:g} < 1 "
                "subtracts the threshold from mem one step after the spike; our projections feed "
                f"the synaptic current of a CubaLIF, not its membrane. Construct it with {kind}(..., "
                "reset_delay=False) (same parameters, reset in the step of the spike) and fine-tune "
                "briefly"
            )
        # mem[t] = beta mem[t-1] + x[t] - threshold s[t-1]: no reset, and the spike fed back
        reset = "none"
        selfs.append(_SelfProjection("reset", np.full(int(np.prod(b.shape)), -threshold)))
    elif delay and reset == "zero" and not isinstance(m, snntorch.Leaky):
        refractory = 1  # mem[t] = 0 after a spike at t - 1: held one step, input to mem dropped
    if alpha is not None:
        return CubaLIF(beta, alpha, threshold=threshold, reset=reset, refractory=refractory), selfs
    if beta == 1.0:
        return IF(threshold=threshold, reset=reset, refractory=refractory), selfs
    return LIF(beta, threshold=threshold, reset=reset, refractory=refractory), selfs


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
    snntorch.RLeaky: _neuron_layer,
    snntorch.RSynaptic: _neuron_layer,
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


def from_snntorch(
    module, in_shape=None, *, membrane_readout: bool = False, dtype=np.float64
) -> Network | Graph:
    """Import an snnTorch model as an event-driven :class:`snn.Network` (a
    chain) or :class:`snn.Graph` (recurrent, or with a delayed subtraction).

    Parameters
    ----------
    module : ``nn.Sequential`` (nested ones are flattened) or a list of
        modules in forward order: ``nn.Linear``/``nn.Conv2d``/``nn.AvgPool2d``
        followed by ``snntorch.Leaky``/``Synaptic``/``RLeaky``/``RSynaptic``,
        ``nn.MaxPool2d`` and ``nn.Flatten`` on spikes, ``nn.Dropout``/``nn.Identity``.
        Learnable ``beta``/``alpha``/``threshold`` are taken at their current
        (trained) values, clamped to [0, 1] like snnTorch does.
    in_shape : ``(C, H, W)`` of one input sample when the model starts with a
        convolution or pooling (the network's input is the flattened
        channel-first sample, ``x.reshape(B, -1)``); ``None`` for models
        starting with ``nn.Linear``.
    membrane_readout : import a last neuron with ``reset_mechanism="none"``
        as a never-firing membrane (threshold inf): ``result.membrane`` is
        snnTorch's final ``mem`` (otherwise it imports as reset ``"none"``:
        it fires and keeps its membrane, as in snnTorch).
    dtype : state precision of the network (float64: closest to snnTorch
        run in float64).

    Returns
    -------
    Network (a chain: no ``RLeaky``/``RSynaptic``, no delayed subtraction
    with ``beta < 1``) whose spike trains equal snnTorch's for the same
    input (analog ``[T, B, n]`` or constant ``[B, n]`` currents, or 0/1
    spikes); otherwise a Graph with an input population ``"input"`` (0/1
    spikes ``[T, B, n]``: ``graph.run(T, inputs={"input": spikes})``) and
    one population per neuron module named like its layer (``"1:RLeaky"``),
    whose spikes equal snnTorch's. See the module docstring for the exact
    correspondence and what is refused.

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
            "an snnTorch neuron (Leaky, Synaptic, RLeaky, RSynaptic; use reset_mechanism='none' and "
            "membrane_readout=True for a membrane readout)"
        )
    if b.selfs:
        return _graph(b, dtype)
    return Network(b.layers, dtype=dtype)


def _graph(b: _Builder, dtype) -> Graph:
    """The layers as a Graph: an input population, one population per layer
    (an image ``(C, H, W)`` after a convolution or pooling) fed by the
    previous one with delay 0 (a convolution, or the layer's weights as a
    dense matrix), and the self-projections (delay 1)."""
    g = Graph(dt=1.0, dtype=dtype)
    first = b.layers[0]
    source = g.input(first.in_shape if isinstance(first, Conv2d) else first.n_in, name="input")
    for k, layer in enumerate(b.layers):
        conv = isinstance(layer, Conv2d)
        pop = g.population(
            layer.out_shape if conv else layer.n_out,
            layer.neuron,
            bias=layer.bias,
            v_init=layer.v_init,
            name=layer.name,
        )
        name = f"{source.name}->{pop.name}"
        if conv:
            g.conv(source, pop, layer.weight, **_window(layer), delay=0, name=name)
        else:
            g.connect(source, pop, layer.dense_rows(np.float32).T, delay=0, name=name)
        for sp in b.selfs.get(k, ()):
            name = f"{pop.name}.{sp.label}"
            if sp.conv is not None:
                g.conv(pop, pop, sp.weight, **sp.conv, delay=1, name=name)
            elif sp.weight.ndim == 1:  # one-to-one
                diagonal = (np.arange(pop.n + 1), np.arange(pop.n))
                g.connect(pop, pop, sp.weight, connectivity=diagonal, delay=1, name=name)
            else:
                g.connect(pop, pop, sp.weight, delay=1, name=name)
        source = pop
    return g


def _window(layer: Conv2d) -> dict:
    """Stride, padding, dilation and groups of a convolution layer."""
    sy, sx, py, px, dy, dx, groups = (int(v) for v in layer.geom[8:15])
    return {"stride": (sy, sx), "padding": (py, px), "dilation": (dy, dx), "groups": groups}


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
