"""Runs of one sample over a few steps stepped together (``snn.run.schedule``'s
``_Together``): taken exactly where the rule says, and what they return is
the layered run's, bit for bit (spikes, counts, paths, membranes), on random
stacks of dense, convolution, pooling and sparse layers, IF and LIF, whether
the paths guessed hold or not; made again when a layer changes."""

from __future__ import annotations

import numpy as np
import pytest

import snn
from snn.run import schedule as sched
from snn.run.stepped import SteppedExit


def _stack(rng, kinds, neuron, dtype=np.float64):
    """A stack on 1x6x6 input of layers ``kinds`` ("conv", "avg", "dense",
    "csr"), random weights, biases and initial membranes."""
    layers, shape = [], (1, 6, 6)
    for kind in kinds:
        n_in = int(np.prod(shape))
        common = dict(bias=rng.normal(0, 0.05), v_init=float(rng.uniform(0, 0.5)))
        if kind == "conv":
            c = int(rng.integers(2, 5))
            w = rng.normal(0, 0.5, (c, shape[0], 3, 3))
            layers.append(snn.Conv2d(shape, c, 3, padding=1, neuron=neuron(), weight=w, **common))
            shape = (c, shape[1], shape[2])
        elif kind == "avg":
            layers.append(snn.AvgPool2d(shape, 2, neuron=neuron(), v_init=common["v_init"]))
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif kind == "dense":
            n = int(rng.integers(5, 30))
            layers.append(snn.Linear(n_in, n, neuron(), weight=rng.normal(0, 0.4, (n, n_in)), **common))
            shape = (n, 1, 1)
        else:
            n = int(rng.integers(5, 30))
            mask = rng.random((n, n_in)) < 0.3
            w = np.where(mask, rng.normal(0, 0.6, (n, n_in)), 0.0)
            layers.append(snn.SparseLinear.from_dense(w, neuron(), **common))
            shape = (n, 1, 1)
    return snn.Network(layers, dtype=dtype)


def _same(a, b):
    assert a.names == b.names
    assert [c.mode for c in a.counts] == [c.mode for c in b.counts]
    for k in range(len(a.names)):
        assert a.trains[k].tptr.tobytes() == b.trains[k].tptr.tobytes()
        used = int(a.trains[k].tptr[0, -1])
        assert a.trains[k].idx[0, :used].tobytes() == b.trains[k].idx[0, :used].tobytes()
        for field in ("synops", "macs", "updates", "dense_updates", "spikes", "input_events"):
            np.testing.assert_array_equal(getattr(a.counts[k], field), getattr(b.counts[k], field))
    assert (a.membrane is None) == (b.membrane is None)
    if a.membrane is not None:
        assert a.membrane.dtype == b.membrane.dtype and a.membrane.shape == b.membrane.shape
        assert a.membrane.tobytes() == b.membrane.tobytes()
    assert {k: v.tolist() for k, v in a.projection_synops.items()} == {
        k: v.tolist() for k, v in b.projection_synops.items()
    }


@pytest.fixture
def count_together(monkeypatch):
    """The number of runs stepped together since the test began (a list of one)."""
    calls = [0]
    real = SteppedExit.run_whole

    def counted(self, drives):
        calls[0] += 1
        return real(self, drives)

    monkeypatch.setattr(SteppedExit, "run_whole", counted)
    return calls


def _layered(monkeypatch, net, **kw):
    with monkeypatch.context() as m:
        m.setattr(sched, "TOGETHER_MAX_STEPS", 0)
        return net.run(**kw)


def test_taken_up_to_the_threshold_and_not_beyond(monkeypatch, count_together):
    rng = np.random.default_rng(0)
    net = _stack(rng, ["conv", "conv", "dense"], lambda: snn.IF(threshold=1.0))
    x = rng.random((2, 36))
    t_max = sched.TOGETHER_MAX_STEPS
    for T, batch, taken in [(t_max, 1, True), (1, 1, True), (t_max + 1, 1, False), (2, 2, False)]:
        before = count_together[0]
        got = net.run(analog=x[:batch], T=T)
        assert count_together[0] - before == int(taken), (T, batch)
        _same(got, _layered(monkeypatch, net, analog=x[:batch], T=T))
    before = count_together[0]
    for kw in ({"mode": "clock"}, {"mode": "event"}, {"record_v": {0: [0, 1]}}):
        net.run(analog=x[:1], T=2, **kw)  # a path forced by the run, or a recording: layered
    net.run(spikes=(rng.random((2, 1, 36)) < 0.5).astype(np.uint8), T=2)  # spike input: layered
    assert count_together[0] == before
    net.run(analog=x[:1], T=2, mode="auto")
    assert count_together[0] == before + 1


