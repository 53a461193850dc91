"""The paths of a population run over all steps at once, as a layer of a
stack (event, clock or dense; the max-pool gate), the layer runner that
calls their kernels, and the cost model by which ``mode="auto"`` chooses
among them from the measured input (used by the schedule, :mod:`snn.run.schedule`,
for every population it runs as a layer)."""

from __future__ import annotations

import operator
import sys
import threading
import weakref

import numpy as np

import snn_kernels as kernels
import snn_kernels.event as kev
from snn_kernels import T_LAST
from snn_kernels.event import conv_tables
from snn_kernels.neuron import V

from .spiketrains import SpikeTrains

# Cost model of the automatic choice between the event, clock and dense paths,
# in nanoseconds per operation on one core (numba and BLAS), measured on the
# project's 2-core machine with benchmarks/layer_modes.py; their ratios matter.
_NS_PER_SYNOP = {
    "event": {"dense": 0.35, "conv": 0.7, "csr": 2.0},  # delivery, and marking what it touches
    "clock": {"dense": 0.35, "conv": 0.35, "csr": 2.0},  # conv: contiguous runs (868d909, EVENT-DIGITS)
}  # delivery into a sum only
# a neuron touched on the event path: brought forward, checked, rescheduled in
# random order (a Linear layer's event path sweeps instead); (no positive bias, some)
_NS_PER_EVENT_UPDATE = {"dense": (1.5, 3.0), "conv": (25.0, 35.0), "csr": (25.0, 35.0)}
_NS_PER_MAC = {
    np.float32: 0.1,
    np.float64: 0.2,
}  # the dense path: raster, then GEMM [B*T, n_in] x [n_in, n_out]
_NS_PER_CLOCK_UPDATE = 1.5  # one neuron step of a sequential sweep
# A CSR layer's kernel (kernels.event.sparse_kernel) chooses a path per step
# from the step's synaptic operations S (kernels.event.TWO_PHASE_AT ...):
# direct delivery, two phases, or (an undriven layer, kernels.event.SWEEP_AT)
# a sweep, which costs what a clock step costs.
# Its costs, measured with benchmarks/sparse_crossover.py (fixed in-degree 100,
# one thread, undriven LIF; fitted to the event and clock times of its rows at
# e8d9d1c, quiet, 2026-11-28), by whether the state and the input sums fit in
# cache (kernels.event.TWO_PHASE_STATE_BYTES: 100k neurons do, 1M do not): ns
# per synaptic operation on the direct / two-phase / clock path, ns per neuron
# of a clock sweep, ns per touched neuron of a layer that keeps a calendar
# (driven; not re-measured since 5b13178), ns per neuron per run (set-up, the
# first calendar, settling; the clock path's is in its sweep). In cache, two-phase
# steps then cost 12 % less (09f1193: at 9.5 % touched, 13.0 -> 11.4 ms in one run).
_CSR_COSTS = {
    True: dict(direct=20.0, two_phase=14.0, clock=8.4, clock_sweep=1.05, calendar=20.0, setup=8.0),
    False: dict(direct=36.0, two_phase=56.0, clock=28.0, clock_sweep=1.45, calendar=40.0, setup=6.0),
}


def _state_width(neuron) -> int:
    return 4 if (neuron.has_current or neuron.refractory) else 2


