"""``mode="auto"``'s choice for a CSR layer (``snn.run.paths._choose_csr_mode``)
against the cost model evaluated step by step, in plain Python, here: the
same path on random layers and inputs (the choice's shortcuts, its kept
per-layer constants and its vectorised step counts change its cost, never its
choice), and the per-step synaptic operations against a plain count; a
dense or conv layer's choice for one sample against the counts at which it
changes (``snn.run.paths.choice_cuts``), at every count."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

import snn
import snn_kernels.event as kev
from snn.run import paths
from snn.run.spiketrains import SpikeTrains


def _layer(rng, n_in, n_out, neuron, most):
    """A SparseLinear layer with random fan-outs (0 .. ``most``, at most ``n_out``)."""
    counts = rng.integers(0, min(most, n_out) + 1, n_in)
    rowptr = np.zeros(n_in + 1, np.int64)
    np.cumsum(counts, out=rowptr[1:])
    cols = [np.sort(rng.choice(n_out, c, replace=False)) for c in counts]
    cols = np.concatenate([np.zeros(0, np.int64), *cols]).astype(np.int32)
    weights = np.full(len(cols), 0.5, np.float32)
    return snn.SparseLinear(n_in, n_out, neuron, rowptr=rowptr, cols=cols, weights=weights)


def _trains(rng, batch, n_steps, n_in, p, pad):
    """Time-CSR input, each input with probability ``p`` per step; each
    sample's unused tail of ``idx`` holds junk (``pad`` more columns)."""
    samples = []
    for _ in range(batch):
        counts = rng.binomial(n_in, p, n_steps)
        samples.append([np.sort(rng.choice(n_in, c, replace=False)) for c in counts])
    cap = max(sum(len(s) for s in steps) for steps in samples) + pad
    tptr = np.zeros((batch, n_steps + 1), np.int64)
    idx = rng.integers(-(2**31), 2**31 - 1, (batch, cap)).astype(np.int32)  # junk past each sample's spikes
    for b, steps in enumerate(samples):
        np.cumsum([len(s) for s in steps], out=tptr[b, 1:])
        if tptr[b, -1]:
            idx[b, : tptr[b, -1]] = np.concatenate(steps)
    return SpikeTrains(tptr, idx, n_in)


def _plain_step_synops(source, fan_out):
    """Each step's input spikes' fan-outs summed, one spike at a time (Python ints)."""
    out = []
    for b in range(source.batch_size):
        tptr = source.tptr[b].tolist()
        idx = source.idx[b].tolist()
        out.append([sum(int(fan_out[i]) for i in idx[tptr[t] : tptr[t + 1]]) for t in range(source.n_steps)])
    return out


def _reference_costs(layer, source, n_steps, dtype, driven):
    """``(event, clock, dense)`` ns of the cost model (``snn.run.paths``:
    ``_CSR_COSTS``, the kernel's per-step path bounds of ``kernels.event``),
    step by step: each step direct, two-phase or (an undriven layer) a sweep
    by its synaptic operations, and by whether the step before swept (the
    kernel's hold: ``kernels.event.SWEEP_HOLD``)."""
    n, neuron = layer.n_out, layer.neuron
    width = 4 if (neuron.has_current or neuron.refractory) else 2
    in_cache = n * (width + 1) * np.dtype(dtype).itemsize <= kev.TWO_PHASE_STATE_BYTES
    c = paths._CSR_COSTS[in_cache]
    two_phase_at = kev.TWO_PHASE_AT if in_cache else kev.TWO_PHASE_AT_OUT_OF_CACHE
    decay = float(neuron.propagator(1, np.float64)[1, 0])
    undriven = not driven and not neuron.has_current and not neuron.refractory and 0 <= decay <= 1
    batch = source.batch_size
    direct = two = swept = sweeps = total = 0
    touched = 0.0
    for steps in _plain_step_synops(source, layer.fan_out):
        held = False  # a run does not start holding a run of sweeps
        for s in steps:
            total += s
            touched += n * -math.expm1(-s / n)
            held = undriven and (s >= kev.SWEEP_AT * n or held and s >= kev.SWEEP_HOLD * (kev.SWEEP_AT * n))
            if held:
                swept += s
                sweeps += 1
            elif s >= two_phase_at * n:
                two += s
            else:
                direct += s
    event = (c["direct"] * direct + c["two_phase"] * two + c["clock"] * swept) / batch
    event += c["clock_sweep"] * n * sweeps / batch
    if not undriven:
        event += c["setup"] * n + c["calendar"] * touched / batch
    clock = c["clock"] * total / batch + c["clock_sweep"] * n_steps * n
    gemm = n_steps * layer.n_in * n * paths._NS_PER_MAC[dtype] / min(1.0, batch * n_steps / 256)
    dense = gemm + n_steps * n * paths._NS_PER_CLOCK_UPDATE
    return {"event": event, "clock": clock, "dense": dense}


