"""Event-sparsity profile of a run: how much fired, how much work was done
and skipped, and what it would cost.

``snn.profile(result)`` reads a :class:`snn.RunResult` (of a layer stack or
of a graph) -- the spike trains and the
exact counts the kernels returned -- and summarises every layer or
population in a :class:`Profile`: a readable ``repr``, an HTML table in
notebooks, ``to_dict``, CSV and JSON export, and :meth:`Profile.compare`.

Memory: the spike trains are already in the result; the profile itself
adds O(layers) numbers (plus a fixed-size rate histogram per layer), and
O(T) per layer only when ``activity=True`` asks for spikes per step. While it
is computed, one temporary ``[B, cap]`` mask per layer is allocated (the
size of the layer's own spike index array).

Definitions (stated in :data:`DEFINITIONS`, exported with the numbers):
a neuron's *rate* pools the batch: its spikes in all samples divided by
``B * T`` (spikes per neuron per step; Hz when ``dt`` is known). *Silent*:
never fired in any sample. *At max rate*: fired at every step of every
sample. Counts (spikes, SynOps, MACs, updates, energy) are totals over the
batch; ``per_sample`` divides them by ``B``.
"""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import dataclass, field, fields

import numpy as np

from .energy import EnergyModel
from .run.result import RunResult

__all__ = ["DEFINITIONS", "LayerProfile", "Profile", "ProfileComparison", "profile"]

DEFINITIONS = {
    "rate": "spikes per neuron per step, pooled over the batch (spikes / (neurons * B * T))",
    "rate_hz": "rate / dt, spikes per neuron per second (when dt is known)",
    "silent": "fraction of neurons that never fired in any sample",
    "at_max_rate": "fraction of neurons that fired at every step of every sample",
    "synops": "synaptic operations (ACs): one weight added to one target because a spike arrived",
    "synops_per_input_spike": "synops / input spikes received (the mean fan-out actually used)",
    "macs": "multiply-accumulates on analog input (first layer; a constant input counted once)",
    "updates": "neuron state updates performed; dense_updates: those of a clock-driven run, T * n",
    "work_skipped": "1 - updates / dense_updates (the share of neuron updates never performed)",
    "energy_pj": "synops * pJ per AC + macs * pJ per MAC (see energy_model)",
}

# the columns of the table, CSV and comparison: (field, heading, format)
_COLUMNS = (
    ("name", "layer", "{}"),
    ("mode", "mode", "{}"),
    ("neurons", "neurons", "{:,}"),
    ("spikes", "spikes", "{:,}"),
    ("rate", "rate/step", "{:.4f}"),
    ("rate_hz", "Hz", "{:.3g}"),
    ("silent", "silent", "{:.1%}"),
    ("at_max_rate", "at max", "{:.1%}"),
    ("input_events", "in spikes", "{:,}"),
    ("synops", "SynOps", "{:,}"),
    ("synops_per_input_spike", "SynOps/in", "{:.1f}"),
    ("macs", "MACs", "{:,}"),
    ("updates", "updates", "{:,}"),
    ("work_skipped", "skipped", "{:.1%}"),
    ("energy_pj", "energy pJ", "{:,.0f}"),
)


@dataclass(frozen=True)
class LayerProfile:
    """Sparsity and cost of one layer or population, totals over the batch.

    neurons : n.  spikes : output spikes (int).  rate : mean spikes per
    neuron per step; rate_hz : the same per second (NaN without ``dt``).
    rate_quantiles : per-neuron rates at ``Profile.quantiles`` (spikes/step).
    rate_std : their standard deviation over neurons.
    silent, at_max_rate : fractions of neurons (see :data:`DEFINITIONS`).
    input_events : input spikes received; synops, macs, updates,
    dense_updates : exact kernel counts (int); synops_per_input_spike :
    NaN without input spikes; work_skipped : NaN for an input population
    (no neuron to update). energy_pj : picojoules.
    hist_edges, hist_counts : histogram of the per-neuron rates, linear bins
    over ``[0, max rate]`` (spikes/step), neurons per bin.
    activity : spikes per step summed over the batch, ``[T]`` int64, or
    None unless asked for.
    """

    name: str
    mode: str
    neurons: int
    spikes: int
    rate: float
    rate_hz: float
    rate_std: float
    rate_quantiles: tuple
    silent: float
    at_max_rate: float
    input_events: int
    synops: int
    synops_per_input_spike: float
    macs: int
    updates: int
    dense_updates: int
    work_skipped: float
    energy_pj: float
    hist_edges: tuple = field(repr=False)
    hist_counts: tuple = field(repr=False)
    activity: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Plain JSON-able values (NaN becomes None)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = [_clean(v) for v in value]
            out[f.name] = _clean(value)
        return out


