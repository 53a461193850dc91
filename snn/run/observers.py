"""Observers: measurements that plug into a chunked run
(``Graph.start(..., observers=[...])``, ``Network.start``) without the
populations knowing of them. After every chunk of steps the run calls each
observer's ``update`` with that chunk's spikes; what an observer keeps is its
own (a reducer keeps constant memory however long the run), and ``compute()``
returns its measurement.

The protocol (duck-typed; :class:`Observer` is a base to inherit from):

- ``reset(run)``: once, when the run is made (``run.graph``, ``run.batch``);
- ``update(chunk)``: after each chunk (:class:`Chunk`: steps ``t0 .. t1 - 1``,
  ``chunk.spikes(name)`` the trains of population ``name`` in those steps);
- ``keep(rows)``: samples left the run (an early exit), the others go on;
- ``compute()``: the measurement so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .spiketrains import SpikeTrains


@dataclass(frozen=True)
class Chunk:
    """Steps ``t0 .. t1 - 1`` of a run just done: ``spikes(name)`` gives the
    :class:`SpikeTrains` (``t1 - t0`` steps) of population ``name``; ``dt``
    in seconds."""

    t0: int
    t1: int
    dt: float
    batch: int
    spikes: Callable[[str], SpikeTrains]


class Observer:
    """Base of the observers: no-op ``reset``, ``keep`` and ``update``."""

    def reset(self, run) -> None:
        pass

    def update(self, chunk: Chunk) -> None:
        pass

    def keep(self, rows) -> None:
        pass

    def compute(self):
        raise NotImplementedError


class _OnePopulation(Observer):
    def __init__(self, population: str):
        name = getattr(population, "name", population)
        if not isinstance(name, str):
            raise TypeError(f"population must be a population or its name, got {population!r}")
        self.population = name
        self._n = None

    def reset(self, run) -> None:
        names = [p.name for p in run.graph.populations]
        if self.population not in names:
            raise ValueError(
                f"{type(self).__name__}: no population {self.population!r}; the graph has {names}"
            )
        self._n = run.graph[self.population].n
        self._batch = run.batch


class SpikeCounts(_OnePopulation):
    """Spikes per neuron of one population over the whole run: ``compute()``
    ``[B, n]`` int64 (constant memory)."""

    def reset(self, run) -> None:
        super().reset(run)
        self._counts = np.zeros((run.batch, self._n), np.int64)

    def update(self, chunk: Chunk) -> None:
        trains = chunk.spikes(self.population)
        for b in range(trains.batch_size):
            self._counts[b] += np.bincount(trains.idx[b, : trains.tptr[b, -1]], minlength=self._n)

    def keep(self, rows) -> None:
        self._counts = self._counts[np.asarray(rows, np.int64)]

    def compute(self) -> np.ndarray:
        return self._counts.copy()


class PopulationRate(_OnePopulation):
    """The mean firing rate of one population in bins of ``bin_steps`` steps
    (bin ``k``: steps ``k * bin_steps .. (k + 1) * bin_steps - 1``):
    ``compute()`` ``[bins, B]`` float64 in Hz (spikes / (n x bin duration);
    the last bin, if not full yet, over the steps it has).

    ``last``: keep only the ``last`` most recent bins (a ring of ``[last,
    B]`` counts: constant memory however long a stream runs; ``compute()``
    returns those bins, the first of them :attr:`first_bin`). Default
    ``None``: every bin, memory growing by ``8 x B`` bytes per bin."""

    def __init__(self, population, bin_steps: int = 1, last: int | None = None):
        super().__init__(population)
        if isinstance(bin_steps, bool) or not isinstance(bin_steps, (int, np.integer)) or bin_steps < 1:
            raise ValueError(f"bin_steps must be an integer >= 1, got {bin_steps!r}")
        bad = isinstance(last, bool) or not isinstance(last, (int, np.integer)) or last < 1
        if last is not None and bad:
            raise ValueError(f"last must be an integer >= 1 or None, got {last!r}")
        self.bin_steps = int(bin_steps)
        self.last = None if last is None else int(last)

    def reset(self, run) -> None:
        super().reset(run)
        self._dt = run.graph.dt
        rows = 16 if self.last is None else self.last
        self._spikes = np.zeros((rows, run.batch), np.int64)  # spikes per bin (a ring when last is given)
        self._steps = np.zeros(rows, np.int64)  # steps in each bin
        self._n_bins = 0  # bins begun so far

    @property
    def first_bin(self) -> int:
        """The index of the first bin :meth:`compute` returns."""
        return 0 if self.last is None else max(0, self._n_bins - self.last)

    def update(self, chunk: Chunk) -> None:
        trains = chunk.spikes(self.population)
        per_step = np.diff(trains.tptr, axis=1).T  # [steps, B]
        t0, t1, size = chunk.t0, chunk.t1, self.bin_steps
        if t1 <= t0:
            return
        first = t0 // size
        starts = np.concatenate(([t0], np.arange((first + 1) * size, t1, size))) - t0  # in the chunk
        spikes = np.add.reduceat(per_step, starts, axis=0)  # [bins, B]
        steps = np.diff(np.append(starts, t1 - t0))
        bins = first + np.arange(len(starts))
        if self.last is None:
            if bins[-1] >= len(self._steps):  # grow by doubling
                rows = max(2 * len(self._steps), int(bins[-1]) + 1)
                grown = np.zeros((rows, self._spikes.shape[1]), np.int64)
                grown[: len(self._spikes)] = self._spikes
                self._spikes = grown
                self._steps = np.concatenate((self._steps, np.zeros(rows - len(self._steps), np.int64)))
            rows = bins
        else:  # only the last `last` bins of the chunk can be kept
            spikes, steps, bins = spikes[-self.last :], steps[-self.last :], bins[-self.last :]
            rows = bins % self.last
        new = rows[bins >= self._n_bins]
        self._spikes[new] = 0
        self._steps[new] = 0
        self._spikes[rows] += spikes
        self._steps[rows] += steps
        self._n_bins = max(self._n_bins, int(bins[-1]) + 1)

    def keep(self, rows) -> None:
        self._spikes = self._spikes[:, np.asarray(rows, np.int64)]

    def compute(self) -> np.ndarray:
        rows = np.arange(self.first_bin, self._n_bins)
        if self.last is not None:
            rows %= self.last
        steps = self._steps[rows].astype(np.float64)[:, None]
        return self._spikes[rows] / (self._n * steps * self._dt)


class Callback(Observer):
    """Calls ``fn(chunk)`` after each chunk (a live plot, a log, a stopping
    test...); ``compute()`` returns what the last call returned."""

    def __init__(self, fn: Callable[[Chunk], object]):
        if not callable(fn):
            raise TypeError(f"Callback needs a callable, got {fn!r}")
        self.fn, self._last = fn, None

    def update(self, chunk: Chunk) -> None:
        self._last = self.fn(chunk)

    def compute(self):
        return self._last
