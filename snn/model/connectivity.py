"""Seeded sparse random connectivity, returned as CSR by presynaptic neuron.

Every builder returns ``(rowptr, cols)``: ``rowptr`` int64 ``[n_pre + 1]``
(the targets of pre neuron ``i`` are ``cols[rowptr[i]:rowptr[i + 1]]``) and
``cols`` int32 ``[nnz]``, sorted within each row, with no duplicate pair. This
is the layout :class:`snn.SparseLinear` stores. ``seed`` is an int, ``None``
or a ``numpy.random.Generator`` (which is then advanced); the same seed gives
the same connectivity.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import positive_int, real_array


def fixed_probability(n_pre: int, n_post: int, p: float, seed=None, autapses: bool = True):
    """Every ordered pair ``pre -> post`` connected independently with probability ``p``.

    Exact Bernoulli per pair, drawn as geometric gaps between successive
    connected pairs in the flat index ``pre * n_post + post`` (so the cost is
    proportional to the number of synapses, not of pairs).

    Parameters
    ----------
    n_pre, n_post : population sizes (positive ints, at most 2**31 - 1).
    p : connection probability in [0, 1].
    seed : int, None or numpy Generator.
    autapses : if False, no ``i -> i`` synapse (a population onto itself:
        needs ``n_pre == n_post``).

    Returns
    -------
    rowptr : int64 ``[n_pre + 1]``; cols : int32 ``[nnz]``.
    """
    n_pre, n_post = _check_sizes(n_pre, n_post, autapses)
    p = _probability(p)
    rng = np.random.default_rng(seed)
    total = n_pre * n_post
    max_chunk = (2**63 - 1) // (total + 1) - 1  # gaps clipped to total + 1: no int64 overflow below
    expected = total * p
    cols = np.empty(int(expected + 6 * math.sqrt(expected) + 64), np.int32)  # grown if ever exceeded
    rowptr = np.zeros(n_pre + 1, np.int64)
    n, last = 0, -1  # synapses so far; flat index of the last connected pair drawn
    while p > 0 and last < total - 1:
        # bounded chunks written straight into int32 targets: the build's peak memory stays
        # near the result's 4 bytes per synapse (the draws are the same in any chunking)
        expected = (total - 1 - last) * p
        gaps = rng.geometric(p, min(int(expected + 5 * math.sqrt(expected) + 64), max_chunk, _CHUNK))
        np.minimum(gaps, total + 1, out=gaps)  # past the end from anywhere: the same as any longer gap
        flat = np.cumsum(gaps)
        flat += last
        last = int(flat[-1])
        flat = flat[: np.searchsorted(flat, total)]
        if not autapses:
            flat = flat[flat % (n_post + 1) != 0]  # pre == post exactly on multiples of n + 1
        rowptr += np.searchsorted(flat, np.arange(n_pre + 1, dtype=np.int64) * n_post)
        if n + len(flat) > len(cols):
            cols = np.concatenate([cols[:n], np.empty(max(len(flat), len(cols) // 2), np.int32)])
        cols[n : n + len(flat)] = flat % n_post
        n += len(flat)
    cols.resize(n, refcheck=False)  # shrinks in place
    return rowptr, cols


_CHUNK = 1 << 18  # draws per chunk of fixed_probability


def fixed_in_degree(n_pre: int, n_post: int, k: int, seed=None, autapses: bool = True):
    """Every post neuron receives exactly ``k`` distinct pre neurons, drawn
    uniformly among the ``k``-subsets of its possible partners (all ``n_pre``,
    or ``n_pre - 1`` without autapses), independently per post neuron.

    Parameters and returns as :func:`fixed_probability`, with ``k`` (int,
    ``0 <= k <=`` number of possible partners) instead of ``p``. The result is
    still CSR by pre neuron: ``np.bincount(cols, minlength=n_post) == k``.
    """
    n_pre, n_post = _check_sizes(n_pre, n_post, autapses)
    pre = _partners(np.random.default_rng(seed), n_post, n_pre, k, autapses)
    post = np.arange(n_post, dtype=np.int64)[:, None]
    return _csr(np.sort((pre * n_post + post).ravel()), n_pre, n_post)


def fixed_out_degree(n_pre: int, n_post: int, k: int, seed=None, autapses: bool = True):
    """Every pre neuron projects to exactly ``k`` distinct post neurons, drawn
    uniformly among the ``k``-subsets of its possible partners, independently
    per pre neuron. Parameters and returns as :func:`fixed_in_degree`;
    ``np.diff(rowptr) == k``."""
    n_pre, n_post = _check_sizes(n_pre, n_post, autapses)
    post = _partners(np.random.default_rng(seed), n_pre, n_post, k, autapses)
    return np.arange(n_pre + 1, dtype=np.int64) * post.shape[1], post.astype(np.int32).ravel()


def _csr(flat: np.ndarray, n_pre: int, n_post: int):
    """CSR of the sorted, distinct flat indices ``pre * n_post + post`` (int64)."""
    rowptr = np.searchsorted(flat, np.arange(n_pre + 1, dtype=np.int64) * n_post).astype(np.int64)
    return rowptr, (flat % n_post).astype(np.int32)


def _partners(rng, rows: int, m: int, k, autapses: bool) -> np.ndarray:
    """``[rows, k]`` int64: row ``r`` a uniform ``k``-subset of ``range(m)``,
    sorted, without ``r`` itself when ``autapses`` is False."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    available = m if autapses else m - 1
    if k > available:
        raise ValueError(
            f"k = {k} exceeds the {available} possible partners of each neuron"
            + ("" if autapses else " (autapses excluded)")
        )
    chosen = _subsets(rng, rows, int(k), available).astype(np.int64)
    if not autapses:  # values >= r shift up by one: r itself is skipped, order kept
        chosen += chosen >= np.arange(rows)[:, None]
    return chosen