@dataclass(frozen=True)
class Profile:
    """The sparsity profile of one run (see the module docstring).

    layers : one :class:`LayerProfile` per layer / population, in order.
    n_steps, batch_size : T and B of the run.  dt : seconds per step or None.
    energy_model : the constants behind ``energy_pj``.
    quantiles : levels of ``LayerProfile.rate_quantiles``.
    ann_macs : MACs per sample of the ANN this network was converted from
        (None if not given), for :attr:`ann_energy_pj`.
    backend : of the run.
    """

    layers: tuple
    n_steps: int
    batch_size: int
    dt: float | None
    energy_model: EnergyModel
    quantiles: tuple
    ann_macs: int | None = None
    backend: str = "event"

    # -- totals -------------------------------------------------------------

    def total(self, key: str) -> int | float:
        """Sum of a count over the layers (e.g. ``"synops"``, ``"energy_pj"``)."""
        return sum(getattr(layer, key) for layer in self.layers)

    def per_sample(self, key: str) -> float:
        """Total of a count divided by the batch size."""
        return self.total(key) / self.batch_size

    @property
    def work_skipped(self) -> float:
        """Share of the clock-driven neuron updates that were not performed, all layers."""
        dense = self.total("dense_updates")
        return 1 - self.total("updates") / dense if dense else math.nan

    @property
    def energy_pj_per_sample(self) -> float:
        return self.per_sample("energy_pj")

    @property
    def ann_energy_pj(self) -> float:
        """Energy per sample of the ANN (all MACs), NaN without ``ann_macs``."""
        return math.nan if self.ann_macs is None else self.energy_model.energy_pj(0, self.ann_macs)

    def __getitem__(self, key) -> LayerProfile:
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            raise KeyError(f"no layer named {key!r}; have {[la.name for la in self.layers]}")
        return self.layers[key]

    def __len__(self):
        return len(self.layers)

    # -- presentation ---------------------------------------------------------

    def _rows(self) -> list[list[str]]:
        rows = [[_fmt(fmt, getattr(la, key)) for key, _, fmt in _COLUMNS] for la in self.layers]
        total = [
            "total",
            "",
            f"{self.total('neurons'):,}",
            f"{self.total('spikes'):,}",
            "",
            "",
            "",
            "",
            f"{self.total('input_events'):,}",
            f"{self.total('synops'):,}",
            "",
            f"{self.total('macs'):,}",
            f"{self.total('updates'):,}",
            _fmt("{:.1%}", self.work_skipped),
            f"{self.total('energy_pj'):,.0f}",
        ]
        return rows + [total]

    def _summary(self) -> str:
        dt = f", dt={self.dt:g} s" if self.dt else ""
        text = (
            f"Profile(T={self.n_steps}, batch={self.batch_size}{dt}, layers={len(self.layers)}, "
            f"spikes={self.total('spikes'):,}, synops={self.total('synops'):,}, "
            f"work skipped={_fmt('{:.1%}', self.work_skipped)}, "
            f"energy={self.energy_pj_per_sample / 1e6:.4g} uJ/sample"
        )
        if self.ann_macs is not None:
            text += f" ({self.energy_pj_per_sample / self.ann_energy_pj:.3f} x the ANN)"
        return text + ")"

    def table(self) -> str:
        """Per-layer table as aligned text (counts are totals over the batch)."""
        return _align([[h for _, h, _ in _COLUMNS], *self._rows()])

    def __repr__(self):
        return f"{self._summary()}\n{self.table()}\n{self.energy_model.describe()}"

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in _COLUMNS)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in self._rows()
        )
        return (
            f"<p>{html.escape(self._summary())}</p><table><tr>{head}</tr>{body}</table>"
            f"<p><small>{html.escape(self.energy_model.describe())}; counts are totals over the "
            "batch</small></p>"
        )

    # -- export ---------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything as plain JSON-able values, with the definitions used."""
        return {
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "dt": self.dt,
            "backend": self.backend,
            "quantiles": list(self.quantiles),
            "ann_macs": self.ann_macs,
            "energy_model": {
                "pj_per_ac": self.energy_model.pj_per_ac,
                "pj_per_mac": self.energy_model.pj_per_mac,
            },
            "totals": {
                "spikes": self.total("spikes"),
                "synops": self.total("synops"),
                "macs": self.total("macs"),
                "updates": self.total("updates"),
                "dense_updates": self.total("dense_updates"),
                "work_skipped": _clean(self.work_skipped),
                "energy_pj": self.total("energy_pj"),
                "energy_pj_per_sample": self.energy_pj_per_sample,
                "ann_energy_pj_per_sample": _clean(self.ann_energy_pj),
            },
            "layers": [layer.to_dict() for layer in self.layers],
            "definitions": dict(DEFINITIONS),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        """Inverse of :meth:`to_dict` (e.g. of a JSON file written by :meth:`to_json`)."""
        layers = []
        for d in data["layers"]:
            d = {k: (math.nan if v is None and k not in ("activity",) else v) for k, v in d.items()}
            for key in ("rate_quantiles", "hist_edges", "hist_counts"):
                d[key] = tuple(d[key])
            if d.get("activity") is not None:
                d["activity"] = np.asarray(d["activity"], np.int64)
            layers.append(LayerProfile(**d))
        model = EnergyModel(**data["energy_model"])
        return cls(
            tuple(layers),
            data["n_steps"],
            data["batch_size"],
            data["dt"],
            model,
            tuple(data["quantiles"]),
            data["ann_macs"],
            data["backend"],
        )

    def to_json(self, path) -> None:
        """Write :meth:`to_dict` to ``path`` as JSON (NaN written as null)."""
        with open(path, "w") as file:
            json.dump(self.to_dict(), file, indent=1, allow_nan=False)

    @classmethod
    def read_json(cls, path) -> Profile:
        with open(path) as file:
            return cls.from_dict(json.load(file))

    def to_csv(self, path) -> None:
        """One row per layer (the scalar fields, full precision; empty cell
        for NaN), totals over the batch."""
        keys = [
            f.name
            for f in fields(LayerProfile)
            if f.name not in ("rate_quantiles", "hist_edges", "hist_counts", "activity")
        ]
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(keys + [f"rate_q{q:g}" for q in self.quantiles] + ["T", "batch", "dt"])
            for layer in self.layers:
                values = [getattr(layer, k) for k in keys] + list(layer.rate_quantiles)
                writer.writerow(
                    ["" if _isnan(v) else v for v in values]
                    + [self.n_steps, self.batch_size, "" if self.dt is None else self.dt]
                )

    def compare(self, other: Profile, names: tuple = ("A", "B")) -> ProfileComparison:
        """Side by side with ``other``, per sample, with ratios ``other / self``."""
        return ProfileComparison(self, other, names)


_COMPARED = (  # (key, heading, per sample?)
    ("rate", "rate/step", False),
    ("silent", "silent", False),
    ("spikes", "spikes/sample", True),
    ("synops", "SynOps/sample", True),
    ("work_skipped", "skipped", False),
    ("energy_pj", "pJ/sample", True),
)


@dataclass(frozen=True)
class ProfileComparison:
    """Two profiles side by side (layers matched by position; extensive
    counts per sample, so runs of different batch sizes or T compare),
    with the ratio ``b / a`` of every figure."""

    a: Profile
    b: Profile
    names: tuple = ("A", "B")

    def rows(self) -> list[dict]:
        """One dict per layer and one for the total: ``{key: (a, b, b / a)}``."""
        if len(self.a) != len(self.b):
            raise ValueError(f"the profiles have {len(self.a)} and {len(self.b)} layers")
        out = []
        for la, lb in zip(self.a.layers, self.b.layers, strict=True):
            row = {"layer": la.name if la.name == lb.name else f"{la.name} / {lb.name}"}
            for key, _, per in _COMPARED:
                va, vb = getattr(la, key), getattr(lb, key)
                if per:
                    va, vb = va / self.a.batch_size, vb / self.b.batch_size
                row[key] = (va, vb, _ratio(vb, va))
            out.append(row)
        total = {"layer": "total"}
        for key, _, _per in _COMPARED:
            if key in ("spikes", "synops", "energy_pj"):
                va, vb = self.a.per_sample(key), self.b.per_sample(key)
            elif key == "work_skipped":
                va, vb = self.a.work_skipped, self.b.work_skipped
            else:
                va = vb = math.nan
            total[key] = (va, vb, _ratio(vb, va))
        return out + [total]

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "rows": [
                {k: (v if k == "layer" else [_clean(x) for x in v]) for k, v in r.items()}
                for r in self.rows()
            ],
        }

    def table(self) -> str:
        a, b = self.names
        head = ["layer"] + [f"{h} {n}" for _, h, _ in _COMPARED for n in (a, b, f"{b}/{a}")]
        fmts = {"rate": "{:.4f}", "silent": "{:.1%}", "work_skipped": "{:.1%}"}
        lines = [head]
        for r in self.rows():
            cells = [r["layer"]]
            for key, _, _ in _COMPARED:
                va, vb, ratio = r[key]
                fmt = fmts.get(key, "{:,.0f}")
                cells += [_fmt(fmt, va), _fmt(fmt, vb), _fmt("{:.3g}", ratio)]
            lines.append(cells)
        return _align(lines)

    def __repr__(self):
        a, b = self.names
        return (
            f"ProfileComparison({a}: T={self.a.n_steps}, batch={self.a.batch_size}; "
            f"{b}: T={self.b.n_steps}, batch={self.b.batch_size}; per sample, ratio {b}/{a})\n" + self.table()
        )

    def _repr_html_(self):
        return f"<pre>{html.escape(repr(self))}</pre>"


