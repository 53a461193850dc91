"""Reading and scoring a converted model's runs: the readout and the
cumulative counts of one run at every step (:class:`Trajectory`, exact by
causality), per-sample early exit on it (:class:`EarlyExit`), and
:func:`evaluate`: accuracy, SynOps, MACs, updates, energy and time per
sample for several T, in one pass or one run per T (split across Dask
workers by :mod:`snn.distributed` with ``client=``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from ..energy import EnergyModel
from ..run.spiketrains import SpikeTrains
from .base import ann_outputs, check_labels, check_samples
from .chain import ConvertedNetwork
from .dispatch import _check_converted, _is_graph
from .graph import ConvertedGraph
from .stopping import ExitRule, run_early_exit

# -- one run read at every step ---------------------------------------------------


@dataclass
class Trajectory:
    """The readout and cumulative counts of one run to ``T`` steps, at every step.

    Exact at every ``t <= T`` by causality: the network is feed-forward, its
    input is constant and its neurons see only the past, so the spikes of
    steps ``< t`` of a run to ``T`` are those of a run to ``t`` (same input,
    state precision and layer paths); only the readout membrane's rounding
    differs (summation order, ~1e-12 relative in float64).

    readout : ``[T, B, n_out]`` float64; ``readout[t - 1]`` is the readout
        membrane after ``t`` steps, ``v_init + t * bias + W @ c_t`` with
        ``c_t`` the readout's input spike counts of steps ``< t``. It
        approximates ``t`` times the ANN's logits.
    synops : ``[L, T + 1, B]`` int64; ``synops[l, t]`` is the number of
        synaptic operations layer ``l`` performed in steps ``< t`` (its input
        spikes of those steps times their fan-out).
    macs : ``[L, B]`` int64; multiply-accumulates of the analog first layer,
        done once (the same for every ``t >= 1``).
    """

    readout: np.ndarray
    synops: np.ndarray
    macs: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.readout.shape[0]

    @property
    def batch_size(self) -> int:
        return self.readout.shape[1]

    def decisions(self) -> np.ndarray:
        """Class decision after each step, ``[T, B]`` (argmax of the readout)."""
        return self.readout.argmax(axis=2)

    def synops_at(self, steps) -> np.ndarray:
        """SynOps of all layers in the first ``steps`` steps (an int, or one
        per sample), ``[B]`` int64."""
        steps = np.broadcast_to(np.asarray(steps, np.int64), (self.batch_size,))
        if steps.min(initial=0) < 0 or steps.max(initial=0) > self.n_steps:
            raise ValueError(f"steps must be in [0, {self.n_steps}]")
        return self.synops[:, steps, np.arange(self.batch_size)].sum(axis=0)


def readout_trajectory(converted: ConvertedNetwork, x, result) -> Trajectory:
    """Read a run of ``converted`` on analog samples ``x`` (``[B, *input_shape]``,
    the input of ``result = converted.run(x, T)``) at every step ``1..T``.

    Uses only the spike trains and counts in ``result`` (and ``x`` when the
    readout is the first layer); see :class:`Trajectory` for what is exact.
    A :class:`snn.convert.ConvertedGraph`'s readout is its recorded
    membrane (:func:`graph_trajectory`).
    """
    if _is_graph(converted):
        return graph_trajectory(converted, x, result)
    layers = converted.network.layers
    n_steps, batch = result.n_steps, result.batch_size
    if result.counts[0].synops.any():
        raise ValueError("readout_trajectory reads runs on constant analog input (converted.run)")
    synops = np.zeros((len(layers), n_steps + 1, batch), np.int64)
    for k in range(1, len(layers)):
        synops[k] = _cumulative_synops(result.trains[k - 1], layers[k].fan_out)
    macs = np.stack([c.macs for c in result.counts]).astype(np.int64)
    readout_layer = layers[-1]
    if len(layers) > 1:
        readout = _readout_from_spikes(readout_layer, result.trains[-2])
    else:  # the readout multiplies the analog input: a constant current
        flat = converted._flat(x)  # a new float64 array
        current = np.asarray(readout_layer.bias, np.float64) + flat @ readout_layer.dense_rows(np.float64)
        t = np.arange(1, n_steps + 1, dtype=np.float64)[:, None, None]
        readout = np.asarray(readout_layer.v_init, np.float64) + t * current[None]
    return Trajectory(readout, synops, macs)


def graph_trajectory(converted: ConvertedGraph, x, result):
    """:class:`snn.convert.Trajectory` of a run of ``converted`` (``result =
    converted.run(x, T)``): the readout membrane at every step (recorded),
    and per population the cumulative SynOps it received (its sources'
    spikes of steps ``< t`` times their fan-out through each projection;
    delays are 0) and the MACs of its drive."""
    graph = converted.network
    names = [p.name for p in graph.populations]
    n_steps, batch = result.n_steps, result.batch_size
    synops = np.zeros((len(names), n_steps + 1, batch), np.int64)
    for proj in graph.projections:
        if proj.kind == "maxpool":  # a gate compares spike counts: no SynOps
            continue
        k = names.index(proj.target.name)
        synops[k] += _cumulative_synops(result.trains[names.index(proj.source.name)], fan_out(proj))
    macs = np.stack([c.macs for c in result.counts]).astype(np.int64)
    return Trajectory(result.v(converted.readout), synops, macs)


def fan_out(projection) -> np.ndarray:
    """The SynOps one spike of each source neuron costs through a converted
    graph's projection (convolution or CSR; not a max-pool gate), ``[n_source]``."""
    if projection.kind == "conv":
        return projection.fan_out()
    ((_, rowptr, _, _),) = projection.groups
    return np.diff(rowptr)


