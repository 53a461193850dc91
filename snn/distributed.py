"""Scale out on Dask: dataset-parallel runs, evaluation and profiles, and
parameter sweeps, on a laptop's processes, an HPC allocation or a cluster.

Everything here is optional: ``import snn`` never imports Dask, and the
functions below import it when called (``pip install "snn-zero-waste[dask]"``).

What runs where
---------------
- :func:`run`, :func:`evaluate`: the samples are split into contiguous
  partitions (in order); the network is sent to every worker once
  (``client.scatter(..., broadcast=True)``), each partition once to one
  worker, and one task per partition runs it there. The results are merged
  *exactly*: per-sample arrays are concatenated in the original sample
  order, then every aggregate (accuracy, SynOps, updates, the early-exit
  report) is computed from the concatenated arrays by the same formulas as
  the single-process code, so the numbers are equal, not close (the tests
  compare them with ``==``).
- :func:`run` with ``gather=False`` leaves each partition's result on the
  worker that computed it (a :class:`PartitionedResult`);
  ``snn.profile(partitioned)`` then ships back only the profile's sufficient
  statistics (spikes per neuron and per step, count totals: O(neurons + T)
  per layer and partition) and merges them into the exact profile of the
  whole set.
- :func:`sweep`: one task per point of a parameter grid, failures reported
  per point, a seed derived per point, a pandas DataFrame back.

Exactness and the path choice: a sample's spikes do not depend on the other
samples of its batch, but a layer left on ``mode="auto"`` chooses its path
(event, clock, dense) from the activity of the whole batch, and the paths
count ``updates`` differently (and may round sums differently). A
partition chooses from its own activity; when partitions disagree, a
:class:`PathWarning` names the layer. Pass ``mode=`` (or build the layers
with a fixed ``mode``) and the equality holds whatever the partitions.

Workers
-------
:func:`local_client` starts a ``LocalCluster`` of worker processes with one
numba thread each (``numba.set_num_threads`` in every task: numba's setting
is per thread; ``NUMBA_NUM_THREADS`` is left alone, as numba refuses a
compilation once it differs from the size of the pool already started), and
registers :class:`WorkerSetup`, a worker plugin that records the thread
count and loads the kernel cache once per worker (compiled at most once per
machine: compilation holds a lock file, so the other processes on the
machine then load the compiled code from numba's on-disk cache). Before
work is sent, every worker is asked to import ``snn``; one that cannot
raises :class:`WorkerImportError` naming it.

At scale
--------
On 100 machines three things change. *Data locality*: the client must not
be the pipe every sample goes through; give :func:`evaluate` (or
:func:`run`, constant analog input) a dask array whose chunks the workers
read themselves from shared storage (``dask.array.from_zarr``, an HDF5 or
NumPy memmap loader); each partition is then one chunk, loaded where it is
used, and only the network (once per worker) and the results cross the
client. *Result sizes*: spike trains grow with samples x T x activity and
do not belong on the client: ``gather=False`` keeps them on the workers and
the profile ships O(neurons + T) numbers per partition; an evaluation ships
the readout at every step (``T x classes`` floats per sample) and the
cumulative SynOps (``layers x (T + 1)`` integers per sample), kilobytes per
sample, which is what its early-exit report needs. *Failure of a worker
mid-run*: Dask recomputes the lost tasks elsewhere (from the scattered
inputs it still holds, or by reloading the chunk from storage, which is why
loading on the workers is also the robust choice); a task that keeps
killing its workers fails with ``KilledWorker`` after
``distributed.scheduler.allowed-failures`` tries, which :func:`sweep`
reports for that point while the other points finish. Partitions are pure
functions of (network, samples), so a recomputed partition gives the same
numbers.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from .energy import EnergyModel
from .run.result import LayerCounts, RunResult
from .run.spiketrains import SpikeTrains

__all__ = [
    "PartitionedResult",
    "PathWarning",
    "WorkerImportError",
    "check_workers",
    "evaluate",
    "local_client",
    "profile",
    "run",
    "seed_for",
    "setup_workers",
    "sweep",
]

INSTALL_HINT = 'pip install "snn-zero-waste[dask]"'
PLUGIN_NAME = "snn-worker-setup"


class WorkerImportError(ImportError):
    """A Dask worker cannot import ``snn`` (or a module the work needs)."""


class PathWarning(UserWarning):
    """Partitions ran a layer on different paths (event / clock / dense)."""


def _distributed():
    """``distributed``, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"snn.distributed needs Dask's distributed scheduler: {INSTALL_HINT}") from exc
    return distributed


# -- workers -----------------------------------------------------------------------


