"""BRUNEL-100 (shared/BENCHMARKS.md) simulated with Brian2: the peer side of the benchmark.

Environment
-----------
Brian2 is in the ``bench`` extra (``pip install -e ".[bench]"``, which pins numpy < 2.4 for it); or run the
script from a virtual environment of its own, outside the repository (Python 3.11 gets at most Brian2 2.9;
Brian2 2.9 does not import with numpy >= 2.4)::

    python3 -m venv /work/brian-venv
    /work/brian-venv/bin/pip install "brian2==2.9.*" "numpy<2.4"    # brings Cython, sympy, jinja2

cpp_standalone needs a C++ compiler (``g++``) and ``make``; the runtime target compiles with Cython, which
needs ``g++`` and the Python headers (``python3-dev``). Nothing else.

Usage
-----
::

    PY=/work/brian-venv/bin/python
    $PY benchmarks/brunel_brian2.py --n 4000 --target cpp_standalone --seed 0
    $PY benchmarks/brunel_brian2.py --n 20000 --target runtime --repeat 3 --json r.json
    $PY benchmarks/brunel_brian2.py --check-delivery --target runtime
    $PY benchmarks/brunel_brian2.py --n 4000 --target runtime --repeat 5 --network /tmp/brunel_4k.npz

``--repeat R`` runs R fresh processes one after the other, with seeds ``--seed``, ``--seed + 1``, ...
(Brian2's seed draws the network and the Poisson input: each repeat is another realisation of the
network unless ``--network`` gives one), and reports each run and the medians. ``--network FILE`` runs
on this simulator's own network, written by ``brunel.py --export FILE``: at 4k neurons the rate varies
between realisations by more than the 5 % the benchmark asks, so rates are compared on one network
(or over several realisations on each side). Brian2 is
restricted to one thread (OpenMP off in cpp_standalone, ``OMP_NUM_THREADS=1``); ``make`` may use both cores.

Model (BRUNEL-100)
------------------
N neurons, the first 80 % excitatory. ``dv/dt = -v/tau_m``, tau_m = 20 ms, integrated with
``method='exact'`` (v <- v exp(-dt/tau_m) each step); spike when ``v > 20*mV``, reset ``v = 10*mV``, no
refractory period; v(0) uniform in [0, 20) mV; dt = 0.1 ms; 1 s. ``Synapses(G, G, 'w : volt (constant)',
on_pre='v += w')`` with ``connect(p=100/N)``: Brian2 turns this into ``j for j in sample(N_post, p=p)``
for every source i, so every ordered pair (i, j) *including i == j* is drawn independently (self-synapses
would need ``condition='i != j'``). w = +0.5 mV from excitatory, -4.0 mV from inhibitory sources.
External drive ``PoissonInput(G, 'v', 100, 20*Hz, weight=0.5*mV)``; a ``SpikeMonitor`` records all spikes.

Delivery one step after the spike. Brian2's default schedule per step is ``start, groups (state update),
thresholds, synapses, resets, end``; a pathway with delay 0 pushes the spikes of step t and applies
``v += w`` in the 'synapses' slot of step t, i.e. after the threshold check and before the reset (so the
input to a neuron that fires at t is overwritten by its reset, and every input decays once before its
first threshold check at t+1). ``PoissonInput`` is in the same 'synapses' slot by default. A pathway delay
of ``dt`` would instead apply the effect after the threshold check of step t+1, seen first at t+2. This
simulator (DESIGN.md §1) does leak, add the input, fire, reset, with the recurrent input of step t+1 being
the spikes of step t. Schedule ``matched`` (the default) reproduces that exactly: the pathway runs with
delay 0 in the slot ``before_thresholds`` of step t+1, where the spike space still holds the spikes of
step t (the thresholder refills it only afterwards), and ``PoissonInput`` uses ``when='before_thresholds'``
too. Per step: v <- v exp(-dt/tau_m); v += recurrent input of step t's spikes + Poisson input; spike if
v > 20 mV; reset. ``--check-delivery`` verifies this on two neurons. ``--schedule brian`` keeps Brian2's
default slots (delay 0) for comparison.

What is measured
----------------
- ``build_s``: Python-side network construction. In runtime this includes creating the synapses (and
  compiling or loading the Cython code for it); in cpp_standalone it only records the model, since the
  synapses are created inside the compiled binary.
- runtime target: ``warmup_s``, a first ``run(--warmup)`` (code generation and Cython compilation or cache
  load, plus a few steps; ``--cold`` starts from an empty Cython cache, else Brian2's usual one is used);
  then the state is restored to t = 0 (``Network.restore``) and the 1 s run is timed: ``run_s`` = the
  main loop only (``device._last_run_time``, wall clock around Brian2's loop over time steps),
  ``run_cpu_s`` = this process's CPU time over the same loop (``time.process_time`` in the start and end
  report callbacks of ``Network.run``; the end one comes after Brian2's NaN check of the state),
  ``prepare_s`` = the rest of that ``run()`` call (code objects regenerated from the cache).
- cpp_standalone target: ``codegen_s`` (writing the C++ project, and loading results afterwards),
  ``compile_s`` (``make`` of a fresh project directory: a cold compile, ``device.timers``),
  ``binary_s`` (the whole binary: creating synapses, the run, writing results), ``run_s`` = wall clock
  (``clock_gettime(CLOCK_MONOTONIC)`` inserted around ``Network::run``), ``run_cpu_s`` = Brian2's own
  ``device._last_run_time`` (``std::clock`` CPU time when OpenMP is off).
- ``--profile``: Brian2's own time per code object over the run (``Network.profiling_info``; wall clock in
  runtime, ``std::clock`` in cpp_standalone) in ``profile_s``; it slows the run, so time without it.
- On a shared machine ``run_cpu_s`` (one thread) is the steadier figure; ``run_s`` is the benchmark's.
- ``other_cores``: CPU used by other processes, in cores (system busy time from /proc/stat minus this
  process and its children, over wall time), during the 1 s ``run()`` call (runtime) or during
  ``device.build`` (cpp_standalone: compile and binary); ``loadavg`` before and after; ``speed_probe_s``,
  a fixed pure-Python loop timed at the start (the project's VM was seen to run ~2x slower at times
  with no other process visible).
- Activity: total spikes, mean rate = spikes / (N x duration) in Hz, CV of inter-spike intervals = mean
  over the neurons with at least 3 spikes of std(ISI) / mean(ISI) (population std, ddof = 0),
  recurrent synaptic events = sum over all spikes of the source's out-degree (spikes of the last step
  included), ``events_per_s`` = recurrent events / ``run_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy and brian2 are imported

import numpy as np
from _common import CpuMonitor  # stdlib only: works in Brian2's own environment too

N_EXTERNAL = 100
TIMER_FILE = "bench_run_wall_time.txt"


def loadavg() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def speed_probe() -> float:
    """Best of 3 timings of a fixed pure-Python loop (10^6 additions), in s: how fast this (virtual)
    machine is right now, to tell a slow spell of the host from a slow simulator."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        s = 0
        for k in range(1_000_000):
            s += k
        best = min(best, time.perf_counter() - t0)
    return best


