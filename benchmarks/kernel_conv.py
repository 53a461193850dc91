"""Convolution delivery throughput of the CONV clock kernel, called directly
(ns per synaptic operation).

Layer: EVENT-DIGITS' second convolution, Conv(16, 32, 3, stride 2, padding
1) on 16 x 16 -> 8 x 8 (``--layer conv2``; ``conv1``: its first,
Conv(2, 16, 5, stride 2, padding 2) on 32 x 32 -> 16 x 16), IF neurons
(threshold 1, reset by subtraction, as converted networks have), T = 300,
``--batch`` samples in one call, one numba thread. Input: a Bernoulli
raster, each input neuron spiking with probability ``--rate`` per step
(default 0.2, the rate of EVENT-DIGITS' first layer), spikes in increasing
index order within a step. Weights normal, scaled so that about 15 % of
the neurons fire per step (the rate of EVENT-DIGITS' second layer).

- ``kernels.conv_layer``: the clock kernel, delivery and sweep; ``no
  input``: the same call on an empty input (the sweep and per-step costs
  alone); ``delivery``: their difference, per synaptic operation.
- ``numba adds only``: an ``@njit`` loop over the same tables
  (``kernels.event.conv_tables``) doing nothing but the additions into a
  channel-last buffer (no sweep, no counts).
- ``contiguous rows``: each input spike adds one contiguous row of the
  same mean length (the synaptic operations per spike) to a buffer, as
  fully connected delivery does: the ceiling of runs that never break.

Times: process CPU time of each call (one thread), median of
``--repeats`` after a warm-up call (compilation excluded); float64 and
float32 state.

Usage::

    flock /tmp/bench.lock python benchmarks/kernel_conv.py [--quick] [--layer conv2] [--json PATH]
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
LAYERS = {"conv1": (2, 32, 32, 16, 5, 5, 2, 2), "conv2": (16, 16, 16, 32, 3, 3, 2, 1)}


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
    v_init = np.full(n, 0.5, dtype)
    state = np.empty((batch, n, 2), dtype)
    out_tptr = np.empty((batch, n_steps + 1), np.int64)
    out_idx = np.empty((batch, n_steps * n), np.int32)
    counts = np.zeros((batch, 4), np.int64)
    tables = conv_tables(geom, weights, dtype)

    def kernel(tp, ix):
        kernels.conv_layer(
            tp, ix, geom, weights, bias, table, thr, neuron.reset_code, v_reset, 0, v_init, False, False,
            False, state, out_tptr, out_idx, counts, clock=True, tables=tables,
        )  # fmt: skip

    empty_tptr = np.zeros_like(tptr)
    empty_idx = np.zeros((batch, 1), np.int32)
    full = time_runs(lambda: kernel(tptr, idx), repeats)
    if (counts[:, 3] != 0).any():
        raise RuntimeError("output buffer overflow")
    synops = int(counts[:, 0].sum())
    fired = float(counts[:, 2].sum()) / (batch * n_steps * n)
    empty = time_runs(lambda: kernel(empty_tptr, empty_idx), repeats)
    acc = np.zeros(n, dtype)
    w_st, pre_rows, flat_runs = tables
    box = {}

    def adds():
        box["runs"] = sum(deliver_runs(tptr[b], idx[b], w_st, pre_rows, flat_runs, acc) for b in range(batch))

    ceiling = time_runs(adds, repeats)
    spikes = int(tptr[:, -1].sum())
    per_spike = max(1, round(synops / spikes))
    rows = np.ascontiguousarray(rng.normal(0, 1, (64, per_spike)).astype(dtype))

    def contiguous():
        box["rows"] = sum(deliver_rows(tptr[b], idx[b], rows, acc) for b in range(batch))

    flat = time_runs(contiguous, repeats)
    assert box["runs"] == synops, (box["runs"], synops)
    ms = {
        k: 1e3 * median(v.cpu)
        for k, v in (("full", full), ("empty", empty), ("adds", ceiling), ("rows", flat))
    }
    return dict(
        layer=layer,
        dtype=np.dtype(dtype).name,
        batch=batch,
        T=n_steps,
        rate=rate,
        input_spikes=spikes,
        synops=synops,
        synops_per_spike=synops / spikes,
        fired_per_step=fired,
        ms=ms,
        ns_per_synop={
            "kernel": 1e6 * ms["full"] / synops,
            "delivery": 1e6 * (ms["full"] - ms["empty"]) / synops,
            "adds only": 1e6 * ms["adds"] / synops,
            "contiguous rows": 1e6 * ms["rows"] / box["rows"],
        },
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", choices=sorted(LAYERS), default="conv2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smoke run: batch 2, 30 steps, 2 repeats")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats = 2, 30, 2
    warn_if_busy()
    env = environment()
    numba.set_num_threads(1)
    print(f"{describe_env(env)}\n", flush=True)
    results = []
    with CpuMonitor() as mon:
        for dtype in (np.float64, np.float32):
            results.append(bench(args.layer, dtype, args.batch, args.steps, args.rate, args.repeats))
    table = []
    for r in results:
        ns = r["ns_per_synop"]
        table.append(
            [
                r["dtype"],
                f"{r['synops'] / r['batch'] / 1e6:.2f} M",
                f"{r['synops_per_spike']:.1f}",
                f"{r['fired_per_step']:.1%}",
                f"{r['ms']['full'] / r['batch']:.2f}",
                f"{r['ms']['empty'] / r['batch']:.2f}",
                f"{ns['kernel']:.3f}",
                f"{ns['delivery']:.3f}",
                f"{ns['adds only']:.3f}",
                f"{ns['contiguous rows']:.3f}",
            ]
        )
    print(
        md_table(
            [
                "state",
                "SynOps / sample",
                "per spike",
                "fired / step",
                "ms / sample",
                "no input ms",
                "ns/SynOp kernel",
                "delivery",
                "adds only",
                "contiguous rows",
            ],
            table,
        )
    )
    print(
        f"\n{args.layer} {LAYERS[args.layer]}, batch {args.batch}, T = {args.steps}, input rate {args.rate}; "
        f"process CPU, medians of {args.repeats}; other processes' CPU {mon.other_cores:.2f} cores"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "results": results, "other_cpu_cores": mon.other_cores}, f, indent=1)


if __name__ == "__main__":
    main()