@functools.cache
def _worker_setup_class():
    from distributed.diagnostics.plugin import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        """Dask worker plugin: numba threads per task and a warm kernel cache.

        Parameters
        ----------
        numba_threads : numba threads each task of this worker uses (1: one
            process per core is the parallelism; more only for workers with
            spare cores, e.g. one worker per machine).
        warm : load (compile if the cache is cold, at most once per machine)
            the kernels of a small Linear network when the worker starts;
            a network's own kernels are loaded before its first partition
            runs.
        """

        name = PLUGIN_NAME

        def __init__(self, numba_threads: int = 1, warm: bool = True):
            self.numba_threads = _positive("numba_threads", numba_threads)
            self.warm = bool(warm)

        def setup(self, worker):
            worker.snn_numba_threads = self.numba_threads
            if self.warm:
                import snn

                with _machine_lock():
                    snn.Network([snn.Linear(2, 2, snn.LIF(beta=0.9), seed=0)]).prepare()

    WorkerSetup.__module__ = __name__
    WorkerSetup.__qualname__ = "WorkerSetup"
    return WorkerSetup


def __getattr__(name):
    # the plugin subclasses Dask's WorkerPlugin, so the class is made on first use
    # (``import snn.distributed`` works without Dask; pickling finds it by name)
    if name == "WorkerSetup":
        return _worker_setup_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def _machine_lock(name: str = "snn-kernel-compile"):
    """Serialise kernel compilation between the processes of one machine: the
    first compiles into numba's on-disk cache, the others then load it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, each process may compile
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"{name}-{os.getuid()}.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# evaluated on every worker by the builtin ``eval`` (pickled by name, so the check
# itself needs nothing the worker might lack)
_PROBE = "(lambda m: (m.__version__, m.__file__))(__import__({module!r}))"


def check_workers(client, module: str = "snn.distributed") -> dict:
    """Ask every worker to import ``module``; returns ``{worker: snn version}``.

    Raises :class:`WorkerImportError` naming the workers that cannot, and
    warns when a worker's ``snn`` version differs from this one's.
    """
    from . import __version__

    answers = client.run(eval, _PROBE.format(module=module), on_error="return")
    failed = {addr: a for addr, a in answers.items() if isinstance(a, BaseException)}
    if failed:
        detail = "; ".join(f"{addr}: {type(e).__name__}: {e}" for addr, e in sorted(failed.items()))
        raise WorkerImportError(
            f"{len(failed)} of {len(answers)} Dask workers cannot import {module} ({detail}). Every worker "
            f"needs snn installed in its own environment, the same version as here ({__version__}): "
            f"{INSTALL_HINT} there (or build the workers from the client's image / environment)"
        )
    versions = {addr: a[0] for addr, a in answers.items()}
    other = {addr: v for addr, v in versions.items() if v != __version__}
    if other:
        warnings.warn(
            f"Dask workers run another snn version than this process ({__version__}): {other}", stacklevel=2
        )
    return versions


def setup_workers(client, numba_threads: int = 1, *, warm: bool = True) -> None:
    """Check that every worker imports ``snn``, then register
    :class:`WorkerSetup` (replacing an earlier registration). Workers that
    join later get the plugin too."""
    check_workers(client)
    client.register_plugin(_worker_setup_class()(numba_threads, warm), name=PLUGIN_NAME)


def local_client(
    n_workers: int | None = None, *, numba_threads: int = 1, threads_per_worker: int = 1, **cluster_kwargs
):
    """A ``dask.distributed.Client`` on a new ``LocalCluster`` of worker processes.

    Parameters
    ----------
    n_workers : worker processes (default: one per core, ``os.cpu_count()``).
    numba_threads : numba threads per task (default 1: the processes are the
        parallelism).
    threads_per_worker : Dask task threads per worker process.
    cluster_kwargs : passed to ``LocalCluster`` (the dashboard is off unless
        ``dashboard_address`` is given).

    Close it with ``client.close(); client.cluster.close()``.
    """
    distributed = _distributed()
    numba_threads = _positive("numba_threads", numba_threads)
    n_workers = (os.cpu_count() or 1) if n_workers is None else _positive("n_workers", n_workers)
    cluster_kwargs.setdefault("dashboard_address", None)
    cluster = distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, **cluster_kwargs
    )
    client = distributed.Client(cluster, set_as_default=False)
    client._snn_owns_cluster = True  # closing the client closes the cluster (see _close)
    try:
        setup_workers(client, numba_threads)
    except BaseException:
        _close(client)
        raise
    return client


def _close(client):
    client.close()
    if getattr(client, "_snn_owns_cluster", False) and client.cluster is not None:
        client.cluster.close()


@contextmanager
def _using(client):
    """Yield ``(client, owned)``, a ready client and whether it closes after
    this call: a ``Client`` as given, a scheduler address
    (connected for this call), ``None`` (the default client if there is one,
    else a temporary ``LocalCluster``) or ``"local"`` (a temporary
    ``LocalCluster``, one worker process per core)."""
    distributed = _distributed()
    owned = False
    if client is None:
        try:
            client = distributed.default_client()
        except ValueError:
            client = "local"
    if isinstance(client, str):
        if client == "local":
            client = local_client()
        else:
            client = distributed.Client(client, set_as_default=False)
        owned = True
    if not isinstance(client, distributed.Client):
        raise TypeError(
            f"client must be a dask.distributed.Client, a scheduler address, 'local' or None, "
            f"got {type(client).__name__}"
        )
    if not getattr(client, "_snn_checked", False):
        try:
            check_workers(client)
        except BaseException:
            if owned:
                _close(client)
            raise
        client._snn_checked = True
    try:
        yield client, owned
    finally:
        if owned:
            _close(client)


def _task_threads(requested):
    """Numba threads for a task: as asked, else the worker's setting, else 1."""
    if requested is not None:
        return requested
    try:
        from distributed import get_worker

        return getattr(get_worker(), "snn_numba_threads", 1)
    except (ImportError, ValueError):
        return None  # not on a Dask worker: numba's own default


