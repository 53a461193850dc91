"""ANN-to-SNN conversion (``snn.convert``) on real data: scikit-learn's digits.

Models are trained once per test session (per xdist worker), seeded, for a few
epochs only (CI time), with ``snn.convert.training``: the MLP 64-256-128-10 for 15
epochs, DIGITS-CNN with average or max pooling for 10 epochs each, and
DIGITS-CNN with ResNet's stem pool ``nn.MaxPool2d(3, 2, 1)`` (overlapping,
padded windows; "max3") for 10 epochs.

Accuracy thresholds, measured first (torch 2.x CPU, 540 test digits,
percentile 99.99; the builders seed the initial weights, ``train`` the
batches; the same figures with 1 torch thread per pytest-xdist worker and
with 2 threads)::

    model          ANN      SNN T=8   T=16     T=32     per_channel T=32
    MLP (15 ep)    97.04%   97.04%    96.85%   97.22%   97.04%
    CNN avg (10)   98.70%   98.89%    98.89%   98.89%   98.70%
    CNN max (10)   98.89%   98.52%    98.89%   98.89%   98.89%
    max 3/2/1 (10) 99.07%   97.96%    98.52%   98.89%   99.07%   (1 thread)
                   99.07%   98.33%    98.33%   98.52%   99.07%   (2 threads)

Required at T = 32: the ANN reaches its floor (MLP >= 95%, CNNs >= 97%: the
training worked) and the SNN is within 1.5 percentage points (8 digits of
540) of the ANN for the MLP and the average-pooling CNN, within 3 points for
the max-pooling CNNs (spiking max pooling gates on accumulated counts, which
only approximates the max of rates early in a run; measured gap 0 at T >= 16
but 0.4 pp at T = 8, so it gets a wider margin). Each margin is several
misclassified digits above the measured gap, so seed-level noise across
torch versions does not trip it, while a broken normalisation, a wrong
weight layout or a lost bias costs tens of points.

Equivalence of the event and reference backends on converted networks uses
the tolerance rule of ``test_equivalence.py`` (``conftest.assert_equivalent``).
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import NetSpec, assert_equivalent, layer_fan_out, reference_with_traces
from torch import nn

import snn
import snn.convert as sc
from snn.convert import ops
from snn.convert.chain import run_ops
from snn.convert.training import accuracy, digits_cnn, digits_mlp, load_digits_split, train

# one torch thread per xdist worker: two workers x two threads on two cores
# oversubscribe, and torch's spinning threads then slow training ~10x
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

EPOCHS = {"mlp": 15, "avg": 10, "max": 10, "max3": 10}
T_ACC = 32
# (ANN floor, allowed SNN gap to the ANN at T_ACC) -- see the module docstring
REQUIRED = {"mlp": (0.95, 0.015), "avg": (0.97, 0.015), "max": (0.97, 0.03), "max3": (0.97, 0.03)}
MODELS = tuple(EPOCHS)


@pytest.fixture(scope="session")
def digits():
    return load_digits_split()


@pytest.fixture(scope="session")
def trained(digits):
    """Trained models, one per name, trained on first use (once per worker)."""
    cache = {}
    x_train, y_train, _, _ = digits

    def get(name):
        if name not in cache:
            if name == "max3":  # ResNet's stem pool: overlapping, padded windows (8x8 -> 4x4 as MaxPool2d(2))
                model = digits_cnn("max")
                model[6] = nn.MaxPool2d(3, stride=2, padding=1)
            else:
                model = digits_mlp() if name == "mlp" else digits_cnn(name)
            cache[name] = train(model, x_train, y_train, epochs=EPOCHS[name], progress=False)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def converted(trained, digits):
    """Converted networks by (name, per_channel), converted on first use."""
    cache = {}

    def get(name, per_channel=False):
        key = (name, per_channel)
        if key not in cache:
            cache[key] = sc.convert(trained(name), digits[0], percentile=99.99, per_channel=per_channel)
        return cache[key]

    return get


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def torch_logits(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(x), dtype=torch.float32)).double().numpy()


def normalised_ann(network: snn.Network, x):
    """The normalised ANN read back from the SNN's layers: each Linear /
    Conv2d with its (float32) weights and per-neuron bias, ReLU after every
    hidden layer, max pooling where the SNN has a MaxPool2d, nothing after the
    readout. Returns ``(logits, [hidden activations])`` in float64."""
    a = torch.as_tensor(np.asarray(x, np.float64).reshape(len(x), -1))
    hidden = []
    for k, layer in enumerate(network.layers):
        if layer.kind == "maxpool":
            a = F.max_pool2d(a.reshape(-1, *layer.in_shape), layer.kernel_size, layer.stride, layer.padding)
            a = a.flatten(1)
            continue
        w = torch.as_tensor(np.asarray(layer.weight, np.float64))
        if isinstance(layer, snn.Conv2d):
            c_out = layer.out_shape[0]
            bias = layer.bias.reshape(c_out, -1)
            assert np.all(bias == bias[:, :1]), "a conv bias is one value per channel"
            g = [int(v) for v in layer.geom]
            z = F.conv2d(
                a.reshape(-1, *layer.in_shape),
                w,
                torch.as_tensor(bias[:, 0].copy()),
                stride=(g[8], g[9]),
                padding=(g[10], g[11]),
                dilation=(g[12], g[13]),
                groups=g[14],
            ).flatten(1)
        else:
            z = a @ w.T + torch.as_tensor(np.array(layer.bias))
        if k == len(network.layers) - 1:
            assert layer.neuron.threshold == math.inf  # membrane readout
            return z.numpy(), hidden
        assert layer.neuron.threshold == 1.0
        a = F.relu(z)
        if not isinstance(layer, snn.AvgPool2d):
            hidden.append(a.numpy())
    raise AssertionError("the network must end with a readout layer")


def relu_outputs(model, x):
    """Outputs of every nn.ReLU module of ``model`` on ``x`` (forward hooks)."""
    seen = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().double().numpy()))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    try:
        torch_logits(model, x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def independent_ann_macs(model, x):
    """MACs of every nn.Linear / nn.Conv2d per sample, from the output sizes
    seen by forward hooks: outputs x (in_features, or C_in/groups x kh x kw)."""
    macs = {}
    names = {m: name for name, m in model.named_modules()}

    def hook(mod, inp, out):
        per_output = (
            mod.in_features
            if isinstance(mod, nn.Linear)
            else (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        )
        macs[names[mod]] = out[0].numel() * per_output

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        torch_logits(model, x[:1])
    finally:
        for h in hooks:
            h.remove()
    return macs


def randomise_batchnorm(model, seed=0):
    """Non-trivial running statistics and affine parameters (gamma of both
    signs) in every BatchNorm; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2.5 + 0.2)
                if m.affine:
                    sign = torch.where(torch.rand(n, generator=gen) < 0.2, -1.0, 1.0)
                    m.weight.copy_(sign * (torch.rand(n, generator=gen) * 1.5 + 0.5))
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
    return model.eval()


