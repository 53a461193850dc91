"""Start-up cost: import time of ``snn`` and JIT compile time of a network,
cold (empty numba cache) and cached.

Each measurement runs in a fresh Python subprocess with ``NUMBA_CACHE_DIR``
pointing to a temporary directory that is new for every "cold" trial and
shared by the "cached" trials that follow it (so the kernels' own
``__pycache__`` is neither used nor touched). Two networks:

- ``small``: a 2-layer LIF network (100 -> 50 -> 10, float64 state);
- ``digits``: the README main job's network, a converted DIGITS-CNN
  (Conv2d 1->16 and 16->32 3x3 on 8x8 with IF neurons, reset by
  subtraction, then the readout Linear 2048 -> 10 with IF neurons of
  infinite threshold; float64 state). Same layers, neuron models and sizes
  as ``snn.convert`` builds, random weights (no torch, no training): the
  kernels compiled are the same;
- ``brunel``: the BRUNEL-100 graph (``snn.models.brunel``) at N = 100,
  float64 state: recurrent, so its populations are stepped together by the
  graph kernel (clock-driven under their Poisson background).

The child process times:

- ``import numpy``, ``import numba``, then ``import snn`` (each on top of the
  previous, so the ``snn`` figure is what the package adds);
- ``net.prepare()``: compiles, or loads from the cache, every kernel the
  network's layers can use (each layer's paths, a constant analog input);
  a cold stack shares the compiling with a forked process
  (``kernels.precompile``; ``SNN_FORK_COMPILE=0``: not), whose CPU time is
  reported beside this process's; it also counts the kernel
  specialisations in memory afterwards (numba overloads of the dispatchers
  of ``snn_kernels``) and how many of them were compiled rather than loaded
  (deterministic, unlike the seconds, for a given ``SNN_FORK_COMPILE``:
  what the forked process compiled this one loads, and the helpers only it
  compiled are not in this one's memory);
- the first ``net.run`` after ``prepare`` on a batch of 4 samples (should be
  compile-free) and a second one;
- ``prepare()`` of the same network with float32 state in the same process
  (new type specialisations of the same kernels).

Usage::

    python benchmarks/compile_time.py [--quick] [--network small|digits|brunel|all] [--json PATH]
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
import gc, json, math, resource, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
import snn
t3 = time.perf_counter()
from numba.core.registry import CPUDispatcher

def network(name, dtype):
    if name == "brunel":
        return snn.models.brunel(100, seed=0, dtype=dtype)
    if name == "small":
        return snn.Network([snn.Linear(100, 50, snn.LIF(beta=0.9), seed=0),
                            snn.Linear(50, 10, snn.LIF(beta=0.9), seed=1)], dtype=dtype)
    return snn.Network([  # the converted DIGITS-CNN of examples/convert_digits.py
        snn.Conv2d((1, 8, 8), 16, 3, snn.IF(), padding=1, v_init=0.5, seed=0),
        snn.Conv2d((16, 8, 8), 32, 3, snn.IF(), padding=1, v_init=0.5, seed=1),
        snn.Linear(2048, 10, snn.IF(threshold=math.inf), seed=2)], dtype=dtype)

def specialisations():
    total = compiled = 0
    for obj in gc.get_objects():
        if isinstance(obj, CPUDispatcher) and obj.py_func.__module__.startswith("snn_kernels"):
            total += len(obj.overloads)
            compiled += sum(obj.stats.cache_misses.values())
    return total, compiled

def child_cpu():
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime

name = sys.argv[1]
net = network(name, np.float64)
cpu, forked = time.process_time(), child_cpu()
prepare = net.prepare()
cpu, forked = time.process_time() - cpu, child_cpu() - forked
n_specs, n_compiled = specialisations()
if name == "small":
    run = lambda: net.run(snn.bernoulli(np.full((4, 100), 0.1), 20, seed=0))
elif name == "brunel":
    run = lambda: net.run(20, batch_size=4, progress=False)
else:
    x = np.random.default_rng(0).random((4, 64))
    run = lambda: net.run(analog=x, T=16)
t4 = time.perf_counter()
run()
first_run = time.perf_counter() - t4
t5 = time.perf_counter()
run()
second_run = time.perf_counter() - t5
specs_after_runs = specialisations()[0]
prepare32 = network(name, np.float32).prepare()
print(json.dumps(dict(import_numpy=t1 - t0, import_numba=t2 - t1, import_snn=t3 - t2,
                      prepare=prepare, prepare_cpu=cpu, prepare_child_cpu=forked,
                      specialisations=n_specs, compiled=n_compiled,
                      specialisations_after_runs=specs_after_runs,
                      first_run=first_run, second_run=second_run,
                      prepare_float32=prepare32, specialisations_float32=specialisations()[0])))
"""

