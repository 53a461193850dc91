"""Convolutional layers: Conv2d and spiking AvgPool2d onto a population laid
out channel-first ``(C, H, W)`` (neuron ``(c * H + y) * W + x``, the order of
a flattened torch tensor, so a following Linear takes torch's weights as they
are), and Flatten as a shape marker."""

from __future__ import annotations

import numpy as np

from .._validate import MAX_INDEX, owned, positive_int, real_array
from .layers import Layer
from .neurons import IF, Neuron


def _pair(name, value):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    value = tuple(value)
    if len(value) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and abs(v) <= MAX_INDEX for v in value
    ):
        raise ValueError(
            f"{name} must be an int or a pair of ints (at most {MAX_INDEX} in size), got {value!r}"
        )
    return int(value[0]), int(value[1])


def _shape3(in_shape):
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"in_shape must be (channels, height, width) of positive sizes, got {in_shape!r}")
    return shape


def conv_geometry(
    in_shape, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1
) -> np.ndarray:
    """The geometry of a convolution as the kernels read it (int64
    ``[15]``, fields ``kernels.conv.GEOM_FIELDS``), checked: sizes as in
    ``torch.nn.Conv2d`` (zero padding), the kernel fitting the padded input."""
    c_in, h, w = _shape3(in_shape)
    out_channels = positive_int("out_channels", out_channels)
    kh, kw = _pair("kernel_size", kernel_size)
    sy, sx = _pair("stride", stride)
    py, px = _pair("padding", padding)
    dy, dx = _pair("dilation", dilation)
    if min(kh, kw, sy, sx, dy, dx) < 1 or min(py, px) < 0:
        raise ValueError("kernel_size, stride and dilation must be >= 1 and padding >= 0")
    if (
        isinstance(groups, bool)
        or not isinstance(groups, (int, np.integer))
        or groups < 1
        or c_in % groups
        or out_channels % groups
    ):
        raise ValueError(f"groups={groups!r} must divide in_channels={c_in} and out_channels={out_channels}")
    h_out = (h + 2 * py - dy * (kh - 1) - 1) // sy + 1
    w_out = (w + 2 * px - dx * (kw - 1) - 1) // sx + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"the kernel does not fit: input {in_shape} gives an output of {h_out}x{w_out}")
    return np.array(
        [c_in, h, w, out_channels, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups], np.int64
    )


