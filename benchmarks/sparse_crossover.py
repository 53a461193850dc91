"""SPARSE-CROSSOVER (shared/BENCHMARKS.md): the cost of a touched neuron, and
where the event path stops beating the clock path.

Workload: one ``SparseLinear`` layer n -> n, fixed in-degree 100 (seed 0),
weight 0.2, LIF beta 0.95, threshold 1, subtract reset, no bias; input
events with probability p per input per step (seeded), T = 200, batch 1,
one thread (numba and BLAS), float64 state.

Each row times the layer's event, clock and auto paths (``mode=``),
interleaved, median of ``--repeats`` runs, compilation excluded (one warm-up
run of every path on a small layer first). Each timed run is on a sample of
its own (an input of the same activity, seeded per path and repeat: no run
has seen it, as in a loop over samples; a run right after another path's
run on the same input found what that run left in the caches and was up to
1.3x faster, which favoured whichever path came second), right after
untimed runs of the same path on other inputs for at least
``SETTLE_S`` (the samples before it in that loop: the caches hold what
that path's runs leave there, not what another path's sweeps left; one
such run was not enough: a 0.15 ms event run at 100k neurons after one was
1.2-1.3x slower after a clock run than after event runs, and 2 ms of runs
were not enough at 1M neurons: at 0.007 % touched, auto, run after a clock
run twice as often as event in the rotation, took 1.18x event's time with
2 ms, 1.07x with 20 ms); ``--no-prior``: right after the other paths' runs
instead. ns per touched neuron is the median over the event
path's runs of its time over its sample's touched neurons; the spike check
and the counts are those of one more sample that every path runs, untimed.
Timed: ``Network.run(spikes=)``
on ready time-CSR input (no raster conversion; its O(events) check of the
trains is the same for every path), i.e. the path choice of auto, the
kernel call and its allocations. Touched neurons: the distinct targets of a step's input
spikes, summed over steps (counted from the input and the connectivity, so
the same for every path and every version of the code); touched per step =
touched / (n T); ns per touched neuron = event time / touched. (The event
path's own update count also includes the neurons due to fire on their own,
and every neuron of a step it runs as a sweep.)

``--baseline DIR`` runs the same rows with the code of another checkout
(``DIR/snn`` and ``DIR/snn_kernels``, e.g. a ``git worktree`` of an older
commit with ``snn_kernels`` linked to its ``kernels``) in a subprocess
started in ``DIR``, row by row alternating with this checkout (old row,
then the same row here), and prints both tables and the new/old ratios.

The connectivity of each n is built once and cached in ``--cache``.

Usage::

    python benchmarks/sparse_crossover.py [--n 100000 1000000] [--p 1e-5 1e-4 ...]
        [--repeats 3] [--baseline DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if os.environ.get("SNN_BENCH_ROOT"):  # a baseline run: that checkout's code first
    sys.path.insert(0, os.environ["SNN_BENCH_ROOT"])

import numba  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    blas_threads,
    describe_env,
    environment,
    md_table,
    median,
    time_interleaved,
    warn_if_busy,
)

if os.environ.get("SNN_BENCH_ROOT"):  # _common put this checkout first: the baseline's again
    sys.path.insert(0, os.environ["SNN_BENCH_ROOT"])

import snn  # noqa: E402
from snn.run.spiketrains import SpikeTrains  # noqa: E402

T = 200
K_IN = 100
WEIGHT = 0.2
MODES = ("event", "clock", "auto")
DEFAULT_P = (1e-5, 1e-4, 1e-3, 3.6e-3, 1e-2)
SETTLE_S = 20e-3  # seconds of untimed runs of a path before each of its timed runs


def connectivity(n: int, cache: Path):
    path = cache / f"fixed_in_{n}_{K_IN}_seed0.npz"
    if path.is_file():
        with np.load(path) as f:
            return f["rowptr"], f["cols"]
    rowptr, cols = snn.fixed_in_degree(n, n, K_IN, seed=0)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, rowptr=rowptr, cols=cols)
    return rowptr, cols


def make_layer(rowptr, cols, n):
    neuron = snn.LIF(beta=0.95, threshold=1.0)
    weights = np.full(len(cols), WEIGHT, np.float32)
    return snn.SparseLinear(n, n, neuron, rowptr=rowptr, cols=cols, weights=weights)


def make_input(n: int, p: float, seed: int) -> SpikeTrains:
    """Time-CSR input, each input independently with probability p per step."""
    rng = np.random.default_rng(seed)
    counts = rng.binomial(n, p, T)
    idx = np.concatenate([np.sort(rng.choice(n, c, replace=False)) for c in counts]).astype(np.int32)
    tptr = np.zeros((1, T + 1), np.int64)
    np.cumsum(counts, out=tptr[0, 1:])
    return SpikeTrains(tptr, idx[None, :], n)


@numba.njit(cache=False)
def _touched(tptr, idx, rowptr, cols, n):
    """Distinct targets of each step's input spikes, summed over steps."""
    stamp = np.full(n, -1, np.int64)
    total = 0
    for t in range(tptr.shape[0] - 1):
        for e in range(tptr[t], tptr[t + 1]):
            pre = idx[e]
            for s in range(rowptr[pre], rowptr[pre + 1]):
                j = cols[s]
                if stamp[j] != t:
                    stamp[j] = t
                    total += 1
    return total


