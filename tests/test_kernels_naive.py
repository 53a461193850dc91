"""Every kernel against its slow twin in ``tests/naive.py`` (stumpy's habit),
called directly on random inputs.

Tolerances
----------
Integer results (steps, spike trains, counts, indices, random draws) must
match exactly. Float results are compared with the twin's EXACT value (the
twins run on :class:`fractions.Fraction`):

- on dyadic inputs (multiples of 1/8, decays in {0, 1/4, 1/2, 3/4, 1}, a few
  dozen steps) every intermediate value of the kernels fits in a float64
  mantissa (fewer than 53 significant bits: see :func:`dyadic`), so the
  kernels must be exact and are compared with ``==``;
- otherwise, a closed-form leak over ``k`` steps is three products and two
  sums of propagator coefficients that were themselves built by ``k``
  float64 steps from non-negative decays; every rounding is then at most
  ``eps`` times the same computation run on absolute values (``S``), so the
  error is below ``4 (k + 5) eps S`` (``eps`` of the state dtype): that is
  the tolerance, and near-threshold decisions (next due step, spikes) may
  differ only where the exact membrane is within it of threshold;
- a drive (a sum of ``n`` products) is within ``(n + 1) eps64 sum|terms|``
  of the exact sum (the textbook bound for recursive summation).
"""

from __future__ import annotations

import math
from fractions import Fraction

import naive
import numpy as np
import pytest
from conftest import examples  # a test's own example count, scaled by the profile
from hypothesis import example, given, settings
from hypothesis import strategies as st

import snn
import snn_kernels as kernels
from snn_kernels import conv as kconv
from snn_kernels import event as kevent
from snn_kernels import neuron as kn
from snn_kernels import rng as krng

NEVER = kn.NEVER
DECAYS = [0.0, 0.25, 0.5, 0.75, 1.0]
THRESHOLDS = [0.5, 1.0, 1.5, 2.0, 3.0]
EPS = {np.float64: np.finfo(np.float64).eps, np.float32: np.finfo(np.float32).eps}


def dyadic(lo, hi, step=0.125):
    """Multiples of ``step`` in ``[lo, hi]``: with at most 16 steps of a
    decay in DECAYS the kernels' values need < 53 bits (denominators up to
    ``8 * 4**16 = 2**35``, magnitudes below ``2**12``)."""
    return st.integers(round(lo / step), round(hi / step)).map(lambda n: n * step)


def fx(x):
    return Fraction(float(x))


# ---------------------------------------------------------------------------
# Neuron helpers: propagator table, value_at (lazy leak), next_due, deliver, fire
# ---------------------------------------------------------------------------


