"""Convolution delivery throughput of the CONV clock kernel, called directly
(ns per synaptic operation and per neuron update).

Layers (``--layer``): ``digits``, DIGITS-CNN's second convolution,
Conv(16, 32, 3, padding 1) on 8 x 8 (the whole test set, batch 540, and
batch 1, at T = 4 and 16; input rate 0.12, that of its first layer); ``conv2``
(default), EVENT-DIGITS' second convolution, Conv(16, 32, 3, stride 2,
padding 1) on 16 x 16 -> 8 x 8 (batch 16, T = 300, rate 0.2); ``conv1``: its
first, Conv(2, 16, 5, stride 2, padding 2) on 32 x 32 -> 16 x 16. IF neurons
(threshold 1, reset by subtraction, as converted networks have), one numba
thread; ``--batch`` and ``--steps`` take several values. Input: a Bernoulli
raster, each input neuron spiking with probability ``--rate`` per step,
spikes in increasing index order within a step. Weights normal, scaled so
that a good share of the neurons fire per step (the table says how many).

- ``kernel``: ``kernels.conv_layer``, delivery and sweep; ``no input``: the
  same call on an empty input (the sweep and the per-step and per-sample
  work alone, also given per neuron update); ``delivery``: their
  difference, per synaptic operation.
- ``adds only``: an ``@njit`` loop over the same tables
  (``kernels.event.conv_tables``) doing nothing but the additions into a
  channel-last buffer (no sweep, no counts).
- ``contiguous rows``: each input spike adds one contiguous row of the
  same mean length (the synaptic operations per spike) to a buffer, as
  fully connected delivery does: the ceiling of runs that never break.
- ``FC kernel``: for scale, ``kernels.dense_layer``'s clock path on the
  same input, its fan-out the conv layer's synaptic operations per input
  spike (the same SynOp count), delivery and sweep.

Times: process CPU time, median of ``--repeats`` after a warm-up call
(compilation excluded); a timing of a small batch calls the kernel several
times (about 256 samples); float64 and float32 state.

Usage::

    flock /tmp/bench.lock python benchmarks/kernel_conv.py [--quick] [--layer digits] [--json PATH]
"""

from __future__ import annotations

import argparse
import json

import numba
import numpy as np
from _common import CpuMonitor, describe_env, environment, md_table, median, time_runs, warn_if_busy

import snn  # noqa: E402
import snn_kernels as kernels  # noqa: E402
from snn_kernels.conv import RUN_ACC, RUN_LEN, RUN_W  # noqa: E402
from snn_kernels.event import PRE_ACC, PRE_END, PRE_FIRST, PRE_W, conv_tables  # noqa: E402

# (c_in, h, w, c_out, kh, kw, stride, padding)
LAYERS = {
    "conv1": (2, 32, 32, 16, 5, 5, 2, 2),
    "conv2": (16, 16, 16, 32, 3, 3, 2, 1),
    "digits": (16, 8, 8, 32, 3, 3, 1, 1),
}
# the workload of each layer: batches, steps, input rate
PRESETS = {
    "conv1": ((16,), (300,), 0.2),
    "conv2": ((16,), (300,), 0.2),
    "digits": ((540, 1), (4, 16), 0.12),
}


def geometry(c_in, h, w, c_out, kh, kw, stride, pad):
    h_out, w_out = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    return np.array([c_in, h, w, c_out, h_out, w_out, kh, kw, stride, stride, pad, pad, 1, 1, 1], np.int64)


@numba.njit(cache=False)
def deliver_runs(in_tptr, in_idx, w_st, pre_rows, flat_runs, acc):
    """The additions of the CONV kernel's delivery alone (the same tables
    and order); returns the synaptic operations."""
    synops = 0
    for t in range(in_tptr.shape[0] - 1):
        for e in range(in_tptr[t], in_tptr[t + 1]):
            pre = in_idx[e]
            a_base = pre_rows[pre, PRE_ACC]
            w_base = pre_rows[pre, PRE_W]
            for r in range(pre_rows[pre, PRE_FIRST], pre_rows[pre, PRE_END]):
                length = flat_runs[r, RUN_LEN]
                a0 = flat_runs[r, RUN_ACC] + a_base
                w0 = flat_runs[r, RUN_W] + w_base
                target = acc[a0 : a0 + length]
                w = w_st[w0 : w0 + length]
                for co in range(length):
                    target[co] += w[co]
                synops += length
        acc[:] = 0
    return synops


