"""What every part of the converter shares, and imports nothing else of it:
its error, the checks of what the user gives (samples, labels, the model in
eval mode), the ANN run on a private copy, and the two activation
primitives of normalisation (a percentile scale, a trained clip)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


class ConversionError(ValueError):
    """A model (or its data) that cannot be converted faithfully."""


# -- what the user gives: one check for samples, labels and models -------------


def check_samples(x, what: str, input_shape: tuple | None = None) -> np.ndarray:
    """``x`` as a new C-contiguous float64 array ``[N, *input_shape]`` (the
    caller's array or tensor is never changed nor kept).

    Raises :class:`ConversionError` (a ``ValueError``) unless ``x`` is a
    non-empty batch ``[N >= 1, ...]`` of finite floating-point numbers, of
    sample shape ``input_shape`` when given. Integers are refused: images
    stored as integers (e.g. 0..255) must first be scaled as the model was
    trained. ``what`` names the argument in the messages.
    """
    if type(x) is not np.ndarray or x.dtype.kind != "f":  # a float array goes on at once
        x = _as_numpy(x, what)
    shape = x.shape
    if (
        len(shape) < 2
        or not shape[0]
        or x.dtype.kind != "f"
        or (input_shape is not None and shape[1:] != tuple(input_shape))
    ):
        _refuse(x, what, input_shape)
    if x.dtype.char in "efd":  # half, single, double: the cast cannot overflow
        out = x.astype(np.float64, order="C")  # always a copy
    else:
        with np.errstate(over="ignore"):  # (a long double too large for float64: inf, refused below)
            out = x.astype(np.float64, order="C")
    if not np.isfinite(out).all():
        bad = ~np.isfinite(out)
        samples = np.unique(np.nonzero(bad.reshape(len(x), -1))[0])
        raise ConversionError(
            f"{what} must be finite: {int(bad.sum())} NaN or inf value(s), in sample(s) {_few(samples)}"
        )
    return out


def _refuse(x: np.ndarray, what: str, input_shape) -> None:
    """The :class:`ConversionError` of samples ``x`` that are not a
    non-empty batch of floats of sample shape ``input_shape``."""
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
    raise ConversionError(
        f"{what} must be floating-point samples, got dtype {x.dtype}; scale integer data as the "
        "model was trained (e.g. x.astype(np.float32) / 255 for 8-bit images) before passing it"
    )


def check_labels(y, what: str, n_samples: int, n_classes: int) -> np.ndarray:
    """``y`` as a new int64 array ``[n_samples]`` of classes in ``[0, n_classes)``;
    :class:`ConversionError` otherwise."""
    y = _as_numpy(y, what)
    if y.shape != (n_samples,):
        raise ConversionError(f"{what} must hold one label per sample, shape ({n_samples},), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise ConversionError(f"{what} must be integer class labels, got dtype {y.dtype}")
    out_of_range = (y < 0) | (y >= n_classes)
    if out_of_range.any():
        raise ConversionError(
            f"{what} must be classes in [0, {n_classes}) (the readout has {n_classes} outputs); "
            f"sample(s) {_few(np.nonzero(out_of_range)[0])} have {_few(np.unique(y[out_of_range]))}"
        )
    return y.astype(np.int64)


def _as_numpy(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{what} must be an array of numbers: {err}") from err
    if x.dtype == object:
        raise ConversionError(f"{what} must be an array of numbers (not ragged, not objects), got {x.dtype}")
    return x


def _few(values, limit: int = 5) -> str:
    values = [v.item() for v in values[: limit + 1]]
    return ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "")


def check_eval_mode(model: nn.Module) -> None:
    """:class:`ConversionError` naming every (sub)module of ``model`` still
    in training mode: BatchNorm would normalise by the batch and update its
    running statistics, Dropout would drop."""
    training = [
        f"'{name}'" if name else "the model itself" for name, m in model.named_modules() if m.training
    ]
    if training:
        raise ConversionError(
            f"the model has {len(training)} module(s) in training mode: {', '.join(training[:10])}"
            f"{', ...' if len(training) > 10 else ''} (Dropout and BatchNorm behave differently, and "
            "BatchNorm would update its running statistics); call model.eval() before converting"
        )


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy to run and trace, so that nothing the converter does (a
    forward pass, tracing, ``.double()``) can touch the user's model; the
    model itself if it cannot be copied (it is in eval mode and only run
    under ``no_grad`` then)."""
    try:
        return copy.deepcopy(model)
    except Exception:  # noqa: BLE001 -- an uncopyable attribute: fall back to the checked original
        return model


def ann_outputs(model: nn.Module, x: np.ndarray, what: str = "the samples") -> torch.Tensor:
    """The ANN's outputs on ``x`` (checked samples), computed on a private
    copy in the model's own dtype without gradients; the model must be in eval
    mode. :class:`ConversionError` if the outputs hold NaN or inf."""
    check_eval_mode(model)
    model = _private_copy(model)
    with torch.no_grad():
        out = _apply_module(model, torch.from_numpy(x))
    _check_finite_output(out, f"the model's output on {what}")
    return out


def _check_finite_output(out, what: str) -> None:
    if isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).reshape(len(out), -1).any(dim=1).nonzero().reshape(-1).numpy()
        raise ConversionError(
            f"{what} contains NaN or inf (sample(s) {_few(bad)}): the ANN itself overflows or divides "
            "by zero; check its weights and the scale of the data"
        )