@st.composite
def free_neurons(draw, exact, dtype=np.float64, n_steps=16):
    """A neuron, its state at the end of step ``t_last`` and a later step ``t``."""
    if exact:
        beta = draw(st.sampled_from(DECAYS))
        alpha = draw(st.none() | st.sampled_from(DECAYS))
        thr = draw(st.sampled_from(THRESHOLDS))
        value = dyadic(-4, 4)
    else:
        beta = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
        alpha = draw(st.none() | st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
        thr = draw(st.floats(0.05, 4.0))
        value = st.floats(-3.0, 3.0)
    v, i, b = (dtype(draw(value)) for _ in range(3))
    if alpha is None:
        i = dtype(0.0)
    t_last = draw(st.integers(-1, n_steps - 1))
    ref = draw(st.none() | st.integers(-1, t_last + 5))
    return dict(beta=beta, alpha=alpha, thr=dtype(thr), v=v, i=i, b=b, t_last=t_last, ref=ref, dtype=dtype)


def state_of(nrn, rows=3, j=1):
    """State array with the neuron in row ``j`` and noise elsewhere."""
    width = 4 if nrn["alpha"] is not None or nrn["ref"] is not None else 2
    state = np.full((rows, width), 7.0, nrn["dtype"])
    state[j, kn.V] = nrn["v"]
    state[j, kn.T_LAST] = nrn["t_last"]
    if width == 4:
        state[j, kn.I] = nrn["i"]
        state[j, kn.REF] = -1 if nrn["ref"] is None else nrn["ref"]
    return state


def exact_run(nrn, t, absolute=False):
    """The twin's exact ``(v, i)`` at step ``t``; ``absolute``: the same run on
    the absolute values of ``v``, ``i``, ``b`` (the rounding scale ``S``)."""
    f = abs if absolute else (lambda x: x)
    alpha = None if nrn["alpha"] is None else fx(nrn["alpha"])
    return naive.free_run(
        f(fx(nrn["v"])),
        f(fx(nrn["i"])),
        f(fx(nrn["b"])),
        fx(nrn["beta"]),
        alpha,
        nrn["t_last"],
        t,
        nrn["ref"],
    )


def rounding_tol(nrn, t, which=0):
    """``4 (k + 5) (eps S + u (1 + |v| + |i| + |b|))``: ``u`` is the smallest
    subnormal, the absolute error of an operation that underflows (a tiny
    decay's power cast to float32, say)."""
    k = t - nrn["t_last"]
    info = np.finfo(nrn["dtype"])
    scale = exact_run(nrn, t, absolute=True)[which]
    size = 1 + abs(fx(nrn["v"])) + abs(fx(nrn["i"])) + abs(fx(nrn["b"]))
    return 4 * (k + 5) * (fx(info.eps) * scale + fx(info.smallest_subnormal) * size)


def kernel_value_at(nrn, t, tab, state=None):
    state = state_of(nrn) if state is None else state
    return kn.value_at(state, 1, t, nrn["b"], tab, nrn["alpha"] is not None, nrn["ref"] is not None)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(beta=st.floats(0.0, 1.0), alpha=st.none() | st.floats(0.0, 1.0), n_steps=st.integers(0, 30))
@settings(max_examples=examples(20))
def test_propagator_table_matches_definition(dtype, beta, alpha, n_steps):
    """The table ``snn`` feeds the kernels is row ``k`` = ``k`` silent steps
    from the basis states (same float64 steps: exact)."""
    nrn = snn.Neuron(beta=beta, alpha=alpha)
    np.testing.assert_array_equal(nrn.propagator(n_steps, dtype), naive.table(beta, alpha, n_steps, dtype))


@given(nrn=free_neurons(exact=True), data=st.data())
@example(  # k = 0 steps
    nrn=dict(beta=0.5, alpha=0.5, thr=1.0, v=0.75, i=-0.5, b=0.25, t_last=3, ref=None, dtype=np.float64),
    data=None,
)
def test_value_at_exact_on_dyadic(nrn, data):
    """Lazy leak over ``k`` silent steps (refractory steps first) equals
    stepping one step at a time, exactly."""
    t = nrn["t_last"] if data is None else data.draw(st.integers(nrn["t_last"], 15))
    tab = naive.table(nrn["beta"], nrn["alpha"], 16)
    v, i = kernel_value_at(nrn, t, tab)
    v_exact, i_exact = exact_run(nrn, t)
    assert fx(v) == v_exact
    if nrn["alpha"] is not None:
        assert fx(i) == i_exact


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_value_at_within_rounding(dtype, data):
    nrn = data.draw(free_neurons(exact=False, dtype=dtype, n_steps=40))
    t = data.draw(st.integers(nrn["t_last"], 39))
    tab = naive.table(nrn["beta"], nrn["alpha"], 40, dtype)
    v, i = kernel_value_at(nrn, t, tab)
    v_exact, i_exact = exact_run(nrn, t)
    tol = rounding_tol(nrn, t)
    assert abs(fx(v) - v_exact) <= tol
    if nrn["alpha"] is not None:
        assert abs(fx(i) - i_exact) <= rounding_tol(nrn, t, which=1)


@given(nrn=free_neurons(exact=True), data=st.data())
def test_advance_writes_value_at(nrn, data):
    t = data.draw(st.integers(nrn["t_last"], 15))
    tab = naive.table(nrn["beta"], nrn["alpha"], 16)
    state = state_of(nrn)
    before = state.copy()
    kn.advance(state, 1, t, nrn["b"], tab, nrn["alpha"] is not None, nrn["ref"] is not None)
    v_exact, i_exact = exact_run(nrn, t)
    assert fx(state[1, kn.V]) == v_exact and state[1, kn.T_LAST] == t
    if nrn["alpha"] is not None:
        assert fx(state[1, kn.I]) == i_exact
    if state.shape[1] == 4:
        assert state[1, kn.REF] == before[1, kn.REF]
    np.testing.assert_array_equal(np.delete(state, 1, 0), np.delete(before, 1, 0))


def kernel_next_due(nrn, end, tab):
    t = nrn["t_last"]
    return kn.next_due(
        state_of(nrn), 1, t, end, nrn["b"], nrn["thr"], tab, nrn["alpha"] is not None, nrn["ref"] is not None
    )


def twin_next_due(nrn, end):
    alpha = None if nrn["alpha"] is None else fx(nrn["alpha"])
    return naive.next_due(
        fx(nrn["v"]),
        fx(nrn["i"]),
        fx(nrn["b"]),
        fx(nrn["beta"]),
        alpha,
        fx(nrn["thr"]),
        nrn["t_last"],
        end,
        nrn["ref"],
    )


def IF_at(v, b, thr, t=-1, ref=None, beta=1.0, alpha=None, i=0.0):
    return dict(beta=beta, alpha=alpha, thr=thr, v=v, i=i, b=b, t_last=t, ref=ref, dtype=np.float64)


NEXT_DUE_CASES = [  # (neuron, end, expected first step)
    (IF_at(0.0, 0.25, 1.0), 16, 3),  # threshold exactly reached at the 4th step
    (IF_at(0.0, 0.25, 1.0), 4, 3),  # ... just before the horizon
    (IF_at(0.0, 0.25, 1.0), 3, NEVER),  # ... at the horizon: not searched
    (IF_at(0.0, 0.25, 1.0, t=5), 6, NEVER),  # empty interval (t, end)
    (IF_at(0.875, -0.5, 1.0), 16, NEVER),  # falling: never fires
    (IF_at(0.875, 0.0, 1.0, beta=0.5), 16, NEVER),  # no drive: never fires
    (IF_at(2.5, 0.0, 1.0, t=2), 16, 3),  # residue above threshold after a subtract reset
    (IF_at(2.5, -0.5, 1.0, t=2), 16, 3),  # ... fires though falling
    (IF_at(2.5, 0.0, 1.0, t=2, ref=5), 16, 6),  # ... once out of its refractory period
    (IF_at(2.5, 0.0, 1.0, t=2, ref=15), 16, NEVER),  # refractory up to the horizon
    (IF_at(2.5, 0.0, 1.0, t=2, ref=3), 16, 4),  # above threshold, held one step
    (IF_at(0.0, 0.5, 1.0, beta=0.5), 16, NEVER),  # settles at 1 - 2**-k: below, for good
    (IF_at(0.0, 0.0, 0.5, beta=0.5, alpha=0.5, i=1.0), 16, 0),  # current: peak exactly at threshold
    (IF_at(0.0, 0.0, 0.625, beta=0.5, alpha=0.5, i=1.0), 16, NEVER),  # ... just above the peak
    (IF_at(0.5, 0.125, 1.0, beta=0.75, alpha=0.75, i=0.5), 16, 1),  # rising through a current
    (IF_at(0.75, 0.125, 1.0, beta=1.0, alpha=1.0, i=-0.25), 16, 3),  # valley, then rising
    (IF_at(-1.0, 0.0, 2.0**-12, beta=0.25, alpha=0.25, i=0.25), 16, 4),  # reached at the peak only
]


@pytest.mark.parametrize("nrn, end, expected", NEXT_DUE_CASES)
def test_next_due_edge_cases(nrn, end, expected):
    tab = naive.table(nrn["beta"], nrn["alpha"], 16)
    assert twin_next_due(nrn, end) == expected
    assert kernel_next_due(nrn, end, tab) == expected


def test_next_due_never_with_infinite_threshold():
    nrn = IF_at(5.0, 3.0, math.inf)
    assert kernel_next_due(nrn, 16, naive.table(1.0, None, 16)) == NEVER
    assert naive.next_due(5.0, 0.0, 3.0, 1.0, None, math.inf, -1, 16) == NEVER


@given(nrn=free_neurons(exact=True), data=st.data())
@settings(max_examples=examples(150))
def test_next_due_exact_on_dyadic(nrn, data):
    """The closed-form search returns the step the twin reaches by stepping;
    half the time the threshold is exactly the membrane at some later step."""
    end = data.draw(st.integers(nrn["t_last"] + 1, 16))
    if data.draw(st.booleans()):
        v_then = exact_run(nrn, data.draw(st.integers(nrn["t_last"], 15)))[0]
        if v_then > 0:
            nrn = dict(nrn, thr=float(v_then))
    tab = naive.table(nrn["beta"], nrn["alpha"], 16)
    assert kernel_next_due(nrn, end, tab) == twin_next_due(nrn, end)


def _first_by_value_at(nrn, end, tab):
    for s in range(nrn["t_last"] + 1, end):
        if (nrn["ref"] is None or s > nrn["ref"]) and kernel_value_at(nrn, s, tab)[0] >= nrn["thr"]:
            return s
    return NEVER


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_next_due_within_rounding(dtype, data):
    """Random floats: the kernel's step is found above threshold by
    ``value_at`` (what the calendar relies on), and it differs from the
    twin's only where the exact membrane is within the rounding tolerance
    of threshold."""
    nrn = data.draw(free_neurons(exact=False, dtype=dtype, n_steps=40))
    end = data.draw(st.integers(nrn["t_last"] + 1, 40))
    tab = naive.table(nrn["beta"], nrn["alpha"], 40, dtype)
    got, want = kernel_next_due(nrn, end, tab), twin_next_due(nrn, end)
    if got != NEVER:
        assert nrn["t_last"] < got < end and (nrn["ref"] is None or got > nrn["ref"])
        assert kernel_value_at(nrn, got, tab)[0] >= nrn["thr"]
    if got != want:
        s = min(x for x in (got, want) if x != NEVER)
        assert abs(exact_run(nrn, s)[0] - fx(nrn["thr"])) <= rounding_tol(nrn, s), (got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_next_due_is_first_crossing_of_value_at(dtype, data):
    """The galloping and binary searches find the first step at which
    ``value_at`` (the kernel's own arithmetic) reaches threshold: a linear
    scan. Exact (integer) agreement, random floats."""
    nrn = data.draw(free_neurons(exact=False, dtype=dtype, n_steps=40))
    end = data.draw(st.integers(nrn["t_last"] + 1, 40))
    tab = naive.table(nrn["beta"], nrn["alpha"], 40, dtype)
    assert kernel_next_due(nrn, end, tab) == _first_by_value_at(nrn, end, tab)


@given(
    v=dyadic(-4, 4),
    i=st.none() | dyadic(-4, 4),
    w=dyadic(-4, 4),
    ref=st.none() | st.integers(-1, 8),
    t=st.integers(0, 6),
)
@settings(max_examples=examples(30))
def test_deliver(v, i, w, ref, t):
    nrn = dict(v=v, i=0.0 if i is None else i, t_last=t, ref=ref, alpha=i, dtype=np.float64)
    state = state_of(nrn)
    kn.deliver(state, 1, t, w, i is not None, ref is not None)
    v2, i2 = naive.deliver(v, i, w, t, ref)
    assert state[1, kn.V] == v2 and state[1, kn.T_LAST] == t
    if i is not None:
        assert state[1, kn.I] == i2


@given(
    v=dyadic(-4, 4),
    thr=st.sampled_from(THRESHOLDS),
    reset=st.sampled_from([kn.RESET_SUBTRACT, kn.RESET_TO_VALUE]),
    v_reset=dyadic(-1, 0.25),
    refractory=st.integers(0, 3),
    ref=st.none() | st.integers(-1, 8),
    t=st.integers(0, 6),
)
@settings(max_examples=examples(30))
def test_fire(v, thr, reset, v_reset, refractory, ref, t):
    nrn = dict(v=v, i=0.0, t_last=t, ref=ref, alpha=None, dtype=np.float64)
    state = state_of(nrn)
    spiked = kn.fire(state, 1, t, thr, reset, v_reset, refractory, ref is not None)
    v2, ref2, spiked2 = naive.fire(v, t, thr, reset, v_reset, refractory, ref)
    assert spiked == spiked2 and state[1, kn.V] == v2
    if ref is not None:
        assert state[1, kn.REF] == ref2


# ---------------------------------------------------------------------------
# The calendar of due neurons
# ---------------------------------------------------------------------------


def calendar_buckets(head, nxt, prv, n_steps):
    """Walk the kernel's linked lists (checking their back links)."""
    buckets = {}
    for s in range(n_steps):
        seen, j, back = [], int(head[s]), -1
        while j >= 0:
            assert prv[j] == back and len(seen) <= len(nxt)
            seen.append(j)
            back, j = j, int(nxt[j])
        assert len(set(seen)) == len(seen)
        buckets[s] = set(seen)
    return buckets


@st.composite
def calendar_ops(draw):
    n = draw(st.integers(1, 8))
    n_steps = draw(st.integers(1, 6))
    op = st.tuples(st.booleans(), st.integers(0, n - 1), st.integers(0, n_steps - 1))
    return n, n_steps, draw(st.lists(op, max_size=30))


def kernel_calendar(n, n_steps):
    return (
        kevent._new_calendar(n_steps),
        np.empty(n, np.int32),
        np.empty(n, np.int32),
        np.full(n, NEVER, np.int32),
    )


@given(ops=calendar_ops())
def test_calendar_insert_remove(ops):
    """After every insert or remove the buckets, the due steps and the count
    are those of the dict-of-sets twin. An insert is preceded by a remove,
    as the kernels do when they reschedule."""
    n, n_steps, seq = ops
    head, nxt, prv, due = kernel_calendar(n, n_steps)
    twin = naive.Calendar(n)
    assert head.shape == (n_steps + 1,) and (head[:n_steps] == -1).all() and head[n_steps] == 0
    for insert, j, s in seq:
        kn.calendar_remove(head, nxt, prv, due, j)
        twin.remove(j)
        if insert:
            kn.calendar_insert(head, nxt, prv, due, j, s)
            twin.insert(j, s)
        assert calendar_buckets(head, nxt, prv, n_steps) == {s: twin.bucket(s) for s in range(n_steps)}
        assert list(due) == twin.due
        assert head[n_steps] == twin.count()


@given(ops=calendar_ops(), data=st.data())
def test_pop_due_skips_stale_entries(ops, data):
    """Popping step ``t`` touches (advances) the neurons of its bucket not
    already touched at ``t``, once each; the others are left alone."""
    n, n_steps, seq = ops
    head, nxt, prv, due = kernel_calendar(n, n_steps)
    twin = naive.Calendar(n)
    for insert, j, s in seq:
        kn.calendar_remove(head, nxt, prv, due, j)
        twin.remove(j)
        if insert:
            kn.calendar_insert(head, nxt, prv, due, j, s)
            twin.insert(j, s)
    t = data.draw(st.integers(0, n_steps - 1))
    t_last = data.draw(st.lists(st.integers(-1, t), min_size=n, max_size=n))
    v0 = data.draw(st.lists(dyadic(-2, 2), min_size=n, max_size=n))
    state = np.zeros((n, 2))
    state[:, kn.V] = v0
    state[:, kn.T_LAST] = t_last
    pre = [j for j in range(n) if t_last[j] == t]  # touched by input at t already
    touched = np.full(n, -5, np.int32)
    touched[: len(pre)] = pre
    b, tab = 0.25, naive.table(0.5, None, n_steps)
    n_touched = kevent._pop_due(state, t, np.array([b]), tab, False, False, head, nxt, touched, len(pre))
    popped = naive.pop_due(twin.bucket(t), t_last, t)
    assert n_touched == len(pre) + len(popped)
    assert list(touched[: len(pre)]) == pre and set(touched[len(pre) : n_touched]) == popped
    for j in range(n):
        if j in popped:
            v, _ = naive.free_run(fx(v0[j]), 0, fx(b), Fraction(1, 2), None, t_last[j], t)
            assert fx(state[j, kn.V]) == v and state[j, kn.T_LAST] == t
        else:
            assert state[j, kn.V] == v0[j] and state[j, kn.T_LAST] == t_last[j]


# ---------------------------------------------------------------------------
# The clock-driven steps: sweep_step and clock_layer
# ---------------------------------------------------------------------------


@st.composite
def layer_models(draw):
    beta = draw(st.sampled_from(DECAYS))
    alpha = draw(st.none() | st.sampled_from(DECAYS))
    thr = draw(st.sampled_from(THRESHOLDS))
    reset = draw(st.sampled_from([kn.RESET_SUBTRACT, kn.RESET_TO_VALUE]))
    v_reset = draw(dyadic(-1, 0.25)) if reset == kn.RESET_TO_VALUE else 0.0
    refractory = draw(st.sampled_from([0, 0, 1, 3]))
    return dict(beta=beta, alpha=alpha, thr=thr, reset=reset, v_reset=v_reset, refractory=refractory)


def twin_params(m):
    return (m["beta"], m["alpha"], m["thr"], m["reset"], m["v_reset"], m["refractory"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(m=layer_models(), data=st.data())
@settings(max_examples=examples(50))
def test_sweep_step(dtype, m, data):
    """One clock-driven step of neurons ``base .. base + n``: exact on
    dyadic values in both dtypes (one step needs < 24 bits)."""
    total = data.draw(st.integers(1, 8))
    base = data.draw(st.integers(0, total - 1))
    n = data.draw(st.integers(0, total - base))
    t = data.draw(st.integers(0, 9))
    has_cur, has_ref = m["alpha"] is not None, m["refractory"] > 0
    width = 4 if has_cur or has_ref else 2
    vals = lambda k, lo=-3, hi=3: data.draw(st.lists(dyadic(lo, hi), min_size=k, max_size=k))  # noqa: E731
    state = np.zeros((total, width), dtype)
    state[:, kn.V] = vals(total)
    state[:, kn.T_LAST] = t - 1
    if width == 4:
        state[:, kn.I] = vals(total) if has_cur else 0.0
        state[:, kn.REF] = data.draw(st.lists(st.integers(-1, t + 2), min_size=total, max_size=total))
    acc = np.array(vals(total, -2, 2), dtype)
    bias = np.array(vals(1) if data.draw(st.booleans()) else vals(max(n, 1)), dtype)
    n_out0 = data.draw(st.integers(0, 2))
    cap = n_out0 + data.draw(st.integers(0, n + 1))
    out_idx = np.full(cap, -7, np.int32)
    before, acc_before = state.copy(), acc.copy()

    tab = naive.table(m["beta"], m["alpha"], 2, dtype)
    got = kn.sweep_step(
        state, acc, base, n, t, bias, tab, dtype(m["thr"]), m["reset"], dtype(m["v_reset"]),
        m["refractory"], has_cur, has_ref, out_idx, n_out0,
    )  # fmt: skip

    spikes = []
    for q in range(n):
        j = base + q
        ref = int(before[j, kn.REF]) if has_ref else -1
        b = bias[0] if len(bias) == 1 else bias[q]
        i0 = fx(before[j, kn.I]) if has_cur else Fraction(0)
        v, i, ref, spiked, _ = naive.clock_step(
            fx(before[j, kn.V]), i0, ref, fx(b), fx(acc_before[j]), t, *_exact_params(m)
        )
        if spiked:
            spikes.append(j)
        if len(spikes) + n_out0 > cap:
            assert got == -1
            return
        assert fx(state[j, kn.V]) == v and state[j, kn.T_LAST] == t and acc[j] == 0
        if has_cur:
            assert fx(state[j, kn.I]) == i
        if has_ref:
            assert state[j, kn.REF] == ref
    assert got == n_out0 + len(spikes)
    assert list(out_idx[n_out0:got]) == spikes and (out_idx[:n_out0] == -7).all()
    outside = np.r_[0:base, base + n : total]
    np.testing.assert_array_equal(state[outside], before[outside])
    np.testing.assert_array_equal(acc[outside], acc_before[outside])


def _exact_params(m):
    beta, alpha, thr, reset, v_reset, refractory = twin_params(m)
    return fx(beta), (None if alpha is None else fx(alpha)), fx(thr), reset, fx(v_reset), refractory


def twin_layer(currents, bias, v_init, m):
    """The twin's exact clock-driven run of one sample."""
    cur = np.empty(currents.shape, dtype=object)
    for idx, c in np.ndenumerate(currents):
        cur[idx] = fx(c)
    return naive.clock_run(cur, [fx(b) for b in bias], [fx(v) for v in v_init], *_exact_params(m))


def raster_of(tptr, idx, n_steps, n):
    out = np.zeros((n_steps, n), bool)
    for t in range(n_steps):
        out[t, idx[tptr[t] : tptr[t + 1]]] = True
    return out


@given(m=layer_models(), data=st.data())
@settings(max_examples=examples(40))
def test_clock_layer(m, data):
    n_steps = data.draw(st.integers(0, 12))
    n = data.draw(st.integers(1, 6))
    batch = data.draw(st.integers(1, 2))
    currents = np.array(
        data.draw(st.lists(dyadic(-2, 2), min_size=batch * n_steps * n, max_size=batch * n_steps * n))
    )
    currents = currents.reshape(batch, n_steps, n)
    shared = data.draw(st.booleans())
    bias = np.array(
        data.draw(st.lists(dyadic(-1, 1), min_size=1 if shared else n, max_size=1 if shared else n))
    )
    bias = bias.reshape(1, -1)
    v_init = np.array(data.draw(st.lists(dyadic(-1, 1), min_size=n, max_size=n)))
    state = np.zeros((batch, n, 4))
    out_tptr = np.zeros((batch, n_steps + 1), np.int64)
    out_idx = np.zeros((batch, n_steps * n + 1), np.int32)
    counts = np.zeros((batch, 4), np.int64)
    kernels.clock_layer(
        currents, bias, m["alpha"] or 0.0, m["beta"], m["thr"], m["reset"], m["v_reset"], m["refractory"],
        v_init, m["alpha"] is not None, state, out_tptr, out_idx, counts,
    )  # fmt: skip
    for s in range(batch):
        b = [bias[0, 0]] * n if shared else bias[0]
        spikes, v, i, ref, _ = twin_layer(currents[s], b, v_init, m)
        np.testing.assert_array_equal(raster_of(out_tptr[s], out_idx[s], n_steps, n), spikes)
        assert list(counts[s]) == [0, n_steps * n, spikes.sum(), 0]
        assert [fx(x) for x in state[s, :, 0]] == v and (state[s, :, 1] == n_steps - 1).all()
        assert [fx(x) for x in state[s, :, 2]] == i and list(state[s, :, 3]) == ref


# ---------------------------------------------------------------------------
# Convolution geometry
# ---------------------------------------------------------------------------


@st.composite
def geometries(draw, max_size=7):
    groups = draw(st.integers(1, 3))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    py, px = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    dy, dx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # pad just enough that the dilated kernel fits (no rejection sampling)
    py += max(0, dy * (kh - 1) + 1 - h - 2 * py + 1) // 2
    px += max(0, dx * (kw - 1) + 1 - w - 2 * px + 1) // 2
    return make_geom(c_in, h, w, c_out, kh, kw, sy, sx, py, px, dy, dx, groups)


def make_geom(c_in, h, w, c_out, kh, kw, sy=1, sx=1, py=0, px=0, dy=1, dx=1, groups=1):
    h_out = naive.conv_out_size(h, kh, sy, py, dy)
    w_out = naive.conv_out_size(w, kw, sx, px, dx)
    assert h_out >= 1 and w_out >= 1
    return np.array([c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups], np.int64)


GEOM_EDGES = [
    make_geom(1, 1, 1, 1, 1, 1),  # 1x1 image, 1x1 kernel
    make_geom(2, 1, 1, 3, 3, 3, py=1, px=1),  # 1x1 image, padded 3x3 kernel
    make_geom(1, 5, 6, 2, 2, 2, sy=4, sx=3),  # stride > kernel: inputs no tap reaches
    make_geom(1, 3, 3, 1, 2, 2, py=4, px=5),  # padding larger than the kernel
    make_geom(1, 7, 7, 1, 3, 3, dy=3, dx=2, py=1),  # dilation
    make_geom(4, 4, 4, 6, 3, 1, groups=2, px=1),  # groups
    make_geom(3, 5, 4, 3, 2, 3, sy=2, dx=2, px=1, groups=3),  # depthwise
]


@given(geom=geometries())
@example(geom=GEOM_EDGES[0])
@example(geom=GEOM_EDGES[1])
@example(geom=GEOM_EDGES[2])
@example(geom=GEOM_EDGES[3])
@example(geom=GEOM_EDGES[4])
@example(geom=GEOM_EDGES[5])
@example(geom=GEOM_EDGES[6])
def test_spatial_taps(geom):
    """The tap table lists, for every input position, exactly the (output
    pixel, kernel position) pairs through which some output reads it."""
    n_taps, pixel, tap = kconv.spatial_taps(geom)
    want = naive.spatial_taps(geom)
    assert len(n_taps) == geom[1] * geom[2]
    for p, pairs in enumerate(want):
        got = [(int(pixel[p, k]), int(tap[p, k])) for k in range(n_taps[p])]
        assert len(got) == len(set(got)) and set(got) == pairs, p
    sizes = kconv.conv_sizes(geom)
    c_in, h, w, c_out, h_out, w_out, kh, kw = geom[:8]
    g = geom[14]
    assert tuple(sizes) == (h * w, c_in // g, c_out, c_out // g, kh * kw, h_out * w_out)


# ---------------------------------------------------------------------------
# Drive kernels
# ---------------------------------------------------------------------------


def sum_bound(x, m, n_terms=None):
    """``(n + 1) eps64 sum|x_p m_pj|`` per output: the recursive-summation
    bound over ``n_terms`` terms (default: one per row of ``m``); ``m`` holds
    the absolute value of every term's weight (repeated synapses summed as
    absolute values: their cancellation does not shrink the rounding)."""
    n_terms = m.shape[0] if n_terms is None else n_terms
    return (n_terms + 1) * EPS[np.float64] * (np.abs(x)[:, None] * np.abs(m)).sum(axis=0)


def _inputs(data, batch, n_in, exact):
    value = dyadic(-2, 2, 1 / 16) if exact else st.floats(-2, 2)
    x = np.array(data.draw(st.lists(value, min_size=batch * n_in, max_size=batch * n_in)), np.float64)
    x = x.reshape(batch, n_in)
    x[
        np.array(data.draw(st.lists(st.booleans(), min_size=x.size, max_size=x.size)), bool).reshape(x.shape)
    ] = 0
    return x


def _weights(data, size, exact):
    value = dyadic(-4, 4) if exact else st.floats(-3, 3, width=32)
    return np.array(data.draw(st.lists(value, min_size=size, max_size=size)), np.float32)


def _check_drive(x, m, drive, exact, m_abs=None, n_terms=None):
    """``drive == x @ m`` per sample: exactly, or within the summation bound
    (``m_abs``: the absolute weights of the terms, default ``|m|``)."""
    for s in range(x.shape[0]):
        want = naive.matvec(x[s], m)
        if exact:
            np.testing.assert_array_equal(drive[s], want)
        else:
            bound = sum_bound(x[s], np.abs(m) if m_abs is None else m_abs, n_terms)
            assert (np.abs(drive[s] - want) <= bound).all()


@pytest.mark.parametrize("exact", [True, False])
@given(data=st.data())
@settings(max_examples=examples(30))
def test_dense_drive(exact, data):
    batch, n_in, n = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 10)), data.draw(st.integers(1, 8))
    x = _inputs(data, batch, n_in, exact)
    w = _weights(data, n_in * n, exact).reshape(n_in, n)
    drive = np.full((batch, n), np.nan)
    kernels.dense_drive(x, w, drive)
    _check_drive(x, w.astype(np.float64), drive, exact)


@st.composite
def csr(draw, n_in, n, exact):
    lengths = draw(st.lists(st.integers(0, 5), min_size=n_in, max_size=n_in))
    rowptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    nnz = int(rowptr[-1])
    cols = np.array(draw(st.lists(st.integers(0, n - 1), min_size=nnz, max_size=nnz)), np.int32)
    value = dyadic(-4, 4) if exact else st.floats(-3, 3, width=32)
    weights = np.array(draw(st.lists(value, min_size=nnz, max_size=nnz)), np.float32)
    return rowptr, cols, weights  # repeated targets and empty rows included


@pytest.mark.parametrize("exact", [True, False])
@given(data=st.data())
@settings(max_examples=examples(30))
def test_csr_drive(exact, data):
    batch, n_in, n = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 10)), data.draw(st.integers(1, 8))
    x = _inputs(data, batch, n_in, exact)
    rowptr, cols, weights = data.draw(csr(n_in, n, exact))
    drive = np.full((batch, n), np.nan)
    kernels.csr_drive(x, rowptr, cols, weights, drive)
    m_abs = naive.csr_matrix(rowptr, cols, np.abs(weights), n)  # repeated synapses: terms of their own
    _check_drive(x, naive.csr_matrix(rowptr, cols, weights, n), drive, exact, m_abs, n_terms=len(cols) + n_in)


@pytest.mark.parametrize("exact", [True, False])
@given(geom=geometries(max_size=5), data=st.data())
@example(geom=GEOM_EDGES[1], data=None)
@example(geom=GEOM_EDGES[2], data=None)
@example(geom=GEOM_EDGES[3], data=None)
@example(geom=GEOM_EDGES[5], data=None)
@settings(max_examples=examples(30))
def test_conv_drive(exact, geom, data):
    c_in, h, w, c_out, h_out, w_out, kh, kw = (int(g) for g in geom[:8])
    n_in, n = c_in * h * w, c_out * h_out * w_out
    size = c_in // int(geom[14]) * kh * kw * c_out
    if data is None:  # an @example: fixed pseudo-random values
        rng = np.random.default_rng(0)
        x = rng.integers(-8, 9, (2, n_in)) / 4.0
        flat = (rng.integers(-8, 9, size) / 8.0).astype(np.float32)
    else:
        x, flat = _inputs(data, 2, n_in, exact), _weights(data, size, exact)
    drive = np.full((x.shape[0], n), np.nan)
    kernels.conv_drive(x, geom, flat, drive)
    _check_drive(x, naive.conv_matrix(geom, flat), drive, exact or data is None)


def time_csr(raster_batch):
    """``[B, T, n]`` booleans to per-sample time-CSR (sorted within a step)."""
    batch, n_steps, _ = raster_batch.shape
    tptr = np.zeros((batch, n_steps + 1), np.int64)
    lists = []
    for s in range(batch):
        idx = []
        for t in range(n_steps):
            tptr[s, t] = len(idx)
            idx.extend(np.flatnonzero(raster_batch[s, t]))
        tptr[s, n_steps] = len(idx)
        lists.append(idx)
    idx = np.full((batch, max(1, max(map(len, lists)))), -1, np.int32)
    for s, row in enumerate(lists):
        idx[s, : len(row)] = row
    return tptr, idx


def rasters(data, batch, n_steps, n, p=None):
    p = data.draw(st.floats(0.0, 0.7)) if p is None else p
    seed = data.draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).random((batch, n_steps, n)) < p


