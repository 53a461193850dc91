"""Plots of runs, profiles and conversions (matplotlib, imported here only).

Every function takes a result (a :class:`snn.RunResult`), a :class:`snn.Profile` or a converter's
:class:`snn.convert.Evaluation`, and an optional ``ax``; it draws on ``ax``
(a new figure when None), returns the Axes and forwards ``**kwargs`` to the
matplotlib call that draws the data. Time is in seconds when the result has
a ``dt`` (a graph's), else in steps.
"""

from __future__ import annotations

import numpy as np

from .profile import Profile, profile
from .run.result import RunResult

__all__ = [
    "accuracy_vs_T",
    "cost_vs_T",
    "exit_steps",
    "layer_rates",
    "population_rate",
    "raster",
    "rate_histogram",
    "traces",
    "work_skipped",
]


def _axes(ax, figsize=(7, 3)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def _as_profile(source) -> Profile:
    if isinstance(source, Profile):
        return source
    if isinstance(source, RunResult):
        return profile(source)
    raise TypeError(f"expected a snn.Profile or a run result, got {type(source).__name__}")


def _names(result) -> list[str]:
    if hasattr(result, "names"):
        return list(result.names)
    return [c.name for c in result.counts]


def _select(result, layers) -> list[int]:
    """Positions of the layers / populations asked for (all by default)."""
    names = _names(result)
    if layers is None:
        return list(range(len(names)))
    if isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    out = []
    for key in layers:
        if isinstance(key, str):
            if key not in names:
                raise KeyError(f"no layer or population named {key!r}; have {names}")
            out.append(names.index(key))
        else:
            out.append(int(key) % len(names))
    return out


def _time_unit(result, dt):
    dt = dt if dt is not None else getattr(result, "dt", None)
    return (dt, "time (s)") if dt else (1.0, "step")


# -- spikes ------------------------------------------------------------------------


def raster(
    result: RunResult,
    layers=None,
    *,
    sample: int = 0,
    ax=None,
    max_points: int = 200_000,
    seed: int = 0,
    dt: float | None = None,
    colors=None,
    **kwargs,
):
    """Spike raster of one sample, one colour per layer / population, stacked
    vertically (the first at the bottom).

    Parameters
    ----------
    result : a run result.
    layers : names or positions to show (default all).
    sample : which sample of the batch.
    max_points : at most this many spikes are drawn; above it a uniform
        random subset (seeded by ``seed``) is drawn and the title says
        "N of M spikes shown". ``ax.raster_shown`` / ``ax.raster_total``
        hold the two numbers.
    dt : seconds per step (default ``result.dt`` if any, else steps).
    colors : one matplotlib colour per layer shown (default the cycle).
    kwargs : to ``ax.scatter`` (default ``s=2``, ``marker="|"``, ``linewidths=0.8``).
    """
    ax = _axes(ax)
    chosen = _select(result, layers)
    scale, xlabel = _time_unit(result, dt)
    events = [_sample_events(result.trains[k], sample) for k in chosen]
    total = sum(len(t) for t, _ in events)
    keep_fraction = 1.0 if total <= max_points else max_points / total
    rng = np.random.default_rng(seed)
    style = {"s": 2, "marker": "|", "linewidths": 0.8, **kwargs}
    offset, shown, ticks = 0, 0, []
    names = _names(result)
    for j, (k, (t, i)) in enumerate(zip(chosen, events, strict=True)):
        if keep_fraction < 1.0:
            pick = np.sort(rng.choice(len(t), size=round(len(t) * keep_fraction), replace=False))
            t, i = t[pick], i[pick]
        color = colors[j] if colors is not None else f"C{j % 10}"
        ax.scatter(t * scale, i + offset, color=color, label=names[k], **style)
        shown += len(t)
        n = result.trains[k].n
        ticks.append(offset + n / 2)
        offset += n
    ax.set_xlim(0, result.n_steps * scale)
    ax.set_ylim(-0.5, offset - 0.5)
    ax.set_yticks(ticks, [names[k] for k in chosen])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neuron")
    note = f"{shown:,} spikes" if shown == total else f"{shown:,} of {total:,} spikes shown"
    ax.set_title(f"sample {sample}: {note}")
    ax.raster_shown, ax.raster_total = shown, total
    return ax


def _sample_events(train, sample: int):
    """``(steps, neurons)`` of one sample's spikes."""
    if not 0 <= sample < train.batch_size:
        raise ValueError(f"sample must be in [0, {train.batch_size}), got {sample}")
    tptr = train.tptr[sample]
    steps = np.repeat(np.arange(train.n_steps), np.diff(tptr))
    return steps, train.idx[sample, : tptr[-1]].astype(np.int64)


def population_rate(
    result: RunResult, layers=None, *, bin_steps: int = 1, ax=None, dt: float | None = None, **kwargs
):
    """Population rate over time, one line per layer / population: spikes
    per neuron per step (Hz when ``dt`` is known), averaged over the batch
    and over bins of ``bin_steps`` steps. ``kwargs`` to ``ax.plot``."""
    if isinstance(bin_steps, bool) or not isinstance(bin_steps, (int, np.integer)) or bin_steps < 1:
        raise ValueError(f"bin_steps must be a positive integer, got {bin_steps!r}")
    ax = _axes(ax)
    scale, xlabel = _time_unit(result, dt)
    in_hz = xlabel != "step"
    names = _names(result)
    n_bins = result.n_steps // bin_steps
    for k in _select(result, layers):
        train = result.trains[k]
        per_step = np.diff(train.tptr, axis=1).sum(axis=0)[: n_bins * bin_steps]
        rate = per_step.reshape(n_bins, bin_steps).sum(axis=1) / (train.n * train.batch_size * bin_steps)
        t = (np.arange(n_bins) * bin_steps + bin_steps / 2) * scale
        ax.plot(t, rate / scale if in_hz else rate, label=names[k], **kwargs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rate (Hz)" if in_hz else "spikes / neuron / step")
    ax.legend(fontsize=8)
    return ax


def traces(
    source,
    neurons=None,
    *,
    population=None,
    sample: int = 0,
    ax=None,
    dt: float | None = None,
    threshold: float | None = None,
    **kwargs,
):
    """Membrane traces of chosen neurons.

    source : a :class:`snn.RunResult` run with ``record_v`` (then
        ``population`` names the recorded population), or an array of
        membranes ``[T, B, R]`` or ``[T, R]``.
    neurons : columns of the recording to draw (default all).
    threshold : draw it as a dashed line.
    kwargs : to ``ax.plot``.
    """
    ax = _axes(ax)
    labels = None
    if hasattr(source, "v"):
        if population is None:
            raise ValueError("name the recorded population: traces(result, population='exc')")
        v = source.v(population)
        labels = source.recorded[source.names[source._k(population)]][0]
        scale, xlabel = _time_unit(source, dt)
    else:
        v = np.asarray(source)
        scale, xlabel = (dt, "time (s)") if dt else (1.0, "step")
    if v.ndim == 3:
        v = v[:, sample]
    if v.ndim != 2:
        raise ValueError(f"membranes must be [T, B, R] or [T, R], got shape {v.shape}")
    cols = range(v.shape[1]) if neurons is None else np.atleast_1d(neurons)
    t = np.arange(1, v.shape[0] + 1) * scale
    for c in cols:
        ax.plot(t, v[:, c], label=f"neuron {labels[c] if labels is not None else c}", **kwargs)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("membrane")
    ax.legend(fontsize=8)
    return ax


# -- profiles -------------------------------------------------------------------------


def layer_rates(source, *, ax=None, hz: bool | None = None, **kwargs):
    """Mean firing rate per layer, one bar each (Hz when the profile has a
    ``dt`` and ``hz`` is not False). ``source``: a Profile or a result;
    ``kwargs`` to ``ax.bar``."""
    prof = _as_profile(source)
    ax = _axes(ax)
    use_hz = prof.dt is not None if hz is None else hz
    values = [lp.rate_hz if use_hz else lp.rate for lp in prof.layers]
    ax.bar(range(len(prof)), values, **kwargs)
    ax.set_xticks(range(len(prof)), [lp.name for lp in prof.layers], rotation=30, ha="right")
    ax.set_ylabel("mean rate (Hz)" if use_hz else "spikes / neuron / step")
    ax.set_title("firing rate per layer")
    return ax


def rate_histogram(source, layer=-1, *, ax=None, **kwargs):
    """Histogram of the per-neuron rates of one layer (spikes per step,
    pooled over the batch), from the profile's fixed bins; the silent and
    max-rate fractions in the title. ``kwargs`` to ``ax.stairs``."""
    prof = _as_profile(source)
    lp = prof[layer]
    ax = _axes(ax)
    ax.stairs(np.asarray(lp.hist_counts), np.asarray(lp.hist_edges), fill=True, **kwargs)
    ax.set_xlabel("rate (spikes / neuron / step)")
    ax.set_ylabel("neurons")
    ax.set_title(f"{lp.name}: {lp.silent:.0%} silent, {lp.at_max_rate:.0%} at max rate")
    return ax


def work_skipped(source, *, ax=None, **kwargs):
    """Share of the clock-driven neuron updates never performed, per layer
    (input populations have none and are left out). ``kwargs`` to ``ax.bar``."""
    prof = _as_profile(source)
    ax = _axes(ax)
    shown = [lp for lp in prof.layers if lp.dense_updates]
    ax.bar(range(len(shown)), [100 * lp.work_skipped for lp in shown], **kwargs)
    ax.set_xticks(range(len(shown)), [lp.name for lp in shown], rotation=30, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("updates skipped (%)")
    ax.set_title(f"work skipped vs clock-driven: {prof.work_skipped:.1%} overall")
    return ax


# -- conversion -----------------------------------------------------------------------


def accuracy_vs_T(evaluation, *, ax=None, ann: bool = True, **kwargs):
    """Accuracy of a converted network at every T of an
    :class:`snn.convert.Evaluation`, with the ANN's as a dashed line.
    ``kwargs`` to ``ax.plot``."""
    ax = _axes(ax)
    steps = [r["T"] for r in evaluation.rows]
    style = {"marker": "o", "color": "C0", **kwargs}
    ax.plot(steps, [100 * r["accuracy"] for r in evaluation.rows], label="SNN", **style)
    if ann and np.isfinite(evaluation.ann_accuracy):
        ax.axhline(100 * evaluation.ann_accuracy, ls="--", lw=1, color=style["color"], label="ANN")
    _log_steps(ax, steps)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def exit_steps(run, labels=None, *, ax=None, **kwargs):
    """Histogram of the steps at which the samples of an
    :class:`snn.convert.ExitedRun` stopped (``labels``: stacked by whether
    the decision was right). ``kwargs`` to ``ax.hist``."""
    ax = _axes(ax)
    bins = np.arange(1, run.n_steps + 2) - 0.5
    if labels is None:
        ax.hist(run.exit_step, bins=bins, **kwargs)
    else:
        right = run.decision == np.asarray(labels)
        ax.hist(
            [run.exit_step[right], run.exit_step[~right]],
            bins=bins,
            stacked=True,
            label=["right", "wrong"],
            color=["C0", "C3"],
            **kwargs,
        )
        ax.legend(fontsize=8)
    ax.set_xlim(0.5, max(int(run.exit_step.max()), 1) + 1.5)
    ax.set_xlabel(f"exit step (of T = {run.n_steps})")
    ax.set_ylabel("samples")
    ax.set_title(f"early exit ({run.rule}): mean step {run.exit_step.mean():.1f}")
    return ax


def cost_vs_T(evaluation, cost: str = "energy", *, ax=None, relative: bool = True, **kwargs):
    """SynOps or energy per sample at every T of an Evaluation.

    cost : ``"energy"`` (pJ, analog MACs included) or ``"synops"``.
    relative : divide by the ANN's (energy, or MACs for SynOps) and draw 1.
    Put it on ``ax.twinx()`` of :func:`accuracy_vs_T` for one figure.
    ``kwargs`` to ``ax.plot``.
    """
    if cost not in ("energy", "synops"):
        raise ValueError(f"cost must be 'energy' or 'synops', got {cost!r}")
    ax = _axes(ax)
    steps = [r["T"] for r in evaluation.rows]
    key = "energy_pj" if cost == "energy" else "synops"
    ref = evaluation.ann_energy_pj if cost == "energy" else evaluation.ann_macs
    values = np.array([r[key] for r in evaluation.rows], float)
    style = {"marker": "s", "color": "C3", **kwargs}
    ax.plot(steps, values / ref if relative else values, label=f"SNN {cost}", **style)
    if relative:
        ax.axhline(1.0, ls=":", lw=1, color=style["color"])
    _log_steps(ax, steps)
    what = "energy" if cost == "energy" else "SynOps"
    ax.set_ylabel(
        f"{what} / ANN {'energy' if cost == 'energy' else 'MACs'}"
        if relative
        else ("energy (pJ / sample)" if cost == "energy" else "SynOps / sample")
    )
    return ax


def _log_steps(ax, steps):
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("time steps T")
