"""What a call of ``run_early_exit`` keeps from call to call to cost less
(``snn.convert.stopping``): its checked rule arguments, the first layer's
drive kernel and fan-out of a stack (per graph); and what its samples'
checks cost (``check_samples``' lean way for a float array). Each must give
what the full way gives, bit for bit, and be made again when what it was
made from changes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snn
import snn.convert as sc
from snn.convert import stopping
from snn.convert.base import ConversionError, check_samples
from snn.convert.chain import ConvertedNetwork
from snn.run.paths import _vecmat

torch.set_num_threads(1)

SHAPE = (2, 4, 4)


def _stack(first: str, seed: int = 0, dtype=np.float64) -> ConvertedNetwork:
    """A stack on ``[2, 4, 4]`` samples whose first layer is ``first``."""
    rng = np.random.default_rng(seed)
    n_in = int(np.prod(SHAPE))
    if first == "conv":
        head = snn.Conv2d(SHAPE, 3, 3, padding=1, seed=seed, neuron=snn.IF())
    elif first == "dense":
        head = snn.Linear(n_in, 24, seed=seed, neuron=snn.IF())
    else:
        dense = rng.normal(size=(24, n_in)) * (rng.random((24, n_in)) < 0.3)
        head = snn.SparseLinear.from_dense(dense, neuron=snn.IF())
    net = snn.Network([head, snn.Linear(head.n_out, 5, seed=seed + 1, neuron=snn.IF())], dtype=dtype)
    return ConvertedNetwork(net, SHAPE, [], {}, [])


def _samples(n: int = 6, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, *SHAPE)) * (rng.random((n, *SHAPE)) < 0.6)).astype(np.float32)


@pytest.mark.parametrize("first", ["conv", "dense", "csr"])
def test_first_layer_drive_and_macs_as_the_layer_computes_them(first):
    conv = _stack(first)
    x = _samples()
    graph, cache, readout, drive, macs = stopping._as_graph(conv, x)
    layer = conv.network.layers[0]
    flat = check_samples(x, "x", SHAPE).reshape(len(x), -1)
    ((name, got),) = drive.items()
    assert name == conv.network.layer_name(0) and readout == conv.network.layer_name(1)
    assert got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, _vecmat(flat, layer))
    assert macs.dtype == np.int64
    np.testing.assert_array_equal(macs, (flat != 0).astype(np.int64) @ layer.fan_out)
    assert cache is stopping._EXITS[graph] and stopping._as_graph(conv, x[:1])[1] is cache
    assert cache[None][-1]  # after its first call, the drive kernel's compiled function is kept
    for part in (x[:1], x[2:5], x):  # ... and computes what the layer computes, at any batch size
        flat = check_samples(part, "x", SHAPE).reshape(len(part), -1)
        np.testing.assert_array_equal(stopping._as_graph(conv, part)[3][name], _vecmat(flat, layer))


def test_a_changed_first_layer_is_read_again():
    """The first layer's kernel arguments are kept per graph: a network
    whose first layer is replaced makes a new graph, read afresh."""
    conv, other = _stack("dense", 0), _stack("dense", 5)
    x = _samples()
    before = sc.run_early_exit(conv, x, 12, patience=1, engine="kernel")
    conv.network.layers[0] = other.network.layers[0]
    after = sc.run_early_exit(conv, x, 12, patience=1, engine="kernel")
    stopping._EXITS.clear()
    fresh = sc.run_early_exit(conv, x, 12, patience=1, engine="kernel")
    assert not np.array_equal(before.readout, fresh.readout)
    for field in ("exit_step", "readout", "synops", "macs"):
        np.testing.assert_array_equal(getattr(after, field), getattr(fresh, field))


def _checked_before(x, what, input_shape=None):
    """``check_samples`` as it was before its lean path (the oracle): every
    check in turn on the caller's array, then a float64 copy."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{what} must be an array of numbers: {err}") from err
    if x.dtype == object:
        raise ConversionError(f"{what} must be an array of numbers (not ragged, not objects), got {x.dtype}")
    if x.ndim < 2:
        expected = f"[N, {', '.join(map(str, input_shape))}]" if input_shape is not None else "[N, ...]"
        raise ConversionError(f"{what} must be a batch {expected} of samples, got shape {x.shape}")
    if len(x) == 0:
        raise ConversionError(f"{what} is an empty batch (shape {x.shape}): give at least one sample")
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise ConversionError(
            f"{what}: input samples must have shape {tuple(input_shape)} (the model's), "
            f"got {tuple(x.shape[1:])} (batch shape {x.shape})"
        )
    if x.dtype.kind != "f":
        raise ConversionError(
            f"{what} must be floating-point samples, got dtype {x.dtype}; scale integer data as the "
            "model was trained (e.g. x.astype(np.float32) / 255 for 8-bit images) before passing it"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        samples = np.unique(np.nonzero(bad.reshape(len(x), -1))[0])
        raise ConversionError(
            f"{what} must be finite: {int(bad.sum())} NaN or inf value(s), in sample(s) "
            + ", ".join(map(str, samples[:5].tolist()))
            + (", ..." if len(samples) > 5 else "")
        )
    return x.astype(np.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x,  # float32
        lambda x: x.astype(np.float64),
        lambda x: x.astype(np.float16),
        lambda x: np.asfortranarray(x.astype(np.float64)),
        lambda x: np.repeat(x, 2, axis=0)[::2],  # strided over samples
        lambda x: x.transpose(0, 1, 3, 2),  # not C-ordered
        lambda x: x[::-1],
        torch.as_tensor,
        lambda x: x.tolist(),
    ],
)
def test_samples_taken_as_checked(make):
    """``check_samples``' lean way gives what every check in turn gave (the
    same values, as a new float64 array, here C-contiguous, the caller's
    untouched), and so do the converted model's samples and the early exit's."""
    conv = _stack("conv")
    x = make(_samples())
    kept = np.array(x, copy=True) if isinstance(x, np.ndarray) else None
    want = _checked_before(x, "x", SHAPE)
    for got in (check_samples(x, "x", SHAPE), check_samples(x, "x")):
        assert got.dtype == np.float64 and got.flags.c_contiguous and got.flags.writeable
        np.testing.assert_array_equal(got, want)
        if isinstance(x, np.ndarray):
            assert not np.shares_memory(got, x)
    flat = conv._flat(x)
    assert flat.flags.c_contiguous
    np.testing.assert_array_equal(flat, want.reshape(len(want), -1))
    if kept is not None:
        np.testing.assert_array_equal(x, kept)
    got = stopping._as_graph(conv, x)[3][conv.network.layer_name(0)]
    np.testing.assert_array_equal(got, _vecmat(want.reshape(len(want), -1), conv.network.layers[0]))


