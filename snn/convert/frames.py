"""Frame sequences through a converted network (issue 13 item 3): the
VIDEO-DIGITS sequences of ``shared/BENCHMARKS.md``, and three ways to run a
converted stack over a sequence, each reporting per frame its decision,
SynOps, MACs and wall time:

- ``"reset"``: frame by frame from a reset state, ``T`` steps per frame
  (:meth:`ConvertedNetwork.run` on every frame);
- ``"carry"``: the state carried over between frames, ``T`` steps per
  frame, only the first layer's analog drive changing at each frame
  (:meth:`snn.Graph.start`, the drive changed between chunks); a frame's
  decision is the argmax of what the readout gained during the
  frame;
- ``"delta"``: delta propagation with sigma-delta units
  (:class:`snn.run.delta.DeltaNetwork`, kernels in ``kernels/delta.py``):
  every unit keeps its accumulated input and sends the change of its activation to its
  fan-out only when it exceeds ``theta`` (in units of the layer's scale: a
  converted layer's activations are normalised to it), keeping the residue;
  the first layer receives only the change of its input; max pools
  recompute the windows whose inputs changed. The state carries over
  frames, so a frame costs in proportion to what changed, and with ``theta
  = 0`` the readout is the ANN's logits.

Counting: ``"reset"`` and ``"carry"`` report the kernels' SynOps (spikes x
fan-out) and the MACs of the analog input (non-zero pixels x fan-out, once
per frame). ``"delta"`` sends graded
values (the deltas): its first layer's weight additions (input change x
weight) are reported as MACs, the other layers' as SynOps, one per weight
added, counted by the kernel; each is in truth a multiply-add, so SynOps +
MACs is the figure to compare.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..run.delta import DeltaNetwork, DeltaRun, DeltaState, _positive_int, check_frames
from ..run.paths import _vecmat
from ..run.spiketrains import SpikeTrains
from .base import ConversionError, check_samples
from .chain import ConvertedNetwork

WAYS = ("reset", "carry", "delta")
__all__ = ["DeltaNetwork", "DeltaRun", "DeltaState"]  # re-exported from snn.run.delta

# -- VIDEO-DIGITS ------------------------------------------------------------------


@dataclass
class VideoDigits:
    """Frame sequences: ``frames`` float32 ``[S, F, 1, H, W]``, ``labels``
    ``[S]`` (the digit of each sequence), ``positions`` ``[S, F, 2]`` (row,
    column of the digit's top-left corner on the canvas, in pixels),
    ``directions`` ``[S]`` (radians, the drift's direction at the start)."""

    frames: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    directions: np.ndarray

    def __len__(self):
        return len(self.frames)


def _reflect(p, span):
    """``p`` folded into ``[0, span]`` (reflected at both ends)."""
    if span == 0:
        return np.zeros_like(p)
    u = np.mod(p, 2 * span)
    return np.where(u <= span, u, 2 * span - u)


def place(images, positions, canvas: int = 16) -> np.ndarray:
    """Images ``[N, h, w]`` placed on a zero ``canvas x canvas`` with their
    top-left corner at ``positions`` ``[N, 2]`` (row, column; fractional:
    bilinear resampling): ``out[y, x] = sum_ij img[i, j] * k(y - py - i) *
    k(x - px - j)``, ``k(u) = max(0, 1 - |u|)``. float32 ``[N, canvas,
    canvas]``; a position in ``[0, canvas - h] x [0, canvas - w]`` keeps the
    image wholly on the canvas."""
    images = np.asarray(images, np.float64)
    positions = np.asarray(positions, np.float64)
    if images.ndim != 3 or positions.shape != (len(images), 2):
        raise ValueError(
            f"images must be [N, h, w] and positions [N, 2], got {images.shape} and {positions.shape}"
        )
    h, w = images.shape[1:]
    if h > canvas or w > canvas:
        raise ValueError(f"images of {h}x{w} do not fit a {canvas}x{canvas} canvas")
    lo = np.array([0.0, 0.0])
    hi = np.array([canvas - h, canvas - w], np.float64)
    if not np.all(np.isfinite(positions)) or np.any(positions < lo) or np.any(positions > hi):
        raise ValueError(f"positions must lie in [0, {canvas - h}] x [0, {canvas - w}] (wholly visible)")
    grid = np.arange(canvas, dtype=np.float64)
    ky = np.maximum(0.0, 1.0 - np.abs(grid[None, :, None] - positions[:, 0, None, None] - np.arange(h)))
    kx = np.maximum(0.0, 1.0 - np.abs(grid[None, :, None] - positions[:, 1, None, None] - np.arange(w)))
    return np.einsum("nyi,nij,nxj->nyx", ky, images, kx).astype(np.float32)


def _digits(split: str):
    from .training import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    x, y = (x_test, y_test) if split == "test" else (x_train, y_train)
    return x[:, 0], y


def video_digits(
    n_sequences: int = 100,
    n_frames: int = 64,
    *,
    images=None,
    labels=None,
    canvas: int = 16,
    speed: float = 0.25,
    seed: int = 0,
) -> VideoDigits:
    """VIDEO-DIGITS (``shared/BENCHMARKS.md``): sequence ``k`` shows digit
    ``k mod N`` of ``images`` (default: the 540 test digits of
    :func:`snn.convert.training.load_digits_split`, 8x8 in [0, 1]) drifting on a
    ``canvas x canvas`` frame at ``speed`` pixels per frame, bilinearly
    resampled; its start (uniform over the wholly visible positions) and
    direction (uniform angle) drawn from ``numpy.random.default_rng([seed,
    k])``; reflected at the canvas edges, so the digit stays wholly visible.
    """
    for name, value in (("n_sequences", n_sequences), ("n_frames", n_frames), ("canvas", canvas)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (isinstance(speed, (int, float, np.floating)) and math.isfinite(speed) and speed >= 0):
        raise ValueError(f"speed must be a finite number >= 0, got {speed!r}")
    if images is None:
        if labels is not None:
            raise ValueError("labels= without images=")
        images, labels = _digits("test")
    images = np.asarray(images, np.float64)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"images must be [N >= 1, h, w], got shape {images.shape}")
    labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be [{len(images)}], got shape {labels.shape}")
    h, w = images.shape[1:]
    span = np.array([canvas - h, canvas - w], np.float64)
    if np.any(span < 0):
        raise ValueError(f"images of {h}x{w} do not fit a {canvas}x{canvas} canvas")
    t = np.arange(n_frames, dtype=np.float64)
    positions = np.empty((n_sequences, n_frames, 2))
    directions = np.empty(n_sequences)
    for k in range(n_sequences):
        rng = np.random.default_rng([seed, k])
        start = rng.uniform(0.0, 1.0, 2) * span
        angle = rng.uniform(0.0, 2 * np.pi)
        directions[k] = angle
        step = speed * np.array([np.sin(angle), np.cos(angle)])
        for a in range(2):
            positions[k, :, a] = _reflect(start[a] + step[a] * t, span[a])
    which = np.arange(n_sequences) % len(images)
    frames = place(np.repeat(images[which], n_frames, axis=0), positions.reshape(-1, 2), canvas).reshape(
        n_sequences, n_frames, 1, canvas, canvas
    )
    return VideoDigits(frames, labels[which].astype(np.int64), positions, directions)


def video_digits_train(copies: int = 4, *, images=None, labels=None, canvas: int = 16, seed: int = 0):
    """Single frames for training the VIDEO-DIGITS network: each digit of
    ``images`` (default: the training split of
    :func:`snn.convert.training.load_digits_split`) ``copies`` times, at positions
    drawn uniformly over the wholly visible ones (``default_rng(seed)``).
    Returns ``(x float32 [N * copies, 1, canvas, canvas], y [N * copies])``."""
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies must be an integer >= 1, got {copies!r}")
    if images is None:
        images, labels = _digits("train")
    images = np.asarray(images, np.float64)
    if images.ndim != 3:
        raise ValueError(f"images must be [N, h, w], got shape {images.shape}")
    labels = np.asarray(labels)
    h, w = images.shape[1:]
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, 1.0, (len(images) * copies, 2)) * np.array([canvas - h, canvas - w], np.float64)
    x = place(np.tile(images, (copies, 1, 1)), pos, canvas)[:, None]
    return x, np.tile(labels, copies).astype(np.int64)


def video_digits_cnn(pool: str = "avg", seed: int | None = 0):
    """The DIGITS-CNN architecture on 16x16 frames (``shared/BENCHMARKS.md``
    VIDEO-DIGITS): Conv(1,16,3,p1)-BN-ReLU-Conv(16,32,3,p1)-BN-ReLU-
    {Avg,Max}Pool(2)-Flatten-Linear(2048,10), initial weights drawn with
    ``seed`` (the global torch generator left as it was)."""
    from torch import nn

    from .training import _seeded

    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    with _seeded(seed):
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2048, 10),
        )


