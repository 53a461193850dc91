"""``kernels.neuron.next_due``: the closed-form search for a neuron's next
self-driven spike, on trajectories that rise, turn and fall within the
search horizon.

The bug these tests pin down: with a current (CubaLIF) the free membrane
rises to one peak and falls. ``next_due`` gallops ahead (1, 2, 4, ... steps)
to bracket the peak; when a gallop step was clipped to the horizon
``last = end - 1`` and still found the membrane higher there than at the
point before, the search took ``last`` for the peak. But the peak can lie
between those two points: the membrane rises above threshold, turns, and
falls back below it by ``last``, still above where the gallop stood. The
search then saw ``v(last) < threshold`` and answered "never": the event
path missed a spike the reference fires (e.g. ``v`` at steps 1..6:
-0.30, 0.05, 0.25, 0.35, 0.378, 0.373 against threshold 0.375, searched
from step 0 with ``end = 7``: gallop points 2, 4, 6; the crossing at 5 was
never seen).

The hand-picked cases are dyadic (decays 3/4 and 7/8, multiples of 1/8
and 1/16): the network test's neuron is exact in float32 and float64 (the
reference, the propagator table and the closed form agree bit for bit, so
spikes and membranes are compared with no tolerance), and every kernel case
is at least 0.003 from threshold, far above float32 rounding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import snn
from snn_kernels import neuron as kn

NEVER = kn.NEVER
DTYPES = [np.float64, np.float32]


def _state(v, i, t_last, ref, dtype):
    """One neuron's row ``[v, t_last, i, ref]`` (width 4: current and refractory columns)."""
    return np.array([[v, t_last, i, ref]], dtype)


def _first_by_value_at(state, t, end, b, thr, table, has_current, has_refractory):
    """The linear scan ``next_due`` must agree with: the first step in
    ``(t, end)``, past the refractory period, whose ``value_at`` reaches
    threshold."""
    ref = state[0, kn.REF] if has_refractory else -1
    for s in range(t + 1, end):
        if s > ref and kn.value_at(state, 0, s, b, table, has_current, has_refractory)[0] >= thr:
            return s
    return NEVER


# (beta, alpha, v and i at step 0, threshold, end, the step expected): v at steps 1..end-1
PEAK_BETWEEN_GALLOP_POINTS = [
    # -0.305, 0.053, 0.250, 0.346, 0.378, 0.373 (gallop points 2, 4, 6): crossing and peak at 5
    (0.75, 0.75, -0.90625, 0.5, 0.375, 7, 5),
    # 1.31, 2.13, 2.60, 2.83, 2.894, 2.844 against 2.875 (the network test's neuron)
    (0.75, 0.875, 0.0, 1.5, 2.875, 7, 5),
    # -1.64, -0.57, 0.25, 0.88, 1.35, 1.68, 1.91, 2.062, 2.142, 2.170, 2.158, 2.115 against
    # 2.125 (gallop points 2, 4, 8, 12): the crossing at 9, the peak at 10
    (0.875, 0.875, -3.0, 1.125, 2.125, 13, 9),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_refractory", [False, True])
@pytest.mark.parametrize("case", PEAK_BETWEEN_GALLOP_POINTS)
def test_crossing_before_a_peak_between_the_last_gallop_points(case, has_refractory, dtype):
    beta, alpha, v0, i0, thr, end, want = case
    nrn = snn.CubaLIF(beta=beta, alpha=alpha, threshold=thr)
    table = nrn.propagator(end, dtype)
    state = _state(v0, i0, 0, -1, dtype)
    b, thr = dtype(0.0), dtype(thr)
    got = kn.next_due(state, 0, 0, end, b, thr, table, True, has_refractory)
    assert got == want
    assert got == _first_by_value_at(state, 0, end, b, thr, table, True, has_refractory)


@pytest.mark.parametrize("dtype", DTYPES)
def test_next_due_equals_a_linear_scan_on_a_grid(dtype):
    """CubaLIF trajectories of a grid (rising, falling, rising then
    falling), searched from several steps with several horizons and
    thresholds: ``next_due`` is the first step at which ``value_at`` (the
    same arithmetic) reaches threshold, a linear scan. The grid holds
    trajectories whose peak lies between the last two gallop points (the
    search before the fix missed 53 of its 24,357 crossings, in float64 as
    in float32)."""
    decays = [(0.75, 0.75), (0.75, 0.875), (0.875, 0.75), (0.875, 0.875), (0.5, 0.75), (1, 0.5), (0.9, 0.95)]
    thresholds = [k / 8 for k in range(2, 21)]
    horizon = 24
    checked = crossings = 0
    for beta, alpha in decays:
        table = snn.CubaLIF(beta=beta, alpha=alpha).propagator(horizon + 1, dtype)
        for v0, i0, b, t in itertools.product(
            (-3.0, -2.0, -1.0, -0.5, 0.0), (0.25, 0.5, 1.0, 1.125), (0.0, -0.0625), (-1, 0, 3)
        ):
            state = _state(v0, i0, t, -1, dtype)
            bb = dtype(b)
            v = [kn.value_at(state, 0, s, bb, table, True, False)[0] for s in range(t + 1, horizon)]
            for thr, end in itertools.product(thresholds, (7, 8, 12, 13, 20, horizon)):
                tt = dtype(thr)
                want = next((t + 1 + k for k in range(end - t - 1) if v[k] >= tt), NEVER)
                got = kn.next_due(state, 0, t, end, bb, tt, table, True, False)
                assert got == want, (beta, alpha, v0, i0, b, t, thr, end)
                checked += 1
                crossings += want != NEVER
    assert crossings > checked // 4  # the grid is not all "never"


def _one_neuron_stack(kind, dtype):
    """One CubaLIF neuron fed one input spike at step 0 (weight 1.5, no
    bias, v_init -2, beta 3/4, alpha 7/8): its membrane, all exact, is at
    steps 0..6: 0, 1.31, 2.13, 2.60, 2.83, 2.894, 2.844; threshold 2.875:
    one self-driven spike, at step 5, which the event path missed."""
    nrn = snn.CubaLIF(beta=0.75, alpha=0.875, threshold=2.875)
    if kind == "conv":
        layer = snn.Conv2d((1, 1, 1), 1, 1, nrn, weight=np.full((1, 1, 1, 1), 1.5), v_init=-2.0)
    else:
        layer = snn.Linear(1, 1, nrn, weight=np.full((1, 1), 1.5), v_init=-2.0)
    x = np.zeros((7, 1, 1), np.uint8)
    x[0] = 1
    return snn.Network([layer], dtype=dtype), x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("mode", ["event", "clock"])
def test_self_driven_spike_after_a_peak_is_fired(kind, mode, dtype):
    """The whole run, layer kernels (a stack) and the graph kernel (the
    neuron recorded: stepped), against the reference: the spike at step 5."""
    net, x = _one_neuron_stack(kind, dtype)
    ref = net.run(x, backend="reference")
    assert ref.spikes(0)[:, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0]
    for run in (net.run(x, mode=mode), net.run(x, mode=mode, record_v={0: [0]})):
        np.testing.assert_array_equal(run.spikes(0), ref.spikes(0))
        np.testing.assert_array_equal(run.membrane, ref.membrane)