def _keys(trains, n):
    t, _, i = trains.to_events().T
    return t.astype(np.int64) * n + i


def warm_up():
    rowptr, cols = snn.fixed_in_degree(1000, 1000, K_IN, seed=0)
    net = snn.Network([make_layer(rowptr, cols, 1000)])
    source = make_input(1000, 1e-2, 0)
    for mode in MODES:
        net.run(spikes=source, mode=mode)


def _loop(net, samples, mode):
    """Runs of ``mode`` over ``samples`` in turn for at least :data:`SETTLE_S`."""
    start = time.perf_counter()
    while True:
        for x in samples:
            net.run(spikes=x, mode=mode)
        if time.perf_counter() - start >= SETTLE_S:
            return


def measure(ns, ps, repeats, cache, prior=True) -> list[dict]:
    warm_up()
    rows = []
    for n in ns:
        rowptr, cols = connectivity(n, cache)
        net = snn.Network([make_layer(rowptr, cols, n)])
        for p in ps:
            seed = 1000 + round(1e6 * p)  # the same inputs for every version of the code
            source = make_input(n, p, seed)  # checked and counted
            befores = [make_input(n, p, seed + 1000 + i) for i in range(2)]  # the samples before
            # the timed samples: one of its own for each path and repeat
            samples = {
                m: [make_input(n, p, seed + 2000 + len(MODES) * r + k) for r in range(repeats)]
                for k, m in enumerate(MODES)
            }
            results = {mode: net.run(spikes=source, mode=mode) for mode in MODES}
            left = {mode: iter(samples[mode]) for mode in MODES}
            runs = {mode: (lambda mode=mode: net.run(spikes=next(left[mode]), mode=mode)) for mode in MODES}
            runs_before = {mode: (lambda mode=mode: _loop(net, befores, mode)) for mode in MODES}
            times = time_interleaved(runs, repeats=repeats, warmup=0, settle=runs_before if prior else False)
            ms = {mode: 1e3 * median(times[mode]) for mode in MODES}
            touched_of = [int(_touched(x.tptr[0], x.idx[0], rowptr, cols, n)) for x in samples["event"]]
            ns_per_touched = median([1e9 * s / max(c, 1) for s, c in zip(times["event"], touched_of)])
            ev, ck = results["event"], results["clock"]
            # LIF in float64: the lazy leak (beta**k) and the step-by-step leak round
            # differently, so spikes may differ where a membrane is within rounding of threshold
            keys = [_keys(r.trains[0], n) for r in (ev, ck)]
            differ = len(np.setxor1d(*keys))
            if differ > 1e-3 * max(len(keys[1]), 1000):
                raise RuntimeError(f"n={n} p={p}: the paths' spike trains differ in {differ} spikes")
            updates = int(ev.counts[0].updates[0])
            touched = int(_touched(source.tptr[0], source.idx[0], rowptr, cols, n))
            rows.append(
                dict(
                    n=n,
                    p=p,
                    input_events=int(source.total),
                    synops=int(ev.counts[0].synops[0]),
                    updates=updates,
                    touched=touched,
                    touched_per_step=touched / (n * T),
                    spikes=int(ev.counts[0].spikes[0]),
                    spikes_differing=differ,
                    clock_updates=int(ck.counts[0].updates[0]),
                    ms=ms,
                    times_s={m: list(times[m]) for m in MODES},
                    auto_picked=results["auto"].counts[0].mode,
                    ns_per_touched=ns_per_touched,
                )
            )
            print(f"  n={n:,} p={p:g}: " + ", ".join(f"{m} {ms[m]:.1f} ms" for m in MODES), flush=True)
    return rows