def spec_for(conv: sc.ConvertedNetwork, x, T):
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    net = conv.network
    return NetSpec(
        layers=[None] * len(net.layers), dtype=net.dtype, T=T, batch=len(x), input_kind="analog_const", x=flat
    )


# ---------------------------------------------------------------------------
# accuracy on the digits test set
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_converted_accuracy(name, per_channel, trained, converted, digits):
    _, _, x_test, y_test = digits
    model = trained(name)
    conv = converted(name, per_channel)
    ev = sc.evaluate(conv, x_test, y_test, steps=(T_ACC,), ann_model=model)
    floor, gap = REQUIRED[name]
    ann = accuracy(model, x_test, y_test)
    assert ev.ann_accuracy == pytest.approx(ann)
    assert ann >= floor, f"{name}: the ANN reached only {ann:.2%} after {EPOCHS[name]} epochs"
    snn_acc = ev.rows[0]["accuracy"]
    assert snn_acc >= ann - gap, (
        f"{name} per_channel={per_channel}: SNN {snn_acc:.2%} at T={T_ACC} vs ANN {ann:.2%} "
        f"(allowed gap {gap:.1%})\n{ev.table()}"
    )


def test_evaluate_reports_what_the_runs_do(converted, digits):
    """evaluate()'s rows equal direct runs: accuracy = predict(), per-sample
    SynOps / MACs / updates = the run's totals / N; ANN MACs = the sum of
    ann_macs; the energy estimate follows its own model."""
    _, _, x_test, y_test = digits
    conv = converted("avg")
    x, y = x_test[:60], y_test[:60]
    ev = sc.evaluate(conv, x, y, steps=(4, 8), single_pass=False)
    assert not ev.single_pass and ev.trajectory is None
    assert [r["T"] for r in ev.rows] == [4, 8]
    assert math.isnan(ev.ann_accuracy)  # no ann_model given
    for row in ev.rows:
        r = conv.run(x, row["T"])
        assert row["accuracy"] == pytest.approx(np.mean(conv.predict(x, row["T"]) == y))
        assert row["accuracy"] == pytest.approx(np.mean(r.membrane.argmax(axis=1) == y))
        for field in ("synops", "macs", "updates", "dense_updates"):
            assert row[field] == pytest.approx(r.total(field) / len(y)), field
        assert row["energy_pj"] == pytest.approx(ev.energy.energy_pj(row["synops"], row["macs"]))
    assert ev.ann_macs == conv.ann_total_macs == sum(conv.ann_macs.values())
    assert "SynOps" in ev.table()


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "name,mode", [("avg", "event"), ("avg", "clock"), ("avg", "dense"), ("max", "event"), ("mlp", None)]
)
def test_single_pass_equals_separate_runs(name, mode, converted, digits):
    """One run to T_max read at every T gives, for every T, exactly what a
    separate run to T gives: accuracy, SynOps and MACs (rows), per-layer and
    per-sample SynOps, and the decisions; the readout equals the separate
    run's membrane up to summation-order rounding (1e-9 relative). The layer
    paths are forced (mode) where the automatic choice could differ between
    a short and a long run; mode=None checks the default on the MLP."""
    _, _, x_test, y_test = digits
    conv = converted(name)
    x, y = x_test[:48], y_test[:48]
    steps = (1, 3, 4, 8, 17)
    single = sc.evaluate(conv, x, y, steps=steps, mode=mode)
    separate = sc.evaluate(conv, x, y, steps=steps, mode=mode, single_pass=False)
    assert single.single_pass and single.trajectory.n_steps == max(steps)
    for a, b in zip(single.rows, separate.rows):
        for field in ("T", "accuracy", "synops", "macs", "dense_updates", "energy_pj"):
            assert a[field] == b[field], (a["T"], field, a[field], b[field])
        if a["T"] == max(steps):
            assert a["updates"] == b["updates"] and a["ms_per_sample"] > 0
        else:
            assert math.isnan(a["updates"]) and math.isnan(a["ms_per_sample"])
    traj = single.trajectory
    for t in steps:
        run = conv.run(x, t, mode=mode)
        per_layer = np.stack([c.synops for c in run.counts])
        assert np.array_equal(traj.synops[:, t], per_layer), t
        assert np.array_equal(traj.synops_at(t), per_layer.sum(axis=0)), t
        assert np.array_equal(traj.macs, np.stack([c.macs for c in run.counts])), t
        assert np.allclose(
            traj.readout[t - 1], run.membrane, rtol=1e-9, atol=1e-9 * np.abs(run.membrane).max()
        )
        assert np.array_equal(traj.decisions()[t - 1], run.membrane.argmax(axis=1)), t
    assert np.array_equal(traj.synops[:, 0], np.zeros_like(traj.synops[:, 0]))
    assert np.all(np.diff(traj.synops, axis=1) >= 0)
    assert "single pass: one run to T=17" in single.table()


def test_single_pass_readout_of_a_one_layer_network(digits):
    """A model that is only its readout (no spiking layer): the readout
    grows as t x (bias + W x), as the run's membrane says."""
    x_train, _, x_test, y_test = digits
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    conv = sc.convert(model, x_train)
    x = x_test[:20]
    ev = sc.evaluate(conv, x, y_test[:20], steps=(2, 5))
    for t in (2, 5):
        membrane = conv.run(x, t).membrane
        assert np.allclose(ev.trajectory.readout[t - 1], membrane, rtol=1e-9, atol=1e-12)
    assert not ev.trajectory.synops.any()


def _rule_holds(dec, readout, t, patience, margin, min_steps):
    """The early-exit rule at step t (1-based) of one sample, written out:
    dec [T] decisions, readout [T, n_out]."""
    ok = t >= min_steps
    if patience is not None:
        ok &= t > patience and len(set(dec[t - 1 - patience : t].tolist())) == 1
    if margin is not None:
        top = np.sort(readout[t - 1])
        ok &= (top[-1] - top[-2]) / t >= margin
    return ok


