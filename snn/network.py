"""Networks: a feed-forward stack of layers, the short way to write a chain
of populations. A stack runs as its graph (:meth:`snn.Graph.from_network`,
built once and kept while its layers are unchanged), on the graph's
schedule, so stacks and graphs share one runner, one result type and one
meaning of ``mode``; this module also holds the layer runner and the cost
model that schedule uses for populations run as layers."""

from __future__ import annotations

import dataclasses
import operator
import time

import numpy as np

import snn_kernels as kernels

from ._validate import numba_threads, real_array, run_extent
from .conv import Flatten, MaxPool2d
from .layers import Layer
from .reference import run_reference
from .result import RunResult
from .spiketrains import SpikeTrains

BACKENDS = ("event", "reference")
DTYPES = (np.float32, np.float64)

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
# direct delivery or two phases.
# Its costs, measured with benchmarks/sparse_crossover.py (fixed in-degree 100,
# one thread; figures in the commit that set them), by whether the state and the
# input sums fit in cache (kernels.event.TWO_PHASE_STATE_BYTES: 100k neurons
# do, 1M do not): ns per synaptic operation on the direct / two-phase / clock
# path, ns per neuron of a clock sweep, ns per touched neuron
# of a layer that keeps a calendar (driven), ns per neuron per run (set-up,
# the first calendar, settling; the clock path's is in its sweep).
_CSR_COSTS = {
    True: dict(direct=10.0, two_phase=10.0, clock=7.8, clock_sweep=1.0, calendar=20.0, setup=3.0),
    False: dict(direct=33.0, two_phase=33.0, clock=17.0, clock_sweep=1.4, calendar=40.0, setup=13.0),
}


