"""What a :class:`snn.Graph` run returns: spikes and exact counts per
population, recorded membranes, and firing statistics."""

from __future__ import annotations

import numpy as np

from .result import LayerCounts, RunResult


class GraphResult(RunResult):
    """Spikes and counts of every population (in the order they were added,
    inputs included), addressed by name or position.

    ``trains[k]`` time-CSR spikes; ``counts[k]`` :class:`LayerCounts` (for
    a population: synops it received, updates, spikes, input_events = source
    spikes delivered to it plus background events); ``v(name)`` recorded
    membranes ``[T, B, R]``; ``seconds`` wall time of the simulation loop
    (compilation excluded once the graph is prepared); ``dt`` seconds per
    step.
    """

    def __init__(self, names, trains, counts, recorded, dt, seconds, backend, recorded_i=None):
        super().__init__(trains, counts, None, backend)
        self.names = list(names)
        self.recorded = recorded  # name -> (indices, membrane [T, B, R])
        self.recorded_i = recorded_i or {}  # name -> (indices, synaptic current [T, B, R])
        self.dt = dt
        self.seconds = seconds

    @classmethod
    def assemble(cls, graph, n_steps, trains, counts, modes, recorded, seconds):
        """From the stages of an event run (``snn.schedule``): ``trains``
        of every population by name, kernel ``counts`` ``[B, 4]`` (synaptic
        operations received, updates, spikes, background events) and
        ``modes`` of the neuron populations, ``recorded`` variables by
        ``(name, var)``."""
        batch = next(iter(trains.values())).batch_size
        arriving = _arriving(graph, trains, n_steps, batch)
        names = [p.name for p in graph.populations]
        layer_counts = []
        for pop in graph.populations:
            if pop.is_input:
                spikes, zero = trains[pop.name].per_sample, np.zeros(batch, np.int64)
                layer_counts.append(
                    LayerCounts(pop.name, "input", zero, zero, zero, zero, spikes, zero.copy())
                )
                continue
            c = counts[pop.name]
            layer_counts.append(
                LayerCounts(
                    pop.name,
                    modes[pop.name],
                    c[:, 0].copy(),
                    np.zeros(batch, np.int64),
                    c[:, 1].copy(),
                    np.full(batch, n_steps * pop.n, np.int64),
                    c[:, 2].copy(),
                    arriving[pop.name] + c[:, 3],
                )
            )
        return cls(
            names,
            [trains[n] for n in names],
            layer_counts,
            {n: r for (n, var), r in recorded.items() if var == "v"},
            graph.dt,
            seconds,
            "event",
            {n: r for (n, var), r in recorded.items() if var == "i"},
        )

    def _k(self, key) -> int:
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no population named {key!r}; have {self.names}")
            return self.names.index(key)
        return key

    def spikes(self, population=-1) -> np.ndarray:
        """0/1 raster ``[T, B, n]`` of a population (name or position)."""
        return self.trains[self._k(population)].to_raster()

    def spike_counts(self, population=-1) -> np.ndarray:
        return self.trains[self._k(population)].counts_per_neuron()

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
        n_bins = self.n_steps // bin_steps
        out = np.zeros((n_bins, self.batch_size))
        n = 0
        for name in names:
            train = self.trains[self.names.index(name)]
            per_step = np.diff(train.tptr, axis=1)[:, : n_bins * bin_steps]
            out += per_step.reshape(self.batch_size, n_bins, bin_steps).sum(axis=2).T
            n += train.n
        return out / (n * bin_steps * self.dt)

    def __repr__(self):
        return (
            f"GraphResult(backend={self.backend!r}, T={self.n_steps}, batch={self.batch_size}, "
            f"populations={self.names}, spikes={self.total('spikes'):,}, synops={self.total('synops'):,}, "
            f"rate={self.rate_hz():.3g} Hz)"
        )


def _arriving(graph, trains, n_steps, batch):
    """Source spikes delivered to each population: spikes of the source at
    steps ``< T - d`` per projection delay group, per sample."""
    out = {p.name: np.zeros(batch, np.int64) for p in graph.populations}
    for proj in graph.projections:
        tptr = trains[proj.source.name].tptr
        for d in proj.delays:
            out[proj.target.name] += tptr[:, max(n_steps - d, 0)]
    return out