def test_early_exit_rules(converted, digits):
    """Exit steps follow their rule (checked by brute force on the
    decisions), spend no more SynOps than the full run, decide what a run
    stopped at the exit step decides, and report accuracy consistently; an
    impossible rule exits at T with the full SynOps and accuracy."""
    _, _, x_test, y_test = digits
    conv = converted("avg")
    x, y = x_test[:64], y_test[:64]
    ev = sc.evaluate(conv, x, y, steps=(4, 24))
    traj = ev.trajectory
    n_steps = traj.n_steps
    dec = traj.decisions()
    readout = traj.readout
    full = traj.synops_at(n_steps)
    for rule in (
        {"patience": 0},
        {"patience": 3},
        {"patience": 5, "min_steps": 4},
        {"margin": 0.5},
        {"margin": 2.0, "patience": 2},
    ):
        ex = ev.early_exit(**rule)
        patience, margin, first = rule.get("patience"), rule.get("margin"), rule.get("min_steps", 1)
        for b in range(len(y)):
            expected = next(
                (
                    t
                    for t in range(1, n_steps + 1)
                    if _rule_holds(dec[:, b], readout[:, b], t, patience, margin, first)
                ),
                n_steps,
            )
            assert ex.exit_step[b] == expected, (rule, b)
        assert np.all(ex.synops <= full) and np.array_equal(ex.full_synops, full)
        assert np.array_equal(ex.decision, dec[ex.exit_step - 1, np.arange(len(y))])
        assert ex.accuracy == pytest.approx(np.mean(ex.decision == y))
        assert ex.full_accuracy == pytest.approx(ev.rows[-1]["accuracy"])
        assert ex.synops_saved == pytest.approx(1 - ex.synops.sum() / full.sum())
        assert "saved" in ex.summary()
    # patience 0: exit at once
    assert np.all(ev.early_exit(patience=0).exit_step == 1)
    # a run stopped at the exit step decides the same, with the same SynOps
    ex = ev.early_exit(patience=3)
    for b in np.flatnonzero(ex.exit_step < n_steps)[:5]:
        run = conv.run(x[b : b + 1], int(ex.exit_step[b]))
        assert run.membrane.argmax() == ex.decision[b]
        assert run.total("synops") == ex.synops[b]
    assert ex.synops.sum() < full.sum()  # something was saved on these digits
    # impossible rules
    for rule in ({"patience": n_steps}, {"margin": math.inf}, {"patience": 1, "min_steps": n_steps}):
        ex = ev.early_exit(**rule)
        assert np.all(ex.exit_step == n_steps) and np.array_equal(ex.synops, full), rule
        assert ex.accuracy == ex.full_accuracy and ex.synops_saved == 0
    # hindsight: the decision is final from the stable step on, and not one step earlier
    ex = ev.early_exit(patience=1)
    for b in range(len(y)):
        s = ex.stable_step[b]
        assert np.all(dec[s - 1 :, b] == dec[-1, b])
        assert s == 1 or dec[s - 2, b] != dec[-1, b]
    assert np.array_equal(ex.stable_synops, traj.synops_at(ex.stable_step))


def test_early_exit_refuses_bad_rules(converted, digits):
    _, _, x_test, y_test = digits
    conv = converted("avg")
    ev = sc.evaluate(conv, x_test[:8], y_test[:8], steps=(4,))
    for kwargs, match in (
        ({}, "give a rule"),
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"margin": -0.1}, "margin"),
        ({"margin": math.nan}, "margin"),
        ({"patience": 1, "min_steps": 0}, "min_steps"),
    ):
        with pytest.raises(ValueError, match=match):
            ev.early_exit(**kwargs)
    with pytest.raises(ValueError, match="labels"):
        sc.early_exit(ev.trajectory, y_test[:7], patience=1)
    separate = sc.evaluate(conv, x_test[:8], y_test[:8], steps=(4,), single_pass=False)
    with pytest.raises(ValueError, match="single_pass"):
        separate.early_exit(patience=1)
    for steps in ((), (0,), (4, -1), (2.5,)):
        with pytest.raises(ValueError, match="steps"):
            sc.evaluate(conv, x_test[:8], y_test[:8], steps=steps)
    with pytest.raises(ValueError, match="one label per sample"):
        sc.evaluate(conv, x_test[:8], y_test[:7], steps=(4,))


@pytest.mark.parametrize("name", MODELS)
def test_ann_macs_are_independent_count(name, trained, converted, digits):
    model = trained(name)
    assert converted(name).ann_macs == independent_ann_macs(model, digits[2])
    if name != "mlp":
        # Conv(1,16,3,p1) on 8x8, Conv(16,32,3,p1), Linear(512,10)
        assert converted(name).ann_total_macs == 16 * 64 * 9 + 32 * 64 * 16 * 9 + 512 * 10