@numba.njit(cache=False)
def deliver_rows(in_tptr, in_idx, rows, acc):
    """Each input spike adds row ``in_idx[e] % len(rows)`` of ``rows``
    (contiguous, ``rows.shape[1]`` long) to ``acc``; returns the synaptic
    operations."""
    synops = 0
    m = rows.shape[1]
    for t in range(in_tptr.shape[0] - 1):
        for e in range(in_tptr[t], in_tptr[t + 1]):
            row = rows[in_idx[e] % rows.shape[0]]
            for j in range(m):
                acc[j] += row[j]
            synops += m
        acc[:] = 0
    return synops


def raster_trains(rng, batch, n_steps, n_in, rate):
    """Time-CSR trains ``(tptr [B, T+1], idx [B, cap])`` of a Bernoulli raster."""
    tptr = np.zeros((batch, n_steps + 1), np.int64)
    rows = []
    for b in range(batch):
        fired = rng.random((n_steps, n_in)) < rate
        tptr[b, 1:] = np.cumsum(fired.sum(axis=1))
        rows.append(np.nonzero(fired)[1].astype(np.int32))  # row-major: by step, then index
    idx = np.zeros((batch, max(1, max(len(r) for r in rows))), np.int32)
    for b, r in enumerate(rows):
        idx[b, : len(r)] = r
    return tptr, idx


