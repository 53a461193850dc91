"""DIGITS-RESNET (shared/BENCHMARKS.md): a residual network trained on the
digits, converted to an event-driven SNN graph, run on the 540 test digits
with direct (constant current) input; against SpikingJelly's figures.

Workload
--------
- ANN: ``snn.convert.training.digits_resnet`` -- stem Conv(1,16,3,p1)-BN-ReLU, block
  A (identity), block B (stride 2, conv1x1-BN shortcut), written as
  torchvision's BasicBlock (``out += identity``, one reused
  ``ReLU(inplace=True)``), AdaptiveAvgPool2d((1, 1)), ``torch.flatten``,
  Linear(32, 10); Adam 1e-3, wd 1e-4, batch 64, 60 epochs, seed 0.
- Conversion: ``snn.convert.convert(model, x_train, percentile=100,
  max_rate=0.8)`` gives a ``ConvertedGraph`` (each residual add: two
  projections into one population): each ReLU's largest activation on the
  training data fires at 0.8 spikes per step (fewer spikes than max-norm,
  so fewer SynOps at every T); then ``snn.convert.calibrate(converted,
  x_train, 16, passes=2)`` corrects the initial membranes layer by layer at
  T = 16 on the training data (Li et al. 2021's potential correction; a
  second pass removes most of the error the first leaves), which recovers
  the accuracy the coarser code loses. ``--percentile``, ``--max-rate``,
  ``--calibrate-at`` and ``--calibrate-passes`` change these
  (``--percentile 99.99 --max-rate 1 --calibrate-at 0``: the plain
  conversion measured before).
- One single-pass ``evaluate`` (one run to the largest T, read at every T):
  accuracy, SynOps and MACs per sample, SynOps / ANN MACs, energy / ANN.
- Then, accuracy first, one conversion per T in ``--tuned-steps`` (default
  4 8 16): ``convert(model, x_train, T=T)`` (each scale the one whose T-step
  code has the least error) calibrated at that T in the same passes, run at
  that T: more accurate at few steps, at higher rates (more SynOps). Each is
  then also calibrated with ``calibrate(..., what="weights")`` at that T on
  the training data (layer-wise weight calibration: each population's
  incoming weights and bias fitted so that its T-step rates, given the SNN's
  own input spikes, match the ANN's activations; the readout's to the
  logits), and, from the same potential correction, with
  ``calibrate(..., what="network")`` (end to end: every population's
  weights and biases fitted jointly, through the spikes, so that the
  readout matches the ANN's logits on the training data; no labels). The
  rows are printed with each calibration's run time (``--no-weights``,
  ``--no-network``: leave those out).
- Then, accuracy and SynOps together, one network per T in
  ``--cost-steps`` (default 4 8 16): the fewest-SynOps conversion above,
  the potential correction at that T, then ``calibrate(..., what="network",
  spike_cost=2)`` at that T (the fit's objective: the readout's squared
  error against the logits plus 2 x the SynOps per ANN MAC, on the training
  digits; ``--spike-cost`` changes it).
- Peer: SpikingJelly 2.0's converter (``99.9%`` mode) on the same
  architecture, measured by whoever wrote BENCHMARKS.md (SpikingJelly is not
  installed here): its accuracy and SynOps/MAC are printed next to ours.

Usage::

    python benchmarks/digits_resnet.py [--epochs N] [--steps 4 8 ...] [--percentile P] [--max-rate R]
        [--calibrate-at T] [--calibrate-passes K] [--tuned-steps T ...] [--no-weights] [--no-network]
        [--cost-steps T ...] [--spike-cost C] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _common import describe_env, environment, md_table, warn_if_busy

from snn.convert import calibrate, convert, evaluate
from snn.convert.training import accuracy, digits_resnet, load_digits_split, train

# BENCHMARKS.md, DIGITS-RESNET: SpikingJelly 2.0 "99.9%" mode (ANN 99.26 %)
SPIKINGJELLY = {4: (0.096, 0.25), 8: (0.185, 0.67), 16: (0.839, 1.52), 32: (0.983, 3.21), 64: (0.994, 6.58)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--percentile", type=float, default=100.0, help="convert's percentile")
    parser.add_argument("--max-rate", type=float, default=0.8, help="convert's max_rate")
    parser.add_argument(
        "--calibrate-at", type=int, default=16, help="calibrate the initial membranes at this T (0: none)"
    )
    parser.add_argument("--calibrate-passes", type=int, default=2, help="calibrate's passes")
    parser.add_argument(
        "--tuned-steps", type=int, nargs="*", default=[4, 8, 16], help="T of the accuracy-first conversions"
    )
    parser.add_argument(
        "--no-weights", action="store_true", help="tuned rows: skip calibrate(..., what='weights')"
    )
    parser.add_argument(
        "--no-network", action="store_true", help="tuned rows: skip calibrate(..., what='network')"
    )
    parser.add_argument(
        "--cost-steps", type=int, nargs="*", default=[4, 8, 16], help="T of the spike-cost conversions"
    )
    parser.add_argument("--spike-cost", type=float, default=2.0, help="their calibrate spike_cost")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args()
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    env = environment()
    print(describe_env(env))
    warn_if_busy()

    x_train, y_train, x_test, y_test = load_digits_split()
    start = time.perf_counter()
    model = train(digits_resnet(), x_train, y_train, epochs=args.epochs, progress=False)
    train_s = time.perf_counter() - start
    ann_acc = accuracy(model, x_test, y_test)
    converted = convert(model, x_train, percentile=args.percentile, max_rate=args.max_rate)
    if args.calibrate_at:
        converted = calibrate(converted, x_train, args.calibrate_at, passes=args.calibrate_passes)
    compile_s = converted.network.prepare()
    print(
        f"ANN accuracy {ann_acc:.2%} ({args.epochs} epochs, {train_s:.0f} s), {converted.ann_total_macs:,} "
        f"MACs per sample; kernels ready in {compile_s:.2f} s; percentile {args.percentile:g}, "
        f"max_rate {args.max_rate:g}"
        + (
            f"; calibrated at T={args.calibrate_at} ({args.calibrate_passes} passes)"
            if args.calibrate_at
            else ""
        )
        + "\n"
    )
    ev = evaluate(converted, x_test, y_test, steps=args.steps, ann_model=model)
    print(ev.table() + "\n")
    record = {"env": env, "ann_accuracy": ann_acc, "epochs": args.epochs, "rows": ev.rows}
    record.update(percentile=args.percentile, max_rate=args.max_rate, calibrate_at=args.calibrate_at)
    record.update(calibrate_passes=args.calibrate_passes)
    rows = []
    for r in ev.rows:
        peer = SPIKINGJELLY.get(r["T"])
        rows.append(
            [
                str(r["T"]),
                f"{r['accuracy']:.2%}",
                f"{(r['accuracy'] - ann_acc) * 100:+.2f}",
                f"{r['synops'] / ev.ann_macs:.2f}",
                f"{peer[0]:.1%}" if peer else "-",
                f"{peer[1]:.2f}" if peer else "-",
            ]
        )
    print(
        md_table(
            [
                "T",
                f"accuracy (ANN {ann_acc:.2%})",
                "pp vs ANN",
                "SynOps/MAC",
                "SpikingJelly acc.",
                "SJ SynOps/MAC",
            ],
            rows,
        )
    )
    print("\n(SpikingJelly: BENCHMARKS.md's measurement, its own trained ANN at 99.26 %)")
    record["tuned"] = tuned_rows(model, ann_acc, args, x_train, x_test, y_test)
    record["spike_cost"] = cost_rows(model, ann_acc, args, x_train, x_test, y_test)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1, default=float)


def tuned_rows(model, ann_acc, args, x_train, x_test, y_test) -> list:
    """The accuracy-first conversions, one per T of ``--tuned-steps``, each
    with the potential correction and then, from it (unless ``--no-weights``
    / ``--no-network``), the layer-wise and the end-to-end weight
    calibrations: printed, and returned."""
    rows, table = [], []
    for T in args.tuned_steps:
        start = time.perf_counter()
        tuned = calibrate(convert(model, x_train, T=T), x_train, T, passes=args.calibrate_passes)
        variants = [("potential", tuned, time.perf_counter() - start)]
        for what, skip in (("weights", args.no_weights), ("network", args.no_network)):
            if not skip:
                start = time.perf_counter()
                fitted = calibrate(tuned, x_train, T, what=what)
                variants.append((f"+ {what}", fitted, time.perf_counter() - start))
        for label, net, seconds in variants:
            ev = evaluate(net, x_test, y_test, steps=[T], ann_model=model)
            row = ev.rows[0]
            ratio = row["synops"] / ev.ann_macs
            rows.append(dict(row, synops_per_mac=ratio, calibration=label, calibration_s=seconds))
            peer = SPIKINGJELLY.get(T)
            table.append(
                [
                    str(T),
                    label,
                    f"{seconds:.1f}",
                    f"{row['accuracy']:.2%}",
                    f"{(row['accuracy'] - ann_acc) * 100:+.2f}",
                    f"{ratio:.2f}",
                    f"{peer[0]:.1%}" if peer else "-",
                    f"{peer[1]:.2f}" if peer else "-",
                ]
            )
    if table:
        print(
            f"\nTuned for each T (convert(..., T=T), calibrated at T: potential in {args.calibrate_passes} "
            "passes, then from it what='weights' or what='network'; s: that calibration's run time), one "
            "conversion per T:\n"
        )
        head = ["T", "calibration", "s", f"accuracy (ANN {ann_acc:.2%})", "pp vs ANN", "SynOps/MAC"]
        print(md_table(head + ["SpikingJelly acc.", "SJ SynOps/MAC"], table))
    return rows


def cost_rows(model, ann_acc, args, x_train, x_test, y_test) -> list:
    """Accuracy and SynOps together, one network per T of ``--cost-steps``:
    the fewest-SynOps conversion, the potential correction at T, then the
    end-to-end fit with ``--spike-cost``: printed, and returned."""
    rows, table = [], []
    converted = convert(model, x_train, percentile=args.percentile, max_rate=args.max_rate)
    for T in args.cost_steps:
        start = time.perf_counter()
        potential = calibrate(converted, x_train, T, passes=args.calibrate_passes)
        net = calibrate(potential, x_train, T, what="network", spike_cost=args.spike_cost)
        seconds = time.perf_counter() - start
        row = evaluate(net, x_test, y_test, steps=[T], ann_model=model).rows[0]
        ratio = row["synops"] / converted.ann_total_macs
        rows.append(dict(row, synops_per_mac=ratio, spike_cost=args.spike_cost, calibration_s=seconds))
        peer = SPIKINGJELLY.get(T)
        table.append(
            [
                str(T),
                f"{seconds:.0f}",
                f"{row['accuracy']:.2%}",
                f"{(row['accuracy'] - ann_acc) * 100:+.2f}",
                f"{ratio:.3f}",
                f"{peer[0]:.1%}" if peer else "-",
                f"{peer[1]:.2f}" if peer else "-",
            ]
        )
    if table:
        print(
            f"\nAccuracy and SynOps together (percentile {args.percentile:g}, max_rate {args.max_rate:g}; "
            f"potential at T; then what='network', spike_cost={args.spike_cost:g}; s: both calibrations):\n"
        )
        head = ["T", "s", f"accuracy (ANN {ann_acc:.2%})", "pp vs ANN", "SynOps/MAC"]
        print(md_table(head + ["SpikingJelly acc.", "SJ SynOps/MAC"], table))
    return rows


if __name__ == "__main__":
    main()
