"""Kernels are specialised at compile time (issue 11 item 3, ``kernels._jit``):
a network compiles the kernels it uses and no more.

Each test runs in a subprocess with a new, empty ``NUMBA_CACHE_DIR``, so that
everything it needs is compiled there (nothing is loaded from a cache) and
the count of compiled specialisations (numba overloads of the dispatchers of
``snn_kernels``) is that of a cold start. The count is deterministic.

Bound: a 2-layer LIF network of ``Linear`` layers, event path, batch 1,
compiles 18 specialisations (measured): one layer kernel (dense projection,
event path, plain LIF, reset by subtraction; both layers share it) and 17
helpers of the event path (``kernels.neuron`` and ``kernels.event``), each
once. Before the kernels were specialised the same run compiled 33 (one
``dense_layer_sample`` taking every choice as a runtime flag, and helpers
compiled twice to six times: for int32 and int64 indices and for each
constant some caller passed), and a batch of 3 samples one more (the
parallel kernel).
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
SIMPLE_NETWORK_BOUND = 18

pytestmark = pytest.mark.skipif(NOJIT, reason="counts compiled kernels; nothing is compiled without the JIT")

COUNT = r"""
import gc, json
from numba.core.registry import CPUDispatcher

def compiled():
    # every specialisation of every dispatcher of snn_kernels, factory-made kernels included
    rows = {}
    for obj in gc.get_objects():
        if isinstance(obj, CPUDispatcher) and obj.py_func.__module__.startswith("snn_kernels"):
            name = f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"
            for sig in obj.overloads:
                literal = [str(sig[k]).startswith("Literal") for k in sorted(obj._positions)]
                rows.setdefault(name, []).append({"literal_choices": literal, "choices": list(obj.choices)})
            if obj.stats.cache_hits:
                rows.setdefault("loaded from a cache", []).append(name)
    if "loaded from a cache" in rows:  # gc.get_objects() has no fixed order
        rows["loaded from a cache"].sort()
    return rows