BAD = [
    (np.full((2, *SHAPE), np.nan), "finite"),
    (np.full((2, *SHAPE), np.inf, np.float32), "finite"),
    (np.concatenate([np.full((1, *SHAPE), np.inf), np.full((1, *SHAPE), -np.inf)]), "finite"),
    (np.zeros((0, *SHAPE)), "empty"),
    (np.zeros((2, 4, 4)), "shape"),
    (np.zeros(SHAPE), "shape"),
    (np.zeros((2, *SHAPE), np.int64), "floating"),
    (np.zeros((2, *SHAPE), np.complex128), "floating"),
]


@pytest.mark.parametrize("bad, match", BAD)
def test_bad_samples_refused_as_checked(bad, match):
    """Each refusal is the one every check in turn gave, word for word, and
    the converted model and the early exit refuse with it."""
    conv = _stack("conv")
    with pytest.raises(ConversionError, match=match) as before:
        _checked_before(bad, "x", SHAPE)
    for call in (
        lambda: check_samples(bad, "x", SHAPE),
        lambda: conv._flat(bad),
        lambda: sc.run_early_exit(conv, bad, 8, patience=1),
    ):
        with pytest.raises(ConversionError) as got:
            call()
        assert str(got.value) == str(before.value)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[1.0, np.nan], [np.inf, 2.0], [3.0, 4.0]] * 3),  # sample numbers past five
        np.array([[1.0, 2.0], [3.0, 4.0]], object),
        [[1.0, 2.0], [3.0]],  # ragged
        np.float32(1.0),
        np.zeros((2, 2), bool),
        torch.full((3, 2), float("nan")),
    ],
)
def test_other_bad_samples_refused_as_before(bad):
    with pytest.raises(ConversionError) as before:
        _checked_before(bad, "data", None)
    with pytest.raises(ConversionError) as got:
        check_samples(bad, "data")
    assert str(got.value) == str(before.value)


def test_rule_arguments_kept_by_value_and_type():
    """A call's checked arguments are kept for the same values of the same
    types: ``T=True`` or ``every=True`` is refused after ``1`` was taken."""
    conv = _stack("conv")
    x = _samples(2)
    a = stopping._arguments(8, None, 1, "auto", {"patience": 1})
    assert stopping._arguments(8, None, 1, "auto", {"patience": 1}) is a
    assert stopping._arguments(np.int64(8), None, 1, "auto", {"patience": 1}) is not a
    assert not a[2].flags.writeable
    sc.run_early_exit(conv, x, 1, patience=0)
    with pytest.raises(ValueError, match="T must"):
        sc.run_early_exit(conv, x, True, patience=0)
    sc.run_early_exit(conv, x, 8, patience=1, every=1)
    with pytest.raises(ValueError, match="every"):
        sc.run_early_exit(conv, x, 8, patience=1, every=True)
    with pytest.raises(ValueError, match="every"):
        sc.run_early_exit(conv, x, 8, patience=1, every=1.0)
    with pytest.raises(ValueError, match="T must"):
        sc.run_early_exit(conv, x, 8.0, patience=1)
    rule = sc.ExitRule(patience=2)
    got = sc.run_early_exit(conv, x, 8, rule)
    assert got.rule == str(rule) == sc.run_early_exit(conv, x, 8, patience=2).rule


def test_too_long_a_run_refused_at_every_batch_size():
    conv = _stack("conv", dtype=np.float32)
    for n in (1, 3, 1):
        with pytest.raises(ValueError, match="float32"):
            sc.run_early_exit(conv, _samples(n), 2**24 + 1, patience=1, engine="kernel")


def test_samples_finite_in_float64():
    """The samples are checked as they are returned: a long double too
    large for float64 is refused, not returned as inf, and with the error
    alone (no overflow warning before it)."""
    big = np.full((1, 2), np.longdouble(10) ** 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConversionError, match="must be finite: 2 NaN or inf value"):
            check_samples(big, "x")
