"""The early-exit report against a full run given as the run's own result
(``ExitedRun.summary(labels, full=converted.run(x, T))``, as its docstring
offers), and as an :class:`ExitedRun`: the same line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import snn.convert as sc

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