def _cumulative_synops(trains, fan_out) -> np.ndarray:
    """``[T + 1, B]`` int64: input spikes of steps ``< t`` times their fan-out."""
    out = np.zeros((trains.n_steps + 1, trains.batch_size), np.int64)
    for b in range(trains.batch_size):
        n = trains.tptr[b, -1]
        cum = np.zeros(n + 1, np.int64)
        np.cumsum(fan_out[trains.idx[b, :n]], out=cum[1:])
        out[:, b] = cum[trains.tptr[b]]
    return out


def _readout_from_spikes(layer, trains) -> np.ndarray:
    """``[T, B, n_out]``: ``v_init + t * bias + W @ (input counts of steps < t)``, t = 1..T;
    each step's input current summed by a kernel, then summed over steps."""
    bias = np.broadcast_to(np.asarray(layer.bias, np.float64), (layer.n_out,))
    start = np.broadcast_to(np.asarray(layer.v_init, np.float64), (layer.n_out,))
    current = trains.currents(layer.dense_rows(np.float64))  # [n_in, n_out], the float32 weights exactly
    t = np.arange(1, trains.n_steps + 1, dtype=np.float64)[:, None, None]
    return start + t * bias + np.cumsum(current, axis=1).transpose(1, 0, 2)


# -- early exit ---------------------------------------------------------------------