# -- computing a profile ----------------------------------------------------------


def profile(
    result: RunResult,
    *,
    dt: float | None = None,
    energy: EnergyModel | None = None,
    activity: bool = False,
    quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
    bins: int = 30,
    ann_macs: int | None = None,
    client=None,
) -> Profile:
    """The sparsity profile of a run.

    Parameters
    ----------
    result : a :class:`snn.RunResult` (of a stack or a graph).
    dt : seconds per step, for rates in Hz (default: ``result.dt`` when the
        result has one, as a graph's does; else rates in Hz are NaN).
    energy : pJ per AC / MAC (default :class:`snn.energy.EnergyModel`, the
        converter's constants).
    activity : also keep the spikes of every step, ``[T]`` per layer (the
        only part of the profile whose memory grows with T).
    quantiles : levels of the per-neuron rate distribution summary.
    bins : bins of the per-neuron rate histogram.
    ann_macs : MACs per sample of the original ANN (``converted.ann_total_macs``),
        to compare energies.
    client : the Dask client of a :class:`snn.distributed.PartitionedResult`
        (optional: the result knows it); such a result is profiled from its
        partitions' statistics without moving its spike trains.

    Returns
    -------
    Profile
    """
    if client is not None or getattr(result, "partitioned", False):
        from .distributed import profile as distributed_profile

        return distributed_profile(
            result,
            client=client,
            dt=dt,
            energy=energy,
            activity=activity,
            quantiles=quantiles,
            bins=bins,
            ann_macs=ann_macs,
        )
    if not isinstance(result, RunResult):
        raise TypeError(f"profile takes a RunResult, got {type(result).__name__}")
    if dt is None:
        dt = getattr(result, "dt", None)
    dt, energy, quantiles, bins = profile_options(dt, energy, quantiles, bins)
    layers = tuple(
        _layer_profile(train, counts, dt, energy, activity, quantiles, bins)
        for train, counts in zip(result.trains, result.counts, strict=True)
    )
    return Profile(
        layers,
        result.n_steps,
        result.batch_size,
        dt,
        energy,
        quantiles,
        None if ann_macs is None else int(ann_macs),
        result.backend,
    )