def conv_weight_shape(geom) -> tuple:
    """``(C_out, C_in / groups, kh, kw)``, torch's layout."""
    return (int(geom[3]), int(geom[0] // geom[14]), int(geom[6]), int(geom[7]))


def conv_weight(geom, weight) -> np.ndarray:
    """``weight`` checked against the geometry, as our own read-only float32 copy."""
    weight = real_array("weight", weight, np.float32, ndim=4)
    if weight.shape != conv_weight_shape(geom):
        raise ValueError(f"weight must have shape {conv_weight_shape(geom)}, got {weight.shape}")
    return owned(weight)


def kernel_layout(weight) -> np.ndarray:
    """Torch-layout weights flat in the kernels' order ``[C_in / groups, kh,
    kw, C_out]`` (the output channels of a tap contiguous), read-only."""
    return owned(np.asarray(weight).transpose(1, 2, 3, 0).reshape(-1))


def conv_fan_out(geom) -> np.ndarray:
    """Targets reached by each input neuron (fewer at padded borders), ``[n_in]`` int64."""
    c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups = geom

    def taps(size, out, k, s, p, d):
        pos = np.arange(size)[:, None] + p - np.arange(k)[None, :] * d
        return ((pos >= 0) & (pos % s == 0) & (pos // s < out)).sum(axis=1)

    per_pixel = np.outer(taps(h, h_out, kh, sy, py, dy), taps(w, w_out, kw, sx, px, dx))
    return np.tile(per_pixel.reshape(-1) * (c_out // groups), c_in).astype(np.int64)


def conv_dense_rows(geom, weight, dtype=np.float32) -> np.ndarray:
    """The convolution as a dense ``[n_in, n_out]`` matrix of ``dtype``, for
    the clock-driven paths (the event path never builds it)."""
    c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups = (int(v) for v in geom)
    rows = np.zeros((c_in * h * w, c_out * h_out * w_out), np.float32)
    cg_in, cg_out = c_in // groups, c_out // groups
    co = np.arange(c_out)
    c_local = np.arange(cg_in)
    for ky in range(kh):
        oy = np.arange(h_out)
        y = oy * sy - py + ky * dy
        oy, y = oy[(y >= 0) & (y < h)], y[(y >= 0) & (y < h)]
        for kx in range(kw):
            ox = np.arange(w_out)
            x = ox * sx - px + kx * dx
            ox, x = ox[(x >= 0) & (x < w)], x[(x >= 0) & (x < w)]
            pix_in = (y[:, None] * w + x[None, :]).reshape(-1)
            pix_out = (oy[:, None] * w_out + ox[None, :]).reshape(-1)
            for g in range(groups):
                cos = co[g * cg_out : (g + 1) * cg_out]
                cis = g * cg_in + c_local
                src = cis[:, None, None] * h * w + pix_in[None, None, :]
                dst = cos[None, :, None] * h_out * w_out + pix_out[None, None, :]
                wts = weight[cos][:, :, ky, kx].T[:, :, None]  # [cg_in, cg_out, 1]
                shape = (cg_in, cg_out, len(pix_in))
                rows[np.broadcast_to(src, shape), np.broadcast_to(dst, shape)] = np.broadcast_to(wts, shape)
    return rows.astype(dtype, copy=False)


class Conv2d(Layer):
    """2-D convolution onto spiking neurons, event-driven without expanding
    the convolution into a matrix.

    Parameters
    ----------
    in_shape : ``(C_in, H, W)`` of the input.
    out_channels, kernel_size, stride, padding, dilation, groups : as in
        ``torch.nn.Conv2d`` (zero padding).
    weight : ``[C_out, C_in / groups, kh, kw]`` (torch layout); default:
        torch-like uniform init from ``seed``.
    bias : per output channel ``[C_out]`` or scalar.
    """

    kind = "conv"

    def __init__(
        self,
        in_shape,
        out_channels: int,
        kernel_size,
        neuron: Neuron | None = None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        weight=None,
        bias=0.0,
        v_init=0.0,
        mode: str = "auto",
        seed: int | None = None,
        name: str | None = None,
    ):
        geom = conv_geometry(in_shape, out_channels, kernel_size, stride, padding, dilation, groups)
        c_in, h, w, out_channels, h_out, w_out, kh, kw = (int(v) for v in geom[:8])
        self.in_shape = (c_in, h, w)
        self.out_shape = (int(out_channels), h_out, w_out)
        bias = real_array("bias", bias)
        if bias.ndim == 1:
            if bias.shape != (out_channels,):
                raise ValueError(f"bias must be a scalar or have shape ({out_channels},), got {bias.shape}")
            bias = np.repeat(bias, h_out * w_out)
        super().__init__(c_in * h * w, out_channels * h_out * w_out, neuron, bias, v_init, mode, name)
        if weight is None:
            bound = 1.0 / np.sqrt(c_in // geom[14] * kh * kw)
            weight = np.random.default_rng(seed).uniform(-bound, bound, conv_weight_shape(geom))
        # our own read-only copies: derived data (dense_rows) is cached
        self.weight = conv_weight(geom, weight)
        # kernel layout [C_in / groups, kh, kw, C_out], flat (see kernels.conv)
        self.kernel_weights = kernel_layout(self.weight)
        self.geom = geom
        self.fan_out = conv_fan_out(geom)

    def _dense_rows(self, dtype) -> np.ndarray:
        """The equivalent ``[n_in, n_out]`` matrix, for the dense fallback and
        the reference backend; the event path never builds it."""
        return conv_dense_rows(self.geom, self.weight, dtype)

    def __repr__(self):
        c, h, w = self.in_shape
        co, ho, wo = self.out_shape
        kh, kw = self.geom[6:8]
        return f"Conv2d({c}x{h}x{w} -> {co}x{ho}x{wo}, kernel {kh}x{kw}, {self.neuron!r}, mode={self.mode!r})"


class AvgPool2d(Conv2d):
    """Spiking average pooling: a depthwise convolution with weights
    ``1 / (kh * kw)`` onto IF neurons (threshold 1, reset by subtraction), so
    the output rate is the window's mean input rate, re-quantised into
    spikes. Its accumulates are counted as SynOps."""

    def __init__(self, in_shape, kernel_size, stride=None, neuron: Neuron | None = None, **kwargs):
        c, h, w = _shape3(in_shape)
        positive_int("the input size C * H * W", c * h * w)  # before its C kernels are allocated
        kh, kw = _pair("kernel_size", kernel_size)
        py, px = _pair("padding", kwargs.get("padding", 0))
        if min(kh, kw) < 1 or kh > h + 2 * py or kw > w + 2 * px:
            raise ValueError(
                f"kernel_size must be >= 1 and fit the (padded) input {h}x{w}, got {kernel_size!r}"
            )
        weight = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
        super().__init__(
            in_shape,
            c,
            (kh, kw),
            neuron or IF(),
            stride=(kh, kw) if stride is None else stride,
            groups=c,
            weight=weight,
            **kwargs,
        )

    def __repr__(self):
        return (
            f"AvgPool2d({'x'.join(map(str, self.in_shape))} -> {'x'.join(map(str, self.out_shape))}, "
            f"{self.neuron!r})"
        )


class MaxPool2d:
    """Spiking max pooling (no neurons), with the windows of
    ``torch.nn.MaxPool2d(kernel_size, stride, padding)`` (dilation 1,
    ``ceil_mode=False``; windows may overlap): output ``(c, y, x)`` spikes
    when the highest accumulated spike count of its window rises (see
    ``kernels.pool``), so its spike count is at every step the highest
    input count of its window: max pooling of the rates. Padding never
    spikes.

    Parameters
    ----------
    in_shape : ``(C, H, W)`` of the input.
    kernel_size, stride, padding : an int or a pair ``(y, x)`` each, as in
        torch: ``stride`` defaults to ``kernel_size``; ``padding <=
        kernel_size // 2``; output ``(H + 2 padding - kernel_size) // stride + 1``
        (floored), at least 1.
    name : optional layer name.

    Counts: no SynOps (comparisons, not accumulates); ``updates`` = gate
    evaluations, one per (input spike, window containing that input) pair
    (an input cropped out of every window by the floor is never checked)."""

    kind = "maxpool"
    _edits = 0  # attributes assigned so far (as snn.model.layers.Layer counts them)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        object.__setattr__(self, "_edits", self._edits + 1)

    def __init__(self, in_shape, kernel_size, stride=None, padding=0, name: str | None = None):
        c, h, w = _shape3(in_shape)
        positive_int("the input size C * H * W", c * h * w)  # the kernels index neurons with int32
        kh, kw = _pair("kernel_size", kernel_size)
        if min(kh, kw) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size!r}")
        sy, sx = (kh, kw) if stride is None else _pair("stride", stride)
        if min(sy, sx) < 1:
            raise ValueError(f"stride must be >= 1, got {stride!r}")
        py, px = _pair("padding", padding)
        if min(py, px) < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        if py > kh // 2 or px > kw // 2:
            raise ValueError(
                f"padding {py}x{px} must be at most half the kernel size {kh}x{kw} (as torch requires)"
            )
        if kh > h + 2 * py or kw > w + 2 * px:
            raise ValueError(f"kernel_size {kh}x{kw} is larger than the input {h}x{w} (padded by {py}x{px})")
        h_out, w_out = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
        self.kernel_size, self.stride, self.padding = (kh, kw), (sy, sx), (py, px)
        # the kernels' geometry (kernels.pool.GEOM_FIELDS), read-only
        self.geom = owned(np.array([c, h, w, h_out, w_out, kh, kw, sy, sx, py, px], np.int64))
        self.in_shape = (c, h, w)
        self.out_shape = (c, h_out, w_out)
        self.n_in, self.n_out = c * h * w, c * h_out * w_out
        self.fan_out = np.zeros(self.n_in, np.int64)  # SynOps per input spike
        self.name = name

    def __repr__(self):
        shapes = f"{'x'.join(map(str, self.in_shape))} -> {'x'.join(map(str, self.out_shape))}"
        window = f"kernel {'x'.join(map(str, self.kernel_size))}, stride {'x'.join(map(str, self.stride))}"
        if self.padding != (0, 0):
            window += f", padding {'x'.join(map(str, self.padding))}"
        return f"MaxPool2d({shapes}, {window})"


class Flatten:
    """Marks the passage from ``(C, H, W)`` to a flat vector. Neurons are
    already numbered channel-first like a flattened torch tensor, so it costs
    nothing and the network drops it."""

    kind = "flatten"

    def __repr__(self):
        return "Flatten()"
