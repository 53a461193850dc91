"""The CSR event path's scheduling (``kernels.event``, issue 12): each step
chooses, from its synaptic operations, between delivering each weight
directly to its neuron (few neurons touched), two phases (sum and mark the
input of the neurons it reaches, then bring the marked neurons forward in
index order) and, for an undriven layer, a sweep of every neuron (most
touched); an undriven layer (no positive bias, no current, no refractory
period, decay <= 1) keeps no calendar, only the list of neurons due at the
next step; the others keep the calendar.

Property tests against the reference backend in exact arithmetic (IF
neurons, or LIF with beta = 0.5 in float64; dyadic weights, bias, v_init and
thresholds): spike trains and final membranes bit-identical. Weights strong
enough that a membrane often stays at or above threshold after a reset (it
fires again at the next step with no input), and v_init above threshold
(due at step 0), exercise the list of due neurons; a positive bias the
calendar. The thresholds of the per-step choice (``two_phase_at``,
``sweep_at``) are drawn so that every path runs alone and the paths
alternate within a run. A run cut into chunks (the kernel's chunk contract)
gives what one run gives, bit for bit, also in inexact arithmetic (the
choice of a step depends on that step alone).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import snn
import snn_kernels as kernels
from snn.run.paths import _run_layer, complete_state
from snn.run.spiketrains import SpikeTrains

# fractions of the layer's neurons: every step direct, two-phase or a sweep,
# or a mix chosen per step by its synaptic operations
THRESHOLDS = st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0, 3.0, np.inf])


@st.composite
def csr_cases(draw, exact=True):
    n_in = draw(st.integers(1, 12))
    n = draw(st.integers(1, 150))  # past 64 and 4,096 / 64: several words of marks
    T = draw(st.integers(1, 25))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.05, 0.3, 1.0]))
    mask = rng.random((n, n_in)) < density
    if exact:
        weight = np.where(mask, rng.integers(-8, 25, (n, n_in)) / 8, 0.0)
    else:  # weights that round: summing orders differ in the last bits
        weight = np.where(mask, rng.uniform(-1.0, 3.0, (n, n_in)), 0.0)
    threshold = draw(st.integers(1, 16)) / 8
    reset = draw(st.sampled_from(["subtract", "zero", "value", "none"]))
    v_reset = draw(st.integers(-8, int(threshold * 8) - 1)) / 8 if reset == "value" else 0.0
    model = draw(st.sampled_from(["IF", "LIF", "IF_refractory", "CubaLIF"]))
    kw = dict(threshold=threshold, reset=reset, v_reset=v_reset)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if model == "IF":
        neuron = snn.IF(**kw)
    elif model == "LIF":
        neuron, dtype = snn.LIF(beta=0.5 if exact else 0.9, **kw), np.float64
    elif model == "IF_refractory":
        neuron = snn.IF(refractory=draw(st.integers(1, 3)), **kw)
    else:
        neuron, dtype = snn.CubaLIF(beta=1.0, alpha=0.5, **kw), np.float64
    drive = draw(st.sampled_from(["zero", "negative", "mixed", "positive"]))
    if drive == "zero":
        bias = 0.0
    elif drive == "negative":
        bias = -rng.integers(0, 4, n) / 8
    elif drive == "mixed":
        bias = rng.integers(-4, 3, n) / 8
    else:
        bias = float(draw(st.integers(1, 4)) / 16)
    v_init = rng.integers(-8, 40, n) / 8 if draw(st.booleans()) else 0.0
    p = draw(st.sampled_from([0.05, 0.3, 0.8]))
    spikes = (rng.random((T, draw(st.integers(1, 3)), n_in)) < p).astype(np.uint8)
    layer = snn.SparseLinear.from_dense(weight, neuron, bias=bias, v_init=v_init)
    return layer, spikes, dtype


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(150), deadline=None)
@given(case=csr_cases())
def test_csr_event_path_bit_identical(case):
    layer, spikes, dtype = case
    net = snn.Network([layer], dtype=dtype)
    ref = net.run(spikes, backend="reference")
    for mode in ("event", "clock"):
        result = net.run(spikes, mode=mode)
        assert np.array_equal(result.spikes(), ref.spikes()), mode
        assert np.array_equal(result.membrane, ref.membrane), mode
        assert np.array_equal(result.counts[0].spikes, ref.spikes().sum(axis=(0, 2))), mode


def _run_chunk(
    layer, trains, t0, t1, dtype, state, settle, two_phase_at=None, sweep_at=None, counts=None, **lazy
):
    """Steps ``t0 .. t1`` of ``trains`` through the layer's CSR kernel,
    continuing from ``state`` (shifted back ``t0`` steps) unless ``t0 == 0``;
    returns per sample the sorted ``(step, neuron)`` pairs of its spikes
    (and leaves the kernel's counts in ``counts`` ``[batch, 4]``, if given).
    ``lazy``: ``seen`` and ``lazy_below`` for a lazy start."""
    batch = trains.batch_size
    neuron = layer.neuron
    tptr = trains.tptr[:, t0 : t1 + 1] - trains.tptr[:, t0 : t0 + 1]
    idx = np.zeros((batch, max(1, int(tptr[:, -1].max()))), np.int32)
    for b in range(batch):
        seg = trains.idx[b, trains.tptr[b, t0] : trains.tptr[b, t1]]
        idx[b, : len(seg)] = seg
    if t0 == 0:
        v_init = layer.v_init_row(dtype)
    else:
        v_init = np.zeros(0, dtype)
        state[:, :, kernels.T_LAST] -= t0
        if state.shape[2] > kernels.REF:
            state[:, :, kernels.REF] -= t0
    thr, v_reset = neuron.constants(dtype)
    out_tptr = np.zeros((batch, t1 - t0 + 1), np.int64)
    out_idx = np.zeros((batch, (t1 - t0) * layer.n_out + 1), np.int32)
    counts = np.zeros((batch, 4), np.int64) if counts is None else counts
    kernels.csr_layer(
        tptr, idx, layer.rowptr, layer.cols, layer.weights, layer.bias_row(dtype)[0],
        neuron.propagator(t1, dtype), thr, neuron.reset_code, v_reset, neuron.refractory, v_init,
        neuron.has_current, neuron.refractory > 0, settle, state, out_tptr, out_idx, counts,
        two_phase_at=two_phase_at, sweep_at=sweep_at, **lazy,
    )  # fmt: skip
    assert not counts[:, 3].any()
    return [
        sorted((t, j) for t in range(t1 - t0) for j in out_idx[b, out_tptr[b, t] : out_tptr[b, t + 1]])
        for b in range(batch)
    ]


def _reference_pairs(layer, spikes, dtype):
    """The reference backend's spikes as :func:`_run_chunk` returns them, and its final membrane."""
    ref = snn.Network([layer], dtype=dtype).run(spikes, backend="reference")
    raster = ref.spikes()  # [T, B, n]
    pairs = [
        sorted((int(t), int(j)) for t, j in zip(*np.nonzero(raster[:, b]))) for b in range(raster.shape[1])
    ]
    return pairs, ref.membrane


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(150), deadline=None)
@given(case=csr_cases(), two_phase_at=THRESHOLDS, sweep_at=THRESHOLDS)
def test_csr_per_step_paths_bit_identical(case, two_phase_at, sweep_at):
    """Whichever path each step takes (direct, two phases, sweep: forced,
    or switching from step to step), the kernel's spikes and final membrane
    equal the reference's in exact arithmetic, and its counts are the
    input's synaptic operations and its own spikes."""
    layer, spikes, dtype = case
    T, batch = spikes.shape[:2]
    trains = SpikeTrains.from_raster(spikes)
    width = 4 if layer.neuron.has_current or layer.neuron.refractory else 2
    state = np.zeros((batch, layer.n_out, width), dtype)
    got = _run_chunk(layer, trains, 0, T, dtype, state, True, two_phase_at, sweep_at)
    want, membrane = _reference_pairs(layer, spikes, dtype)
    assert got == want
    assert np.array_equal(state[:, :, 0], membrane)


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(150), deadline=None)
@given(case=csr_cases(), two_phase_at=THRESHOLDS, sweep_at=THRESHOLDS, settle=st.booleans())
def test_csr_lazy_start_bit_identical(case, two_phase_at, sweep_at, settle):
    """A lazy start (rows written at a neuron's first input, forced here
    whatever the input's activity) gives the spikes of a start that writes
    every row first, and the same state once the rows it left unmarked are
    completed (``complete_state``), or settled at the end; steps in two
    phases or as sweeps first complete the state in the kernel. A layer
    that cannot start lazily (driven, or ``v_init`` at or above threshold,
    which the caller then does not offer) marks every row."""
    layer, spikes, dtype = case
    T, batch = spikes.shape[:2]
    trains = SpikeTrains.from_raster(spikes)
    width = 4 if layer.neuron.has_current or layer.neuron.refractory else 2
    v_init = layer.v_init_row(dtype)
    # (a neuron due on its own at step 0: never offered a lazy start)
    assume(v_init.max() < layer.neuron.constants(dtype)[0])
    words = (layer.n_out + 63) >> 6
    seen = np.zeros((batch, words), np.uint64)
    paths = dict(two_phase_at=two_phase_at, sweep_at=sweep_at)
    # (NaN: garbage in the rows a lazy start leaves unset, and in the columns no run writes)
    eager_state = np.full((batch, layer.n_out, width), np.nan, dtype)
    eager = _run_chunk(layer, trains, 0, T, dtype, eager_state, settle, **paths)
    state = np.full_like(eager_state, np.nan)
    lazy = _run_chunk(layer, trains, 0, T, dtype, state, settle, **paths, seen=seen, lazy_below=np.inf)
    assert lazy == eager
    if width > 2:
        assert (seen == np.uint64(2**64 - 1)).all()  # driven (a current or refractory period): not lazy
    complete_state(state, seen, v_init)
    assert np.array_equal(state, eager_state, equal_nan=True)
    if settle:
        assert (seen == np.uint64(2**64 - 1)).all()
        want, membrane = _reference_pairs(layer, spikes, dtype)
        assert lazy == want
        assert np.array_equal(state[:, :, 0], membrane)