def _neuron_counts(train) -> np.ndarray:
    """Spikes of each neuron summed over the batch, ``[n]`` int64."""
    filled = np.arange(train.idx.shape[1])[None, :] < train.tptr[:, -1:]
    return np.bincount(train.idx[filled], minlength=train.n).astype(np.int64)


def profile_options(dt, energy, quantiles, bins) -> tuple:
    """``(dt, energy, quantiles, bins)`` checked (``energy`` None: the
    default model), as every profile takes them."""
    if dt is not None and not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    quantiles = tuple(float(q) for q in quantiles)
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must be in [0, 1], got {quantiles}")
    return dt, energy or EnergyModel(), quantiles, int(bins)


def _layer_profile(train, counts, dt, energy, activity, quantiles, bins) -> LayerProfile:
    totals = {
        key: counts.total(key) for key in ("synops", "macs", "input_events", "updates", "dense_updates")
    }
    per_step = np.diff(train.tptr, axis=1).sum(axis=0) if activity else None
    cells = train.batch_size * train.n_steps
    return layer_profile(
        counts.name, counts.mode, _neuron_counts(train), cells, totals, per_step, dt, energy, quantiles, bins
    )


def layer_profile(
    name, mode, per_neuron, cells, totals, per_step, dt, energy, quantiles, bins
) -> LayerProfile:
    """A layer's profile from its statistics: spikes per neuron ``[n]``
    over ``cells`` (samples x steps: the most one neuron can emit), the
    count totals (``synops``, ``macs``, ``input_events``, ``updates``,
    ``dense_updates``) and the spikes per step ``[T]`` (or None). The one
    place every figure is computed, for a run and for a partitioned one."""
    n = len(per_neuron)
    rates = per_neuron / cells
    spikes = int(per_neuron.sum())
    rate = spikes / (n * cells) if n else math.nan
    top = float(rates.max(initial=0.0))
    hist, edges = np.histogram(rates, bins=bins, range=(0.0, top if top > 0 else 1.0))
    synops, macs, inputs = totals["synops"], totals["macs"], totals["input_events"]
    updates, dense = totals["updates"], totals["dense_updates"]
    return LayerProfile(
        name=name,
        mode=mode,
        neurons=n,
        spikes=spikes,
        rate=rate,
        rate_hz=rate / dt if dt else math.nan,
        rate_std=float(rates.std()) if n else math.nan,
        rate_quantiles=tuple(float(x) for x in np.quantile(rates, quantiles)) if n else (),
        silent=float(np.mean(per_neuron == 0)),
        at_max_rate=float(np.mean(per_neuron == cells)),
        input_events=inputs,
        synops=synops,
        synops_per_input_spike=synops / inputs if inputs else math.nan,
        macs=macs,
        updates=updates,
        dense_updates=dense,
        work_skipped=1 - updates / dense if dense else math.nan,
        energy_pj=float(energy.energy_pj(synops, macs)),
        hist_edges=tuple(float(e) for e in edges),
        hist_counts=tuple(int(c) for c in hist),
        activity=per_step,
    )


# -- helpers ------------------------------------------------------------------------


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _clean(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _fmt(fmt: str, value) -> str:
    if value is None or _isnan(value):
        return "-"
    return fmt.format(value)


def _ratio(b, a) -> float:
    if _isnan(a) or _isnan(b) or a == 0:
        return math.nan
    return b / a


def _align(rows) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)