# ---------------------------------------------------------------------------
# the normalisation invariant and BatchNorm folding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_normalised_ann_keeps_the_logits(name, per_channel, trained, converted, digits):
    """The ANN read back from the SNN's layers (normalised: every hidden
    layer divided by its activation scale, the next layer multiplied by it,
    the readout undoing the last scale) gives the original model's logits on
    the test digits: ReLU commutes with a positive scale, so the equality is
    exact up to the float32 storage of the weights (relative error <= 2**-24
    per weight); tolerance 1e-4 x (1 + largest |logit|). Its hidden
    activations reach 1 (the firing threshold) at the calibration percentile,
    and the scales are the percentiles of the original ReLU activations."""
    x_train, _, x_test, _ = digits
    model = trained(name)
    conv = converted(name, per_channel)
    expected = torch_logits(model, x_test)
    logits, _ = normalised_ann(conv.network, x_test)
    assert np.abs(logits - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    assert np.array_equal(logits.argmax(axis=1), expected.argmax(axis=1))
    # scales: percentiles of the original ReLU activations on the calibration data
    _, hidden = normalised_ann(conv.network, x_train)
    original = relu_outputs(model, x_train)
    assert len(hidden) == len(original) == len(conv.scales)
    for k, (a_norm, a, lam) in enumerate(zip(hidden, original, conv.scales)):
        # The original activations are float32 (torch model), the library's
        # float64: they differ by ~2**-24 x the magnitude of the summed terms,
        # which is large *relative* to a channel whose scale is tiny; hence
        # the absolute part of the tolerances (1e-5 of the largest scale) and
        # the percentile check on channels with scale >= 1% of the largest.
        if per_channel:
            chans = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
            expected_lam = np.array([np.percentile(row, 99.99) if row.max() > 0 else 1.0 for row in chans])
            expected_lam = np.where(expected_lam > 0, expected_lam, chans.max(axis=1))
            norm = np.moveaxis(a_norm.reshape(a.shape), 1, 0).reshape(a.shape[1], -1)
            assert np.allclose(lam, expected_lam, rtol=1e-5, atol=1e-5 * expected_lam.max()), (
                k,
                np.abs(lam - expected_lam).max(),
            )
            # channels scaled by their percentile (not by their max), with a scale that is not tiny
            scaled = np.array([np.percentile(row, 99.99) > 0 for row in chans]) & (lam >= 0.01 * lam.max())
            assert scaled.sum() >= 0.5 * len(lam), k
            pct = np.percentile(norm[scaled], 99.99, axis=1)
            assert np.allclose(pct, 1.0, rtol=1e-3), (k, pct.min(), pct.max())
        else:
            assert lam == pytest.approx(np.percentile(a, 99.99), rel=1e-5), k
            assert np.percentile(a_norm, 99.99) == pytest.approx(1.0, rel=1e-4), k


def test_batchnorm_is_folded_exactly(digits):
    """A model with BatchNorm2d / BatchNorm1d (random running statistics,
    gamma of both signs, layers with and without bias, an affine-free BN):
    the folded, normalisation-free ANN (``run_ops``) equals the float64
    model within 1e-5 on the test digits, and no BatchNorm op is left."""
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 20, bias=False),
        nn.BatchNorm1d(20, affine=False),
        nn.ReLU(),
        nn.Linear(20, 10),
    )
    randomise_batchnorm(model)
    conv = sc.convert(model, x_train)
    assert all(op.kind != "batchnorm" for op in conv.ops)
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    got = run_ops(conv.ops, x_test).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5
    # and the SNN built from it keeps the logits (normalisation invariant)
    logits, _ = normalised_ann(conv.network, x_test)
    assert np.abs(logits - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


@pytest.mark.parametrize("name", MODELS)
def test_run_ops_equals_trained_model(name, trained, converted, digits):
    """The folded ops of the digits models (BatchNorm folded, average pooling
    folded into the readout) compute the model."""
    x_test = digits[2]
    expected = torch_logits(trained(name), x_test)
    got = run_ops(converted(name).ops, x_test).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


# ---------------------------------------------------------------------------
# backends and counts on converted networks
# ---------------------------------------------------------------------------


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "name,per_channel,dtype",
    [
        ("mlp", False, np.float64),
        ("avg", False, np.float64),
        ("max", False, np.float64),
        ("max", True, np.float64),
        ("max3", False, np.float64),
        ("max3", True, np.float32),
        ("avg", False, np.float32),
    ],
)
def test_event_matches_reference_on_converted_network(name, per_channel, dtype, trained, converted, digits):
    """Spike trains of every layer and the readout membrane: event (auto,
    forced event, forced dense) vs the reference loop, tolerance rule of
    test_equivalence.py, on 24 test digits for T = 24."""
    if dtype == np.float64:
        conv = converted(name, per_channel)
    else:
        conv = sc.convert(trained(name), digits[0], per_channel=per_channel, dtype=dtype)
        assert conv.network.dtype == np.float32
    x = digits[2][:24]
    spec = spec_for(conv, x, 24)
    ref, traces = reference_with_traces(conv.network, spec)
    assert ref.spikes(0).sum() > 0
    for mode in (None, "event", "clock", "dense"):
        result = conv.run(x, 24, mode=mode)
        assert_equivalent(conv.network, spec, result, ref, traces, label=f"{name} mode={mode}")


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("name", MODELS)
def test_converted_synops_equal_rasters_times_fan_out(name, converted, digits):
    """Per layer: the first (analog) layer does MACs = non-zero pixels x
    fan-out, once, and no SynOps; every later layer does SynOps = its input
    spikes (the previous layer's raster) x the fan-out counted independently
    (torch one-hot count for Conv2d, n_out for Linear, 0 for MaxPool2d)."""
    conv = converted(name)
    x = digits[2][:40]
    flat = x.reshape(len(x), -1)
    layers = conv.network.layers
    fans = [layer_fan_out(layer) for layer in layers]
    for kwargs in ({}, {"mode": "event"}, {"mode": "clock"}, {"mode": "dense"}, {"backend": "reference"}):
        r = conv.run(x, 16, **kwargs)
        assert r.counts[0].macs.tolist() == ((flat != 0).astype(np.int64) @ fans[0]).tolist(), kwargs
        assert r.counts[0].synops.tolist() == [0] * len(x)
        for k in range(1, len(layers)):
            received = r.spikes(k - 1).astype(np.int64).sum(axis=0)
            assert np.array_equal(r.counts[k].synops, received @ fans[k]), (kwargs, k)
            assert np.array_equal(r.counts[k].input_events, received.sum(axis=1)), (kwargs, k)
            assert r.counts[k].macs.tolist() == [0] * len(x)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("name", MODELS)
def test_first_layer_rates_are_rounded_activations(name, converted, digits):
    """Rate coding of the first layer, exactly: a constant normalised input
    current z per step into an IF neuron (threshold 1, reset by subtraction,
    v starting at 0.5) keeps 0 <= v < 1 after each step while 0 <= z <= 1,
    so it fires round(T z) = floor(T z + 1/2) times in T steps, clipped to
    [0, T] (z > 1 fires every step, z < 0 never). Allowed exception: T z + 1/2
    within 1e-9 of an integer (rounding of the two summation orders)."""
    conv = converted(name)
    x = digits[2][:50]
    first = conv.network.layers[0]
    z = x.reshape(len(x), -1).astype(np.float64) @ first.dense_rows(np.float64) + first.bias
    for T in (1, 7, 32):
        counts = conv.run(x, T).spike_counts(0)
        expected = np.clip(np.floor(T * z + 0.5), 0, T)
        near = np.abs(T * z + 0.5 - np.round(T * z + 0.5)) < 1e-9
        assert np.all((counts == expected) | near), (T, np.abs(counts - expected).max())


def test_converted_network_structure(converted):
    """IF neurons reset by subtraction starting at half threshold, readout
    never fires; max pooling kept as MaxPool2d, average pooling folded into
    the readout Linear."""
    avg, mx = converted("avg").network.layers, converted("max").network.layers
    assert [type(layer).__name__ for layer in avg] == ["Conv2d", "Conv2d", "Linear"]
    assert [type(layer).__name__ for layer in mx] == ["Conv2d", "Conv2d", "MaxPool2d", "Linear"]
    assert avg[-1].n_in == 32 * 8 * 8 and mx[-1].n_in == 32 * 4 * 4
    for layer in avg[:-1] + mx[:2]:
        assert layer.neuron == snn.IF(threshold=1.0, reset="subtract")
        assert np.all(layer.v_init == 0.5)
    assert avg[-1].neuron.threshold == mx[-1].neuron.threshold == math.inf
    assert converted("avg").input_shape == (1, 8, 8)


@pytest.mark.usefixtures("warm_kernels")
def test_overlapping_maxpool_follows_torch_rates(trained, converted, digits):
    """The CNN with ResNet's stem pool ``nn.MaxPool2d(3, 2, 1)`` (overlapping,
    padded windows) converts to a spiking MaxPool2d of that window, whose
    output spike counts are, per output, exactly torch's ``max_pool2d`` of
    its input counts at every T (the gate passes a spike when its window's
    highest count rises). The SNN's accuracy at T = 16 is within the
    conversion margin of the ANN's."""
    _, _, x_test, y_test = digits
    conv = converted("max3")
    names = [type(layer).__name__ for layer in conv.network.layers]
    assert names == ["Conv2d", "Conv2d", "MaxPool2d", "Linear"]
    pool = conv.network.layers[2]
    assert (pool.kernel_size, pool.stride, pool.padding) == ((3, 3), (2, 2), (1, 1))
    assert pool.in_shape == (32, 8, 8) and pool.out_shape == (32, 4, 4)
    x = x_test[:140]
    for T in (16, 32):
        r = conv.run(x, T)
        before = torch.as_tensor(r.spike_counts(1).reshape(-1, 32, 8, 8), dtype=torch.float64)
        after = r.spike_counts(2).reshape(-1, 32, 4, 4)
        np.testing.assert_array_equal(after, F.max_pool2d(before, 3, 2, 1).numpy(), err_msg=str(T))
    ev = sc.evaluate(conv, x_test, y_test, steps=(16,), ann_model=trained("max3"))
    assert ev.ann_accuracy >= REQUIRED["max3"][0]
    assert ev.rows[0]["accuracy"] >= ev.ann_accuracy - REQUIRED["max3"][1], ev.table()


