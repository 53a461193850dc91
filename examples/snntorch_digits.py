"""Train a small SNN with snnTorch on the digits, then run it event-driven.

1. Train ``Linear(64, 128) -> Leaky -> Linear(128, 10) -> Leaky`` with
   snnTorch (surrogate gradient, spike-count cross-entropy, seeded) on
   scikit-learn's 8x8 digits, fed as a constant current for ``T`` steps.
   The neurons reset to zero (snnTorch's default delayed reset then equals
   ours exactly); snnTorch's default *subtract* reset is delayed past the
   next leak, which our neurons cannot express, and the import refuses it
   (see ``snn.interop.snntorch``).
2. Import it with ``snn.from_snntorch`` and run the test set event-driven.
3. Print both accuracies, the fraction of test digits whose output spike
   trains are identical, and the per-layer SynOps report.

``python examples/snntorch_digits.py`` (under a minute); ``--quick`` for the test suite.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import snntorch as st
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from snntorch import utils
from torch import nn

import snn


def data(seed: int):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    return train_test_split(x, digits.target, test_size=0.3, random_state=seed, stratify=digits.target)


def model(hidden: int) -> nn.Sequential:
    kw = {"beta": 0.9, "threshold": 1.0, "init_hidden": True, "reset_mechanism": "zero"}
    return nn.Sequential(nn.Linear(64, hidden), st.Leaky(**kw), nn.Linear(hidden, 10), st.Leaky(**kw))


def spike_counts(net: nn.Sequential, x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Output spikes ``[T, B, 10]`` for a constant input current ``x``."""
    utils.reset(net)
    out = []
    for _ in range(n_steps):
        h = x
        for m in net:
            h = m(h).to(x.dtype)  # snnTorch emits float32 spikes; keep the run's precision
        out.append(h)
    return torch.stack(out)


def train(net, x, y, n_steps, epochs, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(128):
            loss = nn.functional.cross_entropy(spike_counts(net, xt[idx], n_steps).sum(0), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (test suite)")
    parser.add_argument("--steps", type=int, default=16, help="time steps T")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, hidden = (3, 64) if args.quick else (15, 128)
    torch.manual_seed(args.seed)
    x_train, x_test, y_train, y_test = data(args.seed)

    start = time.perf_counter()
    net = model(hidden)
    train(net, x_train, y_train, args.steps, epochs, args.seed)
    print(f"trained {epochs} epochs in {time.perf_counter() - start:.1f} s")

    net = net.double().eval()  # evaluate both sides in float64
    with torch.no_grad():
        ref = spike_counts(net, torch.tensor(x_test, dtype=torch.float64), args.steps).numpy()
    ours = snn.from_snntorch(net)
    print(ours)
    result = ours.run(analog=x_test.astype(np.float64), T=args.steps)
    spikes = result.spikes(-1)

    acc_ref = np.mean(ref.sum(0).argmax(1) == y_test)
    acc_ours = np.mean(spikes.sum(0).argmax(1) == y_test)
    same = np.mean(np.all(spikes == ref, axis=(0, 2)))
    print(f"snnTorch test accuracy: {100 * acc_ref:.1f}%")
    print(f"event-driven test accuracy: {100 * acc_ours:.1f}%")
    print(f"identical output spike trains: {100 * same:.1f}% of test digits")
    print(result.table())
    assert acc_ours > 0.8 and same > 0.95, (acc_ours, acc_ref, same)


if __name__ == "__main__":
    main()
