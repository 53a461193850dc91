"""A cold ``prepare()`` compiles in two processes (``kernels.precompile``):
the jobs that would compile are shared with a forked child, whose kernels
reach the parent through the on-disk cache.

Checked in subprocesses, each with a new ``NUMBA_CACHE_DIR``: the parent of a
cold ``Network.prepare()`` loads kernels the child compiled, then runs
compiling nothing more and computes what a process that compiled everything
itself computes (spikes, counts, final membranes); a warm cache is loaded
without a fork; a job failing in the child leaves the parent to compile it;
and no fork is made where the JIT is off or another thread runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import NOJIT

from tests.test_specialisations import COUNT, ROOT

pytestmark = [
    pytest.mark.skipif(NOJIT, reason="compiles kernels; nothing is compiled without the JIT"),
    pytest.mark.skipif(
        not hasattr(os, "fork") or len(os.sched_getaffinity(0)) < 2, reason="needs os.fork and two cores"
    ),
]

NETWORK = r"""
import math, os, numpy as np, snn, snn_kernels
net = snn.Network([snn.Conv2d((1, 6, 6), 4, 3, snn.IF(), padding=1, v_init=0.5, seed=0),
                   snn.Linear(144, 5, snn.IF(threshold=math.inf), seed=1)])
forks = []
fork = os.fork
def counted_fork():
    forks.append(1)
    return fork()
os.fork = counted_fork
net.prepare()
os.fork = fork
norm = lambda found: {k: sorted(map(json.dumps, v)) for k, v in found.items()}  # (gc: any order)
before = norm(compiled())
hits = sum(sum(d.stats.cache_hits.values()) for d in __import__("gc").get_objects()
           if type(d).__name__ == "_Dispatcher" and d.py_func.__module__.startswith("snn_kernels"))
rng = np.random.default_rng(0)
out = {}
for mode in ("event", "clock", "dense"):
    r = net.run(analog=rng.random((3, 36)), T=8, mode=mode)
    out[mode] = [r.spikes(0).tolist(), [c.synops.tolist() for c in r.counts], r.membrane.tolist()]
r = net.run((rng.random((8, 2, 36)) < 0.3).astype(np.uint8))
out["spikes"] = [r.spikes(0).tolist(), [c.synops.tolist() for c in r.counts], r.membrane.tolist()]
print(json.dumps({"forks": len(forks), "hits": hits, "new": norm(compiled()) != before, "out": out}))
"""


def _child(code: str, cache_dir, **env) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1", **env}
    proc = subprocess.run(
        [sys.executable, "-c", COUNT + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cold_prepare_compiles_in_two_processes_with_the_same_results(tmp_path):
    forked = _child(NETWORK, tmp_path / "forked")
    assert forked["forks"] == 1
    assert forked["hits"] > 0  # kernels the child compiled, loaded from the cache
    assert not forked["new"]  # the runs after prepare compile nothing
    serial = _child(NETWORK, tmp_path / "serial", SNN_FORK_COMPILE="0")
    assert serial["forks"] == 0 and serial["hits"] == 0
    assert forked["out"] == serial["out"]
    # a warm cache: every job loads, no fork
    again = _child(NETWORK, tmp_path / "forked")
    assert again["forks"] == 0 and not again["new"]
    assert again["out"] == serial["out"]


JOBS = r"""
import os, threading, numpy as np, snn_kernels as k
from snn_kernels import _jit

def job(dtype, fail_in_child=False):
    def run():
        if fail_in_child and os.getpid() != parent:
            raise RuntimeError("a job failing in the child")
        state = np.zeros((1, 3, 4), dtype); tptr = np.zeros((1, 5), np.int64)
        idx = np.zeros((1, 12), np.int32); counts = np.zeros((1, 4), np.int64)
        currents = np.linspace(0, 1.5, 12).reshape(1, 4, 3).astype(dtype)
        bias, v_init = np.zeros((1, 1), dtype), np.zeros(3, dtype)
        k.clock_layer(currents, bias, dtype(0), dtype(0.5), dtype(1), 0, dtype(0), 0, v_init, False,
                      state, tptr, idx, counts)
        return idx[0, : counts[0, 2]].tolist()
    return run

parent = os.getpid()
"""


def test_precompile_falls_back_to_this_process(tmp_path):
    got = _child(
        JOBS + "jobs = [job(np.float64), job(np.float32, fail_in_child=True)]\n"
        "taken = k.precompile(jobs)\n"
        "disp = k.clock.clock_kernel(False, False, 0)\n"
        "out = [j() for j in jobs]\n"  # the parent's serial pass: what the child left undone compiles here
        # counted after it: the child's kernels are loaded there (when the child took the first job
        # and this process the second, counting the hits before it found none: a race under load)
        "hits = sum(disp.stats.cache_hits.values())\n"
        "misses = sum(disp.stats.cache_misses.values())\n"
        "# another thread running: no fork\n"
        "stop = threading.Event(); t = threading.Thread(target=stop.wait); t.start()\n"
        "with_thread = _jit._can_fork_compile()\n"
        "stop.set(); t.join()\n"
        "print(json.dumps({'taken': taken, 'hits': hits, 'misses': misses, 'out': out,\n"
        "                  'with_thread': with_thread, 'alone': _jit._can_fork_compile()}))\n",
        tmp_path,
    )
    assert got["with_thread"] is False and got["alone"] is True
    # whichever process took the failing job, both dtypes ran, each compiled once in this process or loaded
    assert got["hits"] + got["misses"] == 2
    assert got["out"][0] == got["out"][1] != []
    off = _child(
        JOBS + "print(json.dumps({'taken': k.precompile([job(np.float64), job(np.float32)])}))\n",
        tmp_path / "off",
        SNN_FORK_COMPILE="0",
    )
    assert off["taken"] == 0
