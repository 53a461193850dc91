"""What a batch-1 call no longer computes on every call (issue 12): a
layer's bias is known uniform or not from its first two values where they
differ, whether some bias is positive is kept with the bias, and a result's
counts are assembled when first read. Checked here: each gives what the
full computation gives, whenever it is read."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import snn
from snn.run import schedule as sched


class _Pop:
    def __init__(self, bias):
        self.bias = np.asarray(bias, np.float64)


@pytest.mark.parametrize(
    "bias, drive",
    [
        ([0.5, 0.5, 0.5], None),
        ([-0.5, -0.5, -0.5], None),
        ([0.0, 0.0, 0.0], None),
        ([0.1, 0.1, -0.2], None),  # the first two equal, not all
        ([-0.1, -0.1, 0.2], None),
        ([0.3, -0.1, 0.2], None),
        ([0.0, 0.0, 0.0], [[0.1, 0.1, 0.1]]),
        ([0.0, 0.0, 0.0], [[0.1, 0.1, 0.3], [0.1, 0.1, 0.1]]),  # uniform in the first sample only
        ([0.0, 0.0, 0.0], [[-0.1, -0.1, -0.1], [-0.1, -0.1, 0.2]]),
        ([0.2, 0.0, 0.0], [[-0.2, 0.0, 0.0]]),  # all 0 once summed
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_bias_is_shared_only_when_all_are_equal(bias, drive, dtype):
    pop = _Pop(bias)
    drive = None if drive is None else np.asarray(drive)
    full, kernel, positive = sched._layer_bias(dtype, pop, drive)
    expected = np.atleast_2d(pop.bias + (0 if drive is None else drive)).astype(dtype)
    np.testing.assert_array_equal(full, expected)
    if np.all(expected == expected.flat[0]):
        assert kernel.shape == (1, 1) and kernel[0, 0] == expected.flat[0]
    else:
        assert kernel is full
    assert positive in (None, bool(expected.max() > 0))
    assert positive is not None or drive is not None  # known without a drive
    assert sched._positive((full, kernel, positive)) == bool(expected.max() > 0)


def test_a_bias_kept_for_some_samples_knows_again_whether_one_is_positive():
    pop = _Pop([0.0, 0.0])
    drive = np.array([[-1.0, -1.0], [0.5, -1.0], [-1.0, -2.0]])
    bias = sched._layer_bias(np.float64, pop, drive)
    kept = sched._bias_rows(bias, np.array([0, 2]))
    np.testing.assert_array_equal(kept[0], bias[0][[0, 2]])
    assert sched._positive(kept) is False and sched._positive(bias) is True
    shared = sched._layer_bias(np.float64, pop, np.full((3, 2), 0.25))
    kept = sched._bias_rows(shared, np.array([1]))
    assert kept[1].shape == (1, 1) and sched._positive(kept) is True


def _stack(seed=0):
    rng = np.random.default_rng(seed)
    return snn.Network(
        [
            snn.Conv2d((1, 6, 6), 4, 3, padding=1, neuron=snn.IF(), weight=rng.normal(0, 0.8, (4, 1, 3, 3))),
            snn.Linear(144, 5, snn.IF(), weight=rng.normal(0, 0.3, (5, 144)), bias=0.05),
        ]
    )


def _counts(result):
    return [
        (c.name, c.mode, *(getattr(c, f).tolist() for f in ("synops", "macs", "updates", "dense_updates")))
        + (c.spikes.tolist(), c.input_events.tolist())
        for c in result.counts
    ]


def test_counts_read_late_are_those_of_their_run():
    net = _stack()
    x = np.random.default_rng(1).uniform(0, 1, (2, 36))
    eager = net.run(analog=x, T=6)
    expected = _counts(eager)
    late = net.run(analog=x, T=6)
    net.layers[1].bias = 0.5  # an edit, and runs of other inputs, before its counts are read
    net.run(analog=2 * x, T=3)
    assert _counts(late) == expected
    assert [c.mode for c in late.counts] == [c.mode for c in eager.counts]
    assert late.total("spikes") == sum(int(t.tptr[:, -1].sum()) for t in late.trains)


def test_a_pickled_result_holds_its_counts():
    net = _stack()
    result = net.run(analog=np.ones((1, 36)), T=4)
    copy = pickle.loads(pickle.dumps(result))
    assert not callable(copy._counts)
    assert _counts(copy) == _counts(result)


def test_graph_counts_read_after_the_graph_grew_cover_the_populations_run():
    g = snn.Graph()
    inp = g.input(3, name="in")
    out = g.population(2, snn.IF(), name="out")
    g.connect(inp, out, weight=np.ones((2, 3)))
    spikes = np.ones((4, 1, 3), np.uint8)
    expected = _counts(g.run(4, inputs={"in": spikes}))
    result = g.run(4, inputs={"in": spikes})
    g.population(2, snn.IF(), name="later")
    assert [c.name for c in result.counts] == ["in", "out"] == result.names
    assert _counts(result) == expected
    assert result.counts[1].synops.tolist() == [3 * 3 * 2]  # 3 steps of 3 spikes arrive (delay 1) at 2
