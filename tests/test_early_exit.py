"""Early exit that stops the simulation (``snn.convert.run_early_exit``) and
the chunked-run operations it stands on (``Simulation.keep``, ``totals``,
``recorded``): an exited sample's readout, decision and counts are those of
the same run cut at its exit step, on every path, for stacks and graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snn
import snn.convert as sc
from snn.convert.stopping import ExitRule

torch.set_num_threads(1)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 16, 10)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((40, 1, 8, 8)) * (rng.random((40, 1, 8, 8)) < 0.6)


@pytest.fixture(scope="module")
def converted(data):
    """A stack (chain CNN) and a graph (residual), seeded random weights."""
    torch.manual_seed(0)
    chain = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(96, 10)
    ).eval()
    torch.manual_seed(1)
    residual = Residual().eval()
    return {"stack": sc.convert(chain, data), "graph": sc.convert(residual, data)}


@pytest.mark.parametrize("kind", ["stack", "graph"])
@pytest.mark.parametrize("mode", ["event", "clock"])
@pytest.mark.parametrize("engine, together", [("kernel", False), ("chunked", False), ("chunked", True)])
def test_exited_samples_equal_runs_cut_at_their_exit(converted, data, kind, mode, engine, together):
    conv = converted[kind]
    x = data[:12]
    out = sc.run_early_exit(conv, x, 24, patience=2, mode=mode, together=together, engine=engine)
    assert out.exit_step.min() >= 1 and out.exit_step.max() <= 24
    assert len(set(out.exit_step.tolist())) > 1  # samples leave at different steps
    for b in range(len(x)):
        cut = conv.run(x[b : b + 1], int(out.exit_step[b]), mode=mode)
        np.testing.assert_allclose(out.readout[b], cut.membrane[0], rtol=0, atol=1e-9)
        assert out.decision[b] == cut.membrane[0].argmax()
        assert out.synops[b] == sum(int(c.synops[0]) for c in cut.counts), b
        assert out.macs[b] == sum(int(c.macs[0]) for c in cut.counts)
    assert out.seconds > 0


def test_rules(converted, data):
    conv, x = converted["stack"], data[:10]
    never = sc.run_early_exit(conv, x, 16, custom=lambda t, r: np.zeros(len(r), bool))
    np.testing.assert_array_equal(never.exit_step, 16)  # no rule met: run to T
    np.testing.assert_array_equal(never.decision, conv.predict(x, 16))
    first = sc.run_early_exit(conv, x, 16, custom=lambda t, r: np.ones(len(r), bool), min_steps=3)
    np.testing.assert_array_equal(first.exit_step, 3)
    patient = sc.run_early_exit(conv, x, 16, patience=4)
    assert (patient.exit_step >= 5).all()  # the decision unchanged over steps t-4 .. t: t >= 5
    sure = sc.run_early_exit(conv, x, 16, confidence=0.999999)
    loose = sc.run_early_exit(conv, x, 16, confidence=0.1 + 1e-9)  # above uniform over 10 classes
    assert (loose.exit_step <= sure.exit_step).all() and loose.exit_step.sum() < sure.exit_step.sum()
    wide = sc.run_early_exit(conv, x, 16, margin=0.0)
    np.testing.assert_array_equal(wide.exit_step, 1)
    # judged at every step of a chunk of 5, but each chunk runs whole: more work, same exits
    chunky = sc.run_early_exit(conv, x, 16, patience=4, every=5)
    np.testing.assert_array_equal(chunky.exit_step, patient.exit_step)
    np.testing.assert_array_equal(chunky.decision, patient.decision)
    assert (chunky.synops >= patient.synops).all() and chunky.synops.sum() > patient.synops.sum()
    assert "patience 4" in patient.summary(np.zeros(10, int), full=never)


def test_rule_refusals(converted, data):
    conv = converted["stack"]
    for bad, match in (
        ({}, "give a rule"),
        ({"patience": -1}, "patience"),
        ({"patience": 1.5}, "patience"),
        ({"margin": -0.1}, "margin"),
        ({"confidence": 1.0}, "confidence"),
        ({"patience": 1, "min_steps": 0}, "min_steps"),
    ):
        with pytest.raises(ValueError, match=match):
            sc.run_early_exit(conv, data[:2], 8, **bad)
    with pytest.raises(TypeError, match="custom"):
        ExitRule(custom=3)
    with pytest.raises(TypeError, match="not both"):
        sc.run_early_exit(conv, data[:2], 8, ExitRule(patience=1), margin=0.1)
    with pytest.raises(ValueError, match="every"):
        sc.run_early_exit(conv, data[:2], 8, patience=1, every=0)
    with pytest.raises(ValueError, match="bool array"):
        sc.run_early_exit(conv, data[:2], 8, custom=lambda t, r: [True, False])


def test_keep_continues_the_samples_kept():
    """``Simulation.keep``: after dropping samples mid-run, the samples kept
    compute what they compute in the uncut run of the whole batch (layers, a
    gate, and a stepped recurrent population with Poisson background: its
    generators go with their samples)."""
    rng = np.random.default_rng(4)
    g = snn.Graph()
    x = g.input((2, 6, 6), name="x")
    h = g.population((3, 6, 6), snn.LIF(beta=0.9), name="h")
    gate = g.max_pool(h, 2, name="gate")
    o = g.population(5, snn.IF(), name="o")
    g.conv(x, h, rng.uniform(-0.3, 1.0, (3, 2, 3, 3)), padding=1, delay=0)
    g.connect(gate, o, rng.uniform(-0.3, 1.0, (5, gate.n)), delay=0)
    g.connect(o, o, rng.uniform(-0.3, 0.5, (5, 5)), delay=1)
    g.poisson_input(o, 3, 100.0, 0.4)
    spikes = (rng.random((20, 4, 72)) < 0.3).astype(np.uint8)
    sim = g.start(20, inputs={x: spikes}, record_v={o: np.arange(5)}, seed=3)
    sim.advance(7)
    with pytest.raises(ValueError, match="rows"):
        sim.keep([4])
    sim.keep([3, 1]).advance()
    got = sim.result()
    whole = g.run(20, inputs={x: spikes}, record_v={o: np.arange(5)}, seed=3)
    for name in ("h", "gate", "o"):
        np.testing.assert_array_equal(got.spikes(name), whole.spikes(name)[:, [3, 1]], err_msg=name)
    np.testing.assert_array_equal(got.v("o"), whole.v("o")[:, [3, 1]])
    totals = sim.totals()
    assert totals["h"].shape == (2, 4) and (totals["h"][:, 0] > 0).all()
    np.testing.assert_array_equal(sim.recorded("o")[:, :, :], got.v("o"))
    with pytest.raises(KeyError, match="not recorded"):
        sim.recorded("h")
    with pytest.raises(ValueError, match="within"):
        sim.window("h", 0, 21)
    assert sim.window("h", 5, 9).n_steps == 4


def test_exit_steps_plot(converted, data):
    import matplotlib

    matplotlib.use("Agg")
    from snn import plot

    out = sc.run_early_exit(converted["stack"], data[:10], 12, patience=2)
    ax = plot.exit_steps(out)
    assert sum(p.get_height() for p in ax.patches) == 10  # one count per sample
    labels = out.decision.copy()
    labels[:3] = (labels[:3] + 1) % 10  # three wrong
    ax = plot.exit_steps(out, labels)
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 10 and "patience 2" in ax.get_title()


@pytest.mark.parametrize("kind", ["stack", "graph"])
def test_evaluate_with_an_exit_rule(converted, data, kind):
    conv, x = converted[kind], data[:16]
    y = conv.predict(x, 24)  # the full run's decisions as labels
    ev = sc.evaluate(conv, x, y, steps=[8, 24], exit=ExitRule(patience=2))
    assert not ev.single_pass and [r["T"] for r in ev.rows] == [8, 24]
    out = sc.run_early_exit(conv, x, 24, patience=2)
    row = ev.rows[1]
    assert row["accuracy"] == out.accuracy(y) and row["exit_step"] == out.exit_step.mean()
    assert row["synops"] == out.synops.mean() and row["ms_per_sample"] > 0
    assert "early exit: mean steps run" in ev.table()
    with pytest.raises(TypeError, match="ExitRule"):
        sc.evaluate(conv, x, y, steps=[8], exit={"patience": 2})
