"""Input checks shared by the user-facing modules: clear errors, never silent
conversions that change values."""

from __future__ import annotations

import numpy as np


def real_array(name: str, value, dtype=np.float64, ndim: int | None = None) -> np.ndarray:
    """``value`` as a finite real array of ``dtype``; raises on NaN/inf, on
    complex/object/string data and on the wrong number of dimensions."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be a real numeric array, got dtype {arr.dtype}; "
            "convert it explicitly (complex and object data are refused)"
        )
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    with np.errstate(over="ignore"):  # an overflow is reported below, as an error
        out = np.asarray(arr, dtype=dtype, order="C")  # ascontiguousarray would make 0-d 1-d
    if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name} (they overflow to inf)")
    return out


def binary_spikes(name: str, value) -> np.ndarray:
    """``value`` as a uint8 array of 0/1; raises if any entry is not exactly 0 or 1."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric or boolean array of 0/1, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and (arr.size == 0 or arr.max() <= 1):  # the common case, one pass
        return arr.astype(np.uint8, copy=False)
    bad = (arr != 0) & (arr != 1)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must contain only 0 and 1 (spikes); found {arr[where]!r} at {where}. "
            "For analog input use run(analog=...) instead"
        )
    return arr.astype(np.uint8)
