"""Layer-wise calibration of a converted network: correct the systematic
error of rate coding at a chosen number of steps ``T``.

At few steps a converted layer's spike rate misses the ANN activation it
stands for: by the rounding of ``T`` steps, by the clipping at the threshold,
and by the errors of the layers below, which pass on. Their expected value
over the data is a per-channel offset, and a constant offset is what a bias
can undo. Layer by layer, bottom up (each layer is corrected with the layers
below already corrected), the SNN is run on the calibration data and

    error_c = mean over samples and positions of (a / lambda - rate)

is computed per channel (per neuron for a Linear layer), where ``a`` is the
ANN's activation, ``lambda`` the layer's scale and ``rate`` the spike count
divided by ``T``; the readout compares the ANN's logits with its membrane
divided by ``T``. The error is then added

- to the bias (``what="bias"``: ``error`` per step), or
- to the initial membrane (``what="potential"``: ``T * error`` once, the same
  charge over ``T`` steps),

in the spirit of the bias and potential corrections of Li et al., "A free
lunch from ANN: towards efficient, accurate spiking neural networks
calibration" (ICML 2021). Exact for the steps it is computed at; at other
``T`` it usually still helps, since most of the error is systematic.

``what="weights"`` (graphs, :class:`snn.convert.ConvertedGraph`) goes
further, in the spirit of the same paper's layer-wise weight calibration:
layer by layer, bottom up, the population's incoming weights and its bias
(per channel) are fitted so that its ``T``-step rates, given the spike
trains its sources actually emit in the SNN (recorded step by step, so the
uneven arrival of spikes over few steps is part of the fit), match the
normalised ANN activation in the least-squares sense. The fit runs a few
epochs of Adam on a float32 torch twin of the population (IF neurons,
subtract reset, the same steps as the simulator: the twin's spike counts
equal the simulator's), through the threshold with a straight-through
gradient (``d spike / d v = 1`` within half a threshold of it; through the
reset too, so that one threshold of extra charge is one more spike), and a
population keeps its fitted weights only if they lower the error on the
calibration data. The readout (membrane / T against the ANN's logits) is
linear in its weights: the same fit is a least-squares regression there.

``what="network"`` (graphs) fits every population's weights and biases
jointly instead, end to end, so that the readout matches the ANN's logits
(a torch twin of the whole graph, each population driven by the twin's own
spikes): conversion followed by a short distillation from the ANN, as in
the hybrid conversion-then-training of Rathi et al., "Enabling deep
spiking neural networks with hybrid conversion and spike timing dependent
backpropagation" (ICLR 2020), but without labels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..model.conv import Conv2d
from .base import ConversionError, check_samples
from .chain import ConvertedNetwork, _apply
from .dispatch import _check_converted, _is_graph
from .evaluation import fan_out
from .graph import normalised

WHAT = ("bias", "potential", "weights", "network")
EPOCHS = {"weights": 20, "network": 80}  # the fits' default epochs (chosen on DIGITS-RESNET)


@dataclass
class LayerCalibration:
    """What calibration did to one layer (means over neurons, in units of
    the layer's threshold; the readout's in the units of the logits).

    error_before : mean absolute per-channel error before this layer was
        corrected (the layers below already corrected).
    error_after : the same after every layer was corrected.
    shift : mean of the correction added (per step for ``bias``, once for
        ``potential``).
    """

    name: str
    error_before: float
    error_after: float
    shift: float
    weight_change: float = 0.0  # what="weights": ||W' - W|| / ||W|| of the incoming weights (normalised)


def calibrate(
    converted: ConvertedNetwork,
    calibration_data,
    T: int,
    *,
    what: str = "potential",
    readout: bool | None = None,
    passes: int = 1,
    epochs: int | None = None,
    lr: float = 3e-3,
    seed: int = 0,
    spike_cost: float = 0.0,
) -> ConvertedNetwork:
    """A copy of ``converted`` whose initial membranes (``what="potential"``)
    or biases (``"bias"``) are corrected layer by layer at ``T`` steps on
    ``calibration_data`` (``[N, *input_shape]``, e.g. the training set);
    ``converted`` is not changed. ``readout``: also shift the readout by
    its mean error per class (off by default, ``None``, for ``bias`` and
    ``potential``: on DIGITS it cost accuracy, since a per-class offset learnt
    from the mean does not help the argmax); with ``what="weights"`` the
    readout's weights are fitted to the logits by default.

    ``what="weights"`` (a :class:`snn.convert.ConvertedGraph` only; see the
    module docstring): fit each population's incoming weights and per-channel
    bias so that its ``T``-step rates, given its sources' spike trains in the
    SNN, match the ANN's activations in least squares (``epochs`` epochs of
    Adam at learning rate ``lr`` in batches of 128, drawn with ``seed``;
    threshold units). The ANN the targets come from (``converted.pops``) is
    never changed; the corrections are kept in ``w_shift`` and ``b_shift``
    and add to those of earlier calls, so the usual recipe is the potential
    correction, then the weights: ``calibrate(calibrate(c, x, T, passes=2),
    x, T, what="weights")``. On DIGITS-RESNET at T = 4 (``convert(model,
    x_train, T=4)``, three ANN seeds) it halved the readout's relative error
    against the logits on the test digits (0.38-0.41 -> 0.21-0.22); test
    accuracy 98.52 -> 98.52 %, 97.78 -> 98.70 %, 97.41 -> 98.52 % (540
    digits: 1 digit = 0.19 pp). ``epochs=20, lr=3e-3`` were chosen on a
    validation split of the training digits. The report's ``error_before`` /
    ``error_after`` are then the root mean square error of the rates (per
    neuron and sample; the readout's in logits), ``shift`` the mean bias
    added, ``weight_change`` the relative change of the incoming weights.
    The copy's ``calibration`` holds a :class:`LayerCalibration` per
    corrected layer (pooling layers have nothing to correct). Costs one run
    of the network on the data per layer, plus one. Calibrating a calibrated
    network corrects it further: the new shifts add to the old (e.g. the
    biases, then the initial membranes).

    ``what="network"`` (a :class:`snn.convert.ConvertedGraph`; through its
    max-pool gates too): fit every population's incoming weights and
    per-channel bias jointly, end to end, so that the readout (membrane /
    T) matches the ANN's logits on ``calibration_data`` in least squares
    (knowledge distillation from the ANN: no labels), plus ``spike_cost`` times the
    network's SynOps per ANN MAC (counted as the simulator counts them: each
    spike times its fan-out), which trades accuracy for fewer synaptic
    operations. The fit runs ``epochs`` epochs (default 80) of Adam at
    ``lr`` in batches of 64 on a float32 torch twin of the whole graph, each
    population driven by the twin's own spikes, through the thresholds by
    the straight-through gradient of ``what="weights"``; the result is kept
    only if that objective is then lower in the simulator on the data
    (otherwise the graph comes back unchanged, every ``weight_change`` 0).
    The hidden populations' rates may move away from the ANN's activations
    (their errors in the report can rise) while the readout comes closer.
    ``readout=False`` leaves the readout's own weights and bias as they are.

    On DIGITS-RESNET, on a validation split of the training digits (1,000
    fitted, 257 held out; T = 4): from ``calibrate(convert(model, x, T=4), x,
    4, passes=2)`` the readout's mean square error against the logits on the
    held-out digits fell from 1.9-2.1 to 0.37-0.40 in 40 epochs (three ANN
    seeds; lr 1e-3 and 3e-3 tried, 5-40 epochs: it fell all the way); from
    ``convert(model, x, percentile=100, max_rate=0.8)`` the objective with
    ``spike_cost=2`` fell 1.11 / 0.89 / 0.73 at 40 / 80 / 160 epochs (0.25 /
    0.19 / 0.14 SynOps per MAC), without it 0.51 / 0.43 / 0.32: 80 epochs is
    the default, a compromise with the time. It costs about ``epochs``
    forward and backward passes of the twin over the data (1,257 digits:
    20 s at T = 4, 70 s at T = 16) and two runs.

    ``passes``: repeat the layer-by-layer correction this many times (each
    pass costs as much as the first). A shift changes a layer's rates
    through the rounding of spikes, not exactly by the mean it corrects, so
    a second pass removes most of what the first leaves: on DIGITS-RESNET
    (``percentile=100, max_rate=0.8``, T = 16) the mean per-channel error
    fell 0.0018-0.0033 -> 0.0003-0.0010 per layer and the accuracy at T = 8
    rose 95.6 -> 96.7 %; a third pass changed nothing that mattered. The
    report's ``error_before`` is the first pass's, ``error_after`` and
    ``shift`` (summed) the whole call's.

    ``calibration_data`` is checked like :func:`snn.convert.convert`'s
    (:func:`snn.convert.check_samples`: a non-empty batch of finite floats of
    the converted model's input shape); :class:`ConversionError` otherwise."""
    _check_converted(converted)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, got {what!r}")
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes <= 0:
        raise ValueError(f"passes must be a positive integer, got {passes!r}")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs <= 0
    ):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating)) or not (0 < lr < np.inf):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if (
        isinstance(spike_cost, bool)
        or not isinstance(spike_cost, (int, float, np.integer, np.floating))
        or not (0 <= spike_cost < np.inf)
    ):
        raise ValueError(f"spike_cost must be a finite number >= 0, got {spike_cost!r}")
    if spike_cost and what != "network":
        raise ValueError(f"spike_cost is a term of what='network''s fit, not of what={what!r}")
    if readout is not None and not isinstance(readout, (bool, np.bool_)):
        raise ValueError(f"readout must be True, False or None, got {readout!r}")
    if what in EPOCHS:
        if not _is_graph(converted):
            raise ValueError(
                f"what={what!r} calibrates a ConvertedGraph (a model converted to an snn.Graph); a "
                "ConvertedNetwork (a chain of layers) supports what='bias' and what='potential'"
            )
        readout = True if readout is None else bool(readout)
        fit = dict(epochs=int(EPOCHS[what] if epochs is None else epochs), lr=float(lr), seed=seed)
        if what == "network":
            fit["spike_cost"] = float(spike_cost)
    else:
        readout = bool(readout)
        fit = None
    result = _calibrate_once(converted, calibration_data, int(T), what, readout, fit)
    first = result.calibration
    for _ in range(int(passes) - 1):
        was = result.calibration
        result = _calibrate_once(result, calibration_data, int(T), what, readout, fit)
        report = [
            replace(a, shift=a.shift + b.shift, weight_change=a.weight_change + b.weight_change)
            for a, b in zip(result.calibration, was, strict=True)
        ]
        result = replace(result, calibration=report)
    report = [replace(a, error_before=b.error_before) for a, b in zip(result.calibration, first, strict=True)]
    return replace(result, calibration=report)


