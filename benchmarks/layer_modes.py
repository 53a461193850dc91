"""The three paths of a layer (``mode="event"``, ``"clock"``, ``"dense"``)
against input activity: the measurements behind the cost model of
``snn/run/paths.py`` that ``mode="auto"`` uses, and a check of its choice.

Layers (IF neurons, threshold 1, bias ``--bias``: 0.01 by default, so that
the event path's search for self-driven spikes is exercised; random normal
weights, seed 0):
Conv2d 16->32 3x3 on 8x8 (DIGITS-CNN's second layer), Conv2d 3->64 3x3 on
32x32, SparseLinear 1000->1000 with p = 0.1, Linear 784->256. Input:
Bernoulli spikes with p per step, T = 16, batch 64, one thread (numba and
BLAS); wall time
per sample, median of ``--repeats`` interleaved runs; ``auto`` names the path
the cost model picked for that input.

Usage::

    python benchmarks/layer_modes.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import blas_threads, describe_env, environment, md_table, median, time_interleaved, warn_if_busy

import snn

MODES = ("event", "clock", "dense")


def layers(rng, bias):
    neuron = snn.IF(threshold=1.0)
    return {
        "Conv2d 16->32 @ 8x8": snn.Conv2d(
            (16, 8, 8), 32, 3, neuron, padding=1, weight=rng.normal(0, 0.1, (32, 16, 3, 3)), bias=bias
        ),
        "Conv2d 3->64 @ 32x32": snn.Conv2d(
            (3, 32, 32), 64, 3, neuron, padding=1, weight=rng.normal(0, 0.1, (64, 3, 3, 3)), bias=bias
        ),
        "SparseLinear 1000->1000 p=0.1": snn.SparseLinear.random(
            1000, 1000, 0.1, lambda r, n: r.normal(0, 0.1, n), neuron, seed=0, bias=bias
        ),
        "Linear 784->256": snn.Linear(784, 256, neuron, weight=rng.normal(0, 0.05, (256, 784)), bias=bias),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--bias",
        type=float,
        default=0.01,
        help="bias of every neuron (0: nothing fires on its own, no self-driven search)",
    )
    parser.add_argument("--quick", action="store_true", help="two activities, three repeats")
    args = parser.parse_args()
    activities = (0.01, 0.2) if args.quick else (0.01, 0.05, 0.2, 0.5)
    repeats = 3 if args.quick else args.repeats
    print(describe_env(environment()))
    warn_if_busy()
    rng = np.random.default_rng(0)
    n_steps, batch = 16, 64
    rows = []
    for name, layer in layers(rng, args.bias).items():
        net = snn.Network([layer])
        for p in activities:
            spikes = (rng.random((n_steps, batch, layer.n_in)) < p).astype(np.uint8)
            runs = {mode: (lambda mode=mode: net.run(spikes, mode=mode, n_threads=1)) for mode in MODES}
            with blas_threads(1):
                times = time_interleaved(runs, repeats=repeats)
                result = net.run(spikes, n_threads=1)
            us = {mode: 1e6 * median(times[mode]) / batch for mode in MODES}
            synops = result.counts[0].synops.mean()
            best = min(us, key=us.get)
            rows.append(
                [
                    name,
                    p,
                    f"{synops:,.0f}",
                    *(f"{us[m]:.0f}" for m in MODES),
                    best,
                    result.counts[0].mode,
                    f"{us[result.counts[0].mode] / us[best]:.2f}",
                ]
            )
    print()
    print(
        md_table(
            [
                "layer",
                "p",
                "SynOps/sample",
                "event us",
                "clock us",
                "dense us",
                "fastest",
                "auto picked",
                "auto / fastest",
            ],
            rows,
        )
    )
    print(
        f"\nT = {n_steps}, batch {batch}, bias {args.bias}, one thread (numba, BLAS), wall time per sample "
        f"(median of {repeats}, interleaved)."
    )


if __name__ == "__main__":
    main()
