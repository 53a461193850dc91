"""Helpers shared by the benchmark scripts: timing, tables, environment.

Benchmarks print tables and never assert timings (DESIGN.md §4).
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as ``python benchmarks/x.py`` from anywhere
    sys.path.insert(0, str(ROOT))


class Times(list):
    """Wall-clock seconds of each run; ``.cpu`` holds this process's CPU
    seconds (all its threads) for the same runs. With one thread, CPU time
    is what a run costs even when another process competes for the cores."""

    cpu: list


def time_runs(fn, repeats: int, warmup: int = 1) -> Times:
    """Time ``repeats`` calls of ``fn`` after ``warmup`` untimed calls. The
    garbage collector runs once before the first timed call and is off
    until the last one ends (see :func:`_collected_once`)."""
    for _ in range(warmup):
        fn()
    times = Times()
    times.cpu = []
    with _collected_once():
        for _ in range(repeats):
            cpu0 = time.process_time()
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
            times.cpu.append(time.process_time() - cpu0)
    return times


@contextlib.contextmanager
def _collected_once():
    """Collect garbage, then keep the collector off inside: no collection
    pauses a timed call. Once for a whole series, not before each call: a
    collection walks every Python object and leaves the caches cold for
    whatever runs next (measured on SPARSE-CROSSOVER's 100k-neuron layer: a
    0.23 ms event run took 0.47 ms right after ``gc.collect()``, a 1.1 ms
    one 1.5 ms), which a caller's loop does not do between its calls."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_interleaved(fns: dict, repeats: int, warmup: int = 1, settle: bool | dict = False) -> dict:
    """Like :func:`time_runs` for several functions at once, in rounds: each
    round calls every function once, the order rotated from round to round.
    A slow spell of the machine (a busy neighbour, a frequency change) then
    hits all of them alike instead of whichever happened to run during it,
    which keeps their ratios honest. Returns ``{name: Times}``.

    ``settle``: each timed call comes right after an untimed call of the same
    function (True), or of ``settle[name]`` (a dict: e.g. the same contender
    on another sample), as in a user's loop, not right after another
    contender's. For
    contenders with thread pools of their own: torch's OpenMP workers spin
    on after a call and take a core from whatever runs next (measured on
    DIGITS-CNN, two threads: our whole test set took 24.9 µs a sample right
    after a torch convolution, 16.5 µs otherwise)."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out = {}
    for name in names:
        out[name] = Times()
        out[name].cpu = []
    with _collected_once():
        for r in range(repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if isinstance(settle, dict):
                    settle[name]()
                elif settle:
                    fns[name]()
                cpu0 = time.process_time()
                start = time.perf_counter()
                fns[name]()
                out[name].append(time.perf_counter() - start)
                out[name].cpu.append(time.process_time() - cpu0)
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def md_table(headers, rows) -> str:
    """A markdown table; cells are str()-ed, numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)) + " |"
        for r in cells
    ]
    return "\n".join([line, sep, *body])


def _numeric(cell: str) -> bool:
    head = cell.split(" ")[0].replace(",", "").rstrip("x%")
    try:
        float(head)
        return True
    except ValueError:
        return cell == "-"


def fmt_si(x: float, unit: str = "") -> str:
    """3 significant digits with an SI prefix: 1.23e8 -> '123 M'."""
    if x != x:  # nan
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def environment() -> dict:
    """Versions and machine facts to store next to the results."""
    import numba
    import numpy as np

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "loadavg_1min_at_start": loadavg(),
    }
    env.update(git_state())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return env


def git_state() -> dict:
    """Commit of the working tree and whether the simulator's sources differ
    from it (results belong to the code as it was when they were taken)."""
    import subprocess

    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None

    dirty = git("status", "--porcelain", "--", "snn", "kernels")
    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_sources_modified": None if dirty is None else bool(dirty),
    }


def describe_env(env: dict) -> str:
    """One line: machine, versions, code state."""
    state = env.get("git_commit") or "?"
    if env.get("git_sources_modified"):
        state += " + uncommitted changes in snn/ or kernels/"
    extra = "".join(f", {k} {env[k]}" for k in ("torch", "snntorch") if k in env)
    return (
        f"{env['cpu_count']} CPUs ({env.get('cpu', '?')}); Python {env['python']}, numpy {env['numpy']}, "
        f"numba {env['numba']}{extra}; code {state}"
    )


def warn_if_busy(threshold: float = 0.5):
    """Timings on a shared 2-core machine are meaningless if something else
    is running: say so up front."""
    load = loadavg()
    if load > threshold:
        print(
            f"WARNING: 1-min load average is {load:.2f} before the benchmark starts; "
            "another process may be using the CPU and timings may be inflated.\n",
            flush=True,
        )


def blas_threads(n: int):
    """Context manager limiting numpy's BLAS to ``n`` threads (a no-op if
    threadpoolctl is missing)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


class CpuMonitor:
    """CPU time used by *other* processes (and stolen by the hypervisor)
    while a block runs, in cores: ``busy(system) - busy(this process and its
    waited-for children)`` over wall time, from /proc/stat and os.times().
    About 0 on a quiet machine; 1 means another process kept a core busy."""

    def __enter__(self):
        self._start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        if self._start is None or end is None:
            self.other_cores = self.steal_cores = float("nan")
            return False
        wall = end[0] - self._start[0]
        busy = (end[1] - self._start[1]) / self._hz
        steal = (end[2] - self._start[2]) / self._hz
        own = end[3] - self._start[3]
        self.other_cores = max(0.0, busy - own) / wall if wall > 0 else float("nan")
        self.steal_cores = steal / wall if wall > 0 else float("nan")
        return False

    _hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.perf_counter(), user + nice + system + irq + softirq, steal, own


def read_rss_kib() -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of this process in KiB from /proc (Linux), else None."""
    try:
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
        return out["VmRSS"], out["VmHWM"]
    except (OSError, KeyError, ValueError):
        return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; Linux >= 4.0."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
