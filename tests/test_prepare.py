"""``prepare()`` readies everything a run and the reading of its result use:
after it, a run and the first read of its final membrane compile and load
no kernel (a lazy readout's neurons are brought forward when the membrane
is first read, by ``kernels.settle``; before, that compiled on a user's
first read: 0.9-1.0 s on a cold cache, 11 ms loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import NOJIT

from tests.test_specialisations import COUNT, ROOT

pytestmark = pytest.mark.skipif(NOJIT, reason="counts compiled kernels")

GRAPH = (
    "g = snn.Graph()\n"
    "a = g.input(20, name='in')\n"
    "h = g.population(30, snn.IF(), name='h', mode='event')\n"
    "o = g.population(5, snn.IF(threshold=np.inf), name='out', mode='clock')\n"
    "g.connect(a, h, rng.random((30, 20)), delay=0)\n"
    "g.connect(h, o, rng.random((5, 30)), delay=0)\n"
    "g.prepare()\n"
    "before = compiled()\n"
    "r = g.run(8, inputs={'in': (rng.random((8, 3, 20)) < 0.3).astype(np.uint8)})\n"
)
STACK = (
    "net = snn.Network([snn.Conv2d((1, 6, 6), 4, 3, snn.IF(), padding=1, v_init=0.5, seed=0),\n"
    "                   snn.Linear(144, 5, snn.IF(threshold=np.inf), seed=1)])\n"
    "net.prepare()\n"
    "before = compiled()\n"
    "r = net.run(analog=rng.random((3, 36)), T=8)\n"
    "r.membrane\n"
    "r = net.run((rng.random((8, 2, 36)) < 0.3).astype(np.uint8))\n"
)


@pytest.mark.parametrize("network", ["graph", "stack"])
def test_nothing_compiles_after_prepare(network):
    code = (
        COUNT
        + "import numpy as np, snn\nrng = np.random.default_rng(0)\n"
        + (GRAPH if network == "graph" else STACK)
        + "r.membrane\nprint(json.dumps({'before': before, 'after': compiled()}))\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after = ({k: sorted(map(json.dumps, v)) for k, v in got[w].items()} for w in ("before", "after"))
    assert "snn_kernels.neuron.settle" in before
    assert after == before  # (as sets: gc lists the dispatchers in any order)
