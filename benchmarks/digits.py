"""DIGITS-CNN (shared/BENCHMARKS.md): a trained CNN converted to an SNN, run
on the 540 test digits with direct (constant current) and Poisson input,
against the same converted network run clock-driven in snnTorch.

Workload
--------
- ANN: Conv(1,16,3,p1)-BN-ReLU-Conv(16,32,3,p1)-BN-ReLU-AvgPool(2)-Flatten-
  Linear(512,10), Adam 1e-3, wd 1e-4, batch 64, 60 epochs, seed 0
  (``snn.convert.training``); converted with ``percentile=99.99``
  (``--calibrate-at T`` also calibrates the initial membranes at T).
- Direct input: the image multiplied once by the first layer (a constant
  current). Poisson input: rate coding (``snn.rate``, seed 0), a spike at
  each step with probability = pixel value (a Bernoulli process, the
  discrete-time Poisson input of the conversion literature); the first layer
  then receives spikes.
- snnTorch: the converted weights in ``torch.nn.Conv2d``/``Linear`` layers
  and ``snntorch.Leaky(beta=1, threshold=1, reset_mechanism="subtract")``
  neurons with the membrane starting where ours does, the readout summing
  its input (no spikes); direct input; clock-driven, every layer every step,
  ``torch.set_num_threads`` as ours.

For each T the script reports accuracy, SynOps and SNN MACs per sample (ours,
counted by the kernels), SynOps / ANN MACs, energy / ANN (0.9 pJ per AC,
4.6 pJ per MAC), and wall time per sample: the whole test set in one call
(all cores; ours, ours with float32 state (snnTorch's precision) and snnTorch
interleaved, each timed call right after an untimed one of its own, median
of ``--repeats``), and at
batch 1 (median over ``--batch1`` digits, one call each; ours, then
snnTorch). The reference
backend (numpy clock loop, the oracle) is timed at the smallest T.

Usage::

    python benchmarks/digits.py [--quick] [--steps 4 8 ...] [--calibrate-at T] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import CpuMonitor, describe_env, environment, md_table, median, time_interleaved, warn_if_busy

import snn
from snn.convert import calibrate, convert
from snn.convert.training import accuracy, digits_cnn, load_digits_split, train
from snn.energy import EnergyModel


def snntorch_model(converted):
    """The converted network as torch layers and snnTorch neurons; returns
    ``run(x, T) -> readout`` (x: [N, 1, 8, 8] float32 tensor)."""
    import snntorch
    import torch

    stages = []
    for layer in converted.network.layers:
        if layer.kind == "conv":
            c_out, h, w = layer.out_shape
            _, _, kh, kw = layer.weight.shape
            op = torch.nn.Conv2d(
                layer.in_shape[0], c_out, (kh, kw), padding=(int(layer.geom[10]), int(layer.geom[11]))
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

    @torch.no_grad()
    def run(x, n_steps):
        *hidden, (readout, r0) = stages
        first_current = hidden[0][0](x)  # constant input: the first layer's current, computed once
        mems = [v0.expand(len(x), *v0.shape).clone() for _, v0 in hidden]
        out = r0.expand(len(x), -1).clone()
        for _ in range(n_steps):
            h = None
            for k, (op, _) in enumerate(hidden):
                current = first_current if k == 0 else op(h)
                h, mems[k] = leaky(current, mems[k])
            out += readout(h.flatten(1))
        return out

    return run


def _per_call(calls) -> list:
    """Wall time of each call, in order."""
    out = []
    for call in calls:
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the whole test set per T")
    parser.add_argument("--batch1", type=int, default=200, help="digits timed one at a time per T (<= 540)")
    parser.add_argument(
        "--calibrate-at", type=int, default=None, help="calibrate the initial membranes at this T"
    )
    parser.add_argument("--quick", action="store_true", help="T in {4, 16}, 10 epochs, fewer repeats")
    parser.add_argument("--json", default=None, help="write every figure and run time here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.epochs, args.repeats, args.batch1 = [4, 16], 10, 3, 50
    args.batch1 = min(args.batch1, 540)
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    env = environment()
    print(describe_env(env))
    warn_if_busy()

    x_train, y_train, x_test, y_test = load_digits_split()
    model = train(digits_cnn("avg"), x_train, y_train, epochs=args.epochs, progress=False)
    ann_acc = accuracy(model, x_test, y_test)
    converted = convert(model, x_train, percentile=99.99)
    if args.calibrate_at:
        converted = calibrate(converted, x_train, args.calibrate_at)
    net = converted.network
    net32 = snn.Network(list(net.layers), dtype=np.float32)  # snnTorch's precision
    compile_s = net.prepare() + net32.prepare()
    flat = converted._flat(x_test)
    xt = torch.as_tensor(x_test, dtype=torch.float32)
    run_torch = snntorch_model(converted)
    energy = EnergyModel()
    ann_macs = converted.ann_total_macs
    print(
        f"ANN accuracy {ann_acc:.2%}, {ann_macs:,} MACs per sample; kernels ready in {compile_s:.2f} s; "
        f"{threads} threads for ours and torch"
        + (f"; calibrated at T={args.calibrate_at}" if args.calibrate_at else "")
        + "\n"
    )

    rows, record = [], {"env": env, "ann_accuracy": ann_acc, "ann_macs": ann_macs, "steps": {}}
    for n_steps in args.steps:
        spikes = snn.rate(flat, n_steps, seed=0)
        direct = net.run(analog=flat, T=n_steps)
        direct32 = net32.run(analog=flat, T=n_steps)
        poisson = net.run(spikes)
        theirs = run_torch(xt, n_steps).numpy()
        with CpuMonitor() as cpu:
            times = time_interleaved(
                {
                    "direct": lambda n_steps=n_steps: net.run(analog=flat, T=n_steps),
                    "direct32": lambda n_steps=n_steps: net32.run(analog=flat, T=n_steps),
                    "poisson": lambda spikes=spikes: net.run(spikes),
                    "snntorch": lambda n_steps=n_steps: run_torch(xt, n_steps),
                },
                repeats=args.repeats,
                settle=True,  # two threads each: torch's spinning workers slow whatever follows it
            )
        # one digit at a time; ours and snnTorch in separate loops: torch's OpenMP workers spin for a
        # while after each call and would take a core from whatever runs next
        batch1 = _per_call(
            [lambda i=i: net.run(analog=flat[i : i + 1], T=n_steps) for i in range(args.batch1)]
        )
        batch1_torch = _per_call([lambda i=i: run_torch(xt[i : i + 1], n_steps) for i in range(args.batch1)])
        ref_ms = float("nan")
        if n_steps == min(args.steps):
            start = time.perf_counter()
            net.run(analog=flat, T=n_steps, backend="reference")
            ref_ms = 1e3 * (time.perf_counter() - start) / len(flat)
        per = {}
        for name, result in (("direct", direct), ("poisson", poisson)):
            synops, macs = result.total("synops") / len(flat), result.total("macs") / len(flat)
            per[name] = {
                "accuracy": float(np.mean(result.membrane.argmax(1) == y_test)),
                "synops": synops,
                "macs": macs,
                "energy_ratio": energy.energy_pj(synops, macs) / energy.energy_pj(0, ann_macs),
                "ms_per_sample": 1e3 * median(times[name]) / len(flat),
                "modes": [c.mode for c in result.counts],
            }
        snntorch_acc = float(np.mean(theirs.argmax(1) == y_test))
        snntorch_ms = 1e3 * median(times["snntorch"]) / len(flat)
        acc32 = float(np.mean(direct32.membrane.argmax(1) == y_test))
        ms32 = 1e3 * median(times["direct32"]) / len(flat)
        b1_ms, b1_torch_ms = 1e3 * median(batch1), 1e3 * median(batch1_torch)
        record["steps"][n_steps] = {
            **per,
            "snntorch": {
                "accuracy": snntorch_acc,
                "ms_per_sample": snntorch_ms,
                "batch1_ms": b1_torch_ms,
                "runs_s": list(times["snntorch"]),
            },
            "batch1_ms": b1_ms,
            "float32": {"accuracy": acc32, "ms_per_sample": ms32},
            "reference_ms_per_sample": ref_ms,
            "other_procs_cores": cpu.other_cores,
            "runs_s": {k: list(v) for k, v in times.items() if k != "snntorch"},
        }
        d, p = per["direct"], per["poisson"]
        rows.append(
            [
                n_steps,
                f"{d['accuracy']:.2%}",
                f"{d['synops']:,.0f}",
                f"{d['synops'] / ann_macs:.3f}",
                f"{d['energy_ratio']:.3f}",
                f"{d['ms_per_sample']:.3f}",
                f"{b1_ms:.3f}",
                "-" if ref_ms != ref_ms else f"{ref_ms:.2f}",
                f"{snntorch_acc:.2%}",
                f"{snntorch_ms:.3f}",
                f"{snntorch_ms / d['ms_per_sample']:.1f}x",
                f"{acc32:.2%}",
                f"{ms32:.3f}",
                f"{snntorch_ms / ms32:.1f}x",
                f"{b1_torch_ms:.3f}",
                f"{b1_torch_ms / b1_ms:.1f}x",
                f"{p['accuracy']:.2%}",
                f"{p['synops'] / ann_macs:.3f}",
                f"{p['ms_per_sample']:.3f}",
                f"{cpu.other_cores:.2f}",
            ]
        )
        print(f"T={n_steps} done; paths (direct): {', '.join(d['modes'])}", flush=True)
    print()
    print(
        md_table(
            [
                "T",
                "acc",
                "SynOps",
                "SynOps/MAC",
                "energy/ANN",
                "ms/sample (set)",
                "ms batch-1",
                "reference ms/sample",
                "snnTorch acc",
                "snnTorch ms/sample",
                "speed-up",
                "float32 acc",
                "float32 ms/sample",
                "float32 speed-up",
                "snnTorch ms batch-1",
                "speed-up batch-1",
                "Poisson acc",
                "Poisson SynOps/MAC",
                "Poisson ms/sample",
                "other procs' CPU",
            ],
            rows,
        )
    )
    print(
        f"\nper sample, {len(flat)} test digits; ms/sample (set): one call on the whole set, median of "
        f"{args.repeats}, interleaved with snnTorch and the Poisson run, each timed call right after an "
        "untimed one of its own; batch-1: median over "
        f"{args.batch1} single-digit calls (ours, then snnTorch's); speed-up: snnTorch / ours "
        "(direct), same run; float32: ours with float32 state (snnTorch's precision; float64 by default), "
        "the whole set in the same interleaved run. "
        "SynOps counted by the kernels; the Poisson runs' SynOps include the first layer's (direct input "
        "has MACs there instead, counted in energy). " + energy.describe()
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=float)


if __name__ == "__main__":
    main()