def _calibrate_once(converted, calibration_data, T, what, readout, fit=None):
    """One pass of :func:`calibrate` (arguments checked)."""
    if what == "weights":
        return _calibrate_graph_weights(converted, calibration_data, int(T), readout, **fit)
    if what == "network":
        return _calibrate_graph_network(converted, calibration_data, int(T), readout, **fit)
    if _is_graph(converted):
        return _calibrate_graph(converted, calibration_data, int(T), what, readout)
    x = converted._flat(calibration_data, "calibration_data")
    targets = _ann_targets(converted, x)
    for k, target in enumerate(targets):
        if target is not None and not np.isfinite(target).all():
            raise ConversionError(
                f"layer {converted.network.layer_name(k)!r}: the ANN's activation on calibration_data "
                "is NaN or inf (it overflows); check the scale of the data"
            )
    network = copy.deepcopy(converted.network)
    layers = network.layers
    last = len(layers) - 1
    before, shifts = {}, {}
    for k, target in enumerate(targets):
        if target is None or (k == last and not readout):
            continue
        error = _channel_error(layers[k], target, _snn_output(network.run(analog=x, T=int(T)), k, last, T))
        before[k] = float(np.abs(error).mean())
        shift = error if what == "bias" else T * error
        shifts[k] = float(shift.mean())
        if what == "bias":
            layers[k].bias = layers[k].bias + shift
        else:
            layers[k].v_init = layers[k].v_init + shift
    final = network.run(analog=x, T=int(T))
    report = [
        LayerCalibration(
            network.layer_name(k),
            before[k],
            float(np.abs(_channel_error(layers[k], targets[k], _snn_output(final, k, last, T))).mean()),
            shifts[k],
        )
        for k in sorted(before)
    ]
    return replace(converted, network=network, calibration=report)