@pytest.mark.parametrize("exact", [True, False])
@given(data=st.data())
@settings(max_examples=examples(30))
def test_spike_currents(exact, data):
    batch, n_steps = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 8))
    n_in, n = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 5))
    tptr, idx = time_csr(rasters(data, batch, n_steps, n_in))
    weights = _weights(data, n_in * n, exact).astype(np.float64).reshape(n_in, n)
    current = np.full((batch, n_steps, n), np.nan)
    kernels.spike_currents(tptr, idx, weights, current)
    for s in range(batch):
        want = naive.spike_currents(tptr[s], idx[s], weights)
        if exact:
            np.testing.assert_array_equal(current[s], want)
        else:  # at most n_in terms per sum
            bound = (n_in + 1) * EPS[np.float64] * np.abs(weights).sum(axis=0)
            assert (np.abs(current[s] - want) <= bound).all()


# ---------------------------------------------------------------------------
# Max pooling by gating
# ---------------------------------------------------------------------------


@st.composite
def pool_geometries(draw, max_size=7):
    """``(geom, (kernel, stride, padding))`` of a max-pool of torch's rules:
    padding at most half the kernel, the kernel fitting the padded input;
    strides below, at and above the kernel (overlapping, tiling and gapped
    windows)."""
    c = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    py, px = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * py), max_size))
    w = draw(st.integers(max(1, kw - 2 * px), max_size))
    sy, sx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return pool_geom(c, h, w, kh, kw, sy, sx, py, px), ((kh, kw), (sy, sx), (py, px))


