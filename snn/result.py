"""What a run returns: spikes and exact counts per layer."""

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
    """Spikes of every layer and the counts of a run over a batch.

    ``result.spikes(l)`` is the ``[T, B, n]`` 0/1 raster of layer ``l``;
    ``result.trains[l]`` the same spikes as time-CSR events;
    ``result.counts[l]`` the layer's :class:`LayerCounts`;
    ``result.membrane`` the last layer's membrane at the end of the run,
    ``[B, n]`` (for membrane readout).
    """

    def __init__(
        self, trains: list[SpikeTrains], counts: list[LayerCounts], membrane: np.ndarray, backend: str
    ):
        self.trains = trains
        self.counts = counts
        self.membrane = membrane
        self.backend = backend

    @property
    def n_steps(self) -> int:
        return self.trains[0].n_steps

    @property
    def batch_size(self) -> int:
        return self.trains[0].batch_size

    def spikes(self, layer: int = -1) -> np.ndarray:
        return self.trains[layer].to_raster()

    def spike_counts(self, layer: int = -1) -> np.ndarray:
        """Spikes per neuron, ``[B, n]``."""
        return self.trains[layer].counts_per_neuron()

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
            f"layers={len(self.counts)}, spikes={self.total('spikes'):,}, "
            f"synops={self.total('synops'):,})"
        )

    def _repr_html_(self):
        head = "".join(f"<th>{h}</th>" for h in self._HEAD)
        body = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in self._rows())
        return f"<p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{body}</table>"