def _snn_output(result, k, last, T) -> np.ndarray:
    """Layer ``k``'s rate per neuron ``[N, n]`` (the readout, ``last``: membrane / T)."""
    if k == last:
        return result.membrane / T
    return result.trains[k].counts_per_neuron() / T


def _channel_error(layer, target, output) -> np.ndarray:
    """Mean of ``target - output`` over samples, and over the positions of a
    channel for a convolution; one value per neuron ``[n]``."""
    error = (target - output).mean(axis=0)
    if isinstance(layer, Conv2d):
        c, h, w = layer.out_shape
        error = np.repeat(error.reshape(c, h * w).mean(axis=1), h * w)
    return error


def _ann_targets(converted: ConvertedNetwork, x: np.ndarray) -> list:
    """What each SNN layer should output, ``[N, n]`` float64 per layer (None
    for pooling layers): the normalised activation ``min(a / lambda, 1)``,
    and the logits for the readout. Walks the folded ops as the converter
    built the layers."""
    ops = converted.ops
    last = max(i for i, op in enumerate(ops) if op.kind == "affine")
    scales = iter(converted.scales)
    h = torch.as_tensor(x, dtype=torch.float64)
    targets = []
    i = 0
    with torch.no_grad():
        while i <= last:
            op = ops[i]
            if op.kind == "flatten":
                h = _apply(op, h)
                i += 1
                continue
            if op.kind in ("maxpool", "avgpool"):
                h = _apply(op, h.reshape(-1, *op.meta["in_shape"]))
                targets.append(None)
                i += 1
                continue
            z = _apply(op, h.reshape(-1, *op.meta["in_shape"]))
            if i == last:
                targets.append(z.reshape(len(x), -1).numpy())
                break
            h = _apply(ops[i + 1], z)
            lam = np.asarray(next(scales), np.float64)
            if lam.ndim:  # one scale per channel
                lam = lam.reshape((1, -1) + (1,) * (h.ndim - 2))
            targets.append(np.minimum(h.numpy() / lam, 1.0).reshape(len(x), -1))
            i += 2
    return targets


