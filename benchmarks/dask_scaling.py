"""Dask scaling: the DIGITS-CNN evaluation of a converted network over an
augmented test set, in one process (numba threads over the samples) and on
a LocalCluster of 1 and 2 worker processes (one numba thread each).

Workload
--------
- ANN: the DIGITS-CNN of shared/BENCHMARKS.md (``snn.convert.training.digits_cnn``,
  ``--epochs`` of training, seed 0), converted with ``percentile=99.99``.
- Data: the 540 test digits shifted by every offset ``(dy, dx)`` in
  ``[-r, r]^2`` (``--radius r``; r = 1: 9 copies, 4,860 samples; r = 2: 25,
  13,500), zeros shifted in, the set repeated ``--tile`` times.
- Evaluation: ``snn.convert.evaluate`` at T in ``--steps`` (one run to the
  largest T read at every T, as by default) -- the same call with
  ``client=`` for the clusters. Every figure of the rows and the whole
  readout trajectory are compared with the single-process run (``==``).

Timed: the whole ``evaluate`` call (for the clusters: shipping the network
and the partitions, preparing the kernels on the workers, running, reading,
merging; not starting the cluster, which is reported on its own). The
overhead per task is measured two ways: the round trip of a no-op task
(submit to result, one at a time: latency; and 400 at once: throughput),
and in the evaluation, ``(wall x workers - sum of the tasks' compute time) /
tasks`` from Dask's task stream.

Usage::

    python benchmarks/dask_scaling.py [--quick] [--radius R] [--tile K] [--steps 4 8 ...]
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from dataclasses import replace

import numpy as np
from _common import CpuMonitor, describe_env, environment, md_table, warn_if_busy

import snn.distributed as sd
from snn.convert import convert, evaluate
from snn.convert.training import digits_cnn, load_digits_split, train


def shifted(x, dy, dx):
    """Images ``[N, C, H, W]`` moved by ``(dy, dx)`` pixels, zeros shifted in."""
    h, w = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (abs(dy),) * 2, (abs(dx),) * 2))
    return padded[:, :, abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]


def augmented(x, y, radius, tile):
    """The digits shifted by every offset in ``[-radius, radius]^2``, ``tile`` times."""
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    xs = np.concatenate([shifted(x, dy, dx) for dy, dx in offsets] * tile)
    return xs, np.concatenate([y] * (len(offsets) * tile))


def same(a, b) -> bool:
    """Every figure of the rows (times aside) and the trajectory are equal."""
    rows_a = [{k: v for k, v in r.items() if k != "ms_per_sample"} for r in a.rows]
    rows_b = [{k: v for k, v in r.items() if k != "ms_per_sample"} for r in b.rows]
    equal_rows = all(
        ra.keys() == rb.keys() and all(ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]) for k in ra)
        for ra, rb in zip(rows_a, rows_b)
    )
    traj = all(
        np.array_equal(getattr(a.trajectory, k), getattr(b.trajectory, k)) for k in ("readout", "synops")
    )
    return equal_rows and traj


def _noop(i):
    return i


def task_overhead(client) -> tuple[float, float]:
    """ms per no-op task: one at a time (round trip), and 400 at once (throughput)."""
    client.submit(_noop, -1, pure=False).result()
    start = time.perf_counter()
    for i in range(50):
        client.submit(_noop, i, pure=False).result()
    latency = 1e3 * (time.perf_counter() - start) / 50
    start = time.perf_counter()
    client.gather(client.map(_noop, range(400), pure=False))
    return latency, 1e3 * (time.perf_counter() - start) / 400


def on_cluster(n_workers, converted, x, y, steps, partitions):
    from distributed import get_task_stream

    start = time.perf_counter()
    client = sd.local_client(n_workers, numba_threads=1)
    startup = time.perf_counter() - start
    try:
        evaluate(converted, x[:64], y[:64], steps, client=client)  # warm: imports, kernels, data paths
        latency, throughput = task_overhead(client)
        with CpuMonitor() as cpu, get_task_stream(client=client) as stream:
            start = time.perf_counter()
            ev = sd.evaluate(converted, x, y, steps, client=client, partitions=partitions)
            wall = time.perf_counter() - start
        tasks = [t for t in stream.data if str(t["key"]).startswith("_trajectory_task")]
        compute = sum(
            s["stop"] - s["start"] for t in tasks for s in t["startstops"] if s["action"] == "compute"
        )
        per_task = 1e3 * (wall * n_workers - compute) / max(len(tasks), 1)
    finally:
        client.close()
        client.cluster.close()
    return ev, {
        "wall": wall,
        "startup": startup,
        "latency": latency,
        "throughput": throughput,
        "tasks": len(tasks),
        "overhead_ms": per_task,
        "other": cpu.other_cores,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the DIGITS-CNN")
    parser.add_argument("--radius", type=int, default=1, help="shifts in [-r, r] pixels on both axes")
    parser.add_argument("--tile", type=int, default=1, help="repeat the augmented set")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--partitions-per-worker", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="a small set (540 digits), 3 epochs, T <= 16")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.radius, args.tile, args.steps = 3, 0, 1, [4, 16]
    import numba
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    env = environment()
    print(describe_env(env))
    warn_if_busy()

    x_train, y_train, x_test, y_test = load_digits_split()
    model = train(digits_cnn("avg"), x_train, y_train, epochs=args.epochs, progress=False)
    converted = convert(model, x_train, percentile=99.99)
    x, y = augmented(x_test, y_test, args.radius, args.tile)
    shipped = len(pickle.dumps(replace(converted, ops=[], calibration=None), protocol=5))
    print(
        f"{len(x):,} samples (540 test digits x {(2 * args.radius + 1) ** 2} shifts x {args.tile}), "
        f"T in {args.steps}; network shipped to each worker once: {shipped / 1e3:.0f} kB\n",
        flush=True,
    )

    results = {}
    evaluate(converted, x[:64], y[:64], args.steps)  # warm
    for label, threads in (
        ("one process, numba threads on all cores", os.cpu_count() or 1),
        ("one process, 1 numba thread", 1),
    ):
        numba.set_num_threads(threads)
        with CpuMonitor() as cpu:
            start = time.perf_counter()
            ev = evaluate(converted, x, y, args.steps)
            wall = time.perf_counter() - start
        results[label] = (ev, {"wall": wall, "other": cpu.other_cores}, threads)
        print(f"{label}: {results[label][1]['wall']:.1f} s", flush=True)
    numba.set_num_threads(os.cpu_count() or 1)
    for n in (1, 2):
        ev, stats = on_cluster(n, converted, x, y, args.steps, n * args.partitions_per_worker)
        results[f"LocalCluster, {n} worker process{'es' if n > 1 else ''}"] = (ev, stats, 1)
        print(f"{n} worker(s): {stats['wall']:.1f} s", flush=True)

    reference = results["one process, numba threads on all cores"]
    one_worker = results["LocalCluster, 1 worker process"][1]["wall"]
    rows = []
    for label, (ev, stats, threads) in results.items():
        cluster = "tasks" in stats
        rows.append(
            [
                label,
                threads,
                f"{stats['wall']:.1f}",
                f"{1e3 * stats['wall'] / len(x):.2f}",
                f"{one_worker / stats['wall']:.2f}x" if cluster else "-",
                f"{reference[1]['wall'] / stats['wall']:.2f}x",
                "yes" if same(reference[0], ev) else "NO",
                stats.get("tasks", "-"),
                f"{stats['overhead_ms']:.1f}" if cluster else "-",
                f"{stats['latency']:.1f} / {stats['throughput']:.2f}" if cluster else "-",
                f"{stats['startup']:.1f}" if cluster else "-",
                f"{stats['other']:.2f}",
            ]
        )
    print()
    print(
        md_table(
            [
                "run",
                "numba threads",
                "wall s",
                "ms/sample",
                "vs 1 worker",
                "vs threaded process",
                "identical",
                "tasks",
                "overhead ms/task",
                "no-op task ms (1 / 400)",
                "cluster start s",
                "other procs' CPU",
            ],
            rows,
        )
    )
    accuracy = ", ".join(f"T={r['T']} {r['accuracy']:.2%}" for r in reference[0].rows)
    print(
        "\nwall: the whole evaluate call (cluster start excluded); identical: every row figure (times "
        "aside), "
        f"and the readout trajectory == the threaded single process's; overhead per task: "
        f"(wall x workers - tasks' compute time) / tasks, from Dask's task stream (shipping the network and "
        f"partitions, preparing kernels, scheduling, merging); no-op task: submit-to-result one at a time / "
        f"400 at once. SNN accuracy on the shifted digits: {accuracy}."
    )


if __name__ == "__main__":
    main()