@pytest.mark.usefixtures("warm_kernels")
def test_csr_lazy_start_in_a_run():
    """A run whose input reaches few neurons starts lazily (the default
    threshold, ``LAZY_START_BELOW``): most rows are left unmarked, and the
    result's spikes and final membrane equal the reference backend's (IF,
    dyadic weights: exact); input reaching more runs as before (every row
    marked)."""
    n = 3000
    rng = np.random.default_rng(5)
    rowptr, cols = snn.fixed_in_degree(n, n, 20, seed=1)
    weights = (rng.integers(1, 12, len(cols)) / 8).astype(np.float32)
    layer = snn.SparseLinear(n, n, snn.IF(threshold=1.0), rowptr=rowptr, cols=cols, weights=weights)
    net = snn.Network([layer])
    T = 30
    for p, lazy in ((4 / (T * n), True), (2e-2, False)):  # (4 input spikes a sample: 80 SynOps)
        spikes = (rng.random((T, 2, n)) < p).astype(np.uint8)
        spikes[rng.integers(0, T), :, rng.integers(0, n)] = 1  # (none empty)
        synops = spikes.sum(axis=0) @ np.diff(rowptr)
        trains = SpikeTrains.from_raster(spikes)
        bias = layer.bias_row(np.float64)[0]
        _, state, _, marks = _run_layer(
            layer, trains, bias, None, "event", T, np.float64, False, complete=False
        )
        unmarked = [n - int(np.unpackbits(m.view(np.uint8))[:n].sum()) for m in marks]
        if lazy:
            assert (synops < kernels.event.LAZY_START_BELOW * n).all()
            assert min(unmarked) > n // 2
        else:
            assert unmarked == [0, 0]
        complete_state(state, marks, layer.v_init_row(np.float64))
        _, eager, _, none = _run_layer(layer, trains, bias, None, "event", T, np.float64, False)
        assert none is None
        assert np.array_equal(state, eager)
        ref = net.run(spikes, backend="reference")
        got = net.run(spikes, mode="event")
        assert np.array_equal(got.spikes(), ref.spikes())
        assert np.array_equal(got.membrane, ref.membrane)


