"""Spike trains of a batch as per-sample time-CSR (what the kernels read and
write): the neurons that spiked at step ``t`` of sample ``s`` are
``idx[s, tptr[s, t]:tptr[s, t + 1]]``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import snn_kernels as kernels

from .._validate import binary_spikes, run_extent


@dataclass(frozen=True)
class SpikeTrains:
    """Spikes of ``n`` neurons over ``T`` steps for a batch of samples.

    tptr : [B, T + 1] int64 offsets; idx : [B, cap] int32 neuron indices.
    """

    tptr: np.ndarray
    idx: np.ndarray
    n: int

    @property
    def batch_size(self) -> int:
        return self.tptr.shape[0]

    @property
    def n_steps(self) -> int:
        return self.tptr.shape[1] - 1

    @property
    def per_sample(self) -> np.ndarray:
        """Spike count of each sample, [B] int64."""
        return self.tptr[:, -1].copy()

    @property
    def total(self) -> int:
        counts = self.tptr[:, -1]
        # a few samples: summed as Python ints (a numpy reduction costs ~2 us, most of a batch-1 call's share)
        return sum(counts.tolist()) if len(counts) <= 64 else int(counts.sum())

    def checked(self) -> SpikeTrains:
        """These trains, if the kernels can read them (shapes, dtypes, offsets
        from 0 and non-decreasing, neurons in ``[0, n)``, at most one spike
        of a neuron per step); raises ValueError otherwise."""
        tptr, idx = self.tptr, self.idx
        if not (isinstance(tptr, np.ndarray) and tptr.dtype == np.int64 and tptr.ndim == 2):
            raise ValueError("SpikeTrains.tptr must be an int64 array [B, T + 1]")
        if not (isinstance(idx, np.ndarray) and idx.dtype == np.int32 and idx.ndim == 2):
            raise ValueError("SpikeTrains.idx must be an int32 array [B, cap]")
        if len(idx) != len(tptr) or tptr.shape[1] < 2:
            raise ValueError(f"SpikeTrains: tptr {tptr.shape} and idx {idx.shape} do not match")
        # screened in one compiled pass; the samples it flags are checked one by one
        tptr, idx = np.ascontiguousarray(tptr), np.ascontiguousarray(idx)
        suspect = np.empty(len(tptr), np.uint8)
        if kernels.screen_trains(tptr, idx, self.n, suspect) >= 0:
            raise ValueError("SpikeTrains.tptr must start at 0, not decrease, and stay within idx")
        if len(suspect) <= 64:  # (a few samples: a numpy reduction costs most of a batch-1 call's check)
            flagged = [b for b, flag in enumerate(suspect.tolist()) if flag]
        else:
            flagged = np.flatnonzero(suspect).tolist()
        for b in flagged:  # (samples in order: the first invalid one is reported)
            used = idx[b, : tptr[b, -1]]
            if len(used) and (used.min() < 0 or used.max() >= self.n):
                raise ValueError(f"SpikeTrains: sample {b} has neurons outside [0, {self.n})")
            step = np.repeat(np.arange(tptr.shape[1] - 1), np.diff(tptr[b]))
            if len(np.unique(step * np.int64(self.n) + used)) != len(used):
                raise ValueError(f"SpikeTrains: a neuron spikes twice in one step of sample {b}")
        if tptr is not self.tptr or idx is not self.idx:  # (made contiguous above)
            return SpikeTrains(tptr, idx, self.n)
        return self

    @classmethod
    def empty(cls, n_steps: int, batch_size: int, n: int) -> SpikeTrains:
        return cls(np.zeros((batch_size, n_steps + 1), np.int64), np.zeros((batch_size, 0), np.int32), n)

    @classmethod
    def from_raster(cls, raster) -> SpikeTrains:
        """From a 0/1 array ``[T, B, n]``; raises on any other value."""
        raster = binary_spikes("spikes", raster)
        if raster.ndim != 3:
            raise ValueError(f"spikes must have shape [T, batch, n], got {raster.shape}")
        n_steps, batch, n = raster.shape
        run_extent(n_steps, batch)
        s, t, i = np.nonzero(raster.transpose(1, 0, 2))
        return cls._from_sorted(s, t, i, n_steps, batch, n)

    @classmethod
    def from_events(cls, events, n_steps: int, batch_size: int, n: int) -> SpikeTrains:
        """From an ``[E, 3]`` integer array of ``(t, sample, index)`` rows (any
        order; a repeated row is one spike)."""
        ev = np.asarray(events)
        if ev.size == 0:
            return cls.empty(n_steps, batch_size, n)
        if ev.ndim != 2 or ev.shape[1] != 3:
            raise ValueError(f"events must be an [E, 3] array of (t, sample, index), got shape {ev.shape}")
        if ev.dtype.kind not in "iu":
            if ev.dtype.kind != "f" or not np.all(ev == np.round(ev)):
                raise TypeError(f"events must be integers (t, sample, index), got dtype {ev.dtype}")
            ev = ev.astype(np.int64)
        for col, (label, bound) in enumerate((("t", n_steps), ("sample", batch_size), ("index", n))):
            if ev[:, col].min() < 0 or ev[:, col].max() >= bound:
                raise ValueError(
                    f"event {label} must be in [0, {bound}), got values in "
                    f"[{ev[:, col].min()}, {ev[:, col].max()}]"
                )
        ev = np.unique(ev[:, [1, 0, 2]], axis=0)  # sorted by sample, step, index
        return cls._from_sorted(ev[:, 0], ev[:, 1], ev[:, 2], n_steps, batch_size, n)

    @classmethod
    def _from_sorted(cls, s, t, i, n_steps, batch, n):
        per_step = np.bincount(s * n_steps + t, minlength=batch * n_steps).reshape(batch, n_steps)
        tptr = np.zeros((batch, n_steps + 1), np.int64)
        np.cumsum(per_step, axis=1, out=tptr[:, 1:])
        per_sample = tptr[:, -1]
        idx = np.zeros((batch, int(per_sample.max()) if batch else 0), np.int32)
        start = np.concatenate(([0], np.cumsum(per_sample)[:-1]))
        pos = np.arange(len(s)) - np.repeat(start, per_sample)
        idx[s, pos] = i
        return cls(tptr, idx, n)

    @classmethod
    def concatenate(cls, parts, n: int) -> SpikeTrains:
        """Trains of several groups as one over ``n`` neurons: ``parts`` are
        ``(trains, offset)`` pairs (same steps and batch), neuron ``i`` of a
        part becomes ``offset + i``; within a step the parts' spikes follow
        each other in the order given (sorted if the offsets increase)."""
        batch, n_steps = parts[0][0].batch_size, parts[0][0].n_steps
        per_step = [np.diff(trains.tptr, axis=1) for trains, _ in parts]  # [B, T] each
        tptr = np.zeros((batch, n_steps + 1), np.int64)
        np.cumsum(sum(per_step), axis=1, out=tptr[:, 1:])
        idx = np.zeros((batch, int(tptr[:, -1].max(initial=0))), np.int32)
        before = np.zeros((batch, n_steps), np.int64)  # spikes of earlier parts in each step
        for (trains, offset), count in zip(parts, per_step, strict=True):
            per_sample = trains.tptr[:, -1]
            sample = np.repeat(np.arange(batch), per_sample)
            step = np.repeat(np.tile(np.arange(n_steps), batch), count.ravel())
            rank = np.arange(len(sample)) - np.repeat(np.cumsum(per_sample) - per_sample, per_sample)
            at = tptr[sample, step] + before[sample, step] + rank - trains.tptr[sample, step]
            idx[sample, at] = trains.idx[sample, rank] + offset
            before += count
        return cls(tptr, idx, n)

    def currents(self, weight) -> np.ndarray:
        """The input current of every step through a dense ``[n, n_out]``
        float64 matrix, ``[B, T, n_out]`` float64: step ``t`` of sample ``b``
        is the sum of the rows of the neurons that spiked then, summed in
        spike order by a kernel (no raster, no GEMM)."""
        weight = np.ascontiguousarray(weight, np.float64)
        if weight.ndim != 2 or weight.shape[0] != self.n:
            raise ValueError(f"weight must be [{self.n}, n_out], got shape {weight.shape}")
        if not weight.flags.writeable:  # numba compiles read-only arrays as another type
            weight = weight.copy()
        current = np.empty((self.batch_size, self.n_steps, weight.shape[1]))
        kernels.spike_currents(self.tptr, self.idx, weight, current)
        return current

    def to_raster(self) -> np.ndarray:
        """0/1 array ``[T, B, n]`` (uint8)."""
        raster = np.zeros((self.n_steps, self.batch_size, self.n), np.uint8)
        t, s, i = self.to_events().T
        raster[t, s, i] = 1
        return raster

    def to_events(self) -> np.ndarray:
        """``[E, 3]`` int64 array of ``(t, sample, index)``, sorted by sample then step."""
        counts = self.per_sample
        s = np.repeat(np.arange(self.batch_size), counts)
        pos = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        steps = np.diff(self.tptr, axis=1)
        t = np.concatenate([np.repeat(np.arange(self.n_steps), steps[b]) for b in range(self.batch_size)])
        return np.stack([t, s, self.idx[s, pos]], axis=1).astype(np.int64)

    def counts_per_neuron(self) -> np.ndarray:
        """Spike count of each neuron in each sample, [B, n] int64."""
        out = np.zeros((self.batch_size, self.n), np.int64)
        for b in range(self.batch_size):
            out[b] = np.bincount(self.idx[b, : self.tptr[b, -1]], minlength=self.n)
        return out
