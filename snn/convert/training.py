"""Small, seeded training helpers for the digits examples and tests: the
data set bundled with scikit-learn (no download) and the DIGITS-CNN / MLP /
DIGITS-RESNET models of ``shared/BENCHMARKS.md`` (and ResNet-18 as
torchvision writes it, for RESNET18-32). Uses torch and scikit-learn (imported here only)."""

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
    activation : ``"relu"`` or ``"qcfs"`` (:class:`snn.convert.qcfs.QCFS`, for
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


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written as torchvision writes it:
    conv3x3-BN-ReLU-conv3x3-BN, ``out += identity`` (the input, or
    ``downsample(x)``), then the same ``ReLU(inplace=True)`` module again."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    """torchvision's shortcut: conv1x1 (stride, no bias) then BN."""
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))


class DigitsResNet(nn.Module):
    """DIGITS-RESNET (``shared/BENCHMARKS.md``): stem Conv(1,16,3,p1)-BN-ReLU,
    block A (16 -> 16, identity), block B (16 -> 32, stride 2, shortcut
    conv1x1-BN), AdaptiveAvgPool2d((1, 1)), ``torch.flatten(x, 1)``,
    Linear(32, 10); 533,824 MACs on 8x8 digits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2, downsample=_downsample(16, 32, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def digits_resnet(seed: int | None = 0) -> DigitsResNet:
    """The DIGITS-RESNET model, initial weights drawn with ``seed`` (the
    global torch generator left untouched; ``None``: drawn from it)."""
    with _seeded(seed):
        return DigitsResNet()


class ResNet18(nn.Module):
    """ResNet-18 as ``torchvision.models.resnet18(num_classes=...)`` defines
    it (torchvision does not import here): stem conv7x7/2-BN-ReLU-
    MaxPool2d(3, 2, 1), four stages of two :class:`BasicBlock` (64, 128,
    256, 512 planes; stride 2 and a conv1x1-BN downsample from the second),
    AdaptiveAvgPool2d((1, 1)), ``torch.flatten(x, 1)``, Linear(512, classes);
    torchvision's initialisation (Kaiming normal fan-out convolutions, BN
    weight 1 and bias 0)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = _downsample(self.inplanes, planes, stride)
        layers = [BasicBlock(self.inplanes, planes, stride, downsample), BasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


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
    from .base import ann_outputs, check_labels, check_samples

    x = check_samples(x, "x")
    out = ann_outputs(model, x, "x")
    y = check_labels(y, "y", len(x), out.shape[1])
    return float((out.argmax(1).numpy() == y).mean())
