"""The graph kernel's delivery of a projection whose rows are all the same few
targets (``kernels.graph.plan_tables``' ``proj_rows``: a dense projection
into a small clock-stepped population, such as a converted network's readout
stepped by the early exit): the sums of those targets are kept in registers
over a step's spikes, each target's adds in spike order, so the result is the
reference's exactly (dyadic weights: every sum exact)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from snn_kernels.graph import ROW_REGISTERS, plan_tables

NONZERO = np.array([w for w in np.arange(-8, 9) / 8.0 if w != 0])  # dense rows: every entry a synapse


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_out=st.integers(1, ROW_REGISTERS + 2),
    kind=st.sampled_from(["matrix", "all", "shared", "ragged"]),
    delay=st.integers(0, 1),
)
def test_few_identical_rows_equal_reference_exactly(seed, n_out, kind, delay):
    """x -> h (recurrent) -> o, o clock-stepped and read: spikes, membranes and
    SynOps of the graph kernel (every population stepped together) equal the
    reference's, for rows of 1 .. ROW_REGISTERS + 2 targets given as a matrix,
    as ``"all"``, with one shared weight, or ragged (one row shorter: the
    general delivery)."""
    rng = np.random.default_rng(seed)
    g = snn.Graph()
    x = g.input(6, name="x")
    h = g.population(9, snn.IF(threshold=1.0), name="h")
    o = g.population(n_out, snn.LIF(beta=0.5, threshold=0.75), name="o")
    g.connect(x, h, rng.choice(NONZERO, (9, 6)), delay=0)
    g.connect(h, h, rng.choice(NONZERO, (9, 9)) * (rng.random((9, 9)) < 0.3), delay=1)
    w = rng.choice(NONZERO, (n_out, 9))
    if kind == "matrix":
        g.connect(h, o, w, delay=delay)
    elif kind == "all":
        g.connect(h, o, w, connectivity="all", delay=delay)
    elif kind == "shared":
        rowptr = np.arange(0, 9 * n_out + 1, n_out)
        g.connect(h, o, 0.625, connectivity=(rowptr, np.tile(np.arange(n_out), 9)), delay=delay)
    else:
        w[0, 4] = 0.0  # h's neuron 4 reaches one target fewer
        g.connect(h, o, w, delay=delay)
    T, batch = 14, 2
    spikes = (rng.random((T, batch, x.n)) < 0.5).astype(np.uint8)
    record = {"o": np.arange(n_out)}
    ref = g.run(T, inputs={"x": spikes}, backend="reference", record_v=record)
    sim = g.start(T, inputs={"x": spikes}, mode="clock", together=True, record_v=record)
    got = sim.advance().result()
    assert ref.total("spikes") > 0
    for name in ("h", "o"):
        np.testing.assert_array_equal(got.spikes(name), ref.spikes(name), err_msg=name)
    np.testing.assert_array_equal(got.v("o"), ref.v("o"))
    np.testing.assert_array_equal(sim.totals()["o"][:, 0], ref.counts[ref.names.index("o")].synops)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([[0, 1, 2]] * 4, 3),  # the same three targets
        ([[2, 3]] * 3, 2),  # the same run, not from 0
        ([list(range(ROW_REGISTERS))] * 2, ROW_REGISTERS),
        ([list(range(ROW_REGISTERS + 1))] * 2, 0),  # too many to hold in registers
        ([[0, 1, 2], [0, 1]], 0),  # a shorter row
        ([[0, 1], [1, 2]], 0),  # another first target
        ([[0, 2], [0, 2]], 0),  # not consecutive
        ([[], []], 0),  # empty rows
    ],
)
def test_rows_held_in_registers_only_when_all_alike(rows, expected):
    """``proj_rows``: the row length when every row of a CSR projection is
    the same run of at most ``ROW_REGISTERS`` consecutive targets, else 0."""
    cols = np.array([c for row in rows for c in row], np.int32)
    rowptr = np.concatenate(([0], np.cumsum([len(row) for row in rows]))).astype(np.int64)
    n_src, n_tgt = len(rows), ROW_REGISTERS + 2
    tables = plan_tables(
        np.array([0, n_src, n_src + n_tgt], np.int64),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),  # CSR
        np.zeros((1, 15), np.int64),
        np.zeros(1, np.int64),
        rowptr,
        cols,
        np.ones(max(len(cols), 1), np.float32),
        np.zeros(1, np.int64),
    )
    assert tables["proj_rows"].tolist() == [expected]
