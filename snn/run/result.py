"""What a run returns: spikes, exact counts and recordings per population
(one type for stacks and graphs)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .spiketrains import SpikeTrains


@dataclass(frozen=True)
class LayerCounts:
    """Work done by one layer, per sample (arrays of shape [B], int64).

    synops : synaptic operations, one per weight added to a target because a
        spike arrived (input spikes x fan-out), whatever path ran.
    macs : multiply-accumulates on analog input (first layer only), counted
        for non-zero inputs; a constant input is multiplied once, not T times.
    updates : neuron state updates performed (lazy-leak advances and
        threshold checks; ``T * n`` on the clock-driven paths).
    dense_updates : what a clock-driven simulation would do, ``T * n``.
    spikes : output spikes.  input_events : input spikes received.
    mode : ``"event"``, ``"clock"``, ``"dense"`` or ``"gate"`` (max pooling):
        the path that ran; or ``"reference"``.
    """

    name: str
    mode: str
    synops: np.ndarray
    macs: np.ndarray
    updates: np.ndarray
    dense_updates: np.ndarray
    spikes: np.ndarray
    input_events: np.ndarray

    def total(self, field: str) -> int:
        return int(getattr(self, field).sum())


class RunResult:
    """What a run returns, for a stack (:meth:`snn.Network.run`) and a graph
    (:meth:`snn.Graph.run`) alike: spikes, exact counts and recordings per
    population, addressed by name or position.

    ``names`` the populations (a stack's: its layers, ``network.layer_name``;
    a graph's: every population in the order added, inputs included);
    ``trains[k]`` their spikes as time-CSR events; ``counts[k]`` their
    :class:`LayerCounts`; ``spikes(k)`` a ``[T, B, n]`` 0/1 raster;
    ``membrane`` the last neuron population's membrane at the end of the run,
    ``[B, n]`` (membrane readout; ``membrane`` may be given as a function
    that computes it, called when it is first read); ``v(name)`` / ``i(name)`` recorded
    membranes and synaptic currents ``[T, B, R]`` (``record_v`` /
    ``record_i``); ``dt`` seconds per step (None for a stack, which has no
    time unit: rates in Hz need one); ``seconds`` the simulation's wall time
    (compilation excluded once prepared; NaN where not measured);
    ``projection_synops`` the synaptic operations of each projection by its
    name, ``[B]`` int64 (a graph's, or a stack's graph's; empty where not
    counted; may be given as a function computing it when first read);
    ``counts`` may likewise be given as a function (with ``names``), called
    when first read.
    """

    def __init__(
        self,
        trains: list[SpikeTrains],
        counts: list[LayerCounts],
        membrane: np.ndarray | None,
        backend: str,
        *,
        names=None,
        recorded=None,
        recorded_i=None,
        dt: float | None = None,
        seconds: float = float("nan"),
        projection_synops=None,
    ):
        self.trains = trains
        self._counts = counts  # or a function making them, called once when first read
        self._membrane = membrane  # or a function computing it, called once when first read
        self.backend = backend
        self.names = [c.name for c in counts] if names is None else list(names)
        self.recorded = recorded or {}  # name -> (indices, membrane [T, B, R])
        self.recorded_i = recorded_i or {}  # name -> (indices, synaptic current [T, B, R])
        self.dt = dt
        self.seconds = seconds
        self._projection_synops = {} if projection_synops is None else projection_synops

    @property
    def counts(self) -> list[LayerCounts]:
        """The :class:`LayerCounts` of each population, in the order of :attr:`names`."""
        if callable(self._counts):  # assembled when first read (a batch-1 call often reads none)
            self._counts = self._counts()
        return self._counts

    @counts.setter
    def counts(self, value):
        self._counts = value

    @property
    def membrane(self) -> np.ndarray | None:
        if callable(self._membrane):  # brought forward when first read (nothing compiled before)
            self._membrane = self._membrane()
        return self._membrane

    @membrane.setter
    def membrane(self, value):
        self._membrane = value

    @property
    def projection_synops(self) -> dict:
        """Synaptic operations per projection, ``{name: [B] int64}``."""
        if callable(self._projection_synops):
            self._projection_synops = self._projection_synops()
        return self._projection_synops

    def __getstate__(self):  # a pickle holds the membrane and counts themselves
        return {
            **self.__dict__,
            "_counts": self.counts,
            "_membrane": self.membrane,
            "_projection_synops": self.projection_synops,
        }

    def __setstate__(self, state):
        state = dict(state)
        if "counts" in state:  # pickled before counts could be lazy
            state["_counts"] = state.pop("counts")
        self.__dict__.update(state)

    @property
    def n_steps(self) -> int:
        return self.trains[0].n_steps

    @property
    def batch_size(self) -> int:
        return self.trains[0].batch_size

    def spikes(self, population=-1) -> np.ndarray:
        """0/1 raster ``[T, B, n]`` of a population (name or position)."""
        return self.trains[self._k(population)].to_raster()

    def spike_counts(self, population=-1) -> np.ndarray:
        """Spikes per neuron of a population, ``[B, n]``."""
        return self.trains[self._k(population)].counts_per_neuron()

    def _k(self, key) -> int:
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no population named {key!r}; have {self.names}")
            return self.names.index(key)
        return key

    def v(self, population) -> np.ndarray:
        """Recorded membrane ``[T, B, R]`` of the neurons asked for in
        ``record_v`` (after reset, at the end of every step)."""
        name = self.names[self._k(population)]
        if name not in self.recorded:
            raise KeyError(f"no membrane recorded for {name!r}; pass record_v={{{name!r}: indices}} to run")
        return self.recorded[name][1]

    def i(self, population) -> np.ndarray:
        """Recorded synaptic current ``[T, B, R]`` of the neurons asked for in
        ``record_i`` (at the end of every step)."""
        name = self.names[self._k(population)]
        if name not in self.recorded_i:
            raise KeyError(f"no current recorded for {name!r}; pass record_i={{{name!r}: indices}} to run")
        return self.recorded_i[name][1]

    def _neuron_names(self, population):
        if population is not None:
            return [self.names[self._k(population)]]
        return [n for n, c in zip(self.names, self.counts, strict=True) if c.mode not in ("input", "gate")]

    def rate_hz(self, population=None) -> float:
        """Mean firing rate in Hz over the neurons (of all neuron populations
        by default) and samples."""
        names = self._neuron_names(population)
        trains = [self.trains[self.names.index(n)] for n in names]
        self._need_dt()
        spikes = sum(t.total for t in trains)
        neurons = sum(t.n for t in trains) * self.batch_size
        return spikes / (neurons * self.n_steps * self.dt)

    def isi_cv(self, population=None, min_spikes: int = 3) -> float:
        """Coefficient of variation of inter-spike intervals (std / mean,
        population std), averaged over the neurons with at least
        ``min_spikes`` spikes; NaN if none has."""
        cvs = []
        for name in self._neuron_names(population):
            train = self.trains[self.names.index(name)]
            for b in range(self.batch_size):
                steps = np.repeat(np.arange(self.n_steps), np.diff(train.tptr[b]))
                neuron = train.idx[b, : train.tptr[b, -1]]
                order = np.lexsort((steps, neuron))
                neuron, steps = neuron[order], steps[order]
                isi = np.diff(steps).astype(np.float64)
                same = neuron[1:] == neuron[:-1]
                sums = np.bincount(neuron[1:][same], isi[same], train.n)
                sq = np.bincount(neuron[1:][same], isi[same] ** 2, train.n)
                m = np.bincount(neuron[1:][same], minlength=train.n)
                ok = m >= max(min_spikes - 1, 1)
                mean = sums[ok] / m[ok]
                var = sq[ok] / m[ok] - mean**2
                cvs.append(np.sqrt(np.maximum(var, 0)) / mean)
        cvs = np.concatenate(cvs) if cvs else np.zeros(0)
        return float(cvs.mean()) if len(cvs) else float("nan")

    def rate_trace(self, population=None, bin_steps: int = 10) -> np.ndarray:
        """Population rate in Hz over time, ``[T // bin_steps, B]`` (bins of
        ``bin_steps`` steps)."""
        names = self._neuron_names(population)
        self._need_dt()
        n_bins = self.n_steps // bin_steps
        out = np.zeros((n_bins, self.batch_size))
        n = 0
        for name in names:
            train = self.trains[self.names.index(name)]
            per_step = np.diff(train.tptr, axis=1)[:, : n_bins * bin_steps]
            out += per_step.reshape(self.batch_size, n_bins, bin_steps).sum(axis=2).T
            n += train.n
        return out / (n * bin_steps * self.dt)

    def _need_dt(self):
        if self.dt is None:
            raise ValueError("this run has no time step (a stack's): rates in Hz need a graph's dt")

    def total(self, field: str) -> int:
        """Sum of one count over layers and samples, e.g. ``total("synops")``."""
        return sum(c.total(field) for c in self.counts)

    _HEAD = ("layer", "mode", "in spikes", "SynOps", "MACs", "updates", "of dense", "spikes")

    def _rows(self):
        for c in self.counts:
            dense = c.total("dense_updates")
            yield (
                c.name,
                c.mode,
                f"{c.total('input_events'):,}",
                f"{c.total('synops'):,}",
                f"{c.total('macs'):,}",
                f"{c.total('updates'):,}",
                f"{c.total('updates') / dense:.1%}" if dense else "-",
                f"{c.total('spikes'):,}",
            )

    def table(self) -> str:
        """Per-layer counts, summed over the batch, as aligned text."""
        head = self._HEAD
        rows = [head, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)

    def __repr__(self):
        return (
            f"RunResult(backend={self.backend!r}, T={self.n_steps}, batch={self.batch_size}, "
            f"populations={self.names}, spikes={self.total('spikes'):,}, "
            f"synops={self.total('synops'):,})"
        )

    def _repr_html_(self):
        head = "".join(f"<th>{h}</th>" for h in self._HEAD)
        body = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in self._rows())
        return f"<p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{body}</table>"
