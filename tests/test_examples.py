"""The example scripts run end to end (so they never rot): each is started
as a user would start it, in a subprocess from the repository root, with a
non-interactive matplotlib backend, on its quick settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(args, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return proc.stdout


def _percent(pattern, text):
    match = re.search(pattern, text, re.MULTILINE)
    assert match, (pattern, text[-3000:])
    return float(match.group(1)) / 100


def test_quickstart():
    out = _run(["examples/quickstart.py", "--quick"])
    assert "Network(" in out and "Linear(64 -> 128" in out
    ann = _percent(r"ANN test accuracy: ([\d.]+)%", out)
    assert ann > 0.9
    # the table: one row per T of --quick (8 and 32), accuracy close to the ANN's
    for T in (8, 32):
        acc = _percent(rf"^\s*{T}\s+([\d.]+)%", out)
        assert acc > ann - 0.05, (T, acc, ann)
    assert "Per-layer counts" in out and "SynOps" in out and "MACs" in out
    assert re.search(r"^\s*64\s", out, re.MULTILINE) is None  # --quick: no T = 64 row


def test_convert_digits(tmp_path):
    out = _run(
        [
            "examples/convert_digits.py",
            "--epochs",
            "3",
            "--steps",
            "4",
            "8",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert "ANN test accuracy:" in out and "(3 epochs)" in out
    assert "Conv2d(1x8x8 -> 16x8x8" in out
    for T in (4, 8):
        assert re.search(rf"^\s*{T}\s+[\d.]+%", out, re.MULTILINE), (T, out)
    assert re.search(r"^\s*ANN\s+[\d.]+%", out, re.MULTILINE)
    assert "SynOps" in out and "energy" in out
    assert re.search(r"early exit \(patience \d+\): mean exit step [\d.]+ of 8, .*the full run: ", out), out
    plot = tmp_path / "convert_digits.png"
    assert f"plot: {plot}" in out
    assert plot.is_file() and plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_brunel(tmp_path):
    out = _run(
        ["examples/brunel.py", "--n", "2000", "--duration", "0.2", "--out", str(tmp_path), "--no-progress"]
    )
    assert "Projection('inh' -> 'exc'" in out and "Poisson(100 x 20 Hz" in out
    rate = float(re.search(r"mean rate: ([\d.]+) Hz", out).group(1))
    cv = float(re.search(r"ISI CV: ([\d.]+)", out).group(1))
    assert 3.0 < rate < 30.0 and 0.3 < cv < 1.5, out[-2000:]
    assert re.search(r"simulated 0.2 s \(2000 steps\)", out)
    assert (tmp_path / "brunel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snntorch_digits():
    out = _run(["examples/snntorch_digits.py", "--quick"])
    ours = _percent(r"event-driven test accuracy: ([\d.]+)%", out)
    ref = _percent(r"snnTorch test accuracy: ([\d.]+)%", out)
    assert ours > 0.8 and ours == ref
    assert _percent(r"identical output spike trains: ([\d.]+)%", out) > 0.95
    assert "SynOps" in out


def test_event_digits():
    out = _run(["examples/event_digits.py", "--quick", "--no-progress"])
    assert re.search(r"[\d,]+ events per test sample", out) and "inputs active per step" in out
    ann = _percent(r"ANN test accuracy: ([\d.]+)%", out)
    snn_acc = _percent(r"SNN test accuracy: ([\d.]+)% at T=300", out)
    assert ann > 0.5 and snn_acc > ann - 0.1, (ann, snn_acc)
    assert "Conv2d(2x32x32 -> 16x16x16" in out
    assert re.search(r"SynOps per sample: [\d.]+ M, against 151.4 M MACs", out)
    assert "rate/step" in out and "skipped" in out  # the sparsity profile