NEURONS = {
    "lif": snn.LIF(beta=0.9, threshold=1.0),
    "if": snn.IF(threshold=1.0),
    "refractory": snn.LIF(beta=0.9, threshold=1.0, refractory=2),
    "cuba": snn.CubaLIF(alpha=0.8, beta=0.9, threshold=1.0),
}


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 60),
    n_out=st.sampled_from([1, 3, 20, 100, 400]),
    most=st.sampled_from([1, 5, 30, 400]),
    batch=st.integers(1, 4),
    n_steps=st.integers(1, 40),
    p=st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.6, 1.0]),
    neuron=st.sampled_from(sorted(NEURONS)),
    driven=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_auto_picks_the_cheapest_path_of_the_cost_model(
    seed, n_in, n_out, most, batch, n_steps, p, neuron, driven, dtype
):
    rng = np.random.default_rng(seed)
    layer = _layer(rng, n_in, n_out, NEURONS[neuron], most)
    source = _trains(rng, batch, n_steps, n_in, p, pad=int(rng.integers(0, 5)))
    np.testing.assert_array_equal(
        paths._step_synops(source, layer.fan_out), _plain_step_synops(source, layer.fan_out)
    )
    costs = _reference_costs(layer, source, n_steps, dtype, driven)
    # twice: the second call reads the layer's kept constants
    chosen = [paths._choose_mode(layer, source, n_steps, dtype, driven) for _ in range(2)]
    assert chosen[0] == chosen[1]
    ranked = sorted(costs, key=lambda mode: costs[mode])  # (stable: ties go to event, then clock)
    best, second = costs[ranked[0]], costs[ranked[1]]
    if second - best <= 1e-12 * best:  # a tie within rounding (the order of a float sum): either
        assert chosen[0] in ranked[:2]
    else:
        assert chosen[0] == ranked[0], costs


@settings(max_examples=200, deadline=None)
@given(
    per_step=st.lists(st.lists(st.integers(0, 12), min_size=1, max_size=30), min_size=1, max_size=4),
    sweep_at=st.integers(0, 13),
    hold_at=st.integers(0, 13),
)
def test_the_sweep_steps_follow_the_kernels_hold(per_step, sweep_at, hold_at):
    """``_sweep_steps`` against the kernel's rule step by step: a step sweeps
    from ``sweep_at`` on, or from ``hold_at`` on if the step before swept."""
    T = min(len(steps) for steps in per_step)
    synops = np.array([steps[:T] for steps in per_step], np.float64)
    want = np.zeros(synops.shape, bool)
    for b, steps in enumerate(synops):
        held = False
        for t, s in enumerate(steps):
            held = want[b, t] = s >= sweep_at or held and s >= hold_at
    np.testing.assert_array_equal(paths._sweep_steps(synops, sweep_at, hold_at), want)


def test_the_kept_constants_follow_the_neuron_and_dtype():
    """A layer given another neuron, or run in another dtype, reads the
    constants a new layer would (500k neurons: float64 state out of cache,
    float32 in it; a refractory neuron is never undriven)."""
    rng = np.random.default_rng(1)
    kept = _layer(rng, 2, 500_000, NEURONS["lif"], 5)
    for neuron in ("lif", "refractory", "cuba", "lif"):
        for dtype in (np.float64, np.float32, np.float64):
            kept.neuron = NEURONS[neuron]
            new = _layer(np.random.default_rng(1), 2, 500_000, NEURONS[neuron], 5)
            assert paths._csr_choice_constants(kept, dtype) == paths._csr_choice_constants(new, dtype)
    # (the cases differ: the two-phase bound by dtype, the undriven flag by neuron)
    lif = _layer(np.random.default_rng(1), 2, 500_000, NEURONS["lif"], 5)
    assert paths._csr_choice_constants(lif, np.float64)[1] != paths._csr_choice_constants(lif, np.float32)[1]
    kept.neuron = NEURONS["refractory"]
    assert (
        paths._csr_choice_constants(lif, np.float64)[3]
        and not paths._csr_choice_constants(kept, np.float64)[3]
    )


