"""FF-784 (shared/BENCHMARKS.md): 784 -> 1000 -> 1000 -> 10 LIF network on
Bernoulli input, this simulator against snnTorch on the same machine.

Workload
--------
- Weights *and biases* of three ``torch.nn.Linear`` layers built in order
  with ``torch.manual_seed(0)`` (torch's default init), identical for every
  simulator. LIF beta = 0.9, threshold 1.0, reset by subtraction.
- Input: ``snn.bernoulli`` spikes, p in {0.005, 0.01, 0.05, 0.2}, T = 100,
  seed ``int(p * 1e4) * 1000 + batch``; batch 1 and 64.

For every (p, batch) the script

1. checks that ours (event, dense and auto paths; and the reference backend
   where it is timed) give identical spike trains, then compares them with
   snnTorch in three configurations (see ``SNNTORCH_VARIANTS``) in float32
   and float64, per layer: spike totals, entries ``(t, b, neuron)`` that
   differ, agreement = |ours AND theirs| / |ours OR theirs| (Jaccard, %);
2. times (median of several runs; compile excluded, ``Network.prepare``
   timed on its own): ours event / dense / auto with 1 and 2 threads, the
   reference backend (numpy, 1 BLAS thread), snnTorch with
   ``torch.set_num_threads`` 1 and 2 (the §1-matched configuration and the
   default ``snn.Leaky``); ours and snnTorch at one thread count are timed
   interleaved, one call of each per round with the order rotated, so that
   a slow spell of a shared machine hits them alike;
3. measures peak memory two ways: numpy allocations of one run of ours under
   ``tracemalloc`` (in-process; numba's internal scratch and torch tensors are
   invisible to it), and the peak-RSS increase of one run in a fresh
   subprocess (VmHWM reset through /proc/self/clear_refs after set-up and a
   warm-up run; falls back to a ``getrusage`` ru_maxrss delta), for ours
   and snnTorch alike.

Times are wall clock of ``net.run(spikes)`` end to end (it includes turning
the uint8 raster into event lists); snnTorch gets its input as a ready float
tensor and records its output spikes in preallocated tensors.
Synaptic events/s = SynOps of the workload (input spikes x fan-out, summed
over layers, as counted by ``RunResult``) / wall time, for every simulator
(snnTorch actually performs T x dense MACs; shown in the activity table).

Usage::

    python benchmarks/ff784.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
from _common import (
    CpuMonitor,
    blas_threads,
    describe_env,
    environment,
    fmt_si,
    loadavg,
    md_table,
    median,
    read_rss_kib,
    reset_peak_rss,
    time_interleaved,
    time_runs,
    warn_if_busy,
)

import snn  # noqa: E402  (after _common puts the repository on sys.path)

SIZES = (784, 1000, 1000, 10)
BETA, THRESHOLD = 0.9, 1.0
T = 100
PS = (0.005, 0.01, 0.05, 0.2)
BATCHES = (1, 64)

# How snnTorch's Leaky is configured. DESIGN.md §1 is, per step:
#   v = beta * v + I;  s = (v >= thr);  v -= thr * s   (immediately).
SNNTORCH_VARIANTS = {
    # leak+integrate+fire by snn.Leaky with reset_mechanism="none", the
    # subtraction done by the caller right after the step: §1 except that
    # snnTorch fires on v > thr (strict) where §1 says v >= thr.
    "matched": "Leaky(reset_mechanism='none') + mem -= spk*thr after each step",
    # snnTorch's default: the reset of a spike at t is subtracted at t+1 after
    # the leak (v_{t+1} = beta*v_t + I - thr), i.e. thr instead of beta*thr.
    "default": "Leaky(reset_mechanism='subtract') (reset_delay=True, the default)",
    # immediate reset, but it also computes a 'reset' from the stored
    # post-reset membrane: if that residue is still > thr, the next step
    # only fires above 2*thr and the subtraction is undone when it does not.
    "reset_delay=False": "Leaky(reset_mechanism='subtract', reset_delay=False)",
}


def input_seed(p: float, batch: int) -> int:
    return int(round(p * 1e4)) * 1000 + batch


def make_input(p: float, batch: int) -> np.ndarray:
    return snn.bernoulli(np.full((batch, SIZES[0]), p), T, seed=input_seed(p, batch))


def torch_weights():
    """Weights [out, in] and biases of nn.Linear's default init, seed 0, float32."""
    import torch

    torch.manual_seed(0)
    fcs = [torch.nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:])]
    return (
        [fc.weight.detach().numpy().copy() for fc in fcs],
        [fc.bias.detach().numpy().copy() for fc in fcs],
    )