def _step_updates(weight, spikes, two_phase_at, sweep_at, cuts=()):
    """The updates a CSR layer (IF, threshold 1, weights too small to fire)
    counts for sample 0 of ``spikes`` ``[T, 1, n_in]``, the run cut into
    chunks at ``cuts`` (each chunk's synaptic operations checked against the
    spikes' fan-outs)."""
    layer = snn.SparseLinear.from_dense(weight, snn.IF(threshold=1.0))
    trains = SpikeTrains.from_raster(spikes)
    state = np.zeros((1, layer.n_out, 2))
    total = 0
    bounds = [0, *cuts, len(spikes)]
    for t0, t1 in zip(bounds, bounds[1:]):
        counts = np.zeros((1, 4), np.int64)
        last = t1 == len(spikes)
        _run_chunk(layer, trains, t0, t1, np.float64, state, last, two_phase_at, sweep_at, counts)
        state[:, :, kernels.T_LAST] += t0
        assert counts[0, 0] == spikes[t0:t1, 0].sum(axis=0) @ (weight != 0).sum(axis=0)
        assert counts[0, 2] == 0
        total += counts[0, 1]
    return total


def test_csr_step_choice_rule():
    """The per-step choice itself: a layer whose every step has the same
    input, run with the thresholds just above and just below that input's
    synaptic operations, counts the updates of the path it should take
    (direct and two phases: the neurons touched; a sweep: all of them)."""
    n, n_in, T = 100, 4, 6
    weight = np.zeros((n, n_in))
    weight[:10, 0] = 0.01  # input 0 reaches 10 neurons: 10 synaptic operations per step
    spikes = np.zeros((T, 1, n_in), np.uint8)
    spikes[:, 0, 0] = 1

    def updates(two_phase_at, sweep_at):
        return _step_updates(weight, spikes, two_phase_at, sweep_at)

    assert updates(np.inf, np.inf) == 10 * T  # direct
    assert updates(0.1, np.inf) == 10 * T  # 10 synaptic operations >= 0.1 * 100: two phases
    assert updates(np.inf, 0.1) == n * T  # a sweep
    # below the sweep's threshold, above SWEEP_HOLD x it: a run does not start holding a
    # run of sweeps, so its steps are direct, or two phases
    hold = kernels.event.SWEEP_HOLD
    assert 0.12 * hold * n < 10
    assert updates(np.inf, 0.12) == 10 * T
    assert updates(0.1, 0.12) == 10 * T