class Network:
    """A stack of layers; spikes of layer ``l`` at step ``t`` reach layer
    ``l + 1`` in the same step.

    Parameters
    ----------
    layers : the layers, ``layers[l].n_out == layers[l + 1].n_in``.
    dtype : state precision, ``np.float64`` (default: the event and reference
        paths then agree except within ~1e-12 of threshold) or ``np.float32``
        (half the memory traffic). Weights are always stored as float32.
    """

    def __init__(self, layers: list[Layer], dtype=np.float64):
        layers = [layer for layer in layers if not isinstance(layer, Flatten)]
        if not layers:
            raise ValueError("a Network needs at least one layer")
        for k, layer in enumerate(layers):
            if not isinstance(layer, (Layer, MaxPool2d)):
                raise TypeError(f"layer {k} is a {type(layer).__name__}, not a snn layer")
        names = [layer.name for layer in layers if layer.name]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique (results address layers by name), got {names}")
        for k in range(len(layers) - 1):
            if layers[k].n_out != layers[k + 1].n_in:
                raise ValueError(
                    f"layers do not chain: layer {k} has {layers[k].n_out} outputs but layer "
                    f"{k + 1} expects {layers[k + 1].n_in} inputs"
                )
        dtype = np.dtype(dtype).type
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.layers = layers
        self.dtype = dtype
        self._graph = None  # (what it was built from, the graph): see graph()

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in

    def layer_name(self, k: int) -> str:
        return self.layers[k].name or f"{k}:{type(self.layers[k]).__name__}"

    def graph(self):
        """The stack as a :class:`snn.Graph` (:meth:`snn.Graph.from_network`:
        an input population, then one population per layer, named
        :meth:`layer_name`), which :meth:`run` runs. Built once and kept
        while the layers are the same objects with the same attributes
        (their arrays are read-only: assigning a new bias or weight makes a
        new graph)."""
        from .graph import Graph

        key = [self.dtype]
        for layer in self.layers:
            key += (layer, *layer.__dict__.values())
        cached = getattr(self, "_graph", None)
        if cached is not None and len(cached[0]) == len(key) and all(map(operator.is_, cached[0], key)):
            return self._graph[1]
        self._graph = None  # the old graph's arrays are freed before the new ones are made
        self._graph = (key, Graph.from_network(self))
        return self._graph[1]

    def __getstate__(self):  # pickles and copies leave the graph out: it is built again when needed
        return {k: v for k, v in self.__dict__.items() if k != "_graph"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._graph = None

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Network(dtype={np.dtype(self.dtype).name}, [\n  {inner}])"

    def prepare(self) -> float:
        """Compile (or load from the cache) the kernels this network's runs
        can use; returns the seconds it took. For each layer, those of the
        paths its ``mode`` allows (``"auto"``: event, clock and dense), and
        for a first layer with neurons the multiply-once of a constant
        analog input; each kernel is specialised to the layer's projection
        kind, neuron model and reset (``kernels._jit``), so nothing else is
        compiled. The samples of a batch run on threads over the same
        kernels, so one sample is enough. Without it, a run compiles what it
        needs when it first needs it (as does a path that ``run(mode=...)``
        forces on a layer whose own ``mode`` excludes it, or time-varying
        analog input to a first layer that cannot run ``"dense"``)."""
        start = time.perf_counter()
        n_steps = 2
        source = SpikeTrains.from_raster(np.ones((n_steps, 1, self.n_in), np.uint8))
        for k, layer in enumerate(self.layers):
            if layer.kind == "maxpool":
                source, _, _ = _run_maxpool(layer, source)
                continue
            bias, _ = layer.bias_row(self.dtype)
            for mode in ("event", "clock", "dense") if layer.mode == "auto" else (layer.mode,):
                out, _, _ = _run_layer(
                    layer, source, bias, None, mode, n_steps, self.dtype, settle=k == len(self.layers) - 1
                )
            source = out
        if self.layers[0].kind != "maxpool":
            self.run(analog=np.ones((1, self.n_in)), T=n_steps)
        return time.perf_counter() - start

    def run(
        self,
        spikes=None,
        *,
        events=None,
        analog=None,
        T: int | None = None,
        batch_size: int | None = None,
        backend: str = "event",
        mode: str | None = None,
        record_v=None,
        record_i=None,
        progress=False,
        n_threads: int | None = None,
    ) -> RunResult:
        """Run the network on one kind of input, as its graph
        (:meth:`graph`); the result lists the layers (not the input).

        spikes : 0/1 array ``[T, B, n_in]`` (bool or numbers exactly 0/1), or
            :class:`snn.SpikeTrains` (e.g. from ``snn.events.bin_events``:
            no raster is built).
        events : integer array ``[E, 3]`` of ``(t, sample, index)`` rows, with
            ``T`` and ``batch_size``.
        analog : real array ``[B, n_in]``, constant over ``T`` steps (the
            first layer multiplies it once and uses it as a bias), or
            ``[T, B, n_in]`` varying over time (clock-driven first layer).
        backend : ``"event"`` or ``"reference"`` (the clock-driven oracle).
        mode : force ``"event"``, ``"clock"`` or ``"dense"`` for every layer
            (see :class:`snn.layers.Layer`; default: each layer's own
            ``mode``, ``"auto"`` choosing from measured activity).
        record_v, record_i : ``{layer index or name: neuron indices}``:
            membrane (synaptic current) of these neurons at the end of every
            step, read with ``result.v(layer)`` / ``result.i(layer)``; a
            recorded layer is stepped (the graph kernel) instead of run over
            all steps at once.
        progress : a progress bar (tqdm); ``"auto"``: for long runs.
        n_threads : cores used over the samples (default: all).
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if mode not in (None, "event", "clock", "dense", "auto"):
            raise ValueError(f"mode must be 'event', 'clock', 'dense', 'auto' or None, got {mode!r}")
        source, analog_x, n_steps = self._inputs(spikes, events, analog, T, batch_size)
        batch = source.batch_size if source is not None else analog_x.shape[-2]
        run_extent(n_steps, batch, self.dtype)
        for layer in self.layers:  # parameters the state precision cannot hold are refused
            if layer.kind != "maxpool":
                layer.neuron.constants(self.dtype)
                layer.v_init_row(self.dtype)
                layer.bias_row(self.dtype)
        record = {key: self._recorded(v) for key, v in (("v", record_v), ("i", record_i))}
        with numba_threads(n_threads):
            if backend == "reference" and not any(record.values()):
                return run_reference(self, source, analog_x, n_steps)
            return self._run_graph(source, analog_x, n_steps, backend, mode, record, progress)

    def _inputs(self, spikes, events, analog, T, batch_size):
        given = [x is not None for x in (spikes, events, analog)]
        if sum(given) != 1:
            raise ValueError("give exactly one of spikes=, events= or analog=")
        if T is not None and (isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0):
            raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
        if spikes is not None:
            trains = spikes.checked() if isinstance(spikes, SpikeTrains) else SpikeTrains.from_raster(spikes)
            if T is not None and T != trains.n_steps:
                raise ValueError(f"T={T} but spikes have {trains.n_steps} steps")
            self._check_width(trains.n, "spikes")
            return trains, None, trains.n_steps
        if events is not None:
            if T is None or batch_size is None:
                raise ValueError("events= needs T= and batch_size=")
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, (int, np.integer))
                or batch_size <= 0
            ):
                raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
            run_extent(T, batch_size, self.dtype)  # before anything is allocated for them
            return SpikeTrains.from_events(events, T, batch_size, self.n_in), None, T
        if self.layers[0].kind == "maxpool":
            raise ValueError("analog input needs a layer with neurons first; MaxPool2d gates spikes only")
        x = real_array("analog", analog)
        if self.dtype != np.float64:
            real_array("analog", x, self.dtype)  # refuses values the state precision cannot hold
        self._check_width(x.shape[-1] if x.ndim else 0, "analog")
        if x.ndim == 2:
            if T is None:
                raise ValueError("constant analog input [B, n_in] needs T=")
            return None, x, T
        if x.ndim == 3:
            if T is not None and T != x.shape[0]:
                raise ValueError(f"T={T} but analog input has {x.shape[0]} steps")
            return None, x, x.shape[0]
        raise ValueError(f"analog must be [B, n_in] or [T, B, n_in], got shape {x.shape}")

    def _check_width(self, n, what):
        if n != self.n_in:
            raise ValueError(f"{what} has {n} inputs per sample but the first layer expects {self.n_in}")

    def _recorded(self, asked) -> dict:
        """``record_v`` / ``record_i`` keyed by layer name."""
        out = {}
        for key, idx in dict(asked or {}).items():
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                if not -len(self.layers) <= key < len(self.layers):
                    raise ValueError(f"no layer {key}: the network has {len(self.layers)}")
                key = self.layer_name(int(key) % len(self.layers))
            out[key] = idx
        return out

    def _run_graph(self, source, analog_x, n_steps, backend, mode, record, progress):
        """The run as the graph's (:meth:`graph`): analog input becomes the
        first layer's drive (multiplied once by its weights when constant,
        each step's currents when it varies), counted as MACs."""
        graph = self.graph()
        first, name = self.layers[0], self.layer_name(0)
        batch = source.batch_size if source is not None else analog_x.shape[-2]
        macs, drive = np.zeros(batch, np.int64), {}
        if analog_x is not None:
            nonzero = analog_x != 0
            macs = (nonzero * first.fan_out).reshape(-1, batch, first.n_in).sum(axis=(0, 2))
            if analog_x.ndim == 2:  # constant: multiplied once, then a bias
                drive[name] = _vecmat(analog_x, first)
            else:  # the currents of every step, in the state precision
                drive[name] = analog_x.astype(self.dtype) @ first.dense_rows(self.dtype)
            source = SpikeTrains.empty(n_steps, batch, self.n_in)
        recorded = graph._record(record["v"], "v") + graph._record(record["i"], "i")
        if analog_x is not None and analog_x.ndim == 3 and any(p.name == name for p, _, _ in recorded):
            raise ValueError(
                f"layer {name!r} has a drive over time (analog [T, B, n]), which only a layer run over "
                "all steps takes; recording steps it: record another layer, or give analog [B, n]"
            )
        inputs = {graph.populations[0].name: source}  # the stack checked its input and its parameters
        result = graph._run(n_steps, inputs, batch, drive, recorded, 0, backend, mode, progress)
        counts = result.counts[1:]  # the input population is not a layer
        counts[0] = dataclasses.replace(counts[0], macs=macs)
        return RunResult(
            result.trains[1:],
            counts,
            (lambda: result.membrane) if self.layers[-1].kind != "maxpool" else None,
            result.backend,
            names=result.names[1:],
            recorded=result.recorded,
            recorded_i=result.recorded_i,
            seconds=result.seconds,
        )


def _state_width(neuron) -> int:
    return 4 if (neuron.has_current or neuron.refractory) else 2


def _run_layer(layer, source, bias, currents, mode, n_steps, dtype, settle, carried=None, elapsed=0):
    """One layer over the batch; retries with a larger output buffer if needed.
    ``carried``: the state an earlier chunk of the run left (not mutated;
    steps counted from this chunk's start, see ``kernels.event``), ``elapsed``
    the steps run before this chunk; returns ``(trains, state, counts)``."""
    batch = source.batch_size
    neuron = layer.neuron
    width = 4 if mode == "dense" else _state_width(neuron)
    if mode == "dense" and currents is None:
        currents = _dense_currents(source, layer, dtype)
    # output buffer: a guess, and the busiest sample's spikes per step of this layer's last run
    # (kept by a graph's layer: a layer firing above the guess would otherwise run twice every time)
    seen = getattr(layer, "spikes_per_step", 0.0)
    cap = min(
        n_steps * layer.n_out,
        max(
            1024,
            4 * int(source.per_sample.max(initial=0)),
            n_steps * layer.n_out // 8,
            int(1.25 * seen * n_steps),
        ),
    )
    v_init = layer.v_init_row(dtype) if carried is None else np.zeros(0, dtype)
    thr, v_reset = neuron.constants(dtype)
    while True:
        state = np.empty((batch, layer.n_out, width), dtype) if carried is None else carried.copy()
        out_tptr = np.empty((batch, n_steps + 1), np.int64)
        out_idx = np.empty((batch, cap), np.int32)
        kc = np.zeros((batch, 4), np.int64)
        if mode == "dense":
            alpha = dtype(neuron.alpha or 0.0)
            kernels.clock_layer(
                currents,
                bias,
                alpha,
                dtype(neuron.beta),
                thr,
                neuron.reset_code,
                v_reset,
                neuron.refractory,
                v_init,
                neuron.has_current,
                state,
                out_tptr,
                out_idx,
                kc,
            )
        else:
            table = neuron.propagator(elapsed + n_steps, dtype)
            common = (
                bias,
                table,
                thr,
                neuron.reset_code,
                v_reset,
                neuron.refractory,
                v_init,
                neuron.has_current,
                neuron.refractory > 0,
                settle,
                state,
                out_tptr,
                out_idx,
                kc,
            )
            clock = mode == "clock"
            if layer.kind == "dense":
                kernels.dense_layer(source.tptr, source.idx, layer.weight_rows, *common, clock=clock)
            elif layer.kind == "conv":
                kernels.conv_layer(
                    source.tptr, source.idx, layer.geom, layer.kernel_weights, *common, clock=clock
                )
            else:
                kernels.csr_layer(
                    source.tptr, source.idx, layer.rowptr, layer.cols, layer.weights, *common, clock=clock
                )
        if not kc[:, 3].any():
            break
        cap = min(cap * 4, n_steps * layer.n_out)
    used = int(kc[:, 2].max(initial=0))
    if hasattr(layer, "spikes_per_step"):
        layer.spikes_per_step = used / n_steps
    return SpikeTrains(out_tptr, out_idx[:, :used].copy(), layer.n_out), state, kc


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


def _vecmat(x, layer) -> np.ndarray:
    """``x @ W`` for analog ``x[B, n_in]``, float64, by the kernels (one
    scatter per non-zero input through the layer's own connectivity)."""
    x = np.ascontiguousarray(x, np.float64)
    drive = np.empty((len(x), layer.n_out))
    if layer.kind == "dense":
        kernels.dense_drive(x, layer.weight_rows, drive)
    elif layer.kind == "conv":
        kernels.conv_drive(x, layer.geom, layer.kernel_weights, drive)
    else:
        kernels.csr_drive(x, layer.rowptr, layer.cols, layer.weights, drive)
    return drive


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
    events = source.total / source.batch_size
    synops = events * layer.n_synapses / layer.n_in
    n = layer.n_out
    touched = min(synops, min(n_steps, events) * n)
    per_update = _NS_PER_EVENT_UPDATE[layer.kind][driven]
    cost = {
        "event": synops * _NS_PER_SYNOP["event"][layer.kind] + touched * per_update,
        "clock": synops * _NS_PER_SYNOP["clock"][layer.kind] + n_steps * n * _NS_PER_CLOCK_UPDATE,
    }
    gemm_efficiency = min(1.0, source.batch_size * n_steps / 256)  # GEMM needs rows to be efficient
    cost["dense"] = (
        n_steps * layer.n_in * n * _NS_PER_MAC[dtype] / gemm_efficiency + n_steps * n * _NS_PER_CLOCK_UPDATE
    )
    return min(cost, key=cost.get)  # ties go to the first: event


def _step_synops(source, fan_out) -> np.ndarray:
    """Synaptic operations of every step of every sample, ``[B, T]`` float64:
    the fan-outs of the step's input spikes summed."""
    out = np.zeros((source.batch_size, source.n_steps))
    for b in range(source.batch_size):
        tptr = source.tptr[b]
        if tptr[-1] == 0:
            continue
        total = np.zeros(int(tptr[-1]) + 1)
        np.cumsum(fan_out[source.idx[b, : tptr[-1]]], out=total[1:])
        out[b] = total[tptr[1:]] - total[tptr[:-1]]
    return out


def _choose_csr_mode(layer, source, n_steps, dtype, driven) -> str:
    """Event, clock or dense path of a CSR layer: the event path's cost is
    that of the path its kernel takes at each step (direct or two phases:
    ``kernels.event``), from each step's synaptic operations in this run;
    averaged over the samples."""
    from snn_kernels import event as kev

    n = layer.n_out
    neuron = layer.neuron
    width = _state_width(neuron)
    in_cache = n * (width + 1) * np.dtype(dtype).itemsize <= kev.TWO_PHASE_STATE_BYTES
    c = _CSR_COSTS[in_cache]
    two_phase_at = kev.TWO_PHASE_AT if in_cache else kev.TWO_PHASE_AT_OUT_OF_CACHE
    decay = float(neuron.propagator(1, np.float64)[1, 0])
    undriven = not driven and not neuron.has_current and not neuron.refractory and 0 <= decay <= 1
    per_step = _step_synops(source, np.asarray(layer.fan_out, np.float64))  # [B, T]
    synops = per_step.sum() / source.batch_size
    two = per_step >= two_phase_at * n
    event = (c["direct"] * per_step[~two].sum() + c["two_phase"] * per_step[two].sum()) / source.batch_size
    event += c["setup"] * n
    if not undriven:  # a calendar: every touched neuron rescheduled
        touched = n * -np.expm1(-per_step / n)
        event += c["calendar"] * touched.sum() / source.batch_size
    cost = {"event": event, "clock": c["clock"] * synops + c["clock_sweep"] * n_steps * n}
    gemm_efficiency = min(1.0, source.batch_size * n_steps / 256)
    cost["dense"] = (
        n_steps * layer.n_in * n * _NS_PER_MAC[dtype] / gemm_efficiency + n_steps * n * _NS_PER_CLOCK_UPDATE
    )
    return min(cost, key=cost.get)  # ties go to the first: event


def _choose_driven_mode(layer, bias, n_steps) -> str:
    """Event or clock path for a layer driven by a constant input ``bias``
    ``[B, n]`` alone (no input spikes): event-driven, each neuron with a
    positive drive is scheduled and rescheduled at each of its spikes."""
    positive = bias > 0
    spikes = min(
        float(bias[positive].sum()) / len(bias) / layer.neuron.threshold * n_steps, n_steps * layer.n_out
    )
    scheduled = np.count_nonzero(positive) / len(bias)
    event_ns = (scheduled + spikes) * _NS_PER_EVENT_UPDATE[layer.kind][True]
    clock_ns = n_steps * layer.n_out * _NS_PER_CLOCK_UPDATE
    return "event" if event_ns <= clock_ns else "clock"