# -- checks ------------------------------------------------------------------------


# -- the three ways --------------------------------------------------------------------


@dataclass
class FramesRun:
    """One way over frame sequences: ``readout`` ``[S, F, C]`` (what the
    decision of each frame is the argmax of), ``synops`` and ``macs`` ``[S,
    F]`` per frame, ``seconds`` (wall time of the whole run, the input's
    conversion included), ``way`` and its ``setting`` (``T`` or ``theta``)."""

    way: str
    setting: float
    readout: np.ndarray
    synops: np.ndarray
    macs: np.ndarray
    seconds: float

    @property
    def decision(self) -> np.ndarray:
        return self.readout.argmax(axis=-1)

    @property
    def n_frames(self) -> int:
        return int(self.synops.size)

    @property
    def ops_per_frame(self) -> float:
        """Mean SynOps + MACs per frame."""
        return float((self.synops.sum() + self.macs.sum()) / self.n_frames)

    @property
    def ms_per_frame(self) -> float:
        return 1e3 * self.seconds / self.n_frames

    def agreement(self, ann) -> float:
        """Fraction of frames whose decision is the ANN's (``ann``: its
        decisions ``[S, F]`` or logits ``[S, F, C]``)."""
        ann = np.asarray(ann)
        if ann.shape == self.readout.shape:
            ann = ann.argmax(axis=-1)
        if ann.shape != self.decision.shape:
            raise ValueError(f"ann must be [S, F] decisions or [S, F, C] logits, got shape {ann.shape}")
        return float(np.mean(self.decision == ann))

    def accuracy(self, labels) -> float:
        """Fraction of frames decided as ``labels`` (``[S]`` or ``[S, F]``)."""
        labels = np.asarray(labels)
        if labels.shape == self.decision.shape[:1]:
            labels = labels[:, None]
        elif labels.shape != self.decision.shape:
            raise ValueError(f"labels must be [S] or [S, F], got shape {labels.shape}")
        return float(np.mean(self.decision == labels))

    def row(self, ann=None, labels=None) -> dict:
        """The figures of a table row."""
        out = {
            "way": self.way,
            "setting": self.setting,
            "synops_per_frame": float(self.synops.mean()),
            "macs_per_frame": float(self.macs.mean()),
            "ops_per_frame": self.ops_per_frame,
            "ms_per_frame": self.ms_per_frame,
        }
        if ann is not None:
            out["agreement"] = self.agreement(ann)
        if labels is not None:
            out["accuracy"] = self.accuracy(labels)
        return out