def build_model(b2, n: int, seed: int, schedule: str, network: str | None = None):
    """The BRUNEL-100 network as Brian2 objects (module docstring); ``(objects, synapses, monitor)``.
    ``network``: an npz written by ``brunel.py --export`` (this simulator's connectivity, weights and
    initial membranes, used instead of Brian2's own draws; ``seed`` then draws the Poisson input only)."""
    b2.seed(seed)
    b2.defaultclock.dt = 0.1 * b2.ms
    n_exc = round(0.8 * n)
    slot = "before_thresholds" if schedule == "matched" else "synapses"
    namespace = {"tau_m": 20 * b2.ms, "n_exc": n_exc}
    group = b2.NeuronGroup(
        n,
        "dv/dt = -v/tau_m : volt",
        threshold="v > 20*mV",
        reset="v = 10*mV",
        method="exact",
        namespace=namespace,
        name="neurons",
    )
    given = np.load(network) if network else None
    if given is not None and len(given["v0"]) != n:
        raise SystemExit(f"--network {network} has {len(given['v0'])} neurons, not --n {n}")
    if given is None:
        group.v = "rand() * 20*mV"
    else:
        group.v = given["v0"] * b2.mV
    syn = b2.Synapses(
        group,
        group,
        "w : volt (constant)",
        on_pre="v += w",
        delay=0 * b2.ms,
        namespace=namespace,
        name="recurrent",
    )
    syn.pre.when = slot
    if given is None:
        syn.connect(p=100.0 / n)  # every ordered pair, i == j included (no condition)
        syn.w["i < n_exc"] = 0.5 * b2.mV
        syn.w["i >= n_exc"] = -4.0 * b2.mV
    else:
        syn.connect(i=given["i"], j=given["j"])
        syn.w = given["w"] * b2.mV
    poisson = b2.PoissonInput(group, "v", N_EXTERNAL, 20 * b2.Hz, weight=0.5 * b2.mV, when=slot)
    monitor = b2.SpikeMonitor(group, name="spikes")
    return [group, syn, poisson, monitor], syn, monitor