def _check_model(model, calibration_data):
    """The checked model and calibration data (float64 ``[N, ...]`` tensor, a copy)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_eval_mode(model)
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise ConversionError(f"parameter '{name}' contains NaN or inf")
    return torch.from_numpy(check_samples(calibration_data, "calibration_data"))


def _apply_module(model, x):
    param = next(model.parameters(), None)
    return model(x.to(param.dtype if param is not None else torch.float32))


# -- normalisation: an activation's scale, a trained clip ------------------------


def percentile_scale(percentile, max_rate=1.0):
    """The scale rule of a percentile: ``scale(a, per_channel)`` is the
    ``percentile`` of a ReLU activation ``a`` ``[N, C, ...]`` (per channel:
    one per ``C``), divided by ``max_rate``."""

    def scale(a: torch.Tensor, per_channel):
        return _scale(a, percentile, per_channel) / max_rate

    return scale


def _scale(a: torch.Tensor, percentile, per_channel):
    a = a.detach().numpy()
    if per_channel:
        flat = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
        lam = np.array([np.percentile(row, percentile) if row.max() > 0 else 1.0 for row in flat])
        return np.where(lam > 0, lam, np.maximum(flat.max(axis=1), 1e-12))
    lam = float(np.percentile(a, percentile))
    return lam if lam > 0 else max(float(a.max()), 1e-12)


# candidate scales of quantised_scale, as fractions of the largest activation; values sampled per scale
_FRACTIONS = np.linspace(0.02, 1.0, 99)
_MOST_VALUES = 200_000


def quantised_scale(T, offset):
    """The scale rule for runs of ``T`` steps: ``scale(a, per_channel)`` is
    the ``lambda`` (one, or one per channel ``C`` of ``a`` ``[N, C, ...]``)
    minimising the mean squared error between the positive activations
    ``a`` and their code in ``T`` steps, ``lambda / T * clamp(floor(a T /
    lambda + offset), 0, T)`` (the spikes of an IF neuron of threshold
    ``lambda``, reset by subtraction, starting at ``offset * lambda``, under
    a constant input ``a``; zeros code exactly at any ``lambda``). Searched
    over 99 fractions of the largest activation, 0.02 to 1; at most 200,000
    values per scale, drawn with a fixed seed."""

    def scale(a: torch.Tensor, per_channel):
        a = a.detach().numpy()
        if not per_channel:
            return _least_error(a.ravel(), T, offset)
        rows = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
        return np.array([_least_error(row, T, offset) for row in rows])

    return scale


def _least_error(values, T, offset) -> float:
    """:func:`quantised_scale` of one set of activations (1 if none is positive)."""
    x = values[values > 0].astype(np.float64)
    if not len(x):
        return 1.0
    if len(x) > _MOST_VALUES:
        x = np.random.default_rng(0).choice(x, _MOST_VALUES, replace=False)
    best, best_err = 1.0, np.inf
    for lam in float(x.max()) * _FRACTIONS:
        code = np.clip(np.floor(x * (T / lam) + offset), 0, T) * (lam / T)
        err = float(np.mean((x - code) ** 2))
        if err < best_err:
            best, best_err = lam, err
    return best


def _clip(x: torch.Tensor, clip: dict) -> torch.Tensor:
    """A trained clip (``Op.meta["clip"]``), quantised to ``levels`` steps or not."""
    lam, levels = clip["threshold"], clip["levels"]
    if levels is None:
        return torch.clamp(x, 0, lam)
    return lam * torch.clamp(torch.floor(x * levels / lam + clip["shift"]) / levels, 0, 1)