@dataclass
class EarlyExit:
    """Per-sample early exit on the readout of one run, under a user rule.

    Every sample stops at the first step ``t`` (``min_steps <= t <= T``) at
    which the rule holds on the readouts of steps ``<= t`` (a causal, online
    rule), and at ``T`` if it never does:

    - ``patience = k``: the decision (readout argmax) has not changed over
      the last ``k`` steps (it is the same after steps ``t - k .. t``);
    - ``margin = m``: the gap between the two largest readout values divided
      by ``t`` is at least ``m``, in the units of the ANN's logits (the
      readout after ``t`` steps approximates ``t`` times the logits);
    - both given: both must hold.

    The SynOps are those an engine advancing all layers step by step and
    stopping after ``exit_step`` steps would perform -- exact, by causality
    (see :class:`Trajectory`). They are a count, not a measured saving of
    time: this library's event engine runs each layer over all ``T`` steps
    in turn, so the run it read cost the full ``T``.

    Also reported, in hindsight (not a rule: it looks at the future), the
    ``stable_step``: the first step after which the decision never changes
    up to ``T``, the least any exit rule can spend and keep every decision
    of step ``T``.

    Attributes (per sample, ``[B]``)
    --------------------------------
    exit_step : steps run (1..T).   decision : class decided at the exit.
    synops : SynOps up to the exit (all layers).   full_synops : to ``T``.
    macs : MACs of the analog first layer (once, exit or not).
    stable_step, stable_synops : the hindsight bound.
    accuracy, full_accuracy : of the exit decisions and of step ``T``'s.
    """

    rule: str
    n_steps: int
    exit_step: np.ndarray
    decision: np.ndarray
    synops: np.ndarray
    full_synops: np.ndarray
    macs: np.ndarray
    stable_step: np.ndarray
    stable_synops: np.ndarray
    accuracy: float
    full_accuracy: float

    @property
    def synops_saved(self) -> float:
        """Fraction of the SynOps of the full run that the exits avoid."""
        full = self.full_synops.sum()
        return float(1 - self.synops.sum() / full) if full else 0.0

    def summary(self, energy: EnergyModel | None = None) -> str:
        """Two lines: the rule's exits, and the hindsight bound, per sample."""
        energy = energy or EnergyModel()
        n = len(self.exit_step)

        def mean(a):
            return float(a.sum()) / n

        full_pj = energy.energy_pj(mean(self.full_synops), mean(self.macs))
        exit_pj = energy.energy_pj(mean(self.synops), mean(self.macs))
        stable_saved = 1 - self.stable_synops.sum() / max(self.full_synops.sum(), 1)
        return (
            f"early exit ({self.rule}): accuracy {self.accuracy:.2%} (T={self.n_steps}: "
            f"{self.full_accuracy:.2%}), mean exit step {mean(self.exit_step):.1f} of {self.n_steps}, "
            f"SynOps {mean(self.synops):,.0f} vs {mean(self.full_synops):,.0f} per sample "
            f"({self.synops_saved:.1%} saved), energy {exit_pj / full_pj:.3f} x the full run\n"
            f"hindsight (decision final from then on): mean step {mean(self.stable_step):.1f}, "
            f"SynOps {mean(self.stable_synops):,.0f} ({stable_saved:.1%} saved) at "
            f"{self.full_accuracy:.2%}\n"
            "(exit SynOps: what an engine stopping at the exit step performs, counted exactly by "
            "causality; not wall time: the run itself went to T)"
        )


def early_exit(
    trajectory: Trajectory,
    labels,
    *,
    patience: int | None = None,
    margin: float | None = None,
    min_steps: int = 1,
) -> EarlyExit:
    """Decide per sample when to stop, with the rule of :class:`EarlyExit`.

    Parameters
    ----------
    trajectory : the readout of a run at every step (:func:`readout_trajectory`).
    labels : ``[B]`` true classes.
    patience : steps over which the decision must not have changed (>= 0).
    margin : least top-2 gap of the readout per step, logit units (>= 0).
    min_steps : never stop before this many steps (>= 1).
    """
    if patience is None and margin is None:
        raise ValueError("give a rule: patience= (steps) and/or margin= (logit units)")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0
    ):
        raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if isinstance(min_steps, bool) or not isinstance(min_steps, (int, np.integer)) or min_steps < 1:
        raise ValueError(f"min_steps must be an integer >= 1, got {min_steps!r}")
    n_steps, batch = trajectory.n_steps, trajectory.batch_size
    labels = check_labels(labels, "labels", batch, trajectory.readout.shape[2])
    decisions = trajectory.decisions()
    ok = np.zeros((n_steps, batch), bool)
    ok[min_steps - 1 :] = True
    if patience is not None:
        ok &= _unchanged_for(decisions) >= patience
    if margin is not None:
        if trajectory.readout.shape[2] < 2:
            raise ValueError("margin needs a readout of at least two classes")
        top2 = np.sort(trajectory.readout, axis=2)[:, :, -2:]
        gap = (top2[:, :, 1] - top2[:, :, 0]) / np.arange(1, n_steps + 1)[:, None]
        ok &= gap >= margin
    ok[-1] = True  # no rule met: run to the end
    exit_step = ok.argmax(axis=0) + 1
    decision = decisions[exit_step - 1, np.arange(batch)]
    stable = _stable_step(decisions)
    rule = ", ".join(
        part
        for part in (
            f"patience {patience}" if patience is not None else "",
            f"margin {margin:g}" if margin is not None else "",
            f"min {min_steps} steps" if min_steps > 1 else "",
        )
        if part
    )
    return EarlyExit(
        rule,
        n_steps,
        exit_step,
        decision,
        trajectory.synops_at(exit_step),
        trajectory.synops_at(n_steps),
        trajectory.macs.sum(axis=0),
        stable,
        trajectory.synops_at(stable),
        float(np.mean(decision == labels)),
        float(np.mean(decisions[-1] == labels)),
    )


