"""One network model (issue 11): a stack runs as its graph, on the graph's
runner, and returns the one result type; what that brought to both sides
(recording a stack's layers, fully connected graph projections on the
dense kernels, drives over time, a graph's final membrane) is checked
against the clock-driven reference."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import build_network, examples, net_specs, run_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st

import snn


def _exact_stack(rng, sizes, reset="subtract"):
    """IF layers with weights in multiples of 1/8: every sum exact."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.integers(-8, 17, (n_out, n_in)) / 8
        layers.append(snn.Linear(n_in, n_out, snn.IF(threshold=1.0, reset=reset), weight=w, bias=0.125))
    return layers


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(30))
@given(spec=net_specs(exact=True), data=st.data())
def test_recording_a_stack_layer_matches_the_reference(spec, data):
    """``Network.run(record_v=...)``: the recorded layer is stepped; its
    membranes equal the reference's bit for bit (exact arithmetic), and no
    spike changes."""
    net = build_network(spec)
    k = data.draw(st.integers(0, len(net.layers) - 1))
    idx = np.arange(net.layers[k].n_out)
    kwargs = run_kwargs(spec)
    if spec.input_kind == "analog_tv" and k == 0:  # a drive over time runs as a layer only
        with pytest.raises(ValueError, match="drive over time"):
            net.run(**kwargs, record_v={k: idx})
        return
    ours = net.run(**kwargs, record_v={k: idx})
    ref = net.run(**kwargs, record_v={net.layer_name(k): idx}, backend="reference")
    plain = net.run(**kwargs)
    np.testing.assert_array_equal(ours.v(k), ref.v(k))
    for j in range(len(net.layers)):
        np.testing.assert_array_equal(ours.spikes(j), ref.spikes(j))
        np.testing.assert_array_equal(ours.spikes(j), plain.spikes(j))
        np.testing.assert_array_equal(ours.counts[j].synops, plain.counts[j].synops)
    np.testing.assert_array_equal(ours.membrane, ref.membrane)


@pytest.mark.usefixtures("warm_kernels")
def test_a_stack_result_is_the_one_result_type():
    rng = np.random.default_rng(0)
    net = snn.Network(_exact_stack(rng, [6, 5, 3]))
    x = (rng.random((12, 2, 6)) < 0.4).astype(np.uint8)
    result = net.run(x)
    assert type(result) is snn.RunResult and snn.GraphResult is snn.RunResult
    assert result.names == [net.layer_name(0), net.layer_name(1)]
    np.testing.assert_array_equal(result.spikes(net.layer_name(1)), result.spikes(-1))
    assert result.dt is None
    with pytest.raises(ValueError, match="no time step"):
        result.rate_hz()
    with pytest.raises(KeyError, match="no membrane recorded"):
        result.v(0)
    with pytest.raises(ValueError, match="no layer 5"):
        net.run(x, record_v={5: [0]})


@pytest.mark.usefixtures("warm_kernels")
def test_the_graph_of_a_stack_is_kept_until_a_layer_changes():
    rng = np.random.default_rng(1)
    net = snn.Network(_exact_stack(rng, [4, 3, 2]))
    graph = net.graph()
    assert net.graph() is graph
    x = (rng.random((10, 1, 4)) < 0.5).astype(np.uint8)
    before = net.run(x)
    net.layers[1].bias = 2.0  # a new bias: a new graph, and the run sees it
    assert net.graph() is not graph
    after = net.run(x)
    ref = net.run(x, backend="reference")
    np.testing.assert_array_equal(after.spikes(-1), ref.spikes(-1))
    assert after.counts[1].spikes.sum() > before.counts[1].spikes.sum()
    copy = pickle.loads(pickle.dumps(net))
    assert copy._graph is None  # pickles leave the graph out
    np.testing.assert_array_equal(copy.run(x).spikes(-1), after.spikes(-1))


def test_stack_layer_names_must_be_unique():
    layers = [snn.Linear(2, 2, name="a", seed=0), snn.Linear(2, 2, name="a", seed=1)]
    with pytest.raises(ValueError, match="unique"):
        snn.Network(layers)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", ["event", "clock", "dense", "auto"])
