"""The early exit judged inside the graph kernel (``engine="kernel"``,
``snn.run.stepped.SteppedExit``) against the chunked exit judged in Python
between chunks (``engine="chunked"``): the same exit steps, decisions,
readouts and counts, on random small converted networks and rules, on the
event and the clock paths; and the graph kernel's convolution delivery
(channel-last sums folded once per neuron) against the clock-driven
reference, bit for bit in exact arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import snn
import snn.convert as sc
from snn.convert.stopping import ExitRule

torch.set_num_threads(1)


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=2 if c % 2 == 0 else 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(c * 16, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


def _model(kind, seed, width):
    torch.manual_seed(seed)
    if kind == "stack":
        return nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(width * 16, 10),
        ).eval()
    return Residual(width).eval()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((24, 1, 8, 8)) * (rng.random((24, 1, 8, 8)) < 0.6)


_CONVERTED = {}


def _converted(kind, seed, width, data):
    key = (kind, seed, width)
    if key not in _CONVERTED:
        _CONVERTED[key] = sc.convert(_model(kind, seed, width), data)
    return _CONVERTED[key]


RULES = [
    dict(patience=2),
    dict(patience=0, min_steps=3),
    dict(margin=0.05),
    dict(confidence=0.3),
    dict(patience=1, margin=0.01, confidence=0.15, min_steps=2),
    dict(patience=3, every=4),
    dict(margin=1e9),  # never: every sample runs to T
]


def _same(a, b, counts=True):
    np.testing.assert_array_equal(a.exit_step, b.exit_step)
    np.testing.assert_array_equal(a.decision, b.decision)
    np.testing.assert_array_equal(a.readout, b.readout)
    np.testing.assert_array_equal(a.macs, b.macs)
    if counts:
        np.testing.assert_array_equal(a.synops, b.synops)
        np.testing.assert_array_equal(a.updates, b.updates)


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["stack", "graph"]),
    seed=st.integers(0, 3),
    width=st.sampled_from([2, 4]),
    rule=st.sampled_from(RULES),
    mode=st.sampled_from(["event", "clock"]),
    T=st.sampled_from([6, 17]),
)
def test_kernel_exit_equals_chunked_exit(data, kind, seed, width, rule, mode, T):
    """The same stepped populations (``together``), the rule judged in the
    kernel or in Python: the same exits, readouts and counts."""
    conv = _converted(kind, seed, width, data)
    x = data[:10]
    inside = sc.run_early_exit(conv, x, T, mode=mode, engine="kernel", **rule)
    outside = sc.run_early_exit(conv, x, T, mode=mode, engine="chunked", together=True, **rule)
    _same(inside, outside)
    if "margin" in rule and rule["margin"] > 1e8:
        np.testing.assert_array_equal(inside.exit_step, T)


@pytest.mark.parametrize("kind", ["stack", "graph"])
def test_auto_engine_runs_in_the_kernel_and_equals_cut_runs(data, kind):
    """The default engine and paths (the clock path for populations fed by
    a convolution or driven): each exited sample is the run cut at its exit
    step; its batch-1 run is the same; layer stages agree on exits."""
    conv = _converted(kind, 1, 4, data)
    x = data[:12]
    out = sc.run_early_exit(conv, x, 20, patience=2)
    assert len(set(out.exit_step.tolist())) > 1
    for b in range(len(x)):
        cut = conv.run(x[b : b + 1], int(out.exit_step[b]))
        np.testing.assert_allclose(out.readout[b], cut.membrane[0], rtol=0, atol=1e-9)
        assert out.decision[b] == cut.membrane[0].argmax()
        assert out.synops[b] == sum(int(c.synops[0]) for c in cut.counts), b
        one = sc.run_early_exit(conv, x[b : b + 1], 20, patience=2)
        _same(one, sc.run_early_exit(conv, x[b : b + 1], 20, patience=2, engine="kernel"))
        assert one.exit_step[0] == out.exit_step[0 + b] and one.synops[0] == out.synops[b]
    layered = sc.run_early_exit(conv, x, 20, patience=2, engine="chunked")
    np.testing.assert_array_equal(layered.exit_step, out.exit_step)
    np.testing.assert_array_equal(layered.decision, out.decision)
    np.testing.assert_array_equal(layered.synops, out.synops)


def test_threads_and_a_growing_history_change_nothing(data):
    """A long run (the spike history grows mid-run) on one and two threads."""
    conv = _converted("stack", 2, 4, data)
    x = data[:8]
    rule = ExitRule(margin=1e9)  # never met: all run to T
    one = sc.run_early_exit(conv, x, 200, rule, n_threads=1, mode="event")
    two = sc.run_early_exit(conv, x, 200, rule, n_threads=2, mode="event")
    _same(one, two)
    _same(one, sc.run_early_exit(conv, x, 200, rule, mode="event", engine="chunked", together=True))
    np.testing.assert_array_equal(one.exit_step, 200)


def test_a_batch_larger_than_a_block(data):
    """A batch run in blocks over reused arrays (``SteppedExit``), twice:
    what the chunked way computes, and the same the second time."""
    conv = _converted("graph", 3, 4, data)
    x = np.concatenate([data, data[::-1], data])[:70]
    first = sc.run_early_exit(conv, x, 12, patience=1, mode="clock", engine="kernel")
    _same(first, sc.run_early_exit(conv, x, 12, patience=1, mode="clock", engine="chunked", together=True))
    _same(first, sc.run_early_exit(conv, x, 12, patience=1, mode="clock", engine="kernel"))
    np.testing.assert_array_equal(first.exit_step[:22], first.exit_step[48:])


def test_rules_judged_alike_in_python_and_in_the_kernel():
    """``ExitRule.holds`` (the chunked way) and the kernel's rule are one
    compiled function: hand-made readouts."""
    r = np.array([[3.0, 1.0, 0.5], [2.0, 2.0, 0.0], [-1.0, 4.0, 3.9]])
    t = 2
    unchanged = np.array([0, 5, 2])
    assert ExitRule(margin=0.99).holds(t, r, unchanged).tolist() == [True, False, False]
    assert ExitRule(margin=1.0).holds(t, r, unchanged).tolist() == [True, False, False]
    assert ExitRule(margin=1.01).holds(t, r, unchanged).tolist() == [False, False, False]
    assert ExitRule(patience=2).holds(t, r, unchanged).tolist() == [False, True, True]
    assert ExitRule(patience=2, min_steps=3).holds(t, r, unchanged).tolist() == [False, False, False]
    z = np.exp(r / t - (r / t).max(axis=1, keepdims=True))
    p = 1 / z.sum(axis=1)
    got = ExitRule(confidence=0.5).holds(t, r, unchanged)
    np.testing.assert_array_equal(got, p >= 0.5)


def test_engines_refused_or_fallen_back(data):
    conv = _converted("stack", 0, 2, data)
    x = data[:4]
    custom = dict(custom=lambda t, r: r.max(axis=1) > 0)
    with pytest.raises(ValueError, match="custom"):
        sc.run_early_exit(conv, x, 8, engine="kernel", **custom)
    _same(
        sc.run_early_exit(conv, x, 8, **custom),  # auto: chunked, the callable judged in Python
        sc.run_early_exit(conv, x, 8, engine="chunked", **custom),
    )
    with pytest.raises(ValueError, match="engine"):
        sc.run_early_exit(conv, x, 8, patience=1, engine="fast")
    with pytest.raises(ValueError, match="T must"):
        sc.run_early_exit(conv, x, 0, patience=1)
    with pytest.raises(ValueError, match="mode"):
        sc.run_early_exit(conv, x, 8, patience=1, engine="kernel", mode="dense")
    torch.manual_seed(0)
    pooled = sc.convert(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10)
        ).eval(),
        data,
    )
    with pytest.raises(ValueError, match="max-pool"):
        sc.run_early_exit(pooled, x, 8, patience=1, engine="kernel")
    auto = sc.run_early_exit(pooled, x, 8, patience=1)  # a gate: layer stages, chunked
    _same(auto, sc.run_early_exit(pooled, x, 8, patience=1, engine="chunked"))


# -- the graph kernel's convolution delivery against the reference ---------------

DYADIC = np.arange(-8, 9) / 8.0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    c_in=st.integers(1, 3),
    groups=st.sampled_from([1, 2]),
    k=st.sampled_from([1, 2, 3]),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    dil=st.integers(1, 2),
    mode=st.sampled_from(["event", "clock"]),
    delay=st.integers(0, 2),
)
def test_stepped_conv_equals_reference_exactly(seed, c_in, groups, k, stride, pad, dil, mode, delay):
    """Convolutions stepped together (two into one population, one of them
    recurrent, grouped, strided, dilated) with dyadic weights: the graph
    kernel's spikes, membranes and SynOps equal the reference's exactly."""
    rng = np.random.default_rng(seed)
    c_in *= groups
    h = 6
    out = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    if out < 1:
        return
    g = snn.Graph()
    x = g.input((c_in, h, h), name="x")
    a = g.population((2 * groups, out, out), snn.IF(threshold=1.0), name="a")
    b = g.population((2 * groups, out, out), snn.LIF(beta=0.5, threshold=0.75), name="b")
    w1 = rng.choice(DYADIC, (2 * groups, c_in // groups, k, k))
    g.conv(x, a, w1, stride=stride, padding=pad, dilation=dil, groups=groups, delay=0)
    g.conv(
        x,
        b,
        rng.choice(DYADIC, (2 * groups, c_in // groups, k, k)),
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=groups,
        delay=delay,
    )
    g.conv(a, b, rng.choice(DYADIC, (2 * groups, 2, 3, 3)), padding=1, groups=groups, delay=0)
    g.conv(b, b, rng.choice(DYADIC, (2 * groups, 2 * groups, 1, 1)), delay=1)
    T, batch = 12, 2
    spikes = (rng.random((T, batch, x.n)) < 0.4).astype(np.uint8)
    ref = g.run(T, inputs={"x": spikes}, backend="reference", record_v={"b": np.arange(b.n)})
    sim = g.start(T, inputs={"x": spikes}, mode=mode, together=True, record_v={"b": np.arange(b.n)})
    got = sim.advance().result()
    for name in ("a", "b"):
        np.testing.assert_array_equal(got.spikes(name), ref.spikes(name), err_msg=name)
    np.testing.assert_array_equal(got.v("b"), ref.v("b"))
    totals = sim.totals()
    for name in ("a", "b"):
        np.testing.assert_array_equal(
            totals[name][:, 0], ref.counts[ref.names.index(name)].synops, err_msg=name
        )