def table(rows, label=""):
    body = []
    for r in rows:
        ms = r["ms"]
        best = min(ms["event"], ms["clock"])
        body.append(
            [
                f"{r['n']:,}",
                f"{r['p']:g}",
                f"{100 * r['touched_per_step']:.2g} %",
                f"{ms['event']:.1f}",
                f"{ms['clock']:.1f}",
                f"{ms['auto']:.1f} ({r['auto_picked']})",
                f"{ms['event'] / ms['clock']:.2f}",
                f"{ms['auto'] / best:.2f}",
                f"{r['ns_per_touched']:.1f}",
            ]
        )
    heads = ["n", "p", "touched/step", "event ms", "clock ms", "auto ms", "event/clock", "auto/best"]
    return (label + "\n" if label else "") + md_table([*heads, "ns/touched"], body)


def run_baseline(root, ns, ps, repeats, cache, prior=True) -> list[dict]:
    out = Path(cache) / "baseline.json"
    # this script, importing the baseline's snn and snn_kernels (SNN_BENCH_ROOT)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", str(out), "--repeats", str(repeats)]
    cmd += ["--cache", str(cache), "--n", *map(str, ns), "--p", *map(str, ps)]
    cmd += [] if prior else ["--no-prior"]
    env = dict(os.environ, SNN_BENCH_ROOT=str(Path(root).resolve()))
    subprocess.run(cmd, env=env, check=True, cwd=root)
    with open(out) as f:
        return json.load(f)["results"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--p", type=float, nargs="+", default=list(DEFAULT_P))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", metavar="DIR", help="checkout whose code to compare with, same session")
    ap.add_argument("--cache", default="/tmp/sparse_crossover_cache", help="connectivity cache folder")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--no-prior", action="store_true", help="time each run right after the other paths' runs")
    args = ap.parse_args(argv)
    prior = not args.no_prior
    if not os.environ.get("SNN_BENCH_ROOT"):
        warn_if_busy()
    numba.set_num_threads(1)
    env = environment()
    print(f"{describe_env(env)}; snn from {Path(snn.__file__).parent}", flush=True)
    cache = Path(args.cache)
    new, old = [], []
    with blas_threads(1):
        for n in args.n:  # old then new for each row: the two in one stretch of the session
            for p in args.p:
                if args.baseline:
                    old += run_baseline(args.baseline, [n], [p], args.repeats, cache, prior)
                new += measure([n], [p], args.repeats, cache, prior)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "sparse_crossover", "env": env, "results": new, "baseline": old}, f)
    if os.environ.get("SNN_BENCH_ROOT"):
        return
    print()
    if old:
        print(table(old, f"baseline ({args.baseline})") + "\n")
    print(table(new, "this checkout"))
    if old:
        body = [
            [
                f"{a['n']:,}",
                f"{a['p']:g}",
                f"{a['ms']['event'] / b['ms']['event']:.2f}",
                f"{a['ms']['clock'] / b['ms']['clock']:.2f}",
                f"{a['ms']['auto'] / b['ms']['auto']:.2f}",
            ]
            for a, b in zip(new, old)
        ]
        print("\nnew / old time\n" + md_table(["n", "p", "event", "clock", "auto"], body))
    print(
        f"\nT = {T}, batch 1, one thread, float64 state; median of {args.repeats} interleaved runs, "
        + "each on a sample of its own, "
        + (
            "right after the other paths' runs"
            if args.no_prior
            else f"after its path's runs on other samples for >= {1e3 * SETTLE_S:g} ms"
        )
        + "; auto/best = auto time / the faster of event and clock."
    )


if __name__ == "__main__":
    main()
