"""End-to-end demo: a ReLU network trained on real data, run as a spiking
network by the event-driven backend, with exact operation counts.

1. Train a small MLP (64-128-10, ReLU) on scikit-learn's bundled digits.
2. Map it to IF neurons (reset by subtraction), scaling each layer by the
   99.9th percentile of its ReLU activations on training data, so that
   firing rates approximate activations; the output layer is read out as
   accumulated membrane (its threshold is set out of reach).
3. Run the test set for several T with the image as a constant input
   (multiplied once, then acting as a bias) and print accuracy, SynOps and
   the share of neuron updates actually performed.

Usage: python examples/quickstart.py [--quick]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import snn


def train_mlp(x_train, y_train):
    mlp = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", max_iter=300, random_state=0)
    return mlp.fit(x_train, y_train)


def to_snn(mlp, x_calib, percentile=99.9):
    """IF network whose hidden rates approximate the MLP's ReLU activations."""
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    hidden = np.maximum(x_calib @ w1 + b1, 0)
    scale = np.percentile(hidden[hidden > 0], percentile)
    return snn.Network(
        [
            snn.Linear(64, 128, snn.IF(threshold=1.0), weight=(w1 / scale).T, bias=b1 / scale, v_init=0.5),
            # readout: accumulate, never spike (threshold out of reach)
            snn.Linear(128, 10, snn.IF(threshold=1e9), weight=w2.T, bias=b2 / scale),
        ]
    )


def main(quick=False):
    digits = load_digits()
    x = digits.data / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=0
    )
    mlp = train_mlp(x_train, y_train)
    ann_acc = mlp.score(x_test, y_test)
    net = to_snn(mlp, x_train)
    compile_s = net.prepare()
    print(net)
    print(f"ANN test accuracy: {ann_acc:.2%}   (kernels compiled/loaded in {compile_s:.2f} s)\n")
    ann_macs = 64 * 128 + 128 * 10
    steps = (8, 32) if quick else (4, 8, 16, 32, 64)
    print(
        f"{'T':>4} {'accuracy':>9} {'SynOps/sample':>14} {'MACs/sample':>12} "
        f"{'updates done':>13} {'ms/sample':>10}"
    )
    for n_steps in steps:
        start = time.perf_counter()
        result = net.run(analog=x_test, T=n_steps)
        elapsed = time.perf_counter() - start
        acc = np.mean(result.membrane.argmax(axis=1) == y_test)
        batch = len(y_test)
        print(
            f"{n_steps:>4} {acc:>9.2%} {result.total('synops') / batch:>14,.0f} "
            f"{result.total('macs') / batch:>12,.0f} "
            f"{result.total('updates') / result.total('dense_updates'):>13.1%} "
            f"{1e3 * elapsed / batch:>10.3f}"
        )
    print(
        f"\nANN: {ann_macs:,} MACs per sample. SynOps: one weight added to one target per spike; "
        "MACs: the analog first layer, multiplied once per sample."
    )
    print("\nPer-layer counts at the last T (whole test set):")
    print(result.table())
    assert acc > ann_acc - 0.05, "the SNN should approach the ANN's accuracy"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer time steps (for tests)")
    main(parser.parse_args().quick)