def activity(spike_i, spike_t, n: int, duration: float, out_degree) -> dict:
    """Spike statistics of one run (definitions in the module docstring)."""
    spike_i = np.asarray(spike_i, dtype=np.int64)
    spike_t = np.asarray(spike_t, dtype=np.float64)
    counts = np.bincount(spike_i, minlength=n)
    order = np.lexsort((spike_t, spike_i))  # by neuron, then time
    si, st = spike_i[order], spike_t[order]
    isi = np.diff(st)
    same = si[1:] == si[:-1]
    isi, owner = isi[same], si[1:][same]
    n_isi = np.bincount(owner, minlength=n)
    s1 = np.bincount(owner, weights=isi, minlength=n)
    s2 = np.bincount(owner, weights=isi * isi, minlength=n)
    ok = n_isi >= 2
    mean = s1[ok] / n_isi[ok]
    var = np.maximum(s2[ok] / n_isi[ok] - mean * mean, 0.0)
    cv = float(np.mean(np.sqrt(var) / mean)) if ok.any() else float("nan")
    return {
        "spikes": int(counts.sum()),
        "rate_hz": float(counts.sum() / (n * duration)),
        "cv_isi": cv,
        "cv_neurons": int(ok.sum()),
        "silent_neurons": int((counts == 0).sum()),
        "recurrent_events": int(np.dot(counts, np.asarray(out_degree, dtype=np.int64))),
    }


def configure(b2, target: str, build_dir: str | None, cython_cache: str | None = None):
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    if target == "cpp_standalone":
        b2.set_device("cpp_standalone", build_on_run=False, directory=build_dir)
    else:
        b2.prefs.codegen.target = "cython"
        if cython_cache is not None:
            b2.prefs.codegen.runtime.cython.cache_dir = cython_cache