# ---------------------------------------------------------------------------
# what the tracer accepts
# ---------------------------------------------------------------------------


class FunctionalNet(nn.Module):
    """relu as F.relu, torch.relu and x.relu(); flatten as torch.flatten or x.flatten(1)."""

    def __init__(self, method_flatten=False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = nn.Linear(256, 32)
        self.fc2 = nn.Linear(32, 24)
        self.out = nn.Linear(24, 10)
        self.method_flatten = method_flatten

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = x.flatten(1) if self.method_flatten else torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = self.fc2(x).relu()
        return self.out(x)


@pytest.mark.parametrize("method_flatten", [False, True])
def test_functional_relu_and_flatten_are_traced(method_flatten, digits):
    x_train, y_train, x_test, y_test = digits
    model = train(FunctionalNet(method_flatten), x_train, y_train, epochs=5, progress=False)
    conv = sc.convert(model, x_train)
    assert [type(layer).__name__ for layer in conv.network.layers] == ["Conv2d", "Linear", "Linear", "Linear"]
    assert [op.kind for op in conv.ops] == [
        "affine",
        "relu",
        "flatten",
        "affine",
        "relu",
        "affine",
        "relu",
        "affine",
    ]
    expected = torch_logits(model, x_test)
    assert np.abs(run_ops(conv.ops, x_test).numpy() - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    logits, _ = normalised_ann(conv.network, x_test)
    assert np.abs(logits - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    ann = accuracy(model, x_test, y_test)
    assert np.mean(conv.predict(x_test, T_ACC) == y_test) >= ann - 0.03


class FunctionalPoolNet(nn.Module):
    """Pooling written as functions (F.avg_pool2d, F.max_pool2d,
    F.adaptive_avg_pool2d) instead of modules."""

    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.out = nn.Linear(4 if pool == "adaptive" else 16, 10)
        self.pool = pool

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.pool == "avg":
            x = F.avg_pool2d(x, 4)
        elif self.pool == "max":
            x = F.max_pool2d(x, kernel_size=4, stride=4)
        elif self.pool == "adaptive":
            x = F.adaptive_avg_pool2d(x, (1, 1))
        elif self.pool == "divisor":
            x = F.avg_pool2d(x, 4, divisor_override=3)
        else:  # overlapping average windows
            x = F.avg_pool2d(x, 4, 2)
        return self.out(torch.flatten(x, 1))


@pytest.mark.parametrize("pool", ["avg", "max", "adaptive"])
def test_functional_pooling_is_traced(pool, digits):
    """F.avg_pool2d, F.max_pool2d and F.adaptive_avg_pool2d convert as their
    modules do: the normalised network computes the model's logits."""
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = FunctionalPoolNet(pool).eval()
    conv = sc.convert(model, x_train[:200])
    assert ("maxpool" in [op.kind for op in conv.ops]) == (pool == "max")
    expected = torch_logits(model, x_test)
    assert np.abs(run_ops(conv.ops, x_test).numpy() - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


class ResidualFunctionalPoolNet(FunctionalPoolNet):
    """A residual block, then pooling as a function: converted to a graph."""

    def __init__(self, pool):
        super().__init__(pool)
        self.mix = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = F.relu(self.mix(x) + x)
        x = F.max_pool2d(x, 3, 2, 1) if self.pool == "max" else F.avg_pool2d(x, 4)
        return self.out(torch.flatten(x, 1))


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_functional_pooling_in_a_residual_graph(pool, digits):
    x_train, _, x_test, _ = digits
    torch.manual_seed(0)
    model = ResidualFunctionalPoolNet(pool).eval()
    if pool == "max":
        model.out = nn.Linear(64, 10).eval()
    conv = sc.convert(model, x_train[:200])
    assert type(conv).__name__ == "ConvertedGraph"
    agree = np.mean(conv.predict(x_test[:100], 64) == torch_logits(model, x_test[:100]).argmax(1))
    assert agree >= 0.95, agree


@pytest.mark.parametrize(("pool", "match"), [("divisor", "divisor_override"), ("overlap", "stride equal")])
def test_functional_pooling_refusals_name_the_call(pool, match, digits):
    with pytest.raises(sc.ConversionError, match=f"avg_pool2d.*{match}"):
        sc.convert(FunctionalPoolNet(pool).eval(), digits[0][:50])


def test_nested_sequential_dropout_identity(digits):
    """Nested Sequential containers are flattened in order; Dropout (p > 0,
    eval mode) and Identity disappear; layer names are the module paths."""
    x_train, _, x_test, _ = digits
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU()),
        nn.Sequential(
            nn.Dropout(0.5), nn.Sequential(nn.Linear(32, 16), nn.Identity()), nn.ReLU(), nn.Dropout(0.1)
        ),
        nn.Identity(),
        nn.Linear(16, 10),
    ).eval()
    conv = sc.convert(model, x_train)
    layers = conv.network.layers
    assert [type(layer).__name__ for layer in layers] == ["Linear", "Linear", "Linear"]
    assert [layer.name for layer in layers] == ["0.1", "1.1.0", "3"]
    assert list(conv.ann_macs) == ["0.1", "1.1.0", "3"]
    expected = torch_logits(model, x_test)
    assert np.abs(run_ops(conv.ops, x_test).numpy() - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    logits, _ = normalised_ann(conv.network, x_test)
    assert np.abs(logits - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


@pytest.mark.usefixtures("warm_kernels")
def test_other_supported_layers(digits):
    """Spiking AvgPool2d between convolutions (not folded), strided /
    dilated / grouped convolutions, AdaptiveAvgPool2d to 1x1 folded into the
    readout: run_ops equals the model, the normalised ANN keeps the logits,
    and event equals reference."""
    x_train, _, x_test, _ = digits
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 2, padding=1, dilation=2, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()
    conv = sc.convert(model, x_train)
    kinds = [type(layer).__name__ for layer in conv.network.layers]
    assert kinds == ["Conv2d", "AvgPool2d", "Conv2d", "Conv2d", "Linear"]
    expected = torch_logits(model, x_test)
    assert np.abs(run_ops(conv.ops, x_test).numpy() - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    logits, _ = normalised_ann(conv.network, x_test)
    assert np.abs(logits - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    x = x_test[:10]
    spec = spec_for(conv, x, 20)
    ref, traces = reference_with_traces(conv.network, spec)
    assert_equivalent(conv.network, spec, conv.run(x, 20), ref, traces)


# ---------------------------------------------------------------------------
# what the tracer refuses, and registration
# ---------------------------------------------------------------------------


class SigmoidFunction(nn.Module):
    def __init__(self, as_method=False):
        super().__init__()
        self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 10)
        self.as_method = as_method

    def forward(self, x):
        h = self.a(torch.flatten(x, 1))
        return self.b(h.sigmoid() if self.as_method else torch.sigmoid(h))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.b(F.relu(self.a(x)) + x)


class Concat(Residual):
    def __init__(self):
        super().__init__()
        self.b = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.b(torch.cat([F.relu(self.a(x)), x], dim=1))


class DataDependentRelu(nn.Module):
    """A ReLU that torch.fx cannot trace (control flow on data): the
    converter falls back to walking the Sequential and meets this module."""

    def forward(self, x):
        if x.sum() > -math.inf:
            return F.relu(x)
        return x


@pytest.mark.parametrize(
    "make,type_name,path,register",
    [
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10)),
            "Sigmoid",
            "'2'",
            "register_module",
        ),
        (lambda: nn.Sequential(nn.Flatten(), nn.LSTM(64, 10)), "LSTM", "'1'", "register_module"),
        (
            lambda: nn.Sequential(
                nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh()), nn.Linear(32, 10)
            ),
            "Tanh",
            "'0.2'",
            "register_module",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), DataDependentRelu(), nn.Linear(32, 10)),
            "DataDependentRelu",
            "'2'",
            "register_module",
        ),
        (lambda: SigmoidFunction(), "sigmoid", "'sigmoid'", "register_function"),
        (lambda: SigmoidFunction(as_method=True), "method 'sigmoid'", "'sigmoid'", "register_function"),
    ],
)
def test_unsupported_module_or_function_is_named(make, type_name, path, register, digits):
    """The error names the module type (or function), its path in the model,
    and how to register a handler."""
    with pytest.raises(sc.ConversionError) as info:
        sc.convert(make().eval(), digits[0][:50])
    message = str(info.value)
    for part in (type_name, path, register):
        assert part in message, (part, message)