def _positive(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# -- partitions ----------------------------------------------------------------------


def _bounds(n: int, partitions: int) -> list[tuple[int, int]]:
    """``partitions`` contiguous ``(start, stop)`` ranges covering ``0..n``,
    sizes differing by at most one (as ``np.array_split``)."""
    edges = np.linspace(0, n, min(partitions, n) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _n_partitions(client, n: int, partitions) -> int:
    if partitions is not None:
        return min(_positive("partitions", partitions), max(n, 1))
    threads = sum(client.nthreads().values()) or 1
    return max(1, min(n, 4 * threads))  # a few per thread: the last ones fill the gaps


def _is_dask_array(x) -> bool:
    return type(x).__module__.startswith("dask.array")


def _sample_parts(client, x, partitions):
    """Futures of ``x`` split along its first axis, in order, and their sizes.

    A numpy array is cut on the client and each part sent to one worker; a
    dask array is computed chunk by chunk on the workers (the data never
    passes through the client) with its own chunks along the first axis,
    or ``partitions`` of them."""
    if _is_dask_array(x):
        whole = {axis: -1 for axis in range(1, x.ndim)}
        if partitions is not None:
            sizes = [b - a for a, b in _bounds(x.shape[0], _n_partitions(client, x.shape[0], partitions))]
            x = x.rechunk({0: tuple(sizes), **whole})
        elif any(len(c) > 1 for c in x.chunks[1:]):
            x = x.rechunk(whole)
        blocks = list(x.to_delayed().ravel())
        return client.compute(blocks), list(x.chunks[0])
    bounds = _bounds(len(x), _n_partitions(client, len(x), partitions))
    return client.scatter([x[a:b] for a, b in bounds], hash=False), [b - a for a, b in bounds]


def _broadcast(client, obj):
    """One copy of ``obj`` on every worker (a future to pass to tasks)."""
    return client.scatter([obj], broadcast=True, hash=False)[0]


def _prepare_everywhere(client, network_future, input_shape=None):
    """Load (compile at most once per machine) the kernels of the network on
    every worker, before anything is timed."""
    futures = [
        client.submit(
            _prepare_task, network_future, input_shape, workers=[addr], allow_other_workers=False, pure=False
        )
        for addr in client.nthreads()
    ]
    client.gather(futures)


def _prepare_task(network, input_shape):
    with _machine_lock():
        if input_shape is None:
            network.prepare()
            return
        network.network.prepare()
        # the readout-at-every-step kernel of an evaluation, on a probe sample
        from .convert import readout_trajectory

        probe = np.zeros((1, *input_shape))
        readout_trajectory(network, probe, network.run(probe, 2))


def _gather_in_order(client, futures, progress: bool, desc: str) -> list:
    """Results of ``futures`` in their order, with a progress bar if asked."""
    if progress:
        from distributed import as_completed
        from tqdm.auto import tqdm

        with tqdm(total=len(futures), desc=desc, leave=False) as bar:
            for _ in as_completed(futures, loop=client.loop):
                bar.update()
    return client.gather(futures)


# -- exact merging --------------------------------------------------------------------


def _concat_trains(trains: list[SpikeTrains]) -> SpikeTrains:
    cap = max(t.idx.shape[1] for t in trains)
    idx = np.zeros((sum(t.batch_size for t in trains), cap), np.int32)
    row = 0
    for t in trains:
        idx[row : row + t.batch_size, : t.idx.shape[1]] = t.idx
        row += t.batch_size
    return SpikeTrains(np.concatenate([t.tptr for t in trains]), idx, trains[0].n)


def _concat_counts(parts: list[LayerCounts]) -> LayerCounts:
    modes = list(dict.fromkeys(c.mode for c in parts))
    if len(modes) > 1:
        warnings.warn(
            f"layer {parts[0].name!r} ran on different paths in different partitions ({', '.join(modes)}): "
            "its updates add counts of different paths and may differ from a single-process run's; pass "
            "mode='event' (or 'clock'/'dense') for results equal to one process",
            PathWarning,
            stacklevel=3,
        )
    cat = {
        key: np.concatenate([getattr(c, key) for c in parts])
        for key in ("synops", "macs", "updates", "dense_updates", "spikes", "input_events")
    }
    return LayerCounts(parts[0].name, "+".join(modes), **cat)


def _merge_counts(per_part: list[list[LayerCounts]]) -> list[LayerCounts]:
    return [_concat_counts(list(layer)) for layer in zip(*per_part, strict=True)]


def _merge_results(parts: list[RunResult]) -> RunResult:
    """One result of the partitions' results (in sample order): trains,
    counts, membranes and recordings concatenated along the samples; names
    and ``dt`` of the first; ``seconds`` the partitions' simulation times
    summed (the work done, not the time the whole run took)."""
    trains = [_concat_trains(list(layer)) for layer in zip(*(p.trains for p in parts), strict=True)]
    membrane = None if any(p.membrane is None for p in parts) else np.concatenate([p.membrane for p in parts])
    first = parts[0]

    def recordings(attr):  # name -> (indices, [T, B, R]), B concatenated
        return {
            name: (idx, np.concatenate([getattr(p, attr)[name][1] for p in parts], axis=1))
            for name, (idx, _) in getattr(first, attr).items()
        }

    return RunResult(
        trains,
        _merge_counts([p.counts for p in parts]),
        membrane,
        first.backend,
        names=first.names,
        recorded=recordings("recorded"),
        recorded_i=recordings("recorded_i"),
        dt=first.dt,
        seconds=float(sum(p.seconds for p in parts)),
        projection_synops={
            name: np.concatenate([part.projection_synops[name] for part in parts])
            for name in first.projection_synops
        },
    )


# -- run ---------------------------------------------------------------------------------


@dataclass
class PartitionedResult:
    """A run whose partitions stay on the workers that computed them.

    ``gather()`` brings them to this process as one :class:`snn.RunResult`
    (equal to a single-process run); ``snn.profile(partitioned)`` computes
    the profile of the whole set from per-partition statistics without
    moving spike trains. ``release()`` frees the workers' memory.

    futures : one per partition, in sample order.  sizes : samples per
    partition.  client : the client they belong to.
    """

    futures: list
    sizes: list
    client: object
    partitioned = True  # the marker snn.profile looks for

    @property
    def batch_size(self) -> int:
        return int(sum(self.sizes))

    def gather(self) -> RunResult:
        return _merge_results(self.client.gather(self.futures))

    def release(self) -> None:
        self.client.cancel(self.futures)
        self.futures = []

    def __repr__(self):
        return f"PartitionedResult(batch={self.batch_size}, partitions={len(self.sizes)})"


def run(
    network,
    spikes=None,
    *,
    events=None,
    analog=None,
    inputs=None,
    drive=None,
    T: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    record_v=None,
    record_i=None,
    backend: str = "event",
    mode: str | None = None,
    client=None,
    partitions: int | None = None,
    numba_threads: int | None = None,
    gather: bool = True,
    progress: bool = False,
):
    """``network.run(...)`` over a large batch, split across Dask workers.

    ``network``: a :class:`snn.Network`, with the input arguments of
    :meth:`snn.Network.run` (``spikes``, ``events`` or ``analog``; ``analog``
    may also be a dask array ``[B, n_in]``, loaded chunk by chunk on the
    workers), or a :class:`snn.Graph`, with those of :meth:`snn.Graph.run`
    (``inputs`` and ``drive`` by population, ``batch_size``, ``seed``: each
    partition draws the Poisson background of its samples in the whole
    batch, ``first_sample``, so the merge equals one process's run);
    ``record_v`` / ``record_i`` for both. The batch is split along its
    sample axis into ``partitions`` contiguous parts (default: four per
    worker thread).

    Parameters
    ----------
    client : a ``dask.distributed.Client``, a scheduler address
        (``"tcp://host:8786"``), ``"local"`` (a temporary ``LocalCluster``) or
        None (the default client, else a temporary ``LocalCluster``).
    numba_threads : numba threads per task (default: the worker's setting,
        one unless :func:`setup_workers` said otherwise).
    gather : return one merged :class:`snn.RunResult` (equal to
        ``network.run`` in one process; see the module note on ``mode``), or
        False: a :class:`PartitionedResult` left on the workers (needs a
        client that outlives the call).
    progress : a progress bar over the partitions.
    """
    from .model.graph import Graph
    from .model.network import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    stack_inputs = sum(x is not None for x in (spikes, events, analog))
    if isinstance(network, Graph):
        if stack_inputs:
            raise ValueError(
                "a Graph takes inputs= and drive= (by population), not spikes=, events= or analog="
            )
        # checked here, once; populations named (the workers hold copies of the graph)
        record_v, record_i = (
            {getattr(k, "name", k): v for k, v in dict(r or {}).items()} for r in (record_v, record_i)
        )
        T, trains, batch, drives, _ = network._checked(
            T, inputs, drive, batch_size, seed, record_v, record_i, mode
        )
    elif inputs is not None or drive is not None or seed != 0:
        raise ValueError(
            "inputs=, drive= and seed= are a Graph's; a Network takes spikes=, events= or analog="
        )
    elif stack_inputs != 1:
        raise ValueError("give exactly one of spikes=, events= or analog=")
    record = dict(record_v=record_v, record_i=record_i)
    with _using(client) as (client, owned):
        if not gather and owned:
            raise ValueError(
                "gather=False leaves the partitions on the workers: pass the Client that keeps them"
            )
        if isinstance(network, Graph):
            bounds = _bounds(batch, _n_partitions(client, batch, partitions))
            parts = [
                {
                    "inputs": {name: _train_rows(t, a, b) for name, t in trains.items()},
                    "drive": {name: d[..., a:b, :] for name, d in drives.items()},
                    "batch_size": b - a,
                    "first_sample": a,
                    "seed": seed,
                }
                for a, b in bounds
            ]
            calls, sizes = client.scatter(parts, hash=False), [b - a for a, b in bounds]
        elif spikes is not None or (
            analog is not None and not _is_dask_array(analog) and np.ndim(analog) == 3
        ):
            data = spikes if spikes is not None else analog
            name = "spikes" if spikes is not None else "analog"
            data = np.asarray(data)
            bounds = _bounds(data.shape[1], _n_partitions(client, data.shape[1], partitions))
            futures = client.scatter([data[:, a:b] for a, b in bounds], hash=False)
            sizes = [b - a for a, b in bounds]
            calls = [{name: f} for f in futures]
        elif events is not None:
            if batch_size is None:
                raise ValueError("events= needs T= and batch_size=")
            ev = np.asarray(events)
            bounds = _bounds(batch_size, _n_partitions(client, batch_size, partitions))
            sample = ev[:, 1] if ev.size else np.zeros(0, np.int64)
            parts = [ev[(sample >= a) & (sample < b)] - np.array([0, a, 0], ev.dtype) for a, b in bounds]
            futures = client.scatter(parts, hash=False)
            sizes = [b - a for a, b in bounds]
            calls = [{"events": f, "batch_size": s} for f, s in zip(futures, sizes, strict=True)]
        else:
            futures, sizes = _sample_parts(client, analog, partitions)
            calls = [{"analog": f} for f in futures]
        net = _broadcast(client, network)
        _prepare_everywhere(client, net)
        tasks = [
            client.submit(_run_task, net, call, T, backend, mode, record, numba_threads, pure=False)
            for call in calls
        ]
        if not gather:
            return PartitionedResult(tasks, sizes, client)
        return _merge_results(_gather_in_order(client, tasks, progress, "partitions"))


def _train_rows(trains: SpikeTrains, a: int, b: int) -> SpikeTrains:
    """Samples ``a .. b - 1`` of ``trains`` (their spikes only: no spare capacity sent)."""
    used = int(trains.tptr[a:b, -1].max(initial=0))
    return SpikeTrains(trains.tptr[a:b].copy(), np.ascontiguousarray(trains.idx[a:b, :used]), trains.n)


def _run_task(network, inputs, n_steps, backend, mode, record, numba_threads):
    kwargs = dict(inputs)
    if "analog" in kwargs and np.ndim(kwargs["analog"]) == 3:
        n_steps = None  # varying analog input carries its own T
    if "first_sample" in kwargs:  # a graph's
        kwargs["progress"] = False
    return network.run(
        T=n_steps, **kwargs, **record, backend=backend, mode=mode, n_threads=_task_threads(numba_threads)
    )


# -- profile -----------------------------------------------------------------------------


def profile(
    result,
    *,
    client=None,
    dt: float | None = None,
    energy: EnergyModel | None = None,
    activity: bool = False,
    quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
    bins: int = 30,
    ann_macs: int | None = None,
):
    """The :func:`snn.profile` of a :class:`PartitionedResult`, computed
    without moving its spike trains: each worker reduces its partitions to
    spikes per neuron and per step and the count totals; this process adds
    them up and derives every figure as :func:`snn.profile` does, so the
    profile equals that of the gathered run. (``snn.profile(partitioned)``
    comes here.) A plain :class:`snn.RunResult` is profiled in this process."""
    from .profile import profile as local_profile

    if isinstance(result, RunResult):
        return local_profile(
            result, dt=dt, energy=energy, activity=activity, quantiles=quantiles, bins=bins, ann_macs=ann_macs
        )
    if not isinstance(result, PartitionedResult):
        raise TypeError(f"profile takes a RunResult or PartitionedResult, got {type(result).__name__}")
    if client is not None and client is not result.client:
        raise ValueError("the partitions belong to another client")
    from .profile import profile_options

    dt, energy, quantiles, bins = profile_options(dt, energy, quantiles, bins)
    client = result.client
    stats = client.gather([client.submit(_profile_stats, f, pure=False) for f in result.futures])
    return _profile_from_stats(stats, dt, energy, activity, quantiles, bins, ann_macs)


_TOTALS = ("synops", "macs", "input_events", "updates", "dense_updates")


def _profile_stats(result: RunResult) -> dict:
    """What a profile needs of one partition: O(neurons + T) per layer."""
    from .profile import _neuron_counts

    layers = []
    for train, counts in zip(result.trains, result.counts, strict=True):
        layers.append(
            {
                "name": counts.name,
                "mode": counts.mode,
                "n": train.n,
                "per_neuron": _neuron_counts(train),
                "per_step": np.diff(train.tptr, axis=1).sum(axis=0),
                **{key: counts.total(key) for key in _TOTALS},
            }
        )
    return {
        "layers": layers,
        "n_steps": result.n_steps,
        "batch_size": result.batch_size,
        "backend": result.backend,
    }


def _profile_from_stats(stats, dt, energy, activity, quantiles, bins, ann_macs):
    """The whole set's profile from the partitions' statistics; every figure
    as ``snn.profile._layer_profile`` computes it from the spike trains."""
    from .profile import Profile, layer_profile

    n_steps, batch = stats[0]["n_steps"], sum(s["batch_size"] for s in stats)
    layers = []
    for parts in zip(*(s["layers"] for s in stats), strict=True):
        modes = list(dict.fromkeys(p["mode"] for p in parts))
        if len(modes) > 1:
            warnings.warn(
                f"layer {parts[0]['name']!r} ran on different paths in different partitions "
                f"({', '.join(modes)}); pass mode= for results equal to one process",
                PathWarning,
                stacklevel=3,
            )
        per_neuron = np.sum([p["per_neuron"] for p in parts], axis=0)
        totals = {key: sum(p[key] for p in parts) for key in _TOTALS}
        per_step = np.sum([p["per_step"] for p in parts], axis=0) if activity else None
        layers.append(
            layer_profile(
                parts[0]["name"],
                "+".join(modes),
                per_neuron,
                batch * n_steps,
                totals,
                per_step,
                dt,
                energy,
                quantiles,
                bins,
            )
        )
    return Profile(
        tuple(layers),
        n_steps,
        batch,
        dt,
        energy,
        quantiles,
        None if ann_macs is None else int(ann_macs),
        stats[0]["backend"],
    )


# -- evaluation of a converted network -------------------------------------------------


def evaluate(
    converted,
    x,
    y,
    steps=(4, 8, 16, 32, 64),
    *,
    single_pass: bool = True,
    energy: EnergyModel | None = None,
    ann_model=None,
    mode: str | None = None,
    progress: bool = False,
    client=None,
    partitions: int | None = None,
    numba_threads: int | None = None,
):
    """:func:`snn.convert.evaluate` with the samples split across Dask workers
    (``snn.convert.evaluate(..., client=...)`` comes here).

    The rows' accuracy, SynOps, MACs, updates and energy, the ANN's figures
    and the early-exit report equal a single-process evaluation's (see the
    module note on ``mode``). Times are of this distributed pass:
    ``ms_per_sample`` is its wall time (runs, readouts, transfers, all
    workers) per sample; in a single pass ``readout_ms_per_sample`` is the
    tasks' reading time per sample divided by the worker threads; with
    ``single_pass=False`` all (partition, T) tasks run at once and each row's
    ``ms_per_sample`` is its tasks' time per sample divided by the worker
    threads.

    ``x`` may be a numpy array (cut here, each part sent to one worker) or a
    dask array (each chunk along the first axis computed, e.g. loaded from
    shared storage, on a worker). Other parameters: as
    :func:`snn.convert.evaluate`, and ``client``, ``partitions``,
    ``numba_threads`` as :func:`run`. The network and the ANN are not
    modified; the workers receive the SNN once each, without the converter's
    float64 copy of the ANN's weights.
    """
    from .convert import evaluation as sc  # evaluate's module: its checks, rows and result

    steps = [sc._positive_int("steps", t) for t in np.atleast_1d(steps).tolist()]
    if not steps:
        raise ValueError("steps must name at least one T")
    energy = energy or EnergyModel()
    x, y = _checked_samples(sc, converted, x, y)
    slim = replace(converted, ops=[], calibration=None)  # what a worker needs: the SNN and the input shape
    with _using(client) as (client, _):
        threads = sum(client.nthreads().values()) or 1
        parts, _ = _sample_parts(client, x, partitions)
        net = _broadcast(client, slim)
        _prepare_everywhere(client, net, tuple(converted.input_shape))
        start = time.perf_counter()
        if single_pass:
            tasks = [
                client.submit(_trajectory_task, net, part, max(steps), mode, numba_threads, pure=False)
                for part in parts
            ]
            done = _gather_in_order(client, tasks, progress, "evaluating")
            wall = time.perf_counter() - start
            trajectory = _concat_trajectories([d[0] for d in done])
            counts = _merge_counts([d[1] for d in done])
            readout_ms = 1e3 * sum(d[3] for d in done) / len(y) / threads
            rows = _single_pass_rows(converted, trajectory, counts, y, steps, energy, 1e3 * wall / len(y))
        else:
            tasks = [
                [client.submit(_row_task, net, part, t, mode, numba_threads, pure=False) for part in parts]
                for t in steps
            ]
            done = _gather_in_order(client, [f for per_t in tasks for f in per_t], progress, "evaluating")
            per_t = [done[k * len(parts) : (k + 1) * len(parts)] for k in range(len(steps))]
            rows = [_run_row(t, d, y, energy, threads) for t, d in zip(steps, per_t, strict=True)]
            trajectory, readout_ms = None, math.nan
    x = (
        np.asarray(x) if ann_model is not None else x
    )  # a dask array computed here: the ANN runs in this process
    return sc.evaluation(converted, rows, ann_model, x, y, energy, single_pass, trajectory, readout_ms)


def _checked_samples(sc, converted, x, y):
    """Samples and labels checked as ``snn.convert.evaluate`` checks them (its
    ``check_samples`` / ``check_labels``); a dask array's values are checked
    on the workers, chunk by chunk, when the network reads them."""
    sc._check_converted(converted)
    if _is_dask_array(y):
        y = y.compute()
    if not _is_dask_array(x):
        x = sc.check_samples(x, "x", converted.input_shape)
    return x, sc.check_labels(y, "y", len(x), converted.network.layers[-1].n_out)


def _trajectory_task(converted, x, n_steps, mode, numba_threads):
    """One partition run to ``n_steps`` and read at every step: the
    trajectory, the per-sample counts, the seconds of the run and of the
    reading (the spike trains stay here)."""
    from .convert import readout_trajectory

    start = time.perf_counter()
    result = converted.run(x, n_steps, mode=mode, n_threads=_task_threads(numba_threads))
    run_s = time.perf_counter() - start
    start = time.perf_counter()
    trajectory = readout_trajectory(converted, x, result)
    return trajectory, result.counts, run_s, time.perf_counter() - start


def _row_task(converted, x, n_steps, mode, numba_threads):
    """One partition run to ``n_steps``: decisions, per-sample counts, seconds."""
    start = time.perf_counter()
    result = converted.run(x, n_steps, mode=mode, n_threads=_task_threads(numba_threads))
    return result.membrane.argmax(axis=1), result.counts, time.perf_counter() - start


def _concat_trajectories(parts):
    from .convert import Trajectory

    return Trajectory(
        np.concatenate([p.readout for p in parts], axis=1),
        np.concatenate([p.synops for p in parts], axis=2),
        np.concatenate([p.macs for p in parts], axis=1),
    )


def _single_pass_rows(converted, trajectory, counts, y, steps, energy, run_ms):
    """The rows of ``snn.convert.evaluate``'s single pass, from the merged
    trajectory and per-sample counts, by the same function."""
    from .convert.evaluation import trajectory_rows

    updates = RunResult([], counts, None, "event").total("updates")  # over the merged per-sample counts
    n_neurons = sum(layer.n_out for layer in converted.network.layers)
    return trajectory_rows(trajectory, updates, n_neurons, y, steps, energy, run_ms)


def _run_row(n_steps, done, y, energy, threads) -> dict:
    """The row of ``snn.convert.evaluation._run_row`` from the partitions' decisions and counts."""
    from .convert.evaluation import run_row

    decisions = np.concatenate([d[0] for d in done])
    result = RunResult([], _merge_counts([d[1] for d in done]), None, "event")
    return run_row(n_steps, decisions, result, y, energy, 1e3 * sum(d[2] for d in done) / len(y) / threads)


# -- sweeps ---------------------------------------------------------------------------------


def seed_for(seed: int, index: int) -> int:
    """The seed of point ``index`` of a sweep with base ``seed``:
    ``SeedSequence(seed, spawn_key=(index,)).generate_state(1)[0]`` (the
    ``index``-th child of ``SeedSequence(seed).spawn``), a 32-bit integer
    that every seeded API accepts. It depends on the base seed and the
    point's position in the grid only: not on the workers, their number or
    the order in which points finish."""
    return int(np.random.SeedSequence(seed, spawn_key=(int(index),)).generate_state(1)[0])


def _points(grid) -> list[dict]:
    if isinstance(grid, dict):
        values = [
            v.tolist()
            if isinstance(v, np.ndarray)
            else list(v)
            if isinstance(v, (list, tuple, range))
            else [v]
            for v in grid.values()
        ]
        return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*values)]
    grid = list(grid)
    if not all(isinstance(p, dict) for p in grid):
        raise TypeError(
            "grid must be a dict of name -> values (all combinations) or a list of dicts (points)"
        )
    return [dict(p) for p in grid]


