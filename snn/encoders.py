"""Input encoders: turn data into spike arrays ``[T, B, n]`` (uint8 0/1)."""

from __future__ import annotations

import numpy as np

from ._validate import real_array


def bernoulli(rates, T: int, seed: int | None = None) -> np.ndarray:
    """Independent Bernoulli spikes: input ``j`` of sample ``b`` spikes at each
    step with probability ``rates[b, j]`` (in [0, 1]); returns ``[T, B, n]``."""
    p = real_array("rates", rates, ndim=2)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("rates must be probabilities in [0, 1]")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    rng = np.random.default_rng(seed)
    return (rng.random((T, *p.shape)) < p).astype(np.uint8)