def test_csr_run_of_sweeps_held():
    """A step whose synaptic operations S are below ``sweep_at`` x n but
    reach SWEEP_HOLD x that sweeps if every neuron is at the step before
    (after a sweep, or a step that touched every neuron), and not otherwise;
    a run cut into chunks anywhere counts the updates of one run (the
    chunk that continues reads it from the state)."""
    n = 10
    weight = np.zeros((n, 3))
    weight[:, 0] = 0.01  # input 0: every neuron (10 synaptic operations)
    weight[:5, 1] = weight[:5, 2] = 0.01  # inputs 1 and 2: neurons 0-4 (5 each)
    steps = [[1], [1, 2], [0], [1, 2], [1], [1, 2], [0, 1], [1, 2], [1, 2], [1]]
    spikes = np.zeros((len(steps), 1, 3), np.uint8)
    for t, inputs in enumerate(steps):
        spikes[t, 0, inputs] = 1
    hold = kernels.event.SWEEP_HOLD
    assert 25 * hold > 15 and 9 < 14 * hold < 10
    # S: 5, 10, 10, 10, 5, 10, 15, 10, 10, 5; sweep_at x n 25 (hold above 15): no sweep
    assert _step_updates(weight, spikes, np.inf, 2.5) == sum([5, 5, 10, 5, 5, 5, 10, 5, 5, 5])
    # sweep_at x n 14, hold 9.33: step 0 (S 5) touches 5 of 10, so step 1 (S 10) does not
    # sweep; step 2 touches every neuron, so step 3 sweeps (n); step 6 (S 15) sweeps, and
    # steps 7 and 8 hold the run
    want = [5, 5, 10, 10, 5, 5, 10, 10, 10, 5]
    for cuts in [(), *((c,) for c in range(1, len(steps))), (3, 7), (1, 2, 8)]:
        assert _step_updates(weight, spikes, np.inf, 1.4, cuts) == sum(want), cuts


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(80), deadline=None)
@given(
    case=st.booleans().flatmap(csr_cases),
    cut=st.floats(0.0, 1.0),
    two_phase_at=THRESHOLDS,
    sweep_at=THRESHOLDS,
)
def test_csr_event_path_chunks(case, cut, two_phase_at, sweep_at):
    """Two chunks (the second continuing from the state the first left, its
    step columns shifted back) give the spikes and final state of one run,
    bit for bit, in exact and in inexact arithmetic, whichever paths the
    steps take; and their updates add up to the run's (the chunks take its
    paths: a run of sweeps held across the cut too)."""
    layer, spikes, dtype = case
    T, batch = spikes.shape[:2]
    trains = SpikeTrains.from_raster(spikes)
    width = 4 if layer.neuron.has_current or layer.neuron.refractory else 2
    paths = dict(two_phase_at=two_phase_at, sweep_at=sweep_at)
    whole_state = np.zeros((batch, layer.n_out, width), dtype)
    whole_counts, first_counts, second_counts = (np.zeros((batch, 4), np.int64) for _ in range(3))
    whole = _run_chunk(layer, trains, 0, T, dtype, whole_state, True, **paths, counts=whole_counts)
    t_cut = min(T - 1, int(cut * T))
    state = np.zeros((batch, layer.n_out, width), dtype)
    first = (
        _run_chunk(layer, trains, 0, t_cut, dtype, state, False, **paths, counts=first_counts)
        if t_cut
        else [[] for _ in range(batch)]
    )
    second = (
        _run_chunk(layer, trains, t_cut, T, dtype, state, True, **paths, counts=second_counts)
        if t_cut
        else whole
    )
    state[:, :, kernels.T_LAST] += t_cut
    if width > kernels.REF:
        state[:, :, kernels.REF] += t_cut
    for b in range(batch):
        assert whole[b] == first[b] + [(t + t_cut, j) for t, j in second[b]]
    if t_cut:
        assert np.array_equal(state, whole_state)
        assert np.array_equal(first_counts[:, :2] + second_counts[:, :2], whole_counts[:, :2])


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_csr_runs_of_sweeps(reset):
    """Runs of sweep steps (the second and later ones sweep the membranes in a
    row of their own, written back when the run ends) between light steps,
    an empty step and the end of the run: spikes and final membrane equal
    the reference's (LIF, beta 0.5, dyadic weights: exact), and every cut
    into two chunks, inside a run of sweeps too, gives the uncut result.
    Strong weights leave membranes above threshold after a reset, so the
    neurons due on their own after a run of sweeps are exercised."""
    n, n_in = 70, 8
    rng = np.random.default_rng(3)
    weight = rng.integers(-4, 20, (n, n_in)) / 8
    layer = snn.SparseLinear.from_dense(weight, snn.LIF(beta=0.5, threshold=1.0, reset=reset))
    heavy = [0, 1, 2, 3, 6, 7, 8, 10, 11]  # every input: n_in x n synaptic operations; step 9: none
    spikes = np.zeros((12, 2, n_in), np.uint8)
    spikes[heavy] = 1
    spikes[[4, 5], :, 0] = 1  # light: n synaptic operations, below 2 x n
    spikes[:, 1] *= (rng.random((12, n_in)) < 0.7).astype(np.uint8)  # sample 1: fewer
    T, batch = spikes.shape[:2]
    trains = SpikeTrains.from_raster(spikes)
    want, membrane = _reference_pairs(layer, spikes, np.float64)
    whole_state = np.zeros((batch, n, 2))
    whole = _run_chunk(layer, trains, 0, T, np.float64, whole_state, True, sweep_at=2.0)
    assert whole == want
    assert np.array_equal(whole_state[:, :, 0], membrane)
    for t_cut in range(1, T):
        state = np.zeros((batch, n, 2))
        first = _run_chunk(layer, trains, 0, t_cut, np.float64, state, False, sweep_at=2.0)
        second = _run_chunk(layer, trains, t_cut, T, np.float64, state, True, sweep_at=2.0)
        state[:, :, kernels.T_LAST] += t_cut
        for b in range(batch):
            assert whole[b] == first[b] + [(t + t_cut, j) for t, j in second[b]], t_cut
        assert np.array_equal(state, whole_state), t_cut