def bench(layer, dtype, batch, n_steps, rate, repeats, seed=0):
    rng = np.random.default_rng(seed)
    geom = geometry(*LAYERS[layer])
    c_in, h, w, c_out = (int(v) for v in geom[:4])
    n_in, n = c_in * h * w, c_out * int(geom[4] * geom[5])
    fan_in = c_in * int(geom[6] * geom[7])
    weights = (rng.normal(0.0, 1.0, fan_in * c_out) * 2.2 / np.sqrt(rate * fan_in)).astype(np.float32)
    tptr, idx = raster_trains(rng, batch, n_steps, n_in, rate)
    neuron = snn.IF()
    table = neuron.propagator(n_steps, dtype)
    thr, v_reset = neuron.constants(dtype)
    bias = np.zeros((1, 1), dtype)
    tables = conv_tables(geom, weights, dtype)
    calls = max(1, 256 // batch)  # kernel calls per timing

    def layer_call(call, n_out):
        """``call(tptr, idx, v_init, state, out_tptr, out_idx, counts)`` made
        into ``f(tptr, idx)``, its buffers for ``n_out`` neurons made here;
        returns ``(f, counts)``."""
        v_init = np.full(n_out, 0.5, dtype)
        state = np.empty((batch, n_out, 2), dtype)
        out_tptr = np.empty((batch, n_steps + 1), np.int64)
        out_idx = np.empty((batch, n_steps * n_out), np.int32)
        counts = np.zeros((batch, 4), np.int64)

        def f(tp, ix):
            for _ in range(calls):
                call(tp, ix, v_init, state, out_tptr, out_idx, counts)

        return f, counts

    def conv_call(tp, ix, v_init, state, out_tptr, out_idx, counts):
        kernels.conv_layer(
            tp, ix, geom, weights, bias, table, thr, neuron.reset_code, v_reset, 0, v_init, False, False,
            False, state, out_tptr, out_idx, counts, clock=True, tables=tables,
        )  # fmt: skip

    kernel, counts = layer_call(conv_call, n)
    empty_tptr = np.zeros_like(tptr)
    empty_idx = np.zeros((batch, 1), np.int32)
    full = time_runs(lambda: kernel(tptr, idx), repeats)
    if (counts[:, 3] != 0).any():
        raise RuntimeError("output buffer overflow")
    synops = int(counts[:, 0].sum())
    updates = int(counts[:, 1].sum())
    fired = float(counts[:, 2].sum()) / (batch * n_steps * n)
    empty = time_runs(lambda: kernel(empty_tptr, empty_idx), repeats)
    acc = np.zeros(n, dtype)
    w_st, pre_rows, flat_runs = tables
    box = {}

    def adds():
        for _ in range(calls):
            box["runs"] = sum(
                deliver_runs(tptr[b], idx[b], w_st, pre_rows, flat_runs, acc) for b in range(batch)
            )

    ceiling = time_runs(adds, repeats)
    spikes = int(tptr[:, -1].sum())
    per_spike = max(1, round(synops / max(1, spikes)))
    rows = np.ascontiguousarray(rng.normal(0, 1, (64, per_spike)).astype(dtype))
    acc_rows = np.zeros(per_spike, dtype)

    def contiguous():
        for _ in range(calls):
            box["rows"] = sum(deliver_rows(tptr[b], idx[b], rows, acc_rows) for b in range(batch))

    flat = time_runs(contiguous, repeats)
    assert box["runs"] == synops, (box["runs"], synops)
    # fully connected, the same input and SynOp count: fan-out per_spike, weights as the conv's
    fc_weights = (rng.normal(0.0, 1.0, (n_in, per_spike)) * 2.2 / np.sqrt(rate * fan_in)).astype(np.float32)

    def fc_call(tp, ix, v_init, state, out_tptr, out_idx, fc_counts):
        kernels.dense_layer(
            tp, ix, fc_weights, bias, table, thr, neuron.reset_code, v_reset, 0, v_init, False, False, False,
            state, out_tptr, out_idx, fc_counts, clock=True,
        )  # fmt: skip

    fc_kernel, fc_counts = layer_call(fc_call, per_spike)
    fc = time_runs(lambda: fc_kernel(tptr, idx), repeats)
    fc_synops = int(fc_counts[:, 0].sum())
    ms = {
        k: 1e3 * median(v.cpu) / calls
        for k, v in (("full", full), ("empty", empty), ("adds", ceiling), ("rows", flat), ("fc", fc))
    }
    return dict(
        layer=layer,
        dtype=np.dtype(dtype).name,
        batch=batch,
        T=n_steps,
        rate=rate,
        input_spikes=spikes,
        synops=synops,
        updates=updates,
        synops_per_spike=synops / max(1, spikes),
        fired_per_step=fired,
        ms=ms,
        ns_per_synop={
            "kernel": 1e6 * ms["full"] / synops,
            "delivery": 1e6 * (ms["full"] - ms["empty"]) / synops,
            "adds only": 1e6 * ms["adds"] / synops,
            "contiguous rows": 1e6 * ms["rows"] / box["rows"],
            "FC kernel": 1e6 * ms["fc"] / fc_synops,
        },
        ns_per_update_no_input=1e6 * ms["empty"] / updates,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", choices=sorted(LAYERS), default="conv2")
    ap.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: the layer's workload)")
    ap.add_argument("--steps", type=int, nargs="+", help="values of T (default: the layer's workload)")
    ap.add_argument("--rate", type=float, help="input spikes per neuron per step (default: the layer's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 2, 30 steps, 2 repeats")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    batches, steps, rate = PRESETS[args.layer]
    batches, steps = args.batch or batches, args.steps or steps
    rate = args.rate if args.rate is not None else rate
    if args.quick:
        batches, steps, args.repeats = (2,), (30,), 2
    warn_if_busy()
    env = environment()
    numba.set_num_threads(1)
    print(f"{describe_env(env)}\n", flush=True)
    results = []
    with CpuMonitor() as mon:
        for batch in batches:
            for n_steps in steps:
                for dtype in (np.float64, np.float32):
                    results.append(bench(args.layer, dtype, batch, n_steps, rate, args.repeats))
    table = []
    for r in results:
        ns = r["ns_per_synop"]
        table.append(
            [
                r["dtype"],
                r["batch"],
                r["T"],
                f"{r['synops'] / r['batch'] / 1e6:.3f} M",
                f"{r['synops_per_spike']:.1f}",
                f"{r['fired_per_step']:.1%}",
                f"{1e3 * r['ms']['full'] / r['batch']:.1f}",
                f"{1e3 * r['ms']['empty'] / r['batch']:.1f}",
                f"{ns['kernel']:.3f}",
                f"{ns['delivery']:.3f}",
                f"{ns['adds only']:.3f}",
                f"{ns['contiguous rows']:.3f}",
                f"{ns['FC kernel']:.3f}",
                f"{r['ns_per_update_no_input']:.2f}",
            ]
        )
    print(
        md_table(
            [
                "state",
                "batch",
                "T",
                "SynOps / sample",
                "per spike",
                "fired / step",
                "us / sample",
                "no input us",
                "ns/SynOp kernel",
                "delivery",
                "adds only",
                "contiguous rows",
                "FC kernel",
                "ns/update no input",
            ],
            table,
        )
    )
    print(
        f"\n{args.layer} {LAYERS[args.layer]}, input rate {rate}; one thread, process CPU, medians of "
        f"{args.repeats}; other processes' CPU {mon.other_cores:.2f} cores"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": results, "other_cpu_cores": mon.other_cores}, f, indent=1)


if __name__ == "__main__":
    main()
