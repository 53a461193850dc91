"""The main job: train the DIGITS-CNN, convert it to an event-driven SNN,
and show accuracy, SynOps and energy against the number of time steps.

1. Train Conv-BN-ReLU-Conv-BN-ReLU-AvgPool-Linear on scikit-learn's bundled
   digits (seeded, 70/30 split; ``shared/BENCHMARKS.md`` DIGITS-CNN).
2. Convert: BatchNorm folded, layers normalised by the 99.99th percentile of
   their activations, IF neurons with reset by subtraction starting at half
   threshold, AvgPool folded into the readout, readout by membrane; the
   image is a constant input multiplied once.
3. Evaluate T in {4, 8, 16, 32, 64} on the 540 test digits: print the table
   and save a plot of accuracy and energy vs T.

Usage: python examples/convert_digits.py [--epochs N] [--out DIR] [--no-progress]
"""

import argparse
import os
from pathlib import Path

import torch

from snn.convert import convert, evaluate
from snn.training import accuracy, digits_cnn, load_digits_split, train


def plot(evaluation, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["T"] for r in evaluation.rows]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(steps, [100 * r["accuracy"] for r in evaluation.rows], "o-", color="C0", label="SNN accuracy")
    ax.axhline(100 * evaluation.ann_accuracy, color="C0", ls="--", lw=1, label="ANN accuracy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)", color="C0")
    twin = ax.twinx()
    twin.plot(steps, [r["energy_pj"] / evaluation.ann_energy_pj for r in evaluation.rows], "s-", color="C3",
              label="SNN energy / ANN energy")
    twin.axhline(1.0, color="C3", ls=":", lw=1)
    twin.set_ylabel("energy relative to the ANN", color="C3")
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.18), fontsize=8)
    ax.set_title("DIGITS-CNN converted to an event-driven SNN")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (60 in BENCHMARKS.md)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--out", default="examples/out", help="where the plot goes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    x_train, y_train, x_test, y_test = load_digits_split()
    model = train(digits_cnn("avg"), x_train, y_train, epochs=args.epochs, progress=not args.no_progress)
    print(f"ANN test accuracy: {accuracy(model, x_test, y_test):.2%} ({args.epochs} epochs)")

    converted = convert(model, x_train, percentile=99.99)
    print(converted.network, "\n")
    evaluation = evaluate(converted, x_test, y_test, args.steps, ann_model=model, progress=not args.no_progress)
    print(evaluation.table())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(evaluation, out / "convert_digits.png")
    print(f"\nplot: {out / 'convert_digits.png'}")
    best = max(r["accuracy"] for r in evaluation.rows)
    assert best >= evaluation.ann_accuracy - 0.02, "the SNN should come close to the ANN"


if __name__ == "__main__":
    main()