@settings(max_examples=examples(100), deadline=None)
@given(
    fan_outs=st.lists(st.integers(0, 90), min_size=1, max_size=12),
    events=st.lists(st.integers(0, 11), min_size=1, max_size=30),
    n=st.integers(1, 50),
    seed=st.integers(0, 2**16),
)
def test_sum_prefetched_adds_as_the_plain_loop(fan_outs, events, n, seed):
    """The sweep's input sum with targets prefetched by a cursor running
    ahead through the rows (``kernels.event._sum_prefetched``: sums out of
    cache) adds the same weights in the same order as the plain loop, bit for
    bit, whatever the rows' lengths (empty ones included) and the number of
    spikes (fewer than the look-ahead included)."""
    rng = np.random.default_rng(seed)
    rowptr = np.concatenate(([0], np.cumsum(fan_outs))).astype(np.int64)
    cols = rng.integers(0, n, rowptr[-1]).astype(np.int32)
    weights = rng.normal(size=rowptr[-1])
    in_idx = np.array([e % len(fan_outs) for e in events], np.int32)
    acc = rng.normal(size=n)
    want = acc.copy()
    for pre in in_idx:
        for s in range(rowptr[pre], rowptr[pre + 1]):
            want[cols[s]] += weights[s]
    kernels.event._sum_prefetched(acc, rowptr, cols, weights, in_idx, 0, len(in_idx))
    assert np.array_equal(acc, want)


