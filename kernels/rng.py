"""A small, fast, seedable random generator for kernels: xoshiro256**.

Kernels that draw random numbers (the Poisson background drive) take the
generator state as a ``uint64[4]`` array they mutate, so a run is
reproducible from its seed, independent of thread scheduling, and the
reference backend can replay exactly the same draws by calling the same
helpers. ``seed_state(seed, stream, substream)`` gives independent streams
(one per sample and background source) from one seed, through splitmix64 as
the xoshiro authors advise.
"""

import math

import numba
import numpy as np

from ._jit import helper, python_twin

_MASK = (1 << 64) - 1


def seed_state(seed: int, stream: int = 0, substream: int = 0) -> np.ndarray:
    """Generator state ``uint64[4]`` for ``(seed, stream, substream)``, integers >= 0.

    Each part is folded in through splitmix64's mixing function before the
    four words are drawn from splitmix64, so neighbouring seeds start far
    apart: a linear start (``seed * golden + ...``) gave seed ``s + 1`` the
    words of seed ``s`` shifted by one."""
    x = 0x2545F4914F6CDD1D
    for part in (seed, stream, substream):
        x = _mix64((x ^ part) + 0x9E3779B97F4A7C15)
    words = []
    for _ in range(4):  # splitmix64
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        words.append(_mix64(x))
    return np.array(words, np.uint64)


def _mix64(z: int) -> int:
    """splitmix64's output function (a bijection of 64-bit integers)."""
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def sample_states(seed, batch: int, substreams) -> np.ndarray:
    """Generator states ``uint64[batch, len(substreams), 4]`` of the samples
    of a run: sample ``s`` draws stream ``(seed, s, g)`` for each substream
    ``g``. ``seed``: an int, or ``(seed, first_sample)`` for a part of a
    larger batch starting at sample ``first_sample`` (its sample ``s`` then
    draws ``(seed, first_sample + s, g)``, as in the whole batch's run)."""
    seed, first = seed if isinstance(seed, tuple) else (seed, 0)
    states = [[seed_state(seed, first + s, g) for g in substreams] for s in range(batch)]
    return np.array(states, np.uint64).reshape(batch, len(substreams), 4)


@helper
def _rotl(x, k):
    return (x << k) | (x >> (np.uint64(64) - k))


@helper
def next_u64(s):
    """Next 64 random bits; advances the state ``s`` (``uint64[4]``)."""
    result = _rotl(s[1] * np.uint64(5), np.uint64(7)) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], np.uint64(45))
    return result


if numba.config.DISABLE_JIT:  # Python calls it directly too (tests): its products wrap, silently
    next_u64 = python_twin(next_u64)


@helper
def uniform(s):
    """Uniform float64 in [0, 1) (53 random bits)."""
    return np.float64(next_u64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@helper
def below(s, n):
    """Uniform integer in [0, n), 0 < n < 2**32, without bias (Lemire's
    multiply-and-reject)."""
    n64 = np.uint64(n)
    m = (next_u64(s) >> np.uint64(32)) * n64
    low = m & np.uint64(0xFFFFFFFF)
    if low < n64:
        floor = (np.uint64(0x100000000) - n64) % n64
        while low < floor:
            m = (next_u64(s) >> np.uint64(32)) * n64
            low = m & np.uint64(0xFFFFFFFF)
    return np.int64(m >> np.uint64(32))


@helper
def poisson(s, lam):
    """A Poisson(``lam``) count, ``lam >= 0``: multiplication of uniforms for
    ``lam < 10``, else Hörmann's transformed rejection (PTRS, 1993), exact
    in distribution either way."""
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        limit = math.exp(-lam)
        k = 0
        p = uniform(s)
        while p > limit:
            k += 1
            p *= uniform(s)
        return k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u = uniform(s) - 0.5
        v = uniform(s)
        us = 0.5 - abs(u)
        if us <= 0.0:  # u = -0.5 exactly (probability 2**-53): no finite candidate
            continue
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= v_r:
            return np.int64(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(
            k + 1.0
        ):
            return np.int64(k)
