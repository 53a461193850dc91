"""EVENT-DIGITS (shared/BENCHMARKS.md): emulated event-camera digits through
a converted conv SNN; our event / clock / auto paths against the same
converted network run clock-driven in snnTorch, one thread, one run.

Workload
--------
- Data and network: ``examples/event_digits.py`` (its ``event_data`` and
  ``build``): the digits split seen by ``snn.events.saccade_events`` (three
  saccades, T = 300 steps of 1 ms, seed 0 for training, 1 for test), binned
  by ``snn.events.bin_events``; Conv(2,16,5,s2,p2)-ReLU-Conv(16,32,3,s2,p1)-
  ReLU-AvgPool(2)-Flatten-Linear(512,10) trained as an ANN on event counts /
  C (Adam 1e-3, wd 1e-4, batch 64, ``--epochs``, seed 0), converted at the
  99.9th percentile, each event of weight T / C (``weighted_input``).
- Ours: ``net.run(trains, mode=..., n_threads=1)`` on the binned spike
  trains as they are (no raster, no conversion); paths ``event``, ``clock`` and ``auto``
  (the cost model's pick per layer).
- snnTorch: the same float32 weights (first layer already scaled by T / C)
  in ``torch.nn.Conv2d``/``Linear`` and ``snntorch.Leaky(beta=1,
  threshold=1, reset_mechanism="subtract")`` with our initial membranes,
  the readout summing its input; clock-driven, every layer every step, on
  the dense input raster (uint8 ``[T, B, 2048]``, made outside the timing,
  a step cast to float32 inside); ``torch.inference_mode()``, one thread.
- Timing: batch 1 = ``--batch1`` test samples run one at a time in one
  timed call, per sample; whole set = one call on all test samples, per
  sample; median of ``--repeats`` calls after a warm-up call, all four
  interleaved (``_common.time_interleaved``). Compilation apart
  (``Network.prepare``).

Usage::

    flock /tmp/bench.lock python benchmarks/event_digits.py [--quick] [--epochs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from _common import (
    ROOT,
    CpuMonitor,
    describe_env,
    environment,
    md_table,
    median,
    time_interleaved,
    warn_if_busy,
)

sys.path.insert(0, str(ROOT / "examples"))
from event_digits import DT, T, build, event_data  # noqa: E402 -- the example's set-up, shared

import snn  # noqa: E402
from snn.run.spiketrains import SpikeTrains  # noqa: E402

TARGETS = {"batch1": 10.0, "set": 2.0, "auto": 1.2}  # issue 12: vs snnTorch at batch 1 / whole set; auto


def snntorch_peer(net):
    """``run(raster [T, B, n_in] uint8 tensor) -> readout [B, 10]``: the
    network clock-driven with torch layers and snnTorch neurons."""
    import snntorch
    import torch

    stages = []
    for layer in net.layers:
        if layer.kind == "conv":
            c_out, h, w = layer.out_shape
            g = [int(v) for v in layer.geom]
            op = torch.nn.Conv2d(
                layer.in_shape[0], c_out, (g[6], g[7]), stride=(g[8], g[9]), padding=(g[10], g[11])
            )
            op.weight.data = torch.from_numpy(np.array(layer.weight, np.float32))
            op.bias.data = torch.from_numpy(layer.bias.reshape(c_out, h * w)[:, 0].astype(np.float32))
            v0 = torch.from_numpy(layer.v_init.reshape(c_out, h, w).astype(np.float32))
        else:
            op = torch.nn.Linear(layer.n_in, layer.n_out)
            op.weight.data = torch.from_numpy(np.ascontiguousarray(layer.dense_rows().T))
            op.bias.data = torch.from_numpy(layer.bias.astype(np.float32))
            v0 = torch.from_numpy(layer.v_init.astype(np.float32))
        stages.append((op, v0))
    leaky = snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract")
    in_shape = net.layers[0].in_shape

    def run(raster):
        torch.set_num_threads(1)  # numba's omp layer shares OpenMP with torch: set it at every call
        with torch.inference_mode():
            *hidden, (readout, r0) = stages
            batch = raster.shape[1]
            mems = [v0.expand(batch, *v0.shape).clone() for _, v0 in hidden]
            out = r0.expand(batch, -1).clone()
            for t in range(raster.shape[0]):
                h = raster[t].view(batch, *in_shape).float()
                for k, (op, _) in enumerate(hidden):
                    h, mems[k] = leaky(op(h), mems[k])
                out += readout(h.flatten(1))
            return out

    return run


def subset(trains, a, b) -> SpikeTrains:
    return SpikeTrains(trains.tptr[a:b].copy(), trains.idx[a:b].copy(), trains.n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path (median)")
    parser.add_argument(
        "--batch1", type=int, default=20, help="test samples run one at a time per timed call"
    )
    parser.add_argument("--test", type=int, default=None, help="test samples (default all 540)")
    parser.add_argument(
        "--quick", action="store_true", help="8 epochs, 100 test samples, 3 repeats, batch1 5"
    )
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.test, args.repeats, args.batch1 = 8, 100, 3, 5
    import torch

    torch.set_num_threads(1)
    env = environment()
    env["torch"] = torch.__version__
    import snntorch

    env["snntorch"] = snntorch.__version__
    print(describe_env(env))
    warn_if_busy()

    data = event_data(n_test=args.test)
    model, converted, net = build(data, args.epochs)
    trains = data["test"]
    y = data["y_test"]
    n = trains.batch_size
    with torch.no_grad():
        ann_acc = float(
            (
                model(torch.as_tensor(data["counts_test"] / data["C"], dtype=torch.float32)).argmax(1).numpy()
                == y
            ).mean()
        )
    compile_s = net.prepare()
    events = np.array([len(s) for s in data["streams_test"]])
    ones = [subset(trains, i, i + 1) for i in range(args.batch1)]
    raster = torch.from_numpy(trains.to_raster())
    rasters1 = [raster[:, i : i + 1] for i in range(args.batch1)]
    peer = snntorch_peer(net)

    results = {mode: net.run(trains, mode=mode, n_threads=1) for mode in ("event", "clock", "auto")}
    net32 = snn.Network(list(net.layers), dtype=np.float32)  # snnTorch's precision: the clock path in float32
    results["clock32"] = net32.run(trains, mode="clock", n_threads=1)
    same32 = float(np.mean(results["clock32"].membrane.argmax(1) == results["clock"].membrane.argmax(1)))
    theirs = peer(raster).numpy()
    acc = {mode: float(np.mean(r.membrane.argmax(1) == y)) for mode, r in results.items()}
    acc["snntorch"] = float(np.mean(theirs.argmax(1) == y))
    agree = float(np.mean(theirs.argmax(1) == results["clock"].membrane.argmax(1)))
    synops = results["clock"].total("synops") / n
    dense = converted.ann_total_macs * T
    paths = {mode: [c.mode for c in r.counts] for mode, r in results.items() if mode != "clock32"}
    paths1 = [c.mode for c in net.run(ones[0], n_threads=1).counts]
    print(
        f"{n} test samples, {events.mean():,.0f} events per sample ({events.min():,}-{events.max():,}); "
        f"ANN {ann_acc:.2%}; kernels ready in {compile_s:.1f} s; auto picks {paths['auto']} on the set, "
        f"{paths1} at batch 1; snnTorch decisions = ours on {agree:.2%}; "
        f"float32 decisions = float64 on {same32:.2%}",
        flush=True,
    )

    def ours(mode, batch1):
        which, mode = (net32, "clock") if mode == "clock32" else (net, mode)
        if batch1:
            return lambda: [which.run(r, mode=mode, n_threads=1) for r in ones]
        return lambda: which.run(trains, mode=mode, n_threads=1)

    timed = {}
    with CpuMonitor() as cpu:
        for label, batch1 in (("batch1", True), ("set", False)):
            fns = {mode: ours(mode, batch1) for mode in ("event", "clock", "auto", "clock32")}
            if batch1:
                fns["snntorch"] = lambda: [peer(r) for r in rasters1]
            else:
                fns["snntorch"] = lambda: peer(raster)
            times = time_interleaved(fns, repeats=args.repeats)
            per = args.batch1 if batch1 else n
            timed[label] = {k: 1e3 * median(v) / per for k, v in times.items()}
            print(f"{label} timed", flush=True)

    table = []
    for mode in ("event", "clock", "auto", "clock32", "snntorch"):
        b1, st = timed["batch1"][mode], timed["set"][mode]
        table.append(
            [
                {"snntorch": "snnTorch", "clock32": "ours, clock, float32"}.get(mode, f"ours, {mode}"),
                f"{acc[mode]:.2%}",
                f"{synops / 1e6:.1f} M" if mode != "snntorch" else f"{dense / 1e6:.1f} M MACs",
                f"{b1:.1f}",
                f"{timed['batch1']['snntorch'] / b1:.1f}x",
                f"{st:.1f}",
                f"{timed['set']['snntorch'] / st:.1f}x",
            ]
        )
    print()
    print(
        md_table(
            [
                "path",
                "accuracy",
                "SynOps / sample",
                "ms batch 1",
                "vs snnTorch",
                f"ms / sample, set of {n}",
                "vs snnTorch",
            ],
            table,
        )
    )
    best = {k: min(timed[k][m] for m in ("event", "clock")) for k in ("batch1", "set")}
    ours_best = {k: min(best[k], timed[k]["auto"]) for k in best}
    print(
        f"\nANN {ann_acc:.2%}; {events.mean():,.0f} events per sample; "
        f"SynOps {synops / 1e6:.1f} M per sample = "
        f"{synops / dense:.1%} of the {dense / 1e6:.1f} M MACs of a dense clock-driven run. One thread each; "
        f"batch 1: {args.batch1} samples one at a time, set: one call on {n}; medians of {args.repeats}, "
        f"interleaved; other processes' CPU {cpu.other_cores:.2f} cores."
    )
    print(
        f"targets: batch 1 >= {TARGETS['batch1']:.0f}x snnTorch: "
        f"{timed['batch1']['snntorch'] / ours_best['batch1']:.1f}x (best of ours); whole set >= "
        f"{TARGETS['set']:.0f}x: {timed['set']['snntorch'] / ours_best['set']:.1f}x; auto within "
        f"{TARGETS['auto']}x of the faster of event/clock: "
        f"{timed['batch1']['auto'] / best['batch1']:.2f}x (batch 1), "
        f"{timed['set']['auto'] / best['set']:.2f}x (set)"
    )
    prof = snn.profile(results["clock"], dt=DT)
    print("\nsparsity profile (clock path, whole set):\n" + prof.table())
    if args.json:
        record = {
            "env": env,
            "n_test": n,
            "epochs": args.epochs,
            "ann_accuracy": ann_acc,
            "accuracy": acc,
            "agreement_snntorch_ours": agree,
            "agreement_float32_float64": same32,
            "events_per_sample": float(events.mean()),
            "synops_per_sample": synops,
            "dense_macs_per_sample": dense,
            "ms_per_sample": timed,
            "paths": paths,
            "paths_batch1": paths1,
            "other_procs_cores": cpu.other_cores,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=float)


if __name__ == "__main__":
    main()