def test_csr_sweep_of_a_layer_out_of_cache():
    """A layer whose sweep steps' input sums are larger than the cache
    (1.1 M neurons: the targets are prefetched ahead, ``_sum_prefetched``)
    gives the spikes and final membrane of the same kernel with no sweep step
    (direct and two-phase steps, tested against the reference above; the
    reference itself takes seconds at this size)."""
    n, n_in, fan_out = 1_100_000, 2_000, 100
    rng = np.random.default_rng(5)
    rows = np.repeat(np.arange(n_in), fan_out)
    cols = rng.integers(0, n, n_in * fan_out)
    values = rng.integers(-8, 12, n_in * fan_out) / 8
    layer = snn.SparseLinear.from_coo(n_in, n, rows, cols, values, snn.LIF(beta=0.5, threshold=1.0))
    spikes = (rng.random((4, 1, n_in)) < 0.95).astype(np.uint8)  # 0.17 x n synaptic operations a step: sweeps
    assert n * 8 > kernels.event._TARGETS_FAR_BYTES
    trains = SpikeTrains.from_raster(spikes)
    swept, stepped = np.zeros((1, n, 2)), np.zeros((1, n, 2))
    got = _run_chunk(layer, trains, 0, 4, np.float64, swept, True)
    assert got == _run_chunk(layer, trains, 0, 4, np.float64, stepped, True, sweep_at=100.0)
    assert len(got[0]) > 1000
    np.testing.assert_array_equal(swept[:, :, 0], stepped[:, :, 0])


