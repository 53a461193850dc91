"""Small, seeded training helpers for the digits examples and tests: the
data set bundled with scikit-learn (no download) and the DIGITS-CNN / MLP of
``shared/BENCHMARKS.md``. Uses torch and scikit-learn (imported here only)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def load_digits_split(seed: int = 0):
    """Digits 8x8 images / 16, stratified 70/30 split (``random_state=seed``):
    ``(x_train, y_train, x_test, y_test)`` with x float32 ``[N, 1, 8, 8]``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.3, stratify=digits.target, random_state=seed)
    return x_train, y_train, x_test, y_test


def digits_cnn(pool: str = "avg") -> nn.Sequential:
    """Conv(1,16,3,p1)-BN-ReLU-Conv(16,32,3,p1)-BN-ReLU-{Avg,Max}Pool(2)-Flatten-Linear(512,10)."""
    pooling = {"avg": nn.AvgPool2d(2), "max": nn.MaxPool2d(2)}[pool]
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        pooling, nn.Flatten(), nn.Linear(512, 10))


def digits_mlp() -> nn.Sequential:
    """MLP 64-256-128-10 with ReLU."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def train(model: nn.Module, x, y, *, epochs: int = 60, batch_size: int = 64, lr: float = 1e-3,
          weight_decay: float = 1e-4, seed: int = 0, progress: bool = True) -> nn.Module:
    """Adam with weight decay, cross-entropy, shuffled mini-batches, seeded;
    returns the model in eval mode."""
    from tqdm.auto import trange

    torch.manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in trange(epochs, desc="training", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model(torch.as_tensor(x)).argmax(1).numpy() == np.asarray(y)).mean())
