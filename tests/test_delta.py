"""Delta propagation over frame sequences (snn.convert.frames, kernels/delta.py)
and the VIDEO-DIGITS generator: theta = 0 gives the ANN's logits; a constant
sequence does no work after its first frame; a changed pixel does work only
in its receptive field; the kernels' counts equal an independent count
(deltas sent x fan-out); every unit's sum is its bias plus the weighted
values its inputs last sent, and no residue exceeds theta; the three ways
and the generator's properties; errors; the caller's arrays are only read.

Small networks on 8x8 frames, so the JIT-off leg runs them too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from snn.convert import (
    DeltaNetwork,
    ann_frame_logits,
    convert,
    place,
    run_frames,
    video_digits,
)
from snn.convert.chain import run_ops


def tiny_model(pool: str, stride: int, groups: int, seed: int) -> nn.Sequential:
    """Conv(1,4,3)-ReLU-Conv(4,4,3,groups)-ReLU-[pool]-Flatten-Linear(., 5) on 8x8."""
    torch.manual_seed(seed)
    second = nn.Conv2d(4, 4, 3, padding=1, stride=stride, groups=groups)
    side = 8 if stride == 1 else 4
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), second, nn.ReLU()]
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
        side //= 2
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2))
        side //= 2
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * side * side, 5))
    with torch.no_grad():  # biases of both signs: units that are on at zero input, and off
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


_CONVERTED = {}


def converted_tiny(pool="max", stride=1, groups=1, seed=0):
    key = (pool, stride, groups, seed)
    if key not in _CONVERTED:
        model = tiny_model(pool, stride, groups, seed)
        calib = np.random.default_rng(seed).uniform(0, 1, (32, 1, 8, 8)).astype(np.float32)
        _CONVERTED[key] = (model, convert(model, calib, percentile=99.0))
    return _CONVERTED[key]


nets = st.tuples(st.sampled_from(["max", "avg", "none"]), st.sampled_from([1, 2]), st.sampled_from([1, 2]))


def frames_of(seed, n_seq=2, n_frames=3, sparse=0.5):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n_seq, n_frames, 1, 8, 8)) * (
        rng.uniform(0, 1, (n_seq, n_frames, 1, 8, 8)) > sparse
    )
    return x.astype(np.float32)


# -- exactness -----------------------------------------------------------------------


@settings(max_examples=examples(15))
@given(net=nets, seed=st.integers(0, 2**16))
def test_theta_zero_equals_the_ann(net, seed):
    model, conv = converted_tiny(*net)
    frames = frames_of(seed)
    run = DeltaNetwork(conv, theta=0.0).run(frames)
    folded = run_ops(conv.ops, frames.reshape(-1, 1, 8, 8)).numpy().reshape(run.logits.shape)
    scale = max(1.0, float(np.abs(folded).max()))
    # float32 weights in the SNN layers, float64 sums: the folded ANN to 1e-6 of its scale
    np.testing.assert_allclose(run.logits, folded, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(run.logits, ann_frame_logits(model, frames), rtol=0, atol=1e-4 * scale)


def test_plain_network_and_per_layer_theta():
    """A plain snn.Network of IF layers (frames [n_in]); theta per sender."""
    import snn

    net = snn.Network(
        [snn.Linear(6, 5, snn.IF(threshold=2.0), seed=0), snn.Linear(5, 3, snn.IF(threshold=np.inf), seed=1)]
    )
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 6))
    w1, w2 = (np.asarray(layer.weight, np.float64) for layer in net.layers)
    ann = np.maximum(x @ w1.T + net.layers[0].bias, 0) / 2.0 @ w2.T + net.layers[1].bias
    np.testing.assert_allclose(DeltaNetwork(net, theta=0.0).run(x).logits, ann, rtol=0, atol=1e-12)
    coarse = DeltaNetwork(net, theta=[0.0, 10.0, 0.0]).run(x)  # the hidden layer never sends...
    at_zero = np.maximum(net.layers[0].bias, 0) / 2.0 @ w2.T + net.layers[1].bias  # ...after settling
    np.testing.assert_allclose(coarse.logits, np.broadcast_to(at_zero, coarse.logits.shape), atol=1e-12)
    assert not coarse.synops.any() and coarse.macs.sum() > 0


def _segments(dn, state, s):
    z = [state.z[s, dn.z_off[k] : dn.z_off[k + 1]] for k in range(dn.n_layers)]
    sent = [state.sent[s, dn.s_off[k] : dn.s_off[k + 1]] for k in range(dn.n_layers + 1)]
    return z, sent


def _maxpool(values, layer):
    c, h, w, h_out, w_out, kh, kw, sy, sx, py, px = (int(v) for v in layer.geom)
    x = values.reshape(c, h, w)
    out = np.full((c, h_out, w_out), -np.inf)
    for oy in range(h_out):
        for ox in range(w_out):
            y0, x0 = oy * sy - py, ox * sx - px
            win = x[:, max(0, y0) : y0 + kh, max(0, x0) : x0 + kw]
            out[:, oy, ox] = win.reshape(c, -1).max(axis=1)
    return out.reshape(-1)


@settings(max_examples=examples(15))
@given(net=nets, seed=st.integers(0, 2**16), theta=st.sampled_from([0.0, 0.01, 0.1, 0.5]))
def test_state_invariants_and_counts(net, seed, theta):
    """After every frame: each affine unit's sum is its bias plus its
    weights times what its inputs last sent; a max pool sent its window's
    maximum; no residue exceeds theta; and the kernel's weight additions
    equal the deltas sent (numpy: sent values that changed) x fan-out."""
    _, conv = converted_tiny(*net)
    layers = conv.network.layers
    dn = DeltaNetwork(conv, theta=theta)
    frames = frames_of(seed, n_seq=1, n_frames=4)
    state = dn.initial_state(1)
    for f in range(frames.shape[1]):
        _, before = _segments(dn, state, 0)
        before = [b.copy() for b in before]
        run = dn.run(frames[:, f : f + 1], state)
        state = run.state
        z, sent = _segments(dn, state, 0)
        x = frames[0, f].reshape(-1).astype(np.float64)
        assert np.all(np.abs(x - sent[0]) <= theta + 1e-12)
        for k, layer in enumerate(layers):
            changed = sent[k] != before[k]
            assert run.counts[0, 0, k, 1] == changed.sum()
            assert run.counts[0, 0, k + 1, 0] == (changed * layer.fan_out).sum()
            if layer.kind == "maxpool":
                np.testing.assert_array_equal(sent[k + 1], _maxpool(sent[k], layer))
                continue
            rows = np.asarray(layer.dense_rows(np.float32), np.float64)
            expect = np.asarray(layer.bias, np.float64) + sent[k] @ rows
            np.testing.assert_allclose(z[k], expect, rtol=0, atol=1e-9)
            if k < len(layers) - 1:
                a = np.maximum(z[k], 0) / layer.neuron.threshold
                assert np.all(np.abs(a - sent[k + 1]) <= theta + 1e-12)


@settings(max_examples=examples(15))
@given(net=nets, seed=st.integers(0, 2**16), theta=st.sampled_from([0.0, 0.05]))
def test_chunks_equal_one_run(net, seed, theta):
    _, conv = converted_tiny(*net)
    dn = DeltaNetwork(conv, theta=theta)
    frames = frames_of(seed, n_seq=2, n_frames=5)
    whole = dn.run(frames)
    first = dn.run(frames[:, :2])
    rest = dn.run(frames[:, 2:], first.state)
    np.testing.assert_array_equal(np.concatenate([first.logits, rest.logits], axis=1), whole.logits)
    np.testing.assert_array_equal(np.concatenate([first.counts, rest.counts], axis=1), whole.counts)
    np.testing.assert_array_equal(rest.state.z, whole.state.z)


# -- work in proportion to change ------------------------------------------------------------


@settings(max_examples=examples(15))
@given(net=nets, seed=st.integers(0, 2**16), theta=st.sampled_from([0.0, 0.05]))
def test_constant_sequence_no_work_after_first_frame(net, seed, theta):
    _, conv = converted_tiny(*net)
    frames = np.repeat(frames_of(seed, n_seq=2, n_frames=1), 4, axis=1)
    run = DeltaNetwork(conv, theta=theta).run(frames)
    assert run.counts[:, 0, 1:, 0].sum() > 0  # the first frame works
    assert not run.counts[:, 1:, 1:, :2].any()  # then nothing is added or sent
    assert not run.counts[:, 1:, 1:, 2].any()  # nor evaluated
    np.testing.assert_array_equal(run.logits[:, 1:], run.logits[:, :1].repeat(3, axis=1))


def _reach(layers, pixel):
    """Units of each layer that input ``pixel`` reaches (structurally)."""
    mask = np.zeros(layers[0].n_in, bool)
    mask[pixel] = True
    out = [mask]
    for layer in layers:
        if layer.kind == "maxpool":
            mask = _maxpool(mask.astype(np.float64), layer) > 0
        else:
            mask = (mask.astype(np.float64) @ (np.asarray(layer.dense_rows(np.float32)) != 0)) > 0
        out.append(mask)
    return out


@settings(max_examples=examples(15))
@given(net=nets, seed=st.integers(0, 2**16), pixel=st.integers(0, 63), theta=st.sampled_from([0.0, 0.05]))
def test_one_changed_pixel_works_only_downstream(net, seed, pixel, theta):
    _, conv = converted_tiny(*net)
    layers = conv.network.layers
    dn = DeltaNetwork(conv, theta=theta)
    frames = np.repeat(frames_of(seed, n_seq=1, n_frames=1), 2, axis=1)
    flat = frames.reshape(1, 2, -1)
    flat[0, 1, pixel] = flat[0, 0, pixel] + 0.5  # one pixel changes by more than theta
    first = dn.run(frames[:, :1])
    second = dn.run(frames[:, 1:], first.state)
    reach = _reach(layers, pixel)
    z0, s0 = _segments(dn, first.state, 0)
    z1, s1 = _segments(dn, second.state, 0)
    counts = second.counts[0, 0]
    assert counts[0, 1] == 1
    for k, layer in enumerate(layers):
        assert not np.any((s1[k] != s0[k]) & ~reach[k])  # only reached units sent
        assert counts[k + 1, 2] <= reach[k + 1].sum()  # evaluated: reached units at most
        assert counts[k + 1, 0] <= (reach[k] * layer.fan_out).sum()
        if layer.kind != "maxpool":
            assert not np.any((z1[k] != z0[k]) & ~reach[k + 1])
    assert counts[1, 0] == layers[0].fan_out[pixel]


def test_residue_is_kept():
    """A pixel rising by less than theta per frame is sent once the changes
    add up past theta: nothing is lost."""
    _, conv = converted_tiny("max", 1, 1, 0)
    dn = DeltaNetwork(conv, theta=0.1)
    base = np.zeros((1, 10, 1, 8, 8))
    base[0, :, 0, 3, 3] = 0.04 * np.arange(10)  # 0.04 per frame
    run = dn.run(base)
    sent_input = run.counts[0, :, 0, 1]
    assert list(sent_input) == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]  # at 0.12, 0.24, 0.36
    _, sent = _segments(dn, run.state, 0)
    assert sent[0][3 * 8 + 3] == pytest.approx(0.36)


# -- the three ways ---------------------------------------------------------------------


def test_reset_way_is_the_converted_run_per_frame():
    _, conv = converted_tiny("avg", 1, 1, 1)
    frames = frames_of(3, n_seq=2, n_frames=2)
    run = run_frames(conv, frames, "reset", T=8, batch=3)
    direct = conv.run(frames.reshape(-1, 1, 8, 8), 8)
    np.testing.assert_array_equal(run.readout.reshape(4, -1), direct.membrane)
    np.testing.assert_array_equal(run.synops.reshape(-1), sum(c.synops for c in direct.counts))
    assert run.synops.shape == run.macs.shape == (2, 2)
    assert 0 <= run.agreement(run.readout) == 1.0
    assert run.ms_per_frame > 0


def test_carry_way_first_frame_is_the_reset_run():
    _, conv = converted_tiny("max", 1, 1, 2)
    frames = frames_of(4, n_seq=2, n_frames=3)
    reset = run_frames(conv, frames, "reset", T=6)
    carry = run_frames(conv, frames, "carry", T=6)
    np.testing.assert_allclose(carry.readout[:, 0], reset.readout[:, 0], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(carry.synops[:, 0], reset.synops[:, 0])
    np.testing.assert_array_equal(carry.macs, reset.macs)
    assert carry.readout.shape == (2, 3, 5)
    # independently: one run whose analog input changes every T steps ([steps, B, n]: clock-driven layer 0)
    analog = np.repeat(frames.reshape(2, 3, -1).transpose(1, 0, 2), 6, axis=0).astype(np.float64)
    for f in (1, 3):
        whole = conv.network.run(analog=analog[: 6 * f], T=6 * f)
        np.testing.assert_allclose(whole.membrane, carry.readout[:, :f].sum(axis=1), rtol=0, atol=1e-9)
        np.testing.assert_array_equal(sum(c.synops for c in whole.counts), carry.synops[:, :f].sum(axis=1))


def test_delta_way_reports_counts():
    model, conv = converted_tiny("max", 1, 1, 0)
    frames = frames_of(5, n_seq=2, n_frames=3)
    run = run_frames(conv, frames, "delta", theta=0.0)
    assert run.agreement(ann_frame_logits(model, frames)) == 1.0
    direct = DeltaNetwork(conv, theta=0.0).run(frames)
    np.testing.assert_array_equal(run.macs, direct.counts[:, :, 1, 0])
    np.testing.assert_array_equal(run.synops, direct.counts[:, :, 2:, 0].sum(axis=2))
    row = run.row(ann_frame_logits(model, frames), np.zeros(2, np.int64))
    assert row["ops_per_frame"] == pytest.approx(float((run.synops + run.macs).mean()))


# -- VIDEO-DIGITS ------------------------------------------------------------------------


def test_video_digits_properties():
    v = video_digits(12, 64, seed=3)
    assert v.frames.shape == (12, 64, 1, 16, 16) and v.frames.dtype == np.float32
    assert np.all((v.positions >= 0) & (v.positions <= 8))
    # wholly visible: every frame holds all of its digit's intensity
    from snn.convert.training import load_digits_split

    digits = load_digits_split()[2][:12, 0]
    mass = np.broadcast_to(digits.sum(axis=(1, 2))[:, None], (12, 64))
    np.testing.assert_allclose(v.frames.sum(axis=(2, 3, 4)), mass, rtol=1e-5)
    np.testing.assert_array_equal(v.labels, load_digits_split()[3][:12])
    step = np.linalg.norm(np.diff(v.positions, axis=1), axis=2)
    assert np.all(step <= 0.25 + 1e-9)
    assert np.mean(np.abs(step - 0.25) < 1e-9) > 0.9  # straight drift except at a reflection
    assert np.any(np.abs(step - 0.25) > 1e-9)  # 64 frames x 0.25 px on an 8-px span: some reflect
    # the drift's direction is the seeded one until the first reflection
    d = v.positions[:, 1] - v.positions[:, 0]
    straight = np.abs(np.linalg.norm(d, axis=1) - 0.25) < 1e-9
    angle = np.arctan2(d[straight, 0], d[straight, 1]) % (2 * np.pi)
    np.testing.assert_allclose(angle, v.directions[straight], atol=1e-9)


def test_video_digits_seeded():
    a, b = video_digits(5, 8, seed=1), video_digits(5, 8, seed=1)
    np.testing.assert_array_equal(a.frames, b.frames)
    c = video_digits(3, 8, seed=1)  # a sequence does not depend on how many are made
    np.testing.assert_array_equal(c.frames, a.frames[:3])
    assert not np.array_equal(video_digits(5, 8, seed=2).positions, a.positions)


def test_place_is_bilinear():
    img = np.random.default_rng(0).uniform(0, 1, (1, 8, 8))
    whole = place(img, [[3.0, 5.0]])[0]
    expect = np.zeros((16, 16))
    expect[3:11, 5:13] = img[0]
    np.testing.assert_allclose(whole, expect, atol=1e-6)
    half = place(img, [[3.0, 5.5]])[0]
    right = np.zeros((16, 16))
    right[3:11, 6:14] = img[0]
    np.testing.assert_allclose(half, (expect + right) / 2, atol=1e-6)


@settings(max_examples=examples(20))
@given(st.integers(0, 2**16))
def test_placed_digit_keeps_its_mass(seed):
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 1, (3, 8, 8))
    pos = rng.uniform(0, 8, (3, 2))
    np.testing.assert_allclose(place(img, pos).sum(axis=(1, 2)), img.sum(axis=(1, 2)), rtol=1e-5)


# -- errors and ownership ----------------------------------------------------------------


def test_bad_input_is_refused_clearly():
    _, conv = converted_tiny("max", 1, 1, 0)
    dn = DeltaNetwork(conv, theta=0.1)
    good = frames_of(0, n_seq=1, n_frames=2)
    with pytest.raises(ValueError, match="frames must be"):
        dn.run(good[0])  # no sequence axis
    with pytest.raises(ValueError, match="NaN"):
        dn.run(np.where(good > 0.5, np.nan, good))
    with pytest.raises(ValueError, match="floating-point"):
        dn.run((good * 16).astype(np.int64))
    with pytest.raises(ValueError, match="frames must be"):
        run_frames(conv, good[0], "reset", T=4)
    with pytest.raises(ValueError, match="NaN or inf"):
        run_frames(conv, np.where(good > 0.5, np.inf, good), "reset", T=4)
    with pytest.raises(ValueError, match="theta must be finite and >= 0"):
        DeltaNetwork(conv, theta=-0.1)
    with pytest.raises(ValueError, match="theta must be"):
        DeltaNetwork(conv, theta=[0.1, 0.2])
    with pytest.raises(ValueError, match="state is for"):
        dn.run(good, dn.initial_state(3))
    with pytest.raises(TypeError, match="DeltaState"):
        dn.run(good, "state")
    with pytest.raises(ValueError, match="way must be"):
        run_frames(conv, good, "fast")
    with pytest.raises(ValueError, match="T must be"):
        run_frames(conv, good, "reset")
    with pytest.raises(ValueError, match="takes T=, not theta="):
        run_frames(conv, good, "reset", T=4, theta=0.1)
    with pytest.raises(ValueError, match="takes theta=, not T="):
        run_frames(conv, good, "delta", T=4)
    with pytest.raises(TypeError, match="snn.Network"):
        DeltaNetwork(conv.ops)
    with pytest.raises(TypeError, match="ConvertedNetwork"):
        run_frames(conv.network, good, "delta")
    import snn

    leaky = snn.Network([snn.Linear(4, 3, snn.LIF(beta=0.9)), snn.Linear(3, 2, snn.IF(threshold=np.inf))])
    with pytest.raises(ValueError, match="needs the converted IF neurons"):
        DeltaNetwork(leaky)
    with pytest.raises(ValueError, match="n_sequences"):
        video_digits(0)
    with pytest.raises(ValueError, match="speed"):
        video_digits(2, speed=-1.0)
    with pytest.raises(ValueError, match="wholly visible"):
        place(np.ones((1, 8, 8)), [[8.5, 0.0]])


def test_caller_arrays_are_only_read():
    _, conv = converted_tiny("max", 1, 1, 0)
    dn = DeltaNetwork(conv, theta=0.05)
    frames = frames_of(1, n_seq=2, n_frames=3)
    frames.flags.writeable = False  # read-only input works, and is not copied into the result
    kept = frames.copy()
    state = dn.initial_state(2)
    z, sent = state.z.copy(), state.sent.copy()
    run = dn.run(frames, state)
    np.testing.assert_array_equal(frames, kept)
    np.testing.assert_array_equal(state.z, z)  # the state passed in is not advanced in place
    np.testing.assert_array_equal(state.sent, sent)
    assert not np.shares_memory(run.state.z, state.z)
    again = dn.run(frames, state)  # so it can be run again from the same state
    np.testing.assert_array_equal(again.logits, run.logits)
