"""Networks that are graphs: named populations joined by projections with
integer delays (a population onto itself included), spike inputs and Poisson
background drive, run event-driven or by the clock-driven reference.

::

    g = snn.Graph(dt=1e-4)                       # seconds per step
    exc = g.population(800, snn.LIF(tau_mem=20e-3, dt=1e-4, threshold=20.0), name="exc")
    g.connect(exc, exc, 0.5, connectivity=snn.fixed_probability(800, 800, 0.1, seed=1))
    g.poisson_input(exc, n_trains=100, rate=20.0, weight=0.5)
    result = g.run(T=10_000, seed=0)             # 1 s of biological time
    result.rate_hz("exc"), result.isi_cv("exc")

Spikes of population ``a`` at step ``t`` reach population ``b`` at step
``t + d`` through a projection of delay ``d``; ``d = 0`` (same step, as in
a feed-forward stack) is allowed only where zero-delay projections form no
cycle, so the step stays well defined.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

import snn_kernels as kernels

from .._validate import (
    DTYPES,
    KeepsReadOnly,
    checked_csr,
    numba_threads,
    owned,
    positive_int,
    real_array,
    run_extent,
)
from ..run.paths import prepare_batches
from ..run.reference import run_graph_reference
from ..run.result import RunResult
from ..run.schedule import STREAM_EPOCH, Simulation, Stage, stages
from ..run.schedule import run as run_schedule
from ..run.spiketrains import SpikeTrains
from ..run.stepped import zero_delay_order
from .conv import MaxPool2d, conv_fan_out, conv_geometry, conv_weight
from .neurons import LIF, Neuron

POP_MODES = ("auto", "event", "clock", "dense")
# Poisson background events per step onto one population, at most: each is
# delivered one by one (a larger count would run for hours, or overflow)
MAX_BACKGROUND_EVENTS = 2.0**31


@dataclass(frozen=True, eq=False)
class Population:
    """A group of neurons of one model (``neuron``), or of inputs whose
    spikes are given to :meth:`Graph.run`, or a max-pool gate (``pool``, no
    neurons: it passes spikes of its source). A handle: create it with
    :meth:`Graph.population`, :meth:`Graph.input` or :meth:`Graph.max_pool`."""

    name: str
    n: int
    neuron: Neuron | None
    bias: np.ndarray | None  # [n] potential added every step
    v_init: np.ndarray | None  # [n] membrane before step 0
    mode: str = "auto"  # "event", "clock", "dense" or "auto" (see Graph.population)
    shape: tuple | None = None  # (C, H, W) of a population laid out as an image (channel-first), else None
    pool: MaxPool2d | None = None  # a max-pool gate's windows, else None

    @property
    def is_input(self) -> bool:
        return self.neuron is None and self.pool is None

    @property
    def has_neurons(self) -> bool:
        return self.neuron is not None

    def __repr__(self):
        model = "input" if self.is_input else repr(self.neuron or self.pool)
        size = "x".join(map(str, self.shape)) if self.shape else f"{self.n:,}"
        return f"Population({self.name!r}, n={size}, {model})"


@dataclass(frozen=True, eq=False)
class Projection(KeepsReadOnly):
    """Synapses from ``source`` to ``target``, stored as CSR by presynaptic
    neuron, one group per distinct delay: ``groups[g] = (delay, rowptr int64
    [n_source + 1], cols int32 [n_syn] target indices, weights float32 [n_syn]
    or None)``; ``weight`` is the value every synapse shares when
    ``weights`` is None (then synapses cost 4 bytes each: their target).
    ``rows``: a fully connected projection's weights ``[n_source, n_target]``
    float32 (zeros included; ``groups``' weights are a view of them), which
    a population run as a layer reads by the dense kernels (contiguous
    rows); None otherwise."""

    source: Population
    target: Population
    groups: tuple
    weight: float | None
    name: str
    rows: np.ndarray | None = None

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
class ConvProjection(KeepsReadOnly):
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


@dataclass(frozen=True, eq=False)
class MaxPoolProjection:
    """The spikes of ``source`` (an image ``(C, H, W)``) gated by max pooling
    onto the gate population ``target`` (rule in ``kernels.pool``; windows
    ``target.pool``), in the same step. Create it with :meth:`Graph.max_pool`."""

    source: Population
    target: Population
    name: str

    kind = "maxpool"
    weights_shared = False
    delays = (0,)
    n_synapses = 0  # a gate compares spike counts: no synaptic operation
    nbytes = 0

    def __repr__(self):
        return f"MaxPoolProjection({self.source.name!r} -> {self.target.name!r}, {self.target.pool!r})"


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

    _edits = 0  # edits so far (see _edited): what was made from the graph as it was is stale after one

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
        self._held = None  # (populations, sources) whose parameters the precision holds (read-only arrays)

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
            every few steps), ``"dense"`` (clock-driven, the input of all
            steps summed by one BLAS product: for a population run as a
            layer; a stepped one runs ``"clock"``), or ``"auto"``: for a
            population run as a layer, the cheapest path for the run's
            measured input (the cost model of ``snn.run.paths``); for a stepped
            one, clock if it is recorded and fed from outside its stage (its
            membrane is read every step; the path then does not depend on
            where a run is cut), the cost model for another fed from outside
            (a recorded merge's sources are outside it), and for one in a cycle
            clock when Poisson background alone reaches each neuron at least
            every ``1 / CLOCK_BACKGROUND`` steps on average, else event. A
            merge run as a layer (several projections, or one of several
            delays, all from outside its cycle; no Poisson background; not
            recorded) delivers its input spikes event by event (work in
            proportion to SynOps) into the currents of every step, then sweeps
            every neuron every step: ``"auto"``, ``"clock"`` and ``"dense"``
            all run it so (its counts say ``"clock"``); ``"event"`` (its own, or
            the run's ``mode=``) steps it on the graph kernel's event path
            instead. All give the same spikes (sums may round differently).
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
            from :mod:`snn.model.connectivity`; ``rowptr`` ``[n_source + 1]``,
            ``cols`` target indices); then ``weight`` is a scalar shared by
            all synapses or one value per synapse in CSR order. ``None``:
            ``weight`` is a dense ``[n_target, n_source]`` matrix (torch
            layout) whose non-zero entries are the synapses. ``"all"``: the
            same matrix, every entry a synapse (zeros included: counted as
            SynOps, as a stack's ``Linear`` counts them), kept as dense rows
            that a population run as a layer delivers by the fully connected
            kernels (fastest for dense weights).
        delay : steps from a spike to its arrival, an integer >= 0 (>= 1 on
            a projection that closes a cycle), or one per synapse.
        """
        self._check_pair(source, target)
        name = self._projection_name(name, source, target)
        if isinstance(connectivity, str):
            if connectivity != "all":
                raise ValueError(f"connectivity must be (rowptr, cols), None or 'all', got {connectivity!r}")
            w = real_array("weight", weight, np.float32, ndim=2)
            if w.shape != (target.n, source.n):
                raise ValueError(
                    f"a dense weight matrix must be [n_target, n_source] = "
                    f"[{target.n}, {source.n}], got {w.shape}"
                )
            return self._connect_all(source, target, owned(w.T), delay, name)
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

    def _connect_all(self, source, target, rows, delay, name) -> Projection:
        """A fully connected projection of the read-only float32 ``rows``
        ``[n_source, n_target]`` (held, not copied: the caller's own)."""
        n_syn = rows.size
        delay = _checked_delay(delay, n_syn, source is target)
        cols = np.tile(np.arange(target.n, dtype=np.int32), source.n)
        cols.flags.writeable = False
        rowptr = np.arange(source.n + 1, dtype=np.int64) * target.n
        rowptr.flags.writeable = False
        weights = rows.reshape(-1)  # a read-only view, in CSR order
        groups = _split_by_delay(rowptr, cols, weights, delay)
        dense = rows if len(groups) == 1 else None  # per-synapse delays: CSR groups only
        return self._add_projection(Projection(source, target, groups, None, name, dense))

    def _check_pair(self, source, target):
        for role, pop in (("source", source), ("target", target)):
            if not isinstance(pop, Population) or pop not in self.populations:
                raise ValueError(f"{role} must be a population of this graph, got {pop!r}")
        if target.is_input:
            raise ValueError(f"target {target.name!r} is an input population; inputs receive no synapses")
        if target.pool is not None:
            raise ValueError(
                f"target {target.name!r} is a max-pool gate; it receives its source's spikes only"
            )

    def _projection_name(self, name, source, target) -> str:
        """``name`` (refused if a projection has it: results count
        projections by name), or ``"source->target"``, with ``#2``, ``#3``...
        after it when that pair is joined again."""
        taken = {p.name for p in self.projections}
        if name is not None:
            if not isinstance(name, str) or name in taken:
                raise ValueError(
                    f"projection names must be unique strings: {name!r} is taken or not a string"
                )
            return name
        base = name = f"{source.name}->{target.name}"
        k = 2
        while name in taken:
            name, k = f"{base}#{k}", k + 1
        return name

    def _add_projection(self, proj):
        """Add ``proj`` unless its zero delays close a cycle."""
        self.projections.append(proj)
        try:
            self._order()
        except ValueError:
            self.projections.pop()
            raise
        self._edited()
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
            source, target, geom, conv_weight(geom, w), int(d), self._projection_name(name, source, target)
        )
        return self._add_projection(proj)

    def max_pool(
        self, source: Population, kernel_size, stride=None, padding=0, name: str | None = None
    ) -> Population:
        """Add a max-pool gate over ``source`` (a population made with a
        shape ``(C, H, W)``): windows of ``torch.nn.MaxPool2d(kernel_size,
        stride, padding)`` (overlapping ones included; ``stride`` defaults to
        ``kernel_size``); in each step a window passes one spike if an input
        of it spiked and that input's spike count is the window's highest
        so far (``kernels.pool``). Returns the gate, a population of shape
        ``(C, H_out, W_out)`` without neurons: project from it like from any
        population. Its counts: no SynOps, ``updates`` = gate evaluations."""
        if not isinstance(source, Population) or source not in self.populations:
            raise ValueError(f"source must be a population of this graph, got {source!r}")
        if source.shape is None:
            raise ValueError(
                f"max pooling needs a population made with a shape (C, H, W); {source.name!r} has none"
            )
        name = self._name(name)
        pool = MaxPool2d(source.shape, kernel_size, stride, padding, name=name)
        gate = self._add(Population(name, pool.n_out, None, None, None, shape=pool.out_shape, pool=pool))
        self._add_projection(MaxPoolProjection(source, gate, f"{source.name}->{name}"))
        return gate

    def poisson_input(self, target: Population, n_trains: int, rate: float, weight: float) -> PoissonInput:
        """Drive every neuron of ``target`` with ``n_trains`` independent
        Poisson trains of ``rate`` Hz, each event adding ``weight``. Per step
        the population's event count is drawn once and the events are spread
        uniformly over its neurons, which is exactly independent trains."""
        if not isinstance(target, Population) or target not in self.populations or not target.has_neurons:
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
        self._edited()
        return source

    @classmethod
    def from_network(cls, network, dt: float = 1e-3) -> Graph:
        """The graph of a stack (a stack is a chain): an input population
        ``"input"`` (``"<input>"`` if a layer has that name; shaped like the
        first layer's input), one population per
        layer named ``network.layer_name(k)`` with its neuron, bias,
        ``v_init`` and mode, joined by zero-delay projections: a ``Linear``
        fully connected (``connectivity="all"``, its weight rows shared with
        the layer, not copied), a ``SparseLinear`` its CSR, a ``Conv2d`` or
        ``AvgPool2d`` a convolution, a ``MaxPool2d`` a gate. It is the graph
        :meth:`snn.Network.run` runs: the same spikes and counts."""
        graph = cls(dt, network.dtype)
        first = network.layers[0]
        taken = {network.layer_name(k) for k in range(len(network.layers))}
        name = "input" if "input" not in taken else "<input>"  # a layer may be named "input"
        source = graph.input(getattr(first, "in_shape", first.n_in), name=name)
        for k, layer in enumerate(network.layers):
            name = network.layer_name(k)
            if layer.kind == "maxpool":
                source = graph.max_pool(source, layer.kernel_size, layer.stride, layer.padding, name=name)
                continue
            target = graph.population(
                getattr(layer, "out_shape", layer.n_out),
                layer.neuron,
                bias=layer.bias,
                v_init=layer.v_init,
                name=name,
                mode=layer.mode,
            )
            if layer.kind == "conv":
                (sy, sx), (py, px), (dy, dx) = (
                    tuple(int(v) for v in layer.geom[f : f + 2]) for f in (8, 10, 12)
                )
                graph.conv(
                    source,
                    target,
                    layer.weight,
                    stride=(sy, sx),
                    padding=(py, px),
                    dilation=(dy, dx),
                    groups=int(layer.geom[14]),
                    delay=0,
                )
            elif layer.kind == "dense":
                graph._check_pair(source, target)
                graph._connect_all(source, target, layer.weight_rows, 0, f"{source.name}->{target.name}")
            else:
                graph.connect(source, target, layer.weights, connectivity=(layer.rowptr, layer.cols), delay=0)
            source = target
        return graph

    def _edited(self):
        """Forget the plan made from the graph as it was and count the edit
        (``_edits``), by which what others keep for the graph (the early
        exit's plans, ``snn.convert.stopping``) is made again."""
        self._plan = None
        self._edits += 1

    def _add(self, pop):
        self.populations.append(pop)
        self._edited()
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
        return sum(p.n for p in self.populations if p.has_neurons)

    @property
    def readout(self) -> str | None:
        """The name of the last population with neurons (whose membrane a
        result holds), or None."""
        for pop in reversed(self.populations):
            if pop.neuron is not None:
                return pop.name
        return None

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
        return zero_delay_order(self.populations, self.projections)

    def schedule(self, stepped=(), together: bool = False) -> list[Stage]:
        """How an event run proceeds (see :mod:`snn.run.schedule`): the stages
        in run order, each a population run as a layer over all steps or
        populations stepped together; ``stepped``: populations (or names)
        that must be stepped (those whose variables are recorded);
        ``together``: every population stepped in one stage."""
        key = ("stages", frozenset(p if isinstance(p, str) else p.name for p in stepped), bool(together))
        if self._plan is None or self._plan[0] != key:
            self._plan = None  # the old plans' arrays are freed before the new ones are made
            self._plan = (key, stages(self, key[1], key[2]))
        return self._plan[1]

    # -- running -------------------------------------------------------------

    def prepare(self) -> float:
        """Compile (or load from the cache) the kernels a run uses, serial
        and parallel, and those reading its result (the final membrane,
        brought forward when first read: ``kernels.settle``); returns the
        seconds it took. Cold, a forked process compiles the readout's
        kernel while this one compiles the run's (``kernels.precompile``)."""
        start = time.perf_counter()

        def run(batch):
            result = self.run(
                T=2,
                batch_size=batch,
                progress=False,
                inputs={p: np.zeros((2, batch, p.n), np.uint8) for p in self.populations if p.is_input},
            )
            _ = result.membrane

        kernels.precompile([lambda: run(1), self._prepare_readout])
        prepare_batches()
        for batch in (1, 2):
            run(batch)
        return time.perf_counter() - start

    def _prepare_readout(self) -> None:
        """Compile ``kernels.settle`` for the arrays the membrane readout
        passes it (``Simulation.membrane``: a copy of the state rows, the
        bias as one contiguous row or a column slice of several rows, a
        propagator table) without running the graph: on no neuron, so that
        nothing is computed."""
        state = np.zeros((1, 0, 2), self.dtype)
        table = np.zeros((1, 5), self.dtype)
        for bias in (np.zeros((1, 1), self.dtype), np.zeros((2, 2), self.dtype)[:, :1]):
            kernels.settle(state, -1, bias, table, False, False)

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
        first_sample: int = 0,
    ) -> RunResult:
        """Simulate ``T`` steps.

        inputs : ``{population or name: spikes}``, one entry per input
            population, spikes 0/1 ``[T, B, n]``.
        drive : ``{population or name: x}``, a constant current ``x``
            ``[B, n]`` (potential units, float64) added at every step to each
            neuron of a neuron population, one row per sample (an analog
            input, e.g. an image already multiplied by the first weights:
            a per-sample bias, added to the population's own); or ``[T, B,
            n]``, a current varying over the steps (added to the synaptic
            input of each step, in the state precision; the population runs
            as a layer on the dense path, so it must not be recorded nor in
            a cycle or merge).
        batch_size : samples (independent copies of the network, each with
            its own background draws); default the batch of the inputs or
            drives, else 1.
        seed : integer >= 0; Poisson source ``g`` of sample ``s`` draws from
            stream ``(seed, first_sample + s, g)``, so results depend neither
            on threads, backend nor schedule.
        first_sample : the index of this batch's first sample in a larger
            batch run in parts (``snn.distributed.run`` splits a batch so):
            each part then draws the background of the whole batch's run.
        record_v : ``{population or name: neuron indices}``: membrane of
            these neurons at the end of every step (after reset).
        record_i : the same for the synaptic current (CubaLIF populations).
        backend : ``"event"`` or ``"reference"`` (clock-driven oracle).
        mode : ``"event"``, ``"clock"``, ``"dense"`` or ``"auto"`` for every
            population (default: each population's own ``mode``).
        progress : show a progress bar (tqdm); ``"auto"``: for long runs.
        n_threads : cores used over the samples (default: all).
        """
        if backend not in ("event", "reference"):
            raise ValueError(f"backend must be 'event' or 'reference', got {backend!r}")
        T, trains, batch, drives, record = self._checked(
            T, inputs, drive, batch_size, seed, record_v, record_i, mode, first_sample=first_sample
        )
        seed = (int(seed), int(first_sample)) if first_sample else int(seed)
        with numba_threads(n_threads):
            return self._run(T, trains, batch, drives, record, seed, backend, mode, progress)

    def _run(
        self, T, trains, batch, drives, record, seed, backend, mode, progress, macs=None, stack=False
    ) -> RunResult:
        """:meth:`run` on arguments already checked (``trains`` and
        ``drives`` by population name, ``record`` as :meth:`_record` makes
        it, ``seed`` an int or ``(seed, first_sample)``): what
        :meth:`snn.Network.run` calls after checking its own. ``macs``:
        multiply-accumulates done outside the graph on analog input (``[B]``
        by population name: a stack's first layer), counted in the result;
        ``stack``: the event run's result is the stack's
        (:meth:`snn.run.schedule.Simulation._result`)."""
        if backend == "reference":
            result = run_graph_reference(self, T, trains, batch, seed, record, drives=drives)
            for k, name in enumerate(result.names):
                if name in (macs or {}):
                    result.counts[k] = dataclasses.replace(result.counts[k], macs=macs[name])
            return result
        plan = self.schedule([pop for pop, _, _ in record])
        return run_schedule(self, plan, T, trains, batch, seed, record, progress, mode, drives, macs, stack)

    def start(
        self,
        T: int,
        *,
        inputs=None,
        drive=None,
        batch_size: int | None = None,
        seed: int = 0,
        record_v=None,
        record_i=None,
        mode: str | None = None,
        n_threads: int | None = None,
        together: bool = False,
        history: int | None = None,
        epoch: int | None = None,
        count_spikes=(),
        observers=(),
    ) -> Simulation:
        """A run of ``T`` steps to advance chunk by chunk
        (:meth:`snn.run.schedule.Simulation.advance`), its state carried from
        one chunk to the next: cut anywhere, it computes what :meth:`run`
        computes (on the same schedule: layers stay layers), and
        ``result()`` after ``t`` steps is a run of ``t`` steps. Arguments as
        :meth:`run` takes them; ``mode="auto"`` chooses each population's
        path on the first chunk's activity. ``together``: step every
        population together in one kernel (no layers; gates refused), so
        that a chunk costs one kernel call: for many short chunks (an early
        exit checking every step), where a chunk's fixed costs dominate.

        Streaming: ``T=None`` runs without end. Input populations missing
        from ``inputs`` are fed chunk by chunk (``advance(steps,
        inputs=...)``), and ``advance(..., drive=...)`` changes drives
        between chunks. ``history``: the steps of spikes (and recordings)
        kept for ``window()`` and ``recorded()`` (default: all of a run of
        ``T`` steps, none of a stream); ``count_spikes``: names of
        populations whose spikes per neuron are counted over the whole run
        (``spike_counts()``); ``observers``: measurements updated after every
        chunk (:mod:`snn.run.observers`: ``SpikeCounts``, ``PopulationRate``,
        ``Callback``, or objects with their ``reset/update/keep/compute``);
        ``epoch``: steps between two settles of every
        neuron (default ``T``; 4096 for a stream), which bound the arrays a
        run holds, so that memory does not grow with the steps run."""
        T, trains, batch, drives, record = self._checked(
            T, inputs, drive, batch_size, seed, record_v, record_i, mode, stream=True
        )
        for name, value in (("history", history), ("epoch", epoch)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < (name == "epoch")
            ):
                raise ValueError(
                    f"{name} must be an integer >= {int(name == 'epoch')} or None, got {value!r}"
                )
        if epoch is not None:
            run_extent(int(epoch), batch, self.dtype)
        elif T is None:
            run_extent(STREAM_EPOCH, batch, self.dtype)
        counted = [count_spikes] if isinstance(count_spikes, str) else list(count_spikes)
        for name in counted:
            if not isinstance(name, str) or name not in {p.name for p in self.populations}:
                raise ValueError(f"count_spikes must name populations of this graph, got {name!r}")
        observers = (observers,) if hasattr(observers, "update") else tuple(observers)
        for obs in observers:
            if not all(callable(getattr(obs, m, None)) for m in ("reset", "update", "keep", "compute")):
                raise TypeError(
                    f"observers must have reset, update, keep and compute methods (snn.run.observers), "
                    f"got {obs!r}"
                )
        plan = self.schedule([pop for pop, _, _ in record], together)
        return Simulation(
            self,
            plan,
            T,
            trains,
            batch,
            int(seed),
            record,
            mode,
            drives,
            n_threads,
            history,
            epoch,
            counted,
            observers,
        )

    def _checked(
        self, T, inputs, drive, batch_size, seed, record_v, record_i, mode, stream=False, first_sample=0
    ):
        """A run's arguments checked: ``(T, input trains by name, batch,
        drives by name, record)``; ``stream``: ``T`` may be None (no end)
        and inputs may be missing (fed chunk by chunk)."""
        if T is None and stream:
            if inputs:
                raise ValueError(
                    "a stream (T=None) takes its inputs chunk by chunk: advance(steps, inputs=...)"
                )
        elif isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T <= 0:
            raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
        if mode is not None and mode not in POP_MODES:
            raise ValueError(f"mode must be one of {POP_MODES} or None, got {mode!r}")
        for name, value in (("seed", seed), ("first_sample", first_sample)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if all(p.is_input for p in self.populations):
            raise ValueError("the graph has no neuron population (nor gate) to simulate")
        drives = self._drives(drive, T)
        sizes = sorted({x.shape[-2] for x in drives.values()})
        if len(sizes) > 1:
            raise ValueError(f"drives have different batch sizes {sizes}")
        if batch_size is None and not inputs and sizes:
            batch_size = sizes[0]
        trains, batch = self._inputs(inputs, T, batch_size, stream)
        if sizes and sizes != [batch]:
            raise ValueError(f"drives have {sizes[0]} samples but the run has {batch}")
        if T is not None:
            run_extent(int(T), batch, self.dtype)
        self._check_precision(drives)
        record = self._record(record_v, "v") + self._record(record_i, "i")
        return (None if T is None else int(T)), trains, batch, drives, record

    def _named(self, key):
        """The population a run's argument names: by name (None if the graph
        has none of that name, which the caller refuses with a ValueError
        of its own, as it does a key of any other type), or the key itself."""
        if isinstance(key, str):
            return next((p for p in self.populations if p.name == key), None)
        return key

    def _drives(self, drive, T=None) -> dict:
        """``{population name: [B, n] or [T, B, n] float64}``, checked (a
        drive over time only for a run of ``T`` steps)."""
        out = {}
        for key, x in dict(drive or {}).items():
            pop = self._named(key)
            if not isinstance(pop, Population) or pop not in self.populations or not pop.has_neurons:
                raise ValueError(f"drive keys must be neuron populations of this graph, got {key!r}")
            x = real_array(f"drive[{pop.name!r}]", x)
            if x.ndim == 3 and T is None:
                raise ValueError(
                    f"drive[{pop.name!r}] varies over time ([T, B, n]): give it for a run of T steps "
                    "(a stream, or advance(drive=...), takes constant drives [B, n])"
                )
            if x.ndim not in (2, 3) or x.shape[-1] != pop.n or (x.ndim == 3 and x.shape[0] != T):
                raise ValueError(
                    f"drive[{pop.name!r}] must be [batch, {pop.n}] (constant) or [T={T}, batch, {pop.n}], "
                    f"got shape {x.shape}"
                )
            out[pop.name] = x
        return out

    def _inputs(self, inputs, n_steps, batch_size, stream=False):
        inputs = dict(inputs or {})
        given = {}
        for key, spikes in inputs.items():
            pop = self._named(key)
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
        if missing and not stream:
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
        become inf, or a threshold 0, silently). The graph's own parameters
        (read-only, so checked once until the graph grows), then the drives."""
        held = (len(self.populations), len(self.sources))
        if getattr(self, "_held", None) != held:  # (graphs pickled before it lack the attribute)
            for pop in self.populations:
                if pop.has_neurons:
                    pop.neuron.constants(self.dtype)
                    real_array(f"bias of {pop.name!r}", pop.bias, self.dtype)
                    real_array(f"v_init of {pop.name!r}", pop.v_init, self.dtype)
            for source in self.sources:
                real_array(f"Poisson weight onto {source.target.name!r}", source.weight, self.dtype)
            self._held = held
        for name, drive in drives.items():
            real_array(f"bias + drive of {name!r}", self[name].bias + drive, self.dtype)

    def _record(self, asked, var):
        """``[(population, indices, var)]`` for ``record_v`` / ``record_i``."""
        record, label = [], f"record_{var}"
        for key, idx in dict(asked or {}).items():
            pop = self._named(key)
            if not isinstance(pop, Population) or pop not in self.populations or not pop.has_neurons:
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
