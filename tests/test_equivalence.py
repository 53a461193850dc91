"""Event backend (``mode="event"``, ``"clock"`` and ``"dense"``) vs the reference
backend (the clock-driven loop of DESIGN.md §1) on random small networks.

Tolerance rule
--------------
For every sample, the spike trains of every layer are identical, except at
the first ``(step, layer)`` (in causal order: step first, then layer) where
they differ: there, every neuron whose spike differs must have had a
reference membrane (after integration, before reset) within ``TOL * scale``
of its threshold. After that point the trajectories may diverge (one spike
more or less changes everything downstream), so nothing later is compared.
When no spike differs, the final membranes (``result.membrane``) agree within
the same ``TOL * scale``.

``scale`` is the magnitude of the layer's arithmetic in that sample:
threshold + largest |membrane| the reference saw + |v_init| + |v_reset| +
the largest one-step input (|bias| + the largest row sum of |weights| times
the largest input value), plus the largest current for CubaLIF neurons.

``TOL = 1e-9`` for float64, ``1e-4`` for float32. Justification: the two
backends compute the same quantities in a different order (closed-form
``beta**k`` from a table vs ``k`` multiplications; weights added one at a
time vs a matrix product; a constant analog input folded into the bias). Each
reordered operation costs at most one rounding, relative to the magnitudes
involved (bounded by ``scale``), and a run has at most ``T * fan_in`` of them
in a trajectory (``<= 40 * 40``): about ``1.6e3 * 1.1e-16 = 2e-13`` in float64
and ``1.6e3 * 6e-8 = 1e-4`` in the worst float32 case (errors do not all add up
in practice; the typical float32 drift is ~1e-6). 1e-9 is thus ~10^4 times the
float64 rounding noise yet far below any physically meaningful potential; a
backend that lost precision (e.g. accumulated in float32 while claiming
float64) would exceed it. 1e-4 is the float32 worst case bound.

Exact arithmetic: with ``beta = 1`` (IF), weights that are multiples of 1/8 in
[-2, 2], dyadic bias / v_init / thresholds / v_reset / analog input, every
sum is exactly representable in float32 and float64, so every path must give
bit-identical spike trains and identical final membranes; no tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    NetSpec,
    assert_equivalent,
    build_network,
    examples,
    net_specs,
    reference_with_traces,
    run_kwargs,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

import snn

MODES = ("event", "clock", "dense")


def _check_path(spec, mode):
    net = build_network(spec)
    ref, traces = reference_with_traces(net, spec)
    plain = net.run(**run_kwargs(spec), backend="reference")
    for k in range(len(net.layers)):  # run(backend="reference") is the same loop
        assert np.array_equal(plain.spikes(k), ref.spikes(k))
    result = net.run(**run_kwargs(spec), mode=mode)
    assert result.backend == "event"
    assert_equivalent(net, spec, result, ref, traces, label=f"mode={mode}")


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", [*MODES, "auto"])
@given(spec=net_specs())
def test_event_matches_reference(mode, spec):
    """``mode="auto"``: each layer picks its path from the measured activity."""
    _check_path(spec, mode)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=examples(60))
@given(spec=net_specs(input_kinds=("spikes",), max_size=12))
def test_event_matches_reference_spike_input_small_layers(mode, spec):
    """More examples where spikes travel through all layers (small layers
    with strong weights are active)."""
    _check_path(spec, mode)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", MODES)
@given(spec=net_specs(exact=True))
def test_exact_arithmetic_bit_identical(mode, spec):
    """IF neurons, dyadic values: bit-identical spikes and final membranes,
    for the whole network and for every prefix of it (so that every layer's
    final membrane is compared)."""
    for depth in range(1, len(spec.layers) + 1):
        sub = NetSpec(
            layers=spec.layers[:depth],
            dtype=spec.dtype,
            T=spec.T,
            batch=spec.batch,
            input_kind=spec.input_kind,
            x=spec.x,
        )
        net = build_network(sub)
        ref = net.run(**run_kwargs(sub), backend="reference")
        result = net.run(**run_kwargs(sub), mode=mode)
        for k in range(depth):
            assert np.array_equal(result.spikes(k), ref.spikes(k)), (mode, depth, k)
        assert result.membrane.dtype == np.dtype(spec.dtype)
        assert np.array_equal(result.membrane, ref.membrane), (mode, depth, result.membrane, ref.membrane)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
def test_raster_events_and_bool_inputs_agree(dtype, mode):
    """The same spikes given as a raster and as events give the same result."""
    rng = np.random.default_rng(3)
    W = (rng.integers(-8, 17, (7, 5)) / 8).astype(np.float32)
    net = snn.Network(
        [
            snn.Linear(5, 7, snn.IF(threshold=1.5), weight=W, bias=0.125),
            snn.SparseLinear.from_dense(
                rng.integers(-8, 17, (3, 7)) / 8, snn.IF(threshold=0.75, reset="zero")
            ),
        ],
        dtype=dtype,
    )
    x = (rng.random((20, 2, 5)) < 0.3).astype(np.uint8)
    r1 = net.run(x, mode=mode)
    t, s, i = np.nonzero(x)
    events = np.stack([t, s, i], axis=1)
    r2 = net.run(events=events[::-1], T=20, batch_size=2, mode=mode)  # any order
    r3 = net.run(x.astype(bool), mode=mode)
    for k in range(2):
        assert np.array_equal(r1.spikes(k), r2.spikes(k))
        assert np.array_equal(r1.spikes(k), r3.spikes(k))
    assert np.array_equal(r1.membrane, r2.membrane)


# -- targeted precision checks (float64 state must not be computed in float32) --


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", MODES)
def test_float64_spike_input_not_rounded_to_float32(mode):
    """Two input weights 1 and 2**-25 (both exact float32) sum to 1 + 2**-25 in
    float64 but to 1.0 in float32. With threshold 1 + 2**-26 (a float64
    number) the reference fires; a float64 network must fire too: the
    reference membrane is 2**-26 ~ 1.5e-8 above threshold, well outside the
    float64 tolerance (1e-9 x scale ~ 4e-9)."""
    w = np.array([[1.0, 2.0**-25]], np.float32)
    thr = 1.0 + 2.0**-26
    net = snn.Network([snn.Linear(2, 1, snn.IF(threshold=thr), weight=w)], dtype=np.float64)
    x = np.ones((1, 1, 2), np.uint8)
    ref = net.run(x, backend="reference")
    assert ref.spikes(0)[0, 0, 0] == 1
    result = net.run(x, mode=mode)
    assert result.spikes(0)[0, 0, 0] == 1, f"mode={mode}: float64 network lost the 2**-25 input"
    assert result.membrane[0, 0] == ref.membrane[0, 0] == 2.0**-26


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("kind", ["const", "time-varying"])
def test_float64_analog_input_not_rounded_to_float32(kind):
    """An analog input 1 + 2**-30 through weight 1 into threshold 1 + 2**-31:
    exact in float64 (the reference fires at step 0), lost in float32."""
    thr = 1.0 + 2.0**-31
    net = snn.Network([snn.Linear(1, 1, snn.IF(threshold=thr), weight=[[1.0]])], dtype=np.float64)
    x = np.array([[1.0 + 2.0**-30]])
    kwargs = dict(analog=x, T=1) if kind == "const" else dict(analog=x[None])
    ref = net.run(**kwargs, backend="reference")
    assert ref.spikes(0)[0, 0, 0] == 1
    result = net.run(**kwargs)
    assert result.spikes(0)[0, 0, 0] == 1, f"{kind} analog input rounded to float32 in a float64 network"
    assert result.membrane[0, 0] == ref.membrane[0, 0]


# -- deterministic corner cases the random search may rarely hit --


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "neuron",
    [
        snn.IF(),
        snn.LIF(beta=0.5),
        snn.LIF(beta=1.0),
        snn.CubaLIF(beta=0.9, alpha=0.0),
        snn.CubaLIF(beta=0.9, alpha=1.0),
        snn.CubaLIF(beta=1.0, alpha=1.0),
        snn.CubaLIF(beta=0.8, alpha=0.8),
        snn.CubaLIF(beta=0.6, alpha=0.95, refractory=3),
        snn.LIF(beta=0.7, reset="value", v_reset=-0.5, refractory=2),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_self_driven_spikes_long_run(neuron, dtype):
    """Neurons driven only by bias and v_init (no input spikes at all) over a
    long run: the calendar of self-driven spikes must reproduce the clock."""
    n, T = 30, 200
    rng = np.random.default_rng(0)
    bias = rng.uniform(-0.2, 0.6, n)
    v_init = rng.uniform(-1.0, 2.5, n)
    # dyadic volley weights: their sums are exact in every precision, so only
    # the self-driven dynamics (bias, residues, currents) are under test here
    weight = rng.integers(-8, 9, (n, 4)) / 8
    layer = snn.Linear(4, n, neuron, weight=weight, bias=bias, v_init=v_init)
    net = snn.Network([layer], dtype=dtype)
    x = np.zeros((T, 2, 4), np.uint8)
    x[50, 1, :] = 1  # sample 1 gets one volley
    spec = NetSpec(layers=[None], dtype=dtype, T=T, batch=2, input_kind="spikes", x=x)
    ref, traces = reference_with_traces(net, spec)
    assert ref.spikes(0).sum() > 0
    for mode in MODES:
        assert_equivalent(net, spec, net.run(x, mode=mode), ref, traces, label=f"{neuron!r} {mode}")


@pytest.mark.usefixtures("warm_kernels")
@example(seed=0, n_layers=3)
@settings(max_examples=examples(20))
@given(seed=st.integers(0, 2**31), n_layers=st.integers(1, 3))
def test_larger_networks_long_runs(seed, n_layers):
    """A few bigger/longer runs (T up to 300, 100 neurons) with mixed models."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(20, 100)) for _ in range(n_layers + 1)]
    T = int(rng.integers(50, 300))
    models = [
        snn.IF(),
        snn.LIF(beta=0.95),
        snn.CubaLIF(beta=0.9, alpha=0.7, refractory=1),
        snn.LIF(beta=0.8, reset="zero", refractory=2),
    ]
    layers = []
    for k in range(n_layers):
        W = rng.uniform(-0.3, 1.0, (sizes[k + 1], sizes[k])) * 3.0 / np.sqrt(sizes[k])
        nrn = models[int(rng.integers(len(models)))]
        if rng.random() < 0.5:
            W = W * (rng.random(W.shape) < 0.3)
            layers.append(snn.SparseLinear.from_dense(W, nrn, bias=rng.uniform(-0.05, 0.1, sizes[k + 1])))
        else:
            layers.append(snn.Linear(sizes[k], sizes[k + 1], nrn, weight=W, bias=0.01))
    x = (rng.random((T, 2, sizes[0])) < 0.1).astype(np.uint8)
    for dtype in (np.float64, np.float32):
        net = snn.Network(layers, dtype=dtype)
        spec = NetSpec(layers=[None] * n_layers, dtype=dtype, T=T, batch=2, input_kind="spikes", x=x)
        ref, traces = reference_with_traces(net, spec)
        for mode in MODES:
            assert_equivalent(net, spec, net.run(x, mode=mode), ref, traces, label=f"{dtype} {mode}")


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sparse", [False, True])
def test_output_buffer_overflow_is_retried(mode, sparse):
    """A layer that fires far more spikes than the first output buffer holds
    (every neuron at every step: 200 x 60 = 12,000 spikes per sample) must be
    rerun with room for all of them, not truncated."""
    n, T = 200, 60
    W = np.full((n, 3), 0.5)
    layer = (
        snn.SparseLinear.from_dense(W, snn.IF(), bias=1.0)
        if sparse
        else snn.Linear(3, n, snn.IF(), weight=W, bias=1.0)
    )
    net = snn.Network([layer, snn.Linear(n, 2, snn.IF(threshold=50.0), weight=np.full((2, n), 0.25))])
    x = np.zeros((T, 2, 3), np.uint8)
    x[::7, 1] = 1
    ref = net.run(x, backend="reference")
    r = net.run(x, mode=mode)
    assert r.spikes(0).sum() == 2 * n * T
    for k in range(2):
        assert np.array_equal(r.spikes(k), ref.spikes(k))
        assert r.counts[k].spikes.tolist() == ref.counts[k].spikes.tolist()
    assert np.array_equal(r.membrane, ref.membrane)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", MODES)
def test_runs_are_independent(mode):
    """A network keeps no state between runs, and a sample's result does not
    depend on the other samples of its batch."""
    rng = np.random.default_rng(5)
    net = snn.Network(
        [
            snn.Linear(6, 5, snn.CubaLIF(beta=0.9, alpha=0.8, refractory=1), seed=1, bias=0.05),
            snn.SparseLinear.random(5, 4, 0.6, weight=0.7, neuron=snn.LIF(beta=0.9), seed=2),
        ]
    )
    x = (rng.random((30, 3, 6)) < 0.4).astype(np.uint8)
    first = net.run(x, mode=mode)
    again = net.run(x, mode=mode)
    alone = [net.run(x[:, b : b + 1], mode=mode) for b in range(3)]
    for k in range(2):
        assert np.array_equal(first.spikes(k), again.spikes(k))
        for b in range(3):
            assert np.array_equal(first.spikes(k)[:, b], alone[b].spikes(k)[:, 0])
    assert np.array_equal(first.membrane, again.membrane)
    for b in range(3):
        assert np.array_equal(first.membrane[b], alone[b].membrane[0])
