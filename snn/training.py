"""Small, seeded training helpers for the digits examples and tests: the
data set bundled with scikit-learn (no download) and the DIGITS-CNN / MLP of
``shared/BENCHMARKS.md``. Uses torch and scikit-learn (imported here only)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .qcfs import QCFS


def load_digits_split(seed: int = 0):
    """Digits 8x8 images / 16, stratified 70/30 split (``random_state=seed``):
    ``(x_train, y_train, x_test, y_test)`` with x float32 ``[N, 1, 8, 8]``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def _activation(activation: str, levels: int, threshold: float) -> nn.Module:
    if activation == "relu":
        return nn.ReLU()
    if activation == "qcfs":
        return QCFS(levels, threshold)
    raise ValueError(f"activation must be 'relu' or 'qcfs', got {activation!r}")


@contextmanager
def _seeded(seed: int | None):
    """Draw from torch's CPU generator seeded with ``seed``, leaving the
    global generator's state as it was (``None``: draw from it as is)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def digits_cnn(
    pool: str = "avg", activation: str = "relu", levels: int = 4, threshold: float = 4.0, seed: int | None = 0
) -> nn.Sequential:
    """Conv(1,16,3,p1)-BN-act-Conv(16,32,3,p1)-BN-act-{Avg,Max}Pool(2)-Flatten-Linear(512,10).

    Parameters
    ----------
    pool : ``"avg"`` or ``"max"``.
    activation : ``"relu"`` or ``"qcfs"`` (:class:`snn.qcfs.QCFS`, for
        conversion at very few time steps).
    levels, threshold : QCFS quantisation levels ``L`` and initial trainable
        threshold ``lambda`` in activation units (BatchNorm'd pre-activations
        start ~N(0, 1); 4 clips almost none of them, and training moves it
        little); unused for ReLU. Measured on the digits test set, 60 epochs,
        seeds 0-3: L = 4, lambda = 4 gives 99.07-99.44 % at T = 4.
    seed : the initial weights are drawn with this seed (the global torch
        generator is left untouched); ``None`` draws from the global one.
    """
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    pooling = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
    with _seeded(seed):
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            _activation(activation, levels, threshold),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            _activation(activation, levels, threshold),
            pooling,
            nn.Flatten(),
            nn.Linear(512, 10),
        )


def digits_mlp(
    activation: str = "relu", levels: int = 4, threshold: float = 4.0, seed: int | None = 0
) -> nn.Sequential:
    """MLP 64-256-128-10 with ReLU (or QCFS; arguments as for :func:`digits_cnn`)."""
    with _seeded(seed):
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 256),
            _activation(activation, levels, threshold),
            nn.Linear(256, 128),
            _activation(activation, levels, threshold),
            nn.Linear(128, 10),
        )


def train(
    model: nn.Module,
    x,
    y,
    *,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> nn.Module:
    """Adam with weight decay, cross-entropy, shuffled mini-batches, seeded
    (the initial weights are the model builder's: :func:`digits_cnn` and
    :func:`digits_mlp` seed them); returns the model in eval mode. Trains
    ``model`` in place (that is its purpose) but leaves the global torch
    generator's state and the caller's ``x``, ``y`` as they were."""
    from tqdm.auto import trange

    x = torch.as_tensor(x, dtype=torch.float32)  # read only: nothing below writes into x or y
    y = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with _seeded(seed):  # dropout draws from the seeded global generator, restored afterwards
        for _ in trange(epochs, desc="training", disable=not progress, leave=False):
            order = torch.randperm(len(x), generator=gen)
            for start in range(0, len(x), batch_size):
                batch = order[start : start + batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                opt.step()
    return model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    """Fraction of samples ``x`` (``[N, ...]`` finite floats) whose argmax
    output is ``y`` (``[N]`` integer classes). ``model`` must be in eval mode
    and is not changed (run on a copy, without gradients); data and model
    are checked as :func:`snn.convert.evaluate` checks them
    (:class:`snn.convert.ConversionError`)."""
    from .convert import ann_outputs, check_labels, check_samples

    x = check_samples(x, "x")
    out = ann_outputs(model, x, "x")
    y = check_labels(y, "y", len(x), out.shape[1])
    return float((out.argmax(1).numpy() == y).mean())
