"""Quantisation clip-floor-shift (QCFS) activation, for ANNs that convert to
SNNs with little loss at very few time steps.

QCFS (Bu et al., "Optimal ANN-SNN conversion for high-accuracy and
ultra-low-latency spiking neural networks", ICLR 2022) replaces ReLU by

    h(x) = lambda * clamp(floor(x * L / lambda + shift) / L, 0, 1)

with ``L`` quantisation levels, a trainable threshold ``lambda`` per layer and
``shift = 1/2``. An IF neuron with threshold ``lambda``, reset by subtraction
and initial membrane ``shift * lambda`` driven by a constant current ``x``
fires exactly ``clamp(floor(T x / lambda + 1/2), 0, T)`` times in ``T``
steps: at ``T = L`` the first layer's spike counts equal the ANN's quantised
activation in units of ``lambda / L`` (other ``T`` round it to ``T``
levels instead of ``L``). The converter (``snn.convert``) takes each
layer's threshold from the trained ``lambda`` instead of calibration
percentiles. Deeper layers receive spikes unevenly spread over time, so
equality there is only approximate.

``floor`` has zero gradient almost everywhere; training uses the
straight-through estimator (the gradient of ``floor`` is taken as 1).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["QCFS", "floor_ste", "qcfs", "replace_relu"]


class _FloorSTE(torch.autograd.Function):
    """``floor`` forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` whose gradient is passed straight through (d/dx = 1)."""
    return _FloorSTE.apply(x)


def qcfs(x: torch.Tensor, threshold: torch.Tensor, levels: int, shift: float = 0.5) -> torch.Tensor:
    """The QCFS function, differentiable in ``x`` and ``threshold``.

    Parameters
    ----------
    x : pre-activations, any shape.
    threshold : ``lambda``, a scalar tensor (> 0), in the units of ``x``.
    levels : ``L``, the number of non-zero output levels.
    shift : ``phi``, added before the floor (1/2 rounds to the nearest level).

    Returns
    -------
    Tensor of the shape of ``x``, values in ``{0, lambda / L, ..., lambda}``.
    """
    return threshold * torch.clamp(floor_ste(x * levels / threshold + shift) / levels, 0, 1)


class QCFS(nn.Module):
    """Quantised clip-floor-shift activation with a trainable threshold.

    Parameters
    ----------
    levels : ``L`` quantisation levels (the SNN is exact for the first layer
        at ``T = L``; 4 or 8 are usual).
    threshold : initial ``lambda`` (trained; it becomes the layer's firing
        threshold after conversion), in activation units.
    shift : ``phi`` (fixed); the converted layer starts at ``shift`` times
        its threshold.
    """

    def __init__(self, levels: int = 8, threshold: float = 4.0, shift: float = 0.5):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive integer, got {levels!r}")
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if not 0 <= shift <= 1:
            raise ValueError(f"shift must be in [0, 1], got {shift!r}")
        self.levels = levels
        self.shift = float(shift)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return qcfs(x, self.threshold, self.levels, self.shift)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.threshold.item():.4g}, shift={self.shift}"


def replace_relu(model: nn.Module, levels: int = 8, threshold: float = 4.0) -> nn.Module:
    """Replace every ``nn.ReLU`` module of ``model`` (nested ones included)
    by a fresh :class:`QCFS`, in place; returns ``model``. Functional relu
    calls (``F.relu``) are not modules and are left alone."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, QCFS(levels, threshold))
        else:
            replace_relu(child, levels, threshold)
    return model
