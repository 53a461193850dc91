"""The kernels as plain Python (``NUMBA_DISABLE_JIT=1``): the same code must
give the same answers without compilation (this is how kernels are debugged
and how coverage sees them). A subprocess runs the golden trajectories and a
few examples of the equivalence properties (tiny networks, hypothesis profile
``nojit``; see conftest.py) with the JIT disabled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env():
    env = dict(os.environ)
    env.update(NUMBA_DISABLE_JIT="1", SNN_HYPOTHESIS_PROFILE="nojit", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _run(args, timeout):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def test_kernels_are_plain_python_when_jit_disabled():
    """No kernel is a numba dispatcher when the JIT is disabled (so the leg
    below really runs Python), and there are kernels to check."""
    code = (
        "import importlib, pkgutil, types, snn_kernels as kernels\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "mods = [importlib.import_module('snn_kernels.' + m.name)\n"
        "        for m in pkgutil.iter_modules(kernels.__path__)]\n"
        "fns = [v for m in mods for v in vars(m).values()\n"
        "       if isinstance(v, (types.FunctionType, Dispatcher)) and v.__module__ == m.__name__]\n"
        "assert len(fns) >= 5, fns\n"
        "jitted = [f for f in fns if isinstance(f, Dispatcher)]\n"
        "assert not jitted, jitted\n"
        "public = [getattr(kernels, n) for n in kernels.__all__ if callable(getattr(kernels, n))]\n"
        "assert public and all(isinstance(f, types.FunctionType) for f in public), public\n"
    )
    proc = _run(["-c", code], 120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_golden_and_equivalence_without_jit():
    proc = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-p",
            "no:randomly",
            # compiled code overflows silently (the generator's integers wrap by design): so must its twin
            "-W",
            "error::RuntimeWarning",
            "tests/test_golden.py",
            # spike input, mode="event": the float64 precision of the clock-driven path
            # (dense mode, time-varying analog input) is tested with the JIT
            "tests/test_equivalence.py::test_event_matches_reference_spike_input_small_layers[event]",
            "tests/test_equivalence.py::test_exact_arithmetic_bit_identical",
            "tests/test_equivalence.py::test_raster_events_and_bool_inputs_agree",
            "tests/test_graph.py::test_exact_graphs_identical",
            "tests/test_graph.py::test_delays_shift_arrival_exactly",
            "tests/test_graph.py::test_xoshiro_matches_reference_implementation",
        ],
        400,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail


def test_the_bounds_check_leg_catches_an_out_of_range_index(tmp_path):
    """``NUMBA_BOUNDSCHECK=1`` (the leg of .ci/run that reruns the kernel
    tests with it) turns a kernel's out-of-range write into an IndexError;
    compiled into a cache of its own, as the leg does."""
    code = (
        "import numpy as np, snn_kernels as k\n"
        "x = np.ones((1, 1)); drive = np.zeros((1, 1))\n"
        "rowptr = np.array([0, 1], np.int64); cols = np.array([5], np.int32)\n"
        "try:\n"
        "    k.csr_drive(x, rowptr, cols, np.ones(1, np.float32), drive)\n"
        "except IndexError as err:\n"
        "    print('IndexError', err)\n"
    )
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "IndexError" in proc.stdout, proc.stdout + proc.stderr
