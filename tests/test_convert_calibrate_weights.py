"""Weight calibration of a converted graph: layer by layer
(``snn.convert.calibrate(..., what="weights")``: each population's incoming
weights and per-channel bias fitted so that its T-step rates, given its
sources' spike trains in the SNN, match the ANN's activations), and end to
end (``what="network"``: every population's jointly, so that the readout
matches the ANN's logits).

A small residual network (conv-ReLU, then ReLU(conv + identity), a zeroed
3x3 tap, AvgPool2d(2), flatten, Linear) trained 3 epochs on the digits; 300
training digits calibrate at T = 4."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snn.convert as sc
from snn.convert import ConversionError
from snn.convert.calibration import _NetworkTwin, _Twin
from snn.convert.training import load_digits_split, train

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

T = 4
N_CAL = 300
# This 3-epoch model on 300 digits: at the defaults (20 epochs, lr 3e-3, chosen on DIGITS-RESNET) the
# merge population's fit does not lower its error and is not kept; at 5 epochs, lr 1e-3 every one is.
FIT = dict(epochs=5, lr=1e-3)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 16, 10)

    def forward(self, x):
        a = F.relu(self.c1(x))
        b = F.relu(self.c2(a) + a)
        return self.fc(torch.flatten(self.pool(b), 1))


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def model(digits):
    x, y = digits[0], digits[1]
    m = train(Residual(), x, y, epochs=3, progress=False)
    with torch.no_grad():
        m.c2.weight[:, :, 0, 0] = 0.0  # no synapse there: calibration must not create one
    return m


@pytest.fixture(scope="module")
def converted(model, digits):
    return sc.convert(model, digits[0], T=T)


@pytest.fixture(scope="module")
def calibrated(converted, digits):
    return sc.calibrate(converted, digits[0][:N_CAL], T, what="weights", **FIT)


def test_lowers_the_rate_error_it_fits(converted, calibrated):
    """Every population's root mean square rate error (the readout's in
    logits) after the fit is at most its error before (a fit that does not
    lower it is not kept), and lower on average; the residual population
    (two projections: conv and identity) and the readout are fitted."""
    report = {c.name: c for c in calibrated.calibration}
    assert list(report) == [p.name for p in converted.pops]  # the readout too: weights fit it by default
    for c in report.values():
        assert c.error_after <= c.error_before * (1 + 1e-6) + 1e-9, c
    assert np.mean([c.error_after for c in report.values()]) < np.mean(
        [c.error_before for c in report.values()]
    )
    merge = next(p for p in converted.pops if len(p.projections) == 2)
    assert [w.shape for w in calibrated.w_shift[merge.name]] == [
        np.shape(p.weight) for p in merge.projections
    ]
    assert report[merge.name].weight_change > 0


def test_readout_error_falls_against_the_potential_correction(converted, calibrated, digits):
    """On the calibration data the SNN's readout is closer to the ANN's
    logits after the weight fit than after the potential correction alone,
    and the weight fit after the potential correction closer still."""
    x = digits[0][:N_CAL]
    logits = converted.ann_activations(x)[converted.readout]

    def err(c):
        return float(np.mean((c.run(x, T).membrane / T - logits) ** 2))

    potential = sc.calibrate(converted, x, T, passes=2)
    both = sc.calibrate(potential, x, T, what="weights", **FIT)
    assert err(calibrated) < err(converted)
    assert err(both) < err(potential)


def test_the_twin_runs_as_the_simulator(calibrated, digits):
    """The torch twin the fit uses gives the simulator's spike counts (float32
    against the simulator's float64: at most 0.1 % of the rates may differ, a
    membrane within rounding of the threshold; measured 0)."""
    x = digits[0][:N_CAL]
    shapes = {p.name: p.shape for p in calibrated.pops}
    targets = calibrated.ann_activations(x)
    result = calibrated.run(x, T)
    xt = torch.from_numpy(x.astype(np.float32))
    for pop in calibrated.pops:
        twin = _Twin(calibrated, pop, shapes, x, xt, targets[pop.name], T)
        with torch.no_grad():
            rate = twin.forward(torch.arange(len(x))).numpy()
        if pop.kind == "readout":
            np.testing.assert_allclose(rate, result.membrane / T, atol=1e-4)
        else:
            assert np.mean(rate != result.spike_counts(pop.name) / T) <= 1e-3


@pytest.mark.parametrize("what", ["weights", "network"])
def test_the_input_is_not_changed(model, converted, digits, what):
    """Neither the torch model, nor the converted graph (its ANN program, its
    graph's weights, its shifts) is changed; the calibrated copy's ANN is the
    same, so a later correction still targets the ANN's activations."""
    state = copy.deepcopy(model.state_dict())
    pops = copy.deepcopy(converted.pops)
    weights = [_weights(p) for p in converted.network.projections]
    shifts = copy.deepcopy((converted.v_shift, converted.b_shift, converted.w_shift))
    x = digits[0][:100]
    cal = sc.calibrate(converted, x, T, what=what, epochs=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for a, b in zip(pops, converted.pops, strict=True):
        assert a.name == b.name and np.array_equal(a.bias, b.bias)
        for p, q in zip(a.projections, b.projections, strict=True):
            assert np.array_equal(p.weight, q.weight)
    for w, p in zip(weights, converted.network.projections, strict=True):
        assert np.array_equal(w, _weights(p))
    assert (converted.v_shift, converted.b_shift, converted.w_shift) == shifts
    for name, a in converted.ann_activations(x).items():
        np.testing.assert_array_equal(a, cal.ann_activations(x)[name])


def _weights(projection) -> np.ndarray:
    """A copy of a graph projection's weights (a convolution's kernel; CSR weights)."""
    if hasattr(projection, "kernel"):
        return np.array(projection.kernel, copy=True)
    return np.concatenate(
        [np.asarray(g[3] if g[3] is not None else [projection.weight]) for g in projection.groups]
    )


def test_no_synapse_is_created(calibrated, converted):
    """A weight that is 0 in the normalised graph (the zeroed 3x3 tap) stays 0."""
    merge = next(p for p in converted.pops if len(p.projections) == 2)
    j = next(k for k, p in enumerate(merge.projections) if p.kind == "conv")
    shift = calibrated.w_shift[merge.name][j]
    assert np.all(shift[:, :, 0, 0] == 0)
    assert np.any(shift != 0)


def test_corrections_add_up(calibrated, digits):
    """Calibrating a calibrated graph adds to its weight and bias shifts."""
    again = sc.calibrate(calibrated, digits[0][:100], T, what="weights", epochs=1, lr=1e-3, readout=False)
    changed = [c.name for c in again.calibration if c.weight_change > 0]
    assert changed
    for name in calibrated.w_shift:
        for a, b in zip(calibrated.w_shift[name], again.w_shift[name], strict=True):
            if name not in changed:
                np.testing.assert_array_equal(a, b)
    assert any(
        not np.array_equal(a, b)
        for name in changed
        for a, b in zip(calibrated.w_shift[name], again.w_shift[name], strict=True)
    )


@pytest.mark.parametrize("what", ["weights", "network"])
def test_refusals(converted, digits, what):
    x = digits[0][:50]
    chain = sc.convert(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval(), x)
    with pytest.raises(ValueError, match="ConvertedGraph"):
        sc.calibrate(chain, x, T, what=what)
    for kwargs, match in (
        (dict(epochs=0), "epochs"),
        (dict(epochs=2.5), "epochs"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(readout="yes"), "readout"),
        (dict(what="weight"), "what"),
        (dict(spike_cost=-1.0), "spike_cost"),
        (dict(spike_cost=float("nan")), "spike_cost"),
        (dict(spike_cost=True), "spike_cost"),
    ):
        kwargs.setdefault("what", what)
        with pytest.raises(ValueError, match=match):
            sc.calibrate(converted, x, T, **kwargs)
    with pytest.raises(ValueError, match="T must"):
        sc.calibrate(converted, x, 0, what=what)
    with pytest.raises(ConversionError):
        sc.calibrate(converted, x[:, :, :4], T, what=what)
    with pytest.raises(ConversionError):
        sc.calibrate(converted, np.full_like(x, np.nan), T, what=what)


# -- end to end (what="network") --------------------------------------------------------


@pytest.fixture(scope="module")
def potential(converted, digits):
    return sc.calibrate(converted, digits[0][:N_CAL], T, passes=2)


@pytest.fixture(scope="module")
def network_fit(potential, digits):
    return sc.calibrate(potential, digits[0][:N_CAL], T, what="network", epochs=20)


def _readout_error(c, x) -> float:
    logits = c.ann_activations(x)[c.readout]
    return float(np.mean((c.run(x, T).membrane / T - logits) ** 2))


def test_network_fit_brings_the_readout_to_the_logits(potential, network_fit, digits):
    """End to end, the readout is closer to the ANN's logits on the
    calibration data than after the potential correction it starts from (and
    than after the layer-wise fit from the same start); its report has every
    population, the readout's error the one that fell; no synapse is created."""
    x = digits[0][:N_CAL]
    assert _readout_error(network_fit, x) < 0.5 * _readout_error(potential, x)
    layerwise = sc.calibrate(potential, x, T, what="weights", **FIT)
    assert _readout_error(network_fit, x) < _readout_error(layerwise, x)
    report = {c.name: c for c in network_fit.calibration}
    assert list(report) == [p.name for p in potential.pops]
    readout = report[potential.readout]
    assert readout.error_after < readout.error_before
    assert all(c.weight_change > 0 for c in report.values())
    merge = next(p for p in potential.pops if len(p.projections) == 2)
    j = next(k for k, p in enumerate(merge.projections) if p.kind == "conv")
    assert np.all(network_fit.w_shift[merge.name][j][:, :, 0, 0] == 0)


def test_the_network_twin_runs_as_the_simulator(network_fit, digits):
    """The whole-network twin (each population driven by the twin's own
    spikes) gives the simulator's readout (float32 against float64)."""
    _assert_twin_runs_as_the_simulator(network_fit, digits[0][:N_CAL])


def _assert_twin_runs_as_the_simulator(converted, x):
    """The whole-network twin's readout and SynOps are the simulator's on ``x``."""
    twin = _NetworkTwin(converted, T, readout=True)
    with torch.no_grad():
        out, synops = twin.forward(torch.from_numpy(x.astype(np.float32)))
    result = converted.run(x, T)
    np.testing.assert_allclose(out.numpy(), result.membrane / T, atol=1e-4)
    assert float(synops.sum()) == result.total("synops")


def test_network_fit_not_kept_unless_it_helps(potential, digits):
    """A fit that diverges (learning rate 50) leaves the readout further from
    the logits: the network is returned as it was, with no weight change."""
    x = digits[0][:100]
    cal = sc.calibrate(potential, x, T, what="network", epochs=1, lr=50.0)
    assert all(c.weight_change == 0 for c in cal.calibration)
    np.testing.assert_array_equal(cal.run(x, T).membrane, potential.run(x, T).membrane)


def test_network_fit_keeps_the_readout_when_asked(potential, digits):
    """``readout=False``: the readout's weights and bias are not fitted."""
    cal = sc.calibrate(potential, digits[0][:100], T, what="network", epochs=1, readout=False)
    assert potential.readout not in {c.name for c in cal.calibration}
    assert potential.readout not in cal.w_shift and potential.readout not in cal.b_shift
    assert any(np.any(w) for ws in cal.w_shift.values() for w in ws)


def test_spike_cost_trades_readout_error_for_synops(potential, network_fit, digits):
    """With a spike cost the fit spends fewer SynOps on the calibration data
    than the start and than the fit without one, for a larger readout error
    than the fit without one; the cost belongs to what="network" alone."""
    x = digits[0][:N_CAL]
    cheap = sc.calibrate(potential, x, T, what="network", epochs=20, spike_cost=0.01)
    synops = {name: c.run(x, T).total("synops") for name, c in (("start", potential), ("free", network_fit))}
    assert cheap.run(x, T).total("synops") < 0.8 * min(synops.values())
    assert _readout_error(cheap, x) > _readout_error(network_fit, x)
    with pytest.raises(ValueError, match="spike_cost"):
        sc.calibrate(potential, x, T, what="weights", spike_cost=0.01)


def test_network_fit_through_a_max_pool_gate(model, digits):
    """An overlapping, padded max-pool gate (ResNet's stem ``MaxPool2d(3, 2,
    1)``) in the graph: the twin gives the simulator's readout and SynOps
    (the gate's spike count is its window's highest count at every step), and
    the fit brings the readout closer to the logits (the gradient passes the
    gate to the input holding the highest count)."""
    x = digits[0][:N_CAL]
    gated = copy.deepcopy(model)
    gated.pool = nn.MaxPool2d(3, 2, 1).eval()
    converted = sc.calibrate(sc.convert(gated, digits[0], T=T), x, T, passes=2)
    assert any(p.kind == "maxpool" for p in converted.pops)
    _assert_twin_runs_as_the_simulator(converted, x)
    fitted = sc.calibrate(converted, x, T, what="network", epochs=20)
    assert _readout_error(fitted, x) < 0.5 * _readout_error(converted, x)
    gate = next(p.name for p in converted.pops if p.kind == "maxpool")
    assert gate not in fitted.w_shift and gate not in {c.name for c in fitted.calibration}
