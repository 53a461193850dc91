"""The converter's entry point, :func:`convert`: checks the model and the
calibration data, traces a private copy, and sends a chain of layers to
:mod:`snn.convert.chain` (a stack) and any other graph to
:mod:`snn.convert.graph` (an :class:`snn.Graph`); and which of the two a
converted model is, for calibration and evaluation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import _check_model, _private_copy, percentile_scale, quantised_scale
from .chain import ConvertedNetwork, convert_chain
from .graph import ConvertedGraph, convert_graph
from .ops import _fx_graph


def convert(
    model: nn.Module,
    calibration_data,
    *,
    percentile: float | None = None,
    per_channel: bool = False,
    v_init: float = 0.5,
    dtype=np.float64,
    maxpool: str | None = None,
    max_rate: float = 1.0,
    T: int | None = None,
) -> ConvertedNetwork | ConvertedGraph:
    """Convert a trained ReLU (or QCFS) network to an event-driven SNN of IF neurons.

    A chain of layers becomes a :class:`ConvertedNetwork` over an
    :class:`snn.Network`; a model whose torch.fx graph is not a chain
    (residual adds ``+``/``torch.add``/``+=``, ``torch.cat`` along
    channels, ``x.view(x.size(0), -1)``...) becomes a
    :class:`snn.convert.ConvertedGraph` over an :class:`snn.Graph`
    (see :mod:`snn.convert.graph` for what it supports and how it
    normalises through the merges).

    Parameters
    ----------
    model : a ``torch.nn.Module`` in eval mode, a chain of supported layers
        (Linear, Conv2d, BatchNorm1d/2d, ReLU, :class:`snn.convert.qcfs.QCFS`,
        AvgPool2d, AdaptiveAvgPool2d to 1x1, MaxPool2d (any kernel, stride
        and padding, overlapping windows included; dilation 1 and
        ``ceil_mode=False``), Flatten, Dropout, Identity, nested Sequential,
        functional relu/flatten) ending in a Linear or Conv2d (the readout).
    calibration_data : ``[N, *input_shape]`` samples (training data) used to
        find each ReLU layer's activation scale.
    percentile : the activation percentile that maps to the firing threshold
        (100 = max-norm; 99.9-99.99 clip rare outliers and converge faster;
        default 99.99). A QCFS layer ignores it: its scale is its trained
        threshold lambda.
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
    max_rate : the firing rate (spikes per step) that the ``percentile``
        activation maps to: each ReLU layer's scale is that activation
        divided by ``max_rate``. 1 (the default): it fires at every step.
        Below 1 every rate falls by that factor (so do the SynOps, about in
        proportion) and the rate code gets coarser at a given T; layer-wise
        calibration at the T you run (:func:`snn.convert.calibrate`) then
        recovers most of the accuracy. On DIGITS-RESNET ``percentile=100,
        max_rate=0.8`` calibrated at T = 16 (``passes=2``) spends fewer SynOps than
        SpikingJelly at every T and is within 0.5 pp of the ANN from T = 16
        (``benchmarks/digits_resnet.py``). A QCFS layer ignores it (its
        scale is its trained threshold).
    T : tune the scales for runs of ``T`` steps, instead of a percentile:
        each ReLU layer's scale is the one whose ``T``-step rate code of its
        activations on ``calibration_data`` has the least squared error
        (:func:`snn.convert.base.quantised_scale`, with ``v_init`` as the
        rounding offset). At few steps this loses far less than a
        percentile, at the price of higher rates (more SynOps); calibrate
        at the same ``T`` after it. On DIGITS-RESNET, ``T=4`` then
        ``calibrate(..., 4, passes=2)`` scores 97.4 % at T = 4 (ANN 99.26 %;
        78.2 % with the benchmark's percentile scales). Not with
        ``percentile`` or a ``max_rate`` other than 1. A QCFS layer ignores it.
    """
    data = _check_model(model, calibration_data)
    if T is not None and (percentile is not None or max_rate != 1):
        raise ValueError("T= chooses each layer's scale itself: give it without percentile= and max_rate=")
    percentile = 99.99 if percentile is None else percentile
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.integer, np.floating)):
        raise TypeError(f"percentile must be a number in (0, 100], got {percentile!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if maxpool not in (None, "avg"):
        raise ValueError(f"maxpool must be None or 'avg', got {maxpool!r}")
    if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"max_rate must be a number in (0, 1], got {max_rate!r}")
    if not 0 < max_rate <= 1:
        raise ValueError(f"max_rate must be in (0, 1], got {max_rate!r}")
    if T is not None and (isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1):
        raise ValueError(f"T must be a positive integer (the steps to tune the scales for), got {T!r}")
    if T is None:
        scale_of = percentile_scale(percentile, float(max_rate))
    else:
        scale_of = quantised_scale(int(T), float(v_init))
    model = _private_copy(model)  # traced and run below: the user's model is never touched
    graph = _fx_graph(model)
    if graph is not None and not _is_chain(graph):
        return convert_graph(
            model,
            graph,
            data,
            scale_of=scale_of,
            per_channel=per_channel,
            v_init=v_init,
            dtype=dtype,
            maxpool=maxpool,
        )
    return convert_chain(
        model,
        graph,
        data,
        scale_of=scale_of,
        per_channel=per_channel,
        v_init=v_init,
        dtype=dtype,
    )


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


# -- either result ----------------------------------------------------------------


def _check_converted(converted) -> None:
    if not isinstance(converted, (ConvertedNetwork, ConvertedGraph)):
        raise TypeError(
            "expected a ConvertedNetwork or ConvertedGraph (the result of snn.convert.convert), "
            f"got {type(converted).__name__}"
        )


def _is_graph(converted) -> bool:
    return isinstance(converted, ConvertedGraph)