def _run_layer(
    layer, source, bias, currents, mode, n_steps, dtype, settle, carried=None, elapsed=0, complete=True
):
    """One layer over the batch; retries with a larger output buffer if needed.
    ``carried``: the state an earlier chunk of the run left (not mutated;
    steps counted from this chunk's start, see ``kernels.event``), ``elapsed``
    the steps run before this chunk; returns ``(trains, state, counts,
    marks)``. ``complete`` False: the caller reads the state through
    :func:`complete_state` only, so that a fresh run on the CSR event path
    may start lazily (``kernels.event.sparse_kernel``: the neurons no input
    reached cost nothing); ``marks`` is then its marks ``[B, words]``
    (``seen``), else None (``state`` complete)."""
    batch = source.batch_size
    dense = mode == "dense"
    if dense and currents is None:
        currents = _dense_currents(source, layer, dtype)
    rows = 0 if dense else elapsed + n_steps
    # the kernel call bound to what the layer, path and dtype fix: kept by a layer that keeps them
    # (a graph's, immutable: snn.run.schedule._ProjectionLayer), made here for any other
    calls = getattr(layer, "calls", None)
    key = (mode, dtype, rows, settle, carried is None)
    made = None if calls is None else calls.get(key)
    if made is None:
        made = _bound_layer(layer, mode, dtype, rows, settle, carried is None)
        if calls is not None:
            if len(calls) >= 8:  # (chunks of a stream ask for ever more rows: a few are kept)
                calls.clear()
            calls[key] = made
    call, width, lazy = made
    n_out = layer.n_out
    # output buffer: a guess, or the busiest sample's spikes per step of this layer's last run
    # (kept by a graph's layer: a layer firing above the guess would otherwise run twice every time)
    seen = getattr(layer, "spikes_per_step", 0.0)
    most = n_steps * n_out
    if seen:  # (not 4x the busiest input: on EVENT-DIGITS' conv2 that is all of ``most``, 1.3 GB)
        cap = min(most, max(1024, int(1.25 * seen * n_steps)))
    else:
        busiest = int(source.tptr[0, -1]) if batch == 1 else _largest(source.tptr[:, -1])
        cap = min(most, max(1024, 4 * busiest, most // 8))
    while True:
        state = np.empty((batch, n_out, width), dtype) if carried is None else carried.copy()
        out_tptr = np.empty((batch, n_steps + 1), np.int64)
        out_idx = np.empty((1, cap), np.int32) if batch == 1 else _out_buffer(layer, batch, cap)
        kc = np.zeros((batch, 4), np.int64)
        if lazy and not complete:
            marks = np.empty((batch, (n_out + 63) >> 6), np.uint64)
            call(source.tptr, source.idx, currents, bias, state, out_tptr, out_idx, kc, marks)
        else:
            marks = None
            call(source.tptr, source.idx, currents, bias, state, out_tptr, out_idx, kc)
        if batch == 1:  # (one sample: its two counts read at once)
            overflow, used = kc[0, 3:1:-1].tolist()
        else:
            overflow, used = _largest(kc[:, 3]), None
        if not overflow:  # no sample overflowed its output buffer (flags are 0 or 1)
            break
        cap = min(cap * 4, most)
        out_idx = None  # (let go before a larger one is made)
    if used is None:
        used = _largest(kc[:, 2])
    if hasattr(layer, "spikes_per_step"):
        # (a run of one sample does not lower it: a batch's busiest sample is busier than most)
        layer.spikes_per_step = used / n_steps if batch > 1 else max(seen, used / n_steps)
    if batch == 1:  # one sample's first ``used`` indices are contiguous as they are
        idx = out_idx[:, :used]
    elif cap <= 2 * used:  # its rows moved together in its own memory, which the trains keep
        idx = _packed(out_idx, kc[:, 2], used)
    else:  # (a guess far too large: the trains keep a copy, the buffer is not kept)
        idx = out_idx[:, :used].copy()
        _made(layer)["out"] = None
    return SpikeTrains(out_tptr, idx, n_out), state, kc, marks


def complete_state(state, seen, v_init) -> None:
    """Write, in place, the initial state (``v_init`` ``[n]``, no step yet)
    into the rows of ``state`` ``[B, n, 2]`` that a lazy start left unset:
    those whose bit in ``seen`` ``[B, ceil(n / 64)]`` uint64 is 0 (bit
    ``j & 63`` of word ``j >> 6``: ``kernels.event.sparse_kernel``)."""
    n = state.shape[1]
    bits = np.unpackbits(seen.astype("<u8", copy=False).view(np.uint8), axis=1, bitorder="little")
    sample, j = np.nonzero(bits[:, :n] == 0)
    state[sample, j, V] = v_init[j]
    state[sample, j, T_LAST] = -1


_OUT_LOCK = threading.Lock()  # (a buffer is taken, its view made, by one thread at a time)


def _out_buffer(layer, batch, cap) -> np.ndarray:
    """An int32 buffer ``[batch, cap]`` for a run of ``layer`` over a batch:
    in the memory of the one its last such run had if nothing holds that any
    more (no result of that run, no view of one) and it is at most twice
    the size, else in new memory, kept for the next run. (Memory given back
    to the system costs its first touch again when taken back: about 3 s per
    GB in page faults on this project's machine, a third of EVENT-DIGITS'
    whole-set time before buffers were kept.)"""
    made = _made(layer)
    size = batch * cap
    with _OUT_LOCK:
        kept = made.get("out")
        if kept is None or not size <= len(kept) <= 2 * size or _references(made) > _UNHELD:
            made["out"] = kept = None  # (let go before the new one is made)
            kept = made["out"] = np.empty(size, np.int32)
        return kept[:size].reshape(batch, cap)


def release_memory() -> int:
    """Let go of the spike buffers that layers keep between whole-batch runs
    (see :func:`_out_buffer`; the memory is kept for the next run, like a
    caching allocator's, and goes with the layer otherwise). A buffer still
    held by a result stays alive until that result goes. Returns the bytes
    let go; the next whole-batch run of each layer takes new memory (and
    pays its first touch again). Results are unchanged by it."""
    released = 0
    with _OUT_LOCK:
        for made in list(_MADE.values()):
            kept = made.get("out")
            if kept is not None:
                released += kept.nbytes
                made["out"] = None
    return released


def _references(made) -> int:
    """``sys.getrefcount`` of ``made["out"]`` (called by :func:`_out_buffer`,
    which holds it too): each result or view holding that buffer adds one
    to :data:`_UNHELD`, its count when none does."""
    kept = made["out"]
    return sys.getrefcount(kept)


def _unheld() -> int:
    """:func:`_references` of a buffer held as :func:`_out_buffer` holds it
    and by nothing else: measured, not assumed, because what getrefcount
    counts besides the holders differs between Python versions (3.14's
    borrowed stack references count one less)."""
    made = {"out": np.empty(0, np.int32)}
    kept = made["out"]  # noqa: F841 (held as _out_buffer holds it)
    return _references(made)


_UNHELD = _unheld()


def _packed(out_idx, spikes, used) -> np.ndarray:
    """``out_idx[:, :used]`` as a C-contiguous array in ``out_idx``'s own
    memory (no copy in new memory: on a whole set, hundreds of MB whose
    first touch costs more than the move): row ``b``'s first ``spikes[b]``
    entries moved down to ``b * used`` by ``kernels.pack_rows``; the rest
    of a row, unread, is left as it is."""
    batch, cap = out_idx.shape
    if used < cap:
        kernels.pack_rows(out_idx, spikes, used)
    return out_idx.reshape(-1)[: batch * used].reshape(batch, used)


def prepare_batches() -> None:
    """Compile (or load) the kernel a batch's run calls besides its layers'
    (``kernels.pack_rows``, for the arrays :func:`_run_layer` passes it)."""
    _packed(np.zeros((2, 2), np.int32), np.ones((2, 4), np.int64)[:, 2], 1)


def _bound_layer(layer, mode, dtype, rows, settle, fresh) -> tuple:
    """``(call, width, lazy)``: ``call(in_tptr, in_idx, currents, bias,
    state, out_tptr, out_idx, counts)`` runs ``layer``'s kernel of path
    ``mode`` in ``dtype`` (``currents``: the dense path's input, else
    unused), its other arguments made here once (the neuron's constants and
    a propagator of ``rows`` rows, a convolution's tables, the initial
    membrane of a ``fresh`` run); ``width`` the state's width; ``lazy``: the
    call may start lazily (a fresh CSR event path whose initial membranes
    are all below threshold), given the marks as a ninth argument
    ``seen`` (``kernels.csr_layer``). Made from the layer as it is now: a
    caller that keeps it keeps it only while the layer is unchanged."""
    neuron = layer.neuron
    v_init = layer.v_init_row(dtype) if fresh else np.zeros(0, dtype)
    made = _made(layer)
    constants = _constants(made, neuron, dtype, rows)
    if mode == "dense":
        alpha, beta, thr, reset_code, v_reset, refractory, has_current, _, _ = constants

        def call(in_tptr, in_idx, currents, bias, state, out_tptr, out_idx, kc):
            kernels.clock_layer(
                currents,
                bias,
                alpha,
                beta,
                thr,
                reset_code,
                v_reset,
                refractory,
                v_init,
                has_current,
                state,
                out_tptr,
                out_idx,
                kc,
            )

        return call, 4, False
    table, thr, reset_code, v_reset, refractory, has_current, has_refractory, width = constants
    clock = mode == "clock"
    fixed = (table, thr, reset_code, v_reset, refractory, v_init, has_current, has_refractory, settle)
    if layer.kind == "dense":
        weights = layer.weight_rows

        def call(in_tptr, in_idx, currents, bias, state, out_tptr, out_idx, kc):
            kernels.dense_layer(
                in_tptr, in_idx, weights, bias, *fixed, state, out_tptr, out_idx, kc, clock=clock
            )

    elif layer.kind == "conv":
        geom, weights = layer.geom, layer.kernel_weights
        tables = _conv_tables(made, layer, dtype)

        def call(in_tptr, in_idx, currents, bias, state, out_tptr, out_idx, kc):
            kernels.conv_layer(
                in_tptr,
                in_idx,
                geom,
                weights,
                bias,
                *fixed,
                state,
                out_tptr,
                out_idx,
                kc,
                clock=clock,
                tables=tables,
            )

    else:
        rowptr, cols, weights = layer.rowptr, layer.cols, layer.weights

        def call(in_tptr, in_idx, currents, bias, state, out_tptr, out_idx, kc, seen=None):
            kernels.csr_layer(
                in_tptr,
                in_idx,
                rowptr,
                cols,
                weights,
                bias,
                *fixed,
                state,
                out_tptr,
                out_idx,
                kc,
                clock=clock,
                seen=seen,
            )

        return call, width, fresh and _may_start_lazily(mode, v_init, thr)
    return call, width, False


def _sample_kernel(layer, mode, dtype, rows) -> tuple | None:
    """``(kernel, before, after, lazy)``: the compiled kernel that
    ``_bound_layer``'s call of ``layer`` on path ``mode`` (event or clock)
    in ``dtype`` runs through ``kernels.run_samples``, with the arguments
    it passes it, so that ``kernel(in_tptr, in_idx, *before, bias, *after,
    state, out_tptr, out_idx, counts, first, stop)`` is that call for the
    samples ``first .. stop - 1`` (``settle`` False, a fresh run, a
    propagator of ``rows`` rows); ``lazy``: the run may start lazily (as
    ``_bound_layer``'s), given marks ``[B, words]`` uint64 in place of
    ``after[-1]``. None for the dense path (its call is ``_bound_layer``'s).
    For a caller of one sample that keeps it (no wrapper between it and
    the compiled code)."""
    if mode not in ("event", "clock"):
        return None
    made = _made(layer)
    constants = _constants(made, layer.neuron, dtype, rows)
    table, thr, reset_code, v_reset, refractory, has_current, has_refractory, width = constants
    choices = kev._choices(mode == "clock", has_current, has_refractory, reset_code)
    v_init = layer.v_init_row(dtype)
    after = (table, thr, v_reset, refractory, v_init, False)
    if layer.kind == "dense":
        return kev.dense_kernel(*choices), (layer.weight_rows,), after, False
    if layer.kind == "conv":
        w_st, pre_rows, flat_runs = _conv_tables(made, layer, dtype)
        before = (kev._NO_ROWPTR, kev._NO_COLS, w_st, layer.geom, pre_rows, flat_runs)
        return kev.sparse_kernel(kev.CONV, *choices), before, (*after, 0.0, 0.0, 0.0, kev._NO_MARKS), False
    two_phase_at = kev.default_two_phase_at(layer.n_out, width, dtype)
    after = (*after, two_phase_at, kev.SWEEP_AT, kev.LAZY_START_BELOW, kev._NO_MARKS)
    before = (layer.rowptr, layer.cols, layer.weights, kev._NO_GEOM, *kev._NO_TABLES)
    return kev.sparse_kernel(kev.CSR, *choices), before, after, _may_start_lazily(mode, v_init, thr)


def _may_start_lazily(mode, v_init, threshold) -> bool:
    """Whether a fresh run of a CSR layer on path ``mode`` from ``v_init``
    may start lazily (``kernels.event.sparse_kernel``'s promise: the event
    path, every initial membrane below ``threshold``)."""
    return mode == "event" and len(v_init) > 0 and bool(v_init.max() < threshold)


def _largest(column) -> int:
    """The largest of an int64 array ``[B]`` (0 if empty); a few samples by
    Python's ``max`` over its list (a numpy reduction costs ~2 us, much of a
    batch-1 call's share)."""
    n = len(column)
    if n == 1:
        return int(column[0])
    return max(column.tolist(), default=0) if n <= 64 else int(column.max(initial=0))


# what a layer's runs rebuild otherwise, by layer (kept out of the layers themselves, so that no
# copy or pickle of a layer carries it; gone with the layer): see _constants and _conv_tables
_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _made(layer) -> dict:
    """What is kept for ``layer`` (a new dict at first)."""
    made = _MADE.get(layer)
    if made is None:
        made = _MADE[layer] = {}
    return made


def _constants(made, neuron, dtype, rows) -> tuple:
    """The arguments of a layer's kernels that depend only on its ``neuron``
    model, ``dtype`` and the propagator's ``rows`` (0: the dense path's
    clock sweep, no table), and last the state width; remembered in
    ``made`` (:func:`_made`) for the last neuron, dtype and rows the layer
    ran with (a neuron is immutable: the same object, the same values)."""
    cached = made.get("constants")
    if cached is not None and cached[0] is neuron and cached[1] is dtype and cached[2] == rows:
        return cached[3]
    thr, v_reset = neuron.constants(dtype)
    flags = (neuron.refractory, neuron.has_current, neuron.refractory > 0, _state_width(neuron))
    if rows == 0:
        args = (dtype(neuron.alpha or 0.0), dtype(neuron.beta), thr, neuron.reset_code, v_reset, *flags)
    else:
        args = (neuron.propagator(rows, dtype), thr, neuron.reset_code, v_reset, *flags)
    made["constants"] = (neuron, dtype, rows, args)
    return args


def _conv_tables(made, layer, dtype) -> tuple:
    """``kernels.event.conv_tables`` of a conv layer in ``dtype``, built
    once per dtype and kept in ``made`` (:func:`_made`) with the geometry
    and flat weights they were built from: a layer given new ones (new
    arrays: a layer's are read-only) builds them again."""
    geom, weights = layer.geom, layer.kernel_weights
    cache = made.setdefault("conv", {})
    made = cache.get(dtype)
    if made is None or made[0] is not geom or made[1] is not weights:
        made = cache[dtype] = (geom, weights, conv_tables(geom, weights, dtype))
    return made[2]


def _run_maxpool(layer, source, carried=None):
    """The gate over all steps (``kernels.maxpool_layer``); returns
    ``(trains, counts, carry)``, ``carry`` the spike and window counts that
    a next chunk of the run continues from (``carried``: those an earlier
    chunk left, not mutated). Output buffer: the
    largest input spike count of a sample first, which suffices when windows
    do not overlap (each output spike takes an input spike of its own); a
    batch that overflows it runs again with the bound that always suffices,
    ``ceil(kh / sy) * ceil(kw / sx)`` outputs per input spike (the windows
    containing an input), at most one per window and step."""
    batch, n_steps = source.batch_size, source.n_steps
    kh, kw = layer.kernel_size
    sy, sx = layer.stride
    most = int(source.per_sample.max(initial=0))
    bound = min(most * -(-kh // sy) * -(-kw // sx), layer.n_out * n_steps)
    out_tptr = np.empty((batch, n_steps + 1), np.int64)
    kc = np.zeros((batch, 4), np.int64)
    for cap in (min(most, bound), bound):
        out_idx = np.empty((batch, max(1, cap)), np.int32)
        kc[:] = 0
        if carried is None:
            carry = np.zeros((batch, layer.n_in), np.int32), np.zeros((batch, layer.n_out), np.int32)
        else:
            carry = carried[0].copy(), carried[1].copy()
        kernels.maxpool_layer(source.tptr, source.idx, layer.geom, *carry, out_tptr, out_idx, kc)
        if not kc[:, 3].any():
            break
    assert not kc[:, 3].any(), "max-pool output buffer overflowed its bound"
    used = int(kc[:, 2].max(initial=0))
    return SpikeTrains(out_tptr, out_idx[:, :used].copy(), layer.n_out), kc, carry


def _dense_currents(source, layer, dtype) -> np.ndarray:
    """Synaptic input of every step, ``[B, T, n_out]`` in the state dtype (so
    sums round like the reference's): one GEMM."""
    batch, n_steps = source.batch_size, source.n_steps
    raster = np.zeros((batch * n_steps, layer.n_in), dtype)
    t, s, i = source.to_events().T
    raster[s * n_steps + t, i] = 1.0
    return (raster @ layer.dense_rows(dtype)).reshape(batch, n_steps, layer.n_out)


_THREADED_DRIVE_FROM = 64  # samples from which _vecmat runs on threads (a sample takes a few us)


def _vecmat(x, layer) -> np.ndarray:
    """``x @ W`` for analog ``x[B, n_in]``, float64, by the kernels (one
    scatter per non-zero input through the layer's own connectivity;
    samples in chunks on threads for a large batch, each computed alone)."""
    x = np.ascontiguousarray(x, np.float64)
    drive = np.empty((len(x), layer.n_out))
    kernel, args = _kept_drive_call(layer)
    if len(x) < _THREADED_DRIVE_FROM:
        kernel(x, *args, drive)
    else:
        kernels.run_samples(lambda first, stop: kernel(x[first:stop], *args, drive[first:stop]), len(x))
    return drive


def _kept_drive_call(layer) -> tuple:
    """:func:`drive_call` of ``layer``, kept for it (:func:`_made`) with the
    arrays it was made from: a layer given new ones (new arrays: a layer's
    are read-only) makes it again."""
    if layer.kind == "dense":
        arrays = (layer.weight_rows,)
    elif layer.kind == "conv":
        arrays = (layer.kernel_weights, layer.geom)
    else:
        arrays = (layer.weights, layer.rowptr, layer.cols)
    made = _made(layer)
    kept = made.get("drive")
    if kept is None or not all(map(operator.is_, kept[0], arrays)):
        kept = made["drive"] = (arrays, drive_call(layer))
    return kept[1]


def drive_call(layer) -> tuple:
    """``(kernel, args)``: ``kernel(x, *args, drive)`` writes ``drive = x @
    W`` of a dense, conv or CSR ``layer`` (``x`` ``[B, n_in]`` C-contiguous
    float64, ``drive`` ``[B, n_out]`` float64), as :func:`_vecmat` computes
    it; for callers that make it once and call it often."""
    if layer.kind == "dense":
        return kernels.bound_drive(kernels.DENSE, layer.weight_rows)
    if layer.kind == "conv":
        return kernels.bound_drive(kernels.CONV, layer.kernel_weights, layer.geom)
    return kernels.bound_drive(kernels.CSR, layer.weights, rowptr=layer.rowptr, cols=layer.cols)


def _synops(source, fan_out) -> np.ndarray:
    """Input spikes x fan-out, per sample (the count of the non-kernel paths)."""
    return np.array(
        [fan_out[source.idx[b, : source.tptr[b, -1]]].sum() for b in range(source.batch_size)], np.int64
    )


def _choose_mode(layer, source, n_steps, dtype, driven) -> str:
    """Event, clock or dense path, from the input activity measured for this
    run and the cost model above (per sample, one core); ``driven``: some
    bias is positive."""
    if layer.kind == "csr" and layer.n_in:
        return _choose_csr_mode(layer, source, n_steps, dtype, driven)
    batch = source.batch_size
    return _choose_by_count(layer, source.total / batch, batch, n_steps, dtype, driven)


def _choose_by_count(layer, events, batch, n_steps, dtype, driven) -> str:
    """:func:`_choose_mode` of a dense or conv layer, which reads the input
    spikes per sample ``events`` and the ``batch`` size only."""
    synops = events * layer.n_synapses / layer.n_in
    n = layer.n_out
    touched = min(synops, min(n_steps, events) * n)
    per_update = _NS_PER_EVENT_UPDATE[layer.kind][driven]
    event = synops * _NS_PER_SYNOP["event"][layer.kind] + touched * per_update
    clock = synops * _NS_PER_SYNOP["clock"][layer.kind] + n_steps * n * _NS_PER_CLOCK_UPDATE
    return _cheapest(event, clock, _dense_cost(layer, batch, n_steps, dtype))


def choice_cuts(layer, n_steps, dtype, driven) -> tuple[int, int]:
    """``(e, c)``: :func:`_choose_mode` of a dense or conv ``layer`` on one
    sample of ``n_steps`` with ``total`` input spikes is the event path for
    ``total <= e``, clock for ``e < total <= c`` and dense above (-1: never
    event; ``c == e``: never clock). The event path's cost less the
    clock's, the event path's less the dense's and the clock's less the
    dense's do not decrease with the spikes (a synaptic operation costs the
    event path at least what it costs the clock path), so each path's counts
    are one interval, in that order: found by bisection over ``0 .. n_in x
    n_steps``, for a caller that chooses again and again."""

    def last(holds) -> int:  # the largest count in -1 .. most for which ``holds`` (true up to it)
        low, high = -1, layer.n_in * n_steps
        if holds(high):
            return high
        while high - low > 1:  # holds(low) (or low == -1), not holds(high)
            mid = (low + high) // 2
            low, high = (mid, high) if holds(mid) else (low, mid)
        return low

    def mode(total):
        return _choose_by_count(layer, float(total), 1, n_steps, dtype, driven)

    return last(lambda total: mode(total) == "event"), last(lambda total: mode(total) != "dense")


def _dense_cost(layer, batch, n_steps, dtype) -> float:
    """The dense path's cost for ``batch`` samples: the GEMM (less efficient
    with few rows), then a sweep."""
    gemm_efficiency = min(1.0, batch * n_steps / 256)
    gemm = n_steps * layer.n_in * layer.n_out * _NS_PER_MAC[dtype] / gemm_efficiency
    return gemm + n_steps * layer.n_out * _NS_PER_CLOCK_UPDATE


def _cheapest(event, clock, dense) -> str:
    """The path of the least cost; ties go to the first (event, then clock)."""
    if event <= clock and event <= dense:
        return "event"
    return "clock" if clock <= dense else "dense"


def _step_synops(source, fan_out) -> np.ndarray:
    """Synaptic operations of every step of every sample, ``[B, T]`` float64:
    the fan-outs of the step's input spikes summed, in int64 (exact; the
    fan-outs of the spikes alone are read, not all the layer's converted)."""
    tptr, idx = source.tptr, source.idx
    if source.batch_size == 1:
        spikes = int(tptr[0, -1])
        total = np.zeros(spikes + 1, np.int64)
        np.cumsum(fan_out[idx[0, :spikes]], out=total[1:])
        return np.diff(total[tptr[0]]).astype(np.float64)[None]
    # all samples at once: the padding past a sample's spikes (any values) read as input 0, past its sums
    valid = np.arange(idx.shape[1]) < tptr[:, -1:]
    total = np.zeros((len(idx), idx.shape[1] + 1), np.int64)
    np.cumsum(fan_out[np.where(valid, idx, 0)], axis=1, out=total[:, 1:])
    return np.diff(np.take_along_axis(total, tptr, axis=1), axis=1).astype(np.float64)


def _csr_choice_constants(layer, dtype) -> tuple:
    """What :func:`_choose_csr_mode` reads of ``layer`` besides the input:
    ``(costs, two-phase bound, (sweep bound, its hold bound), undriven unless
    driven, largest fan-out)``, the bounds in synaptic operations per step;
    kept in :func:`_made` for the last neuron (immutable), dtype and size it
    was made for (a layer's connectivity does not change)."""
    neuron, n = layer.neuron, layer.n_out
    made = _made(layer)
    kept = made.get("csr_choice")
    if kept is not None and kept[0] is neuron and kept[1] is dtype and kept[2] == n:
        return kept[3]
    width = _state_width(neuron)
    in_cache = kev.state_in_cache(n, width, dtype)
    two_phase_at = kev.default_two_phase_at(n, width, dtype)
    decay = float(neuron.propagator(1, np.float64)[1, 0])
    undriven = not neuron.has_current and not neuron.refractory and 0 <= decay <= 1
    max_fan_out = float(np.max(layer.fan_out, initial=0))
    sweep_at = kev.SWEEP_AT * n
    sweep_bounds = (sweep_at, kev.SWEEP_HOLD * sweep_at)  # the kernel's arithmetic
    constants = (_CSR_COSTS[in_cache], two_phase_at * n, sweep_bounds, undriven, max_fan_out)
    made["csr_choice"] = (neuron, dtype, n, constants)
    return constants


def _sweep_steps(per_step, sweep_at, hold_at):
    """The steps an undriven CSR layer's event path runs as sweeps
    (``kernels.event``), from the synaptic operations ``per_step`` ``[B,
    T]``: those from ``sweep_at`` on, and those from ``hold_at`` on whose
    step before swept (taken as every neuron at the step before; a step
    that touches every neuron otherwise is not modelled); bool ``[B, T]``."""
    sweep = per_step >= sweep_at
    held = (per_step >= hold_at) & ~sweep
    # a held step sweeps if the last step before it that is not held swept (a run does not start held)
    last = np.maximum.accumulate(np.where(held, -1, np.arange(per_step.shape[1])), axis=1)
    return sweep | held & (last >= 0) & np.take_along_axis(sweep, np.maximum(last, 0), axis=1)


def _choose_csr_mode(layer, source, n_steps, dtype, driven) -> str:
    """Event, clock or dense path of a CSR layer: the event path's cost is
    that of the path its kernel takes at each step (direct, two phases or a
    sweep: ``kernels.event``), from each step's synaptic operations in this
    run (a step sweeps from the sweep bound on, or from its hold bound while
    the steps before it sweep); averaged over the samples. A sweep step is
    costed as a clock step and an undriven layer's set-up as the clock
    path's, so a run whose every step sweeps ties with the clock path, and
    ties go to the event path."""
    n = layer.n_out
    c, two_at, (sweep_at, hold_at), undriven, max_fan_out = _csr_choice_constants(layer, dtype)
    undriven = undriven and not driven
    batch = source.batch_size
    dense = _dense_cost(layer, batch, n_steps, dtype)
    if undriven:
        # first a bound: a step's synaptic operations are at most its spikes times the largest fan-out. If
        # every step is direct by it and the event path is the cheapest with the bound's synaptic operations,
        # it is with the real ones (the event path's cost grows with them at least as fast as the clock
        # path's when it is the dearer per operation; the dense path's does not depend on them): the same
        # choice, without reading the spikes' fan-outs (a sparse run's choice then costs little)
        if kernels.busiest_step(source.tptr) * max_fan_out < min(two_at, sweep_at):
            most = source.total * max_fan_out / batch
            clock_most = c["clock"] * most + c["clock_sweep"] * n_steps * n
            if c["direct"] * most <= min(clock_most, dense):
                return "event"
    per_step = _step_synops(source, layer.fan_out)  # [B, T]
    total = per_step.sum()  # (integers below 2**53: exact, in any order)
    synops = total / batch
    if per_step.max(initial=0.0) < (two_at if not undriven else min(two_at, sweep_at)):
        # every step direct: the sums below with the other two sets empty (their terms 0.0)
        event = c["direct"] * total / batch
    else:
        # an undriven layer's busiest steps are sweeps: the clock path's steps
        sweep = _sweep_steps(per_step, sweep_at, hold_at) if undriven else np.zeros(per_step.shape, bool)
        two = (per_step >= two_at) & ~sweep
        direct = ~(two | sweep)
        event = (
            c["direct"] * per_step[direct].sum()
            + c["two_phase"] * per_step[two].sum()
            + c["clock"] * per_step[sweep].sum()
            + c["clock_sweep"] * n * np.count_nonzero(sweep)
        ) / batch
    # an undriven layer's set-up (one pass over the neurons, one back after a run of sweeps) is the
    # clock path's; a calendar is made once, and every touched neuron rescheduled
    if not undriven:
        touched = n * -np.expm1(-per_step / n)
        event += c["setup"] * n + c["calendar"] * touched.sum() / batch
    clock = c["clock"] * synops + c["clock_sweep"] * n_steps * n
    return _cheapest(event, clock, dense)


def _choose_driven_mode(layer, bias, n_steps) -> str:
    """Event or clock path for a layer driven by a constant input ``bias``
    ``[B, n]`` alone (no input spikes): event-driven, each neuron with a
    positive drive is scheduled and rescheduled at each of its spikes."""
    positive = bias > 0
    scheduled = np.count_nonzero(positive) / len(bias)
    per_update = _NS_PER_EVENT_UPDATE[layer.kind][True]
    clock_ns = n_steps * layer.n_out * _NS_PER_CLOCK_UPDATE
    if scheduled * per_update > clock_ns:  # the spikes add to the event path's cost: no need to count them
        return "clock"
    drive = float(np.sum(bias, where=positive))
    spikes = min(drive / len(bias) / layer.neuron.threshold * n_steps, n_steps * layer.n_out)
    event_ns = (scheduled + spikes) * per_update
    return "event" if event_ns <= clock_ns else "clock"
