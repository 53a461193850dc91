"""Early exit that stops the simulation (issue 13): each sample's readout
is checked against a rule after every step, and a sample whose decision is
stable stops, so the work it would have cost is never done. Two ways run it:

- in the kernel (``engine="kernel"``): every population is stepped together
  by the graph kernel, which judges the rule after each step of each sample
  and stops the sample there (:class:`snn.run.stepped.SteppedExit`), so a run
  is one kernel call, at batch 1 as over a whole set;
- chunked (``engine="chunked"``): the model runs chunk by chunk
  (:meth:`snn.Graph.start`), the rule judged in Python between chunks, the
  samples that exit leaving the batch (:meth:`Simulation.keep`).

``engine="auto"`` takes the kernel unless the rule has a ``custom``
callable (judged in Python) or the network has a max-pool gate (a gate runs
as a layer over all steps and cannot be stepped together), or
``together=False`` is asked for. Both ways compute the same: the built-in
rules are one compiled function (``kernels.graph.exit_holds``).

Unlike :func:`snn.convert.early_exit` (which reads one full run and counts
what stopping would have spent), everything reported here was done: the
SynOps and state updates are the kernels' counts of the steps each sample
ran, and the wall time is measured.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._validate import numba_threads, run_extent
from ..run.paths import drive_call
from ..run.schedule import stages
from ..run.spiketrains import SpikeTrains
from ..run.stepped import (
    EXIT_CONFIDENCE,
    EXIT_EVERY,
    EXIT_FIELDS,
    EXIT_FIRST,
    EXIT_MARGIN,
    EXIT_MIN,
    EXIT_PATIENCE,
    SteppedExit,
    _compiled,
    bias_drive_of,
    exit_holds,
)
from .base import check_labels, check_samples
from .chain import ConvertedNetwork
from .graph import ConvertedGraph, drive_currents

# graph -> {readout: its plan or the refusal, runner key: SteppedExit, None: _chain of a stack,
#          _EDITS: the graph's edit count they were made at}
_EXITS = weakref.WeakKeyDictionary()
_EDITS = object()  # the key of that count (no readout name or runner key equals it)
ENGINES = ("auto", "kernel", "chunked")


@dataclass(frozen=True)
class ExitRule:
    """When a sample stops, judged after step ``t`` (``t >= min_steps``) on
    its readout membrane ``r`` (``[C]``, which approximates ``t`` times the
    ANN's logits); every rule given must hold:

    - ``patience = k``: the decision (argmax of ``r``) is the same after
      steps ``t - k .. t``;
    - ``margin = m``: the gap between the two largest values of ``r / t`` is
      at least ``m`` (logit units);
    - ``confidence = c``: the largest softmax probability of ``r / t`` is at
      least ``c`` (in (0, 1));
    - ``custom``: a callable ``f(t, readout) -> bool [B]`` on the readouts
      ``[B, C]`` of the samples still running.

    A sample that never meets the rule runs to ``T``."""

    patience: int | None = None
    margin: float | None = None
    confidence: float | None = None
    custom: Callable | None = None
    min_steps: int = 1

    def __post_init__(self):
        if self.patience is None and self.margin is None and self.confidence is None and self.custom is None:
            raise ValueError("give a rule: patience=, margin=, confidence= and/or custom=")
        p = self.patience
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 0):
            raise ValueError(f"patience must be an integer >= 0, got {p!r}")
        if self.margin is not None and not self.margin >= 0:
            raise ValueError(f"margin must be >= 0, got {self.margin!r}")
        if self.confidence is not None and not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.custom is not None and not callable(self.custom):
            raise TypeError(f"custom must be a callable f(t, readout) -> bool [B], got {self.custom!r}")
        m = self.min_steps
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"min_steps must be an integer >= 1, got {m!r}")

    def __str__(self):
        parts = [
            f"patience {self.patience}" if self.patience is not None else "",
            f"margin {self.margin:g}" if self.margin is not None else "",
            f"confidence {self.confidence:g}" if self.confidence is not None else "",
            "custom" if self.custom is not None else "",
            f"min {self.min_steps} steps" if self.min_steps > 1 else "",
        ]
        return ", ".join(p for p in parts if p)

    @property
    def earliest(self) -> int:
        """The first step after which the rule can hold (``min_steps``, and
        ``patience + 1``: a decision is the same over ``patience + 1`` steps)."""
        return max(self.min_steps, 1 if self.patience is None else self.patience + 1)

    def fields(self, every: int, first: int) -> np.ndarray:
        """The built-in rule as the kernels read it (``kernels.graph``'s
        ``EXIT_*`` fields), checked after steps ``first``, ``first +
        every``, ..."""
        out = np.empty(EXIT_FIELDS)
        out[EXIT_MIN] = self.min_steps
        out[EXIT_PATIENCE] = -1 if self.patience is None else self.patience
        out[EXIT_MARGIN] = np.nan if self.margin is None else self.margin
        out[EXIT_CONFIDENCE] = np.nan if self.confidence is None else self.confidence
        out[EXIT_EVERY] = every
        out[EXIT_FIRST] = first
        return out

    def holds(self, t: int, readout: np.ndarray, unchanged: np.ndarray) -> np.ndarray:
        """``[B]`` bool: the rule holds after step ``t`` for readouts ``[B,
        C]`` whose decision has been the same for ``unchanged`` steps."""
        if self.margin is not None and readout.shape[1] < 2:
            raise ValueError("margin needs a readout of at least two classes")
        ok = np.empty(len(readout), bool)
        exit_holds(
            np.ascontiguousarray(readout, np.float64),
            int(t),
            np.ascontiguousarray(unchanged, np.int64),
            self.fields(1, 1),
            ok,
        )
        if self.custom is not None:
            verdict = np.asarray(self.custom(t, readout.copy()))
            if verdict.shape != (len(readout),) or verdict.dtype != bool:
                raise ValueError(f"custom must return a bool array [{len(readout)}], got {verdict!r}")
            ok &= verdict
        return ok


@dataclass
class ExitedRun:
    """A run in which samples stopped early (:func:`run_early_exit`).

    Per sample ``[B]``: ``exit_step`` (steps it ran, 1..T), ``decision``
    (argmax of its readout then), ``readout`` ``[B, C]`` (its readout then),
    ``synops`` and ``updates`` (what the kernels did for it, all
    populations), ``macs`` (of the analog input, once), ``spikes`` (the
    spikes its populations fired, all of them). ``seconds``: wall
    time of the whole run, conversion of the input included; ``rule``: the
    rule as text; ``n_steps``: the ``T`` samples ran to at most."""

    rule: str
    n_steps: int
    exit_step: np.ndarray
    decision: np.ndarray
    readout: np.ndarray
    synops: np.ndarray
    updates: np.ndarray
    macs: np.ndarray
    seconds: float
    spikes: np.ndarray

    def accuracy(self, labels) -> float:
        """Fraction of decisions equal to ``labels`` (``[B]`` classes)."""
        labels = check_labels(labels, "labels", len(self.decision), self.readout.shape[1])
        return float(np.mean(self.decision == labels))

    def summary(self, labels=None, full=None) -> str:
        """One line (``labels``: with accuracy; ``full``: an :class:`ExitedRun`
        or the :class:`snn.RunResult` of the same samples run to ``T``
        (``converted.run(x, T)``), for the savings)."""
        n = len(self.exit_step)
        text = (
            f"early exit ({self.rule}): mean exit step {self.exit_step.mean():.1f} of {self.n_steps}, "
            f"{self.synops.sum() / n:,.0f} SynOps and {1e3 * self.seconds / n:.3f} ms per sample"
        )
        if labels is not None:
            text += f", accuracy {self.accuracy(labels):.2%}"
        if full is not None:
            if isinstance(full, ExitedRun):
                synops, decision = full.synops.sum(), full.decision
            elif hasattr(full, "counts") and getattr(full, "membrane", None) is not None:  # a RunResult
                synops, decision = sum(int(c.synops.sum()) for c in full.counts), full.membrane.argmax(axis=1)
            else:
                raise TypeError(f"full must be an ExitedRun or a run's result, got {type(full).__name__}")
            if len(decision) != n:
                raise ValueError(f"full must be a run of the same {n} samples, got {len(decision)}")
            text += (
                f"; the full run: {synops / n:,.0f} SynOps, "
                f"{1e3 * full.seconds / n:.3f} ms per sample ({full.seconds / self.seconds:.2f}x the time)"
            )
            if labels is not None:
                labels = check_labels(labels, "labels", n, self.readout.shape[1])
                text += f", accuracy {np.mean(decision == labels):.2%}"
        return text


def run_early_exit(
    converted,
    x,
    T: int,
    rule: ExitRule | None = None,
    *,
    every: int = 1,
    mode: str | None = None,
    n_threads: int | None = None,
    together: bool = False,
    engine: str = "auto",
    **rule_kwargs,
) -> ExitedRun:
    """Run ``converted`` (a :class:`~snn.convert.ConvertedNetwork` or
    :class:`~snn.convert.ConvertedGraph`) on analog samples ``x``
    (``[N, *input_shape]``) for at most ``T`` steps, in chunks of ``every``
    steps; after each chunk the samples whose readout meets ``rule`` (an
    :class:`ExitRule`, or its fields as keywords: ``patience=3``...) leave
    the batch (the first chunk ends when the rule can first hold,
    :attr:`ExitRule.earliest`). The rule is judged at every step of a chunk
    (a sample exits at the first step it holds), but a chunk runs whole, so
    ``every > 1`` trades checks for work past the exit (counted).

    A sample's spikes and decision are those of the run to its exit step
    (chunked runs equal uncut ones); ``mode`` forces one path for every
    population (default: each one's own; ``"auto"`` chooses on the first
    chunk, or in the kernel the clock path for the readout and for
    populations fed by a convolution or driven, see :class:`snn.run.stepped.SteppedExit`).

    ``engine``: ``"kernel"`` judges the rule inside the graph kernel (every
    population stepped together: one kernel call per run), ``"chunked"``
    between chunks in Python (``together``: its chunks step every
    population in one stage instead of layer stages), ``"auto"`` (default)
    the kernel unless the rule has a ``custom`` callable or the network a
    max-pool gate (which cannot be stepped together; then chunked, in
    layer stages). Both compute the same exits, decisions and counts;
    ``every > 1`` stops a sample in the kernel where the chunked way would
    (at the end of the chunk it exits in)."""
    start = time.perf_counter()
    rule, text, fields = _arguments(T, rule, every, engine, rule_kwargs)
    flat = None
    stack = type(converted) is ConvertedNetwork
    if stack and n_threads is None and engine != "chunked" and rule.custom is None:
        flat = converted._flat(x)  # a sample of a stack: its whole run made once (_one_stack)
        one = _cache(converted.network.graph()).get((_ONE, T, mode)) if len(flat) == 1 else None
        if one is not None:
            out = one(flat, fields, rule.margin)
            if out is not None:
                exit_step, final, done, macs = out
                return _exited(text, T, exit_step, final, done, macs, start)
    graph, cache, readout, drive, macs = _as_graph(converted, x, flat)
    batch = len(x)
    if engine != "chunked" and rule.custom is None:
        runner = _exit_runner(cache, graph, readout, T, mode, drive, engine == "kernel")
        if runner is not None:
            if rule.margin is not None and runner.n_out < 2:
                raise ValueError("margin needs a readout of at least two classes")
            if batch > 1:  # T was checked for one sample as the runner was made
                run_extent(int(T), batch, graph.dtype)
            if graph.dtype != np.float64:  # what the state precision holds (float64: any finite drive)
                graph._check_precision(drive)
            if n_threads is None:
                exit_step, final, done = runner.run(drive, batch, 0, fields)
                if batch == 1 and flat is not None and (_ONE, T, mode) not in cache:
                    _one_stack(cache, graph, converted.network, runner, T, mode)
            else:
                with numba_threads(n_threads):
                    exit_step, final, done = runner.run(drive, batch, 0, fields)
            return _exited(text, T, exit_step, final, done, macs, start)
    n_out = graph[readout].n
    silent = {p.name: SpikeTrains.empty(T, batch, p.n) for p in graph.populations if p.is_input}
    sim = graph.start(
        T,
        inputs=silent,
        drive=drive,
        batch_size=batch,
        record_v={readout: np.arange(n_out)},
        mode=mode,
        n_threads=n_threads,
        together=together,
    )
    alive = np.arange(batch)  # original index of each sample still running
    exit_step = np.zeros(batch, np.int64)
    final = np.zeros((batch, n_out))
    synops = np.zeros(batch, np.int64)
    updates = np.zeros(batch, np.int64)
    spikes = np.zeros(batch, np.int64)
    last = np.full(batch, -1, np.int64)  # decision after the previous step
    unchanged = np.zeros(batch, np.int64)
    while len(alive):
        t0 = sim.t
        sim.advance(max(every, rule.earliest - t0))  # no chunk ends before the rule can hold
        values = sim.recorded(readout)[t0:]  # [steps, B, C]
        stop = np.zeros(len(alive), bool)
        for k, r in enumerate(values):
            t = t0 + k + 1
            decision = r.argmax(axis=1)
            unchanged = np.where(decision == last, unchanged + 1, 0)
            last = decision
            now = ~stop & (rule.holds(t, r, unchanged) | (t == T))
            exit_step[alive[now]] = t
            final[alive[now]] = r[now]
            stop |= now
        if stop.any():
            done = sum(c for c in sim.totals().values())  # [B, 4]
            synops[alive[stop]] = done[stop, 0]
            updates[alive[stop]] = done[stop, 1]
            spikes[alive[stop]] = done[stop, 2]
            keep = np.flatnonzero(~stop)
            alive, last, unchanged = alive[keep], last[keep], unchanged[keep]
            if len(alive):
                sim.keep(keep)
    return ExitedRun(
        str(rule),
        T,
        exit_step,
        final.argmax(axis=1),
        final,
        synops,
        updates,
        macs,
        time.perf_counter() - start,
        spikes,
    )


_CALLS = {}  # a few recent calls' rule arguments -> what _arguments made of them


def _arguments(T, rule, every, engine, kwargs) -> tuple:
    """``(rule, str(rule), its kernel fields)`` of a call of
    :func:`run_early_exit` (``rule``, or its keywords ``kwargs``; the
    fields for chunks of ``every`` steps, the first ending when the rule
    can first hold, read-only: :meth:`SteppedExit.run` copies them), the
    arguments checked. Kept for the same arguments (values and types:
    ``patience=True`` is refused, ``patience=1`` is not), so that calls in
    a loop check them and build the rule once."""
    try:
        types = tuple(map(type, kwargs.values()))
        key = (T, type(T), every, type(every), engine, rule, tuple(kwargs.items()), types)
        made = _CALLS.get(key)
    except TypeError:  # an unhashable value (a custom callable object): not kept
        key = made = None
    if made is not None:
        return made
    if rule is None:
        rule = ExitRule(**kwargs)
    elif kwargs:
        raise TypeError(f"give rule= or its keywords ({', '.join(kwargs)}), not both")
    if not isinstance(rule, ExitRule):
        raise TypeError(f"rule must be an ExitRule, got {type(rule).__name__}")
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "kernel" and rule.custom is not None:
        raise ValueError("a custom rule is judged in Python: use engine='chunked' (or 'auto')")
    every = int(every)
    fields = rule.fields(every, max(every, rule.earliest))
    fields.flags.writeable = False
    made = (rule, str(rule), fields)
    if key is not None:
        if len(_CALLS) >= 64:
            _CALLS.clear()
        _CALLS[key] = made
    return made


def _exit_runner(cache, graph, readout, T, mode, drive, required):
    """The :class:`SteppedExit` of ``graph`` for these arguments (built
    once, kept in ``cache``, the graph's dict in ``_EXITS``), or None when
    the network cannot be stepped together (a max-pool gate) and the
    kernel is not ``required`` (else that ``ValueError``)."""
    key = (readout, T, mode, frozenset(drive))
    runner = cache.get(key) if mode in _KERNEL_MODES else None
    if runner is not None:  # made by an earlier run: the checks below passed then
        return runner
    plan = cache.get(readout)
    if plan is None:
        try:
            plan = stages(graph, frozenset([readout]), together=True)[0].plan
        except ValueError as err:
            plan = err
        cache[readout] = plan
    if isinstance(plan, ValueError):
        if required:
            raise ValueError(f"engine='kernel' steps every population together: {plan}")
        return None
    if mode not in _KERNEL_MODES:  # "dense" runs in layer stages only
        if required:
            raise ValueError(f"engine='kernel' takes mode 'event', 'clock', 'auto' or None, got {mode!r}")
        return None
    run_extent(int(T), 1, graph.dtype)
    runner = cache[key] = SteppedExit(plan, int(T), readout, mode, frozenset(drive))
    return runner


_KERNEL_MODES = (None, "event", "clock", "auto")


def _exited(text, T, exit_step, final, done, macs, start) -> ExitedRun:
    """The :class:`ExitedRun` of a kernel run (``done``: counts ``[B, 4]``,
    SynOps, updates, spikes, background events; ``start``: its
    ``time.perf_counter()``)."""
    elapsed = time.perf_counter() - start
    decision = final.argmax(axis=1)
    return ExitedRun(text, T, exit_step, decision, final, done[:, 0], done[:, 1], macs, elapsed, done[:, 2])


def _one_stack(cache, graph, network, runner, T, mode) -> None:
    """Keep in ``cache`` (under ``(_ONE, T, mode)``) ``f(flat, fields,
    margin)``: the run of one sample ``flat`` (``[1, n_in]``, checked) of
    the stack ``graph`` (of ``network``) on ``runner``
    (:meth:`SteppedExit.one_sample`) as :func:`run_early_exit` makes it:
    ``(exit_step, readout, counts [1, 4], MACs [1])``, or None when the
    runner's arrays are held (then run it the general way). Made once both
    are compiled, so that a call reads no more than it must (no look-ups of
    what is the same at every call); the drive, the driven population's
    bias row and the MACs are one compiled call
    (``kernels.drive.bias_drive_kernel``, the drive computed as ``_chain``'s
    kernel computes it)."""
    _, name, fan_out, _, args, n, direct = cache[None]
    run = runner.one_sample()
    if not direct or run is None:
        return
    n_out, check = runner.n_out, graph.dtype != np.float64
    empty, int64 = np.empty, np.int64
    fused = bias_drive_of(drive_call(network.layers[0])[0])
    entry = []  # its compiled function, once called

    def one(flat, fields, margin):
        if margin is not None and n_out < 2:
            raise ValueError("margin needs a readout of at least two classes")
        drive = empty((1, n))
        macs = empty(1, int64)

        def fill(biases):
            ((bias, out),) = biases
            arguments = (flat, *args, drive, fan_out, bias, out, macs)
            if entry:
                entry[0](*arguments)
            else:
                fused(*arguments)
                entry.append(_compiled(fused, arguments) or fused)
            if check:  # what the state precision holds (float64: any finite drive)
                graph._check_precision({name: drive})

        out = run(None, fields, 0, fill)
        return None if out is None else (*out, macs)

    cache[_ONE, T, mode] = one


_ONE = object()  # the first item of the keys of _one_stack's functions in _EXITS' dicts


def _as_graph(converted, x, flat=None) -> tuple:
    """``(graph, its dict in _EXITS, readout name, drives by population,
    MACs [B])`` of a converted model on samples ``x`` (``flat``: of a
    stack, ``x`` checked and flattened already)."""
    if isinstance(converted, ConvertedGraph):
        x = check_samples(x, "x", converted.input_shape)
        currents, macs = drive_currents(converted.drives, converted.input_shape, x)
        total = sum(np.asarray(m, np.int64) for m in macs.values())
        graph = converted.network
        return graph, _cache(graph), converted.readout, currents, np.broadcast_to(total, (len(x),)).copy()
    if not isinstance(converted, ConvertedNetwork):
        raise TypeError(f"expected a ConvertedNetwork or ConvertedGraph, got {type(converted).__name__}")
    if flat is None:
        flat = converted._flat(x)  # C-contiguous float64 (check_samples)
    graph = converted.network.graph()  # kept by the network while its layers are unchanged
    cache = _cache(graph)
    chain = cache.get(None)
    if chain is None:
        chain = cache[None] = _chain(converted.network)
    readout, name, fan_out, kernel, args, n, direct = chain
    drive = np.empty((len(flat), n))
    kernel(flat, *args, drive)
    if not direct:  # called through the dispatcher once: then its compiled function, if it has one
        entry = _compiled(kernel, (flat, *args, drive))
        cache[None] = (readout, name, fan_out, entry or kernel, args, n, True)
    return graph, cache, readout, {name: drive}, np.dot(flat != 0, fan_out)  # MACs [B] int64: exact


def _cache(graph) -> dict:
    """What is kept for ``graph`` as it is now (see ``_EXITS``): made
    afresh once the graph has been edited (``Graph._edits``), so that no
    plan of the graph as it was is run."""
    cache = _EXITS.get(graph)
    if cache is None or cache[_EDITS] != graph._edits:
        cache = _EXITS[graph] = {_EDITS: graph._edits}
    return cache


def _chain(network) -> tuple:
    """``(readout name, first layer's name, its fan-out (int64), kernel,
    arguments, its size, False)`` of a stack, read once per graph (a changed
    layer makes a new graph): ``kernel(x, *arguments, drive)`` writes
    ``drive = x @ W`` of the first layer (``[B, n_in]`` C-contiguous,
    ``[B, n]`` float64) as :func:`snn.run.paths._vecmat` does
    (:func:`snn.run.paths.drive_call`). After the first call, ``_as_graph``
    keeps instead the compiled function the dispatcher ran (the arguments
    are of the same types at every call: numba's typing of them is saved)
    and True."""
    first = network.layers[0]
    if first.kind == "maxpool":
        raise ValueError("the network's first layer is a max pool: no analog input to drive")
    kernel, args = drive_call(first)
    fan_out = first.fan_out.astype(np.int64)
    fan_out.flags.writeable = False
    name = network.layer_name(0)
    return network.layer_name(len(network.layers) - 1), name, fan_out, kernel, args, first.n_out, False
