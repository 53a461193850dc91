"""The benchmark scripts run (a smoke run each, tiny sizes): benchmarks are
not imported by the package, so an API change would otherwise break them
unnoticed until someone times something. Only the scripts that need no
training run here (seconds each); the training ones (digits, early_exit,
event_digits, digits_resnet, resnet18, resnet18_threads, video_digits, dask_scaling) take
minutes even with ``--quick --epochs 1``. No timing is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = {
    "sparse_crossover": ["--n", "2000", "--p", "1e-3", "1e-2", "--repeats", "1", "--cache", "{tmp}"],
    "brunel": ["--n", "1000", "--repeats", "1", "--export", "{tmp}/brunel.npz"],
    "stream_memory": ["--steps", "4000", "--chunk", "1000"],
    "profile_overhead": ["FF"],
    "kernel_csr": ["--quick"],
    "kernel_conv": ["--quick"],
}


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs(script, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in SMOKE[script]]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip(), "the script printed nothing"
