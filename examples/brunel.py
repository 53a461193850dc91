"""BRUNEL-100: a sparse recurrent excitatory/inhibitory LIF network driven by
Poisson background, simulated event-driven (workload of shared/BENCHMARKS.md).

Builds the network (N neurons, 80 % excitatory, ~100 synapses in and out per
neuron, delay one step, 100 Poisson trains of 20 Hz per neuron), simulates
1 s of biological time at dt = 0.1 ms, checks it against the expected
asynchronous irregular state (rate about 9-11 Hz, ISI CV near 1 at N >= 20k),
prints rates, ISI CV, counts and timings, and saves a raster plot.

Usage: python examples/brunel.py [--n 20000] [--duration 1.0] [--seed 0]
                                 [--out examples/out] [--no-progress]
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import snn  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20000, help="neurons (default 20000)")
    parser.add_argument("--duration", type=float, default=1.0, help="biological seconds (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="examples/out", help="folder for the raster plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()

    start = time.perf_counter()
    graph = snn.models.brunel(args.n, seed=args.seed)
    built = time.perf_counter() - start
    print(graph)
    print(
        f"built in {built:.2f} s; connectivity {sum(p.nbytes for p in graph.projections) / 1e6:.1f} MB "
        f"({sum(p.nbytes for p in graph.projections) / graph.n_synapses:.2f} bytes per synapse)"
    )
    print(f"compile (or load from cache): {graph.prepare():.2f} s")

    steps = round(args.duration / graph.dt)
    result = graph.run(steps, seed=args.seed, progress=not args.no_progress)
    recurrent = sum(result.counts[k].total("synops") for k in range(len(result.names)))
    print(f"\nsimulated {args.duration:g} s ({steps} steps) in {result.seconds:.3f} s")
    print(result.table())
    print(
        f"\nmean rate: {result.rate_hz():.2f} Hz (exc {result.rate_hz('exc'):.2f}, "
        f"inh {result.rate_hz('inh'):.2f})"
    )
    print(f"ISI CV: {result.isi_cv():.3f}")
    print(
        f"spikes: {result.total('spikes'):,}; recurrent synaptic events: {recurrent:,} "
        f"({recurrent / result.seconds:.3g} per second)"
    )
    assert 1.0 < result.rate_hz() < 50.0, "activity far from the asynchronous irregular state"

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "brunel.png"
    _plot(result, graph.dt, path)
    print(f"plot: {path}")


def _plot(result, dt, path, n_shown=200):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(3, 1))
    for name, color in (("exc", "tab:blue"), ("inh", "tab:red")):
        train = result.trains[result.names.index(name)]
        events = train.to_events()
        keep = events[:, 2] < n_shown // 2
        offset = 0 if name == "exc" else n_shown // 2
        top.scatter(events[keep, 0] * dt, events[keep, 2] + offset, s=1, color=color, label=name)
    top.set_ylabel(f"neuron (first {n_shown // 2} of each)")
    top.legend(loc="upper right", markerscale=5)
    rate = result.rate_trace(bin_steps=10)[:, 0]
    bottom.plot([k * 10 * dt for k in range(len(rate))], rate, color="k", lw=0.7)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("rate (Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