"""


def _child(code: str, cache_dir: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", COUNT + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_simple_network_compiles_only_what_it_uses(tmp_path):
    got = _child(
        "import numpy as np, snn\n"
        "net = snn.Network([snn.Linear(20, 10, snn.LIF(beta=0.9), seed=0, mode='event'),\n"
        "                   snn.Linear(10, 5, snn.LIF(beta=0.9), seed=1, mode='event')])\n"
        "net.run(snn.bernoulli(np.full((1, 20), 0.3), 10, seed=0))\n"
        "one = compiled()\n"
        "net.run(snn.bernoulli(np.full((3, 20), 0.3), 10, seed=0))\n"
        "print(json.dumps({'batch1': one, 'batch3': compiled()}))\n",
        tmp_path,
    )
    one = got["batch1"]
    assert "loaded from a cache" not in one, one["loaded from a cache"]
    count = sum(len(sigs) for sigs in one.values())
    assert count <= SIMPLE_NETWORK_BOUND, (count, sorted(one))
    # one layer kernel, specialised: dense projection, event path, no current,
    # no refractory period, reset by subtraction (the choices in its name)
    layer_kernels = [name.rsplit(".", 1)[1] for name in one if "_layer_sample" in name]
    assert layer_kernels == ["dense_layer_sample_0_0_0_0"], layer_kernels
    # nothing of a convolution, a sparse projection, the clock or dense paths,
    # a constant analog input, or a parallel kernel
    modules = {name.split(".")[1] for name in one}
    assert modules <= {"event", "neuron"}, modules
    assert not [name for name in one if "sparse" in name or "conv" in name or "sweep" in name], sorted(one)
    # every helper taking the model's flags was compiled with them as constants
    for name, sigs in one.items():
        for sig in sigs:
            assert all(sig["literal_choices"]), (name, sig)
    # a batch runs the samples on threads over the same kernels: nothing new
    assert got["batch3"] == one


def test_cache_entry_of_another_signature_is_compiled_again(tmp_path):
    """numba's on-disk index can point one signature's entry at another
    signature's code when processes add entries at the same time; such an
    entry is refused (compiled again), never run on arguments it was not
    compiled for. Simulated: the entries of a kernel's float32 and float64
    specialisations swapped in its index."""
    run = (
        "import numpy as np, snn_kernels as k\n"
        "from snn_kernels.clock import clock_kernel\n"
        "out = {}\n"
        "for dtype in (np.float64, np.float32):\n"
        "    state = np.zeros((1, 3, 4), dtype); tptr = np.zeros((1, 5), np.int64)\n"
        "    idx = np.zeros((1, 12), np.int32); counts = np.zeros((1, 4), np.int64)\n"
        "    currents = np.linspace(0, 1.5, 12).reshape(1, 4, 3).astype(dtype)\n"
        "    bias, v_init = np.zeros((1, 1), dtype), np.zeros(3, dtype)\n"
        "    k.clock_layer(currents, bias, dtype(0), dtype(0.5), dtype(1), 0, dtype(0), 0, v_init, False,\n"
        "                  state, tptr, idx, counts)\n"
        "    out[np.dtype(dtype).name] = [state[0, :, 0].tolist(), idx[0, : counts[0, 2]].tolist()]\n"
        "disp = clock_kernel(False, False, 0)\n"
        "out['cache_hits'] = sum(disp.stats.cache_hits.values())\n"
    )
    first = _child(run + "print(json.dumps(out))\n", tmp_path)
    assert first["cache_hits"] == 0
    swapped = _child(
        run + "index = disp._cache._cache_file\n"
        "entries = index._load_index()\n"
        "assert len(entries) == 2, entries\n"
        "a, b = entries\n"
        "entries[a], entries[b] = entries[b], entries[a]\n"
        "index._save_index(entries)\n"
        "print(json.dumps(out))\n",
        tmp_path,
    )
    assert swapped["cache_hits"] == 2  # loaded both (the cache worked), then swapped them
    again = _child(run + "print(json.dumps(out))\n", tmp_path)
    assert {key: again[key] for key in ("float64", "float32")} == {
        key: first[key] for key in ("float64", "float32")
    }
    assert again["cache_hits"] == 0  # both entries refused, compiled again


RECURRENT_GRAPH_BOUND = 10
# an input of 8 -> 20 LIF neurons, dense weights, and those 20 onto themselves with delay 1
RECURRENT_GRAPH = (
    "rng = np.random.default_rng(0)\n"
    "g = snn.Graph(dt=1e-3)\n"
    "x = g.input(8, name='x')\n"
    "a = g.population(20, snn.LIF(beta=0.9), name='a')\n"
    "g.connect(x, a, rng.uniform(0, 0.6, (20, 8)), delay=0)\n"
    "g.connect(a, a, rng.uniform(-0.3, 0.3, (20, 20)), delay=1)\n"
)


def test_recurrent_graph_compiles_only_what_it_uses(tmp_path):
    """A small recurrent graph (an input of 8 -> 20 LIF neurons, dense
    weights, and those 20 onto themselves with delay 1; no background,
    nothing recorded), stepped event-driven, batch 1, compiles 10
    specialisations (measured): one graph kernel (CSR projections only, no
    background, plain LIF neurons on the event path, nothing recorded: the
    choices in its name) and 9 helpers, each once: ``_close_plain`` and the
    ``kernels.neuron`` helpers of the event path (the self-driven spike
    search with constant model flags, calendars, bias, reset). Nothing of a
    convolution, the Poisson generator, the clock sweep, a current or a
    refractory period. Before the graph kernel was specialised the same run
    compiled 31 (``graph_sample`` and ``graph_init`` with every path, and
    helpers once per set of constant or runtime flags), and a batch of 3
    samples one more (the parallel kernel); now a batch runs on threads over
    the same kernel and compiles nothing more."""
    got = _child(
        "import numpy as np, snn\n"
        + RECURRENT_GRAPH
        + "spikes = lambda b: (rng.random((10, b, 8)) < 0.3).astype(np.uint8)\n"
        "g.run(10, inputs={'x': spikes(1)}, progress=False)\n"
        "one = compiled()\n"
        "g.run(10, inputs={'x': spikes(3)}, progress=False)\n"
        "print(json.dumps({'batch1': one, 'batch3': compiled()}))\n",
        tmp_path,
    )
    one = got["batch1"]
    assert "loaded from a cache" not in one, one["loaded from a cache"]
    count = sum(len(sigs) for sigs in one.values())
    assert count <= RECURRENT_GRAPH_BOUND, (count, sorted(one))
    # choices: csr, conv, background, event models, clock models, recorded models
    kernels = [name.rsplit(".", 1)[1] for name in one if "graph_samples" in name]
    assert kernels == ["graph_samples_1_0_0_1_0_0"], kernels
    modules = {name.split(".")[1] for name in one}
    assert modules <= {"graph", "neuron"}, modules
    assert not [name for name in one if "conv" in name or "sweep" in name or "general" in name], sorted(one)
    # the model's flags are constants; a population's reset is read at run time (one select)
    for name, sigs in one.items():
        for sig in sigs:
            flags = [lit for lit, c in zip(sig["literal_choices"], sig["choices"]) if c != "reset_mode"]
            assert all(flags), (name, sig)
    assert got["batch3"] == one


def test_prepared_merge_compiles_both_paths(tmp_path):
    """A population whose path is chosen from its input (``"auto"``, fed only
    by sources outside its stage: a merge) may run event- or clock-driven:
    ``prepare()`` (no input: event) compiles the kernel a run with dense
    input (clock) uses, so that run compiles nothing."""
    got = _child(
        "import numpy as np, snn\n"
        "rng = np.random.default_rng(0)\n"
        "g = snn.Graph(dt=1e-3)\n"
        "x, y = g.input(50, name='x'), g.input(50, name='y')\n"
        "m = g.population(40, snn.IF(), name='m')\n"
        "g.connect(x, m, rng.uniform(0, 0.6, (40, 50)), delay=0)\n"
        "g.connect(y, m, rng.uniform(0, 0.6, (40, 50)), delay=0)\n"
        "g.prepare()\n"
        "before = compiled()\n"
        "dense = {k: np.ones((30, 1, 50), np.uint8) for k in 'xy'}\n"
        "mode = g.run(30, inputs=dense, progress=False).counts[2].mode\n"
        "print(json.dumps({'before': before, 'after': compiled(), 'mode': mode}))\n",
        tmp_path,
    )
    assert got["mode"] == "clock"
    assert got["after"] == got["before"]


def test_copied_networks_compile_nothing_more(tmp_path):
    """A deep copy or an unpickled copy of a network or graph (calibration
    copies the converted network; Dask workers unpickle it) keeps its
    read-only arrays read-only (``snn._validate.KeepsReadOnly``): numpy
    gives copies back writeable, which numba compiles as another type, so
    every kernel the copy ran was compiled a second time (seconds each)."""
    got = _child(
        "import copy, math, pickle, numpy as np, snn\n"
        "net = snn.Network([snn.Conv2d((1, 6, 6), 4, 3, snn.IF(), padding=1, v_init=0.5, seed=0),\n"
        "                   snn.SparseLinear(144, 20, snn.LIF(beta=0.9), rowptr=np.arange(0, 721, 5),\n"
        "                                    cols=np.arange(720) % 20, weights=np.linspace(0, 0.3, 720)),\n"
        "                   snn.Linear(20, 5, snn.IF(threshold=math.inf), seed=2)])\n"
        + RECURRENT_GRAPH
        + "spikes = (rng.random((10, 2, 8)) < 0.3).astype(np.uint8)\n"
        "analog = rng.random((2, 36))\n"
        "def runs(n, h):\n"
        "    out = [n.run(analog=analog, T=8, mode=m).spikes(-1).tolist() for m in ('event', 'clock')]\n"
        "    return out + [h.run(10, inputs={'x': spikes}, progress=False).spikes('a').tolist()]\n"
        "first = runs(net, g)\n"
        "before = compiled()\n"
        "same = [runs(copy.deepcopy(net), copy.deepcopy(g)) == first,\n"
        "        runs(pickle.loads(pickle.dumps(net)), pickle.loads(pickle.dumps(g))) == first]\n"
        "print(json.dumps({'before': before, 'after': compiled(), 'same': same}))\n",
        tmp_path,
    )
    assert got["same"] == [True, True]
    assert got["after"] == got["before"]