def _unchanged_for(decisions) -> np.ndarray:
    """``[T, B]``: how many steps back the decision has been the same."""
    run = np.zeros(decisions.shape, np.int64)
    for t in range(1, len(decisions)):
        run[t] = np.where(decisions[t] == decisions[t - 1], run[t - 1] + 1, 0)
    return run


def _stable_step(decisions) -> np.ndarray:
    """``[B]``: first step (1-based) from which the decision equals the last one."""
    changed = decisions != decisions[-1]
    last_changed = len(decisions) - 1 - changed[::-1].argmax(axis=0)
    return np.where(changed.any(axis=0), last_changed + 2, 1)


# -- evaluation and accounting ---------------------------------------------------


@dataclass
class Evaluation:
    """Accuracy and cost of a converted network for several T (per sample).

    rows : one dict per T with ``T``, ``accuracy``, ``synops``, ``macs``
        (SNN, analog first layer), ``updates``, ``dense_updates`` (``T`` x
        the neurons), ``energy_pj`` and ``ms_per_sample`` (whole set, all
        cores). In a single pass, ``updates`` and ``ms_per_sample`` are
        measured for the one run to ``T_max`` and are NaN on the other rows.
    ann_accuracy, ann_macs, ann_energy_pj : the ANN's, for comparison.
    single_pass : the rows were read from one run to ``T_max``.
    trajectory, labels : that run at every step, and the labels (single
        pass only), for :meth:`early_exit`.
    readout_ms_per_sample : time spent reading the run at every step (single
        pass only), on top of the run's.
    """

    rows: list
    ann_accuracy: float
    ann_macs: int
    ann_energy_pj: float
    energy: EnergyModel
    single_pass: bool = False
    trajectory: Trajectory | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    readout_ms_per_sample: float = math.nan

    def early_exit(
        self, *, patience: int | None = None, margin: float | None = None, min_steps: int = 1
    ) -> EarlyExit:
        """Early exit on the single-pass run (see :func:`early_exit`)."""
        if self.trajectory is None:
            raise ValueError("early exit needs evaluate(..., single_pass=True)")
        return early_exit(self.trajectory, self.labels, patience=patience, margin=margin, min_steps=min_steps)

    def table(self) -> str:
        head = (
            f"{'T':>4} {'accuracy':>9} {'SynOps':>11} {'SynOps/MAC':>10} {'SNN MACs':>9} "
            f"{'energy/ANN':>10} {'updates':>8} {'ms/sample':>9}"
        )
        ann = (
            f"{'ANN':>4} {self.ann_accuracy:>9.2%} {'-':>11} {'-':>10} {self.ann_macs:>9,} "
            f"{1:>10.3f} {'-':>8} {'-':>9}"
        )
        lines = [head, ann]
        for r in self.rows:
            updates = (
                f"{r['updates'] / r['dense_updates']:>8.1%}" if not math.isnan(r["updates"]) else f"{'-':>8}"
            )
            ms = f"{r['ms_per_sample']:>9.3f}" if not math.isnan(r["ms_per_sample"]) else f"{'-':>9}"
            lines.append(
                f"{r['T']:>4} {r['accuracy']:>9.2%} {r['synops']:>11,.0f} "
                f"{r['synops'] / self.ann_macs:>10.3f} {r['macs']:>9,.0f} "
                f"{r['energy_pj'] / self.ann_energy_pj:>10.3f} {updates} {ms}"
            )
        note = ""
        if "exit_step" in self.rows[0]:
            note = "\nearly exit: mean steps run " + ", ".join(
                f"{r['exit_step']:.1f} of {r['T']}" for r in self.rows
            )
        if self.single_pass:
            t_max = max(r["T"] for r in self.rows)
            note = (
                f"\nsingle pass: one run to T={t_max} read at every T (exact: the dynamics are causal); "
                f"updates and ms/sample are that run's (reading it at every step: "
                f"{self.readout_ms_per_sample:.3f} ms/sample more)"
            )
        return (
            "\n".join(lines)
            + note
            + (
                "\nper sample. SynOps: weights added to a target because a spike arrived (ACs); "
                "SNN MACs: the analog input multiplied once by the first layer; "
                "ANN MACs: Linear/Conv2d multiply-accumulates "
                f"(BatchNorm folded, pooling excluded); updates: neuron updates done vs a clock-driven run; "
                f"{self.energy.describe()}"
            )
        )


