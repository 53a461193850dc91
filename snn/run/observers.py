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
    """The mean firing rate of one population in bins of ``bin_steps`` steps:
    ``compute()`` ``[bins, B]`` float64 in Hz (spikes / (n x bin duration);
    the last bin, if not full yet, over the steps it has). Memory grows by
    one ``[B]`` row per bin."""

    def __init__(self, population, bin_steps: int = 1):
        super().__init__(population)
        if isinstance(bin_steps, bool) or not isinstance(bin_steps, (int, np.integer)) or bin_steps < 1:
            raise ValueError(f"bin_steps must be an integer >= 1, got {bin_steps!r}")
        self.bin_steps = int(bin_steps)

    def reset(self, run) -> None:
        super().reset(run)
        self._dt = run.graph.dt
        self._bins = []  # [B] int64 spikes per bin
        self._steps = []  # steps in each bin

    def update(self, chunk: Chunk) -> None:
        trains = chunk.spikes(self.population)
        per_step = np.diff(trains.tptr, axis=1).T  # [steps, B]
        t = chunk.t0
        while t < chunk.t1:
            if not self._steps or self._steps[-1] == self.bin_steps:
                self._bins.append(np.zeros(per_step.shape[1], np.int64))
                self._steps.append(0)
            take = min(chunk.t1 - t, self.bin_steps - self._steps[-1])
            self._bins[-1] += per_step[t - chunk.t0 : t - chunk.t0 + take].sum(axis=0)
            self._steps[-1] += take
            t += take

    def keep(self, rows) -> None:
        rows = np.asarray(rows, np.int64)
        self._bins = [b[rows] for b in self._bins]

    def compute(self) -> np.ndarray:
        if not self._bins:
            return np.zeros((0, self._batch))
        steps = np.asarray(self._steps, np.float64)[:, None]
        return np.stack(self._bins) / (self._n * steps * self._dt)


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