def pool_geom(c, h, w, kh, kw, sy, sx, py=0, px=0):
    h_out, w_out = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    assert h_out >= 1 and w_out >= 1
    return np.array([c, h, w, h_out, w_out, kh, kw, sy, sx, py, px], np.int64)


def run_maxpool(tptr, idx, geom, cap):
    batch, n_steps = tptr.shape[0], tptr.shape[1] - 1
    out_tptr = np.full((batch, n_steps + 1), -1, np.int64)
    out_idx = np.full((batch, max(1, cap)), -1, np.int32)
    counts = np.zeros((batch, 4), np.int64)
    seen = np.zeros((batch, int(geom[0] * geom[1] * geom[2])), np.int32)
    highest = np.zeros((batch, int(geom[0] * geom[3] * geom[4])), np.int32)
    kernels.maxpool_layer(tptr, idx, geom, seen, highest, out_tptr, out_idx, counts)
    return out_tptr, out_idx, counts


def pool_raster(out_tptr, out_idx, n_out):
    """One sample's output time-CSR as a ``[T, n_out]`` boolean raster,
    checking that no output spikes twice in a step."""
    got = np.zeros((len(out_tptr) - 1, n_out), bool)
    for t in range(len(out_tptr) - 1):
        emitted = out_idx[out_tptr[t] : out_tptr[t + 1]]
        assert len(set(emitted.tolist())) == len(emitted)  # one spike per output per step
        got[t, emitted] = True
    return got