def build_ours(weights, biases) -> snn.Network:
    return snn.Network(
        [
            snn.Linear(w.shape[1], w.shape[0], snn.LIF(beta=BETA, threshold=THRESHOLD), weight=w, bias=b)
            for w, b in zip(weights, biases)
        ]
    )


class TorchFF:
    """The same network in snnTorch (``nn.Linear`` + ``snn.Leaky`` per layer)."""

    def __init__(self, weights, biases, variant: str, dtype: str = "float32"):
        import snntorch
        import torch

        if variant not in SNNTORCH_VARIANTS:
            raise ValueError(variant)
        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.variant = variant
        self.fcs, self.lifs = [], []
        # beta as a tensor of the run's dtype: snnTorch would otherwise store
        # float32(0.9) and use it in float64 runs too
        beta = torch.tensor(BETA, dtype=self.dtype)
        for w, b in zip(weights, biases):
            fc = torch.nn.Linear(w.shape[1], w.shape[0]).to(self.dtype)
            with torch.no_grad():
                fc.weight.copy_(torch.from_numpy(w))
                fc.bias.copy_(torch.from_numpy(b))
            if variant == "matched":
                lif = snntorch.Leaky(beta=beta, threshold=THRESHOLD, reset_mechanism="none")
            elif variant == "default":
                lif = snntorch.Leaky(beta=beta, threshold=THRESHOLD, reset_mechanism="subtract")
            else:
                lif = snntorch.Leaky(
                    beta=beta, threshold=THRESHOLD, reset_mechanism="subtract", reset_delay=False
                )
            self.fcs.append(fc)
            self.lifs.append(lif.to(self.dtype))

    def input(self, x: np.ndarray):
        return self.torch.from_numpy(x).to(self.dtype)

    def run(self, x):
        """``x``: tensor [T, B, 784]; returns output spikes per layer [T, B, n]."""
        torch = self.torch
        n_steps, batch = x.shape[:2]
        compose = self.variant == "matched"
        with torch.no_grad():
            mems = [torch.zeros(batch, fc.out_features, dtype=self.dtype) for fc in self.fcs]
            outs = [torch.empty(n_steps, batch, fc.out_features, dtype=self.dtype) for fc in self.fcs]
            for t in range(n_steps):
                h = x[t]
                for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                    spk, mem = lif(fc(h), mems[k])
                    if compose:
                        mem = mem - spk * THRESHOLD
                    mems[k] = mem
                    outs[k][t] = spk
                    h = spk if spk.dtype == self.dtype else spk.to(self.dtype)  # ATan returns float32
        return outs


def compare(ours_rasters, theirs_rasters):
    """Per layer: (ours total, theirs total, differing entries, first differing step)."""
    rows = []
    for a, b in zip(ours_rasters, theirs_rasters):
        b = np.asarray(b, dtype=np.uint8)
        diff = a != b
        steps = np.nonzero(diff.any(axis=(1, 2)))[0]
        rows.append(
            dict(
                ours=int(a.sum()),
                theirs=int(b.sum()),
                differ=int(diff.sum()),
                union=int((a | b).sum()),
                first_step=int(steps[0]) if len(steps) else None,
            )
        )
    return rows


def jaccard(rows) -> float:
    union = sum(r["union"] for r in rows)
    return 100.0 if union == 0 else 100.0 * (1 - sum(r["differ"] for r in rows) / union)


# -- memory probe (runs in a fresh subprocess) ---------------------------------