def test_out_of_cache_sweeps():
    """An undriven layer whose state is out of cache (400k neurons, float64):
    steps of 0.15 .. 0.2 x n synaptic operations are sweeps there (below the
    two-phase bound), chosen as the cost model says."""
    rng = np.random.default_rng(3)
    n_in, n_out, n_steps = 200, 400_000, 30
    rowptr = np.arange(n_in + 1, dtype=np.int64) * 400
    cols = np.concatenate([np.sort(rng.choice(n_out, 400, replace=False)) for _ in range(n_in)])
    weights = np.full(len(cols), 0.5, np.float32)
    layer = snn.SparseLinear(
        n_in, n_out, NEURONS["lif"], rowptr=rowptr, cols=cols.astype(np.int32), weights=weights
    )
    for spikes in (150, 160, 190, 200):  # 0.15 / 0.16 / 0.19 / 0.2 x n per busy step
        counts = np.where(np.arange(n_steps) > 0, spikes, 1)  # (one quiet step)
        idx = np.concatenate([np.sort(rng.choice(n_in, c, replace=False)) for c in counts]).astype(np.int32)
        tptr = np.zeros((1, n_steps + 1), np.int64)
        np.cumsum(counts, out=tptr[0, 1:])
        source = SpikeTrains(tptr, idx[None], n_in)
        costs = _reference_costs(layer, source, n_steps, np.float64, False)
        assert paths._choose_mode(layer, source, n_steps, np.float64, False) == min(costs, key=costs.get)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 3), n_steps=st.integers(1, 50))
def test_a_sparse_run_is_decided_by_a_bound(seed, batch, n_steps):
    """An undriven layer whose steps bring so few spikes that even at the
    largest fan-out every step is direct, and the event path wins with that
    bound: the choice is made without summing the spikes' fan-outs, and it
    is the cost model's (event)."""
    rng = np.random.default_rng(seed)
    layer = _layer(rng, 200, 10_000, NEURONS["lif"], 20)  # direct below 600 synaptic operations a step
    source = _trains(rng, batch, n_steps, 200, 0.01, pad=2)
    costs = _reference_costs(layer, source, n_steps, np.float64, False)
    assert min(costs, key=lambda mode: costs[mode]) == "event"

    def no_sums(*args):
        raise AssertionError("the bound should have decided")

    step_synops, paths._step_synops = paths._step_synops, no_sums
    try:
        assert paths._choose_mode(layer, source, n_steps, np.float64, False) == "event"
    finally:
        paths._step_synops = step_synops


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["dense", "conv"]),
    n_steps=st.sampled_from([1, 2, 3, 5, 12, 160, 300]),  # (the dense path is chosen at many steps only)
    neuron=st.sampled_from(sorted(NEURONS)),
    driven=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_a_dense_or_conv_layers_choice_changes_at_its_cuts(seed, kind, n_steps, neuron, driven, dtype):
    """What a batch-1 run keeps of the choice (``Network._OneSample``):
    event up to one count of input spikes, clock up to another, then dense;
    the same as ``_choose_mode`` at every count from none to every input
    at every step."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        n_in, n_out = int(rng.integers(1, 80)), int(rng.choice([1, 10, 200, 3000]))
        layer = snn.Linear(n_in, n_out, NEURONS[neuron], weight=np.ones((n_out, n_in)))
    else:
        c, size, c_out = int(rng.integers(1, 4)), int(rng.integers(3, 7)), int(rng.integers(1, 40))
        layer = snn.Conv2d((c, size, size), c_out, 3, padding=int(rng.integers(0, 2)), neuron=NEURONS[neuron])
    event_to, clock_to = paths.choice_cuts(layer, n_steps, dtype, driven)
    assert -1 <= event_to <= clock_to <= layer.n_in * n_steps
    event(f"paths: {event_to >= 0} {clock_to > event_to} {clock_to < layer.n_in * n_steps}")
    for total in range(layer.n_in * n_steps + 1):
        tptr = np.zeros((1, n_steps + 1), np.int64)
        tptr[0, -1] = total
        source = SpikeTrains(tptr, np.zeros((1, max(total, 1)), np.int32), layer.n_in)
        cut = "event" if total <= event_to else "clock" if total <= clock_to else "dense"
        assert paths._choose_mode(layer, source, n_steps, dtype, driven) == cut, total
