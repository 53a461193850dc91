"""Synaptic operations per projection (``RunResult.projection_synops``):
counted from the spikes on every path, equal to the reference backend's own
count made step by step as it delivers, and summing to each population's
SynOps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from tests.conftest import examples
from tests.test_graph import graphs


@given(graphs(exact=True), st.integers(0, 1000), st.sampled_from(["event", "clock", None]))
@settings(max_examples=examples(40), deadline=None)
def test_projection_synops_on_every_path(case, seed, mode):
    g, inputs, T, batch = case
    kw = dict(inputs=inputs, batch_size=None if inputs else batch, seed=seed)
    ours = g.run(T, mode=mode, **kw)
    ref = g.run(T, backend="reference", **kw)
    names = [p.name for p in g.projections if p.kind != "maxpool"]
    assert sorted(ours.projection_synops) == sorted(ref.projection_synops) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(ours.projection_synops[name], ref.projection_synops[name], err_msg=name)
    for pop in g.populations:
        if pop.is_input:
            continue
        into = [p.name for p in g.projections if p.target is pop]
        summed = sum((ours.projection_synops[n] for n in into), np.zeros(ours.batch_size, np.int64))
        np.testing.assert_array_equal(
            summed, ours.counts[ours.names.index(pop.name)].synops, err_msg=pop.name
        )


def test_a_stack_counts_its_projections():
    """A stack's result names its graph's projections; the reference
    backend's stack runner gets the same counts from its spikes."""
    rowptr, cols = snn.fixed_in_degree(9, 4, 5, seed=1)
    sparse = snn.SparseLinear(
        9, 4, snn.IF(threshold=0.5), rowptr=rowptr, cols=cols, weights=np.full(len(cols), 0.4)
    )
    net = snn.Network([snn.Linear(12, 9, snn.LIF(beta=0.5), seed=0), sparse])
    spikes = (np.random.default_rng(0).random((15, 3, 12)) < 0.4).astype(np.uint8)
    ours, ref = net.run(spikes=spikes), net.run(spikes=spikes, backend="reference")
    assert [p.name for p in net.graph().projections] == list(ours.projection_synops)
    for name, synops in ours.projection_synops.items():
        np.testing.assert_array_equal(synops, ref.projection_synops[name])
    np.testing.assert_array_equal(list(ours.projection_synops.values())[1], ours.counts[1].synops)
    assert ours.counts[1].synops.sum() > 0


def test_projection_names_are_unique():
    """Counts are by name: a pair joined twice gets ``#2``; a name given
    twice is refused."""
    g = snn.Graph()
    a, b = g.population(2, snn.IF(), name="a"), g.population(2, snn.IF(), name="b")
    first, second = g.connect(a, b, np.ones((2, 2))), g.connect(a, b, np.ones((2, 2)), delay=2)
    assert (first.name, second.name) == ("a->b", "a->b#2")
    g.connect(b, a, np.ones((2, 2)), delay=1, name="back")
    with pytest.raises(ValueError, match="unique"):
        g.connect(a, b, np.ones((2, 2)), name="back")
    assert len(g.projections) == 3
