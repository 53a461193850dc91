"""Exact operation counts (DESIGN.md §2 "Counting is part of the kernel", §3).

Every count is checked against an independent count computed here from the
spike rasters and the weight matrix given to the layer:

- SynOps of layer ``l`` in sample ``b`` = sum over its input spikes of the
  fan-out of the spiking input, the fan-out being the number of synapses of
  that input: the non-zero entries of its column of ``W[n_out, n_in]``.
  (A ``Linear`` layer is dense: all its ``n_out`` synapses are stored and
  added even when a weight is 0, so the tests give ``Linear`` layers weights
  without exact zeros, for which "non-zero structure" and "stored synapses"
  coincide; sparse layers get zeros = absent synapses.)
- spikes = sum of the layer's own raster; input_events = previous layer's
  spikes (or the input's); MACs = non-zero analog inputs x fan-out, once for a
  constant input and once per step for a time-varying one.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_network, net_specs, run_kwargs
from hypothesis import given
from hypothesis import strategies as st

import snn
from snn_kernels.event import SWEEP_AT, SWEEP_HOLD

PATHS = (("event", "event"), ("event", "clock"), ("event", "dense"), ("reference", None))


def structural_fan_out(W) -> np.ndarray:
    """Synapses per input neuron from a dense ``[n_out, n_in]`` matrix."""
    return np.count_nonzero(np.asarray(W), axis=0).astype(np.int64)


def independent_synops(raster, W) -> np.ndarray:
    """Input spikes x fan-out, per sample, from a ``[T, B, n_in]`` raster."""
    per_input = raster.astype(np.int64).sum(axis=0)  # [B, n_in]
    return per_input @ structural_fan_out(W)


def counts_specs():
    """Random networks whose Linear layers have no zero weight (see the
    module docstring) and whose sparse layers come from our own matrices."""

    def fix(spec):
        for L in spec.layers:
            if L.kind == "dense":
                L.W = np.where(L.W == 0, np.float32(0.125), L.W).astype(np.float32)
        return spec

    return net_specs(kinds=("dense", "sparse", "coo")).map(fix)


def _run(net, spec, backend, mode):
    kwargs = run_kwargs(spec)
    return net.run(**kwargs, backend=backend) if backend == "reference" else net.run(**kwargs, mode=mode)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend,mode", PATHS)
@given(spec=counts_specs())
def test_counts_match_independent_count(backend, mode, spec):
    net = build_network(spec)
    r = _run(net, spec, backend, mode)
    B, T = spec.batch, spec.T
    assert len(r.counts) == len(spec.layers)
    for k, (L, c) in enumerate(zip(spec.layers, r.counts)):
        for field in ("synops", "macs", "updates", "dense_updates", "spikes", "input_events"):
            arr = getattr(c, field)
            assert arr.shape == (B,), (field, arr.shape)
            assert arr.dtype == np.int64, (field, arr.dtype)
            assert np.all(arr >= 0), field
        out = r.spikes(k)
        assert np.array_equal(c.spikes, out.reshape(T, B, -1).sum(axis=(0, 2))), f"layer {k} spikes"
        assert c.dense_updates.tolist() == [T * L.n_out] * B
        if k == 0 and spec.input_kind != "spikes":
            # analog input: MACs on the non-zero inputs, no SynOps, no input events
            nz = (spec.x != 0).reshape(-1, B, L.n_in).sum(axis=0)  # [B, n_in]
            assert np.array_equal(c.macs, nz @ structural_fan_out(L.W)), "layer 0 MACs"
            assert c.synops.tolist() == [0] * B
            assert c.input_events.tolist() == [0] * B
            continue
        source = spec.x if k == 0 else r.spikes(k - 1)
        assert np.array_equal(c.synops, independent_synops(source, L.W)), f"layer {k} SynOps"
        assert np.array_equal(c.input_events, source.reshape(T, B, -1).sum(axis=(0, 2)).astype(np.int64))
        if k > 0:
            assert np.array_equal(c.input_events, r.counts[k - 1].spikes)
        assert c.macs.tolist() == [0] * B
    if backend == "reference":
        for c in r.counts:
            assert c.mode == "reference"
            assert np.array_equal(c.updates, c.dense_updates)
    else:
        for k, c in enumerate(r.counts):
            expected = mode
            if k == 0 and spec.input_kind == "analog_const":
                # constant input is a bias, nothing arrives: clock-driven neurons for "dense"
                expected = "event" if mode == "event" else "clock"
            elif k == 0 and spec.input_kind == "analog_tv":
                expected = "dense"  # time-varying analog input is clock-driven
            assert c.mode == expected, (k, c.mode)
            if c.mode == "event":
                assert np.all(c.updates <= c.dense_updates), (k, c.updates, c.dense_updates)
            else:
                assert np.array_equal(c.updates, c.dense_updates)
    assert r.total("synops") == sum(int(c.synops.sum()) for c in r.counts)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend,mode", PATHS)
@pytest.mark.parametrize("sparse", [False, True])
def test_constant_analog_macs_computed_once(backend, mode, sparse):
    """A constant analog input is multiplied once: MACs do not grow with T."""
    rng = np.random.default_rng(1)
    W = rng.uniform(0.1, 0.5, (6, 5)).astype(np.float32)
    if sparse:
        W[rng.random(W.shape) < 0.5] = 0
    x = np.array([[0.0, 0.7, 0.0, 1.2, -0.3], [0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    expected = (x != 0).astype(np.int64) @ structural_fan_out(W)
    assert expected.tolist()[1] == 0
    for T in (1, 7, 30):
        layer = snn.SparseLinear.from_dense(W, snn.IF()) if sparse else snn.Linear(5, 6, snn.IF(), weight=W)
        net = snn.Network([layer, snn.Linear(6, 2, snn.IF(), weight=np.ones((2, 6)))])
        r = net.run(analog=x, T=T, backend=backend, mode=mode)
        assert r.counts[0].macs.tolist() == expected.tolist(), T
        assert r.counts[0].synops.tolist() == [0, 0, 0]
        assert r.counts[1].macs.tolist() == [0, 0, 0]
        assert np.array_equal(r.counts[1].input_events, r.counts[0].spikes)
        # time-varying analog input: one multiplication per step
        r_tv = net.run(analog=np.broadcast_to(x, (T, *x.shape)), backend=backend, mode=mode)
        assert r_tv.counts[0].macs.tolist() == (T * expected).tolist(), T


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "neuron", [snn.IF(), snn.LIF(beta=0.8), snn.CubaLIF(beta=0.8, alpha=0.6), snn.LIF(beta=0.9, refractory=2)]
)
def test_neurons_that_receive_nothing_cost_nothing(neuron):
    """Event path, no bias: a layer with no input performs no update at all,
    whatever its v_init below threshold (the clock path does T * n)."""
    rng = np.random.default_rng(2)
    inhibitory = -rng.uniform(0.1, 1.0, (8, 6))
    net = snn.Network(
        [
            snn.Linear(6, 8, neuron, weight=inhibitory, mode="event"),  # never fires
            snn.SparseLinear.from_dense(rng.uniform(0.5, 2, (5, 8)), neuron, v_init=0.5, mode="event"),
            snn.Linear(5, 3, neuron, weight=np.ones((3, 5)), v_init=-0.3, mode="event"),
        ]
    )
    T, B = 25, 2
    x = (rng.random((T, B, 6)) < 0.5).astype(np.uint8)
    x[:, 1] = 0  # sample 1: no input at all
    r = net.run(x)
    assert r.counts[0].updates[1] == 0
    assert r.counts[0].updates[0] > 0
    for c in r.counts[1:]:
        assert c.mode == "event"
        assert c.updates.tolist() == [0, 0], c
        assert c.synops.tolist() == [0, 0]
        assert c.input_events.tolist() == [0, 0]
    assert r.spikes(0).sum() == 0
    # the same through events with nothing in them
    r_empty = net.run(events=np.zeros((0, 3), np.int64), T=T, batch_size=B)
    assert all(c.updates.tolist() == [0, 0] for c in r_empty.counts)
    # the clock path pays for every neuron at every step
    r_dense = net.run(x, mode="dense")
    assert all(np.array_equal(c.updates, c.dense_updates) for c in r_dense.counts)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("sparse", [False, True])
@given(
    seed=st.integers(0, 2**31),
    T=st.integers(1, 30),
    n_in=st.integers(1, 20),
    n_out=st.integers(1, 20),
    p=st.floats(0, 1),
    density=st.floats(0.05, 1.0),
)
def test_event_updates_only_where_spikes_arrive(sparse, seed, T, n_in, n_out, p, density):
    """IF neurons with no bias whose membrane never reaches threshold (weights
    too small, T short) and so never self-fire: a sparse layer updates exactly
    the distinct targets reached at each step, or all its neurons at a step
    whose synaptic operations reach ``SWEEP_AT`` x its neurons, or
    ``SWEEP_HOLD`` x that after a step that updated all (a sweep); a
    dense layer updates all its neurons at the steps that bring at least one
    input spike."""
    rng = np.random.default_rng(seed)
    W = rng.uniform(-1, 1, (n_out, n_in)) / (n_in * T + 1)  # |v| < 1: never fires
    if sparse:
        W = W * (rng.random(W.shape) < density)
        layer = snn.SparseLinear.from_dense(W, snn.IF(), mode="event")
    else:
        W[W == 0] = 1e-3
        layer = snn.Linear(n_in, n_out, snn.IF(), weight=W, mode="event")
    B = 2
    x = (rng.random((T, B, n_in)) < p).astype(np.uint8)
    r = snn.Network([layer]).run(x)
    c = r.counts[0]
    assert r.spikes(0).sum() == 0
    syn = W != 0  # [n_out, n_in]
    if sparse:
        reached = (x.astype(np.int64) @ syn.T.astype(np.int64)) > 0  # [T, B, n_out]
        step_synops = x.astype(np.int64) @ syn.sum(axis=0)  # [T, B]
        # a step sweeps from SWEEP_AT x n_out synaptic operations on, or from SWEEP_HOLD x that
        # while every neuron is at the step before (a sweep, or every neuron reached; not at step 0)
        per_step = reached.sum(axis=2)
        expected = np.zeros(B, np.int64)
        for b in range(B):
            all_at_prev = False
            for t in range(T):
                s = step_synops[t, b]
                swept = s >= SWEEP_AT * n_out or all_at_prev and s >= SWEEP_HOLD * (SWEEP_AT * n_out)
                expected[b] += n_out if swept else per_step[t, b]
                all_at_prev = swept or per_step[t, b] == n_out
    else:
        expected = (x.sum(axis=2) > 0).sum(axis=0) * n_out
    assert c.updates.tolist() == expected.tolist()
    assert np.array_equal(c.synops, independent_synops(x, W))


@pytest.mark.usefixtures("warm_kernels")
def test_random_sparse_layer_fan_out():
    """SparseLinear.random: SynOps = input spikes x the number of stored
    targets of each input (read from the dense matrix of the same synapses,
    all weights 1 so that no synapse is hidden by a zero)."""
    layer = snn.SparseLinear.random(30, 20, 0.2, weight=1.0, neuron=snn.IF(threshold=100.0), seed=4)
    W = layer.dense_rows().T
    assert set(np.unique(W).tolist()) <= {0.0, 1.0}  # distinct targets per row
    assert layer.n_synapses == int(W.sum())
    x = (np.random.default_rng(0).random((15, 3, 30)) < 0.3).astype(np.uint8)
    net = snn.Network([layer])
    for backend, mode in PATHS:
        r = net.run(x, backend=backend) if backend == "reference" else net.run(x, mode=mode)
        assert np.array_equal(r.counts[0].synops, independent_synops(x, W)), (backend, mode)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_repeated_event_is_one_spike(backend):
    """events=: a repeated (t, sample, index) row is one spike, counted once."""
    W = np.full((4, 3), 0.1)
    net = snn.Network([snn.Linear(3, 4, snn.IF(), weight=W)])
    events = np.array([[0, 0, 1], [0, 0, 1], [2, 1, 0], [2, 1, 2], [2, 1, 2]])
    r = net.run(events=events, T=3, batch_size=2, backend=backend)
    assert r.counts[0].input_events.tolist() == [1, 2]
    assert r.counts[0].synops.tolist() == [4, 8]


@pytest.mark.usefixtures("warm_kernels")
def test_table_reports_totals():
    net = snn.Network(
        [
            snn.Linear(4, 3, snn.IF(), weight=np.full((3, 4), 0.6), name="hidden"),
            snn.Linear(3, 2, snn.IF(), weight=np.full((2, 3), 0.6)),
        ]
    )
    x = np.ones((5, 2, 4), np.uint8)
    r = net.run(x, mode="event")
    text = r.table()
    assert "SynOps" in text and "hidden" in text
    assert f"{r.counts[0].total('synops'):,}" in text
    assert r.counts[0].total("synops") == 5 * 2 * 4 * 3
