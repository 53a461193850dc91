"""Delta propagation of a feed-forward stack over frame sequences
(sigma-delta units, as Lava-DL's): every unit keeps its accumulated input and
sends the change of its activation to its fan-out only when it exceeds a
threshold ``theta``, keeping the residue, so a frame costs in proportion to
what changed since the last; the first layer receives only the change of its
input; max pools recompute the windows whose inputs changed. The rule and its
counts are in ``kernels/delta.py``; :mod:`snn.convert.frames` runs a
converted network this way over VIDEO-DIGITS.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from snn_kernels.delta import CONV, DENSE, MAXPOOL, delta_run, delta_settle

from .._validate import real_array
from ..model.network import Network


def check_frames(frames, input_shape) -> np.ndarray:
    """``frames`` as a new float64 array ``[S, F, *input_shape]`` (finite
    floating-point values; the caller's array is only read); ValueError
    otherwise."""
    shape = np.shape(frames)
    if len(shape) != 2 + len(input_shape) or tuple(shape[2:]) != tuple(input_shape):
        raise ValueError(
            f"frames must be [sequences, frames, {', '.join(map(str, input_shape))}], got shape {shape}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"frames has no sequence or no frame (shape {shape})")
    arr = np.asarray(frames.detach().cpu().numpy() if hasattr(frames, "detach") else frames)
    if arr.dtype.kind != "f":
        raise ValueError(
            f"frames must be floating-point, got dtype {arr.dtype}; scale integer data as the network "
            "was trained (e.g. x.astype(np.float32) / 255) before passing it"
        )
    return real_array("frames", arr).copy()


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass
class DeltaState:
    """The state of a batch of sequences: ``z`` ``[S, nz]`` (every layer's
    accumulated input) and ``sent`` ``[S, ns]`` (the input's and every
    layer's last sent activations), float64."""

    z: np.ndarray
    sent: np.ndarray

    def copy(self) -> DeltaState:
        return DeltaState(self.z.copy(), self.sent.copy())


@dataclass
class DeltaRun:
    """What :meth:`DeltaNetwork.run` did: ``logits`` ``[S, F, C]`` (the
    readout after each frame), ``counts`` ``[S, F, L + 1, 3]`` (kernels'
    counts per frame: ``[..., 0, :]`` the input, ``[..., l + 1, :]`` layer
    ``l``; columns: weight additions received, units that sent a delta,
    units evaluated), ``seconds`` (wall time), ``state`` (after the last
    frame: pass it to the next call to go on)."""

    logits: np.ndarray
    counts: np.ndarray
    seconds: float
    state: DeltaState

    @property
    def macs(self) -> np.ndarray:
        """``[S, F]``: the first layer's weight additions (input change x weight)."""
        return self.counts[:, :, 1, 0].copy()

    @property
    def synops(self) -> np.ndarray:
        """``[S, F]``: the other layers' weight additions (graded deltas)."""
        return self.counts[:, :, 2:, 0].sum(axis=2)


class DeltaNetwork:
    """A stack of layers run by delta propagation (module docstring; the rule
    in ``kernels/delta.py``): an :class:`snn.Network` of IF neurons with
    reset by subtraction (threshold ``thr``: a unit's activation is ``max(z,
    0) / thr``; the last layer is the readout, its ``z`` the output), as
    conversion builds them, or a converted stack
    (:class:`snn.convert.ConvertedNetwork`: frames then have its
    ``input_shape``; otherwise ``[n_in]``).

    theta : the threshold on a unit's change, a number for every layer or
        one per sender ``[L + 1]`` (the input, then each layer; the
        readout's is unused), in units of the layer's scale (the converted
        layers' activations are normalised to 1) and, for the input, of
        ``input_scale``. ``0`` sends every change: the readout is then the
        ANN's logits.
    input_scale : the input's scale (the digits are in [0, 1]: 1).

    The layers' weights are read once (float64); the network is not
    changed. A state starts from the network settled at a zero frame
    (every unit's activation at zero input sent once: a constant of the
    network, like a bias; its cost is :attr:`settle_counts`, not counted
    in any frame)."""

    def __init__(self, network, theta=0.05, input_scale: float = 1.0):
        net = getattr(network, "network", network)  # a converted stack holds its Network
        if not isinstance(net, Network):
            raise TypeError(
                "expected an snn.Network or a converted stack (ConvertedNetwork), "
                f"got {type(network).__name__}"
            )
        self.network = net
        shape = getattr(network, "input_shape", None)
        self.input_shape = tuple(shape) if shape is not None else (net.n_in,)
        layers = list(net.layers)
        kinds, geoms, weights, biases, inv_thr, sizes = [], [], [], [], [], [net.n_in]
        for k, layer in enumerate(layers):
            geom = np.zeros(15, np.int64)
            last = k == len(layers) - 1
            if layer.kind == "maxpool":
                if last:
                    raise ValueError("the readout (last layer) must have neurons, not be a max pool")
                kinds.append(MAXPOOL)
                geom[:11] = layer.geom
                weights.append(np.zeros(0))
                biases.append(np.zeros(layer.n_out))
                inv_thr.append(1.0)
            else:
                neuron = layer.neuron
                plain = neuron.beta == 1.0 and not neuron.has_current and not neuron.refractory
                if not plain or neuron.reset != "subtract":
                    raise ValueError(
                        f"layer {k} ({layer.name}): delta propagation needs the converted IF neurons "
                        f"(no leak, no synaptic current, no refractory period, reset by subtraction), "
                        f"got {neuron!r}"
                    )
                thr = float(neuron.threshold)
                if not last and not (math.isfinite(thr) and thr > 0):
                    raise ValueError(f"layer {k} ({layer.name}): a hidden threshold must be > 0, got {thr}")
                if layer.kind == "conv":
                    kinds.append(CONV)
                    geom[:] = layer.geom
                    weights.append(np.asarray(layer.kernel_weights, np.float64))
                else:  # dense or csr: dense rows [n_in, n_out]
                    kinds.append(DENSE)
                    geom[:2] = (layer.n_in, layer.n_out)
                    weights.append(np.asarray(layer.dense_rows(np.float32), np.float64).reshape(-1))
                biases.append(np.asarray(layer.bias, np.float64))
                inv_thr.append(1.0 / thr if not last else 1.0)
            geoms.append(geom)
            sizes.append(layer.n_out)
        self.n_layers = len(layers)
        self.kinds = np.array(kinds, np.int64)
        self.geoms = np.stack(geoms)
        self.w_all = np.ascontiguousarray(np.concatenate(weights))
        self.w_off = np.concatenate(([0], np.cumsum([len(w) for w in weights]))).astype(np.int64)
        self.inv_thr = np.array(inv_thr, np.float64)
        self.s_off = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.z_off = np.concatenate(([0], np.cumsum(sizes[1:]))).astype(np.int64)
        self.fan_out = [np.asarray(layer.fan_out, np.int64) for layer in layers]  # per input unit
        self.n_classes = sizes[-1]
        self.input_scale = float(input_scale)
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"input_scale must be a finite number > 0, got {input_scale!r}")
        self.theta = self._theta(theta)
        z0 = np.concatenate(biases)
        sent0 = np.zeros(int(self.s_off[-1]))
        self.settle_counts = np.zeros((self.n_layers + 1, 3), np.int64)
        delta_settle(
            self.kinds,
            self.geoms,
            self.z_off,
            self.s_off,
            self.w_all,
            self.w_off,
            self.inv_thr,
            z0,
            sent0,
            self.settle_counts,
        )
        self._z0, self._sent0 = z0, sent0

    def _theta(self, theta) -> np.ndarray:
        arr = np.asarray(theta, np.float64) if not isinstance(theta, bool) else None
        if arr is None or arr.ndim > 1 or (arr.ndim == 1 and arr.shape != (self.n_layers + 1,)):
            raise ValueError(f"theta must be a number or [{self.n_layers + 1}] numbers, got {theta!r}")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"theta must be finite and >= 0, got {theta!r}")
        out = np.broadcast_to(arr, (self.n_layers + 1,)).copy()
        out[0] *= self.input_scale
        return out

    def initial_state(self, n_sequences: int) -> DeltaState:
        """The settled state (zero input) for ``n_sequences`` sequences."""
        n = _positive_int("n_sequences", n_sequences)
        return DeltaState(np.tile(self._z0, (n, 1)), np.tile(self._sent0, (n, 1)))

    def run(self, frames, state: DeltaState | None = None, *, progress: bool = False, chunk: int = 0):
        """Run ``frames`` (``[S, F, *input_shape]``) from ``state`` (default:
        :meth:`initial_state`; the caller's state is not changed: the
        returned :class:`DeltaRun` holds the state after the last frame).
        ``progress``: a bar over chunks of ``chunk`` sequences (0: all at
        once)."""
        x = check_frames(frames, self.input_shape)
        n_seq, n_frames = x.shape[:2]
        flat = np.ascontiguousarray(x.reshape(n_seq, n_frames, -1))
        if state is None:
            state = self.initial_state(n_seq)
        else:
            if not isinstance(state, DeltaState):
                raise TypeError(f"state must be a DeltaState, got {type(state).__name__}")
            if state.z.shape != (n_seq, self._z0.size) or state.sent.shape != (n_seq, self._sent0.size):
                raise ValueError(
                    f"state is for {state.z.shape} / {state.sent.shape}, the frames need "
                    f"({n_seq}, {self._z0.size}) / ({n_seq}, {self._sent0.size})"
                )
            state = state.copy()
        logits = np.zeros((n_seq, n_frames, self.n_classes))
        counts = np.zeros((n_seq, n_frames, self.n_layers + 1, 3), np.int64)
        from tqdm.auto import tqdm

        size = n_seq if not chunk else _positive_int("chunk", chunk)
        starts = range(0, n_seq, size)
        start = time.perf_counter()
        for a in tqdm(starts, desc="delta", disable=not progress, leave=False):
            b = min(a + size, n_seq)
            delta_run(
                flat[a:b],
                self.theta,
                self.kinds,
                self.geoms,
                self.z_off,
                self.s_off,
                self.w_all,
                self.w_off,
                self.inv_thr,
                state.z[a:b],
                state.sent[a:b],
                logits[a:b],
                counts[a:b],
            )
        return DeltaRun(logits, counts, time.perf_counter() - start, state)
