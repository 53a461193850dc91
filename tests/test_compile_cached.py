"""Loading compiled kernels from numba's on-disk cache (``kernels._jit._CheckedCache``).

numba refreshes its compiler before every load (the first time in a
process: imports and installs every implementation registry it has, 0.4-0.5 s
here, most of a cached ``Network.prepare()``); the kernels' cache loads with
only numba's runtime initialised, and refreshes first where a cached entry
declares a symbol the JIT linker does not know yet. Checked: a process with a
warm cache loads everything a network needs, compiles nothing, refreshes
nothing and computes what the process that compiled it computed (and, on a
numba lacking the private internals this load reads, loads the same through
numba's own load); and an entry declaring an unknown symbol is not loaded
without the refresh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NOJIT

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(NOJIT, reason="loads compiled kernels; nothing is compiled without the JIT")

RUN = r"""
import gc, json, math, sys
import numpy as np, snn
from numba.core.registry import CPUDispatcher

net = snn.Network([snn.Conv2d((1, 6, 6), 4, 3, snn.IF(), padding=1, v_init=0.5, seed=0),
                   snn.Linear(144, 5, snn.LIF(beta=0.9), seed=1)])
net.prepare()
x = np.random.default_rng(0).random((2, 36))
out = {m: net.run(analog=x, T=8, mode=m).spikes(-1).tolist() for m in ("event", "clock", "dense")}
hits = misses = 0
for obj in gc.get_objects():
    if isinstance(obj, CPUDispatcher) and obj.py_func.__module__.startswith("snn_kernels"):
        hits += sum(obj.stats.cache_hits.values())
        misses += sum(obj.stats.cache_misses.values())
# numba.np.arraymath is imported by numba's refresh of its compiler (its registries), not by snn
refreshed = "numba.np.arraymath" in sys.modules
print(json.dumps({"out": out, "hits": hits, "misses": misses, "refreshed": refreshed}))
"""


# a numba release lacking one of the private cache internals the load without refresh reads
WITHOUT_PRIVATE = """
from snn_kernels._jit import _CheckedCache
_CheckedCache._PRIVATE += ("_no_such_internal",)
"""


def _child(cache_dir: Path, prelude: str = "") -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", prelude + RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cached_network_loads_without_refreshing_the_compiler(tmp_path):
    cold = _child(tmp_path)
    assert cold["misses"] > 0 and cold["refreshed"]  # compiled here: numba refreshed to compile
    warm = _child(tmp_path)
    assert warm["misses"] == 0 and warm["hits"] > 0, warm
    assert not warm["refreshed"]
    assert warm["out"] == cold["out"]
    # without numba's private internals: numba's own load, refresh included, same code loaded
    fallback = _child(tmp_path, WITHOUT_PRIVATE)
    assert fallback["misses"] == 0 and fallback["hits"] == warm["hits"], fallback
    assert fallback["refreshed"]
    assert fallback["out"] == cold["out"]


def test_an_entry_declaring_an_unknown_symbol_is_not_resolvable():
    import llvmlite.binding as ll
    from numba.core.registry import cpu_target

    from snn_kernels._jit import _resolvable

    codegen = cpu_target.target_context.codegen()

    def libdata(ir):
        return ("test", "object", (b"", ll.parse_assembly(ir).as_bitcode()))

    known = "declare double @llvm.fabs.f64(double)\ndeclare i8* @malloc(i64)\n"
    calls = "define void @f() {\n  call i8* @malloc(i64 8)\n  ret void\n}\n"
    assert _resolvable(libdata(known + calls), codegen)
    unknown = "declare void @snn_no_such_symbol()\n"
    calls_unknown = "define void @g() {\n  call void @snn_no_such_symbol()\n  ret void\n}\n"
    assert not _resolvable(libdata(known + unknown + calls_unknown), codegen)
    assert not _resolvable(("test", "bitcode", b""), codegen)  # not numba's object-code form