STEM = pool_geom(1, 5, 5, 3, 3, 2, 2, 1, 1), ((3, 3), (2, 2), (1, 1))  # ResNet's MaxPool2d(3, 2, 1)


@given(data=st.data())
@example(data=None)
@settings(max_examples=examples(100))
def test_maxpool_gate_rule(data):
    """Random geometries (overlapping, tiling, gapped, padded windows): the
    twin's outputs, and counts ``[0, (spike, window) checks, spikes, ok]``;
    the output buffer of the documented bound (``ceil(kh / sy) * ceil(kw /
    sx)`` per input spike) suffices."""
    if data is None:  # every input of the ResNet stem's windows spiking at every step
        batch, n_steps = 1, 3
        geom, (kernel, stride, padding) = STEM
        raster = np.ones((batch, n_steps, 25), bool)
    else:
        batch, n_steps = data.draw(st.integers(1, 2)), data.draw(st.integers(0, 8))
        geom, (kernel, stride, padding) = data.draw(pool_geometries())
        raster = rasters(data, batch, n_steps, int(geom[0] * geom[1] * geom[2]))
    c, h, w, h_out, w_out = (int(g) for g in geom[:5])
    n_out = c * h_out * w_out
    tptr, idx = time_csr(raster)
    per_spike = -(-kernel[0] // stride[0]) * -(-kernel[1] // stride[1])
    out_tptr, out_idx, counts = run_maxpool(tptr, idx, geom, int(raster.sum(axis=(1, 2)).max()) * per_spike)
    for s in range(batch):
        sample = raster[s].reshape(n_steps, c, h, w)
        want = naive.maxpool(sample, kernel, stride, padding).reshape(n_steps, n_out)
        np.testing.assert_array_equal(pool_raster(out_tptr[s], out_idx[s], n_out), want)
        checks = naive.maxpool_checks(sample, kernel, stride, padding)
        assert list(counts[s]) == [0, checks, want.sum(), 0]
    if data is None:  # all 9 windows pass at every step; the centre input is in 4 windows
        assert counts[0].tolist() == [0, n_steps * 49, n_steps * 9, 0]


@given(data=st.data())
@settings(max_examples=examples(60))
def test_maxpool_order_independent(data):
    """The step's spikes in any order (shuffled within every step): the same
    output spikes at every step, the same counts."""
    n_steps = data.draw(st.integers(1, 10))
    geom, _ = data.draw(pool_geometries(max_size=5))
    n_in, n_out = int(geom[0] * geom[1] * geom[2]), int(geom[0] * geom[3] * geom[4])
    raster = rasters(data, 1, n_steps, n_in, p=data.draw(st.sampled_from([0.3, 0.6, 0.9])))
    tptr, idx = time_csr(raster)
    cap = int(raster.sum()) * 16
    sorted_run = run_maxpool(tptr, idx, geom, cap)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shuffled = idx.copy()
    for t in range(n_steps):
        shuffled[0, tptr[0, t] : tptr[0, t + 1]] = rng.permutation(idx[0, tptr[0, t] : tptr[0, t + 1]])
    shuffled_run = run_maxpool(tptr, shuffled, geom, cap)
    reversed_idx = idx.copy()
    for t in range(n_steps):
        reversed_idx[0, tptr[0, t] : tptr[0, t + 1]] = idx[0, tptr[0, t] : tptr[0, t + 1]][::-1]
    reversed_run = run_maxpool(tptr, reversed_idx, geom, cap)
    want = pool_raster(sorted_run[0][0], sorted_run[1][0], n_out)
    for out_tptr, out_idx, counts in (shuffled_run, reversed_run):
        np.testing.assert_array_equal(pool_raster(out_tptr[0], out_idx[0], n_out), want)
        assert np.array_equal(counts, sorted_run[2])


def test_maxpool_hand_checked_overlap():
    """A 1x3x3 map, MaxPool2d(2, stride 1): four windows, the centre input
    (4) in all of them, corners in one. Step 0: corner 0 spikes (window 0's
    max rises: passes). Step 1: the centre spikes (count 1: windows 1, 2, 3
    rise from 0; window 0 only ties its max 1: blocked). Step 2: corner 0
    again (count 2: window 0 passes) and corner 8 (count 1, a tie with
    window 3's max: blocked). Step 3: the centre (count 2: windows 1, 2, 3
    (max 1) pass, window 0 (max 2) does not). Step 4: corner 2 (count 1 <
    window 1's max 2: blocked)."""
    geom = pool_geom(1, 3, 3, 2, 2, 1, 1)
    raster = np.zeros((1, 5, 9), bool)
    for t, inputs in enumerate([[0], [4], [0, 8], [4], [2]]):
        raster[0, t, inputs] = True
    tptr, idx = time_csr(raster)
    out_tptr, out_idx, counts = run_maxpool(tptr, idx, geom, 32)
    got = pool_raster(out_tptr[0], out_idx[0], 4)
    assert [np.flatnonzero(row).tolist() for row in got] == [[0], [1, 2, 3], [0], [1, 2, 3], []]
    # checks: 1 + 4 + (1 + 1) + 4 + 1
    assert counts[0].tolist() == [0, 12, 8, 0]


def test_maxpool_reports_overflow():
    """Status 1 when the output buffer is too small, 0 when it suffices:
    four outputs per step from a 2x2 map with 1x1 windows, and four outputs
    from one spike of the centre of a 3x3 map under 2x2 windows of stride 1."""
    raster = np.ones((1, 2, 4), bool)
    tptr, idx = time_csr(raster)
    assert run_maxpool(tptr, idx, pool_geom(1, 2, 2, 1, 1, 1, 1), 5)[2][0, 3] == 1
    assert run_maxpool(tptr, idx, pool_geom(1, 2, 2, 1, 1, 1, 1), 8)[2][0, 3] == 0
    centre = np.zeros((1, 1, 9), bool)
    centre[0, 0, 4] = True
    tptr, idx = time_csr(centre)
    assert run_maxpool(tptr, idx, pool_geom(1, 3, 3, 2, 2, 1, 1), 3)[2][0, 3] == 1
    out_tptr, out_idx, counts = run_maxpool(tptr, idx, pool_geom(1, 3, 3, 2, 2, 1, 1), 4)
    assert counts[0].tolist() == [0, 4, 4, 0] and sorted(out_idx[0].tolist()) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# Output buffers: a batch's rows packed in place
# ---------------------------------------------------------------------------


@given(data=st.data())
@example(data=None)
@settings(max_examples=examples(60))
def test_pack_rows(data):
    """Each row's spikes land at ``b * used`` in order, the buffer's own
    memory, whatever the rows' lengths; rows moved by less than their
    length (copied in pieces) included: the @example moves rows 1 and 2 by
    1 and 2 entries, with 4 and 3 to copy."""
    if data is None:
        batch, cap, used, spikes = 3, 5, 4, [2, 4, 3]
    else:
        batch, cap = data.draw(st.integers(1, 8)), data.draw(st.integers(2, 12))
        used = data.draw(st.integers(1, cap - 1))
        spikes = data.draw(st.lists(st.integers(0, used), min_size=batch, max_size=batch))
    counts = np.zeros((batch, 4), np.int64)
    counts[:, 2] = spikes  # a column of the kernels' counts, as _run_layer passes it
    out = np.random.default_rng(len(spikes)).integers(0, 2**31 - 1, (batch, cap)).astype(np.int32)
    rows = [out[b, : spikes[b]].copy() for b in range(batch)]
    kernels.pack_rows(out, counts[:, 2], used)
    packed = out.reshape(-1)[: batch * used].reshape(batch, used)
    for b in range(batch):
        np.testing.assert_array_equal(packed[b, : spikes[b]], rows[b])


@given(data=st.data())
@example(data=None)
@settings(max_examples=examples(60))
def test_append_fired(data):
    """A step's spikes, noted channel-last, are appended after ``n_out`` as
    channel-first indices in increasing order, the entries before
    ``n_out`` untouched; -1 if they do not fit. Room for every neuron (written
    in place) and less (written in the scratch, then copied) included: the
    @example leaves room for the spikes exactly, not for every neuron."""
    from snn_kernels.neuron import append_fired

    rng = np.random.default_rng(0)
    if data is None:
        c_out, plane, n_out = 2, 37, 5
        fired = (rng.random(c_out * plane) < 0.5).astype(np.uint8)
        cap = n_out + int(fired.sum())
    else:
        c_out = data.draw(st.integers(1, 3))
        plane = data.draw(st.integers(1, 300))
        rate = data.draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]))
        fired = (rng.random(c_out * plane) < rate).astype(np.uint8)
        n_out = data.draw(st.integers(0, 20))
        cap = n_out + data.draw(st.integers(0, c_out * plane + 5))
    out = np.full(cap, -7, np.int32)
    out[:n_out] = np.arange(n_out)
    listed = np.full(c_out * plane, -9, np.int32)
    # channel-first index c * plane + pixel of fired[pixel * c_out + c]
    expected = np.flatnonzero(fired.reshape(plane, c_out).T.ravel()).astype(np.int32)
    got = append_fired(fired, listed, c_out, plane, out, n_out)
    if n_out + len(expected) > cap:
        assert got == -1
        return
    assert got == n_out + len(expected)
    np.testing.assert_array_equal(out[:n_out], np.arange(n_out))
    np.testing.assert_array_equal(out[n_out:got], expected)


