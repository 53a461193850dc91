"""The early-exit report against a full run given as the run's own result
(``ExitedRun.summary(labels, full=converted.run(x, T))``, as its docstring
offers), and as an :class:`ExitedRun`: the same line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snn.convert as sc
from tests.test_early_exit import Residual

torch.set_num_threads(1)


def test_summary_against_a_full_run_result():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = np.random.default_rng(0).random((12, 1, 8, 8))
    conv = sc.convert(model, x)
    out = sc.run_early_exit(conv, x, 16, patience=2)
    full = conv.run(x, 16)
    labels = full.membrane.argmax(axis=1)
    text = out.summary(labels, full=full)
    synops = sum(int(c.synops.sum()) for c in full.counts) / len(x)
    assert f"the full run: {synops:,.0f} SynOps" in text and text.endswith("accuracy 100.00%")
    never = sc.run_early_exit(conv, x, 16, margin=1e9)  # runs to T: the full run's SynOps
    assert never.summary(labels, full=never).endswith("accuracy 100.00%")
    assert never.synops.sum() / len(x) == synops
    with pytest.raises(ValueError, match="same 12 samples"):
        out.summary(full=conv.run(x[:3], 16))
    with pytest.raises(TypeError, match="ExitedRun"):
        out.summary(full=3)


@pytest.mark.parametrize("engine", ["kernel", "chunked", "custom"])
def test_auto_paths_on_a_graph_with_recurrence_equal_cut_runs(engine):
    """``mode="auto"`` (no other exit test forces it) on a converted graph
    given a recurrent projection (delay 1) after conversion: each exited
    sample's readout (bit for bit), decision and SynOps are those of the run
    cut at its exit step, in the kernel, chunked, and with a custom rule
    (chunked); so are its updates where both choose paths alike (chunked)."""
    torch.manual_seed(1)
    rng = np.random.default_rng(0)
    x = rng.random((10, 1, 8, 8)) * (rng.random((10, 1, 8, 8)) < 0.6)
    conv = sc.convert(Residual().eval(), x)
    hidden = [p for p in conv.network.populations if not p.is_input and p.name != conv.readout][-1]
    conv.network.connect(hidden, hidden, rng.uniform(-0.05, 0.05, (hidden.n, hidden.n)), delay=1)
    if engine == "custom":
        out = sc.run_early_exit(conv, x, 20, custom=lambda t, r: t >= 3 + r.argmax(axis=1) % 4, mode="auto")
    else:
        out = sc.run_early_exit(conv, x, 20, patience=2, mode="auto", engine=engine)
    assert len(set(out.exit_step.tolist())) > 1
    for b in range(len(x)):
        cut = conv.run(x[b : b + 1], int(out.exit_step[b]), mode="auto")
        np.testing.assert_array_equal(out.readout[b], cut.membrane[0])
        assert out.decision[b] == cut.membrane[0].argmax()
        assert out.synops[b] == sum(int(c.synops[0]) for c in cut.counts)
        if engine != "kernel":  # the kernel's "auto" paths are its own (clock for conv-fed and driven
            # populations), not those a cut run chooses from activity: updates differ by path
            assert out.updates[b] == sum(int(c.updates[0]) for c in cut.counts)


@pytest.mark.parametrize("mode", ["event", "clock", None])
@pytest.mark.parametrize("engine", ["kernel", "chunked"])
@pytest.mark.parametrize("batch", [1, 9])
def test_exited_spikes_are_the_cut_runs(mode, engine, batch):
    """The spikes every exited sample's populations fired equal those of the
    run cut at its exit step (batch 1 through the kept function too)."""
    torch.manual_seed(0)
    chain = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(96, 10)
    ).eval()
    rng = np.random.default_rng(0)
    x = rng.random((9, 1, 8, 8)) * (rng.random((9, 1, 8, 8)) < 0.6)
    conv = sc.convert(chain, x)
    for _ in range(2):  # the second batch-1 call runs the kept function
        out = sc.run_early_exit(conv, x[:batch], 24, patience=2, mode=mode, engine=engine)
    for b in range(batch):
        cut = conv.run(x[b : b + 1], int(out.exit_step[b]), mode=mode)
        assert out.spikes[b] == sum(int(c.spikes[0]) for c in cut.counts) > 0, b
