"""Neuron models: immutable, validated parameter objects.

Every model follows the step of DESIGN.md §1, for each step ``t``:

1. leak: ``v <- beta * v`` (IF: ``beta = 1``); current-based:
   ``i <- alpha * i + bias + input`` first, then ``v <- beta * v + i``;
2. integrate (IF/LIF): ``v <- v + bias + input``;
3. fire: spike if ``v >= threshold``;
4. reset: ``"subtract"`` (``v <- v - threshold``, the default), ``"zero"``
   / ``"value"`` (``v <- v_reset``) or ``"none"`` (``v`` kept: the neuron
   fires every step its membrane stays at or above threshold), then
   ``refractory`` steps during which ``v`` is held and its input discarded
   (a current still integrates).

Potentials and thresholds are in the user's units (mV, or dimensionless for
converted networks); times (``tau_*``, ``dt``) in any one unit, e.g. ms.
The conversions between ``tau``, ``beta`` and ``dt`` live here and nowhere
else.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

RESET_MODES = {"subtract": 0, "zero": 1, "value": 1, "none": 2}  # codes: snn_kernels.RESET_*
MAX_REFRACTORY = 2**31 - 1  # steps; the kernels count them in int64 beside the step number


def beta_from_tau(tau: float, dt: float) -> float:
    """Per-step decay factor ``exp(-dt / tau)`` of a time constant ``tau``."""
    _check_positive("tau", tau)
    _check_positive("dt", dt)
    return math.exp(-dt / tau)


def tau_from_beta(beta: float, dt: float) -> float:
    """Time constant ``-dt / ln(beta)`` of a per-step decay ``beta`` in (0, 1)."""
    _check_positive("dt", dt)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"tau_from_beta needs 0 < beta < 1, got beta={beta!r}")
    return -dt / math.log(beta)


def _check_positive(name, value):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def _check_decay(name, value):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1] (a per-step decay factor), got {value!r}")


@dataclass(frozen=True, slots=True)
class Neuron:
    """Parameters of a population's neurons (shared by all its neurons).

    Use the constructors :func:`IF`, :func:`LIF` and :func:`CubaLIF`.

    Attributes
    ----------
    beta : membrane decay per step, in [0, 1] (1: no leak).
    alpha : synaptic-current decay per step, in [0, 1]; ``None`` for models
        without a current (input goes straight into ``v``).
    threshold : firing threshold, > 0 (potential units); ``math.inf`` for a
        population that never fires (a membrane readout).
    reset : ``"subtract"`` (default), ``"zero"``, ``"value"`` or ``"none"``
        (fire and keep the membrane; e.g. snnTorch's delayed subtraction is
        a ``"none"`` population with a self-projection of weight
        ``-threshold`` and delay 1).
    v_reset : potential after a ``"zero"``/``"value"`` reset (``"zero"``
        and ``"none"`` force 0).
    refractory : steps held after a spike, integer >= 0.
    """

    beta: float = 1.0
    alpha: float | None = None
    threshold: float = 1.0
    reset: str = "subtract"
    v_reset: float = 0.0
    refractory: int = 0
    name: str = field(default="IF", compare=False)

    def __post_init__(self):
        _check_decay("beta", self.beta)
        if self.alpha is not None:
            _check_decay("alpha", self.alpha)
        if self.threshold != math.inf:  # inf: never fires (membrane readout)
            _check_positive("threshold", self.threshold)
        if self.reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {sorted(RESET_MODES)}, got {self.reset!r}")
        if self.reset == "zero" and self.v_reset != 0.0:
            raise ValueError("reset='zero' resets to 0; use reset='value' with v_reset")
        if self.reset == "none" and self.v_reset != 0.0:
            raise ValueError("reset='none' keeps the membrane; v_reset is unused and must stay 0")
        if not (
            isinstance(self.v_reset, (int, float, np.integer, np.floating)) and math.isfinite(self.v_reset)
        ):
            raise ValueError(f"v_reset must be a finite number, got {self.v_reset!r}")
        if self.resets_to_value and self.v_reset >= self.threshold != math.inf:
            raise ValueError("v_reset must be below threshold, or the neuron fires every step")
        if (
            isinstance(self.refractory, bool)
            or not isinstance(self.refractory, (int, np.integer))
            or not 0 <= self.refractory <= MAX_REFRACTORY
        ):
            raise ValueError(
                f"refractory must be an integer number of steps in [0, {MAX_REFRACTORY:,}], "
                f"got {self.refractory!r}"
            )
        # plain Python numbers: a numpy float32 beta would make the propagator
        # float32-accurate, and equal neurons must hash alike for its cache
        for name in ("beta", "threshold", "v_reset"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.alpha is not None:
            object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "refractory", int(self.refractory))

    @property
    def has_current(self) -> bool:
        return self.alpha is not None

    @property
    def resets_to_value(self) -> bool:
        """True for ``"zero"`` and ``"value"`` (``v <- v_reset`` on a spike)."""
        return self.reset in ("zero", "value")

    @property
    def reset_code(self) -> int:
        return RESET_MODES[self.reset]

    def __repr__(self):
        parts = []
        if self.name != "IF":
            parts.append(f"beta={self.beta:.4g}")
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha:.4g}")
        parts.append(f"threshold={self.threshold:g}")
        parts.append(f"reset={self.reset!r}")
        if self.reset == "value":
            parts.append(f"v_reset={self.v_reset:g}")
        if self.refractory:
            parts.append(f"refractory={self.refractory}")
        return f"{self.name}({', '.join(parts)})"

    def constants(self, dtype) -> tuple:
        """``(threshold, v_reset)`` in the state precision ``dtype``; raises
        if that precision cannot hold them (a finite threshold that would
        become inf or 0, a reset value that would reach the threshold).
        Cached: a run asks once per layer."""
        return _constants(self, np.dtype(dtype))

    def propagator(self, n_steps: int, dtype=np.float64) -> np.ndarray:
        """Table ``[n_steps + 1, 5]`` of the k-step input-free propagator
        (see ``kernels.neuron``), computed by iterating one step in float64;
        cached, read-only."""
        return _propagator(self, int(n_steps), np.dtype(dtype))


@functools.lru_cache(maxsize=64)
def _constants(neuron: Neuron, dtype) -> tuple:
    with np.errstate(over="ignore", under="ignore"):
        thr, v_reset = dtype.type(neuron.threshold), dtype.type(neuron.v_reset)
    if neuron.threshold != math.inf and not (np.isfinite(thr) and thr > 0):
        raise ValueError(
            f"threshold {neuron.threshold!r} of {neuron!r} is {thr} in {dtype.name} state; "
            "rescale the network or use dtype=np.float64"
        )
    if not np.isfinite(v_reset) or (neuron.resets_to_value and v_reset >= thr):
        raise ValueError(
            f"v_reset {neuron.v_reset!r} of {neuron!r} does not stay below the threshold in "
            f"{dtype.name} state; use dtype=np.float64"
        )
    return thr, v_reset


@functools.lru_cache(maxsize=64)
def _propagator(neuron: Neuron, n_steps: int, dtype) -> np.ndarray:
    table = np.zeros((n_steps + 1, 5))
    alpha = 0.0 if neuron.alpha is None else neuron.alpha
    # basis responses: (v, i) from v0 = 1, from i0 = 1, from bias b = 1
    v_v, v_i, v_b, i_i, i_b = 1.0, 0.0, 0.0, 1.0, 0.0
    for k in range(n_steps + 1):
        table[k] = (v_v, v_i, v_b, i_i, i_b)
        if neuron.has_current:
            i_i, i_b = alpha * i_i, alpha * i_b + 1.0
            v_v, v_i, v_b = neuron.beta * v_v, neuron.beta * v_i + i_i, neuron.beta * v_b + i_b
        else:
            v_v, v_b = neuron.beta * v_v, neuron.beta * v_b + 1.0
    if not neuron.has_current:
        table[:, [1, 3, 4]] = 0.0
    table = table.astype(dtype)
    table.flags.writeable = False
    return table


def IF(threshold: float = 1.0, reset: str = "subtract", v_reset: float = 0.0, refractory: int = 0) -> Neuron:
    """Integrate-and-fire neuron (no leak, ``beta = 1``)."""
    return Neuron(1.0, None, threshold, reset, v_reset, refractory, "IF")


def LIF(
    beta: float | None = None,
    *,
    tau_mem: float | None = None,
    dt: float = 1.0,
    threshold: float = 1.0,
    reset: str = "subtract",
    v_reset: float = 0.0,
    refractory: int = 0,
) -> Neuron:
    """Leaky integrate-and-fire neuron; give ``beta`` or ``tau_mem`` (with ``dt``)."""
    beta = _decay(beta, tau_mem, dt, "beta", "tau_mem")
    return Neuron(beta, None, threshold, reset, v_reset, refractory, "LIF")


def CubaLIF(
    beta: float | None = None,
    alpha: float | None = None,
    *,
    tau_mem: float | None = None,
    tau_syn: float | None = None,
    dt: float = 1.0,
    threshold: float = 1.0,
    reset: str = "subtract",
    v_reset: float = 0.0,
    refractory: int = 0,
) -> Neuron:
    """Current-based LIF: input and bias feed a current ``i`` decaying by
    ``alpha`` (or ``tau_syn``), which feeds ``v`` (``beta`` or ``tau_mem``)."""
    beta = _decay(beta, tau_mem, dt, "beta", "tau_mem")
    alpha = _decay(alpha, tau_syn, dt, "alpha", "tau_syn")
    return Neuron(beta, alpha, threshold, reset, v_reset, refractory, "CubaLIF")


def _decay(factor, tau, dt, factor_name, tau_name):
    if (factor is None) == (tau is None):
        raise ValueError(f"give exactly one of {factor_name} or {tau_name}")
    if tau is not None:
        return beta_from_tau(tau, dt)
    _check_positive("dt", dt)
    _check_decay(factor_name, factor)
    return float(factor)