def memprobe(spec: dict) -> dict:
    """One run of one simulator in this (fresh) process; returns the increase
    of peak RSS over the RSS right before the run, in KiB."""
    data = np.load(spec["weights"])
    n = len(SIZES) - 1
    weights = [data[f"w{k}"] for k in range(n)]
    biases = [data[f"b{k}"] for k in range(n)]
    x = make_input(spec["p"], spec["batch"])
    if spec["sim"] == "ours":
        net = build_ours(weights, biases)
        net.prepare()
        net.run(x[:2, :1], mode=spec["mode"], n_threads=1)  # warm-up (thread pool, caches)
        fn = lambda: net.run(x, mode=spec["mode"], n_threads=1)  # noqa: E731
    else:
        import torch

        torch.set_num_threads(1)
        model = TorchFF(weights, biases, spec["variant"])
        tx = model.input(x)
        model.run(tx[:2, :1])
        fn = lambda: model.run(tx)  # noqa: E731
    import gc

    gc.collect()
    before = read_rss_kib()
    if before is not None and reset_peak_rss():
        fn()
        after = read_rss_kib()
        return {"method": "VmHWM after clear_refs - VmRSS before", "kib": after[1] - before[0]}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return {"method": "ru_maxrss delta", "kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base}


def run_memprobe(spec: dict) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--_memprobe", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        print(f"memory probe {spec} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tracemalloc_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- the benchmark -------------------------------------------------------------


def bench_case(net, weights, biases, p, batch, cfg, weights_file):
    import torch

    x = make_input(p, batch)
    case = {
        "p": p,
        "batch": batch,
        "T": T,
        "seed": input_seed(p, batch),
        "loadavg_before": loadavg(),
        "input_spikes_per_sample": float(x.sum() / batch),
    }

    # -- correctness: our paths against each other, then against snnTorch
    results = {m: net.run(x, mode=m) for m in ("event", "dense", "auto")}
    ours = [results["event"].spikes(k) for k in range(len(net.layers))]
    case["auto_modes"] = [c.mode for c in results["auto"].counts]
    case["ours_paths_identical"] = all(
        np.array_equal(results[m].spikes(k), ours[k]) for m in ("dense", "auto") for k in range(len(ours))
    )
    r = results["event"]
    case["synops_per_sample"] = [float(c.synops.mean()) for c in r.counts]
    case["spikes_per_sample"] = [float(c.spikes.mean()) for c in r.counts]
    case["synops_identical_across_paths"] = all(
        np.array_equal(results[m].counts[k].synops, r.counts[k].synops)
        for m in ("dense", "auto")
        for k in range(len(ours))
    )
    synops_total = r.total("synops")  # whole batch

    agreement = []
    torch.set_num_threads(1)  # not timed; one thread is the least sensitive to a busy machine
    for variant in SNNTORCH_VARIANTS:
        for dtype in cfg["agree_dtypes"]:
            model = TorchFF(weights, biases, variant, dtype)
            theirs = [o.numpy().astype(np.uint8) for o in model.run(model.input(x))]
            rows = compare(ours, theirs)
            agreement.append(
                {
                    "variant": variant,
                    "dtype": dtype,
                    "layers": rows,
                    "agreement_pct": jaccard(rows),
                    "identical": all(row["differ"] == 0 for row in rows),
                }
            )
    case["agreement"] = agreement

    # -- timing
    timings = []

    def add(method, threads, times, note=""):
        med = median(times)
        timings.append(
            {
                "method": method,
                "threads": threads,
                "runs": len(times),
                "times_s": list(times),
                "cpu_s": times.cpu,
                "median_s": med,
                "ms_per_sample": 1e3 * med / batch,
                "cpu_ms_per_sample": 1e3 * median(times.cpu) / batch,
                "synaptic_events_per_s": synops_total / med if med > 0 else float("nan"),
                "note": note,
            }
        )

    # ours and snnTorch at the same thread count are timed interleaved (one
    # call of each per round), so that they see the same machine conditions
    reps = cfg["reps"][batch]
    torch_models = {v: TorchFF(weights, biases, v) for v in cfg["time_variants"]}
    torch_inputs = {v: m.input(x) for v, m in torch_models.items()}
    saved_threads = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fns = {
                f"ours {mode}": (lambda mode=mode: net.run(x, mode=mode, n_threads=threads))
                for mode in ("event", "dense", "auto")
            }
            fns.update(
                {f"snnTorch {v}": (lambda v=v: torch_models[v].run(torch_inputs[v])) for v in torch_models}
            )
            with blas_threads(threads):
                for name, times in time_interleaved(fns, reps).items():
                    add(name, threads, times)
    finally:
        torch.set_num_threads(saved_threads)
    with blas_threads(1):  # the part of every ours row that is input conversion, not simulation
        add("ours: input raster -> events only", 1, time_runs(lambda: snn.SpikeTrains.from_raster(x), reps))
    ref_reps = cfg["reps_ref"]
    if ref_reps and batch in cfg["ref_batches"]:
        with blas_threads(1):
            start = time.perf_counter()
            rr = net.run(x, backend="reference")
            first = time.perf_counter() - start
            case["reference_identical"] = all(np.array_equal(rr.spikes(k), ours[k]) for k in range(len(ours)))
            n = ref_reps if first * ref_reps < cfg["ref_budget_s"] else 1
            times = time_runs(lambda: net.run(x, backend="reference"), n, warmup=0)
            add("reference (numpy)", 1, times)
    order = {
        name: k
        for k, name in enumerate(
            [
                "ours event",
                "ours dense",
                "ours auto",
                "snnTorch matched",
                "snnTorch default",
                "ours: input raster -> events only",
                "reference (numpy)",
            ]
        )
    }
    timings.sort(key=lambda row: (row["threads"], order.get(row["method"], 99)))
    base = {row["threads"]: row["median_s"] for row in timings if row["method"] == "snnTorch matched"}
    for row in timings:
        ref = base.get(row["threads"])
        useful = ref and not row["method"].endswith(" only")
        row["speedup_vs_snntorch_matched"] = ref / row["median_s"] if useful else float("nan")
    case["timings"] = timings

    # -- memory
    mem = {}
    for mode in ("event", "dense", "auto"):
        mem[f"ours {mode}"] = {"tracemalloc_peak_bytes": tracemalloc_peak(lambda: net.run(x, mode=mode))}
    mem["ours: input raster -> events only"] = {
        "tracemalloc_peak_bytes": tracemalloc_peak(lambda: snn.SpikeTrains.from_raster(x))
    }
    if cfg["memory_subprocess"]:
        for mode in ("event", "dense", "auto"):
            probe = run_memprobe(
                {"sim": "ours", "mode": mode, "p": p, "batch": batch, "weights": weights_file}
            )
            mem[f"ours {mode}"]["rss"] = probe
        probe = run_memprobe(
            {"sim": "snntorch", "variant": "matched", "p": p, "batch": batch, "weights": weights_file}
        )
        mem["snnTorch matched"] = {"rss": probe}
    case["memory"] = mem
    return case


def print_report(cases, prepare_s, cfg):
    # activity and SynOps
    rows = []
    dense_macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:])) * T
    for c in cases:
        sy = c["synops_per_sample"]
        rows.append(
            [
                c["p"],
                c["batch"],
                f"{c['input_spikes_per_sample']:.0f}",
                " / ".join(f"{s:.1f}" for s in c["spikes_per_sample"]),
                " / ".join(fmt_si(s) for s in sy),
                fmt_si(sum(sy)),
                fmt_si(dense_macs),
                "/".join(m[0].upper() for m in c["auto_modes"]),
                "yes" if c["ours_paths_identical"] and c["synops_identical_across_paths"] else "NO",
                {True: "yes", False: "NO", None: "-"}[c.get("reference_identical")],
                f"{c['other_cpu_cores']:.2f}",
            ]
        )
    print("### Activity and SynOps per sample (T = 100)\n")
    print(
        md_table(
            [
                "p",
                "batch",
                "input spikes",
                "output spikes L0 / L1 / L2",
                "SynOps L0 / L1 / L2",
                "SynOps total",
                "snnTorch MACs",
                "auto chose",
                "event=dense=auto",
                "=reference",
                "other procs' CPU (cores)",
            ],
            rows,
        )
    )
    print(
        "\n(auto chose: E = event, D = dense, per layer. snnTorch MACs: dense T x sum(n_in x n_out), "
        "what a clock-driven nn.Linear loop computes whatever the activity. other procs' CPU: average number "
        "of cores busy with other processes (or stolen by the hypervisor) while the case ran, from "
        "/proc/stat; well above 0 means its timings, the 2-thread ones first, are inflated.)\n"
    )

    # agreement
    rows = []
    for c in cases:
        for a in c["agreement"]:
            L = a["layers"]
            first = [r["first_step"] for r in L if r["first_step"] is not None]
            rows.append(
                [
                    c["p"],
                    c["batch"],
                    a["variant"],
                    a["dtype"],
                    " / ".join(str(r["ours"]) for r in L),
                    " / ".join(str(r["theirs"]) for r in L),
                    " / ".join(str(r["differ"]) for r in L),
                    min(first) if first else "-",
                    f"{a['agreement_pct']:.3f}",
                    "yes" if a["identical"] else "no",
                ]
            )
    print("### Spike agreement, ours (event path, float64 state) vs snnTorch\n")
    print(
        md_table(
            [
                "p",
                "batch",
                "snnTorch config",
                "dtype",
                "ours spikes L0/L1/L2",
                "snnTorch spikes L0/L1/L2",
                "differing (t,b,n) L0/L1/L2",
                "first diff step",
                "agreement %",
                "identical",
            ],
            rows,
        )
    )
    print("\nsnnTorch configs: " + "; ".join(f"{k} = {v}" for k, v in SNNTORCH_VARIANTS.items()))
    print("agreement % = 100 x (1 - differing / |ours OR theirs|) over all layers and the batch.\n")

    # timings
    rows = []
    for c in cases:
        for t in c["timings"]:
            rows.append(
                [
                    c["p"],
                    c["batch"],
                    t["method"],
                    t["threads"],
                    t["runs"],
                    f"{t['ms_per_sample']:.3f}",
                    f"{t['cpu_ms_per_sample']:.3f}",
                    "-" if t["method"].endswith(" only") else fmt_si(t["synaptic_events_per_s"], "/s"),
                    "-"
                    if t["speedup_vs_snntorch_matched"] != t["speedup_vs_snntorch_matched"]
                    else f"{t['speedup_vs_snntorch_matched']:.2f}x",
                ]
            )
    print(f"### Time (median of runs; Network.prepare() = {prepare_s:.2f} s, excluded)\n")
    print(
        md_table(
            [
                "p",
                "batch",
                "method",
                "threads",
                "runs",
                "ms/sample",
                "CPU ms/sample",
                "syn. events/s",
                "speed-up vs snnTorch matched (same threads)",
            ],
            rows,
        )
    )
    print(
        "\nours: numba threads = BLAS threads = 'threads' (samples run in parallel, so batch 1 "
        "uses one core). reference: numpy, 1 BLAS thread. snnTorch: torch.set_num_threads. "
        "syn. events/s = the workload's SynOps / wall time for every row. CPU ms/sample: process CPU "
        "time (all threads, spinning included) of the same runs, median.\n"
    )

    # memory
    rows = []
    for c in cases:
        for name, m in c["memory"].items():
            tm = m.get("tracemalloc_peak_bytes")
            rss = m.get("rss")
            rows.append(
                [
                    c["p"],
                    c["batch"],
                    name,
                    f"{tm / 2**20:.1f}" if tm is not None else "-",
                    f"{rss['kib'] / 1024:.1f}" if rss else "-",
                ]
            )
    print("### Peak memory of one run (MiB)\n")
    print(
        md_table(
            [
                "p",
                "batch",
                "method",
                "tracemalloc peak (numpy allocations)",
                "peak RSS increase (fresh subprocess, 1 thread)",
            ],
            rows,
        )
    )
    method = next((m["rss"]["method"] for c in cases for m in c["memory"].values() if m.get("rss")), None)
    print(
        "\ntracemalloc: Python/numpy allocations during net.run (numba-internal scratch and torch tensors "
        "are not traced). RSS: " + (method or "not measured") + ", after set-up and a warm-up run; "
        "includes every allocator (numpy, numba, torch), page granularity.\n"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 activities, few repeats")
    ap.add_argument("--json", metavar="PATH", help="write all results (every run time) as JSON")
    ap.add_argument(
        "--p", type=float, nargs="+", metavar="P", help="input probabilities to run (default: all)"
    )
    ap.add_argument("--batch", type=int, nargs="+", metavar="B", help="batch sizes to run (default: 1 64)")
    ap.add_argument(
        "--no-memory-subprocess", action="store_true", help="skip the fresh-subprocess RSS probes"
    )
    ap.add_argument(
        "--report",
        nargs="+",
        metavar="JSON",
        help="print the tables of earlier --json results (several files: cases merged) instead of running",
    )
    ap.add_argument("--_memprobe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memprobe:
        print(json.dumps(memprobe(json.loads(args._memprobe))))
        return
    if args.report:
        saved = [json.load(open(path)) for path in args.report]
        for path, d in zip(args.report, saved):
            print(f"{path}: {describe_env(d['env'])}")
        print()
        cases = sorted((c for d in saved for c in d["cases"]), key=lambda c: (c["batch"], c["p"]))
        print_report(cases, saved[0]["prepare_s"], saved[0]["config"])
        return

    warnings.filterwarnings("ignore", module="snntorch")
    import torch

    if args.quick:
        cfg = dict(
            ps=(0.01, 0.2),
            batches=BATCHES,
            reps={1: 3, 64: 2},
            reps_ref=1,
            ref_batches=(1, 64),
            ref_budget_s=30,
            agree_dtypes=("float32", "float64"),
            time_variants=("matched",),
            memory_subprocess=not args.no_memory_subprocess,
        )
    else:
        cfg = dict(
            ps=PS,
            batches=BATCHES,
            reps={1: 11, 64: 7},
            reps_ref=3,
            ref_batches=(1, 64),
            ref_budget_s=60,
            agree_dtypes=("float32", "float64"),
            time_variants=("matched", "default"),
            memory_subprocess=not args.no_memory_subprocess,
        )

    if args.p:
        cfg["ps"] = tuple(args.p)
    if args.batch:
        cfg["batches"] = tuple(args.batch)
    warn_if_busy()
    env = environment()
    import snntorch

    env.update(
        torch=torch.__version__, snntorch=snntorch.__version__, torch_threads_default=torch.get_num_threads()
    )
    weights, biases = torch_weights()
    net = build_ours(weights, biases)
    prepare_s = net.prepare()
    print(
        f"FF-784: {' -> '.join(map(str, SIZES))}, LIF beta={BETA}, thr={THRESHOLD}, subtract reset, "
        f"T={T}; {'quick' if args.quick else 'full'} run\n{describe_env(env)}\n",
        flush=True,
    )

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        weights_file = os.path.join(tmp, "ff784_weights.npz")
        np.savez(
            weights_file,
            **{f"w{k}": w for k, w in enumerate(weights)},
            **{f"b{k}": b for k, b in enumerate(biases)},
        )
        for batch in cfg["batches"]:
            for p in cfg["ps"]:
                start = time.perf_counter()
                with CpuMonitor() as mon:
                    case = bench_case(net, weights, biases, p, batch, cfg, weights_file)
                case["other_cpu_cores"], case["steal_cores"] = mon.other_cores, mon.steal_cores
                cases.append(case)
                print(
                    f"  done p={p} batch={batch} in {time.perf_counter() - start:.1f} s "
                    f"(other processes: {mon.other_cores:.2f} cores, steal {mon.steal_cores:.2f})",
                    flush=True,
                )
    print()
    env["loadavg_1min_at_end"] = loadavg()
    print_report(cases, prepare_s, cfg)
    print(
        f"1-min load average: {env['loadavg_1min_at_start']:.2f} at start, {env['loadavg_1min_at_end']:.2f} "
        "at end (the benchmark itself loads 1-2 cores)."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "benchmark": "FF-784",
                    "env": env,
                    "config": {
                        k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k != "reps"
                    },
                    "prepare_s": prepare_s,
                    "cases": cases,
                },
                f,
                indent=1,
                default=str,
            )
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