# -- graphs ---------------------------------------------------------------------------


def _graph_targets(converted, calibration_data):
    """``(x, targets)``: the checked calibration samples and the ANN's
    activation of every population on them (``{name: [N, n]}``, finite)."""
    x = check_samples(calibration_data, "calibration_data", converted.input_shape)
    targets = converted.ann_activations(x)
    for name, target in targets.items():
        if not np.isfinite(target).all():
            raise ConversionError(
                f"population {name!r}: the ANN's activation on calibration_data is NaN or inf "
                "(it overflows); check the scale of the data"
            )
    return x, targets


def _calibrate_graph(converted, calibration_data, T, what, readout):
    """:func:`calibrate` for a :class:`snn.convert.ConvertedGraph`:
    population by population in topological order (each corrected with its
    sources already corrected), the target the normalised ANN activation
    ``min(a / lambda, 1)`` (the logits for the readout), per channel; the
    graph is rebuilt with the shifts after each population. The shifts of a
    graph calibrated before are kept and added to, as a chain's layers
    keep theirs."""
    x, targets = _graph_targets(converted, calibration_data)
    held = converted.b_shift if what == "bias" else converted.v_shift  # a calibrated graph's: kept
    shifts = {
        p.name: np.array(held.get(p.name, np.zeros(int(np.prod(p.shape)))), float) for p in converted.pops
    }
    before, mean_shift = {}, {}
    current = converted.rebuilt()

    def error_of(pop, result):
        lam = converted.scales[pop.name]
        channel = _graph_channels(pop.shape)
        if pop.kind == "readout":
            target, output = targets[pop.name], result.membrane / T
        else:
            target = np.minimum(targets[pop.name] / lam[channel], 1.0)
            output = result.spike_counts(pop.name) / T
        error = (target - output).mean(axis=0)
        return np.bincount(channel, error)[channel] / np.bincount(channel)[channel]

    for pop in converted.pops:
        if (pop.kind == "readout" and not readout) or pop.kind == "maxpool":  # a gate has no membrane
            continue
        error = error_of(pop, current.run(x, T))
        before[pop.name] = float(np.abs(error).mean())
        shift = error if what == "bias" else T * error
        mean_shift[pop.name] = float(shift.mean())
        shifts[pop.name] = shifts[pop.name] + shift
        current = current.rebuilt(b_shift=shifts) if what == "bias" else current.rebuilt(v_shift=shifts)
    final = current.run(x, T)
    report = [
        LayerCalibration(
            pop.name, before[pop.name], float(np.abs(error_of(pop, final)).mean()), mean_shift[pop.name]
        )
        for pop in converted.pops
        if pop.name in before
    ]
    return replace(current, calibration=report)


def _graph_channels(shape) -> np.ndarray:
    if len(shape) == 3:
        return np.repeat(np.arange(shape[0]), shape[1] * shape[2])
    return np.arange(int(np.prod(shape)))


# -- weights (graphs) ----------------------------------------------------------------

FIT_BATCH = 128  # samples per Adam step of the weight fit
EVAL_BATCH = 512  # samples per chunk when the fit's error is measured on all the data


