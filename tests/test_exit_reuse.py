"""The early exit in the kernel (``snn.run.stepped.SteppedExit``) keeps what
does not change from run to run: its scratch rows, the empty inputs of each
batch size, the biases not driven, the rule's fields, the compiled kernel
it calls directly after the first run. Runs in a row over one runner, of
different batch sizes and inputs, must each equal the same run on a fresh
runner (a stale state, a result array shared with the next run, a batch
size's arrays read at another would differ), bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
from torch import nn

import snn.convert as sc
from snn.convert import stopping
from snn.convert.stopping import ExitRule
from snn.run.stepped import SteppedExit
from tests.test_early_exit import Residual

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return rng.random((30, 1, 8, 8)) * (rng.random((30, 1, 8, 8)) < 0.6)


_CONVERTED = {}


def _converted(kind, dtype, data):
    key = (kind, dtype)
    if key not in _CONVERTED:
        torch.manual_seed(3)
        if kind == "stack":
            model = nn.Sequential(
                nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(96, 10)
            ).eval()
        else:
            model = Residual().eval()
        _CONVERTED[key] = sc.convert(model, data, dtype=dtype)
    return _CONVERTED[key]


def _fields(out):
    return (out.exit_step, out.decision, out.readout, out.synops, out.updates, out.macs)


def _copy(out):
    return tuple(a.copy() for a in _fields(out))


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def _runners():
    return [r for cache in stopping._EXITS.values() for r in cache.values() if isinstance(r, SteppedExit)]


def _fresh(conv, x, T, **kw):
    """The run on a runner made for it (nothing kept from earlier runs)."""
    stopping._EXITS.clear()
    return _copy(sc.run_early_exit(conv, x, T, engine="kernel", **kw))


@pytest.mark.parametrize("kind", ["stack", "graph"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_runs_in_a_row_equal_fresh_runs(data, kind, dtype, n_threads):
    conv = _converted(kind, dtype, data)
    T, kw = 20, dict(patience=2, n_threads=n_threads)
    calls = [data[0:3], data[3:4], data[10:13], data[20:30], data[0:3], data[29:30]]
    fresh = [_fresh(conv, x, T, **kw) for x in calls]
    assert len({int(f[0].max()) for f in fresh}) > 1 or len(set(fresh[3][0].tolist())) > 1  # exits differ
    stopping._EXITS.clear()
    kept = []
    for x in calls:  # one runner for all: its scratch and arrays reused
        out = sc.run_early_exit(conv, x, T, engine="kernel", **kw)
        kept.append((out, _copy(out)))
    for (out, copied), want in zip(kept, fresh, strict=True):
        _same(copied, want)
        _same(_fields(out), want)  # not overwritten by a later run: no array shared between results
    (runner,) = _runners()
    if not numba.config.DISABLE_JIT:
        assert runner._entry is not None  # later runs called the compiled kernel directly


def test_other_rules_and_lengths_on_a_kept_runner(data):
    """Rules change between runs over the same runner (the rule is a kernel
    argument, not kept); another ``T`` gets a runner of its own."""
    conv = _converted("stack", np.float64, data)
    x1, x3 = data[7:8], data[4:7]
    runs = [
        (x3, 16, dict(patience=3)),
        (x1, 16, dict(margin=0.5)),
        (x3, 16, dict(confidence=0.3, min_steps=2)),
        (x1, 24, dict(patience=1)),
        (x3, 16, dict(patience=3, every=4)),
        (x1, 16, dict(patience=3)),
    ]
    fresh = [_fresh(conv, x, T, **kw) for x, T, kw in runs]
    stopping._EXITS.clear()
    for (x, T, kw), want in zip(runs, fresh, strict=True):
        _same(_copy(sc.run_early_exit(conv, x, T, engine="kernel", **kw)), want)


def test_a_second_run_while_the_scratch_is_held(data):
    """A run that finds the runner's scratch held (another thread's run)
    makes its own: the same results."""
    conv = _converted("graph", np.float64, data)
    for x in (data[:5], data[8:9]):  # batch 1: its own kept arrays (SteppedExit._run_one) when free
        want = _fresh(conv, x, 16, patience=2)
        _same(_copy(sc.run_early_exit(conv, x, 16, engine="kernel", patience=2)), want)
        (runner,) = _runners()
        with runner._lock:
            _same(_copy(sc.run_early_exit(conv, x, 16, engine="kernel", patience=2)), want)
        _same(_copy(sc.run_early_exit(conv, x, 16, engine="kernel", patience=2)), want)


def test_rule_keywords_checked_whatever_was_run_before(data):
    """Rules given as keywords are built once per keywords and types: a
    keyword equal to an accepted one but of a refused type is still refused."""
    conv = _converted("stack", np.float64, data)
    x = data[:2]
    a = sc.run_early_exit(conv, x, 8, patience=1)
    with pytest.raises(ValueError, match="patience"):
        sc.run_early_exit(conv, x, 8, patience=True)
    with pytest.raises(ValueError, match="min_steps"):
        sc.run_early_exit(conv, x, 8, patience=1, min_steps=True)
    b = sc.run_early_exit(conv, x, 8, patience=np.int64(1))
    _same(_copy(a), _copy(b))
    assert a.rule == b.rule == str(ExitRule(patience=1))
    assert stopping._arguments(8, None, 1, "auto", {"patience": 1}) is stopping._arguments(
        8, None, 1, "auto", {"patience": 1}
    )


def _kept_one(conv):
    """The functions kept for batch-1 runs of ``conv``'s stack (``stopping._one_stack``)."""
    cache = stopping._EXITS.get(conv.network.graph(), {})
    return [v for k, v in cache.items() if isinstance(k, tuple) and k[:1] == (stopping._ONE,)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_sample_runs_of_a_stack_through_the_kept_function(data, dtype):
    """Runs of one sample of a stack go through the function kept for them
    (``stopping._one_stack``, over ``SteppedExit.one_sample``) from the third
    on: each equals the run on a fresh runner under every rule, results are
    new arrays (not overwritten by the next run), and a run that finds the
    runner's arrays held is run the general way, the same."""
    conv = _converted("stack", dtype, data)
    runs = [
        (data[0:1], 16, dict(patience=2)),
        (data[1:2], 16, dict(patience=2)),
        (data[2:3], 16, dict(patience=2)),
        (data[3:4], 16, dict(margin=0.5)),
        (data[4:5], 16, dict(confidence=0.3, min_steps=2)),
        (data[5:6], 16, dict(patience=3, every=4)),
        (data[2:5], 16, dict(patience=2)),  # a batch between: its own arrays
        (data[6:7], 16, dict(patience=1)),
        (data[6:7], 16, dict(patience=1)),
        (data[7:8], 12, dict(patience=2)),  # another T: a function of its own
        (data[8:9], 12, dict(patience=2)),
        (data[9:10], 12, dict(patience=2)),
    ]
    fresh = [_fresh(conv, x, T, **kw) for x, T, kw in runs]
    assert len({f[0][0] for f in fresh if len(f[0]) == 1}) > 1  # exit steps differ
    stopping._EXITS.clear()
    outs = [sc.run_early_exit(conv, x, T, engine="kernel", **kw) for x, T, kw in runs]
    for out, want in zip(outs, fresh, strict=True):
        _same(_fields(out), want)
    if not numba.config.DISABLE_JIT:
        assert len(_kept_one(conv)) == 2  # T = 16 and 12
        (runner,) = [r for r in _runners() if r.n_steps == 16]
        with runner._lock:  # held: run the general way
            _same(_copy(sc.run_early_exit(conv, data[3:4], 16, engine="kernel", margin=0.5)), fresh[3])


def test_margin_of_one_class_refused_by_the_kept_function(data):
    """A margin asked of a stack whose readout has one class is refused
    whether or not a function is kept for its runs of one sample."""
    torch.manual_seed(4)
    conv = sc.convert(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)).eval(), data)
    sc.run_early_exit(conv, data[:2], 8, engine="kernel", patience=1)
    for _ in range(3):
        sc.run_early_exit(conv, data[:1], 8, engine="kernel", patience=1)
    assert _kept_one(conv) or numba.config.DISABLE_JIT
    with pytest.raises(ValueError, match="at least two classes"):
        sc.run_early_exit(conv, data[:1], 8, engine="kernel", margin=0.5)
