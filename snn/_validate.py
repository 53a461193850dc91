"""Input checks shared by the user-facing modules: clear errors, never silent
conversions that change values."""

from __future__ import annotations

import contextlib

import numpy as np


class KeepsReadOnly:
    """Pickling and copying (``copy.deepcopy``, Dask workers) keep the
    object's read-only arrays read-only: numpy gives every copy back
    writeable, and numba compiles a writeable array as another type than a
    read-only one, so a copied network would compile every kernel again
    (seconds each). The arrays are found among the attributes and inside
    the tuples, lists and dicts they hold."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state[_READ_ONLY] = _read_only_paths(self.__dict__, ())
        return state

    def __setstate__(self, state):
        state = dict(state)
        paths = state.pop(_READ_ONLY, ())
        self.__dict__.update(state)
        for path in paths:
            arr = self.__dict__
            for key in path:
                arr = arr[key]
            arr.flags.writeable = False


_READ_ONLY = "_read_only_arrays"


def _read_only_paths(value, path: tuple) -> list:
    """The keys leading to the read-only arrays within ``value``."""
    if isinstance(value, np.ndarray):
        return [] if value.flags.writeable else [path]
    if isinstance(value, (tuple, list)):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return []
    return [found for key, item in items for found in _read_only_paths(item, (*path, key))]


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
    if out is not arr and out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} has values too large for {np.dtype(dtype).name} (they overflow to inf)")
    return out


# the state precisions a network may have
DTYPES = (np.float32, np.float64)

# neurons and synapses are indexed by int32 in the kernels
MAX_INDEX = 2**31 - 1


def positive_int(name: str, value, limit: int = MAX_INDEX) -> int:
    """``value`` as an int in ``[1, limit]``; bools, floats and others refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= limit:
        raise ValueError(f"{name} must be a positive integer at most {limit}, got {value!r}")
    return int(value)


# float32 state counts steps exactly up to 2**24 (the event path keeps each
# neuron's last update step in its state row); the kernels' calendars hold
# steps as int32
MAX_STEPS = {np.dtype(np.float32): 2**24, np.dtype(np.float64): MAX_INDEX}


def run_extent(n_steps: int, batch: int, dtype=np.float64) -> None:
    """Refuse a run of no step, of no sample, or longer than the state
    precision ``dtype`` counts steps exactly."""
    if n_steps < 1:
        raise ValueError(f"a run needs at least one step, got T={n_steps}")
    if batch < 1:
        raise ValueError(f"a run needs at least one sample, got a batch of {batch}")
    if batch > MAX_INDEX:
        raise ValueError(f"a batch of {batch} samples is more than a run holds ({MAX_INDEX:,})")
    limit = MAX_STEPS[np.dtype(dtype)]
    if n_steps > limit:
        raise ValueError(
            f"T={n_steps} steps is more than a run in {np.dtype(dtype).name} state can count ({limit:,})"
            + ("; use dtype=np.float64" if limit < MAX_INDEX else "")
        )


def numba_threads(n_threads: int | None):
    """Run the enclosed kernels on ``n_threads`` numba threads (``None``: as
    they are), restoring the caller's setting afterwards."""
    return _AS_THEY_ARE if n_threads is None else _threads(n_threads)


_AS_THEY_ARE = contextlib.nullcontext()


@contextlib.contextmanager
def _threads(n_threads):
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if (
        isinstance(n_threads, bool)
        or not isinstance(n_threads, (int, np.integer))
        or not 1 <= n_threads <= limit
    ):
        raise ValueError(
            f"n_threads must be an integer in [1, {limit}] (this machine's cores), got {n_threads!r}"
        )
    before = numba.get_num_threads()
    numba.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def owned(arr: np.ndarray, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``arr`` (of ``dtype``), read-only: the library's
    own, never the caller's array (which stays as it was, writeable)."""
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    out.flags.writeable = False
    return out


def checked_csr(rowptr, cols, n_source: int, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR connectivity by presynaptic neuron, checked and owned: ``rowptr``
    int64 ``[n_source + 1]`` non-decreasing from 0, ``cols`` int32 target
    indices in ``[0, n_target)``, ``rowptr[-1]`` of them; both read-only copies."""
    rowptr, cols = np.asarray(rowptr), np.asarray(cols)
    if rowptr.dtype.kind not in "iu" or cols.dtype.kind not in "iu":
        raise TypeError(f"rowptr and cols must be integer arrays, got {rowptr.dtype} and {cols.dtype}")
    if rowptr.shape != (n_source + 1,) or rowptr[0] != 0 or np.any(np.diff(rowptr) < 0):
        raise ValueError(f"rowptr must be non-decreasing offsets of shape ({n_source + 1},) starting at 0")
    if cols.ndim != 1 or rowptr[-1] != len(cols):
        raise ValueError(f"cols must be 1-D with rowptr[-1] = {rowptr[-1]} entries, got shape {cols.shape}")
    if len(cols) and (cols.min() < 0 or cols.max() >= n_target):
        raise ValueError(
            f"cols must index targets in [0, {n_target}), got values in [{cols.min()}, {cols.max()}]"
        )
    return owned(rowptr, np.int64), owned(cols, np.int32)


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
