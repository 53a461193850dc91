"""Input encoders: turn data ``[B, n]`` into spike arrays ``[T, B, n]`` (uint8 0/1),
the input of ``Network.run(spikes)``; :func:`direct` prepares analog input instead.

The random encoders take ``seed``: an int, ``None`` or a ``numpy.random.Generator``
(which is then advanced); the same seed gives the same spikes.
"""

from __future__ import annotations

import numpy as np

from ._validate import positive_int, real_array


def bernoulli(rates, T: int, seed=None) -> np.ndarray:
    """Independent Bernoulli spikes: input ``j`` of sample ``b`` spikes at each
    step with probability ``rates[b, j]`` (in [0, 1]); returns ``[T, B, n]``."""
    p = _unit_interval("rates", rates)
    return _draw(p, _steps(T), seed)


def rate(x, T: int, max_rate: float = 1.0, seed=None) -> np.ndarray:
    """Rate coding: input ``j`` of sample ``b`` spikes at each step, independently,
    with probability ``x[b, j] * max_rate``.

    Parameters
    ----------
    x : ``[B, n]`` intensities in [0, 1] (e.g. pixel values scaled to [0, 1]).
    T : number of steps (positive int).
    max_rate : spike probability per step of an input at 1, in (0, 1].
    seed : int, None or numpy Generator.

    Returns
    -------
    ``[T, B, n]`` uint8 0/1.
    """
    p = _unit_interval("x", x)
    scale = _scalar("max_rate", max_rate)
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"max_rate must be a spike probability per step in (0, 1], got {max_rate!r}")
    return _draw(p * scale, _steps(T), seed)


def poisson(rate_hz, T: int, dt: float, seed=None) -> np.ndarray:
    """Poisson coding: each input a Poisson process of ``rate_hz[b, j]`` events per
    second, sampled on steps of ``dt`` seconds.

    A step carries a spike if a Poisson(``rate_hz * dt``) draw has at least one
    event, i.e. with probability ``1 - exp(-rate_hz * dt)``, independently per
    step (several events in one step are one spike). The mean spike count is
    thus ``T * (1 - exp(-rate_hz * dt))``, below ``T * rate_hz * dt``.

    Parameters
    ----------
    rate_hz : ``[B, n]`` rates in Hz, ``>= 0``.
    T : number of steps (positive int).
    dt : step length in seconds, ``> 0``.
    seed : int, None or numpy Generator.

    Returns
    -------
    ``[T, B, n]`` uint8 0/1.
    """
    r = _samples("rate_hz", rate_hz)
    if np.any(r < 0):
        raise ValueError("rate_hz must be non-negative (events per second)")
    step = _scalar("dt", dt)
    if step <= 0:
        raise ValueError(f"dt must be a positive step length in seconds, got {dt!r}")
    with np.errstate(over="ignore"):  # rate * dt overflowing to inf is probability 1, correctly
        p = -np.expm1(-r * step)
    return _draw(p, _steps(T), seed)


def latency(x, T: int, tau: float | None = None, threshold: float = 0.01) -> np.ndarray:
    """Time-to-first-spike coding: each input spikes at most once, stronger inputs earlier.

    Only inputs with ``x > threshold`` spike. Their step is

    - linear rule (``tau`` None): ``t = round((1 - x) * (T - 1))``, so ``x = 1``
      spikes at step 0 and ``x`` just above 0 near step ``T - 1``;
    - RC rule (``tau`` given, in steps): ``t = round(tau * ln(x / (x - threshold)))``,
      the time a leaky integrator of time constant ``tau`` driven by ``x`` takes
      to charge from 0 to ``threshold``; spikes falling at ``t >= T`` are dropped.

    ``round`` is to the nearest step, halves up. The result is deterministic.

    Parameters
    ----------
    x : ``[B, n]`` intensities in [0, 1].
    T : number of steps (positive int).
    tau : RC time constant in steps (``> 0``), or None for the linear rule.
    threshold : in [0, 1); inputs at or below it never spike.

    Returns
    -------
    ``[T, B, n]`` uint8 0/1, at most one spike per input.
    """
    v = _unit_interval("x", x)
    n_steps = _steps(T)
    level = _scalar("threshold", threshold)
    if not 0.0 <= level < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    b, j = np.nonzero(v > level)
    xs = v[b, j]
    if tau is None:
        when = (1.0 - xs) * (n_steps - 1)
    else:
        tc = _scalar("tau", tau)
        if tc <= 0:
            raise ValueError(f"tau must be a positive time constant in steps, got {tau!r}")
        when = tc * np.log(xs / (xs - level))
    t = np.floor(when + 0.5)
    keep = t < n_steps
    out = np.zeros((n_steps, *v.shape), np.uint8)
    out[t[keep].astype(np.int64), b[keep], j[keep]] = 1
    return out


def direct(x, T: int | None = None) -> np.ndarray:
    """Direct (analog current) coding: ``x`` itself, checked, as float64 ``[B, n]``.

    Feed it as ``Network.run(analog=x, T=T)``: the input is constant over the
    ``T`` steps, so the first layer computes ``W @ x`` once and adds it as a
    bias every step (its MACs are counted once), instead of multiplying at
    every step. ``T``, if given, is checked here as ``run`` will check it.

    Parameters
    ----------
    x : ``[B, n]`` real input currents (any finite values).
    T : number of steps the input will be held (positive int), optional.

    Returns
    -------
    ``[B, n]`` float64, a new array.
    """
    out = np.array(_samples("x", x))
    if T is not None:
        _steps(T)
    return out


def _draw(p: np.ndarray, n_steps: int, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n_steps, *p.shape)) < p).astype(np.uint8)


def _steps(T) -> int:
    return positive_int("T", T)


def _samples(name: str, value) -> np.ndarray:
    """``[B, n]`` real data of at least one sample and one input."""
    arr = real_array(name, value, ndim=2)
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one sample of at least one input, got shape {arr.shape}")
    return arr


def _unit_interval(name: str, value) -> np.ndarray:
    arr = _samples(name, value)
    if np.any((arr < 0) | (arr > 1)):
        raise ValueError(f"{name} must be in [0, 1]")
    return arr


def _scalar(name: str, value) -> float:
    return float(real_array(name, value, ndim=0))
