"""Networks that are graphs: named populations joined by projections with
integer delays (a population onto itself included), spike inputs and Poisson
background drive, run event-driven or by the clock-driven reference.

::

    g = snn.Graph(dt=1e-4)                       # seconds per step
    exc = g.population(800, snn.LIF(tau_mem=20e-3, dt=1e-4, threshold=20.0), name="exc")
    g.connect(exc, exc, 0.5, connectivity=snn.connectivity.fixed_probability(800, 800, 0.1, seed=1))
    g.poisson_input(exc, n_trains=100, rate=20.0, weight=0.5)
    result = g.run(T=10_000, seed=0)             # 1 s of biological time
    result.rate_hz("exc"), result.isi_cv("exc")

Spikes of population ``a`` at step ``t`` reach population ``b`` at step
``t + d`` through a projection of delay ``d``; ``d = 0`` (same step, as in
a feed-forward stack) is allowed only where zero-delay projections form no
cycle, so the step stays well defined.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

import snn_kernels as kernels

from ._validate import checked_csr, numba_threads, owned, positive_int, real_array, run_extent
from .conv import conv_fan_out, conv_geometry, conv_weight, kernel_layout
from .graph_result import GraphResult
from .neurons import LIF, Neuron
from .reference import run_graph_reference
from .spiketrains import SpikeTrains

DTYPES = (np.float32, np.float64)
POP_MODES = ("auto", "event", "clock")
# "auto" steps a population clock-driven when its Poisson background brings
# at least this many events per neuron per step (measured on BRUNEL-100 with
# benchmarks/brunel.py --mode: there, at 0.2, the sweep is faster)
CLOCK_BACKGROUND = 0.1
# Poisson background events per step onto one population, at most: each is
# delivered one by one (a larger count would run for hours, or overflow)
MAX_BACKGROUND_EVENTS = 2.0**31


@dataclass(frozen=True, eq=False)
class Population:
    """A group of neurons of one model (``neuron``; ``None`` for an input
    population, whose spikes are given to :meth:`Graph.run`). A handle:
    create it with :meth:`Graph.population` or :meth:`Graph.input`."""

    name: str
    n: int
    neuron: Neuron | None
    bias: np.ndarray | None  # [n] potential added every step
    v_init: np.ndarray | None  # [n] membrane before step 0
    mode: str = "auto"  # "event", "clock" or "auto" (see Graph.population)
    shape: tuple | None = None  # (C, H, W) of a population laid out as an image (channel-first), else None

    @property
    def is_input(self) -> bool:
        return self.neuron is None

    def __repr__(self):
        model = "input" if self.is_input else repr(self.neuron)
        size = "x".join(map(str, self.shape)) if self.shape else f"{self.n:,}"
        return f"Population({self.name!r}, n={size}, {model})"


@dataclass(frozen=True, eq=False)
class Projection:
    """Synapses from ``source`` to ``target``, stored as CSR by presynaptic
    neuron, one group per distinct delay: ``groups[g] = (delay, rowptr int64
    [n_source + 1], cols int32 [n_syn] target indices, weights float32 [n_syn]
    or None)``; ``weight`` is the value every synapse shares when
    ``weights`` is None (then synapses cost 4 bytes each: their target)."""

    source: Population
    target: Population
    groups: tuple
    weight: float | None
    name: str

    @property
    def n_synapses(self) -> int:
        return sum(len(cols) for _, _, cols, _ in self.groups)

    @property
    def delays(self) -> list[int]:
        return [d for d, *_ in self.groups]

    @property
    def nbytes(self) -> int:
        """Memory of the connectivity: indices, weights, offsets."""
        return sum(r.nbytes + c.nbytes + (0 if w is None else w.nbytes) for _, r, c, w in self.groups)

    def __repr__(self):
        d = self.delays
        delay = f"{d[0]}" if len(d) == 1 else f"{min(d)}..{max(d)}"
        w = f"{self.weight:g}" if self.weights_shared else "per synapse"
        return (
            f"Projection({self.source.name!r} -> {self.target.name!r}, synapses={self.n_synapses:,}, "
            f"weight={w}, delay={delay})"
        )

    @property
    def weights_shared(self) -> bool:
        return self.weight is not None

    kind = "csr"


@dataclass(frozen=True, eq=False)
class ConvProjection:
    """A 2-D convolution from ``source`` (an image ``(C_in, H, W)``) onto
    ``target`` (``(C_out, H_out, W_out)``), never expanded into a matrix:
    ``geom`` int64 [15] (``kernels.conv.GEOM_FIELDS``), ``kernel`` float32
    ``[C_out, C_in / groups, kh, kw]`` (torch's layout of a Conv2d weight),
    one integer ``delay``.
    Create it with :meth:`Graph.conv`."""

    source: Population
    target: Population
    geom: np.ndarray
    kernel: np.ndarray
    delay: int
    name: str

    kind = "conv"
    weights_shared = False

    @property
    def delays(self) -> list[int]:
        return [self.delay]

    def fan_out(self) -> np.ndarray:
        """Targets reached by each source neuron, ``[n_source]`` int64."""
        return conv_fan_out(self.geom)

    @property
    def n_synapses(self) -> int:
        return int(self.fan_out().sum())

    @property
    def nbytes(self) -> int:
        """Memory of the connectivity: the shared kernel only."""
        return self.kernel.nbytes

    def __repr__(self):
        kh, kw, sy, sx, py, px = (int(v) for v in self.geom[6:12])
        return (
            f"ConvProjection({self.source.name!r} -> {self.target.name!r}, kernel {kh}x{kw}, "
            f"stride {sy}x{sx}, padding {py}x{px}, groups {int(self.geom[14])}, delay={self.delay})"
        )


@dataclass(frozen=True)
class PoissonInput:
    """``n_trains`` independent Poisson trains of ``rate`` Hz onto every
    neuron of ``target``, each event adding ``weight``."""

    target: Population
    n_trains: int
    rate: float
    weight: float

    def events_per_step(self, dt: float) -> float:
        """Expected events per neuron per step."""
        return self.n_trains * self.rate * dt


class Graph:
    """A network of populations and projections.

    Parameters
    ----------
    dt : seconds per step (used by Poisson sources and for rates in Hz).
    dtype : state precision, ``np.float64`` (default) or ``np.float32``.
    """

    def __init__(self, dt: float = 1e-3, dtype=np.float64):
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"dt must be a finite number of seconds > 0, got {dt!r}")
        dtype = np.dtype(dtype).type
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.dt = float(dt)
        self.dtype = dtype
        self.populations: list[Population] = []
        self.projections: list[Projection] = []
        self.sources: list[PoissonInput] = []
        self._plan = None

    # -- building -----------------------------------------------------------

    def population(
        self,
        n,
        neuron: Neuron | None = None,
        *,
        bias=0.0,
        v_init=0.0,
        name: str | None = None,
        mode: str = "auto",
    ) -> Population:
        """Add ``n`` neurons of ``neuron`` (default ``LIF(beta=0.9)``);
        ``n`` an int, or a shape ``(C, H, W)`` for a population laid out as
        an image (channel-first numbering, as a flattened torch tensor; what
        :meth:`conv` needs); ``bias`` and ``v_init`` scalars or ``[n]``.
        Returns its handle.

        mode : ``"event"`` (only neurons that receive input or are due to
            fire are updated, lazily), ``"clock"`` (every neuron every step,
            in one sequential sweep: cheaper once most neurons receive input
            every few steps), or ``"auto"``: clock when Poisson background
            alone reaches each neuron at least every ``1 / CLOCK_BACKGROUND``
            steps on average, else event. Both give the same spikes (the
            clock sweep rounds exactly like the reference).
        """
        if mode not in POP_MODES:
            raise ValueError(f"mode must be one of {POP_MODES}, got {mode!r}")
        if neuron is None:
            neuron = LIF(beta=0.9)
        if not isinstance(neuron, Neuron):
            raise TypeError(f"neuron must be a snn.Neuron (IF, LIF, CubaLIF), got {type(neuron).__name__}")
        n, shape = self._size(n)
        pop = Population(
            self._name(name),
            n,
            neuron,
            _per_neuron("bias", bias, n),
            _per_neuron("v_init", v_init, n),
            mode,
            shape,
        )
        return self._add(pop)

    def input(self, n, name: str | None = None) -> Population:
        """Add ``n`` input neurons (an int, or a shape ``(C, H, W)``) whose
        spikes are given to :meth:`run`."""
        n, shape = self._size(n)
        return self._add(Population(self._name(name), n, None, None, None, shape=shape))

    def connect(
        self,
        source: Population,
        target: Population,
        weight,
        *,
        connectivity=None,
        delay=1,
        name: str | None = None,
    ) -> Projection:
        """Add synapses from ``source`` to ``target``.

        connectivity : ``(rowptr, cols)`` CSR by presynaptic neuron (e.g.
            from :mod:`snn.connectivity`; ``rowptr`` ``[n_source + 1]``,
            ``cols`` target indices); then ``weight`` is a scalar shared by
            all synapses or one value per synapse in CSR order. ``None``:
            ``weight`` is a dense ``[n_target, n_source]`` matrix (torch
            layout) whose non-zero entries are the synapses.
        delay : steps from a spike to its arrival, an integer >= 0 (>= 1 on
            a projection that closes a cycle), or one per synapse.
        """
        self._check_pair(source, target)
        name = name or f"{source.name}->{target.name}"
        if connectivity is None:
            w = real_array("weight", weight, np.float32, ndim=2)
            if w.shape != (target.n, source.n):
                raise ValueError(
                    f"a dense weight matrix must be [n_target, n_source] = "
                    f"[{target.n}, {source.n}], got {w.shape}"
                )
            post, pre = np.nonzero(w)
            order = np.lexsort((post, pre))
            pre, post = pre[order], post[order]
            rowptr = np.zeros(source.n + 1, np.int64)
            np.cumsum(np.bincount(pre, minlength=source.n), out=rowptr[1:])
            connectivity, weight = (rowptr, post), w[post, pre]
        rowptr, cols = _checked_csr(connectivity, source.n, target.n)
        n_syn = len(cols)
        w = real_array("weight", weight, np.float32)
        if w.ndim == 0:
            shared, weights = float(w), None
        elif w.shape == (n_syn,):
            shared, weights = None, owned(w)
        else:
            raise ValueError(
                f"weight must be a scalar or have one value per synapse ({n_syn}), got {w.shape}"
            )
        groups = _split_by_delay(rowptr, cols, weights, _checked_delay(delay, n_syn, source is target))
        return self._add_projection(Projection(source, target, groups, shared, name))

    def _check_pair(self, source, target):
        for role, pop in (("source", source), ("target", target)):
            if not isinstance(pop, Population) or pop not in self.populations:
                raise ValueError(f"{role} must be a population of this graph, got {pop!r}")
        if target.is_input:
            raise ValueError(f"target {target.name!r} is an input population; inputs receive no synapses")

    def _add_projection(self, proj):
        """Add ``proj`` unless its zero delays close a cycle."""
        self.projections.append(proj)
        try:
            self._order()
        except ValueError:
            self.projections.pop()
            raise
        self._plan = None
        return proj

    def conv(
        self,
        source: Population,
        target: Population,
        weight,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        delay: int = 1,
        name: str | None = None,
    ) -> ConvProjection:
        """Add a 2-D convolution from ``source`` onto ``target``, both
        populations made with a shape ``(C, H, W)`` (the target's must be the
        convolution's output shape). ``weight`` ``[C_out, C_in / groups, kh,
        kw]`` (torch layout); ``stride``, ``padding`` (zeros), ``dilation``,
        ``groups`` as in ``torch.nn.Conv2d``; ``delay`` one integer >= 0 (>= 1
        onto the source itself, or where it closes a cycle). A spike of
        ``source`` is scattered through the kernel to the outputs it reaches:
        the convolution is never expanded into a matrix."""
        self._check_pair(source, target)
        if source.shape is None or target.shape is None:
            raise ValueError(
                "a convolution joins populations made with a shape (C, H, W); "
                f"{source.name!r} has {source.shape}, {target.name!r} has {target.shape}"
            )
        w = real_array("weight", weight, np.float32, ndim=4)
        geom = conv_geometry(source.shape, w.shape[0], w.shape[2:], stride, padding, dilation, groups)
        out_shape = tuple(int(v) for v in geom[3:6])
        if out_shape != target.shape:
            raise ValueError(
                f"the convolution maps {source.name!r} {source.shape} to {out_shape}, "
                f"but target {target.name!r} has shape {target.shape}"
            )
        if np.ndim(delay) != 0:
            raise ValueError(f"a convolution has one delay (an integer >= 0), got {delay!r}")
        d = _checked_delay(delay, 1, source is target)
        proj = ConvProjection(
            source, target, geom, conv_weight(geom, w), int(d), name or f"{source.name}->{target.name}"
        )
        return self._add_projection(proj)

    def poisson_input(self, target: Population, n_trains: int, rate: float, weight: float) -> PoissonInput:
        """Drive every neuron of ``target`` with ``n_trains`` independent
        Poisson trains of ``rate`` Hz, each event adding ``weight``. Per step
        the population's event count is drawn once and the events are spread
        uniformly over its neurons, which is exactly independent trains."""
        if not isinstance(target, Population) or target not in self.populations or target.is_input:
            raise ValueError(f"target must be a neuron population of this graph, got {target!r}")
        if isinstance(n_trains, bool) or not isinstance(n_trains, (int, np.integer)) or n_trains <= 0:
            raise ValueError(f"n_trains must be a positive integer, got {n_trains!r}")
        rate = float(real_array("rate", rate))
        weight = float(real_array("weight", weight))
        if rate < 0:
            raise ValueError(f"rate must be >= 0 Hz, got {rate!r}")
        per_step = n_trains * rate * self.dt * target.n
        if per_step > MAX_BACKGROUND_EVENTS:
            raise ValueError(
                f"{n_trains} trains of {rate:g} Hz onto {target.n:,} neurons bring {per_step:.3g} events per "
                f"step of {self.dt:g} s; at most {MAX_BACKGROUND_EVENTS:.0e} (each event is simulated)"
            )
        source = PoissonInput(target, int(n_trains), rate, weight)
        self.sources.append(source)
        self._plan = None
        return source

    def _add(self, pop):
        self.populations.append(pop)
        self._plan = None
        return pop

    def _name(self, name):
        name = name if name is not None else f"pop{len(self.populations)}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if any(p.name == name for p in self.populations):
            raise ValueError(f"a population named {name!r} already exists")
        return name

    @staticmethod
    def _size(n) -> tuple[int, tuple | None]:
        """``(n, shape)`` of a size given as an int or a shape ``(C, H, W)``."""
        if isinstance(n, (tuple, list)):
            if len(n) != 3:
                raise ValueError(f"a population's shape must be (channels, height, width), got {n!r}")
            shape = tuple(positive_int("population shape", s) for s in n)
            return positive_int("population size", shape[0] * shape[1] * shape[2]), shape
        return positive_int("population size", n), None

    def __getitem__(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(f"no population named {name!r}; have {[p.name for p in self.populations]}")

    @property
    def n_neurons(self) -> int:
        return sum(p.n for p in self.populations if not p.is_input)

    @property
    def n_synapses(self) -> int:
        return sum(p.n_synapses for p in self.projections)

    def __repr__(self):
        lines = [
            (
                f"Graph(dt={self.dt:g} s, dtype={np.dtype(self.dtype).name}, neurons={self.n_neurons:,}, "
                f"synapses={self.n_synapses:,})"
            )
        ]
        lines += [f"  {p!r}" for p in self.populations]
        lines += [f"  {p!r}" for p in self.projections]
        lines += [
            f"  Poisson({s.n_trains} x {s.rate:g} Hz, weight={s.weight:g}) -> {s.target.name!r}"
            for s in self.sources
        ]
        return "\n".join(lines)

    # -- ordering and the compiled plan ------------------------------------

    def _order(self) -> list[Population]:
        """Inputs first, then neuron populations so that every zero-delay
        projection goes forward; raises if zero-delay projections form a cycle."""
        order = [p for p in self.populations if p.is_input]
        rest = [p for p in self.populations if not p.is_input]
        instant = [(pr.source, pr.target, pr.name) for pr in self.projections if 0 in pr.delays]
        while rest:
            ready = [p for p in rest if not any(t is p and s in rest for s, t, _ in instant)]
            if not ready:
                cycle = [name for s, t, name in instant if s in rest and t in rest]
                raise ValueError(
                    f"zero-delay projections form a cycle ({', '.join(cycle)}): a recurrent "
                    "projection needs delay >= 1"
                )
            order += ready
            rest = [p for p in rest if p not in ready]
        return order

    def _compiled(self):
        if self._plan is None:
            self._plan = _Plan(self)
        return self._plan

    # -- running -------------------------------------------------------------

    def prepare(self) -> float:
        """Compile (or load from the cache) the kernels a run uses, serial
        and parallel; returns the seconds it took."""
        start = time.perf_counter()
        for batch in (1, 2):
            self.run(
                T=2,
                batch_size=batch,
                progress=False,
                inputs={p: np.zeros((2, batch, p.n), np.uint8) for p in self.populations if p.is_input},
            )
        return time.perf_counter() - start

    def run(
        self,
        T: int,
        *,
        inputs=None,
        drive=None,
        batch_size: int | None = None,
        seed: int = 0,
        record_v=None,
        record_i=None,
        backend: str = "event",
        mode: str | None = None,
        progress="auto",
        n_threads: int | None = None,
    ) -> GraphResult:
        """Simulate ``T`` steps.

        inputs : ``{population or name: spikes}``, one entry per input
            population, spikes 0/1 ``[T, B, n]``.
        drive : ``{population or name: x}``, a constant current ``x``
            ``[B, n]`` (potential units, float64) added at every step to each
            neuron of a neuron population, one row per sample (an analog
            input, e.g. an image already multiplied by the first weights:
            a per-sample bias, added to the population's own).
        batch_size : samples (independent copies of the network, each with
            its own background draws); default the batch of the inputs or
            drives, else 1.
        seed : integer >= 0; sample ``s`` draws its background from stream
            ``(seed, s)``, so results do not depend on threads or backend.
        record_v : ``{population or name: neuron indices}``: membrane of
            these neurons at the end of every step (after reset).
        record_i : the same for the synaptic current (CubaLIF populations).
        backend : ``"event"`` or ``"reference"`` (clock-driven oracle).
        mode : ``"event"``, ``"clock"`` or ``"auto"`` for every population
            (default: each population's own ``mode``).
        progress : show a progress bar (tqdm); ``"auto"``: for long runs.
        n_threads : cores used over the samples (default: all).
        """
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
            raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
        if backend not in ("event", "reference"):
            raise ValueError(f"backend must be 'event' or 'reference', got {backend!r}")
        if mode is not None and mode not in POP_MODES:
            raise ValueError(f"mode must be one of {POP_MODES} or None, got {mode!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not any(not p.is_input for p in self.populations):
            raise ValueError("the graph has no neuron population to simulate")
        drives = self._drives(drive)
        sizes = sorted({len(x) for x in drives.values()})
        if len(sizes) > 1:
            raise ValueError(f"drives have different batch sizes {sizes}")
        if batch_size is None and not inputs and sizes:
            batch_size = sizes[0]
        trains, batch = self._inputs(inputs, int(T), batch_size)
        if sizes and sizes != [batch]:
            raise ValueError(f"drives have {sizes[0]} samples but the run has {batch}")
        run_extent(int(T), batch, self.dtype)
        self._check_precision(drives)
        record = self._record(record_v, "v") + self._record(record_i, "i")
        with numba_threads(n_threads):
            if backend == "reference":
                return run_graph_reference(self, int(T), trains, batch, int(seed), record, drives=drives)
            return self._compiled().run(int(T), trains, batch, int(seed), record, progress, mode, drives)

    def _drives(self, drive) -> dict:
        """``{population name: [B, n] float64}``, checked."""
        out = {}
        for key, x in dict(drive or {}).items():
            pop = self[key] if isinstance(key, str) else key
            if not isinstance(pop, Population) or pop not in self.populations or pop.is_input:
                raise ValueError(f"drive keys must be neuron populations of this graph, got {key!r}")
            x = real_array(f"drive[{pop.name!r}]", x, ndim=2)
            if x.shape[1] != pop.n:
                raise ValueError(f"drive[{pop.name!r}] must be [batch, {pop.n}], got shape {x.shape}")
            out[pop.name] = x
        return out

    def _inputs(self, inputs, n_steps, batch_size):
        inputs = dict(inputs or {})
        given = {}
        for key, spikes in inputs.items():
            pop = self[key] if isinstance(key, str) else key
            if not isinstance(pop, Population) or pop not in self.populations or not pop.is_input:
                raise ValueError(f"inputs keys must be input populations of this graph, got {key!r}")
            trains = spikes if isinstance(spikes, SpikeTrains) else SpikeTrains.from_raster(spikes)
            if trains.n != pop.n or trains.n_steps != n_steps:
                raise ValueError(
                    f"input {pop.name!r} must be spikes [T={n_steps}, batch, {pop.n}], got "
                    f"{trains.n_steps} steps of {trains.n} neurons"
                )
            given[pop.name] = trains
        missing = [p.name for p in self.populations if p.is_input and p.name not in given]
        if missing:
            raise ValueError(f"no spikes given for input population(s) {missing}")
        batches = {t.batch_size for t in given.values()}
        if len(batches) > 1:
            raise ValueError(f"inputs have different batch sizes {sorted(batches)}")
        batch = batches.pop() if batches else (1 if batch_size is None else batch_size)
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch!r}")
        if batch_size is not None and batch_size != batch:
            raise ValueError(f"batch_size={batch_size} but the inputs have {batch} samples")
        return given, int(batch)

    def _check_precision(self, drives):
        """Refuse parameters the state precision cannot hold (they would
        become inf, or a threshold 0, silently)."""
        for pop in self.populations:
            if not pop.is_input:
                pop.neuron.constants(self.dtype)
                real_array(f"bias of {pop.name!r}", pop.bias, self.dtype)
                real_array(f"v_init of {pop.name!r}", pop.v_init, self.dtype)
                if pop.name in drives:
                    real_array(f"bias + drive of {pop.name!r}", pop.bias + drives[pop.name], self.dtype)
        for source in self.sources:
            real_array(f"Poisson weight onto {source.target.name!r}", source.weight, self.dtype)

    def _record(self, asked, var):
        """``[(population, indices, var)]`` for ``record_v`` / ``record_i``."""
        record, label = [], f"record_{var}"
        for key, idx in dict(asked or {}).items():
            pop = self[key] if isinstance(key, str) else key
            if not isinstance(pop, Population) or pop not in self.populations or pop.is_input:
                raise ValueError(f"{label} keys must be neuron populations of this graph, got {key!r}")
            if var == "i" and not pop.neuron.has_current:
                raise ValueError(
                    f"record_i: population {pop.name!r} ({pop.neuron!r}) has no synaptic current"
                )
            idx = np.atleast_1d(np.asarray(idx))
            if (
                idx.dtype.kind not in "iu"
                or idx.ndim != 1
                or (len(idx) and (idx.min() < 0 or idx.max() >= pop.n))
            ):
                raise ValueError(f"{label}[{pop.name!r}] must be indices in [0, {pop.n}), got {idx!r}")
            record.append((pop, idx.astype(np.int64), var))
        return record


class _Plan:
    """A graph flattened into the kernel's arrays (``kernels.graph``).
    Projections' arrays are rebound to views into the concatenated ones, so
    connectivity is held once."""

    def __init__(self, graph: Graph):
        dtype = graph.dtype
        self.graph, self.dtype = graph, dtype
        order = graph._order()
        self.order = order
        self.pop_index = {p.name: k for k, p in enumerate(order)}
        sizes = np.array([p.n for p in order], np.int64)
        self.pop_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.n_inputs = sum(p.is_input for p in order)
        neurons = [p.neuron or LIF(beta=1.0) for p in order]  # inputs: placeholders, never read
        self.thr = np.array([n.threshold for n in neurons], dtype)
        self.reset_mode = np.array([n.reset_code for n in neurons], np.int64)
        self.v_reset = np.array([n.v_reset for n in neurons], dtype)
        self.refractory = np.array([n.refractory for n in neurons], np.int64)
        self.has_cur = np.array([n.has_current for n in neurons], np.bool_)
        self.has_ref = np.array([n.refractory > 0 for n in neurons], np.bool_)
        self.width = 4 if (self.has_cur.any() or self.has_ref.any()) else 2
        self.neurons = neurons
        self.biases = [
            np.zeros(1) if p.is_input else (p.bias[:1] if np.all(p.bias == p.bias[0]) else p.bias)
            for p in order
        ]  # one value when shared: no per-neuron reads
        self.v_init = np.concatenate([np.zeros(p.n) if p.is_input else p.v_init for p in order]).astype(dtype)
        self._flatten_projections(graph, order)
        bg = sorted(graph.sources, key=lambda s: self.pop_index[s.target.name])
        self.bg_ptr = np.searchsorted(
            [self.pop_index[s.target.name] for s in bg], np.arange(len(order) + 1)
        ).astype(np.int64)
        self.bg_lam = np.array([s.events_per_step(graph.dt) for s in bg], np.float64)
        self.bg_w = np.array([s.weight for s in bg], dtype)

    def _flatten_projections(self, graph, order):
        """One kernel projection per (projection, delay group), sorted by
        target; weights are stored only for groups without a shared weight,
        and a convolution's kernel (``proj_kind`` CONV, its geometry and tap
        tables in ``proj_geom`` and ``tap_*``, see ``kernels.graph``)."""
        rows = sorted(
            (
                (self.pop_index[p.target.name], self.pop_index[p.source.name], g, p)
                for p in graph.projections
                for g in range(len(p.delays))
            ),
            key=lambda r: r[0],
        )
        groups = [_kernel_group(p, g) for _, _, g, p in rows]
        conv = [p.kind == "conv" for *_, p in rows]
        self.in_ptr = np.searchsorted([r[0] for r in rows], np.arange(len(order) + 1)).astype(np.int64)
        self.in_proj = np.arange(len(rows), dtype=np.int64)
        self.proj_src = np.array([r[1] for r in rows], np.int64)
        self.proj_delay = np.array([d for d, *_ in groups], np.int64)
        self.proj_kind = np.array([kernels.CONV if c else kernels.CSR for c in conv], np.int64)
        n_syn = [len(cols) for _, _, cols, _ in groups]
        syn_off = np.concatenate(([0], np.cumsum(n_syn))).astype(np.int64)
        self.proj_rp = np.concatenate(([0], np.cumsum([len(r) for _, r, _, _ in groups])))[:-1].astype(
            np.int64
        )
        self.rowptr = np.concatenate(
            [r + syn_off[k] for k, (_, r, _, _) in enumerate(groups)] or [np.zeros(1, np.int64)]
        )
        w_off = np.concatenate(([0], np.cumsum([len(w) if w is not None else 0 for *_, w in groups]))).astype(
            np.int64
        )
        # CSR synapse s reads weights[s + proj_woff]; a kernel starts at weights[proj_woff]
        self.proj_woff = np.where(conv, w_off[:-1], w_off[:-1] - syn_off[:-1]).astype(np.int64)
        self.proj_shared = np.array([p.weight is not None if p.kind == "csr" else False for *_, p in rows])
        self.proj_w = np.array(
            [p.weight if p.kind == "csr" and p.weight is not None else 0.0 for *_, p in rows], self.dtype
        )
        self._tap_tables(rows)
        del groups
        # Hold the connectivity once: each group is copied into the plan's arrays and the
        # projection rebound to a view at once, so its own array is freed before the next
        # copy (the build's peak stays near one copy of the synapses).
        self.cols = np.empty(syn_off[-1], np.int32)
        self.weights = np.empty(w_off[-1], np.float32)
        for k, (_, _, g, p) in enumerate(rows):
            if p.kind == "conv":
                self.weights[w_off[k] : w_off[k + 1]] = _kernel_group(p, g)[3]
                continue
            d, rowptr, cols, w = p.groups[g]
            self.cols[syn_off[k] : syn_off[k + 1]] = cols
            view_w = None
            if w is not None:
                view_w = self.weights[w_off[k] : w_off[k + 1]]
                view_w[:] = w
                view_w.flags.writeable = False
            view_cols = self.cols[syn_off[k] : syn_off[k + 1]]
            view_cols.flags.writeable = False  # the projection's handle reads, never writes, the plan
            new = list(p.groups)
            new[g] = (d, rowptr, view_cols, view_w)
            del cols, w
            object.__setattr__(p, "groups", tuple(new))

    def _tap_tables(self, rows):
        """Geometry and spatial tap tables of the convolutions (zeros for the
        other projections): projection ``k``'s input position ``p`` has
        ``tap_n[tap_off[k] + p]`` taps, ``tap_pixel`` / ``tap_kernel`` rows
        ``tap_off[k] + p``."""
        self.proj_geom = np.zeros((max(len(rows), 1), 15), np.int64)
        tables = []
        offset = 0
        self.tap_off = np.zeros(len(rows), np.int64)
        for k, (*_, p) in enumerate(rows):
            if p.kind == "conv":
                self.proj_geom[k] = p.geom
                self.tap_off[k] = offset
                tables.append(kernels.spatial_taps(p.geom))
                offset += len(tables[-1][0])
        width = max([t[1].shape[1] for t in tables], default=1)
        self.tap_n = np.concatenate([t[0] for t in tables] or [np.zeros(1, np.int64)])
        self.tap_pixel = np.zeros((max(offset, 1), width), np.int64)
        self.tap_kernel = np.zeros((max(offset, 1), width), np.int64)
        for k, (n, pixel, tap) in zip(
            np.flatnonzero([r[3].kind == "conv" for r in rows]), tables, strict=True
        ):
            at = self.tap_off[k]
            self.tap_pixel[at : at + len(n), : pixel.shape[1]] = pixel
            self.tap_kernel[at : at + len(n), : tap.shape[1]] = tap

    def modes(self, force: str | None) -> list[str]:
        """The path each population (in plan order) runs: ``"input"``,
        ``"event"`` or ``"clock"``."""
        out = []
        for k, pop in enumerate(self.order):
            mode = force or pop.mode
            if pop.is_input:
                mode = "input"
            elif mode == "auto":
                mode = (
                    "clock"
                    if self.bg_lam[self.bg_ptr[k] : self.bg_ptr[k + 1]].sum() >= CLOCK_BACKGROUND
                    else "event"
                )
            out.append(mode)
        return out

    def bias_rows(self, batch, drives) -> tuple[np.ndarray, np.ndarray]:
        """The bias of every sample as the kernel reads it, ``[B, nb]`` of
        the state dtype, and its offsets ``[P + 1]``: one value for a
        population whose neurons share it, else one per neuron; a driven
        population's is its bias plus the sample's drive (summed in float64)."""
        parts = [
            self.order[k].bias + drives[pop.name]
            if pop.name in drives
            else np.broadcast_to(b, (batch, len(b)))
            for k, (pop, b) in enumerate(zip(self.order, self.biases, strict=True))
        ]
        offsets = np.concatenate(([0], np.cumsum([part.shape[1] for part in parts]))).astype(np.int64)
        return np.concatenate(parts, axis=1).astype(self.dtype), offsets

    def run(self, n_steps, given, batch, seed, record, progress, force_mode, drives):
        dtype = self.dtype
        bias, bias_off = self.bias_rows(batch, drives)
        modes = self.modes(force_mode)
        pop_clock = np.array([m == "clock" for m in modes], np.bool_)
        tables = np.stack([n.propagator(n_steps, dtype) for n in self.neurons])
        n_total = int(self.pop_start[-1])
        n_pops = len(self.order)
        in_tptr, in_idx = self._input_arrays(given, batch, n_steps)
        rec_ids = np.concatenate(
            [self.pop_start[self.pop_index[p.name]] + idx for p, idx, _ in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        rec_pop = np.concatenate(
            [np.full(len(idx), self.pop_index[p.name]) for p, idx, _ in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        rec_var = np.concatenate(
            [np.full(len(idx), int(var == "i")) for _, idx, var in record] or [np.zeros(0, np.int64)]
        ).astype(np.int64)
        state = np.empty((batch, n_total, self.width), dtype)
        acc = np.zeros((batch, n_total), dtype)
        mark = np.zeros((batch, n_total), np.uint8)
        touched = np.empty((batch, n_total + 1), np.int32)
        head = np.empty((batch, n_pops, n_steps + 1), np.int32)
        nxt = np.empty((batch, n_total), np.int32)
        prv = np.empty((batch, n_total), np.int32)
        due = np.empty((batch, n_total), np.int32)
        rng = np.stack([kernels.seed_state(seed, s) for s in range(batch)])
        hist_ptr = np.zeros((batch, n_steps, n_pops + 1), np.int64)
        hist_idx = np.empty((batch, 2 * n_total + min(n_total * n_steps // 1000, 1 << 24)), np.int32)
        rec_v = np.zeros((batch, n_steps, len(rec_ids)), dtype)
        counts = np.zeros((batch, n_pops, 4), np.int64)
        progress_at = np.zeros((batch, 2), np.int64)
        for s in range(batch):
            kernels.graph_init(
                self.pop_start,
                self.n_inputs,
                self.thr,
                self.has_cur,
                self.has_ref,
                tables,
                bias[s],
                bias_off,
                self.v_init,
                state[s],
                head[s],
                nxt[s],
                prv[s],
                due[s],
            )
        bar = _progress_bar(progress, n_steps, n_total * n_steps * batch)
        chunk = n_steps if bar is None else max(1, n_steps // 100)
        start = time.perf_counter()
        t_end = 0
        while t_end < n_steps:
            t_end = min(n_steps, t_end + chunk)
            while progress_at[:, 1].min() < t_end:
                kernels.graph_run(
                    t_end,
                    self.pop_start,
                    self.n_inputs,
                    self.thr,
                    self.reset_mode,
                    self.v_reset,
                    self.refractory,
                    self.has_cur,
                    self.has_ref,
                    pop_clock,
                    tables,
                    bias,
                    bias_off,
                    self.in_ptr,
                    self.in_proj,
                    self.proj_src,
                    self.proj_delay,
                    self.proj_rp,
                    self.proj_w,
                    self.proj_shared,
                    self.rowptr,
                    self.cols,
                    self.weights,
                    self.proj_woff,
                    self.proj_kind,
                    self.proj_geom,
                    self.tap_off,
                    self.tap_n,
                    self.tap_pixel,
                    self.tap_kernel,
                    self.bg_ptr,
                    self.bg_lam,
                    self.bg_w,
                    rec_ids,
                    rec_pop,
                    rec_var,
                    in_tptr,
                    in_idx,
                    state,
                    acc,
                    mark,
                    touched,
                    head,
                    nxt,
                    prv,
                    due,
                    rng,
                    hist_ptr,
                    hist_idx,
                    rec_v,
                    counts,
                    progress_at,
                )
                if progress_at[:, 1].min() < t_end:  # the spike history is full: grow it
                    grown = np.empty((batch, 2 * hist_idx.shape[1]), np.int32)
                    grown[:, : hist_idx.shape[1]] = hist_idx
                    hist_idx = grown
            if bar is not None:
                bar.update(t_end - bar.n)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        return GraphResult.from_history(
            self, n_steps, hist_ptr, hist_idx, counts, rec_v, record, seconds, modes
        )

    def _input_arrays(self, given, batch, n_steps):
        """Per-sample input spikes with global ids, sorted within each step."""
        if not given:
            return np.zeros((batch, n_steps + 1), np.int64), np.zeros((batch, 1), np.int32)
        parts = []
        for name, trains in given.items():
            ev = trains.to_events()
            ev[:, 2] += self.pop_start[self.pop_index[name]]
            parts.append(ev)
        ev = np.concatenate(parts)
        ev = ev[np.lexsort((ev[:, 2], ev[:, 0], ev[:, 1]))]
        merged = SpikeTrains._from_sorted(
            ev[:, 1], ev[:, 0], ev[:, 2], n_steps, batch, int(self.pop_start[-1])
        )
        idx = merged.idx if merged.idx.shape[1] else np.zeros((batch, 1), np.int32)
        return merged.tptr, idx


def _progress_bar(progress, n_steps, work):
    """A tqdm bar over the steps, or None. ``"auto"``: for runs of about a
    second or more (``work`` neuron-steps), and only if tqdm is installed."""
    auto = progress == "auto"
    if auto:
        progress = work >= 2e8
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        if auto:
            return None
        raise ImportError("progress=True needs tqdm: pip install tqdm (or pass progress=False)") from err
    return tqdm(total=n_steps, unit="step", desc="simulating", leave=False)


def _kernel_group(proj, g):
    """Delay group ``g`` of a projection as the plan flattens it: ``(delay,
    rowptr, cols, weights)``; a convolution has no rows, its kernel as weights."""
    if proj.kind == "conv":
        return (proj.delay, np.zeros(0, np.int64), np.zeros(0, np.int32), kernel_layout(proj.kernel))
    return proj.groups[g]


def _per_neuron(label, value, n):
    arr = real_array(label, value)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{label} must be a scalar or have shape ({n},), got {arr.shape}")
    return owned(arr)


def _checked_csr(connectivity, n_source, n_target):
    try:
        rowptr, cols = connectivity
    except (TypeError, ValueError):
        raise TypeError("connectivity must be a (rowptr, cols) pair (CSR by presynaptic neuron)") from None
    return checked_csr(rowptr, cols, n_source, n_target)


def _checked_delay(delay, n_syn, onto_itself):
    d = np.asarray(delay)
    if d.dtype.kind == "f" and np.all(np.isfinite(d)) and np.all(d == np.round(d)):
        d = d.astype(np.int64)
    if d.dtype.kind not in "iu" or d.dtype == np.bool_:
        raise ValueError(f"delay must be an integer number of steps, got {delay!r}")
    if d.ndim not in (0, 1) or (d.ndim == 1 and d.shape != (n_syn,)):
        raise ValueError(f"delay must be a scalar or one value per synapse ({n_syn}), got shape {d.shape}")
    if d.size and d.min() < 0:
        raise ValueError(f"delay must be >= 0 steps, got {int(d.min())}")
    if onto_itself and d.size and d.min() < 1:
        raise ValueError(
            "delay < 1 on a recurrent projection (a population onto itself): "
            "a spike cannot arrive in the step that emitted it"
        )
    return d.astype(np.int64)


def _split_by_delay(rowptr, cols, weights, delay):
    """CSR groups per distinct delay (order within a row kept)."""
    if delay.ndim == 0 or len(np.unique(delay)) <= 1:
        d = int(delay) if delay.ndim == 0 else (int(delay[0]) if len(delay) else 1)
        return ((d, rowptr, cols, weights),)
    pre = np.repeat(np.arange(len(rowptr) - 1), np.diff(rowptr))
    groups = []
    for d in np.unique(delay):
        keep = delay == d
        sub_rowptr = np.zeros_like(rowptr)
        np.cumsum(np.bincount(pre[keep], minlength=len(rowptr) - 1), out=sub_rowptr[1:])
        parts = (sub_rowptr, cols[keep], None if weights is None else weights[keep])
        groups.append((int(d), *(None if a is None else owned(a) for a in parts)))
    return tuple(groups)