def test_csr_two_phase_steps_of_a_wide_layer():
    """Two-phase steps on a layer of many words of marks (70,001 neurons:
    18 summary words, the last one partial), with fewer synaptic operations
    than words (marked word by word) and more (every word read), give the
    spikes, final membrane and updates of direct delivery (exact: dyadic
    weights)."""
    n, n_in = 70_001, 40
    rng = np.random.default_rng(6)
    fan_out = np.where(np.arange(n_in) % 2 == 0, 300, 3_000)  # even inputs: below 1,094 words
    rows = np.repeat(np.arange(n_in), fan_out)
    cols = np.concatenate([rng.choice(n, f, replace=False) for f in fan_out])
    values = rng.integers(-4, 12, len(cols)) / 8
    layer = snn.SparseLinear.from_coo(n_in, n, rows, cols, values, snn.LIF(beta=0.5, threshold=1.0))
    spikes = np.zeros((8, 2, n_in), np.uint8)
    spikes[:, 0, 0] = 1  # sample 0: 300 synaptic operations a step
    spikes[:, 1] = rng.random((8, n_in)) < 0.5  # sample 1: about 33,000 (plus neurons due on their own)
    spikes[[0, 4, 7], 1, :] = 1
    assert (n + 63) // 64 == 1_094 and -(-1_094 // 64) == 18
    trains = SpikeTrains.from_raster(spikes)
    states = np.zeros((2, 2, n, 2))
    counts = np.zeros((2, 2, 4), np.int64)
    two = _run_chunk(layer, trains, 0, 8, np.float64, states[0], True, 0.0, np.inf, counts[0])
    direct = _run_chunk(layer, trains, 0, 8, np.float64, states[1], True, np.inf, np.inf, counts[1])
    assert two == direct and min(len(s) for s in two) > 100
    np.testing.assert_array_equal(states[0], states[1])
    np.testing.assert_array_equal(counts[0], counts[1])


@pytest.mark.parametrize("n", [40, 600])
def test_many_neurons_due_on_their_own_close_in_order(n):
    """A stepped population whose neurons are all due on their own (bias at
    threshold: each fires every step) closes them in index order once more
    than 1/16 are touched; past 255 neurons the count of touched neurons
    must not wrap (it read a uint8 mark into it: under NUMBA_DISABLE_JIT the
    count became a uint8). Event path == reference, spike for spike."""
    g = snn.Graph()
    pop = g.population(n, snn.IF(threshold=1.0), bias=np.linspace(0.25, 1.0, n), mode="event")
    runs = [g.run(6, batch_size=2, record_v={pop: [0, n - 1]}, backend=b) for b in ("event", "reference")]
    np.testing.assert_array_equal(runs[0].spikes(pop.name), runs[1].spikes(pop.name))
    np.testing.assert_array_equal(runs[0].v(pop.name), runs[1].v(pop.name))
    per_step = runs[0].spikes(pop.name).sum(axis=-1)  # [T, B]
    assert per_step.max() > 256 if n > 256 else per_step.max() * 16 > n  # ordered close, > 255 touched


def test_many_neurons_reached_by_input_in_one_step():
    """A stepped population whose 600 neurons all receive input in one step
    lists them as touched while delivering; the count must not wrap past 255
    (it added ``1 - mark``, a uint8, under NUMBA_DISABLE_JIT). Event path ==
    reference, spike for spike."""
    g = snn.Graph()
    src = g.input(2, name="in")
    pop = g.population(600, snn.IF(threshold=1.0), mode="event")
    g.connect(src, pop, np.full((600, 2), 0.5), delay=1)
    spikes = np.zeros((6, 2, 2), np.uint8)
    spikes[[0, 2, 3], :, 0] = 1
    spikes[[2, 4], :, 1] = 1
    runs = [
        g.run(6, inputs={"in": spikes}, record_v={pop: [0, 599]}, backend=b) for b in ("event", "reference")
    ]
    np.testing.assert_array_equal(runs[0].spikes(pop.name), runs[1].spikes(pop.name))
    np.testing.assert_array_equal(runs[0].v(pop.name), runs[1].v(pop.name))
    assert runs[0].spikes(pop.name).sum(axis=-1).max() > 256