def _subsets(rng, rows: int, k: int, m: int) -> np.ndarray:
    """``[rows, k]`` int32, each row a uniformly random ``k``-subset of ``range(m)``, sorted.

    Draws ``k`` values with replacement, then redraws every repeated value
    until a row has ``k`` distinct ones: the kept set is the first ``k``
    distinct values of an i.i.d. uniform sequence, an exactly uniform subset.
    For ``k > m / 2`` the complement (``m - k`` values) is drawn instead, so
    that each redraw hits a repeat with probability at most 1/2.
    """
    if k == 0:
        return np.empty((rows, 0), np.int32)
    if 2 * k > m:
        keep = np.ones((rows, m), bool)
        keep[np.arange(rows)[:, None], _subsets(rng, rows, m - k, m)] = False
        return np.nonzero(keep)[1].astype(np.int32).reshape(rows, k)
    out = rng.integers(0, m, (rows, k), dtype=np.int32)
    out.sort(axis=1)
    todo, sub = np.arange(rows), out
    while True:
        repeat = np.zeros(sub.shape, bool)
        repeat[:, 1:] = sub[:, 1:] == sub[:, :-1]
        has = repeat.any(axis=1)
        if not has.any():
            return out
        todo, sub, repeat = todo[has], sub[has], repeat[has]
        sub[repeat] = rng.integers(0, m, int(repeat.sum()), dtype=np.int32)
        sub.sort(axis=1)
        out[todo] = sub


def _check_sizes(n_pre, n_post, autapses) -> tuple[int, int]:
    n_pre, n_post = positive_int("n_pre", n_pre), positive_int("n_post", n_post)
    if not autapses and n_pre != n_post:
        raise ValueError(
            f"autapses=False is for a population onto itself (n_pre == n_post), "
            f"got n_pre={n_pre}, n_post={n_post}"
        )
    return int(n_pre), int(n_post)


def _probability(p) -> float:
    value = float(real_array("p", p, ndim=0))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return value
