"""QCFS activations (``snn.convert.qcfs``) and their conversion (``snn.convert``).

The accuracy test trains the QCFS DIGITS-CNN (L = 4 levels, seeded) for
``EPOCHS`` epochs only (CI time). Measured first (torch 2.x CPU, 540 test
digits; training depends slightly on torch's thread count)::

    QCFS CNN, L=4, 10 epochs   threads  ANN      SNN T=4   T=8      T=16
                               1        98.70%   98.89%    98.52%   98.52%
                               2        98.70%   98.70%    98.52%   98.52%

Required: the ANN reaches 97 % (training worked) and the SNN at T = L = 4
is within 1 percentage point (5 digits of 540) of it: measured gap 0 or
better, while losing the shift (v_init 0 instead of half threshold) gives
78.5 % at T = 4. That the thresholds are the trained lambdas is checked
exactly (scales, first-layer spike counts), not through accuracy: on these
easy digits the same weights read as a ReLU network with percentile scales
also reach 98.9 % at T = 4 after 10 epochs. The full 60-epoch
figure (the issue's target, >= 99.3 % at T = 4) is measured by
``examples/convert_digits.py --activation qcfs`` and reported in the issue
note, not asserted here.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

import snn
import snn.convert as sc
from snn.convert.chain import run_ops
from snn.convert.ops import _MODULE_HANDLERS
from snn.convert.qcfs import QCFS, floor_ste, qcfs, replace_relu
from snn.convert.training import accuracy, digits_cnn, digits_mlp, load_digits_split, train

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

LEVELS = 4
EPOCHS = 10
ANN_FLOOR, GAP = 0.97, 0.01


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def qcfs_cnn(digits):
    x_train, y_train, _, _ = digits
    model = digits_cnn("avg", activation="qcfs", levels=LEVELS, seed=0)
    return train(model, x_train, y_train, epochs=EPOCHS, progress=False)


@pytest.fixture(scope="module")
def converted_qcfs(qcfs_cnn, digits):
    return sc.convert(qcfs_cnn, digits[0])


def quantised_levels(x, lam, levels):
    """Independent reference: the number of levels ``n`` of QCFS, in numpy."""
    return np.clip(np.floor(np.asarray(x, np.float64) * levels / lam + 0.5), 0, levels)


# ---------------------------------------------------------------------------
# the activation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("levels,lam", [(1, 1.0), (4, 2.0), (8, 0.7)])
def test_qcfs_values_are_the_quantised_clip(levels, lam):
    x = torch.linspace(-1, 2 * lam, 1001, dtype=torch.float64)
    module = QCFS(levels, lam).double()
    lam = module.threshold.item()  # lambda as stored (float32, then float64)
    y = module(x).detach().numpy()
    assert np.allclose(y, lam * quantised_levels(x.numpy(), lam, levels) / levels, atol=1e-12)
    assert set(np.round(y * levels / lam, 9)) <= set(range(levels + 1))
    assert y.min() == 0 and y.max() == pytest.approx(lam)


def test_straight_through_gradients():
    """floor passes the gradient straight through, so d qcfs / dx is 1
    wherever the clamp passes its input (levels 0..L, ends included, as
    ``torch.clamp`` does) and 0 where it clips; the threshold gets a
    non-zero gradient."""
    lam, levels = torch.tensor(2.0, dtype=torch.float64, requires_grad=True), 4
    x = torch.tensor([-1.0, -0.2, 0.1, 0.7, 1.3, 1.9, 2.2, 3.0], dtype=torch.float64, requires_grad=True)
    qcfs(x, lam, levels).sum().backward()
    n = np.floor(x.detach().numpy() * levels / 2.0 + 0.5)
    assert x.grad.numpy().tolist() == ((n >= 0) & (n <= levels)).astype(float).tolist()
    assert 0 < x.grad.sum() < len(x)
    assert lam.grad is not None and lam.grad != 0
    z = torch.tensor([0.3, 1.7], requires_grad=True)
    floor_ste(z).sum().backward()
    assert torch.equal(z.grad, torch.ones(2))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"levels": 0}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"levels": True}, "levels"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": -1.0}, "threshold"),
        ({"shift": 1.5}, "shift"),
    ],
)
def test_qcfs_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QCFS(**kwargs)


def test_replace_relu_reaches_nested_modules_and_builders():
    model = nn.Sequential(
        nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2)
    )
    replace_relu(model, levels=8, threshold=3.0)
    found = [m for m in model.modules() if isinstance(m, QCFS)]
    assert len(found) == 2 and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert all(m.levels == 8 and m.threshold.item() == 3.0 for m in found)
    assert sum(isinstance(m, QCFS) for m in digits_cnn("max", activation="qcfs").modules()) == 2
    assert sum(isinstance(m, QCFS) for m in digits_mlp(activation="qcfs", levels=2).modules()) == 2
    with pytest.raises(ValueError, match="activation"):
        digits_cnn("avg", activation="gelu")


# ---------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------


def test_qcfs_is_registered_through_the_registry():
    """The converter knows QCFS through register_module (a subclass too),
    and the tracer keeps registered modules whole."""
    assert QCFS in _MODULE_HANDLERS

    class MyQCFS(QCFS):
        pass

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), MyQCFS(4, 1.5), nn.Linear(16, 10)).eval()
    conv = sc.convert(model, np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32))
    assert conv.scales == [pytest.approx(1.5)]
    assert [op.kind for op in conv.ops] == ["flatten", "affine", "relu", "affine"]
    assert conv.ops[2].meta["clip"] == {"threshold": 1.5, "levels": 4, "shift": 0.5}


def test_converted_qcfs_takes_the_trained_thresholds(qcfs_cnn, converted_qcfs, digits):
    """Scales are the trained lambdas (not percentiles), layers fire at 1
    and start at half threshold, and the folded ops compute the model
    (quantisation included) in float64."""
    lambdas = [m.threshold.item() for m in qcfs_cnn.modules() if isinstance(m, QCFS)]
    assert converted_qcfs.scales == pytest.approx(lambdas, rel=1e-7)
    hidden = converted_qcfs.network.layers[:-1]
    for layer in hidden:
        assert layer.neuron == snn.IF(threshold=1.0, reset="subtract")
        assert np.all(layer.v_init == 0.5)
    assert converted_qcfs.network.layers[-1].neuron.threshold == math.inf
    x_test = digits[2]
    with torch.no_grad():
        expected = copy.deepcopy(qcfs_cnn).double()(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    got = run_ops(converted_qcfs.ops, x_test).numpy()
    assert np.abs(got - expected).max() <= 1e-6 * (1 + np.abs(expected).max())


@pytest.mark.usefixtures("warm_kernels")
def test_first_layer_spike_counts_are_the_qcfs_levels(qcfs_cnn, converted_qcfs, digits):
    """At T = L the first layer's spike counts equal the ANN's quantised
    activation in levels, ``clamp(floor(z L / lambda + 1/2), 0, L)`` of the
    BatchNorm-folded pre-activation ``z`` (computed here by torch from the
    model's own modules), except where ``z L / lambda + 1/2`` is within
    1e-5 of an integer (float32 model vs float64 SNN)."""
    x = digits[2][:60]
    conv, bn, act = qcfs_cnn[0], qcfs_cnn[1], qcfs_cnn[2]
    with torch.no_grad():
        z = bn(conv(torch.as_tensor(x))).double().numpy().reshape(len(x), -1)
    lam = act.threshold.item()
    expected = quantised_levels(z, lam, LEVELS)
    counts = converted_qcfs.run(x, LEVELS).spike_counts(0)
    scaled = z * LEVELS / lam + 0.5
    near = np.abs(scaled - np.round(scaled)) < 1e-5
    assert np.all((counts == expected) | near), np.abs(counts - expected).max()
    assert (counts > 0).mean() > 0.05  # the layer is active


def test_nonpositive_threshold_is_refused(digits):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), QCFS(4, 1.0), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        model[2].threshold.fill_(-0.5)
    with pytest.raises(sc.ConversionError, match=r"^2: QCFS threshold must be > 0"):
        sc.convert(model, digits[0][:20])


def test_converted_qcfs_accuracy_at_few_steps(qcfs_cnn, converted_qcfs, digits):
    _, _, x_test, y_test = digits
    ann = accuracy(qcfs_cnn, x_test, y_test)
    assert ann >= ANN_FLOOR, f"the QCFS ANN reached only {ann:.2%} after {EPOCHS} epochs"
    ev = sc.evaluate(converted_qcfs, x_test, y_test, steps=(LEVELS, 2 * LEVELS), ann_model=qcfs_cnn)
    snn_acc = ev.rows[0]["accuracy"]
    assert snn_acc >= ann - GAP, f"SNN {snn_acc:.2%} at T={LEVELS} vs ANN {ann:.2%}\n{ev.table()}"
