"""What the early exit keeps per graph (``snn.convert.stopping._EXITS``: its
plans, runners, a stack's first layer) is made from the graph as it was: a
graph edited after a run (a population, a projection, a Poisson source
added) or a stack whose layers changed must run as a fresh equivalent does,
never on the old plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snn
import snn.convert as sc
from snn.convert.chain import ConvertedNetwork
from tests.test_early_exit import Residual

torch.set_num_threads(1)

T = 16


def _fields(out):
    return (out.exit_step, out.decision, out.readout, out.synops, out.updates, out.macs)


def _same(a, b):
    for x, y in zip(_fields(a), _fields(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _data(n=6, seed=5):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 8, 8)) * (rng.random((n, 1, 8, 8)) < 0.6)


def _converted_graph():
    torch.manual_seed(3)
    return sc.convert(Residual().eval(), _data(30, 4))


def _edit(graph, how):
    """Edit ``graph`` so that its readout's input changes."""
    readout = graph[graph.readout]
    hidden = next(p for p in graph.populations if p.has_neurons and p is not readout)
    w = np.full((readout.n, hidden.n), 0.05, np.float32)
    if how == "connect":
        graph.connect(hidden, readout, w, connectivity="all", delay=0)
    elif how == "population":
        extra = graph.population(hidden.n, snn.IF(), bias=0.3, name="extra")
        graph.connect(hidden, extra, np.eye(hidden.n, dtype=np.float32), delay=0)
        graph.connect(extra, readout, w, connectivity="all", delay=0)
    else:
        graph.poisson_input(readout, 20, 200.0, 0.5)


@pytest.mark.parametrize("how", ["connect", "population", "poisson"])
@pytest.mark.parametrize("engine", ["kernel", "chunked"])
def test_a_graph_edited_after_a_run_runs_as_a_fresh_one(how, engine):
    x = _data()
    conv = _converted_graph()
    before = sc.run_early_exit(conv, x, T, patience=2, engine=engine)
    sc.run_early_exit(conv, x[:1], T, patience=2, engine=engine)  # batch 1 keeps its own arrays
    _edit(conv.network, how)
    after = sc.run_early_exit(conv, x, T, patience=2, engine=engine)
    after_1 = sc.run_early_exit(conv, x[:1], T, patience=2, engine=engine)
    fresh = _converted_graph()  # the same model, the same edit, never run before it
    _edit(fresh.network, how)
    want = sc.run_early_exit(fresh, x, T, patience=2, engine=engine)
    assert not np.array_equal(want.readout, before.readout)  # the edit matters
    _same(after, want)
    _same(after_1, sc.run_early_exit(fresh, x[:1], T, patience=2, engine=engine))


def test_the_edited_graph_exits_as_its_own_run_reads():
    """Never exiting (``patience = T``), the edited graph's early exit ends
    with the readout its plain run ends with."""
    x = _data()
    conv = _converted_graph()
    sc.run_early_exit(conv, x, T, patience=2, engine="kernel")
    _edit(conv.network, "connect")
    out = sc.run_early_exit(conv, x, T, patience=T, engine="kernel")
    assert (out.exit_step == T).all()
    np.testing.assert_allclose(out.readout, conv.run(x, T).membrane, rtol=1e-12, atol=1e-12)


def _stack(seed=0):
    shape = (1, 8, 8)
    head = snn.Conv2d(shape, 3, 3, padding=1, seed=seed, neuron=snn.IF(), v_init=0.5)
    return ConvertedNetwork(
        snn.Network([head, snn.Linear(head.n_out, 10, seed=seed + 1, neuron=snn.IF(threshold=np.inf))]),
        shape,
        [],
        {},
        [],
    )


def _change(network, how):
    first, last = network.layers
    if how == "bias":
        first.bias = np.linspace(-0.2, 0.4, first.n_out)
    elif how == "v_init":
        last.v_init = 3.0
    elif how == "neuron":
        first.neuron = snn.IF(threshold=0.5)
    elif how == "layer":
        network.layers[1] = snn.Linear(first.n_out, 10, seed=9, neuron=snn.IF(threshold=np.inf))
    else:
        network.dtype = np.float32


@pytest.mark.parametrize("how", ["bias", "v_init", "neuron", "layer", "dtype"])
def test_a_changed_stack_runs_as_a_fresh_one(how):
    """A stack's graph is made again when a layer changes
    (:meth:`snn.Network.graph`): the early exit then runs the new one."""
    x = _data()
    conv = _stack()
    before = sc.run_early_exit(conv, x, T, patience=2, engine="kernel")
    for _ in range(3):  # the third through the function kept for runs of one sample (stopping._one_stack)
        sc.run_early_exit(conv, x[:1], T, patience=2, engine="kernel")
    _change(conv.network, how)
    after = sc.run_early_exit(conv, x, T, patience=2, engine="kernel")
    after_1 = sc.run_early_exit(conv, x[:1], T, patience=2, engine="kernel")
    fresh = _stack()
    _change(fresh.network, how)
    want = sc.run_early_exit(fresh, x, T, patience=2, engine="kernel")
    assert not np.array_equal(want.readout, before.readout)
    _same(after, want)
    _same(after_1, sc.run_early_exit(fresh, x[:1], T, patience=2, engine="kernel"))
