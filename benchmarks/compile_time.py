"""Start-up cost: import time of ``snn`` and JIT compile time of a network,
cold (empty numba cache) and cached.

Each measurement runs in a fresh Python subprocess with ``NUMBA_CACHE_DIR``
pointing to a temporary directory that is new for every "cold" trial and
shared by the "cached" trials that follow it (so the kernels' own
``__pycache__`` is neither used nor touched). The child process times:

- ``import numpy``, ``import numba``, then ``import snn`` (each on top of the
  previous, so the ``snn`` figure is what the package adds);
- ``net.prepare()`` of a small 2-layer LIF network (100 -> 50 -> 10,
  float64 state): compiles, or loads from the cache, every kernel the
  network can use (event and dense paths);
- the first ``net.run`` after ``prepare`` (should be compile-free);
- ``prepare()`` of a second network with float32 state in the same process
  (new type specialisations of the same kernels).

Usage::

    python benchmarks/compile_time.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import ROOT, CpuMonitor, describe_env, environment, md_table, median, warn_if_busy

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
import snn
t3 = time.perf_counter()

def network(dtype):
    return snn.Network([snn.Linear(100, 50, snn.LIF(beta=0.9), seed=0),
                        snn.Linear(50, 10, snn.LIF(beta=0.9), seed=1)], dtype=dtype)

net = network(np.float64)
prepare = net.prepare()
x = snn.bernoulli(np.full((4, 100), 0.1), 20, seed=0)
t4 = time.perf_counter()
net.run(x)
first_run = time.perf_counter() - t4
t5 = time.perf_counter()
net.run(x)
second_run = time.perf_counter() - t5
prepare32 = network(np.float32).prepare()
print(json.dumps(dict(import_numpy=t1 - t0, import_numba=t2 - t1, import_snn=t3 - t2,
                      prepare=prepare, first_run=first_run, second_run=second_run,
                      prepare_float32=prepare32, threading_layer=numba.threading_layer())))
"""


def child(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one cold and one cached trial")
    ap.add_argument("--cold", type=int, default=2, help="cold trials (each with a new cache dir)")
    ap.add_argument("--cached", type=int, default=3, help="cached trials after each cold one")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    n_cold, n_cached = (1, 1) if args.quick else (args.cold, args.cached)
    warn_if_busy()
    env = environment()
    print(
        f"compile time: fresh subprocess per trial, NUMBA_CACHE_DIR = new temp dir per cold trial\n"
        f"{describe_env(env)}\n",
        flush=True,
    )
    trials = {"cold": [], "cached": []}
    mon = CpuMonitor().__enter__()
    for _ in range(n_cold):
        with tempfile.TemporaryDirectory(prefix="snn_numba_cache_") as cache:
            trials["cold"].append(child(cache))
            for _ in range(n_cached):
                trials["cached"].append(child(cache))
            n_files = sum(len(files) for _, _, files in os.walk(cache))
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache) for f in files)
            trials.setdefault("cache_files", []).append({"files": n_files, "bytes": size})
        print(f"  cold trial done: prepare {trials['cold'][-1]['prepare']:.2f} s", flush=True)

    mon.__exit__(None, None, None)
    trials["other_cpu_cores"] = mon.other_cores
    keys = [
        ("import_numpy", "import numpy"),
        ("import_numba", "+ import numba"),
        ("import_snn", "+ import snn"),
        ("prepare", "net.prepare() (float64)"),
        ("first_run", "first net.run after prepare"),
        ("second_run", "second net.run"),
        ("prepare_float32", "+ prepare() of a float32 network"),
    ]
    rows = []
    for key, label in keys:
        cells = [label]
        for kind in ("cold", "cached"):
            vals = [t[key] for t in trials[kind]]
            cells.append(
                f"{median(vals):.3f}" + (f" ({min(vals):.3f}-{max(vals):.3f})" if len(vals) > 1 else "")
            )
        rows.append(cells)
    print()
    print(
        md_table(
            [
                "step",
                f"cold cache, s (median of {n_cold}, min-max)",
                f"cached, s (median of {len(trials['cached'])}, min-max)",
            ],
            rows,
        )
    )
    cf = trials["cache_files"][-1]
    print(
        f"\nnumba cache after a cold run: {cf['files']} files, {cf['bytes'] / 2**20:.1f} MiB; "
        f"threading layer: {trials['cold'][-1]['threading_layer']}; other processes used "
        f"{mon.other_cores:.2f} cores on average meanwhile (/proc/stat; ~0 = quiet machine)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "compile_time", "env": env, "trials": trials}, f, indent=1)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