def _call_point(fn, point, seed, seed_arg, shared):
    """One sweep point; an exception becomes the point's error, not the sweep's."""
    kwargs = {**point, **(shared or {})}
    if seed_arg is not None:
        kwargs[seed_arg] = seed
    start = time.perf_counter()
    try:
        value = fn(**kwargs)
        error = None
    except Exception as exc:  # noqa: BLE001 -- reported per point, the others go on
        value, error = None, (f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return value, error, time.perf_counter() - start


def sweep(
    fn,
    grid,
    *,
    client=None,
    seed: int = 0,
    seed_arg: str | None = "seed",
    shared: dict | None = None,
    progress: bool = True,
):
    """Run ``fn`` at every point of a parameter grid; one row per point.

    Parameters
    ----------
    fn : ``fn(**point, seed=..., **shared)`` returning a dict of results
        (one column each; anything else becomes the column ``value``). It
        typically builds a network from the point's parameters and runs it.
        Defined in a script or notebook, it is sent by value (cloudpickle).
    grid : ``{name: values}`` (every combination, the last name varying
        fastest) or a list of ``{name: value}`` points.
    client : as :func:`run`, or ``"serial"``: this process, one point after
        another (no Dask needed; the same table).
    seed : base seed; point ``i`` gets :func:`seed_for` ``(seed, i)`` as the
        keyword ``seed_arg`` (None: no seed is passed). The sweep is
        reproducible whatever the workers.
    shared : large arguments common to every point (data, a trained model):
        sent to every worker once and passed to ``fn`` by keyword, instead of
        being pickled into every task (as a closure over them would be).
    progress : a progress bar over the points.

    Returns
    -------
    pandas.DataFrame, one row per point in grid order: the parameters, the
    ``seed``, the results, ``error`` (None, or ``"Type: message"`` of the
    exception the point raised, or of the failure of its task, e.g. a
    killed worker) and ``seconds`` (the point's run time). Full tracebacks
    are in ``frame.attrs["tracebacks"]`` (point index -> text). A failed
    point never stops the others.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"sweep returns a pandas DataFrame: {INSTALL_HINT}") from exc
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    points = _points(grid)
    seeds = [seed_for(seed, i) for i in range(len(points))]
    if client == "serial":
        from tqdm.auto import tqdm

        outcomes = [
            _call_point(fn, p, s, seed_arg, shared)
            for p, s in tqdm(
                list(zip(points, seeds, strict=True)), desc="sweep", disable=not progress, leave=False
            )
        ]
    else:
        with _using(client) as (dask_client, _):
            outcomes = _sweep_on(dask_client, fn, points, seeds, seed_arg, shared, progress)
    rows, tracebacks = [], {}
    for i, (point, s, (value, error, seconds)) in enumerate(zip(points, seeds, outcomes, strict=True)):
        if error is not None:
            tracebacks[i] = error[1]
        values = {} if error is not None else (dict(value) if isinstance(value, dict) else {"value": value})
        rows.append(
            {**point, "seed": s, **values, "error": None if error is None else error[0], "seconds": seconds}
        )
    columns = list(dict.fromkeys(k for r in rows for k in r if k not in ("error", "seconds")))
    frame = pd.DataFrame(rows, columns=[*columns, "error", "seconds"])
    frame.attrs["tracebacks"] = tracebacks
    return frame


def _sweep_on(client, fn, points, seeds, seed_arg, shared, progress):
    from distributed import as_completed
    from tqdm.auto import tqdm

    fn_future = _broadcast(client, fn)
    shared_futures = {k: _broadcast(client, v) for k, v in (shared or {}).items()}
    futures = [
        client.submit(_call_point, fn_future, p, s, seed_arg, shared_futures, pure=False)
        for p, s in zip(points, seeds, strict=True)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    outcomes = [None] * len(futures)
    with tqdm(total=len(futures), desc="sweep", disable=not progress, leave=False) as bar:
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            try:
                outcomes[i] = future.result()
            except Exception as exc:  # noqa: BLE001 -- the task itself failed (e.g. its worker died)
                outcomes[i] = (None, (f"{type(exc).__name__}: {exc}", traceback.format_exc()), math.nan)
            bar.update()
    return outcomes