def evaluate(
    converted: ConvertedNetwork,
    x,
    y,
    steps=(4, 8, 16, 32, 64),
    *,
    single_pass: bool = True,
    energy: EnergyModel | None = None,
    ann_model: nn.Module | None = None,
    mode: str | None = None,
    progress: bool = False,
    client=None,
    exit: ExitRule | None = None,  # noqa: A002 -- the rule's natural name
) -> Evaluation:
    """Accuracy, exact counts and time per sample of ``converted`` on ``x``
    (``[N, *input_shape]``, labels ``y`` ``[N]``) for each T in ``steps``.

    Parameters
    ----------
    single_pass : run once to ``T_max = max(steps)`` on the event backend
        and read accuracy and SynOps at every T from that run
        (:func:`readout_trajectory`; equal to separate runs by causality);
        its time is the ``T_max`` run's. ``False``: one timed run per T.
    energy : pJ per AC / MAC (default :class:`EnergyModel`).
    ann_model : the ANN, for its accuracy on ``x``.
    mode : passed to ``Network.run`` (None: each layer's own choice).
    progress : a progress bar over the separate runs.
    client : a Dask client (or a scheduler address, or ``"local"``): split
        the samples across its workers, same numbers (see
        :func:`snn.distributed.evaluate`; needs the ``dask`` extra).
    exit : an :class:`~snn.convert.ExitRule`: each T is one run by
        :func:`~snn.convert.run_early_exit` (samples stop once the rule
        holds; counts and time are what was done, ``exit_step`` per row is
        the mean steps run); ``single_pass`` does not apply.

    Kernels are compiled before the timed runs.
    """
    from tqdm.auto import tqdm

    if exit is not None and not isinstance(exit, ExitRule):
        raise TypeError(f"exit must be an ExitRule, got {type(exit).__name__}")
    if client is not None:
        if exit is not None:
            raise NotImplementedError("evaluate(client=..., exit=...): early exit runs in this process only")
        if _is_graph(converted):
            raise NotImplementedError(
                "evaluate(client=...) distributes converted chains (ConvertedNetwork) only; "
                "run a ConvertedGraph without client="
            )
        from ..distributed import evaluate as distributed_evaluate

        return distributed_evaluate(
            converted,
            x,
            y,
            steps,
            single_pass=single_pass,
            energy=energy,
            ann_model=ann_model,
            mode=mode,
            progress=progress,
            client=client,
        )
    _check_converted(converted)
    steps = [_positive_int("steps", t) for t in np.atleast_1d(steps).tolist()]
    if not steps:
        raise ValueError("steps must name at least one T")
    energy = energy or EnergyModel()
    x = check_samples(x, "x", converted.input_shape)
    y = check_labels(y, "y", len(x), _n_out(converted))
    if ann_model is not None and not isinstance(ann_model, nn.Module):
        raise TypeError(f"ann_model must be a torch.nn.Module, got {type(ann_model).__name__}")
    converted.network.prepare()
    trajectory, readout_ms = None, math.nan
    if exit is not None:
        single_pass = False
        rows = [
            _exit_row(converted, x, y, t, energy, mode, exit)
            for t in tqdm(steps, desc="evaluating", disable=not progress, leave=False)
        ]
    elif single_pass:
        rows, trajectory, readout_ms = _single_pass_rows(converted, x, y, steps, energy, mode)
    else:
        rows = [
            _run_row(converted, x, y, t, energy, mode)
            for t in tqdm(steps, desc="evaluating", disable=not progress, leave=False)
        ]
    return evaluation(converted, rows, ann_model, x, y, energy, single_pass, trajectory, readout_ms)


def evaluation(converted, rows, ann_model, x, y, energy, single_pass, trajectory, readout_ms) -> Evaluation:
    """An :class:`Evaluation` of ``rows``, with the ANN's accuracy on
    ``x`` (NaN without ``ann_model``, which runs in this process)."""
    ann_accuracy = float("nan")
    if ann_model is not None:
        ann_accuracy = float(np.mean(ann_outputs(ann_model, x, "x").argmax(1).numpy() == y))
    macs = converted.ann_total_macs
    return Evaluation(
        rows,
        ann_accuracy,
        macs,
        energy.energy_pj(0, macs),
        energy,
        single_pass,
        trajectory,
        y if single_pass else None,
        readout_ms,
    )