@pytest.mark.parametrize("make,what", [(Residual, "add"), (Concat, "cat")])
def test_non_sequential_graphs_are_refused(make, what, digits):
    """A residual addition or a concatenation is not a chain: refused, naming
    the operation (no handler can make it a chain, so no registration hint is
    required)."""
    with pytest.raises(sc.ConversionError, match=rf"'{what}'.*single chain"):
        sc.convert(make().eval(), digits[0][:50])


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Linear(32, 10)),
            r"'?1'?.*must be followed by a ReLU",
        ),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.ReLU()),
            "must end with a Linear or Conv2d readout",
        ),
        (lambda: nn.Sequential(nn.Flatten(), nn.ReLU()), "no Linear or Conv2d"),
        (lambda: nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 10)), "BatchNorm must follow"),
        (
            lambda: nn.Sequential(
                nn.Flatten(),
                nn.Linear(64, 32),
                nn.BatchNorm1d(32, track_running_stats=False),
                nn.ReLU(),
                nn.Linear(32, 10),
            ),
            "running statistics",
        ),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)
            ),
            "padding",
        ),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, dilation=2),
                nn.Flatten(),
                nn.Linear(16, 10),
            ),
            r"2: MaxPool2d with dilation=2 is not supported \(dilation 1 only\)",
        ),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, ceil_mode=True),
                nn.Flatten(),
                nn.Linear(64, 10),
            ),
            r"2: MaxPool2d with ceil_mode=True is not supported \(ceil_mode=False only\)",
        ),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, return_indices=True),
                nn.Flatten(),
                nn.Linear(36, 10),
            ),
            "return_indices",
        ),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.ReLU(),
                nn.AvgPool2d(3, stride=2),
                nn.Flatten(),
                nn.Linear(36, 10),
            ),
            "stride equal to the kernel",
        ),
    ],
)
def test_unsupported_structures(make, match, digits):
    with pytest.raises(sc.ConversionError, match=match):
        sc.convert(make().eval(), digits[0][:50])


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations made in a test stay in the test (the registry is global
    and has no unregister)."""
    monkeypatch.setattr(ops, "_MODULE_HANDLERS", dict(ops._MODULE_HANDLERS))
    monkeypatch.setattr(ops, "_FUNCTION_HANDLERS", dict(ops._FUNCTION_HANDLERS))


@pytest.mark.usefixtures("private_registry")
def test_register_module_makes_a_module_convertible(digits):
    """nn.AlphaDropout (identity at inference, not a subclass of nn.Dropout)
    is refused, then converts once a handler returning no op is registered;
    the result equals the model without it. A module fx cannot trace gets a
    handler returning a ReLU op."""
    x_train, _, x_test, _ = digits
    torch.manual_seed(3)
    body = [nn.Flatten(), nn.Linear(64, 32), nn.AlphaDropout(0.2), nn.ReLU(), nn.Linear(32, 10)]
    model = nn.Sequential(*body).eval()
    with pytest.raises(sc.ConversionError, match="AlphaDropout"):
        sc.convert(model, x_train)
    sc.register_module(nn.AlphaDropout, lambda module, path: [])
    conv = sc.convert(model, x_train)
    plain = sc.convert(nn.Sequential(*body[:2], *body[3:]).eval(), x_train)
    for a, b in zip(conv.network.layers, plain.network.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)

    gated = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), DataDependentRelu(), nn.Linear(32, 10)).eval()
    with pytest.raises(sc.ConversionError, match="DataDependentRelu"):
        sc.convert(gated, x_train)
    sc.register_module(DataDependentRelu, lambda module, path: [sc.Op("relu", path)])
    conv = sc.convert(gated, x_train)
    expected = torch_logits(gated, x_test)
    assert np.abs(run_ops(conv.ops, x_test).numpy() - expected).max() <= 1e-4 * (1 + np.abs(expected).max())


class FunctionalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.a(torch.flatten(x, 1)))
        return self.b(F.dropout(x, 0.3, training=self.training))


@pytest.mark.usefixtures("private_registry")
def test_register_function_makes_a_function_convertible(digits):
    model = FunctionalDropout().eval()
    with pytest.raises(sc.ConversionError, match="dropout.*register_function"):
        sc.convert(model, digits[0])
    sc.register_function(F.dropout, lambda node, path: [])
    conv = sc.convert(model, digits[0])
    assert len(conv.network.layers) == 2


def test_registry_is_left_clean():
    """(after the registration tests) AlphaDropout is unsupported again."""
    with pytest.raises(sc.ConversionError, match="AlphaDropout"):
        sc.convert(
            nn.Sequential(
                nn.Flatten(), nn.Linear(64, 8), nn.AlphaDropout(0.1), nn.ReLU(), nn.Linear(8, 2)
            ).eval(),
            np.zeros((4, 1, 8, 8), np.float32),
        )


# ---------------------------------------------------------------------------
# refusals of models and data
# ---------------------------------------------------------------------------


def test_model_in_training_mode_is_refused(digits):
    model = digits_mlp()
    assert model.training
    with pytest.raises(sc.ConversionError, match=r"training mode.*eval\(\)"):
        sc.convert(model, digits[0])


@pytest.mark.parametrize("where,value", [("weight", math.nan), ("bias", math.inf), ("running_var", math.nan)])
def test_nonfinite_parameters_are_refused(where, value, digits):
    model = digits_cnn("avg").eval()
    tensor = getattr(model[1] if where == "running_var" else model[0], where)
    with torch.no_grad():
        tensor.view(-1)[0] = value
    name = f"1.{where}" if where == "running_var" else f"0.{where}"
    with pytest.raises(sc.ConversionError, match=rf"'{name}'.*NaN or inf"):
        sc.convert(model, digits[0])


@pytest.mark.parametrize(
    "name,shape,match",
    [
        ("mlp", (20, 1, 7, 7), r"expects 64 inputs"),
        ("avg", (20, 64), r"\(C, H, W\)"),
        ("avg", (20, 3, 8, 8), r"\(3, 8, 8\).*1 channels"),
        ("avg", (20, 1, 6, 6), r"expects 512 inputs"),
    ],
)
def test_calibration_data_of_wrong_shape_names_the_expected_shape(name, shape, match):
    model = (digits_mlp() if name == "mlp" else digits_cnn(name)).eval()
    with pytest.raises(sc.ConversionError, match=match):
        sc.convert(model, np.random.default_rng(0).random(shape).astype(np.float32))


@pytest.mark.parametrize(
    "data,match",
    [
        (np.ones((10, 1, 8, 8), np.int64), "floating-point"),
        (np.ones((10, 1, 8, 8), np.uint8), "floating-point"),
        (np.ones((10, 1, 8, 8), bool), "floating-point"),
        (torch.ones(10, 1, 8, 8, dtype=torch.int32), "floating-point"),
        (np.full((10, 1, 8, 8), np.nan, np.float32), "finite"),
        (np.zeros((0, 1, 8, 8), np.float32), "batch"),
        (np.zeros(64, np.float32), "batch"),
    ],
)
def test_bad_calibration_data_is_refused(data, match):
    with pytest.raises(sc.ConversionError, match=match):
        sc.convert(digits_mlp().eval(), data)


def test_other_argument_errors(converted, digits):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        sc.convert(lambda x: x, digits[0])
    for bad in (0, -1, 100.5):
        with pytest.raises(ValueError, match="percentile"):
            sc.convert(digits_mlp().eval(), digits[0][:20], percentile=bad)
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        converted("mlp").run(digits[2].reshape(-1, 64), 4)


# -- layer-wise calibration ---------------------------------------------------------


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("what", ["bias", "potential"])
def test_calibration_shift_is_the_measured_mean_error(what, trained, converted, digits):
    """The first layer's correction equals the mean, over samples and the
    positions of a channel, of (ANN activation / scale, clipped at 1) minus
    (spike count / T), computed here from the torch model itself; the input
    and every other layer are left alone; the original is not changed."""
    model, conv = trained("avg"), converted("avg")
    x = digits[0][:200]
    T = 4
    before = copy.deepcopy(conv.network)
    calibrated = sc.calibrate(conv, x, T, what=what)
    with torch.no_grad():
        a = F.relu(model[1](model[0](torch.as_tensor(x)))).double().numpy()  # Conv2d, BatchNorm2d, ReLU
    target = np.minimum(a / conv.scales[0], 1.0)  # [N, 16, 8, 8]
    rate = conv.run(x, T).trains[0].counts_per_neuron().reshape(target.shape) / T
    error = np.repeat((target - rate).mean(axis=(0, 2, 3)), 64)
    first, original = calibrated.network.layers[0], conv.network.layers[0]
    if what == "bias":
        np.testing.assert_allclose(first.bias - original.bias, error, atol=1e-6)
        np.testing.assert_array_equal(first.v_init, original.v_init)
    else:
        np.testing.assert_allclose(first.v_init - original.v_init, T * error, atol=1e-6)
        np.testing.assert_array_equal(first.bias, original.bias)
    assert np.abs(error).max() > 1e-3  # there was something to correct
    readout = calibrated.network.layers[-1]
    np.testing.assert_array_equal(readout.bias, conv.network.layers[-1].bias)  # readout=False by default
    for layer, kept in zip(conv.network.layers, before.layers):  # the original is untouched
        np.testing.assert_array_equal(layer.bias, kept.bias)
        np.testing.assert_array_equal(layer.v_init, kept.v_init)
    assert conv.calibration is None and [c.name for c in calibrated.calibration] == ["0", "3"]


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("name", ["avg", "max", "mlp"])
def test_calibration_reduces_the_rate_error_it_measures(name, converted, digits):
    """After calibration at T, every corrected layer's mean per-channel error
    on the calibration data is smaller than before (pooling layers skipped;
    with readout=True the readout's mean error per class vanishes)."""
    conv = converted(name)
    x = digits[0][:300]
    calibrated = sc.calibrate(conv, x, 4, readout=True)
    kinds = [layer.kind for layer in conv.network.layers]
    assert len(calibrated.calibration) == sum(kind != "maxpool" for kind in kinds)
    for report in calibrated.calibration[:-1]:
        assert report.error_after < report.error_before, report
    assert calibrated.calibration[-1].error_after < 1e-9


def test_calibration_refuses_bad_arguments(converted, digits):
    conv = converted("mlp")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="T must be"):
            sc.calibrate(conv, digits[0][:10], bad)
    with pytest.raises(ValueError, match="what must be"):
        sc.calibrate(conv, digits[0][:10], 4, what="threshold")
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        sc.calibrate(conv, digits[0][:10].reshape(10, 64), 4)