NETWORKS = ("small", "digits", "brunel")


def child(network: str, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, network],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cells(trials, key):
    vals = [t[key] for t in trials]
    if not vals:
        return "-"
    return f"{median(vals):.3f}" + (f" ({min(vals):.3f}-{max(vals):.3f})" if len(vals) > 1 else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one cold and one cached trial per network")
    ap.add_argument("--cold", type=int, default=2, help="cold trials (each with a new cache dir)")
    ap.add_argument("--cached", type=int, default=3, help="cached trials after each cold one")
    ap.add_argument("--network", choices=(*NETWORKS, "all"), default="all")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    n_cold, n_cached = (1, 1) if args.quick else (args.cold, args.cached)
    networks = NETWORKS if args.network == "all" else (args.network,)
    warn_if_busy()
    env = environment()
    print(
        f"compile time: fresh subprocess per trial, NUMBA_CACHE_DIR = new temp dir per cold trial\n"
        f"{describe_env(env)}\n",
        flush=True,
    )
    trials = {name: {"cold": [], "cached": [], "cache_files": []} for name in networks}
    mon = CpuMonitor().__enter__()
    for _ in range(n_cold):
        for name in networks:  # interleaved: a busy spell hits both networks alike
            with tempfile.TemporaryDirectory(prefix="snn_numba_cache_") as cache:
                trials[name]["cold"].append(child(name, cache))
                for _ in range(n_cached):
                    trials[name]["cached"].append(child(name, cache))
                n_files = sum(len(files) for _, _, files in os.walk(cache))
                size = sum(
                    os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cache) for f in files
                )
                trials[name]["cache_files"].append({"files": n_files, "bytes": size})
            cold = trials[name]["cold"][-1]
            print(
                f"  {name}: cold trial done: prepare {cold['prepare']:.2f} s, "
                f"{cold['specialisations']} kernel specialisations",
                flush=True,
            )
    mon.__exit__(None, None, None)
    keys = [
        ("import_numpy", "import numpy"),
        ("import_numba", "+ import numba"),
        ("import_snn", "+ import snn"),
        ("prepare", "net.prepare() (float64)"),
        ("prepare_cpu", "  its CPU time in this process"),
        ("prepare_child_cpu", "  and in the process it forks (kernels.precompile)"),
        ("first_run", "first net.run after prepare (4 samples)"),
        ("second_run", "second net.run"),
        ("prepare_float32", "+ prepare() of the float32 twin"),
    ]
    for name in networks:
        t = trials[name]
        print(f"\n### {name}\n")
        print(
            md_table(
                [
                    "step",
                    f"cold cache, s (median of {len(t['cold'])}, min-max)",
                    f"cached, s (median of {len(t['cached'])}, min-max)",
                ],
                [[label, cells(t["cold"], key), cells(t["cached"], key)] for key, label in keys],
            )
        )
        cold, cf = t["cold"][-1], t["cache_files"][-1]
        print(
            f"\nkernel specialisations after prepare(): {cold['specialisations']} ({cold['compiled']} "
            f"compiled cold, {t['cached'][-1]['compiled'] if t['cached'] else '-'} when cached); after "
            f"the runs: {cold['specialisations_after_runs']}; with the float32 twin: "
            f"{cold['specialisations_float32']}. numba cache after a cold run: {cf['files']} files, "
            f"{cf['bytes'] / 2**20:.1f} MiB"
        )
    print(
        f"\nother processes used {mon.other_cores:.2f} cores on average meanwhile "
        f"(/proc/stat; ~0 = quiet machine)"
    )
    if args.json:
        with open(args.json, "w") as f:
            record = {"benchmark": "compile_time", "env": env, "trials": trials}
            json.dump({**record, "other_cpu_cores": mon.other_cores}, f, indent=1)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
