"""What a batch-1 call keeps from one call to the next since issue 12's
last cut: a graph's layer keeps its kernel calls (bound to its neuron,
tables and initial membrane), a stack's first layer its drive kernel, a
run its silent inputs; the MACs of an analog input are counted when the
counts are first read. Checked here: each follows the changes it must
follow, and what a result shows is the run's own."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import snn
from snn.model.conv import kernel_layout
from snn.run import paths
from snn.run import schedule as sched


def _stack(rng, dtype=np.float64):
    c1 = snn.Conv2d(
        (1, 6, 6),
        4,
        3,
        padding=1,
        neuron=snn.IF(threshold=1.0),
        weight=rng.normal(0.2, 0.6, (4, 1, 3, 3)),
        bias=0.02,
        v_init=0.5,
    )
    fc = snn.Linear(144, 3, snn.IF(threshold=np.inf), weight=rng.normal(0, 0.5, (3, 144)))
    return snn.Network([c1, fc], dtype=dtype)


def _outcome(result):
    return (
        [
            (t.tptr.tolist(), [t.idx[b, : t.tptr[b, -1]].tolist() for b in range(len(t.tptr))])
            for t in result.trains
        ],
        [
            (c.mode, c.synops.tolist(), c.macs.tolist(), c.updates.tolist(), c.spikes.tolist())
            for c in result.counts
        ],
        result.membrane.tolist(),
    )


def _fresh(net):
    return pickle.loads(pickle.dumps(net))


@pytest.mark.usefixtures("warm_kernels")
def test_a_first_layer_given_new_weights_drives_with_them():
    """The drive kernel kept for a first layer is made again once the
    layer's weights are new arrays: the next run is a fresh copy's."""
    rng = np.random.default_rng(3)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    before = _outcome(net.run(analog=x, T=6))
    first = net.layers[0]
    first.weight = -first.weight
    first.kernel_weights = kernel_layout(first.weight)
    after = _outcome(net.run(analog=x, T=6))
    assert after == _outcome(_fresh(net).run(analog=x, T=6))
    assert after != before  # the new weights show (else the test could not fail)
    np.testing.assert_array_equal(paths._vecmat(x, first), paths._vecmat(x, copy.deepcopy(first)))


@pytest.mark.usefixtures("warm_kernels")
def test_the_macs_are_those_of_the_input_the_run_had():
    """MACs counted when the counts are first read: of the input as it was
    at the call, even if the caller changed it since."""
    rng = np.random.default_rng(4)
    net = _stack(rng)
    x = rng.uniform(0, 1, (2, 36)) * (rng.random((2, 36)) < 0.5)
    expected = (x != 0) @ net.layers[0].fan_out
    eager = net.run(analog=x, T=4)
    eager_counts = _outcome(eager)
    late = net.run(analog=x, T=4)
    x[:] = 1.0  # the caller's array, changed before the counts are read
    np.testing.assert_array_equal(late.counts[0].macs, expected)
    assert _outcome(late) == eager_counts
    assert not np.array_equal(expected, (x != 0) @ net.layers[0].fan_out)


@pytest.mark.usefixtures("warm_kernels")
def test_a_graphs_layers_keep_their_calls_but_no_copy_carries_them():
    """A graph's layer keeps its kernel calls (closures, which no pickle
    holds): a pickled or copied graph leaves them out and runs the same."""
    rng = np.random.default_rng(5)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    ran = _outcome(net.run(analog=x, T=5))
    graph = net.graph()
    layers = [stage.layer for stage in graph.schedule()]
    assert all(layer.calls for layer in layers)
    clone = pickle.loads(pickle.dumps(graph))
    assert not any(stage.layer.calls for stage in clone.schedule())
    drive = {graph.populations[1].name: paths._vecmat(x, net.layers[0])}
    a = graph.run(5, drive=drive, inputs={graph.populations[0].name: np.zeros((5, 1, 36), np.uint8)})
    b = clone.run(5, drive=drive, inputs={clone.populations[0].name: np.zeros((5, 1, 36), np.uint8)})
    for s, t in zip(a.trains, b.trains, strict=True):
        np.testing.assert_array_equal(s.tptr, t.tptr)
    assert _outcome(net.run(analog=x, T=5)) == ran


@pytest.mark.usefixtures("warm_kernels")
def test_a_stream_keeps_a_few_calls_per_layer():
    """Chunks of a stream ask each layer for calls of ever more rows: a
    layer keeps a few, and the stream computes what one run computes."""
    rng = np.random.default_rng(6)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    sim = net.start(40, analog=x)
    for _ in range(20):
        sim.advance(2)
    layers = [stage.layer for stage in net.graph().schedule() if stage.layer is not None]
    assert all(0 < len(layer.calls) <= 8 for layer in layers)
    whole = net.run(analog=x, T=40)
    for k in range(len(net.layers)):
        np.testing.assert_array_equal(sim.result().spike_counts(k), whole.spike_counts(k))


@pytest.mark.usefixtures("warm_kernels")
def test_silent_inputs_are_shared_by_runs_but_shown_by_none():
    """A run's silent inputs (a stack's analog input population, a layer
    of no input) are one object per shape, which no result shows."""
    a = sched.silent_trains(4, 1, 36)
    assert sched.silent_trains(4, 1, 36) is a
    assert sched.silent_trains(5, 1, 36) is not a and sched.silent_trains(4, 1, 7).n == 7
    assert a.total == 0 and a.tptr.flags.writeable  # (numba compiles read-only arrays as another type)
    rng = np.random.default_rng(7)
    net = _stack(rng)
    x = rng.uniform(0, 1, (1, 36))
    result = net.run(analog=x, T=4)
    silent = sched.silent_trains(4, 1, 36)
    assert all(t is not silent for t in result.trains)
    assert not silent.tptr.any()  # still silent after the run


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("batch", [1, 3])
def test_spikes_of_one_sample_are_a_contiguous_view(batch):
    """A batch-1 layer's spike indices are the first ones of its buffer (no
    copy): C-contiguous, as the kernels that read them next require, and
    run back as input they give the same run as a copy does."""
    rng = np.random.default_rng(8)
    net = _stack(rng)
    x = rng.uniform(0, 1, (batch, 36))
    result = net.run(analog=x, T=6)
    trains = result.trains[0]
    assert trains.idx.flags.c_contiguous
    second = snn.Network([net.layers[1]])
    a = second.run(trains)
    b = second.run(snn.SpikeTrains(trains.tptr.copy(), trains.idx.copy(), trains.n))
    assert _outcome(a) == _outcome(b)