def _calibrate_graph_weights(converted, calibration_data, T, readout, epochs, lr, seed):
    """One pass of ``calibrate(..., what="weights")`` on a graph: population
    by population in topological order, each fitted with its sources already
    fitted; the graph is rebuilt with the corrections after each population."""
    x, targets = _graph_targets(converted, calibration_data)
    shapes = {p.name: p.shape for p in converted.pops}
    b_shift = {k: np.array(v, float) for k, v in converted.b_shift.items()}  # a calibrated graph's: kept
    w_shift = {k: [np.array(w, float) for w in v] for k, v in converted.w_shift.items()}
    current = converted.rebuilt(b_shift=b_shift, w_shift=w_shift)
    generator = torch.Generator().manual_seed(int(seed))
    xt = torch.from_numpy(x.astype(np.float32))
    before, after, mean_shift, change = {}, {}, {}, {}
    for pop in converted.pops:
        if (pop.kind == "readout" and not readout) or pop.kind == "maxpool":  # a gate has no weights
            continue
        twin = _Twin(current, pop, shapes, x, xt, targets[pop.name], T)
        error = twin.error()
        fitted = twin.fit(epochs, lr, generator)
        if fitted < error:
            n = int(np.prod(pop.shape))
            old = w_shift.get(pop.name, [np.zeros_like(w) for w in twin.start])
            w_shift[pop.name] = [
                o + (w.detach().double().numpy() - s) for o, w, s in zip(old, twin.w, twin.start, strict=True)
            ]
            db = twin.db.detach().double().numpy()[twin.channel]
            b_shift[pop.name] = b_shift.get(pop.name, np.zeros(n)) + db
            current = current.rebuilt(b_shift=b_shift, w_shift=w_shift)
            mean_shift[pop.name] = float(db.mean())
            change[pop.name] = twin.change()
        else:  # the fit did not lower the error (e.g. rates fed by analog input): keep the layer as it was
            mean_shift[pop.name], change[pop.name] = 0.0, 0.0
        before[pop.name] = float(np.sqrt(error))
    final = current.run(x, T)
    for pop in converted.pops:
        if pop.name in before:
            after[pop.name] = float(np.sqrt(_rate_mse(pop, final, current, targets[pop.name], T)))
    report = [
        LayerCalibration(p.name, before[p.name], after[p.name], mean_shift[p.name], change[p.name])
        for p in converted.pops
        if p.name in before
    ]
    return replace(current, calibration=report)


def _start_weights(current, pop, shapes) -> list:
    """The population's incoming weights as ``current`` runs them (normalised,
    threshold units, with its ``w_shift``): one array per projection, in order."""
    lam = current.scales[pop.name]
    weights = []
    for j, proj in enumerate(pop.projections):
        src_shape = current.input_shape if proj.source is None else shapes[proj.source]
        lam_src = np.ones(src_shape[0] if len(src_shape) == 3 else int(np.prod(src_shape)))
        if proj.source is not None:
            lam_src = current.scales[proj.source]
        w = normalised(proj, lam_src, lam, src_shape, pop.shape)
        if pop.name in current.w_shift:
            w = w + current.w_shift[pop.name][j]
        weights.append(w)
    return weights


def _trainable(w: np.ndarray) -> torch.Tensor:
    """``w`` as a float32 parameter whose zeros stay zero (no synapse is created)."""
    param = torch.tensor(w, dtype=torch.float32, requires_grad=True)
    if (w == 0).any():
        mask = torch.from_numpy(w != 0)
        param.register_hook(lambda grad, mask=mask: grad * mask)
    return param


def _bias_and_start(current, pop, channel) -> tuple:
    """``(bias, v0)`` float32 ``[n]`` of the population as ``current`` runs it
    (threshold units, with its shifts; the readout starts at 0)."""
    lam = current.scales[pop.name]
    bias = pop.bias.reshape(-1) / lam[channel] + current.b_shift.get(pop.name, 0.0)
    start = 0.0 if pop.kind == "readout" else (pop.clip["shift"] if pop.clip is not None else current.v_init)
    v0 = np.full(len(channel), start) + current.v_shift.get(pop.name, 0.0)
    return torch.from_numpy(np.asarray(bias, np.float32)), torch.from_numpy(np.asarray(v0, np.float32))


