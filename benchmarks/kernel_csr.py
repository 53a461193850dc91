"""Synaptic delivery throughput of the event kernels, called directly.

One sample (batch 1), numba threads = 1, BLAS threads = 1, LIF beta = 0.9,
threshold 1, no bias, float64 state. Weights uniform in +-0.001 (mean 0), so
that (almost) no neuron fires and delivering spikes dominates; the output
spike count is printed to show it.

- ``kernels.csr_layer``: sparse projection, fan-out F in {100, 1000}, onto
  10k and 2M neurons, sources n_in = 10M synapses / F (100k or 10k), random
  targets (drawn with replacement, sorted within a row, like
  ``SparseLinear.from_coo``). Input events spread evenly over T = 100 steps,
  distinct sources within a step, enough for 1e8 synaptic operations.
- ``kernels.dense_layer``: fully connected, 1000 inputs onto 1000 and 10000
  neurons, events spread over T steps (1e8 synaptic operations).

Ceilings, doing nothing but the additions, on the same inputs:

- ``numba adds only``: an ``@njit`` loop ``for e: for s in row(e):
  v[cols[s]] += w[s]`` into a contiguous float64 ``v`` (no leak, no
  threshold, no bookkeeping); for dense rows ``v += W[pre]``.
- ``numba adds, [n,2] rows`` (CSR only): the same loop into column 0 of a
  ``[n, 2]`` float64 array, the kernel's LIF state layout (16 bytes per
  neuron instead of 8), to separate memory footprint from bookkeeping.
- ``numpy per step``: one vectorised call per step (``np.bincount`` of the
  step's synapses for CSR, ``W[pre].sum(0)`` for dense).

Synaptic events/s = synaptic operations (the kernel's ``counts[0, 0]``;
events x fan-out for the ceilings) / wall time of the call, median of 5
after one warm-up (compilation excluded). Kernel calls include the kernel's
per-call set-up (its O(n) scratch arrays and the initial state of every
neuron), which matters at 2M neurons: a run with no input event measures it
and is shown as "empty-input time".

Usage::

    python benchmarks/kernel_csr.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time

import numba  # noqa: E402
import numpy as np
from _common import (
    CpuMonitor,
    blas_threads,
    describe_env,
    environment,
    fmt_si,
    md_table,
    median,
    time_runs,
    warn_if_busy,
)

import snn  # noqa: E402
import snn_kernels as kernels  # noqa: E402

BETA = 0.9
W_SCALE = 1e-3


@numba.njit(cache=False)
def deliver_csr(in_tptr, in_idx, rowptr, cols, weights, v):
    """Just the additions of a CSR delivery; returns the synaptic operations."""
    n = 0
    for t in range(in_tptr.shape[0] - 1):
        for e in range(in_tptr[t], in_tptr[t + 1]):
            pre = in_idx[e]
            for s in range(rowptr[pre], rowptr[pre + 1]):
                v[cols[s]] += weights[s]
            n += rowptr[pre + 1] - rowptr[pre]
    return n


@numba.njit(cache=False)
def deliver_csr_rows(in_tptr, in_idx, rowptr, cols, weights, state):
    """The same additions into column 0 of a ``[n, 2]`` state (the kernel's
    LIF layout: v and t_last side by side, 16 bytes per neuron)."""
    n = 0
    for t in range(in_tptr.shape[0] - 1):
        for e in range(in_tptr[t], in_tptr[t + 1]):
            pre = in_idx[e]
            for s in range(rowptr[pre], rowptr[pre + 1]):
                state[cols[s], 0] += weights[s]
            n += rowptr[pre + 1] - rowptr[pre]
    return n


@numba.njit(cache=False)
def deliver_dense(in_tptr, in_idx, weights, v):
    """Just the additions of a dense delivery (``weights[n_in, n]`` rows)."""
    n = 0
    m = weights.shape[1]
    for t in range(in_tptr.shape[0] - 1):
        for e in range(in_tptr[t], in_tptr[t + 1]):
            row = weights[in_idx[e]]
            for j in range(m):
                v[j] += row[j]
            n += m
    return n


def numpy_csr(in_tptr, in_idx, rowptr, cols, weights, v):
    n = 0
    for t in range(len(in_tptr) - 1):
        pre = in_idx[in_tptr[t] : in_tptr[t + 1]]
        if len(pre) == 0:
            continue
        starts, lens = rowptr[pre], rowptr[pre + 1] - rowptr[pre]
        total = int(lens.sum())
        offs = np.repeat(starts - np.cumsum(np.concatenate(([0], lens[:-1]))), lens) + np.arange(total)
        v += np.bincount(cols[offs], weights=weights[offs], minlength=len(v))
        n += total
    return n


def numpy_dense(in_tptr, in_idx, weights, v):
    n = 0
    for t in range(len(in_tptr) - 1):
        pre = in_idx[in_tptr[t] : in_tptr[t + 1]]
        if len(pre):
            v += weights[pre].sum(axis=0, dtype=np.float64)
            n += len(pre) * weights.shape[1]
    return n


def make_events(rng, n_in, T, per_step):
    """Time-CSR input of one sample: ``per_step`` distinct sources per step."""
    tptr = (np.arange(T + 1, dtype=np.int64) * per_step)[None, :]
    idx = np.concatenate([np.sort(rng.choice(n_in, per_step, replace=False)) for _ in range(T)])
    return tptr, idx.astype(np.int32)[None, :]


def make_csr(rng, n_in, n_out, fan_out):
    rowptr = np.arange(n_in + 1, dtype=np.int64) * fan_out
    cols = np.sort(rng.integers(0, n_out, (n_in, fan_out), dtype=np.int32), axis=1).ravel()
    weights = rng.uniform(-W_SCALE, W_SCALE, n_in * fan_out).astype(np.float32)
    return rowptr, cols, weights


class KernelCall:
    """Everything ``csr_layer`` / ``dense_layer`` need besides connectivity
    and input (see the module docstring of ``kernels.event``)."""

    def __init__(self, n_out, T, cap):
        neuron = snn.LIF(beta=BETA)
        dt = np.float64
        self.common_head = (
            np.zeros((1, n_out), dt),
            neuron.propagator(T, dt),
            dt(neuron.threshold),
            neuron.reset_code,
            dt(neuron.v_reset),
            neuron.refractory,
            np.zeros(n_out, dt),
            neuron.has_current,
            neuron.refractory > 0,
            False,
        )
        self.state = np.empty((1, n_out, 2), dt)
        self.out_tptr = np.empty((1, T + 1), np.int64)
        self.out_idx = np.empty((1, cap), np.int32)
        self.counts = np.zeros((1, 4), np.int64)

    def args(self):
        self.counts[:] = 0
        return (*self.common_head, self.state, self.out_tptr, self.out_idx, self.counts)


def bench_case(rng, kind, n_in, n_out, fan_out, T, per_step, reps):
    tptr, idx = make_events(rng, n_in, T, per_step)
    empty_tptr = np.zeros_like(tptr)
    empty_idx = np.zeros((1, 0), np.int32)
    call = KernelCall(n_out, T, cap=min(T * n_out, 1_000_000))
    v = np.zeros(n_out)
    if kind == "csr":
        rowptr, cols, weights = make_csr(rng, n_in, n_out, fan_out)
        kernel = lambda tp, ix: kernels.csr_layer(tp, ix, rowptr, cols, weights, *call.args())  # noqa: E731
        ceil_numba = lambda: deliver_csr(tptr[0], idx[0], rowptr, cols, weights, v)  # noqa: E731
        ceil_numpy = lambda: numpy_csr(tptr[0], idx[0], rowptr, cols, weights, v)  # noqa: E731
        rows_state = np.zeros((n_out, 2))
        ceil_rows = lambda: deliver_csr_rows(tptr[0], idx[0], rowptr, cols, weights, rows_state)  # noqa: E731
        synapses = len(cols)
    else:
        weights = rng.uniform(-W_SCALE, W_SCALE, (n_in, n_out)).astype(np.float32)
        fan_out = n_out
        kernel = lambda tp, ix: kernels.dense_layer(tp, ix, weights, *call.args())  # noqa: E731
        ceil_numba = lambda: deliver_dense(tptr[0], idx[0], weights, v)  # noqa: E731
        ceil_numpy = lambda: numpy_dense(tptr[0], idx[0], weights, v)  # noqa: E731
        ceil_rows = None
        synapses = weights.size

    rows = []
    base = dict(
        kind=kind, n_in=n_in, n_out=n_out, fan_out=fan_out, synapses=synapses, T=T, events=int(tptr[0, -1])
    )

    times = time_runs(lambda: kernel(tptr, idx), reps)
    if call.counts[0, 3] != 0:
        raise RuntimeError("output buffer overflow: raise cap")
    synops = int(call.counts[0, 0])
    spikes, updates = int(call.counts[0, 2]), int(call.counts[0, 1])
    empty = median(time_runs(lambda: kernel(empty_tptr, empty_idx), reps))
    rows.append(
        dict(
            base,
            method=f"kernels.{kind}_layer",
            synops=synops,
            times_s=list(times),
            cpu_s=times.cpu,
            median_s=median(times),
            output_spikes=spikes,
            updates=updates,
            empty_input_s=empty,
        )
    )
    expected = int(tptr[0, -1]) * fan_out
    if synops != expected:
        print(f"WARNING: kernel counted {synops} synops, expected {expected}")
    ceilings = [
        ("numba adds only", ceil_numba, reps),
        ("numba adds, [n,2] rows", ceil_rows, reps),
        ("numpy per step", ceil_numpy, max(1, reps // 2)),
    ]
    for label, fn, r in ceilings:
        if fn is None:
            continue
        box = {}
        times = time_runs(lambda: box.__setitem__("n", fn()), r)
        rows.append(
            dict(
                base,
                method=label,
                synops=int(box["n"]),
                times_s=list(times),
                cpu_s=times.cpu,
                median_s=median(times),
                output_spikes=None,
                updates=None,
                empty_input_s=None,
            )
        )
    for row in rows:
        row["synaptic_events_per_s"] = row["synops"] / row["median_s"]
        row["ns_per_synop"] = 1e9 * row["median_s"] / row["synops"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 10x fewer events, 2 repeats")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    warn_if_busy()
    env = environment()
    numba.set_num_threads(1)
    reps = 2 if args.quick else 5
    scale = 10 if args.quick else 1
    T = 100
    # (kind, n_in, n_out, fan_out, T, events per step): 1e8 synaptic operations each
    cases = [
        ("csr", 100_000, 10_000, 100, T, 10_000),
        ("csr", 10_000, 10_000, 1000, T, 1_000),
        ("csr", 100_000, 2_000_000, 100, T, 10_000),
        ("csr", 10_000, 2_000_000, 1000, T, 1_000),
        ("dense", 1000, 1000, None, 200, 500),
        ("dense", 1000, 10_000, None, T, 100),
    ]
    rng = np.random.default_rng(0)
    results = []
    print(
        "kernel delivery benchmark: batch 1, 1 numba thread, float64 state, LIF beta 0.9, "
        f"{'quick' if args.quick else 'full'} run\n{describe_env(env)}\n",
        flush=True,
    )
    with blas_threads(1):
        for kind, n_in, n_out, fan_out, steps, per_step in cases:
            start = time.perf_counter()
            with CpuMonitor() as mon:
                rows = bench_case(rng, kind, n_in, n_out, fan_out, steps, max(1, per_step // scale), reps)
            for row in rows:
                row["other_cpu_cores"] = mon.other_cores
            results.extend(rows)
            print(
                f"  done {kind} {n_in} -> {n_out} in {time.perf_counter() - start:.1f} s "
                f"(other processes: {mon.other_cores:.2f} cores, steal {mon.steal_cores:.2f})",
                flush=True,
            )
    print()
    table = []
    for r in results:
        kernel_row = r["method"].startswith("kernels.")
        table.append(
            [
                r["kind"],
                f"{r['n_in']:,}",
                f"{r['n_out']:,}",
                f"{r['fan_out']:,}",
                f"{r['synapses'] / 1e6:.0f} M",
                r["T"],
                f"{r['events']:,}",
                r["method"],
                len(r["times_s"]),
                f"{fmt_si(r['synops'])}",
                f"{1e3 * r['median_s']:.1f}",
                fmt_si(r["synaptic_events_per_s"], "/s"),
                f"{r['ns_per_synop']:.2f}",
                f"{1e3 * r['empty_input_s']:.2f}" if kernel_row else "-",
                f"{r['output_spikes']:,}" if kernel_row else "-",
                f"{r['other_cpu_cores']:.2f}",
            ]
        )
    print(
        md_table(
            [
                "kind",
                "n_in",
                "n_out",
                "fan-out",
                "synapses",
                "T",
                "events",
                "method",
                "runs",
                "SynOps",
                "median ms",
                "syn. events/s",
                "ns/SynOp",
                "empty-input ms",
                "out spikes",
                "other procs' CPU",
            ],
            table,
        )
    )
    print(
        "\nempty-input ms: the same kernel call with no input event (per-call set-up: O(n_out) scratch "
        "arrays, initial state and calendar of every neuron). other procs' CPU: cores busy with other "
        "processes while the case ran (/proc/stat); well above 0 means the figures are inflated."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "kernel_csr", "env": env, "results": results}, f, indent=1)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
