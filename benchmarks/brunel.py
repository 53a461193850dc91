"""BRUNEL-100 (shared/BENCHMARKS.md): this simulator's side, and the table
against Brian2.

Measure one network size (one core; build, compile and run timed apart;
peak memory as the rise of the process's peak RSS while building and
running, kernels already loaded, before any statistics are computed)::

    python benchmarks/brunel.py --n 20000 --repeats 3 --json benchmarks/results/brunel_20k.json

Brian2's side is ``benchmarks/brunel_brian2.py`` (its own environment, see
its docstring). Merge any number of result files of both into one table,
with the rate check first and the speed ratio against Brian2 per size::

    python benchmarks/brunel.py --report benchmarks/results/brunel_*.json

Run times are medians over ``--repeats`` runs with different Poisson seeds
(the connectivity fixed); ``run_s`` is the simulation loop only.

Rates. ``--seed`` draws one realisation of the network (connectivity and
initial membranes); at N = 4k the mean rate differs by up to ~2 Hz between
realisations (10-11.5 Hz), more than between Poisson seeds on one network,
and the two simulators draw different realisations from the same seed. So
compare rates either on the same network (``--export FILE`` writes this
network, ``brunel_brian2.py --network FILE`` runs Brian2 on it) or over
several ``--seed`` values on each side::

    python benchmarks/brunel.py --n 4000 --repeats 5 --export /tmp/brunel_4k.npz
    PY=/work/brian-venv/bin/python  # Brian2's environment (brunel_brian2.py's docstring)
    $PY benchmarks/brunel_brian2.py --n 4000 --target runtime --repeat 5 --network /tmp/brunel_4k.npz
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import (
    CpuMonitor,
    describe_env,
    environment,
    fmt_si,
    md_table,
    median,
    read_rss_kib,
    reset_peak_rss,
    warn_if_busy,
)


def export_network(graph, path: str) -> None:
    """Write ``graph`` (``snn.models.brunel``) for ``brunel_brian2.py
    --network``: an npz with ``i``, ``j`` (int64 global neuron indices,
    excitatory first, one row per synapse), ``w`` (float64 mV) and ``v0``
    (float64 mV, the initial membranes)."""
    import numpy as np

    offset, start = {}, 0
    for pop in graph.populations:
        offset[pop.name], start = start, start + pop.n
    i, j, w = [], [], []
    for proj in graph.projections:
        for delay, rowptr, cols, weights in proj.groups:
            if delay != 1:
                raise ValueError(f"BRUNEL-100 delivers one step after a spike; {proj.name} has delay {delay}")
            i.append(np.repeat(np.arange(proj.source.n), np.diff(rowptr)) + offset[proj.source.name])
            j.append(cols.astype(np.int64) + offset[proj.target.name])
            w.append(np.full(len(cols), proj.weight) if weights is None else weights.astype(np.float64))
    v0 = np.concatenate([pop.v_init for pop in graph.populations]).astype(np.float64)
    np.savez(path, i=np.concatenate(i), j=np.concatenate(j), w=np.concatenate(w), v0=v0)


def measure(n: int, repeats: int, seed: int, dtype: str, mode: str | None, export: str | None = None) -> dict:
    import numba
    import numpy as np

    import snn

    numba.set_num_threads(1)
    warn_if_busy()
    small = snn.models.brunel(100, seed=seed, dtype=np.dtype(dtype).type)
    small.prepare()  # kernels loaded before memory is read
    if mode is not None:  # prepare() compiles the default paths; a forced mode may use others
        small.run(2, mode=mode, progress=False)
    reset_peak_rss()
    rss0 = read_rss_kib()
    start = time.perf_counter()
    graph = snn.models.brunel(n, seed=seed, dtype=np.dtype(dtype).type)
    build_s = time.perf_counter() - start
    compile_s = graph.prepare()
    steps = round(1.0 / graph.dt)
    runs, rss1 = [], None
    for rep in range(repeats):
        with CpuMonitor() as cpu:
            result = graph.run(steps, seed=seed + rep, progress=False, mode=mode)
        rss1 = rss1 or read_rss_kib()  # peak of build + simulation, before the statistics below
        runs.append(
            {
                "run_s": result.seconds,
                "spikes": result.total("spikes"),
                "recurrent_events": result.total("synops"),
                "rate_hz": result.rate_hz(),
                "isi_cv": result.isi_cv(),
                "other_cores": cpu.other_cores,
            }
        )
        print(
            f"  run {rep}: {result.seconds:.3f} s, rate {result.rate_hz():.2f} Hz, "
            f"CV {result.isi_cv():.3f}, other processes {cpu.other_cores:.2f} cores",
            flush=True,
        )
    if export:  # after the peak RSS was read
        export_network(graph, export)
    conn_bytes = sum(p.nbytes for p in graph.projections)
    return {
        "simulator": "snn",
        "target": f"{'/'.join(sorted({c.mode for c in result.counts}))}, {dtype}, 1 thread",
        "n": n,
        "seed": seed,
        "n_synapses": graph.n_synapses,
        "build_s": build_s,
        "compile_s": compile_s,
        "run_s": median([r["run_s"] for r in runs]),
        "runs": runs,
        "spikes": median([r["spikes"] for r in runs]),
        "recurrent_events": median([r["recurrent_events"] for r in runs]),
        "rate_hz": median([r["rate_hz"] for r in runs]),
        "isi_cv": median([r["isi_cv"] for r in runs]),
        "connectivity_bytes_per_synapse": conn_bytes / graph.n_synapses,
        "peak_rss_mib": None if rss1 is None else rss1[1] / 1024,
        "peak_rss_rise_bytes_per_synapse": None
        if rss0 is None
        else (rss1[1] - rss0[0]) * 1024 / graph.n_synapses,
        "env": environment(),
    }


def _merged(results: list[dict]) -> list[dict]:
    """One row per (simulator, target, N): medians over the files given
    (e.g. Brian2's one-process-per-run files) of run time and statistics."""
    groups = {}
    for r in results:
        if r["simulator"] == "brian2" and "runs" in r:  # --repeat: one record per fresh process
            groups.setdefault((r["simulator"], r["target"], r["n"]), []).extend(r["runs"])
            continue
        groups.setdefault((r["simulator"], r["target"], r["n"]), []).append(r)
    rows = []
    for (sim, target, n), rs in groups.items():
        pick = {"simulator": sim, "target": target, "n": n, "files": len(rs)}
        for key in ("run_s", "compile_s", "build_s", "rate_hz", "recurrent_events"):
            pick[key] = median([r[key] for r in rs if r.get(key) is not None])
        pick["isi_cv"] = median([r.get("isi_cv", r.get("cv_isi")) for r in rs])
        pick["runs"] = sorted(
            x for r in rs for x in ([q["run_s"] for q in r["runs"]] if "runs" in r else [r["run_s"]])
        )
        pick["other_cores"] = max(
            r.get("other_cores", max((q.get("other_cores", 0) for q in r.get("runs", [])), default=0))
            for r in rs
        )
        rows.append(pick)
    return rows


def report(paths: list[str]) -> str:
    results = [json.loads(Path(p).read_text()) for p in paths]
    rows = []
    merged = _merged(results)
    for n in sorted({r["n"] for r in merged}):
        here = [r for r in merged if r["n"] == n]
        brian = {r["target"]: r for r in here if r["simulator"] == "brian2"}
        ours = [r for r in here if r["simulator"] == "snn"]
        for r in sorted(here, key=lambda r: (r["simulator"] != "brian2", r["target"])):
            ratio = "-"
            if r["simulator"] == "snn" and brian:
                ratio = ", ".join(f"{b['run_s'] / r['run_s']:.1f}x vs {t}" for t, b in sorted(brian.items()))
            rate_vs = f"{(r['rate_hz'] / ours[0]['rate_hz'] - 1) * 100:+.1f}%" if ours else "-"
            events = r.get("recurrent_events", float("nan"))
            rows.append(
                [
                    f"{n:,}",
                    r["simulator"],
                    r["target"],
                    f"{r['run_s']:.3f}",
                    " ".join(f"{x:.2f}" for x in r["runs"]),
                    f"{r['other_cores']:.2f}",
                    f"{r['compile_s']:.2f}",
                    f"{r['build_s']:.2f}",
                    f"{r['rate_hz']:.2f}",
                    rate_vs,
                    f"{r['isi_cv']:.3f}",
                    fmt_si(events / r["run_s"], "/s"),
                    ratio,
                ]
            )
    head = [
        "N",
        "simulator",
        "target",
        "run s (median)",
        "runs",
        "other cores (max)",
        "compile s",
        "build s",
        "rate Hz",
        "rate vs snn",
        "ISI CV",
        "rec. events/s",
        "speed-up",
    ]
    out = [md_table(head, rows)]
    for r in results:
        if r["simulator"] == "snn":
            out.append(
                f"snn N={r['n']:,} ({r['target']}): connectivity {r['connectivity_bytes_per_synapse']:.2f} "
                f"B/synapse, peak RSS rise {r['peak_rss_rise_bytes_per_synapse']:.1f} B/synapse "
                f"(peak RSS {r['peak_rss_mib']:.0f} MiB); {describe_env(r['env'])}"
            )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="state precision")
    parser.add_argument("--mode", choices=("event", "clock", "auto"), help="force every population's path")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--export", metavar="NPZ", help="write the network for brunel_brian2.py --network")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="merge result files into one table")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    result = measure(args.n, args.repeats, args.seed, args.dtype, args.mode, args.export)
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "env")}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
