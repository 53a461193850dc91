"""``Network.start``: a stack's run advanced chunk by chunk computes what
``Network.run`` computes, with the stack's input forms and layer keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snn
from tests.conftest import examples


def _stack(kind: str, mode: str):
    """A small stack: conv -> avg-pool -> dense (kind "conv") or two CSR/dense
    layers (kind "fc"); dyadic weights, so that every path computes exactly."""
    rng = np.random.default_rng(7)

    def dyadic(shape):
        return rng.choice(np.arange(-6, 10) / 16.0, shape)

    if kind == "conv":
        conv = snn.Conv2d(
            (1, 6, 6), 3, 3, snn.LIF(beta=0.75), padding=1, weight=dyadic((3, 1, 3, 3)), mode=mode
        )
        pool = snn.AvgPool2d((3, 6, 6), 2, neuron=snn.IF(threshold=0.5), mode=mode)
        fc = snn.Linear(pool.n_out, 4, snn.CubaLIF(alpha=0.5, beta=0.75), weight=dyadic((4, 27)), mode=mode)
        return snn.Network([conv, pool, fc]), 36
    a = snn.Linear(16, 12, snn.LIF(beta=0.5, refractory=1), weight=dyadic((12, 16)), mode=mode)
    b = snn.Linear(12, 5, snn.IF(), weight=dyadic((5, 12)), mode=mode)
    return snn.Network([a, b]), 16


def _cuts(data, T):
    cuts, t = [0], 0
    while t < T:
        t = min(T, t + data.draw(st.integers(1, T)))
        cuts.append(t)
    return cuts


def _same(got, want):
    assert got.names == want.names
    for k, (a, b) in enumerate(zip(got.trains, want.trains, strict=True)):
        np.testing.assert_array_equal(a.to_raster(), b.to_raster(), err_msg=f"layer {k}")
        for field in ("synops", "macs", "updates", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(got.counts[k], field), getattr(want.counts[k], field), err_msg=f"{k} {field}"
            )
    np.testing.assert_array_equal(got.membrane, want.membrane)


@given(st.sampled_from(["conv", "fc"]), st.sampled_from(["event", "clock", "auto"]), st.data())
@settings(max_examples=examples(20), deadline=None)
def test_chunks_equal_the_uncut_run(kind, mode, data):
    """Spikes given to ``start``, fed chunk by chunk, or a constant analog
    input: cut anywhere, the result is ``run``'s, bit for bit (counts and
    MACs included)."""
    net, n_in = _stack(kind, mode)
    T, batch = 9, 2
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    spikes = (rng.random((T, batch, n_in)) < 0.4).astype(np.uint8)
    want = net.run(spikes=spikes)
    given_ = net.start(T, spikes=spikes)
    fed = net.start(T, batch_size=batch)
    for a, b in zip(cuts := _cuts(data, T), cuts[1:]):
        given_.advance(b - a)
        fed.advance(b - a, spikes=spikes[a:b])
    _same(given_.result(), want)
    _same(fed.result(), want)

    x = rng.choice(np.arange(0, 9) / 8.0, (batch, n_in))
    want = net.run(analog=x, T=T)
    sim = net.start(T, analog=x)
    for a, b in zip(cuts, cuts[1:]):
        sim.advance(b - a)
    _same(sim.result(), want)
    assert want.counts[0].macs.sum() > 0


def test_analog_changed_between_chunks():
    """``advance(analog=...)``: the first layer runs on the old input up to
    the change and on the new one after it (as ``run`` with the input as
    ``[T, B, n_in]`` computes it, exactly with dyadic values), each change
    counted once as MACs."""
    net, n_in = _stack("fc", "clock")
    rng = np.random.default_rng(1)
    xs = [rng.choice(np.arange(0, 9) / 8.0, (3, n_in)) for _ in range(3)]
    cuts = [0, 4, 5, 11]
    sim = net.start(cuts[-1], analog=xs[0])
    over_time = np.zeros((cuts[-1], 3, n_in))
    for (a, b), x in zip(zip(cuts, cuts[1:]), xs, strict=True):
        sim.advance(b - a, analog=x)
        over_time[a:b] = x
    got, want = sim.result(), net.run(analog=over_time)
    for a, b in zip(got.trains, want.trains, strict=True):
        np.testing.assert_array_equal(a.to_raster(), b.to_raster())
    once = [(x != 0) @ net.layers[0].fan_out for x in xs]
    np.testing.assert_array_equal(got.counts[0].macs, once[0] + sum(once))  # start, then each advance


def test_stream_keeps_a_window_and_counts():
    """A stream (``T=None``) keeps ``history`` steps and counts spikes per
    neuron of layers named by index or name, as the uncut run has them."""
    net, n_in = _stack("fc", "event")
    rng = np.random.default_rng(2)
    spikes = (rng.random((30, 2, n_in)) < 0.5).astype(np.uint8)
    want = net.run(spikes=spikes)
    sim = net.start(None, batch_size=2, history=5, count_spikes=[0, net.layer_name(1)], epoch=8)
    for a in range(0, 30, 7):
        sim.advance(min(7, 30 - a), spikes=spikes[a : a + 7])
    assert sim.t == 30 and sim.n_steps is None
    for k in range(2):
        np.testing.assert_array_equal(sim.spike_counts(k), want.trains[k].to_raster().sum(axis=0))
        np.testing.assert_array_equal(sim.window(k, 25, 30).to_raster(), want.trains[k].to_raster()[25:])
    with pytest.raises(ValueError, match="last 5 steps"):
        sim.result()


def test_recording_and_keep():
    """Recorded membranes by layer index, and ``keep``: the samples kept go
    on as their own run (their MACs kept with them)."""
    net, n_in = _stack("fc", "event")
    rng = np.random.default_rng(4)
    x = rng.choice(np.arange(0, 9) / 8.0, (3, n_in))
    sim = net.start(10, analog=x, record_v={-1: [0, 2]})
    sim.advance(4).keep([2, 0]).advance()
    got, want = sim.result(), net.run(analog=x[[2, 0]], T=10, record_v={1: [0, 2]})
    np.testing.assert_array_equal(got.trains[1].to_raster()[4:], want.trains[1].to_raster()[4:])
    np.testing.assert_array_equal(sim.recorded(1)[4:], want.v(1)[4:])
    np.testing.assert_array_equal(got.counts[0].macs, want.counts[0].macs)


def test_refusals():
    net, n_in = _stack("fc", "auto")
    spikes = np.zeros((4, 1, n_in), np.uint8)
    with pytest.raises(ValueError, match="at most one"):
        net.start(4, spikes=spikes, analog=np.zeros((1, n_in)))
    with pytest.raises(ValueError, match="chunk by chunk"):
        net.start(None, spikes=spikes)
    with pytest.raises(ValueError, match="constant analog"):
        net.start(4, analog=np.zeros((4, 1, n_in)))
    with pytest.raises(ValueError, match="no layer 5"):
        net.start(4, batch_size=1, record_v={5: [0]})
    with pytest.raises(ValueError, match="no layer 'x'"):
        net.start(4, batch_size=1, count_spikes=["x"])
    with pytest.raises(ValueError, match="takes no spikes"):
        net.start(4, spikes=spikes).advance(2, spikes=spikes[:2])
    with pytest.raises(ValueError, match="give advance"):
        net.start(4, batch_size=1).advance(2)
    with pytest.raises(ValueError, match="started with analog"):
        net.start(4, batch_size=1).advance(2, spikes=spikes[:2], analog=np.zeros((1, n_in)))
    sim = net.start(None, analog=np.zeros((2, n_in)))
    with pytest.raises(ValueError, match="no end"):
        sim.advance()
    with pytest.raises(ValueError, match="the run has 2"):
        sim.advance(1, analog=np.zeros((3, n_in)))
    with pytest.raises(ValueError, match="not spikes"):
        sim.advance(1, spikes=spikes[:1])
    assert sim.t == 0