def _n_out(converted) -> int:
    """Outputs of the readout."""
    return converted.n_out if _is_graph(converted) else converted.network.layers[-1].n_out


def _n_neurons(converted) -> int:
    """Neurons updated per step by a clock-driven run."""
    if _is_graph(converted):
        return converted.network.n_neurons
    return sum(layer.n_out for layer in converted.network.layers)


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be positive integers, got {value!r}")
    return int(value)


def _run_row(converted, x, y, n_steps, energy, mode) -> dict:
    """One timed run to ``n_steps``."""
    start = time.perf_counter()
    result = converted.run(x, n_steps, mode=mode)
    elapsed = time.perf_counter() - start
    return run_row(n_steps, result.membrane.argmax(axis=1), result, y, energy, 1e3 * elapsed / len(y))


def _exit_row(converted, x, y, n_steps, energy, mode, rule) -> dict:
    """One timed run to at most ``n_steps`` with samples stopping early."""
    out = run_early_exit(converted, x, n_steps, rule, mode=mode)
    n = len(y)
    synops, macs = out.synops.sum() / n, out.macs.sum() / n
    return {
        "T": n_steps,
        "accuracy": float(np.mean(out.decision == y)),
        "synops": synops,
        "macs": macs,
        "updates": out.updates.sum() / n,
        "dense_updates": float(n_steps * _n_neurons(converted)),
        "energy_pj": energy.energy_pj(synops, macs),
        "ms_per_sample": 1e3 * out.seconds / n,
        "exit_step": float(out.exit_step.mean()),
    }


def run_row(n_steps, decisions, result, y, energy, ms_per_sample) -> dict:
    """The evaluation's row of a run to ``n_steps``: its decisions ``[B]``,
    its counts (``result.total``), the labels ``y``; the one place these
    figures are computed, for a run in this process and for a partitioned one."""
    n = len(y)
    synops, macs = result.total("synops") / n, result.total("macs") / n
    return {
        "T": n_steps,
        "accuracy": float(np.mean(decisions == y)),
        "synops": synops,
        "macs": macs,
        "updates": result.total("updates") / n,
        "dense_updates": result.total("dense_updates") / n,
        "energy_pj": energy.energy_pj(synops, macs),
        "ms_per_sample": ms_per_sample,
    }


def trajectory_rows(trajectory, updates, n_neurons, y, steps, energy, run_ms) -> list[dict]:
    """The evaluation's rows, one per ``T`` in ``steps``, read from a run to
    ``max(steps)``: its readout and SynOps trajectory, its neuron updates
    (summed over samples), the neurons updated per step by a clock-driven
    run, the labels ``y``, and its ms per sample. The one place these figures
    are computed, for a run in this process and for a partitioned one."""
    t_max, n = max(steps), len(y)
    macs = trajectory.macs.sum() / n
    rows = []
    for t in steps:
        synops = trajectory.synops[:, t].sum() / n
        last = t == t_max
        rows.append(
            {
                "T": t,
                "accuracy": float(np.mean(trajectory.readout[t - 1].argmax(axis=1) == y)),
                "synops": synops,
                "macs": macs,
                "updates": updates / n if last else math.nan,
                "dense_updates": float(t * n_neurons),
                "energy_pj": energy.energy_pj(synops, macs),
                "ms_per_sample": run_ms if last else math.nan,
            }
        )
    return rows


def _single_pass_rows(converted, x, y, steps, energy, mode):
    """Rows read from one timed run to ``max(steps)``; returns ``(rows, trajectory, ms/sample to read)``."""
    t_max = max(steps)
    n = len(y)
    start = time.perf_counter()
    result = converted.run(x, t_max, mode=mode)
    run_ms = 1e3 * (time.perf_counter() - start) / n
    SpikeTrains.empty(1, 1, 1).currents(np.zeros((1, 1)))  # compile (or load) the reading kernel, untimed
    start = time.perf_counter()
    trajectory = readout_trajectory(converted, x, result)
    readout_ms = 1e3 * (time.perf_counter() - start) / n
    rows = trajectory_rows(
        trajectory, result.total("updates"), _n_neurons(converted), y, steps, energy, run_ms
    )
    return rows, trajectory, readout_ms