def _drive(pop, weights, sources, base) -> torch.Tensor:
    """The population's input current ``[B * T, n]``: ``base`` (``[B * T, n]``,
    its bias) plus each projection's weights applied to its source, one
    ``[B * T, *source_shape]`` tensor per projection."""
    current = base
    for proj, w, src in zip(pop.projections, weights, sources, strict=True):
        if proj.kind == "conv":
            g = proj.geom
            y = F.conv2d(src, w, None, g["stride"], g["padding"], g["dilation"], g["groups"])
        elif proj.kind == "dense":
            y = src.reshape(len(src), -1) @ w.T
        else:  # one to one
            y = src.reshape(len(src), -1) * w
        current = current + y.reshape(len(src), -1)
    return current


def _if_spikes(v0, current) -> torch.Tensor:
    """IF neurons (threshold 1, subtract reset) from ``v0`` ``[n]`` on
    ``current`` ``[B, T, n]``: their spikes ``[B, T, n]``, differentiable
    through the threshold by a straight-through gradient (``d spike / d v = 1``
    within half a threshold of it; through the reset too, so that one
    threshold of extra charge is one more spike)."""
    B, T, n = current.shape
    v, spikes = v0.expand(B, n), []
    for t in range(T):
        v = v + current[:, t]
        hard = (v >= 1.0).to(v.dtype)
        soft = torch.clamp(v - 0.5, 0.0, 1.0)
        spike = hard + (soft - soft.detach())
        v = v - spike
        spikes.append(spike)
    return torch.stack(spikes, 1)


def _rate_mse(pop, result, current, target, T) -> float:
    """The population's mean square rate error in a simulator run (the
    readout: membrane / T against the logits)."""
    if pop.kind == "readout":
        return float(((result.membrane / T - target) ** 2).mean())
    lam = current.scales[pop.name][_graph_channels(pop.shape)]
    return float(((result.spike_counts(pop.name) / T - np.minimum(target / lam, 1.0)) ** 2).mean())


def _relative_change(weights, start) -> float:
    """``||W' - W|| / ||W||`` over the projections (parameters against their start arrays)."""
    moved = sum(
        float(((w.detach().double().numpy() - s) ** 2).sum()) for w, s in zip(weights, start, strict=True)
    )
    norm = sum(float((s**2).sum()) for s in start)
    return float(np.sqrt(moved / norm)) if norm > 0 else 0.0


class _Twin:
    """One population of a converted graph in torch (float32): its incoming
    projections (normalised weights, trainable), its per-channel bias
    correction (trainable), IF neurons with subtract reset run for ``T``
    steps on the spike trains its sources emitted in ``current``'s run (the
    analog input: constant). The readout: membrane / T."""

    def __init__(self, current, pop, shapes, x, xt, target, T):
        self.pop, self.T, self.xt = pop, T, xt
        self.readout = pop.kind == "readout"
        lam = current.scales[pop.name]
        self.channel = _graph_channels(pop.shape)
        self.n = int(np.prod(pop.shape))
        if not self.readout:
            target = np.minimum(target / lam[self.channel], 1.0)
        self.target = torch.from_numpy(np.ascontiguousarray(target, np.float32))
        result = current.run(x, T)
        self.start = _start_weights(current, pop, shapes)
        self.w = [_trainable(w) for w in self.start]
        self.inputs = []
        for proj in pop.projections:
            src_shape = current.input_shape if proj.source is None else shapes[proj.source]
            if proj.source is None:
                self.inputs.append((None, src_shape))
            else:  # [B, T, n] 0/1
                spikes = torch.from_numpy(result.spikes(proj.source).astype(np.float32)).permute(1, 0, 2)
                self.inputs.append((spikes.contiguous(), src_shape))
        self.bias, self.v0 = _bias_and_start(current, pop, self.channel)
        self.db = torch.zeros(int(self.channel.max()) + 1, requires_grad=True)
        self.channel_t = torch.from_numpy(self.channel)

    def forward(self, idx) -> torch.Tensor:
        """Rates ``[len(idx), n]`` (the readout: membrane / T) of samples ``idx``."""
        B, T, n = len(idx), self.T, self.n
        sources = [
            self.xt[idx].unsqueeze(1).expand(B, T, *shape).reshape(B * T, *shape)
            if spikes is None
            else spikes[idx].reshape(B * T, *shape)
            for spikes, shape in self.inputs
        ]
        base = (self.bias + self.db[self.channel_t]).expand(B * T, n)
        current = _drive(self.pop, self.w, sources, base).reshape(B, T, n)
        if self.readout:
            return current.sum(1) / T
        return _if_spikes(self.v0, current).sum(1) / T

    def error(self) -> float:
        """Mean square error of the rates against the target, all samples."""
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(self.target), EVAL_BATCH):
                idx = torch.arange(start, min(start + EVAL_BATCH, len(self.target)))
                total += float(((self.forward(idx) - self.target[idx]) ** 2).sum())
        return total / self.target.numel()

    def fit(self, epochs, lr, generator) -> float:
        """Adam on the weights and the bias correction; returns the error after."""
        opt = torch.optim.Adam(self.w + [self.db], lr=lr)
        for _ in range(epochs):
            order = torch.randperm(len(self.target), generator=generator)
            for start in range(0, len(order), FIT_BATCH):
                idx = order[start : start + FIT_BATCH]
                opt.zero_grad()
                ((self.forward(idx) - self.target[idx]) ** 2).mean().backward()
                opt.step()
        return self.error()

    def change(self) -> float:
        """``||W' - W|| / ||W||`` over the incoming projections (normalised weights)."""
        return _relative_change(self.w, self.start)


