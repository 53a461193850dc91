"""RESNET18-32 (shared/BENCHMARKS.md): ResNet-18 with random weights,
converted to an event-driven SNN graph, run on 3x32x32 smoothed noise;
readout error against the ANN, SynOps/MAC, and ms per sample against the
same converted network run clock-driven in snnTorch, one thread, same run.

Workload
--------
- ANN: ``snn.convert.training.ResNet18(num_classes=10)`` (torchvision's resnet18,
  defined locally: torchvision does not import here), weights from
  ``torch.manual_seed(0)``, BN statistics from 20 forward passes in train
  mode over the calibration images, then ``eval()``.
- Images: Gaussian noise (``numpy.random.default_rng``, seed 0 for the 256
  calibration images, seed 1 for the 64 test images) smoothed by a 5x5 box
  filter (a valid 5x5 mean over a 36x36 field, so no edge effects).
- Conversion: ``snn.convert.convert(model, x_calib)``; the stem's
  ``MaxPool2d(3, 2, 1)`` becomes a spiking max-pool gate when the converter
  accepts it, otherwise the script falls back to ``maxpool="avg"`` (an
  average pool of the same window) and says so: ``maxpool`` in the output
  and the JSON is ``"gate"`` or ``"avg"``. The ANN the readout is compared
  with is the one converted (with ``"avg"``: the model with its MaxPool2d
  replaced by AvgPool2d of the same geometry).
- Accuracy of the readout: relative error ``||snn - ann|| / ||ann||`` over
  the test set, ``snn`` = readout membrane after T steps / T (one run per T,
  ``converted.run(x, T)``), ``ann`` = the ANN's logits; with random weights
  the ANN's decisions are near-ties, so decision agreement is not reported.
  SynOps per sample (counted by the kernels) / ANN MACs per sample.
- Speed, T = 32, one thread (``n_threads=1``, ``torch.set_num_threads(1)``):
  batch 1 (``--batch1`` test images run one at a time per timed call) and
  batch 32 (one call), median of ``--repeats`` calls after a warm-up call,
  ours and snnTorch interleaved (``_common.time_interleaved``); compile time
  apart (``Graph.prepare``). Each call includes the analog input's constant
  drive (``drive_currents``), for both.
- Peer: the converted graph walked by a torch module (:class:`SnnTorchPeer`):
  populations in topological order, every zero-delay projection read in the
  same step, ``torch.nn.functional.conv2d`` for convolutions, the fastest of
  dense / ``torch.sparse`` CSR / elementwise (a diagonal: the residual
  identity) for CSR projections (timed at setup for each batch size),
  ``snntorch.Leaky(beta=1, threshold, reset_mechanism="subtract")`` neurons
  with our biases and initial membranes, the readout (infinite threshold)
  summing its input, a max-pool gate (if any) as ``kernels.pool``'s rule;
  float32, ``torch.inference_mode()``. Its readout and spike counts are
  checked against ours before it is timed, and those of the same peer in
  float64 (ours' arithmetic: its spikes should equal ours, bar a membrane
  exactly at threshold, where snnTorch fires on ``>`` and we on ``>=``).
  torch's thread count is set at every peer call: numba's ``omp``
  threading layer shares the OpenMP runtime with torch, so a parallel run
  of ours leaves torch on numba's thread count.

Usage::

    python benchmarks/resnet18.py [--quick] [--json PATH] [--steps 32 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import numpy as np
from _common import (
    CpuMonitor,
    describe_env,
    environment,
    loadavg,
    md_table,
    median,
    time_interleaved,
    warn_if_busy,
)

from snn.convert import ConversionError, convert
from snn.convert.graph import _max_as_avg, drive_currents
from snn.convert.training import ResNet18

TARGETS = {1: 5.0, 32: 2.0}  # the issue: ours >= 5x faster than snnTorch at batch 1, >= 2x at batch 32
# BENCHMARKS.md, RESNET18-32 (one thread, T = 32), measured by whoever wrote it
BENCHMARKS_MD = {
    "snntorch_ms": {1: 248.0, 32: 43.6},
    "spikingjelly_ms": {1: 283.0, 32: 40.2},
    "synops_mac": 2.98,
}


def images(n: int, seed: int) -> np.ndarray:
    """``[n, 3, 32, 32]`` float32: Gaussian noise smoothed by a 5x5 box filter."""
    import torch
    import torch.nn.functional as F

    noise = np.random.default_rng(seed).standard_normal((n, 3, 36, 36)).astype(np.float32)
    return F.avg_pool2d(torch.from_numpy(noise), 5, stride=1).numpy()


def resnet18(x_calib: np.ndarray):
    """The RESNET18-32 model: seeded weights, BN statistics from 20 forward
    passes in train mode over ``x_calib``, eval mode."""
    import torch

    torch.manual_seed(0)
    model = ResNet18(num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(20):
            model(torch.from_numpy(x_calib))
    return model.eval()


def convert_resnet(model, x_calib, dtype=np.float64):
    """``(converted, maxpool, note)``: the real max-pool if the converter takes it, else ``"avg"``."""
    try:
        converted = convert(model, x_calib, dtype=dtype)
    except ConversionError as exc:
        if "max" not in str(exc).lower():
            raise
        return convert(model, x_calib, dtype=dtype, maxpool="avg"), "avg", str(exc)
    gates = [p.name for p in converted.network.populations if getattr(p, "pool", None) is not None]
    if not gates:
        return converted, "max (no gate population found)", "convert(model, x) accepted the MaxPool2d"
    return converted, "gate", f"spiking max-pool gate(s): {', '.join(gates)}"


# -- the peer: the converted graph, clock-driven in snnTorch ---------------------------------------


def _topological(net) -> list:
    """Non-input populations, every zero-delay projection going forward."""
    incoming = {p.name: [] for p in net.populations}
    for proj in net.projections:
        if any(d != 0 for d in proj.delays):
            raise ValueError(f"{proj.name}: the peer handles zero-delay projections only")
        incoming[proj.target.name].append(proj)
    order, done = [], set()
    pending = [p for p in net.populations if not p.is_input]
    done.update(p.name for p in net.populations if p.is_input)
    while pending:
        ready = [p for p in pending if all(q.source.name in done for q in incoming[p.name])]
        if not ready:
            raise ValueError("zero-delay projections form a cycle")
        for p in ready:
            order.append(p)
            done.add(p.name)
        pending = [p for p in pending if p.name not in done]
    return [(p, incoming[p.name]) for p in order]


def _csr_candidates(proj, torch, dtype):
    """``{name: fn(spikes [B, n_src]) -> [B, n_tgt]}`` for a CSR projection."""
    n_src, n_tgt = proj.source.n, proj.target.n
    ((_, rowptr, cols, weights),) = proj.groups
    w = np.full(len(cols), proj.weight, dtype) if weights is None else np.asarray(weights, dtype)
    rows = np.repeat(np.arange(n_src), np.diff(rowptr))
    dense = np.zeros((n_tgt, n_src), dtype)
    np.add.at(dense, (np.asarray(cols, np.int64), rows), w)
    dense_t = torch.from_numpy(dense)
    index = torch.from_numpy(np.stack([np.asarray(cols, np.int64), rows]))
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(index, torch.from_numpy(w), (n_tgt, n_src), check_invariants=True)
        sparse_t = coo.coalesce().to_sparse_csr()
    out = {
        "dense": lambda s: s @ dense_t.T,
        "sparse": lambda s: torch.sparse.mm(sparse_t, s.T).T,
    }
    if (
        n_src == n_tgt
        and np.array_equal(rowptr, np.arange(n_src + 1))
        and np.array_equal(cols, np.arange(n_src))
    ):
        scale = torch.from_numpy(w)  # a diagonal (the residual identity): elementwise
        out["elementwise"] = lambda s: s * scale
    return out


class SnnTorchPeer:
    """The converted graph run clock-driven with ``snntorch.Leaky`` neurons.

    ``peer(x, T)`` -> readout membrane after ``T`` steps ``[B, n_out]``
    (a tensor of ``dtype``, numpy's name: float32 is snnTorch's usual
    precision and the timed one); ``peer.spike_totals`` per population (when
    ``count=True``). CSR projections take the fastest of the candidates
    timed by :meth:`choose` for a batch size (``choice[batch]``)."""

    def __init__(self, converted, threads: int = 1, dtype=np.float32):
        import snntorch
        import torch

        self.torch, self.converted, self.threads, self.dtype = torch, converted, threads, np.dtype(dtype)
        dtype = self.dtype
        net = converted.network
        self.steps = []
        self.csr = {}
        self.choice = {}
        for pop, projs in _topological(net):
            shape = pop.shape if pop.shape is not None else (pop.n,)
            ops = []
            for proj in projs:
                if proj.kind == "conv":
                    g = [int(v) for v in proj.geom]
                    kernel = torch.from_numpy(np.array(proj.kernel, dtype))
                    ops.append(("conv", proj.source.name, (kernel, g[8:10], g[10:12], g[12:14], g[14])))
                elif proj.kind == "csr":
                    self.csr[proj.name] = _csr_candidates(proj, torch, dtype)
                    ops.append(("csr", proj.source.name, proj.name))
                elif proj.kind == "maxpool":
                    ops.append(("maxpool", proj.source.name, pop.pool))
                else:
                    raise ValueError(f"{proj.name}: projection kind {proj.kind!r} not handled by the peer")
            if pop.neuron is None:  # a max-pool gate
                self.steps.append((pop.name, shape, "gate", ops, None, None, None))
                continue
            nrn = pop.neuron
            if nrn.beta != 1.0 or nrn.alpha is not None or nrn.refractory:
                raise ValueError(f"{pop.name}: {nrn} is not an IF neuron")
            bias = torch.from_numpy(np.array(pop.bias, dtype).reshape(shape))
            v0 = torch.from_numpy(np.array(pop.v_init, dtype).reshape(shape))
            if math.isinf(nrn.threshold):  # the readout: never fires, sums its input
                self.steps.append((pop.name, shape, "readout", ops, bias, v0, None))
                continue
            if nrn.reset != "subtract":
                raise ValueError(f"{pop.name}: reset {nrn.reset!r}, the peer expects 'subtract'")
            leaky = snntorch.Leaky(
                beta=1.0, threshold=float(nrn.threshold), reset_mechanism="subtract", init_hidden=False
            )
            self.steps.append((pop.name, shape, "leaky", ops, bias, v0, leaky))
        self.readout = converted.readout
        self.spike_totals = {}

    def choose(self, batch: int, rate: float = 0.2, calls: int = 30) -> dict:
        """Time each CSR projection's candidates on random spikes of ``batch``
        samples (``rate`` per neuron); keep the fastest for that batch."""
        torch = self.torch
        torch.set_num_threads(self.threads)
        gen = torch.Generator().manual_seed(0)
        picked = {}
        with torch.inference_mode():
            for name, cands in self.csr.items():
                n_src = next(p for p in self.converted.network.projections if p.name == name).source.n
                s = (torch.rand((batch, n_src), generator=gen) < rate).to(getattr(torch, self.dtype.name))
                best = None
                for kind, fn in cands.items():
                    fn(s)
                    start = time.perf_counter()
                    for _ in range(calls):
                        fn(s)
                    sec = (time.perf_counter() - start) / calls
                    if best is None or sec < best[1]:
                        best = (kind, sec)
                picked[name] = best[0]
        self.choice[batch] = picked
        return picked

    def _apply(self, op, spikes, batch, picked):
        F = self.torch.nn.functional
        kind, src, arg = op
        s = spikes[src]
        if kind == "conv":
            kernel, stride, padding, dilation, groups = arg
            return F.conv2d(s, kernel, None, stride, padding, dilation, groups)
        return self.csr[arg][picked[arg]](s.reshape(batch, -1))

    def __call__(self, x: np.ndarray, n_steps: int, count: bool = False):
        torch = self.torch
        F = torch.nn.functional
        batch = len(x)
        # numba's "omp" threading layer shares the OpenMP runtime with torch: a parallel run of ours
        # leaves torch on numba's thread count, so the peer's threads are set at every call
        torch.set_num_threads(self.threads)
        picked = self.choice.get(batch) or self.choose(batch)
        with torch.inference_mode():
            currents, _ = drive_currents(
                self.converted.drives, self.converted.input_shape, np.asarray(x, np.float64)
            )
            const, mems, gates = {}, {}, {}
            for name, shape, kind, _, bias, v0, _ in self.steps:
                if kind == "gate":
                    continue
                c = bias.expand(batch, *shape)
                if name in currents:
                    c = c + torch.from_numpy(currents[name].astype(self.dtype)).reshape(batch, *shape)
                const[name] = c.contiguous()
                mems[name] = v0.expand(batch, *shape).clone()
            totals = {name: 0.0 for name, *_ in self.steps}
            cast = None if self.dtype == np.float32 else getattr(torch, self.dtype.name)
            spikes = {}
            for _ in range(n_steps):
                for name, shape, kind, ops, _, _, leaky in self.steps:
                    if kind == "gate":
                        ((_, src, pool),) = ops
                        s = spikes[src]
                        k, st, pd = pool.kernel_size, pool.stride, pool.padding
                        if name not in gates:  # per input: spike count; per window: highest count so far
                            gates[name] = (torch.zeros_like(s), torch.zeros(batch, *shape, dtype=s.dtype))
                        counts, wmax = gates[name]
                        counts = counts + s
                        m = F.max_pool2d(s * counts, k, st, pd)  # highest count among this step's spikers
                        spikes[name] = (m > wmax).to(s.dtype)  # the window's highest count rises
                        gates[name] = (counts, torch.maximum(wmax, m))
                    else:
                        current = const[name]
                        for op in ops:
                            current = current + self._apply(op, spikes, batch, picked).reshape(batch, *shape)
                        if kind == "readout":
                            mems[name] += current
                            continue
                        spikes[name], mems[name] = leaky(current, mems[name])
                        if cast is not None:  # snnTorch's spikes are float32 whatever the input
                            spikes[name] = spikes[name].to(cast)
                    if count:
                        totals[name] += float(spikes[name].sum())
            if count:
                self.spike_totals = totals
            return mems[self.readout].reshape(batch, -1)


# -- reporting -------------------------------------------------------------------------------------


def schedule_rows(converted, results) -> list:
    """Our schedule of a run recording the readout: one row per stage, with
    the path each of ``results`` took for its populations."""
    net = converted.network
    modes = [{c.name: c.mode for c in result.counts} for result in results]
    rows = []
    for k, stage in enumerate(net.schedule([converted.readout])):
        names = stage.names
        if stage.layer is not None:
            how = "layer (all steps)" if len(stage.inputs) < 2 else "merge layer (all steps)"
            src = ", ".join(sorted({source.name for source, _ in stage.inputs})) or "drive only"
        else:
            how = "stepped"
            src = ", ".join(
                sorted({p.source.name for p in net.projections if p.target.name in names}) or ["drive only"]
            )
        paths = [", ".join(m.get(n, "?") for n in names) for m in modes]
        rows.append([k, ", ".join(names), how, src, *paths])
    return rows


def rel_error(snn_out: np.ndarray, ann_out: np.ndarray) -> float:
    return float(np.linalg.norm(snn_out - ann_out) / np.linalg.norm(ann_out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 128], help="T for the readout error")
    parser.add_argument("--speed-steps", type=int, default=32, help="T of the timed runs")
    parser.add_argument("--batch", type=int, default=32, help="the large batch timed")
    parser.add_argument("--batch1", type=int, default=8, help="test images run one at a time per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per batch size (>= 3)")
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64", help="our precision (convert's dtype)"
    )
    parser.add_argument("--quick", action="store_true", help="T=8, 4 test images, batch 4, 3 repeats")
    parser.add_argument("--json", default=None, help="write every figure and run time here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.speed_steps, args.batch, args.batch1, args.repeats, args.n_test = [8], 8, 4, 2, 3, 4
    import snntorch
    import torch

    torch.set_num_threads(1)
    env = environment()
    env.update(torch=torch.__version__, snntorch=snntorch.__version__)
    print(describe_env(env))
    warn_if_busy()
    wall0 = time.perf_counter()

    x_calib, x_test = images(256, 0), images(args.n_test, 1)
    start = time.perf_counter()
    model = resnet18(x_calib)
    converted, maxpool, note = convert_resnet(model, x_calib, np.dtype(args.dtype))
    convert_s = time.perf_counter() - start
    net = converted.network
    ann = _max_as_avg(model) if maxpool == "avg" else model
    with torch.no_grad():
        ann_out = ann(torch.from_numpy(x_test)).numpy().astype(np.float64)
    compile_s = net.prepare()
    ann_macs = converted.ann_total_macs
    if maxpool == "avg":
        print(
            "!!! MAXPOOL: the converter refused the stem's MaxPool2d(3, 2, 1); this run converts it as "
            "AvgPool2d(3, 2, 1) (convert(..., maxpool='avg')) and compares with the ANN changed the same "
            f"way. Figures are NOT those of the real ResNet-18 max-pool. Converter said: {note}\n"
        )
    else:
        print(f"maxpool: {maxpool} ({note})\n")
    print(
        f"ResNet-18, 3x32x32, {ann_macs:,} ANN MACs per sample; {net.n_neurons:,} neurons, "
        f"{net.n_synapses:,} synapses; model and conversion {convert_s:.1f} s; kernels ready in "
        f"{compile_s:.2f} s (Graph.prepare, cold or from numba's cache); torch threads 1\n"
    )

    # readout error and SynOps per T (threads: all cores, not timed)
    record = {
        "env": env,
        "maxpool": maxpool,
        "maxpool_note": note,
        "dtype": args.dtype,
        "ann_macs": ann_macs,
        "convert_s": convert_s,
        "compile_s": compile_s,
        "n_test": len(x_test),
        "steps": {},
    }
    err_rows = []
    for n_steps in args.steps:
        result = converted.run(x_test, n_steps)
        snn_out = result.membrane / n_steps
        synops = result.total("synops") / len(x_test)
        spikes = sum(c.total("spikes") for c in result.counts) / len(x_test)
        err = rel_error(snn_out, ann_out)
        record["steps"][n_steps] = {"rel_error": err, "synops": synops, "spikes": spikes}
        err_rows.append(
            [n_steps, f"{err:.4f}", f"{synops:,.0f}", f"{synops / ann_macs:.2f}", f"{spikes:,.0f}"]
        )
    print(
        md_table(
            ["T", "readout rel. error", "SynOps/sample", "SynOps/MAC", "spikes/sample"],
            err_rows,
        )
    )
    print(
        f"\nrelative error ||membrane/T - ANN logits|| / ||ANN logits|| over {len(x_test)} test images; "
        f"ANN: {'the model with AvgPool2d(3, 2, 1) for its MaxPool2d' if maxpool == 'avg' else 'the model'}"
        f". BENCHMARKS.md: SynOps/MAC {BENCHMARKS_MD['synops_mac']} (T = 32).\n"
    )

    # the peer, checked
    T = args.speed_steps
    peer = SnnTorchPeer(converted)
    xb, x1 = x_test[: args.batch], [x_test[i : i + 1] for i in range(args.batch1)]
    for b in (1, len(xb)):
        peer.choose(b)
    ours = converted.run(xb, T, n_threads=1)
    ours_spikes = {c.name: int(c.total("spikes")) for c in ours.counts}
    exact = SnnTorchPeer(converted, dtype=np.float64)  # the same arithmetic as ours: a check, not timed
    spike_rows = [[name, f"{o:,}"] for name, o in ours_spikes.items() if name != converted.readout]
    check = {"T": T, "batch": len(xb), "readout_max_abs": float(np.abs(ours.membrane).max())}
    notes = []
    for label, p in (("float64", exact), ("float32", peer)):
        theirs = p(xb, T, count=True).numpy().astype(np.float64)
        totals = {k: int(v) for k, v in p.spike_totals.items()}
        for row in spike_rows:
            row.append(f"{totals[row[0]]:,} ({totals[row[0]] - ours_spikes[row[0]]:+,})")
        o_all, t_all = sum(ours_spikes.values()), sum(totals.values())
        check[label] = {
            "readout_max_abs_diff": float(np.abs(ours.membrane - theirs).max()),
            "readout_rel_diff": rel_error(theirs, ours.membrane),
            "spikes_ours": o_all,
            "spikes_snntorch": t_all,
            "per_population": totals,
        }
        notes.append(
            f"snnTorch {label}: spikes {t_all:,} against our {o_all:,} "
            f"({(t_all - o_all) / max(o_all, 1):+.4%}), "
            f"readout max |ours - snnTorch| = {check[label]['readout_max_abs_diff']:.3g} (relative "
            f"{check[label]['readout_rel_diff']:.2e})"
        )
    check["csr_choice"] = {str(b): c for b, c in peer.choice.items()}
    record["peer_check"] = check
    print(
        md_table(
            ["population", "spikes (ours)", "snnTorch float64 (diff.)", "snnTorch float32, timed (diff.)"],
            spike_rows,
        )
    )
    print(
        f"\npeer check, T = {T}, {len(xb)} test images, ours {np.dtype(net.dtype).name}; largest |readout "
        f"membrane| {check['readout_max_abs']:.3g}; " + "; ".join(notes) + ". Ours fires at v >= threshold, "
        "snnTorch at v > threshold; in float32 a few near-threshold neurons flip and the flips propagate "
        "through the residual stages."
    )
    print(
        "snnTorch's CSR projections (fastest at setup, per batch): "
        + "; ".join(f"batch {b}: " + ", ".join(sorted(set(c.values()))) for b, c in peer.choice.items())
        + "\n"
    )

    # schedule
    one = converted.run(x1[0], T, n_threads=1)
    sched = schedule_rows(converted, [one, ours])
    print(
        md_table(
            ["stage", "population(s)", "how", "input from", "path (batch 1)", f"path (batch {len(xb)})"],
            sched,
        )
    )
    print(
        "\nour schedule of a run recording the readout (net.schedule([readout])): 'layer' stages run one "
        "population over all steps from its one source, 'merge layer' ones from several (each "
        "projection's spikes delivered into the currents of every step, then a clock sweep); 'stepped' "
        "ones step by step; path: what ran in "
        f"a T = {T} run at each batch size (n_threads=1).\n"
    )
    record["schedule"] = sched

    # speed
    speed_rows = []
    record["speed"] = {}
    for batch in (1, len(xb)):
        if batch == 1:

            def ours_fn():
                for x in x1:
                    converted.run(x, T, n_threads=1)

            def theirs_fn():
                for x in x1:
                    peer(x, T)

            per_call = len(x1)
        else:

            def ours_fn():
                converted.run(xb, T, n_threads=1)

            def theirs_fn():
                peer(xb, T)

            per_call = len(xb)
        with CpuMonitor() as cpu:
            times = time_interleaved({"ours": ours_fn, "snntorch": theirs_fn}, repeats=args.repeats)
        ms = {k: 1e3 * median(v) / per_call for k, v in times.items()}
        cpu_ms = {k: 1e3 * median(v.cpu) / per_call for k, v in times.items()}
        ratio = ms["snntorch"] / ms["ours"]
        target = TARGETS.get(batch if batch == 1 else 32)
        met = "met" if ratio >= target else "missed"
        record["speed"][batch] = {
            "ms_per_sample": ms,
            "cpu_ms_per_sample": cpu_ms,
            "speedup": ratio,
            "target": target,
            "met": met,
            "samples_per_call": per_call,
            "runs_s": {k: list(v) for k, v in times.items()},
            "other_procs_cores": cpu.other_cores,
        }
        bm = BENCHMARKS_MD["snntorch_ms"].get(batch)
        speed_rows.append(
            [
                batch,
                f"{ms['ours']:.2f}",
                f"{cpu_ms['ours']:.2f}",
                f"{ms['snntorch']:.2f}",
                f"{cpu_ms['snntorch']:.2f}",
                f"{ratio:.2f}x",
                f">= {target:g}x",
                met,
                "-" if bm is None else f"{bm:g}",
                f"{cpu.other_cores:.2f}",
            ]
        )
        print(f"batch {batch} timed", flush=True)
    print()
    print(
        md_table(
            [
                "batch",
                "ours ms/sample",
                "ours CPU ms",
                "snnTorch ms/sample",
                "snnTorch CPU ms",
                "speed-up",
                "target",
                "",
                "snnTorch (BENCHMARKS.md)",
                "other procs' CPU",
            ],
            speed_rows,
        )
    )
    print(
        f"\nT = {T}, one thread each; batch 1: {len(x1)} images one at a time per call; batch "
        f"{len(xb)}: one call; medians of {args.repeats} calls after one warm-up, ours and snnTorch "
        "interleaved; speed-up = snnTorch / ours (wall); CPU ms: this process's CPU time per sample. "
        f"maxpool: {maxpool}. other procs' CPU: cores used by other processes meanwhile (the machine is "
        "shared; well above 0 means inflated times)."
    )
    wall = time.perf_counter() - wall0
    record["wall_s"] = wall
    record["loadavg_1min_at_end"] = loadavg()
    print(
        f"\nscript wall time {wall:.0f} s; 1-min load average at the end {record['loadavg_1min_at_end']:.2f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=float)


if __name__ == "__main__":
    main()