def ann_frame_logits(model, frames) -> np.ndarray:
    """The ANN's logits on every frame, ``[S, F, C]`` (``model`` in eval
    mode, not changed; frames ``[S, F, ...]``)."""
    from .base import ann_outputs

    shape = np.shape(frames)
    if len(shape) < 3:
        raise ConversionError(f"frames must be [sequences, frames, ...], got shape {shape}")
    x = check_samples(np.reshape(np.asarray(frames), (-1, *shape[2:])), "frames")
    out = ann_outputs(model, x, "frames").numpy().astype(np.float64)
    return out.reshape(shape[0], shape[1], -1)


def run_frames(
    converted: ConvertedNetwork,
    frames,
    way: str,
    *,
    T: int | None = None,
    theta=None,
    batch: int = 256,
    progress: bool = False,
    n_threads: int | None = None,
) -> FramesRun:
    """Run ``converted`` over ``frames`` (``[S, F, *input_shape]``) in one of
    :data:`WAYS` (module docstring): ``"reset"`` and ``"carry"`` with ``T``
    steps per frame, ``"delta"`` with threshold ``theta`` (see
    :class:`DeltaNetwork`). ``batch``: frames per run (``"reset"``) or
    sequences per simulation (``"carry"``), bounding memory; ``progress``: a
    bar over those runs."""
    if not isinstance(converted, ConvertedNetwork):
        raise TypeError(f"expected a ConvertedNetwork (a converted stack), got {type(converted).__name__}")
    if way not in WAYS:
        raise ValueError(f"way must be one of {WAYS}, got {way!r}")
    if way == "delta":
        if T is not None:
            raise ValueError("way='delta' takes theta=, not T=")
        theta = 0.05 if theta is None else theta
        start = time.perf_counter()
        net = DeltaNetwork(converted, theta)
        done = net.run(frames, progress=progress, chunk=batch if progress else 0)
        seconds = time.perf_counter() - start
        setting = float(np.max(theta))
        return FramesRun("delta", setting, done.logits, done.synops, done.macs, seconds)
    if theta is not None:
        raise ValueError(f"way={way!r} takes T=, not theta=")
    T = _positive_int("T", T)
    batch = _positive_int("batch", batch)
    start = time.perf_counter()
    x = check_frames(frames, converted.input_shape)
    if way == "reset":
        readout, synops, macs = _reset(converted, x, T, batch, progress, n_threads)
    else:
        readout, synops, macs = _carry(converted, x, T, batch, progress, n_threads)
    return FramesRun(way, T, readout, synops, macs, time.perf_counter() - start)