# ---------------------------------------------------------------------------
# Layer kernels (event-driven and clock sweep) against the clock-driven twin
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "csr", "conv"])
@pytest.mark.parametrize("clock", [False, True])
@given(m=layer_models(), data=st.data())
@settings(max_examples=examples(25))
def test_layer_kernels_match_clock_twin(kind, clock, m, data):
    """A whole layer, exact on dyadic values: the spike trains, the final
    state (``settle``) and the synaptic operations (spikes x fan-out) of
    the twin's clock-driven run on the twin's connectivity matrix."""
    n_steps = data.draw(st.integers(1, 12))
    if kind == "conv":
        geom = data.draw(geometries(max_size=4))
        c_in, h, w, c_out, h_out, w_out, kh, kw = (int(g) for g in geom[:8])
        n_in, n = c_in * h * w, c_out * h_out * w_out
        flat = _weights(data, c_in // int(geom[14]) * kh * kw * c_out, True)
        matrix, fan_out = naive.conv_matrix(geom, flat), naive.conv_fan_out(geom)
    else:
        n_in, n = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
        if kind == "csr":
            rowptr, cols, weights = data.draw(csr(n_in, n, True))
            matrix, fan_out = naive.csr_matrix(rowptr, cols, weights, n), np.diff(rowptr)
        else:
            weights = _weights(data, n_in * n, True).reshape(n_in, n)
            matrix, fan_out = weights.astype(np.float64), np.full(n_in, n)
    raster = rasters(data, 1, n_steps, n_in)
    tptr, idx = time_csr(raster)
    shared = data.draw(st.booleans())
    bias = np.array(
        data.draw(st.lists(dyadic(-0.5, 1), min_size=1 if shared else n, max_size=1 if shared else n))
    )
    v_init = np.array(data.draw(st.lists(dyadic(-1, 1), min_size=n, max_size=n)))
    has_cur, has_ref = m["alpha"] is not None, m["refractory"] > 0
    width = 4 if has_cur or has_ref else 2
    state = np.zeros((1, n, width))
    out_tptr = np.zeros((1, n_steps + 1), np.int64)
    out_idx = np.zeros((1, n_steps * n + 1), np.int32)
    counts = np.zeros((1, 4), np.int64)
    common = (
        bias.reshape(1, -1), naive.table(m["beta"], m["alpha"], n_steps), m["thr"], m["reset"], m["v_reset"],
        m["refractory"], v_init, has_cur, has_ref, True, state, out_tptr, out_idx, counts,
    )  # fmt: skip
    if kind == "dense":
        kernels.dense_layer(tptr, idx, weights, *common, clock=clock)
    elif kind == "csr":
        kernels.csr_layer(tptr, idx, rowptr, cols, weights, *common, clock=clock)
    else:
        kernels.conv_layer(tptr, idx, geom, flat, *common, clock=clock)

    currents = np.array([naive.matvec(raster[0, t], matrix) for t in range(n_steps)]).reshape(n_steps, n)
    b = [bias[0]] * n if shared else bias
    spikes, v, i, ref, _ = twin_layer(currents, b, v_init, m)
    assert counts[0, 3] == 0
    np.testing.assert_array_equal(raster_of(out_tptr[0], out_idx[0], n_steps, n), spikes)
    assert counts[0, 2] == spikes.sum()
    assert counts[0, 0] == (raster[0] * fan_out).sum()
    if clock:
        assert counts[0, 1] == n * n_steps
    else:
        assert counts[0, 1] <= n * n_steps
    assert [fx(x) for x in state[0, :, kn.V]] == v and (state[0, :, kn.T_LAST] == n_steps - 1).all()
    if has_cur:
        assert [fx(x) for x in state[0, :, kn.I]] == i
    if has_ref:
        assert list(state[0, :, kn.REF]) == ref


# ---------------------------------------------------------------------------
# Random numbers
# ---------------------------------------------------------------------------


@given(seed=st.integers(0, 2**40), stream=st.integers(0, 100), n=st.integers(1, 2**32 - 1))
@example(seed=1, stream=0, n=1)
@example(seed=2, stream=1, n=2**32 - 1)  # rejections are frequent near 2**32
@example(seed=3, stream=2, n=3 * 2**30)
@settings(max_examples=examples(40))
def test_rng_draws(seed, stream, n):
    """Uniforms, bounded integers and small-mean Poisson counts are the
    twin's, draw for draw (so the reference backend can replay them)."""
    state = kernels.seed_state(seed, stream)
    twin = naive.Xoshiro(state)
    for _ in range(5):
        assert krng.uniform(state) == twin.uniform()
        got = krng.below(state, n)
        assert 0 <= got < n and got == twin.below(n)
    for lam in (0.0, 0.05, 1.0, 3.7, 9.99):
        assert krng.poisson(state, lam) == twin.poisson_small(lam)
    np.testing.assert_array_equal(state, twin.state())


@given(seed=st.integers(0, 2**40), lam_n=st.floats(0.0, 9.9), n=st.integers(1, 20), w=dyadic(-2, 2))
@settings(max_examples=examples(30))
def test_background_step(seed, lam_n, n, w):
    """One background step: a Poisson(``lam_n``) count of events, each on a
    uniformly drawn neuron."""
    state = kernels.seed_state(seed, 0)
    twin = naive.Xoshiro(state)
    out = np.zeros(n)
    got = kernels.background_step(state, lam_n, w, out)
    want = np.zeros(n)
    n_events = twin.poisson_small(lam_n)
    for _ in range(n_events):
        want[twin.below(n)] += w
    assert got == n_events
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(state, twin.state())


@pytest.mark.parametrize("lam", [10.0, 27.5, 400.0])
def test_poisson_large_mean_distribution(lam):
    """PTRS (mean >= 10) has no draw-for-draw twin; its histogram is checked
    against the exact pmf: Pearson's statistic over bins of expected count
    >= 20 stays below its mean + 6 standard deviations (``df + 6 sqrt(2 df)``;
    a fixed seed, so the test is deterministic)."""
    n = 20000
    state = kernels.seed_state(5, 1)
    draws = np.array([krng.poisson(state, lam) for _ in range(n)])
    lo, hi = int(lam - 6 * math.sqrt(lam)) - 1, int(lam + 6 * math.sqrt(lam)) + 2
    edges, expected, observed, acc_e, acc_o = [], [], [], 0.0, 0
    for k in range(max(lo, 0), hi):
        acc_e += n * naive.poisson_pmf(lam, k)
        acc_o += int((draws == k).sum())
        if acc_e >= 20:
            expected.append(acc_e)
            observed.append(acc_o)
            edges.append(k)
            acc_e, acc_o = 0.0, 0
    outside = n - sum(observed) - acc_o
    expected_outside = n - sum(expected) - acc_e
    assert outside <= max(5, 10 * expected_outside)
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    df = len(expected) - 1
    assert stat < df + 6 * math.sqrt(2 * df), (stat, df)