# -- hardening: the user's model and data are never changed; one data check everywhere --------


def _snapshot(model):
    """Everything of a model the converter must leave alone: parameters and
    buffers (deep copies), training flags, requires_grad flags, hooks."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": [(name, m.training) for name, m in model.named_modules()],
        "grad": [(name, p.requires_grad, p.dtype) for name, p in model.named_parameters()],
        "hooks": [
            (name, list(m._forward_hooks), list(m._forward_pre_hooks), list(m._backward_hooks))
            for name, m in model.named_modules()
        ],
    }


def _assert_same(before, after):
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert value.dtype == after["state"][key].dtype and torch.equal(value, after["state"][key]), key
    for field in ("training", "grad", "hooks"):
        assert before[field] == after[field], field


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("activation", ["relu", "qcfs"])
def test_convert_calibrate_evaluate_leave_model_and_data_unchanged(activation, digits):
    """A model with BatchNorm, a forward hook and trainable parameters, and
    the numpy data, come out of convert, calibrate, evaluate (with the ANN)
    and predict bit-identical: state, flags and hooks."""
    x_train, _, x_test, y_test = digits
    model = digits_cnn("avg", activation=activation).eval()
    calls = []
    model[2].register_forward_hook(lambda m, i, o: calls.append(1))
    x, xt, yt = x_train[:60].copy(), x_test[:12].copy(), y_test[:12].copy()
    kept = [a.copy() for a in (x, xt, yt)]
    before = _snapshot(model)
    conv = sc.convert(model, x)
    calibrated = sc.calibrate(conv, x, 4)
    sc.evaluate(calibrated, xt, yt, steps=(2, 4), ann_model=model)
    calibrated.predict(torch.as_tensor(xt), 2)
    _assert_same(before, _snapshot(model))
    for a, b in zip((x, xt, yt), kept, strict=True):
        assert a.tobytes() == b.tobytes() and a.dtype == b.dtype


@pytest.mark.parametrize("module", ["1", "3.0", "dropout"])
def test_submodule_in_training_mode_is_refused_by_name(module, digits):
    """A BatchNorm (or Dropout) left in training mode in an otherwise eval()
    model is named in the refusal, and its running statistics are not
    updated by the converter's check pass (they were, and the error blamed
    folding)."""
    model = digits_cnn("avg").eval()
    if module == "3.0":
        model[3] = nn.Sequential(model[3], nn.Identity()).eval()
    if module == "dropout":
        model[6] = nn.Sequential(nn.Dropout(0.5), model[6]).eval()
        module = "6.0"
    model.get_submodule(module).train()
    before = _snapshot(model)
    with pytest.raises(sc.ConversionError, match=rf"training mode: '{module}'.*model\.eval\(\)"):
        sc.convert(model, digits[0][:50])
    _assert_same(before, _snapshot(model))


@pytest.mark.usefixtures("warm_kernels")
def test_ann_in_training_mode_is_refused_by_evaluate_and_accuracy(converted, trained, digits):
    """evaluate(..., ann_model=) and training.accuracy run the ANN only in
    eval mode, and never update its statistics."""
    model = copy.deepcopy(trained("avg"))
    model[4].train()
    before = _snapshot(model)
    x, y = digits[2][:8], digits[3][:8]
    with pytest.raises(sc.ConversionError, match=r"training mode: '4'"):
        sc.evaluate(converted("avg"), x, y, steps=(2,), ann_model=model)
    with pytest.raises(sc.ConversionError, match=r"training mode: '4'"):
        accuracy(model, x, y)
    _assert_same(before, _snapshot(model))


BAD_SAMPLES = [
    (np.ones((10, 1, 8, 8), np.uint8) * 16, "floating-point"),
    (np.ones((10, 1, 8, 8), np.int64), "floating-point"),
    (torch.ones(10, 1, 8, 8, dtype=torch.int32), "floating-point"),
    (np.ones((10, 1, 8, 8), np.complex64), "floating-point"),
    (np.zeros((0, 1, 8, 8), np.float32), "empty batch"),
    (np.zeros((1, 8, 8), np.float32), r"input samples must have shape \(1, 8, 8\)"),
    (np.zeros((10, 64), np.float32), r"\(1, 8, 8\)"),
    (np.zeros(64, np.float32), "batch"),
    (np.float32(1.0), "batch"),
    (np.full((10, 1, 8, 8), np.inf, np.float32), "finite.*sample"),
    ([[1.0, 2.0], [3.0]], "array of numbers"),
    (np.array([None, None], dtype=object), "array of numbers"),
]


@pytest.mark.parametrize("data,match", BAD_SAMPLES)
@pytest.mark.parametrize("entry", ["calibrate", "run", "predict", "evaluate"])
def test_every_entry_point_checks_samples_alike(entry, data, match, converted):
    """calibrate, run, predict and evaluate share convert's data check:
    integer images on the wrong scale (calibrate took them silently, 99.3%
    -> 77.6% at T=4 on the QCFS CNN) and empty data (numpy's reshape error)
    are refused with a ConversionError saying what is wrong."""
    conv = converted("mlp")
    call = {
        "calibrate": lambda: sc.calibrate(conv, data, 4),
        "run": lambda: conv.run(data, 4),
        "predict": lambda: conv.predict(data, 4),
        "evaluate": lambda: sc.evaluate(conv, data, np.zeros(10, np.int64), steps=(4,)),
    }[entry]
    with pytest.raises(sc.ConversionError, match=match):
        call()


@pytest.mark.parametrize(
    "labels,match",
    [
        (np.arange(8) + 5, r"classes in \[0, 10\).*sample\(s\) 5, 6, 7 have 10, 11, 12"),
        (-np.ones(8, np.int64), r"classes in \[0, 10\)"),
        (np.zeros(8), "integer class labels"),
        (np.zeros(7, np.int64), "one label per sample"),
        (np.zeros((8, 1), np.int64), "one label per sample"),
        (["a"] * 8, "integer class labels"),
    ],
)
def test_labels_are_checked(labels, match, converted, digits):
    """evaluate, early_exit and accuracy refuse labels that cannot be
    classes of the readout (before: accuracy 0 or a silent broadcast)."""
    conv = converted("mlp")
    x = digits[2][:8]
    with pytest.raises(sc.ConversionError, match=match):
        sc.evaluate(conv, x, labels, steps=(2,))
    trajectory = sc.evaluate(conv, x, digits[3][:8], steps=(2,)).trajectory
    with pytest.raises(sc.ConversionError, match=match.replace("y ", "labels ")):
        sc.early_exit(trajectory, labels, patience=1)


def test_ann_that_outputs_nan_or_inf_is_named(digits):
    """Finite parameters whose product overflows float32: the error says the
    ANN's output is not finite (it blamed folding)."""
    model = digits_mlp().eval()
    with torch.no_grad():
        model[1].weight.mul_(1e30)
        model[3].weight.mul_(1e30)
    with pytest.raises(sc.ConversionError, match=r"model's output.*NaN or inf"):
        sc.convert(model, digits[0][:20])
    with pytest.raises(sc.ConversionError, match=r"model's output on x.*NaN or inf"):
        accuracy(model, digits[2][:8], digits[3][:8])


def test_entry_points_refuse_objects_of_the_wrong_type(converted, digits):
    with pytest.raises(TypeError, match="ConvertedNetwork"):
        sc.calibrate(converted("mlp").network, digits[0][:10], 4)
    with pytest.raises(TypeError, match="ConvertedNetwork"):
        sc.evaluate(None, digits[2][:8], digits[3][:8])
    with pytest.raises(TypeError, match="ann_model"):
        sc.evaluate(converted("mlp"), digits[2][:8], digits[3][:8], steps=(2,), ann_model=lambda x: x)


def test_train_leaves_the_global_generator_alone(digits):
    """train() seeds its own draws and restores torch's global generator."""
    state = torch.get_rng_state()
    x, y = digits[0][:64], digits[1][:64]
    model = train(digits_mlp(), x, y, epochs=1, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    again = train(digits_mlp(), x, y, epochs=1, progress=False)
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