# -- the whole network (graphs) ------------------------------------------------------

NETWORK_BATCH = 64  # samples per Adam step of the end-to-end fit


def _calibrate_graph_network(converted, calibration_data, T, readout, epochs, lr, seed, spike_cost):
    """One pass of ``calibrate(..., what="network")``: every population's
    weights and bias fitted jointly (:class:`_NetworkTwin`); kept only if the
    fit's objective (the readout's mean square error against the logits,
    plus ``spike_cost`` times the SynOps per ANN MAC) is then lower in the
    simulator on the data."""
    x, targets = _graph_targets(converted, calibration_data)
    current = converted.rebuilt()
    before_run = current.run(x, T)
    twin = _NetworkTwin(current, T, readout)
    macs = converted.ann_total_macs
    generator = torch.Generator().manual_seed(int(seed))
    twin.fit(x, targets[converted.readout], epochs, lr, generator, spike_cost, macs)
    fitted = twin.rebuilt(current)
    after_run = fitted.run(x, T)

    def objective(net, result) -> float:
        error = _rate_mse(converted.pops[-1], result, net, targets[converted.readout], T)
        return error + spike_cost * result.total("synops") / len(x) / macs

    kept = objective(fitted, after_run) < objective(current, before_run)
    if not kept:  # the fit did not lower its objective in the simulator: the network as it was
        fitted, after_run = current, before_run
    report = []
    for pop in converted.pops:
        if (pop.kind == "readout" and not readout) or pop.kind == "maxpool":  # a gate has no weights
            continue
        db = twin.db[pop.name].detach().double().numpy()[twin.channel[pop.name]] if kept else np.zeros(1)
        report.append(
            LayerCalibration(
                pop.name,
                float(np.sqrt(_rate_mse(pop, before_run, current, targets[pop.name], T))),
                float(np.sqrt(_rate_mse(pop, after_run, fitted, targets[pop.name], T))),
                float(db.mean()),
                _relative_change(twin.w[pop.name], twin.start[pop.name]) if kept else 0.0,
            )
        )
    return replace(fitted, calibration=report)


def _gate(pop, spikes, shapes) -> torch.Tensor:
    """A max-pool gate's spikes ``[B, T, n]`` from its source's ``[B, T,
    n_source]``: at every step its spike count is the highest count of its
    window (``kernels.pool``'s rule), so it spikes when that count rises."""
    (proj,) = pop.projections
    B, T = spikes.shape[:2]
    counts = spikes.cumsum(1).reshape(B * T, *shapes[proj.source])
    g = proj.geom
    highest = F.max_pool2d(counts, g["k"], g["s"], g["p"]).reshape(B, T, -1)
    return highest - F.pad(highest, (0, 0, 1, 0))[:, :-1]


