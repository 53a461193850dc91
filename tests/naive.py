"""Slow, obviously correct twins of the compiled kernels (stumpy's
``tests/naive.py``): each is written from a kernel's contract (its docstring,
DESIGN.md sections 1-2), in plain Python and numpy, one step, one output, one
synapse at a time, never from the kernel's code. ``tests/test_kernels_naive.py``
compares every kernel with its twin on random inputs.

Neuron dynamics are the clock-driven loop of DESIGN.md section 1 as the
reference backend runs it (``snn/model/neurons.py``'s module docstring): per step,
``i <- alpha * i + bias + input``, ``v <- beta * v + i`` for current-based
neurons, ``v <- beta * v + bias + input`` otherwise; a spike when
``v >= threshold``; reset by subtraction or to ``v_reset``; after a spike at
``t`` a refractory period ``r`` holds ``v`` (not ``i``) during steps
``t + 1 .. t + r`` and the neuron cannot fire then. The twins work on any
number type: given :class:`fractions.Fraction` values they are exact, which
is how the tests measure a kernel's rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

NEVER = -1
RESET_SUBTRACT, RESET_TO_VALUE = 0, 1


def exact(x) -> Fraction:
    """The exact rational value of a float (or int)."""
    return Fraction(float(x))


# ---------------------------------------------------------------------------
# Neuron dynamics
# ---------------------------------------------------------------------------


def one_step(v, i, b, beta, alpha, held=False):
    """One input-free step; ``alpha`` None: no synaptic current; ``held``: a
    refractory step (``v`` kept, the current still evolves)."""
    if alpha is not None:
        i = alpha * i + b
        if not held:
            v = beta * v + i
    elif not held:
        v = beta * v + b
    return v, i


def free_run(v, i, b, beta, alpha, t_last, t, ref=None):
    """``(v, i)`` at the end of step ``t`` of a neuron last updated at step
    ``t_last``, receiving nothing in between, stepped one step at a time;
    steps ``<= ref`` are refractory (``ref`` None: no refractory period)."""
    for s in range(t_last + 1, t + 1):
        v, i = one_step(v, i, b, beta, alpha, held=ref is not None and s <= ref)
    return v, i


def table(beta, alpha, n_steps, dtype=np.float64):
    """The propagator table of ``kernels.neuron`` from its definition: row
    ``k`` holds the state after ``k`` input-free steps from the basis states
    ``v = 1``, ``i = 1`` and ``b = 1`` (each row stepped from scratch in
    float64, then cast). Columns 1, 3, 4 are zero without a current."""
    out = np.zeros((n_steps + 1, 5))
    for k in range(n_steps + 1):
        v_v, _ = free_run(1.0, 0.0, 0.0, beta, alpha, 0, k)
        v_i, i_i = free_run(0.0, 1.0, 0.0, beta, alpha, 0, k)
        v_b, i_b = free_run(0.0, 0.0, 1.0, beta, alpha, 0, k)
        out[k] = (v_v, v_i, v_b, i_i, i_b) if alpha is not None else (v_v, 0.0, v_b, 0.0, 0.0)
    return out.astype(dtype)


def next_due(v, i, b, beta, alpha, threshold, t, end, ref=None):
    """First step ``s`` in ``(t, end)`` at which a neuron whose state at the
    end of step ``t`` is ``(v, i)``, receiving nothing more, reaches
    ``threshold`` (``NEVER`` if none): stepped forward one step at a time
    up to the horizon. A refractory neuron (steps ``<= ref``) cannot fire."""
    for s in range(t + 1, end):
        held = ref is not None and s <= ref
        v, i = one_step(v, i, b, beta, alpha, held=held)
        if not held and v >= threshold:
            return s
    return NEVER


def deliver(v, i, w, t, ref=None):
    """Input ``w`` at step ``t`` to a neuron already brought to ``t``: the
    current (if any) takes it; the membrane too, unless refractory."""
    if i is not None:
        i = i + w
    if ref is None or ref < t:
        v = v + w
    return v, i


def fire(v, t, threshold, reset_mode, v_reset, refractory, ref=None):
    """Threshold check and reset at step ``t``: ``(v, ref, spiked)``."""
    if ref is not None and ref >= t:
        return v, ref, False
    if v < threshold:
        return v, ref, False
    v = v - threshold if reset_mode == RESET_SUBTRACT else v_reset
    return v, (t + refractory if ref is not None else None), True


def clock_step(v, i, ref, b, inp, t, beta, alpha, threshold, reset_mode, v_reset, refractory):
    """Step ``t`` of one neuron, DESIGN.md section 1 literally (leak,
    integrate bias and input, fire, reset); ``ref`` is the last refractory
    step (-1 if none). Returns ``(v, i, ref, spiked, v before the reset)``."""
    if alpha is not None:
        i = alpha * i + b + inp
        v_new = beta * v + i
    else:
        v_new = beta * v + b + inp
    if ref >= t:  # refractory: membrane held, no spike
        return v, i, ref, False, v
    if v_new >= threshold:
        after = v_new - threshold if reset_mode == RESET_SUBTRACT else v_reset
        return after, i, t + refractory, True, v_new
    return v_new, i, ref, False, v_new


def clock_run(currents, bias, v_init, beta, alpha, threshold, reset_mode, v_reset, refractory):
    """A layer of neurons over all steps, clock-driven, one neuron and one
    step at a time: ``currents[T, n]`` the summed input per step.
    Returns ``(spikes [T, n] bool, v, i, ref, v before reset [T, n])``."""
    n_steps, n = currents.shape
    spikes = np.zeros((n_steps, n), bool)
    before = np.zeros((n_steps, n))
    v_out, i_out, ref_out = [], [], []
    for j in range(n):
        v, i, ref = v_init[j], 0.0 * v_init[j], -1
        for t in range(n_steps):
            v, i, ref, spikes[t, j], before[t, j] = clock_step(
                v, i, ref, bias[j], currents[t, j], t, beta, alpha, threshold, reset_mode, v_reset, refractory
            )
        v_out.append(v)
        i_out.append(i)
        ref_out.append(ref)
    return spikes, v_out, i_out, ref_out, before


# ---------------------------------------------------------------------------
# The calendar of due neurons
# ---------------------------------------------------------------------------


class Calendar:
    """A per-layer calendar of due neurons as a dict of sets: neuron ``j``
    is due at step ``due[j]`` (at most one step per neuron)."""

    def __init__(self, n):
        self.due = [NEVER] * n
        self.buckets: dict[int, set[int]] = {}

    def insert(self, j, s):
        assert self.due[j] == NEVER, "insert a scheduled neuron: remove it first"
        self.due[j] = s
        self.buckets.setdefault(s, set()).add(j)

    def remove(self, j):
        s = self.due[j]
        if s != NEVER:
            self.buckets[s].discard(j)
            self.due[j] = NEVER

    def bucket(self, s):
        return set(self.buckets.get(s, ()))

    def count(self):
        return sum(d != NEVER for d in self.due)


def pop_due(bucket, t_last, t):
    """Neurons due at step ``t`` that were not already touched at ``t``
    (``t_last[j] == t``): those are the stale entries skipped."""
    return {j for j in bucket if t_last[j] != t}


# ---------------------------------------------------------------------------
# Convolution geometry and connectivity
# ---------------------------------------------------------------------------


def conv_out_size(size, k, stride, pad, dil):
    """Output size of a Conv2d axis (torch's formula; < 1 means no output)."""
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def conv_reads(geom, oy, ox, ky, kx):
    """The input position ``(y, x)`` that output ``(oy, ox)`` reads through
    kernel offset ``(ky, kx)`` (possibly in the padding)."""
    _, _, _, _, _, _, _, _, sy, sx, py, px, dy, dx, _ = (int(g) for g in geom)
    return oy * sy - py + ky * dy, ox * sx - px + kx * dx


def spatial_taps(geom):
    """For each input position ``p = y * W_in + x``, the set of ``(output
    pixel, kernel position)`` pairs ``(oy * W_out + ox, ky * kw + kx)``
    through which it is read: every output position and every kernel offset
    is tried."""
    c_in, h_in, w_in, c_out, h_out, w_out, kh, kw = (int(g) for g in geom[:8])
    taps = [set() for _ in range(h_in * w_in)]
    for oy in range(h_out):
        for ox in range(w_out):
            for ky in range(kh):
                for kx in range(kw):
                    y, x = conv_reads(geom, oy, ox, ky, kx)
                    if 0 <= y < h_in and 0 <= x < w_in:
                        taps[y * w_in + x].add((oy * w_out + ox, ky * kw + kx))
    return taps


def conv_weight(geom, flat, co, ci, ky, kx):
    """Weight from input channel ``ci`` to output channel ``co`` at kernel
    offset ``(ky, kx)``, from the flat ``[C_in/groups, kh, kw, C_out]``
    layout; 0.0 when the two channels are in different groups."""
    c_in, _, _, c_out, _, _, kh, kw = (int(g) for g in geom[:8])
    groups = int(geom[14])
    cg_in, cg_out = c_in // groups, c_out // groups
    if ci // cg_in != co // cg_out:
        return 0.0
    return float(flat[((ci % cg_in) * kh + ky) * kw * c_out + kx * c_out + co])


def conv_matrix(geom, flat):
    """The convolution as a dense ``[n_in, n_out]`` float64 matrix
    (channel-first numbering), one output, input channel and offset at a
    time."""
    c_in, h_in, w_in, c_out, h_out, w_out, kh, kw = (int(g) for g in geom[:8])
    m = np.zeros((c_in * h_in * w_in, c_out * h_out * w_out))
    for co in range(c_out):
        for oy in range(h_out):
            for ox in range(w_out):
                o = (co * h_out + oy) * w_out + ox
                for ci in range(c_in):
                    for ky in range(kh):
                        for kx in range(kw):
                            y, x = conv_reads(geom, oy, ox, ky, kx)
                            if 0 <= y < h_in and 0 <= x < w_in:
                                m[(ci * h_in + y) * w_in + x, o] += conv_weight(geom, flat, co, ci, ky, kx)
    return m


def conv_fan_out(geom):
    """Synapses of each input neuron: the outputs of its group that read it
    through some offset, counted once per offset (absent, not zero,
    synapses excluded)."""
    c_in, h_in, w_in, c_out = (int(g) for g in geom[:4])
    groups = int(geom[14])
    taps = spatial_taps(geom)
    return np.array([len(taps[p % (h_in * w_in)]) * (c_out // groups) for p in range(c_in * h_in * w_in)])


def csr_matrix(rowptr, cols, weights, n):
    """A CSR projection as a dense ``[n_in, n]`` float64 matrix (repeated
    targets add)."""
    m = np.zeros((len(rowptr) - 1, n))
    for p in range(len(rowptr) - 1):
        for s in range(rowptr[p], rowptr[p + 1]):
            m[p, cols[s]] += float(weights[s])
    return m


# ---------------------------------------------------------------------------
# Drive
# ---------------------------------------------------------------------------


def matvec(x, m):
    """``x @ m`` for one sample, term by term, in float64."""
    n_in, n = m.shape
    out = np.zeros(n)
    for j in range(n):
        total = 0.0
        for p in range(n_in):
            total += float(x[p]) * float(m[p, j])
        out[j] = total
    return out


def spike_currents(tptr, idx, weights):
    """``current[t, j]``: the sum of ``weights[p, j]`` over the spikes ``p``
    of step ``t`` (counted with repetition)."""
    n_steps = len(tptr) - 1
    current = np.zeros((n_steps, weights.shape[1]))
    for t in range(n_steps):
        for e in range(tptr[t], tptr[t + 1]):
            for j in range(weights.shape[1]):
                current[t, j] += float(weights[idx[e], j])
    return current


# ---------------------------------------------------------------------------
# Max pooling by gating
# ---------------------------------------------------------------------------


def maxpool(raster, kernel, stride=None, padding=0):
    """The gate rule of ``kernels.pool`` on a ``[T, C, H, W]`` boolean
    raster: output ``(c, oy, ox)`` spikes at ``t`` iff some input of its
    window spiked at ``t`` with a spike count (up to and including ``t``) at
    least the window's highest count before ``t``. Window ``(oy, ox)``: rows
    ``oy * sy - py ... + kh - 1`` and columns ``ox * sx - px ... + kw - 1``
    that lie inside the image (padding never spikes); ``kernel``, ``stride``
    (default: the kernel), ``padding``: ints or pairs. Returns the output
    raster ``[T, C, h_out, w_out]``, ``h_out = (H + 2 py - kh) // sy + 1``."""
    n_steps, c, h, w = raster.shape
    kh, kw = (kernel, kernel) if np.isscalar(kernel) else kernel
    stride = kernel if stride is None else stride
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    py, px = (padding, padding) if np.isscalar(padding) else padding
    h_out, w_out = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    out = np.zeros((n_steps, c, h_out, w_out), bool)
    counts = np.cumsum(raster, axis=0)  # counts[t]: up to and including t
    for t in range(n_steps):
        for ch in range(c):
            for oy in range(h_out):
                for ox in range(w_out):
                    cells = [
                        (y, x)
                        for y in range(oy * sy - py, oy * sy - py + kh)
                        for x in range(ox * sx - px, ox * sx - px + kw)
                        if 0 <= y < h and 0 <= x < w
                    ]
                    before = max(counts[t - 1][ch, y, x] for y, x in cells) if t > 0 else 0
                    out[t, ch, oy, ox] = any(
                        raster[t][ch, y, x] and counts[t][ch, y, x] > before for y, x in cells
                    )
    return out


def maxpool_checks(raster, kernel, stride=None, padding=0):
    """Gate evaluations of ``kernels.pool`` on a ``[T, C, H, W]`` raster:
    the (input spike, window containing the input) pairs, counted window by
    window as the spikes inside each window (cells as in :func:`maxpool`)."""
    n_steps, c, h, w = raster.shape
    kh, kw = (kernel, kernel) if np.isscalar(kernel) else kernel
    stride = kernel if stride is None else stride
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    py, px = (padding, padding) if np.isscalar(padding) else padding
    per_input = raster.sum(axis=0)  # [C, H, W]
    total = 0
    for oy in range((h + 2 * py - kh) // sy + 1):
        for ox in range((w + 2 * px - kw) // sx + 1):
            for y in range(oy * sy - py, oy * sy - py + kh):
                for x in range(ox * sx - px, ox * sx - px + kw):
                    if 0 <= y < h and 0 <= x < w:
                        total += int(per_input[:, y, x].sum())
    return total


# ---------------------------------------------------------------------------
# Random numbers: xoshiro256** (Blackman & Vigna), in Python integers
# ---------------------------------------------------------------------------

_MASK = (1 << 64) - 1


class Xoshiro:
    """xoshiro256** from its published definition, with the derived draws
    the kernels' docstrings name: 53-bit uniforms, Lemire's unbiased bounded
    integers (on the upper 32 bits of a draw) and Poisson counts by
    multiplying uniforms (Knuth) for small means."""

    def __init__(self, state):
        self.s = [int(x) for x in state]

    def next_u64(self):
        s = self.s

        def rotl(x, k):
            return ((x << k) | (x >> (64 - k))) & _MASK

        result = (rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next_u64() >> 11) / 2.0**53

    def below(self, n):
        """Lemire (2019), "Fast random integer generation in an interval",
        algorithm 5 on 32-bit words."""
        m = (self.next_u64() >> 32) * n
        if m % 2**32 < n:
            floor = (2**32 - n) % n
            while m % 2**32 < floor:
                m = (self.next_u64() >> 32) * n
        return m >> 32

    def poisson_small(self, lam):
        """Knuth: the number of uniforms multiplied before the product drops
        to ``exp(-lam)`` or below, minus one."""
        if lam <= 0:
            return 0
        limit = math.exp(-lam)
        k, product = -1, 1.0
        while True:
            k += 1
            product *= self.uniform()
            if not product > limit:
                return k

    def state(self):
        return np.array(self.s, np.uint64)


def poisson_pmf(lam, k):
    """``P(K = k)`` of a Poisson(``lam``) count, in float64 (log space)."""
    return math.exp(k * math.log(lam) - lam - math.lgamma(k + 1.0))
