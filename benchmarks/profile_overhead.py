"""Profiling overhead: time of ``snn.profile(result)`` against the run that
made ``result`` (medians of 7; compile excluded). Target: <= 10 %.

    python benchmarks/profile_overhead.py [FF|DIGITS]
"""

import statistics
import sys
import time

import numpy as np

import snn


def measure(run, repeats=7):
    run()  # warm
    runs, profs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        t1 = time.perf_counter()
        snn.profile(result)
        t2 = time.perf_counter()
        runs.append(t1 - t0)
        profs.append(t2 - t1)
    r, p = statistics.median(runs), statistics.median(profs)
    return r, p


def ff784():
    net = snn.Network(
        [
            snn.Linear(784, 1000, snn.LIF(beta=0.9), seed=0),
            snn.Linear(1000, 1000, snn.LIF(beta=0.9), seed=1),
            snn.Linear(1000, 10, snn.LIF(beta=0.9), seed=2),
        ]
    )
    net.prepare()
    spikes = snn.bernoulli(np.full((16, 784), 0.05), T=100, seed=0)
    return lambda: net.run(spikes)


def digits_cnn():
    import torch

    from snn.convert import convert
    from snn.convert.training import digits_cnn as cnn
    from snn.convert.training import load_digits_split, train

    torch.set_num_threads(2)
    x_train, y_train, x_test, _ = load_digits_split()
    model = train(cnn("avg"), x_train, y_train, epochs=3, progress=False)
    converted = convert(model, x_train)
    converted.network.prepare()
    return lambda: converted.run(x_test, T=32)


def main():
    for name, make in (
        ("FF-784 (784-1000-1000-10 LIF, p=0.05, T=100, B=16)", ff784),
        ("DIGITS-CNN converted (540 test digits, T=32)", digits_cnn),
    ):
        if len(sys.argv) > 1 and sys.argv[1] not in name:
            continue
        r, p = measure(make())
        print(
            f"{name}: run {1e3 * r:.1f} ms, profile {1e3 * p:.2f} ms, "
            f"overhead {100 * p / r:.2f} % (median of 7)"
        )


if __name__ == "__main__":
    main()