class _NetworkTwin:
    """A converted graph in torch (float32), every population as
    :class:`_Twin` runs one, each driven by its sources' spikes in the twin
    itself, and each max-pool gate as ``kernels.pool`` runs one (its spike
    count at every step the highest count of its window): the readout's
    ``membrane / T`` is differentiable in every population's weights and
    per-channel bias correction (the readout's own unless ``readout`` is
    False; through a gate, to the input that holds the highest count)."""

    def __init__(self, current, T, readout):
        self.pops, self.T, self.input_shape = current.pops, T, current.input_shape
        self.shapes = {p.name: p.shape for p in current.pops}
        self.start, self.w, self.db, self.channel, self.bias, self.v0 = {}, {}, {}, {}, {}, {}
        for pop in current.pops:
            if pop.kind == "maxpool":  # a gate: no weights, no neurons
                continue
            channel = _graph_channels(pop.shape)
            self.channel[pop.name] = channel
            self.start[pop.name] = _start_weights(current, pop, self.shapes)
            train = readout or pop.kind != "readout"
            self.w[pop.name] = [
                _trainable(w) if train else torch.tensor(w, dtype=torch.float32) for w in self.start[pop.name]
            ]
            self.db[pop.name] = torch.zeros(int(channel.max()) + 1, requires_grad=train)
            self.bias[pop.name], self.v0[pop.name] = _bias_and_start(current, pop, channel)
        # (pop, j): SynOps per spike of each source neuron through projection j, as the simulator counts
        # them; the graph has one projection per projection of a population from another, in that order
        projections = iter(current.network.projections)
        self.fan_out = {}
        for pop in current.pops:
            for j, proj in enumerate(pop.projections):
                if proj.source is not None:
                    built = next(projections)
                    assert (built.source.name, built.target.name) == (proj.source, pop.name), built
                    if pop.kind != "maxpool":  # a gate compares spike counts: no SynOps
                        self.fan_out[pop.name, j] = torch.from_numpy(fan_out(built).astype(np.float32))

    def parameters(self) -> list:
        return [p for ws in self.w.values() for p in ws if p.requires_grad] + [
            d for d in self.db.values() if d.requires_grad
        ]

    def forward(self, x) -> tuple:
        """``(readout, synops)``: the readout's ``membrane / T`` ``[B, n_out]``
        on analog samples ``x`` ``[B, *input_shape]``, and the SynOps of each
        sample ``[B]`` (spikes times their fan-out, every projection)."""
        B, T = len(x), self.T
        spikes, synops = {}, torch.zeros(B)
        for pop in self.pops:
            if pop.kind == "maxpool":
                spikes[pop.name] = _gate(pop, spikes[pop.projections[0].source], self.shapes)
                continue
            n = len(self.channel[pop.name])
            sources = []
            for j, proj in enumerate(pop.projections):
                if proj.source is None:
                    shape = self.input_shape
                    sources.append(x.unsqueeze(1).expand(B, T, *shape).reshape(B * T, *shape))
                else:
                    sources.append(spikes[proj.source].reshape(B * T, *self.shapes[proj.source]))
                    synops = synops + (spikes[proj.source] * self.fan_out[pop.name, j]).sum((1, 2))
            db = self.db[pop.name][torch.from_numpy(self.channel[pop.name])]
            base = (self.bias[pop.name] + db).expand(B * T, n)
            current = _drive(pop, self.w[pop.name], sources, base).reshape(B, T, n)
            if pop.kind == "readout":
                return current.sum(1) / T, synops
            spikes[pop.name] = _if_spikes(self.v0[pop.name], current)
        raise AssertionError("a converted graph ends with its readout")

    def fit(self, x, logits, epochs, lr, generator, spike_cost, macs) -> None:
        """Adam on the mean square error of the readout against ``logits``,
        plus ``spike_cost`` times the SynOps per ANN MAC (``macs`` per sample)."""
        xt = torch.from_numpy(x.astype(np.float32))
        target = torch.from_numpy(np.ascontiguousarray(logits, np.float32))
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(order), NETWORK_BATCH):
                idx = order[start : start + NETWORK_BATCH]
                opt.zero_grad()
                out, synops = self.forward(xt[idx])
                loss = ((out - target[idx]) ** 2).mean()
                if spike_cost:
                    loss = loss + spike_cost * synops.mean() / macs
                loss.backward()
                opt.step()

    def rebuilt(self, current):
        """``current`` rebuilt with the fitted weights and biases (added to its shifts)."""
        w_shift = {k: [np.array(w, float) for w in v] for k, v in current.w_shift.items()}
        b_shift = {k: np.array(v, float) for k, v in current.b_shift.items()}
        for pop in self.pops:
            name = pop.name
            if name not in self.db or not self.db[name].requires_grad:  # a gate; the readout, not fitted
                continue
            old = w_shift.get(name, [np.zeros_like(w) for w in self.start[name]])
            w_shift[name] = [
                o + (w.detach().double().numpy() - s)
                for o, w, s in zip(old, self.w[name], self.start[name], strict=True)
            ]
            db = self.db[name].detach().double().numpy()[self.channel[name]]
            b_shift[name] = b_shift.get(name, np.zeros(len(db))) + db
        return current.rebuilt(b_shift=b_shift, w_shift=w_shift)