def run_once(args) -> dict:
    import brian2 as b2

    build_dir = tempfile.mkdtemp(prefix="brunel_brian2_") if args.target == "cpp_standalone" else None
    cold = args.cold and args.target == "runtime"
    cython_cache = tempfile.mkdtemp(prefix="brunel_cython_") if cold else None
    configure(b2, args.target, build_dir, cython_cache)
    duration = args.duration * b2.second
    out = {
        "simulator": "brian2",
        "brian2": b2.__version__,
        "numpy": np.__version__,
        "target": args.target,
        "schedule": args.schedule,
        "cold_cython_cache": cold,
        "n": args.n,
        "seed": args.seed,
        "network": args.network,
        "duration_s": args.duration,
        "loadavg_start": loadavg(),
        "speed_probe_s": speed_probe(),
    }
    try:
        t0 = time.perf_counter()
        objects, syn, monitor = build_model(b2, args.n, args.seed, args.schedule, args.network)
        net = b2.Network(objects)
        out["build_s"] = time.perf_counter() - t0
        if args.target == "runtime":
            net.store("init")
            t0 = time.perf_counter()
            net.run(args.warmup * b2.ms)
            out["warmup_s"] = time.perf_counter() - t0
            out["warmup_loop_s"] = b2.device._last_run_time
            net.restore("init")
            cpu_marks = []  # process CPU time when the loop starts and ends (report callbacks)
            with CpuMonitor() as cpu:
                t0 = time.perf_counter()
                net.run(
                    duration,
                    report=lambda *_: cpu_marks.append(time.process_time()),
                    report_period=1e9 * b2.second,
                    profile=args.profile,
                )
                total = time.perf_counter() - t0
            out["run_s"] = b2.device._last_run_time
            out["run_cpu_s"] = cpu_marks[-1] - cpu_marks[0]
            out["prepare_s"] = total - out["run_s"]
        else:
            b2.device.insert_code(
                "before_network_run",
                "struct timespec _bench_t0, _bench_t1;\nclock_gettime(CLOCK_MONOTONIC, &_bench_t0);",
            )
            b2.device.insert_code(
                "after_network_run",
                "clock_gettime(CLOCK_MONOTONIC, &_bench_t1);\n"
                f'{{ std::ofstream _f(results_dir + "{TIMER_FILE}");\n'
                "  _f.precision(17);\n"
                "  _f << (_bench_t1.tv_sec - _bench_t0.tv_sec)"
                " + 1e-9 * (_bench_t1.tv_nsec - _bench_t0.tv_nsec) << std::endl; }",
            )
            net.run(duration, profile=args.profile)  # only recorded: build_on_run=False
            with CpuMonitor() as cpu:
                t0 = time.perf_counter()
                b2.device.build(directory=build_dir, compile=True, run=True, clean=True, with_output=False)
                total = time.perf_counter() - t0
            timers = b2.device.timers
            out["compile_s"] = (timers["compile"]["make"] or 0.0) + (timers["compile"]["clean"] or 0.0)
            out["binary_s"] = timers["run_binary"]
            out["codegen_s"] = total - out["compile_s"] - out["binary_s"]
            with open(os.path.join(build_dir, "results", TIMER_FILE)) as f:
                out["run_s"] = float(f.read())
            out["run_cpu_s"] = b2.device._last_run_time
            out["compiler_flags"] = " ".join(b2.prefs["codegen.cpp.extra_compile_args_gcc"])
            if args.keep:
                out["project_dir"] = build_dir
        out["other_cores"] = cpu.other_cores
        if args.profile:
            out["profile_s"] = {name: float(t) for name, t in net.profiling_info}
        out["loadavg_end"] = loadavg()
        out["completed"] = float(b2.device._last_run_completed_fraction)
        spike_i, spike_t = monitor.i[:], np.asarray(monitor.t_[:])
        sources = np.asarray(syn.i[:])
        out["n_synapses"] = len(sources)
        out["self_synapses"] = int(np.count_nonzero(sources == np.asarray(syn.j[:])))
        out.update(activity(spike_i, spike_t, args.n, args.duration, np.bincount(sources, minlength=args.n)))
        out["events_per_s"] = out["recurrent_events"] / out["run_s"]
        out["external_events_expected"] = int(args.n * N_EXTERNAL * 20 * args.duration)
    finally:
        if build_dir is not None and not args.keep:
            shutil.rmtree(build_dir, ignore_errors=True)
        if cython_cache is not None:
            shutil.rmtree(cython_cache, ignore_errors=True)
    out["machine"] = {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    return out


def check_delivery(args) -> dict:
    """Two neurons, 0 -> 1 with w = 0.5 mV; neuron 0 starts at 25 mV and fires at step 0. Reads v as the
    threshold sees it (StateMonitor just before the thresholder): with schedule ``matched`` neuron 1 must
    see exactly 0.5 mV at step 1 (leak, then input, then threshold), nothing at step 0."""
    import brian2 as b2

    build_dir = tempfile.mkdtemp(prefix="brunel_check_") if args.target == "cpp_standalone" else None
    configure(b2, args.target, build_dir)
    try:
        b2.defaultclock.dt = 0.1 * b2.ms
        slot = "before_thresholds" if args.schedule == "matched" else "synapses"
        group = b2.NeuronGroup(
            2, "dv/dt = -v/(20*ms) : volt", threshold="v > 20*mV", reset="v = 10*mV", method="exact"
        )
        group.v = [25, 0] * b2.mV
        syn = b2.Synapses(group, group, "w : volt (constant)", on_pre="v += w", delay=0 * b2.ms)
        syn.pre.when = slot
        syn.connect(i=0, j=1)
        syn.w = 0.5 * b2.mV
        seen = b2.StateMonitor(group, "v", record=True, when="thresholds", order=-1)
        spikes = b2.SpikeMonitor(group)
        net = b2.Network(group, syn, seen, spikes)
        net.run(0.5 * b2.ms)
        if args.target == "cpp_standalone":
            b2.device.build(directory=build_dir, compile=True, run=True, clean=True, with_output=False)
        v1 = np.asarray(seen.v_[1]) / 1e-3  # mV, one value per step
        res = {
            "target": args.target,
            "schedule": args.schedule,
            "spike_steps_neuron0": [round(t / 1e-4) for t in spikes.t_[spikes.i[:] == 0]],
            "v1_at_threshold_mV": [float(x) for x in v1],
        }
        res["one_step_exact"] = bool(res["spike_steps_neuron0"] == [0] and v1[0] == 0.0 and v1[1] == 0.5)
        return res
    finally:
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def repeat_runs(args) -> dict:
    """``--repeat`` fresh processes, one after the other; each run and the medians."""
    runs = []
    for k in range(args.repeat):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            path = tmp.name
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--n",
            str(args.n),
            "--target",
            args.target,
            "--seed",
            str(args.seed + k),  # as brunel.py's repeats; without --network a new realisation too
            "--duration",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--schedule",
            args.schedule,
            "--repeat",
            "1",
            "--json",
            path,
            "--quiet",
        ]
        flags = {"--cold": args.cold, "--profile": args.profile, "--keep": args.keep}
        cmd += [flag for flag, on in flags.items() if on]
        cmd += ["--network", args.network] if args.network else []
        subprocess.run(cmd, check=True)
        with open(path) as f:
            runs.append(json.load(f))
        os.unlink(path)
    keys = [
        "run_s",
        "build_s",
        "compile_s",
        "warmup_s",
        "prepare_s",
        "codegen_s",
        "binary_s",
        "run_cpu_s",
        "events_per_s",
        "other_cores",
        "speed_probe_s",
    ]
    med = {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]}
    summary = {
        k: runs[0][k]
        for k in ("simulator", "brian2", "target", "schedule", "n", "network", "duration_s", "n_synapses")
    }
    summary["seeds"] = [r["seed"] for r in runs]
    for k in ("spikes", "rate_hz", "cv_isi", "recurrent_events"):  # medians over the seeds
        summary[k] = statistics.median(r[k] for r in runs)
    summary["rate_hz_all"] = [r["rate_hz"] for r in runs]
    summary["repeats"] = len(runs)
    summary["median"] = med
    summary["run_s_all"] = [r["run_s"] for r in runs]
    summary["loadavg"] = [r["loadavg_start"] for r in runs]
    summary["runs"] = runs
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="number of neurons (4000, 20000, 100000)")
    p.add_argument("--target", choices=["cpp_standalone", "runtime"], default="cpp_standalone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=1.0, help="biological time in s (default 1)")
    p.add_argument("--warmup", type=float, default=1.0, help="runtime warm-up run in ms (default 1)")
    p.add_argument(
        "--schedule",
        choices=["matched", "brian"],
        default="matched",
        help="matched: delivery and Poisson input before the threshold check of the next step "
        "(as this simulator); brian: Brian2's default slots",
    )
    p.add_argument(
        "--network",
        metavar="NPZ",
        help="run on this simulator's network (brunel.py --export) instead of Brian2's own draw",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="fresh processes, run one after the other, with seeds --seed, --seed + 1, ...",
    )
    p.add_argument("--json", help="write the result here")
    p.add_argument(
        "--cold",
        action="store_true",
        help="runtime: compile into a fresh, empty Cython cache (cold build_s and warmup_s)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="record Brian2's time per code object (profile_s); adds overhead to run_s",
    )
    p.add_argument("--keep", action="store_true", help="keep the cpp_standalone project directory")
    p.add_argument("--check-delivery", action="store_true", help="only verify the delivery schedule")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    if args.check_delivery:
        res = check_delivery(args)
        print(json.dumps(res))
        return 0 if res["one_step_exact"] or args.schedule != "matched" else 1
    res = repeat_runs(args) if args.repeat > 1 else run_once(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if not args.quiet:
        line = {k: v for k, v in res.items() if k != "runs"}
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
