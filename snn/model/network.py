"""Networks: a feed-forward stack of layers, the short way to write a chain
of populations. A stack runs as its graph (:meth:`snn.Graph.from_network`,
built once and kept while its layers are unchanged), on the graph's
schedule, so stacks and graphs share one runner, one result type and one
meaning of ``mode``."""

from __future__ import annotations

import functools
import math
import operator
import time

import numpy as np

import snn_kernels as kernels

from .._validate import DTYPES, numba_threads, real_array, run_extent
from ..run.paths import (
    _bound_layer,
    _choose_driven_mode,
    _choose_mode,
    _run_layer,
    _run_maxpool,
    _sample_kernel,
    _state_width,
    _vecmat,
    choice_cuts,
    drive_call,
    prepare_batches,
)
from ..run.reference import run_reference
from ..run.result import RunResult
from ..run.schedule import (
    _assemble,
    _final_membrane,
    _layer_bias,
    _positive,
    _run_as_layer,
    projection_synops,
    silent_trains,
)
from ..run.spiketrains import SpikeTrains
from ..run.stepped import _compiled
from .conv import Flatten, MaxPool2d
from .graph import Graph
from .layers import Layer

BACKENDS = ("event", "reference")


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
        self._one = None  # (graph, its edit count, {(T, mode): plan}): see _one_sample

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
        # the key: the state precision, the layers (by identity) and how many assignments each has had
        # (Layer.__setattr__ counts them), which changes whenever an attribute is assigned
        layers = self.layers
        cached = self._graph
        if cached is not None:
            dtype, held, edits = cached[0]
            if (
                dtype is self.dtype
                and len(held) == len(layers)
                and all(map(operator.is_, held, layers))
                and edits == [getattr(layer, "_edits", None) for layer in layers]
            ):
                return cached[1]
        self._graph = None  # the old graph's arrays are freed before the new ones are made
        for layer in layers:  # parameters the state precision cannot hold are refused
            if layer.kind != "maxpool":
                layer.neuron.constants(self.dtype)
                layer.v_init_row(self.dtype)
                layer.bias_row(self.dtype)
        graph = Graph.from_network(self)
        key = (self.dtype, tuple(layers), [getattr(layer, "_edits", None) for layer in layers])
        self._graph = (key, graph)
        return graph

    def __getstate__(self):  # pickles and copies leave the graph and plans out: made again when needed
        return {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_one")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._graph = self._one = None

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Network(dtype={np.dtype(self.dtype).name}, [\n  {inner}])"

    def prepare(self) -> float:
        """Compile (or load from the cache) the kernels this network's runs
        can use; returns the seconds it took. For each layer, those of the
        paths its ``mode`` allows (``"auto"``: event, clock and dense); for
        a first layer with neurons the multiply-once of a constant analog
        input; and what reading a run's final membrane uses (lazy neurons
        brought forward: ``kernels.settle``), and the packing of a batch's
        spikes (``kernels.pack_rows``). Each kernel is specialised to
        the layer's projection kind, neuron model and reset
        (``kernels._jit``), so nothing else is compiled. The samples of a batch run on threads over the same
        kernels, so one sample is enough. The layers' kernels are compiled
        by this process and a forked one together where the cache allows
        (``kernels.precompile``). Without it, a run compiles what it
        needs when it first needs it (as does a path that ``run(mode=...)``
        forces on a layer whose own ``mode`` excludes it, or time-varying
        analog input to a first layer that cannot run ``"dense"``)."""
        start = time.perf_counter()
        n_steps = 2
        kernels.precompile(self._prepare_jobs(n_steps))
        prepare_batches()
        source = SpikeTrains.from_raster(np.ones((n_steps, 1, self.n_in), np.uint8))
        for k, layer in enumerate(self.layers):
            if layer.kind == "maxpool":
                source, _, _ = _run_maxpool(layer, source)
                continue
            bias, _ = layer.bias_row(self.dtype)
            for mode in _modes(layer):
                out, *_ = _run_layer(
                    layer, source, bias, None, mode, n_steps, self.dtype, settle=k == len(self.layers) - 1
                )
            source = out
        if self.layers[0].kind != "maxpool":
            _ = self.run(analog=np.ones((1, self.n_in)), T=n_steps).membrane  # what reading it compiles
        return time.perf_counter() - start

    def _prepare_jobs(self, n_steps) -> list:
        """What :meth:`prepare` runs, as independent calls (each layer on
        input of its own) for ``kernels.precompile``: one per kernel (a
        layer path whose kernel an earlier one compiles, same kind, path
        and neuron flags, is left out), grouped by the helpers they share:
        the event paths (the costliest: first), the clock and dense paths,
        then a constant analog input's run and membrane readout (which
        uses some of the others: within a group the cheaper kernels come
        first, so that they are in the cache by then)."""
        groups = {"event": {}, "clock": {}}
        for k, layer in enumerate(self.layers):
            source = SpikeTrains.from_raster(np.ones((n_steps, 1, layer.n_in), np.uint8))
            if layer.kind == "maxpool":
                groups["clock"].setdefault(("maxpool",), functools.partial(_run_maxpool, layer, source))
                continue
            bias, _ = layer.bias_row(self.dtype)
            neuron = layer.neuron
            for mode in _modes(layer):
                kind = "" if mode == "dense" else layer.kind  # the dense path's kernel: any projection's
                key = (kind, mode, neuron.has_current, neuron.refractory > 0, neuron.reset_code)
                settle = k == len(self.layers) - 1
                call = functools.partial(
                    _run_layer, layer, source, bias, None, mode, n_steps, self.dtype, settle
                )
                groups["event" if mode == "event" else "clock"].setdefault(key, call)
        cheap = ("dense", "", "csr", "conv", "maxpool")  # kinds, in order of compile time
        jobs = [
            functools.partial(
                _call_all, [group[key] for key in sorted(group, key=lambda k: cheap.index(k[0]))]
            )
            for group in groups.values()
            if group
        ]
        if self.layers[0].kind != "maxpool":
            jobs.append(lambda: self.run(analog=np.ones((1, self.n_in)), T=n_steps).membrane)
        return jobs

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
            (see :class:`snn.model.layers.Layer`; default: each layer's own
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
        graph = self.graph()  # made once, checking the parameters (the state precision must hold them)
        if batch == 1 and backend == "event" and not (record_v or record_i or progress):
            # one sample of constant analog input, or of spikes in arrays that the kernels read as
            # the kept calls were compiled for (checked: C-contiguous; aligned and writeable)
            spiking = source is not None
            if analog_x.ndim == 2 if not spiking else source.tptr.flags.behaved and source.idx.flags.behaved:
                one = self._one_sample(graph, n_steps, mode, spiking)
                if one is not None:
                    with numba_threads(n_threads):
                        return one(source if spiking else analog_x)
        record = {
            "v": self._recorded(record_v) if record_v else {},
            "i": self._recorded(record_i) if record_i else {},
        }
        with numba_threads(n_threads):
            if backend == "reference" and not any(record.values()):
                result = run_reference(self, source, analog_x, n_steps)
                given = source if source is not None else SpikeTrains.empty(n_steps, batch, self.n_in)
                trains = dict(zip(result.names, result.trains, strict=True))
                trains[graph.populations[0].name] = given
                result._projection_synops = lambda: projection_synops(graph, trains, n_steps)
                return result
            return self._run_graph(graph, source, analog_x, n_steps, backend, mode, record, progress)

    def start(
        self,
        T: int | None = None,
        *,
        spikes=None,
        events=None,
        analog=None,
        batch_size: int | None = None,
        record_v=None,
        record_i=None,
        mode: str | None = None,
        n_threads: int | None = None,
        history: int | None = None,
        epoch: int | None = None,
        count_spikes=(),
        observers=(),
    ):
        """A run of ``T`` steps to advance chunk by chunk, its state carried
        (a :class:`snn.run.stack_simulation.StackSimulation`): cut anywhere,
        it computes what :meth:`run` computes. The input, as :meth:`run`
        takes it, is given here for the whole run, or fed chunk by chunk
        (``advance(steps, spikes=...)``, with ``batch_size``), or is a
        constant ``analog`` input ``[B, n_in]`` that ``advance(steps,
        analog=...)`` may change. ``T=None``: a stream without end (its
        input fed, or analog). ``history``, ``epoch``, ``count_spikes``
        (layer indices or names) and ``observers`` (which see populations
        by layer name) as :meth:`snn.Graph.start` takes them;
        the other arguments as :meth:`run`."""
        from ..run.stack_simulation import StackSimulation

        if mode not in (None, "event", "clock", "dense", "auto"):
            raise ValueError(f"mode must be 'event', 'clock', 'dense', 'auto' or None, got {mode!r}")
        given = sum(x is not None for x in (spikes, events, analog))
        if given > 1:
            raise ValueError("give at most one of spikes=, events= or analog=")
        if T is None and (spikes is not None or events is not None):
            raise ValueError("a stream (T=None) takes its spikes chunk by chunk: advance(steps, spikes=...)")
        graph = self.graph()
        source, x, macs, drive = None, None, None, {}
        if spikes is not None or events is not None:
            source, _, T = self._inputs(spikes, events, None, T, batch_size)
            batch_size = source.batch_size
        elif analog is not None:
            x = self._analog_input(analog)
            if x.ndim == 3:
                raise ValueError(
                    f"start() takes a constant analog input [B, n_in] (changed by advance(analog=...)), "
                    f"got shape {x.shape}: run() takes one that varies over time"
                )
            if batch_size is not None and batch_size != x.shape[0]:
                raise ValueError(f"batch_size={batch_size} but analog has {x.shape[0]} samples")
            batch_size = x.shape[0]
            drive[self.layer_name(0)], macs = self._analog_drive(x)
        record = {key: self._recorded(v) for key, v in (("v", record_v), ("i", record_i))}
        counted = [count_spikes] if isinstance(count_spikes, (str, int, np.integer)) else list(count_spikes)
        sim = graph.start(
            T,
            inputs=None if source is None else {graph.populations[0].name: source},
            drive=drive,
            batch_size=batch_size,
            record_v=record["v"],
            record_i=record["i"],
            mode=mode,
            n_threads=n_threads,
            history=history,
            epoch=epoch,
            count_spikes=[self._layer_key(k) for k in counted],
            observers=observers,
        )
        return StackSimulation(self, sim, x is not None, macs)

    def _layer_key(self, key) -> str:
        """The name of layer ``key`` (an index, negative allowed, or a name)."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -len(self.layers) <= key < len(self.layers):
                raise ValueError(f"no layer {key}: the network has {len(self.layers)}")
            return self.layer_name(int(key) % len(self.layers))
        names = [self.layer_name(k) for k in range(len(self.layers))]
        if key not in names:
            raise ValueError(f"no layer {key!r}: the layers are {names}")
        return key

    def _inputs(self, spikes, events, analog, T, batch_size):
        if (spikes is not None) + (events is not None) + (analog is not None) != 1:
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
        x = self._analog_input(analog)
        if x.ndim == 2:
            if T is None:
                raise ValueError("constant analog input [B, n_in] needs T=")
            return None, x, T
        if T is not None and T != x.shape[0]:
            raise ValueError(f"T={T} but analog input has {x.shape[0]} steps")
        return None, x, x.shape[0]

    def _analog_input(self, analog) -> np.ndarray:
        """``analog`` checked: a real array ``[B, n_in]`` or ``[T, B, n_in]``
        that the state precision holds."""
        if self.layers[0].kind == "maxpool":
            raise ValueError("analog input needs a layer with neurons first; MaxPool2d gates spikes only")
        if (
            type(analog) is np.ndarray
            and analog.dtype == np.float64
            and self.dtype == np.float64
            and analog.flags.c_contiguous
            and math.isfinite(np.add.reduce(analog, None))  # then all are (a NaN or inf makes the sum one)
        ):
            x = analog  # what real_array returns for it, without its conversions
        else:
            x = real_array("analog", analog)
            if self.dtype != np.float64:
                real_array("analog", x, self.dtype)  # refuses values the state precision cannot hold
        self._check_width(x.shape[-1] if x.ndim else 0, "analog")
        if x.ndim not in (2, 3):
            raise ValueError(f"analog must be [B, n_in] or [T, B, n_in], got shape {x.shape}")
        return x

    def _analog_drive(self, x) -> tuple:
        """The first layer's drive from analog input ``x`` (``[B, n_in]``:
        multiplied once, then a bias; ``[T, B, n_in]``: each step's currents,
        in the state precision) and its MACs per sample (``[B]`` int64)."""
        first = self.layers[0]
        if x.ndim == 2:
            return _vecmat(x, first), (x != 0) @ first.fan_out
        batch = x.shape[-2]
        nonzero = (x != 0).reshape(-1, first.n_in)  # [T * B, n_in]
        macs = (nonzero @ first.fan_out).reshape(-1, batch).sum(axis=0)
        return x.astype(self.dtype) @ first.dense_rows(self.dtype), macs

    def _check_width(self, n, what):
        if n != self.n_in:
            raise ValueError(f"{what} has {n} inputs per sample but the first layer expects {self.n_in}")

    def _recorded(self, asked) -> dict:
        """``record_v`` / ``record_i`` keyed by layer name."""
        return {self._layer_key(key): idx for key, idx in dict(asked or {}).items()}

    def _run_graph(self, graph, source, analog_x, n_steps, backend, mode, record, progress):
        """The run as the graph's (:meth:`graph`): analog input becomes the
        first layer's drive (multiplied once by its weights when constant,
        each step's currents when it varies), counted as MACs."""
        name = self.layer_name(0)
        batch = source.batch_size if source is not None else analog_x.shape[-2]
        macs, drive = None, {}
        if analog_x is not None and analog_x.ndim == 2 and backend == "event":
            # the MACs counted when the counts are first read (of a copy: the caller may change x)
            drive[name] = _vecmat(analog_x, self.layers[0])
            macs = functools.partial(_macs, name, analog_x.copy(), self.layers[0].fan_out)
            source = silent_trains(n_steps, batch, self.n_in)
        elif analog_x is not None:
            drive[name], macs = self._analog_drive(analog_x)
            macs = {name: macs}
            source = silent_trains(n_steps, batch, self.n_in)
        recorded = (
            (graph._record(record["v"], "v") + graph._record(record["i"], "i"))
            if any(record.values())
            else []
        )
        if analog_x is not None and analog_x.ndim == 3 and any(p.name == name for p, _, _ in recorded):
            raise ValueError(
                f"layer {name!r} has a drive over time (analog [T, B, n]), which only a layer run over "
                "all steps takes; recording steps it: record another layer, or give analog [B, n]"
            )
        inputs = {graph.populations[0].name: source}  # the stack checked its input and its parameters
        result = graph._run(n_steps, inputs, batch, drive, recorded, 0, backend, mode, progress, macs, True)
        return result if backend == "event" else self._stack_result(result)

    def _one_sample(self, graph, n_steps, mode, spiking):
        """The kept :class:`_OneSample` of the stack's ``graph`` for runs of
        ``n_steps`` in ``mode`` on spikes (``spiking``) or constant analog
        input, made at the first such run (None where the
        general path runs them: a schedule that is not a chain of layers);
        made again for a new graph (:meth:`graph`: the layers changed) or
        once the graph has been edited (``Graph._edits``)."""
        kept = self._one
        if kept is None or kept[0] is not graph or kept[1] != graph._edits:
            kept = self._one = (graph, graph._edits, {})
        plans = kept[2]
        key = (n_steps, mode, spiking)
        if key in plans:
            return plans[key]
        if len(plans) >= 8:  # (a few T and modes kept)
            plans.clear()
        schedule = graph.schedule(())
        one = _OneSample(self, graph, schedule, n_steps, mode, spiking) if schedule.layers_only else None
        plans[key] = one
        return plans[key]

    def _stack_result(self, result) -> RunResult:
        """A run of the stack's graph as the stack's result (the input
        population is not a layer)."""
        return RunResult(
            result.trains[1:],
            result.counts[1:],
            (lambda: result.membrane) if self.layers[-1].kind != "maxpool" else None,
            result.backend,
            names=result.names[1:],
            recorded=result.recorded,
            recorded_i=result.recorded_i,
            seconds=result.seconds,
            projection_synops=lambda: result.projection_synops,
        )


def _call_all(calls):
    for call in calls:
        call()


def _modes(layer) -> tuple:
    """The paths a layer's runs may take (its ``mode``; ``"auto"``: any)."""
    return ("event", "clock", "dense") if layer.mode == "auto" else (layer.mode,)


def _macs(name, x, fan_out) -> dict:
    """``{name: MACs per sample}`` of a constant analog input ``x`` ``[B, n_in]``
    into a first layer of fan-out ``fan_out``: its non-zero inputs' fan-outs."""
    return {name: (x != 0) @ fan_out}


class _OneSample:
    """:meth:`Network.run` of one sample over ``n_steps`` in ``mode``, of
    constant analog input ``x`` ``[1, n_in]`` or of spikes (``spiking``:
    :class:`SpikeTrains` of one sample, checked), as the general path
    (``snn.run.schedule._run_layers`` and ``snn.run.paths._run_layer``) runs
    it, stage by stage with the same kernel calls, the same choices of path
    and the same result, less what that path looks up or recomputes at
    every call: the stages' constant biases, their kernel calls (the
    compiled code, past numba's dispatcher), the path chosen for a count of
    input spikes (all the cost model reads of a dense or conv layer's input,
    its bias being constant: the counts at which the choice changes,
    ``snn.run.paths.choice_cuts``). Each call makes the arrays it returns (a
    result is never written by a later call); what it keeps is read-only but
    for the layers' output-buffer guesses (``spikes_per_step``, updated as
    ``_run_layer`` updates them)."""

    def __init__(self, network, graph, schedule, n_steps, mode, spiking=False):
        self.graph, self.schedule, self.n_steps, self.mode = graph, schedule, n_steps, mode
        self.spiking = spiking
        if not spiking:
            self.drive = (*drive_call(network.layers[0]), True)  # _vecmat's kernel and arguments
            self.fan_out = network.layers[0].fan_out
            self.first = schedule.steps[0][3]  # (the first layer's path choice reads its graph layer)
            self.macs_name = schedule.steps[0][0]
            self.silent = silent_trains(n_steps, 1, graph.populations[0].n)
        self.dtype = dtype = graph.dtype
        self.input = graph.populations[0].name
        self.readout = schedule.readouts[1]
        self.stages = []
        for k, (name, source_name, pool, layer, pop) in enumerate(schedule.steps):
            if pool is not None:
                self.stages.append((name, source_name, pool, None, None, None, None, None))
                continue
            driven = k == 0 and not spiking  # the first layer of analog input: its drive in the bias
            bias = None if driven else layer.bias(dtype)
            # the path where no choice is made (as _run_as_layer: a driven layer's source is silent)
            fixed = mode or pop.mode
            fixed = None if fixed == "auto" else "clock" if (fixed == "dense" and driven) else fixed
            # the path by the count of input spikes: event up to cuts[0], clock up to cuts[1], then
            # dense; cuts[2] with no input spike (a CSR layer's choice reads more than the count: made
            # at each call)
            cuts = None
            if not driven and fixed is None and layer.kind in ("dense", "conv") and layer.proj is not None:
                cuts = (
                    *choice_cuts(layer, n_steps, dtype, _positive(bias)),
                    _choose_driven_mode(layer, bias[0], n_steps),
                )
            self.stages.append((name, source_name, None, layer, pop, bias, cuts, fixed))

    def _mode(self, layer, total, source, bias) -> str:
        """The path that ``"auto"`` chooses for a layer that reads spikes,
        on a run of ``source`` (``total`` spikes), as
        :func:`snn.run.schedule._run_as_layer` chooses it."""
        if layer.proj is None or not total:
            return _choose_driven_mode(layer, bias[0], self.n_steps)
        return _choose_mode(layer, source, self.n_steps, self.dtype, _positive(bias))

    def __call__(self, x):
        if self.spiking:
            return self._run({self.input: x}, None, None, time.perf_counter())
        x = np.ascontiguousarray(x, np.float64)
        drive = np.empty((1, self.first.n_out))
        kernel, args, first_call = self.drive
        kernel(x, *args, drive)  # _vecmat(x, first layer)
        if first_call:  # by the dispatcher: its compiled code from now on
            self.drive = (_compiled(kernel, (x, *args, drive)) or kernel, args, False)
        macs = functools.partial(_macs, self.macs_name, x.copy(), self.fan_out)
        return self._run({self.input: self.silent}, drive, macs, time.perf_counter())

    def _run(self, trains, drive, macs, start):
        """The stages from ``trains`` (the input's by name), the first
        layer's ``drive`` ``[1, n]`` (analog input) or None; ``macs`` and
        ``start`` (``time.perf_counter``) as the result reports them."""
        graph, dtype, n_steps = self.graph, self.dtype, self.n_steps
        counts, modes = {}, {}
        membrane = None
        empty, zeros, int64 = np.empty, np.zeros, np.int64
        for name, source_name, pool, layer, pop, bias, cuts, mode in self.stages:
            source = trains[source_name] if source_name is not None else silent_trains(n_steps, 1, 0)
            if pool is not None:
                out, kc, _ = _run_maxpool(pool, source)
                none = zeros(1, int64)
                counts[name] = np.stack([none, kc[:, 1], kc[:, 2], none], axis=1)
                modes[name] = "gate"
                trains[name] = out
                continue
            driven = bias is None
            if driven:
                bias = _layer_bias(dtype, pop, drive)
            total = int(source.tptr[0, -1])
            if mode is not None:
                pass
            elif driven:
                mode = _choose_driven_mode(layer, bias[0], n_steps)
            elif cuts is not None:
                event_to, clock_to, silent = cuts
                if not total:
                    mode = silent
                else:
                    mode = "event" if total <= event_to else "clock" if total <= clock_to else "dense"
            else:
                mode = self._mode(layer, total, source, bias)
            unset = None  # a lazy start's marks and the initial membrane (_final_membrane completes it)
            if mode == "dense":
                out, kc, mode, state, _ = _run_as_layer(
                    dtype, layer, source, mode, bias, None, n_steps, None, driven
                )
            else:  # _run_layer of one sample from no state, inline
                key = ("one", mode, dtype, n_steps)  # (among _run_layer's, which the layer keeps as well)
                calls = layer.calls
                made = calls.get(key)
                if made is None:
                    made = calls[key] = _layer_call(layer, mode, dtype, n_steps)
                call, before, after, width, lazy = made[:5]
                n_out = layer.n_out
                seen = layer.spikes_per_step
                most = n_steps * n_out
                if seen:
                    cap = min(most, max(1024, int(1.25 * seen * n_steps)))
                else:
                    cap = min(most, max(1024, 4 * total, most // 8))
                while True:
                    state = empty((1, n_out, width), dtype)
                    out_tptr = empty((1, n_steps + 1), int64)
                    out_idx = empty((1, cap), np.int32)
                    kc = zeros((1, 4), int64)
                    if before is None:
                        call(source.tptr, source.idx, None, bias[1], state, out_tptr, out_idx, kc)
                    else:
                        if lazy:  # the marks in place of after[-1]; after[4] is v_init
                            marks = empty((1, (n_out + 63) >> 6), np.uint64)
                            unset = (marks, after[4])
                            args = (source.tptr, source.idx, *before, bias[1], *after[:-1], marks)
                        else:
                            args = (source.tptr, source.idx, *before, bias[1], *after)
                        call(*args, state, out_tptr, out_idx, kc, 0, 1)
                        if len(made) == 6:  # the first call, by the dispatcher: its compiled code from now on
                            found = _compiled(call, (*args, state, out_tptr, out_idx, kc, 0, 1))
                            calls[key] = (found or call, before, after, width, lazy)
                    overflow, used = kc[0, 3:1:-1].tolist()
                    if not overflow:
                        break
                    cap = min(cap * 4, most)
                    out_idx = None
                layer.spikes_per_step = max(seen, used / n_steps)
                out = SpikeTrains(out_tptr, out_idx[:, :used], n_out)
            counts[name], modes[name], trains[name] = kc, mode, out
            if name == self.readout:
                membrane = functools.partial(
                    _final_membrane, pop, state, bias[1], mode != "dense", n_steps, dtype, unset
                )
        seconds = time.perf_counter() - start
        return _assemble(
            graph, n_steps, trains, counts, modes, {}, seconds, membrane, macs, 1, self.schedule.arrivals
        )


def _layer_call(layer, mode, dtype, n_steps) -> tuple:
    """``(call, before, after, width, lazy)`` of a layer path for
    :class:`_OneSample`: the compiled kernel with the arguments
    ``snn.run.paths._sample_kernel`` names (``call(in_tptr, in_idx,
    *before, bias, *after, state, out_tptr, out_idx, counts, 0, 1)``, a
    lazy start's marks in place of ``after[-1]``), the dispatcher until its
    first call (then a sixth item, None, says so); or ``_bound_layer``'s
    call (``before`` None; no lazy start)."""
    found = _sample_kernel(layer, mode, dtype, n_steps)
    if found is None:
        call, width, _ = _bound_layer(layer, mode, dtype, n_steps, False, True)
        return call, None, None, width, False
    kernel, before, after, lazy = found
    return kernel, before, after, _state_width(layer.neuron), lazy, None
