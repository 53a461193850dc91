"""RESNET18-32 (shared/BENCHMARKS.md) against thread count: the converted
ResNet-18 run by ours with ``n_threads=k`` and by snnTorch with
``torch.set_num_threads(k)``, same batch, same T, interleaved.

Workload: ``benchmarks/resnet18.py``'s (its ``images``, ``resnet18`` and
``convert_resnet``: the same model, calibration images and conversion; its
``SnnTorchPeer`` for snnTorch, float32). For each batch size and thread
count: ms per sample, median of ``--repeats`` calls after a warm-up call,
ours and snnTorch interleaved (``_common.time_interleaved``); the ratio
snnTorch / ours, and each side's speed-up over its own 1-thread time. A run
with k threads is checked equal to the 1-thread run (the readout membrane,
bit for bit): threads split the batch and change nothing.

On a 2-core machine only 1 and 2 threads mean anything; the table in the
README's RESNET18-32 section was taken on a 16-core machine.

Usage::

    flock /tmp/bench.lock python benchmarks/resnet18_threads.py [--threads 1 2 4] [--batch 32 128] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import describe_env, environment, md_table, median, time_interleaved, warn_if_busy
from resnet18 import SnnTorchPeer, convert_resnet, images, resnet18


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    default_threads = [k for k in (1, 2, 4, 8, 16, 32) if k <= cores]
    parser.add_argument("--threads", type=int, nargs="+", default=default_threads)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128], help="batch sizes timed")
    parser.add_argument("--steps", type=int, default=32, help="T of the timed runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per setting")
    parser.add_argument("--quick", action="store_true", help="T=4, batch 4, 1 and 2 threads, 1 repeat")
    parser.add_argument("--json", default=None, help="write every run time here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.threads, args.repeats = 4, [4], [1, 2], 1
    import snntorch
    import torch

    env = environment()
    env.update(torch=torch.__version__, snntorch=snntorch.__version__)
    print(describe_env(env))
    warn_if_busy()
    x_calib, x = images(256, 0), images(max(args.batch), 1)
    start = time.perf_counter()
    converted, maxpool, _ = convert_resnet(resnet18(x_calib), x_calib, np.float64)
    compile_s = converted.network.prepare()
    print(
        f"ResNet-18, 3x32x32, T = {args.steps}, stem max pool: {maxpool}; converted and compiled in "
        f"{time.perf_counter() - start:.1f} s (prepare {compile_s:.1f} s)\n"
    )
    record = {"env": env, "steps": args.steps, "compile_s": compile_s, "runs": []}
    for batch in args.batch:
        xb = x[:batch]
        one = converted.run(xb, args.steps, n_threads=1).membrane
        rows, base = [], {}
        for k in args.threads:
            if k > 1 and not np.array_equal(converted.run(xb, args.steps, n_threads=k).membrane, one):
                raise SystemExit(f"{k} threads changed the result at batch {batch}")
            peer = SnnTorchPeer(converted, threads=k)
            times = time_interleaved(
                {
                    "ours": lambda: converted.run(xb, args.steps, n_threads=k),
                    "snntorch": lambda: peer(xb, args.steps),
                },
                args.repeats,
            )
            ms = {name: 1e3 * median(t) / batch for name, t in times.items()}
            record["runs"].append({"batch": batch, "threads": k, **{n: list(t) for n, t in times.items()}})
            base = base or ms
            rows.append(
                [
                    k,
                    f"{ms['ours']:.2f}",
                    f"{ms['snntorch']:.2f}",
                    f"{ms['snntorch'] / ms['ours']:.2f}x",
                    f"{base['ours'] / ms['ours']:.2f}x",
                    f"{base['snntorch'] / ms['snntorch']:.2f}x",
                ]
            )
        print(f"batch {batch}: ms per sample, median of {args.repeats}")
        headers = ["threads", "ours", "snnTorch", "snnTorch / ours", "ours vs 1st row", "snnTorch vs 1st row"]
        print(md_table(headers, rows) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
