"""snn-profile (python -m snn.cli) on saved networks and inputs, via subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import snn

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "snn.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli")
    net = snn.Network(
        [snn.Linear(20, 15, snn.LIF(beta=0.9), seed=0), snn.Linear(15, 5, snn.LIF(beta=0.9), seed=1)]
    )
    snn.save(net, path / "net.npz")
    spikes = snn.bernoulli(np.full((2, 20), 0.2), T=30, seed=0)
    np.savez(path / "spikes.npz", spikes=spikes)
    analog = np.random.default_rng(0).uniform(0, 1, (3, 20))
    np.savez(path / "analog.npz", analog=analog)
    return path, net, spikes, analog


def test_spikes_profile_csv_json(saved):
    path, net, spikes, _ = saved
    proc = _cli(path / "net.npz", path / "spikes.npz", "--csv", path / "p.csv", "--json", path / "p.json")
    assert proc.returncode == 0, proc.stderr
    expected = snn.profile(net.run(spikes))
    assert "Profile(T=30, batch=2" in proc.stdout
    assert f"{expected.total('synops'):,}" in proc.stdout
    data = json.loads((path / "p.json").read_text())
    assert data == expected.to_dict()
    assert (path / "p.csv").read_text().count("\n") == 3


def test_analog_needs_T(saved):
    path, net, _, analog = saved
    proc = _cli(path / "net.npz", path / "analog.npz")
    assert proc.returncode != 0 and "--T" in proc.stderr
    proc = _cli(path / "net.npz", path / "analog.npz", "--T", 12, "--json", path / "a.json")
    assert proc.returncode == 0, proc.stderr
    expected = snn.profile(net.run(analog=analog, T=12))
    assert json.loads((path / "a.json").read_text()) == expected.to_dict()


def test_graph_without_inputs(tmp_path):
    graph = snn.models.brunel(100, seed=0)
    snn.save(graph, tmp_path / "g.npz")
    proc = _cli(tmp_path / "g.npz", "--T", 100, "--json", tmp_path / "g.json")
    assert proc.returncode == 0, proc.stderr
    expected = snn.profile(graph.run(100, seed=0, progress=False))
    assert json.loads((tmp_path / "g.json").read_text()) == expected.to_dict()
    assert "exc" in proc.stdout and "dt=0.0001 s" in proc.stdout


def test_bad_inputs_file(saved, tmp_path):
    path = saved[0]
    np.savez(tmp_path / "bad.npz", other=np.zeros(3))
    proc = _cli(path / "net.npz", tmp_path / "bad.npz")
    assert proc.returncode != 0 and "'spikes' or 'analog'" in proc.stderr
    np.savez(tmp_path / "wide.npz", spikes=np.zeros((4, 1, 7), np.uint8))
    proc = _cli(path / "net.npz", tmp_path / "wide.npz")
    assert proc.returncode != 0 and "snn-profile:" in proc.stderr and "Traceback" not in proc.stderr


def test_main_in_process(saved, capsys):
    from snn.cli import main

    path, *_ = saved
    assert main([str(path / "net.npz"), str(path / "spikes.npz")]) == 0
    assert "SynOps" in capsys.readouterr().out
