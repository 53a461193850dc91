"""Early exit that stops the simulation (issue 13) on DIGITS-CNN
(shared/BENCHMARKS.md): the converted CNN run to the full T against the same
network run by ``snn.convert.run_early_exit``, where each digit leaves the
batch once its decision is stable, on the 540 test digits.

Reported for each T (default 32 and 64) and exit rule: accuracy (the full
run's and the exits'), mean exit step, SynOps per sample actually done (the
kernels' counts), and measured wall time per sample, whole test set in one
call (interleaved with the full run, median of ``--repeats``) and at batch 1
(median over ``--batch1`` digits, one call each, the full run and every
variant interleaved in blocks of 10 digits). The full run is ``conv.run`` (each
layer's path chosen from its activity, on the same numba threads). Three
ways to exit (``--ways``, default all): ``kernel`` (the default, ``engine="kernel"``: every population stepped
together by the graph kernel, which judges the rule after each step, one
kernel call per run), ``chunked`` (the rule judged in Python between chunks
of layer stages) and ``chunked together`` (chunks of one stage stepping
every population). Target (issue 13): >= 4x less wall time at <= 0.2 pp
accuracy lost.

Usage::

    python benchmarks/early_exit.py [--quick] [--steps 32 64] [--patience 3 5] [--ways kernel]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
from _common import describe_env, environment, md_table, median, time_interleaved, warn_if_busy

from snn.convert import convert, run_early_exit
from snn.convert.training import accuracy, digits_cnn, load_digits_split, train

WAYS = {
    "kernel": dict(engine="kernel"),
    "chunked": dict(engine="chunked"),
    "chunked together": dict(engine="chunked", together=True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--patience", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch1", type=int, default=100, help="digits timed one at a time (<= 540)")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS), help="exit ways timed")
    parser.add_argument("--quick", action="store_true", help="T = 32, patience 3, 10 epochs, fewer repeats")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.patience, args.epochs, args.repeats, args.batch1 = [32], [3], 10, 3, 30
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(describe_env(environment()))
    warn_if_busy()
    x_train, y_train, x_test, y_test = load_digits_split()
    model = train(digits_cnn("avg"), x_train, y_train, epochs=args.epochs, progress=False)
    print(f"ANN test accuracy {accuracy(model, x_test, y_test):.2%}")
    conv = convert(model, x_train, percentile=99.99)
    conv.network.prepare()
    ways = {way: WAYS[way] for way in args.ways}
    for kw in ways.values():  # compiled before timing
        run_early_exit(conv, x_test[:2], 4, patience=1, **kw)
    rows = []
    for T in args.steps:
        full = conv.run(x_test, T)
        full_acc = float(np.mean(full.membrane.argmax(axis=1) == y_test))
        full_synops = sum(c.synops for c in full.counts).mean()
        variants = {
            f"patience {p} {way}": dict(patience=p, **kw) for p in args.patience for way, kw in ways.items()
        }
        fns = {"full": lambda T=T: conv.run(x_test, T)}
        fns.update(
            {k: (lambda kw=kw, T=T: run_early_exit(conv, x_test, T, **kw)) for k, kw in variants.items()}
        )
        times = time_interleaved(fns, args.repeats)
        one = _batch1(conv, x_test[: min(args.batch1, len(x_test))], T, variants)
        full_set, full_b1 = 1e3 * median(times["full"]) / len(x_test), 1e3 * median(one["full"])
        rows.append(
            [
                T,
                "full run",
                f"{full_acc:.2%}",
                T,
                f"{full_synops:,.0f}",
                f"{full_set:.3f}",
                f"{full_b1:.3f}",
                "1",
                "1",
            ]
        )
        for name, kw in variants.items():
            out = run_early_exit(conv, x_test, T, **kw)
            ms_set, ms_b1 = 1e3 * median(times[name]) / len(x_test), 1e3 * median(one[name])
            rows.append(
                [
                    T,
                    name,
                    f"{out.accuracy(y_test):.2%}",
                    f"{out.exit_step.mean():.1f}",
                    f"{out.synops.mean():,.0f}",
                    f"{ms_set:.3f}",
                    f"{ms_b1:.3f}",
                    f"{full_set / ms_set:.2f}x",
                    f"{full_b1 / ms_b1:.2f}x",
                ]
            )
    print(
        md_table(
            [
                "T",
                "run",
                "accuracy",
                "mean steps",
                "SynOps / sample",
                "ms / sample (set)",
                "ms / sample (batch 1)",
                "speed-up set",
                "speed-up batch 1",
            ],
            rows,
        )
    )


def _batch1(conv, digits, T, variants, block: int = 10) -> dict:
    """Wall seconds of each digit run alone (batch 1), to ``T`` (``"full"``,
    ``conv.run``: what a user runs) and by each early-exit variant. The
    digits go in blocks of ``block``; in each block every function runs
    once untimed (warm, as in a loop of calls), then each of the block's
    digits timed, the functions' order rotated from block to block, so that
    a slow spell of the machine hits all alike; the garbage collector is off
    while a call is timed, as in ``time_interleaved``."""
    fns = {"full": lambda x: conv.run(x, T)}
    fns.update({name: (lambda x, kw=kw: run_early_exit(conv, x, T, **kw)) for name, kw in variants.items()})
    names = list(fns)
    out = {name: [] for name in names}
    for r, first in enumerate(range(0, len(digits), block)):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fns[name](digits[first : first + 1])
            for d in range(first, min(first + block, len(digits))):
                gc.disable()
                try:
                    start = time.perf_counter()
                    fns[name](digits[d : d + 1])
                    out[name].append(time.perf_counter() - start)
                finally:
                    gc.enable()
    return out


if __name__ == "__main__":
    main()
