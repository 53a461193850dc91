"""Streaming in bounded memory (issue 13 item 2): a run of up to 10^7 steps,
fed chunk by chunk, against one uncut ``Graph.run``.

Network: one LIF neuron (beta 0.99) with a constant drive of 0.02 (it fires
every 70 steps or so), and optionally a recurrent population of 100 LIF
neurons with a 2-step delay fed by 20 Poisson-like inputs (``--recurrent``:
a stepped stage, the graph kernel). The uncut run keeps every spike; the
stream keeps the last ``--history`` steps of spikes and counts the spikes
per neuron (``count_spikes``) and the population rate of ``one`` in bins
of 100 steps, the last 1000 bins kept (``PopulationRate(last=)``). Peak
memory is what ``tracemalloc`` saw allocated during the run (numpy's arrays
included), above what was held before it; peak RSS is the process's
resident high-water mark during the run above its resident size before it
(Linux: ``/proc/self/clear_refs`` resets the mark; it also sees what the
compiled kernels allocate, which ``tracemalloc`` does not).

    python benchmarks/stream_memory.py --steps 100000 1000000 10000000
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import _common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
from _common import describe_env, environment, md_table, read_rss_kib, reset_peak_rss

import snn


def network(recurrent: bool):
    g = snn.Graph()
    one = g.population(1, snn.LIF(beta=0.99), name="one")
    drives = {one: np.full((1, 1), 0.02)}
    if recurrent:
        rng = np.random.default_rng(0)
        x = g.input(20, name="x")
        h = g.population(100, snn.LIF(beta=0.9), name="h")
        g.connect(x, h, rng.uniform(0, 0.5, (100, 20)))
        g.connect(h, h, rng.uniform(-0.1, 0.12, (100, 100)), delay=2)
    return g, drives


def _inputs(g, steps, seed):
    if "x" not in [p.name for p in g.populations]:
        return {}
    rng = np.random.default_rng(seed)
    return {"x": rng.random((steps, 1, 20)) < 0.02}


def measured(fn):
    """``(seconds, peak bytes above the start, peak RSS bytes above the
    start or None, result)`` of ``fn()``."""
    gc.collect()
    before = read_rss_kib() if reset_peak_rss() else None
    tracemalloc.start()
    held = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - held
    tracemalloc.stop()
    after = read_rss_kib() if before is not None else None
    return seconds, peak, None if after is None else 1024 * (after[1] - before[0]), out


def uncut(g, drives, steps):
    return g.run(steps, inputs=_inputs(g, steps, 0), drive=drives, progress=False)


def streamed(g, drives, steps, chunk, history, epoch):
    names = [p.name for p in g.populations if not p.is_input]
    rate = snn.observers.PopulationRate("one", 100, last=1000)
    sim = g.start(None, drive=drives, history=history, epoch=epoch, count_spikes=names, observers=[rate])
    for k, t in enumerate(range(0, steps, chunk)):
        n = min(chunk, steps - t)
        sim.advance(n, inputs=_inputs(g, n, k + 1) if sim.fed else None)
    return sim


def _row(how, steps, sec, peak, rss, spikes):
    rss = "-" if rss is None else f"{rss / 2**20:.2f}"
    return [how, f"{steps:,}", f"{sec:.2f}", f"{peak / 2**20:.2f}", f"{peak / steps:.3f}", rss, int(spikes)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--chunk", type=int, default=100_000, help="steps per advance() of the stream")
    ap.add_argument("--history", type=int, default=1000, help="steps of spikes the stream keeps")
    ap.add_argument("--epoch", type=int, default=None, help="steps between settles (default 4096)")
    ap.add_argument("--uncut-max", type=int, default=1_000_000, help="longest uncut run measured")
    ap.add_argument("--recurrent", action="store_true", help="add a recurrent population (stepped)")
    args = ap.parse_args(argv)
    print(describe_env(environment()))
    g, drives = network(args.recurrent)
    streamed(g, drives, 2 * args.chunk, args.chunk, args.history, args.epoch)  # compile
    uncut(g, drives, 1000)
    rows = []
    for steps in args.steps:
        cut = (args.chunk, args.history, args.epoch)
        sec, peak, rss, sim = measured(lambda s=steps: streamed(g, drives, s, *cut))
        rows.append(_row("stream", steps, sec, peak, rss, sim.spike_counts("one").sum()))
        if steps <= args.uncut_max:
            sec, peak, rss, res = measured(lambda s=steps: uncut(g, drives, s))
            rows.append(_row("uncut", steps, sec, peak, rss, res.spikes("one").sum()))
    print(
        md_table(
            ["run", "steps", "seconds", "peak MiB", "bytes per step", "peak RSS MiB", "spikes of 'one'"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