def test_fully_connected_projection_runs_the_dense_kernels(mode):
    """``connectivity="all"``: every entry a synapse (zeros counted), run by
    the dense kernels as a layer, equal to the reference bit for bit."""
    rng = np.random.default_rng(2)
    g = snn.Graph()
    x = g.input(7)
    h = g.population(5, snn.IF(threshold=1.0), bias=0.25, name="h")
    w = rng.integers(-8, 17, (5, 7)) / 8
    w[:, 0] = 0.0  # zeros stay synapses
    proj = g.connect(x, h, w, connectivity="all", delay=0)
    assert proj.rows is not None and proj.n_synapses == 35
    spikes = (rng.random((20, 3, 7)) < 0.4).astype(np.uint8)
    ours = g.run(20, inputs={x: spikes}, mode=mode)
    ref = g.run(20, inputs={x: spikes}, backend="reference")
    np.testing.assert_array_equal(ours.spikes("h"), ref.spikes("h"))
    np.testing.assert_array_equal(ours.counts[1].synops, spikes.sum(axis=(0, 2)) * 5)
    np.testing.assert_array_equal(ours.membrane, ref.membrane)
    if mode != "auto":
        assert ours.counts[1].mode == mode
    with pytest.raises(ValueError, match="connectivity must be"):
        g.connect(x, h, w, connectivity="some")


@pytest.mark.usefixtures("warm_kernels")
def test_dense_mode_on_a_stepped_population_runs_clock():
    rng = np.random.default_rng(3)
    g = snn.Graph()
    x = g.input(4)
    h = g.population(6, snn.IF(threshold=1.0), name="h", mode="dense")
    g.connect(x, h, rng.integers(0, 9, (6, 4)) / 8, connectivity="all", delay=0)
    g.connect(h, h, rng.integers(-4, 5, (6, 6)) / 8, connectivity="all", delay=1)  # a cycle: stepped
    spikes = (rng.random((15, 2, 4)) < 0.5).astype(np.uint8)
    ours = g.run(15, inputs={x: spikes})
    ref = g.run(15, inputs={x: spikes}, backend="reference")
    assert ours.counts[1].mode == "clock"
    np.testing.assert_array_equal(ours.spikes("h"), ref.spikes("h"))
    np.testing.assert_array_equal(ours.membrane, ref.membrane)


@pytest.mark.usefixtures("warm_kernels")
def test_a_drive_over_time_matches_the_reference_and_is_refused_where_stepped():
    rng = np.random.default_rng(4)
    g = snn.Graph()
    x = g.input(3)
    h = g.population(5, snn.IF(threshold=1.0), name="h")
    g.connect(x, h, rng.integers(0, 9, (5, 3)) / 8, delay=0)
    T, B = 16, 2
    drive = rng.integers(-2, 5, (T, B, 5)) / 8
    spikes = (rng.random((T, B, 3)) < 0.3).astype(np.uint8)
    ours = g.run(T, inputs={x: spikes}, drive={h: drive})
    ref = g.run(T, inputs={x: spikes}, drive={h: drive}, backend="reference")
    assert ours.counts[1].mode == "dense"
    np.testing.assert_array_equal(ours.spikes("h"), ref.spikes("h"))
    np.testing.assert_array_equal(ours.membrane, ref.membrane)
    chunked = g.start(T, inputs={x: spikes}, drive={h: drive})
    for steps in (5, 1, 10):
        chunked.advance(steps)
    np.testing.assert_array_equal(chunked.result().spikes("h"), ours.spikes("h"))
    with pytest.raises(ValueError, match="drive over time"):
        g.run(T, inputs={x: spikes}, drive={h: drive}, record_v={h: [0]})
    with pytest.raises(ValueError, match="varies over time"):
        g.start(None, drive={h: drive[:, :1]})
    with pytest.raises(ValueError, match=r"\[T=16, batch, 5\]"):
        g.run(T, inputs={x: spikes}, drive={h: drive[:4]})


@pytest.mark.usefixtures("warm_kernels")
def test_a_gate_only_stack_runs():
    """A stack of one max pool (no neurons): no membrane, spikes gated."""
    net = snn.Network([snn.MaxPool2d((1, 2, 2), 2)])
    x = np.zeros((3, 1, 4), np.uint8)
    x[0, 0, 1] = 1
    result = net.run(x)
    assert result.membrane is None
    assert result.spikes(0)[0, 0, 0] == 1


@pytest.mark.usefixtures("warm_kernels")
def test_a_fully_connected_projection_saves_as_rows(tmp_path):
    rng = np.random.default_rng(5)
    net = snn.Network(_exact_stack(rng, [5, 4, 3]))
    graph = net.graph()
    snn.save(graph, tmp_path / "g")
    loaded = snn.load(tmp_path / "g")
    assert all(p.rows is not None for p in loaded.projections)
    for a, b in zip(graph.projections, loaded.projections, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
    x = (rng.random((10, 2, 5)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(loaded.run(10, inputs={"input": x}).spikes(-1), net.run(x).spikes(-1))
