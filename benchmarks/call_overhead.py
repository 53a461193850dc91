"""The cost of a call (issue 12, DIGITS-CNN at batch 1): the wall time of
one ``Network.run`` of the converted DIGITS-CNN (shared/BENCHMARKS.md) on
one sample, where the kernels do little and Python's per-call work shows.

Reported, at batch 1, median over ``--calls`` calls each:

- the per-call overhead probe: a run of one step on an empty (all-zero)
  analog input, which leaves the kernels almost nothing to do;
- one test digit per call at each ``--steps`` T (constant analog input, as
  ``benchmarks/digits.py`` times it), ours and snnTorch's (the same
  converted network, ``digits.snntorch_model``), timed in blocks of
  ``--block`` calls that alternate between the two (each block warmed by
  one untimed call; torch's threads spin a while after a call and would take
  a core from whatever runs next, so the two never alternate call by call).

Usage::

    python benchmarks/call_overhead.py [--steps 4 16] [--calls 1000] [--epochs 60]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
from _common import describe_env, environment, md_table, median, warn_if_busy
from digits import snntorch_model

from snn.convert import convert
from snn.convert.training import digits_cnn, load_digits_split, train


def _timed(fn, args) -> list:
    """Wall seconds of ``fn(a)`` for each ``a`` of ``args`` (the garbage collector off)."""
    out = []
    gc.disable()
    try:
        for a in args:
            start = time.perf_counter()
            fn(a)
            out.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per figure")
    parser.add_argument("--block", type=int, default=50, help="calls per block (ours and snnTorch alternate)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="snnTorch's threads (default: all, as digits.py)"
    )
    args = parser.parse_args()
    import torch

    threads = args.torch_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    print(describe_env(environment()))
    warn_if_busy()
    x_train, y_train, x_test, _ = load_digits_split()
    model = train(digits_cnn("avg"), x_train, y_train, epochs=args.epochs, progress=False)
    converted = convert(model, x_train, percentile=99.99)
    net = converted.network
    net.prepare()
    flat = converted._flat(x_test)
    xt = torch.as_tensor(x_test, dtype=torch.float32)
    run_torch = snntorch_model(converted)

    empty = np.zeros((1, net.n_in))
    net.run(analog=empty, T=1)
    probe = _timed(lambda _: net.run(analog=empty, T=1), range(args.calls))
    rows = [["empty input, T = 1 (overhead probe)", f"{1e6 * median(probe):.1f}", "-", "-"]]
    digits = [i % len(flat) for i in range(args.calls)]
    for T in args.steps:
        ours, theirs = [], []
        for first in range(0, len(digits), args.block):
            block = digits[first : first + args.block]
            net.run(analog=flat[block[0] : block[0] + 1], T=T)
            ours += _timed(lambda i, T=T: net.run(analog=flat[i : i + 1], T=T), block)
            run_torch(xt[block[0] : block[0] + 1], T)
            theirs += _timed(lambda i, T=T: run_torch(xt[i : i + 1], T), block)
        us, us_torch = 1e6 * median(ours), 1e6 * median(theirs)
        rows.append([f"one digit, T = {T}", f"{us:.1f}", f"{us_torch:.1f}", f"{us_torch / us:.1f}x"])
    print(md_table(["call (batch 1)", "ours us", "snnTorch us", "snnTorch / ours"], rows))
    print(
        f"\nmedian over {args.calls} calls each; ours and snnTorch in alternating blocks of {args.block} "
        f"calls; {threads} thread(s) for snnTorch, all cores for ours (one sample runs on one)."
    )


if __name__ == "__main__":
    main()