def test_not_taken_without_a_convolution_nor_with_a_gate(count_together):
    rng = np.random.default_rng(1)
    dense = _stack(rng, ["dense", "dense"], lambda: snn.LIF(beta=0.9))
    dense.run(analog=rng.random((1, 36)), T=4)
    gated = snn.Network(
        [
            snn.Conv2d((1, 6, 6), 2, 3, padding=1, neuron=snn.IF(), weight=rng.normal(0, 1, (2, 1, 3, 3))),
            snn.MaxPool2d((2, 6, 6), 2),
        ]
    )
    gated.run(analog=rng.random((1, 36)), T=4)
    assert count_together[0] == 0


_KINDS = [
    ["conv", "conv", "dense"],
    ["conv", "avg", "dense"],
    ["conv", "csr", "dense"],
    ["dense", "dense", "dense"],
    ["csr", "csr"],
    ["dense", "csr", "dense"],
]


@pytest.mark.parametrize("kinds", _KINDS, ids=["-".join(k) for k in _KINDS])
@pytest.mark.parametrize("neuron", ["if", "lif"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_layered_run_bit_for_bit(monkeypatch, count_together, kinds, neuron, dtype):
    monkeypatch.setattr(sched, "TOGETHER_NEEDS_CONV", False)  # dense and sparse stacks too
    make = (lambda: snn.IF(threshold=1.0)) if neuron == "if" else (lambda: snn.LIF(beta=0.8, threshold=0.7))
    rng = np.random.default_rng(abs(hash((tuple(kinds), neuron))) % 2**32)
    net = _stack(rng, kinds, make, dtype)
    x = rng.random((12, 36)) * rng.choice([0.5, 2.0])
    x[3] = 0.0  # a silent sample
    for T in (1, 3, sched.TOGETHER_MAX_STEPS):
        for s in range(len(x)):
            _same(net.run(analog=x[s : s + 1], T=T), _layered(monkeypatch, net, analog=x[s : s + 1], T=T))
    assert count_together[0] >= 1  # (a guess missed: the layered run; TOGETHER_MISSES of them: layered)


def test_a_layer_whose_layered_path_is_not_clock_gives_the_layered_run(monkeypatch, count_together):
    rng = np.random.default_rng(2)
    net = _stack(rng, ["conv", "dense", "dense"], lambda: snn.IF(threshold=1.0))
    graph = net.graph()
    key = (4, None, frozenset([net.layer_name(0)]))
    x = rng.random((40, 36)) * np.linspace(0.0, 2.0, 40)[:, None]  # silent to busy
    paths = set()
    for s in range(len(x)):
        expected = _layered(monkeypatch, net, analog=x[s : s + 1], T=4)
        layered = [c.mode for c in expected.counts]
        paths.add(tuple(layered))
        missed = graph.schedule().together(graph)._missed.get(key, 0)
        before = count_together[0]
        _same(net.run(analog=x[s : s + 1], T=4), expected)
        now = graph.schedule().together(graph)._missed.get(key, 0)
        if missed >= sched.TOGETHER_MISSES:  # a key that missed too often runs layered
            assert count_together[0] == before
        else:
            assert count_together[0] == before + 1
            assert now == missed + (layered != ["clock"] * 3)
    assert ("clock",) * 3 in paths and len(paths) > 1  # both cases met


def test_made_again_when_a_layer_changes(monkeypatch, count_together):
    rng = np.random.default_rng(3)
    net = _stack(rng, ["conv", "conv", "dense"], lambda: snn.IF(threshold=1.0))
    x = rng.random((1, 36))
    net.run(analog=x, T=4)
    first = net.graph().schedule().together(net.graph())
    net.layers[1].bias = np.full(net.layers[1].n_out, 0.3)
    got = net.run(analog=x, T=4)
    assert net.graph().schedule().together(net.graph()) is not first
    assert count_together[0] == 2
    _same(got, _layered(monkeypatch, net, analog=x, T=4))