def _reset(converted, x, T, batch, progress, n_threads):
    from tqdm.auto import tqdm

    n_seq, n_frames = x.shape[:2]
    flat = x.reshape(n_seq * n_frames, -1)
    net = converted.network
    readout = np.zeros((len(flat), net.layers[-1].n_out))
    synops = np.zeros(len(flat), np.int64)
    macs = np.zeros(len(flat), np.int64)
    for a in tqdm(range(0, len(flat), batch), desc=f"reset T={T}", disable=not progress, leave=False):
        b = min(a + batch, len(flat))
        res = net.run(analog=flat[a:b], T=T, n_threads=n_threads)
        readout[a:b] = res.membrane
        synops[a:b] = sum(c.synops for c in res.counts)
        macs[a:b] = sum(c.macs for c in res.counts)
    shape = (n_seq, n_frames)
    return readout.reshape(*shape, -1), synops.reshape(shape), macs.reshape(shape)


def _carry(converted, x, T, batch, progress, n_threads):
    """State carried over frames: one simulation of ``F * T`` steps per
    batch of sequences, the first layer's drive changed at every frame."""
    from tqdm.auto import tqdm

    n_seq, n_frames = x.shape[:2]
    net = converted.network
    first = net.layers[0]
    if first.kind == "maxpool":
        raise ValueError("the network's first layer is a max pool: no analog input to drive")
    graph = net.graph()
    inp, readout_name = net.layer_name(0), net.layer_name(len(net.layers) - 1)
    n_out = net.layers[-1].n_out
    readout = np.zeros((n_seq, n_frames, n_out))
    synops = np.zeros((n_seq, n_frames), np.int64)
    macs = np.zeros((n_seq, n_frames), np.int64)
    total = n_frames * T
    bar = tqdm(total=n_seq * n_frames, desc=f"carry T={T}", disable=not progress, leave=False)
    for a in range(0, n_seq, batch):
        b = min(a + batch, n_seq)
        flat = x[a:b].reshape(b - a, n_frames, -1)
        silent = {p.name: SpikeTrains.empty(total, b - a, p.n) for p in graph.populations if p.is_input}
        drive0 = _vecmat(flat[:, 0], first)
        sim = graph.start(
            total,
            inputs=silent,
            drive={inp: drive0},
            batch_size=b - a,
            record_v={readout_name: np.arange(n_out)},
            n_threads=n_threads,
            history=T,
        )
        before = np.zeros(b - a, np.int64)
        previous = np.zeros((b - a, n_out))
        for f in range(n_frames):
            sim.advance(T, drive={inp: _vecmat(flat[:, f], first)} if f else None)
            r = sim.recorded(readout_name)[-1]  # [B, C] after the frame's last step
            readout[a:b, f] = r - previous
            previous = r
            done = sum(c for c in sim.totals().values())[:, 0]
            synops[a:b, f] = done - before
            before = done
            macs[a:b, f] = ((flat[:, f] != 0) * first.fan_out).sum(axis=1)
            bar.update(b - a)
    bar.close()
    return readout, synops, macs
