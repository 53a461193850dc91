"""Convolutional layers: ``snn.Conv2d``, ``snn.AvgPool2d``, ``snn.MaxPool2d``.

What is checked, and against what:

- The linear part of Conv2d against ``torch.nn.functional.conv2d`` on the
  same weights, for every input path (constant analog input folded into a
  bias, time-varying analog input, spikes through the event kernel, the dense
  clock path and the reference loop), with random geometries: stride 1-3,
  padding 0-2, dilation 1-2, groups dividing the channels, non-square inputs
  and kernels. Neurons are ``IF(threshold=inf)`` (they never fire), so the
  final membrane is exactly ``sum_t conv2d(x_t) + T * bias``.

  Tolerance: ``|membrane - torch| <= TOL[dtype] * m`` per output neuron, with
  ``m = T * |bias| + conv2d(sum_t |x_t|, |W|)`` the magnitude of the terms
  summed, and ``TOL`` the tolerance of the equivalence tests (conftest.py:
  1e-9 for float64, 1e-4 for float32). The two computations differ only in
  summation order (and float32 state rounding), i.e. a few ulps of ``m``.
- Event and dense paths against the reference backend on random conv stacks
  (Conv2d / AvgPool2d / MaxPool2d / Linear, all neuron models) with the
  tolerance rule of ``test_equivalence.py`` (``conftest.assert_equivalent``),
  and bit-identical results in exact (dyadic, IF) arithmetic.
- SynOps against an independent count: input spikes x fan-out, the fan-out
  computed by torch's conv2d of every one-hot input with an all-ones kernel
  (``conftest.conv_fan_out``): exact at padded borders.
- AvgPool2d = a depthwise Conv2d with weights ``1 / (kh * kw)``.
- MaxPool2d's gating rule (``kernels/pool.py``) on hand-built cases
  (non-overlapping, and overlapping windows with padding) and against a
  plain-Python transcription of the rule on random input and random windows
  (kernel, stride, padding as torch allows them).
- Construction errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TOL, NetSpec, assert_equivalent, conv_fan_out, examples, neurons, reference_with_traces
from hypothesis import example, given, settings
from hypothesis import strategies as st

import snn

PATHS = (("event", "event"), ("event", "clock"), ("event", "dense"), ("reference", None))


def _run(net, backend, mode, **kwargs):
    if backend == "reference":
        return net.run(**kwargs, backend="reference")
    return net.run(**kwargs, mode=mode)


def torch_conv(x, weight, bias, geo):
    """conv2d in float64 of ``x[B, C, H, W]`` with the (float32) weights."""
    out = F.conv2d(
        torch.as_tensor(np.asarray(x, np.float64)),
        torch.as_tensor(np.asarray(weight, np.float32).astype(np.float64)),
        None if bias is None else torch.as_tensor(np.asarray(bias, np.float64)),
        stride=geo["stride"],
        padding=geo["padding"],
        dilation=geo["dilation"],
        groups=geo["groups"],
    )
    return out.numpy()


def _fits(size, k, p, d):
    return size + 2 * p - d * (k - 1) - 1 >= 0


@st.composite
def conv_geometries(draw, in_shape=None, max_hw=9):
    """A Conv2d geometry (kwargs of ``snn.Conv2d`` without the neuron): stride
    1-3, padding 0-2, dilation 1-2, kernel 1-4 (rectangular too), groups
    dividing both channel counts, H and W drawn independently."""
    if in_shape is None:
        groups = draw(st.integers(1, 3))
        c_in = groups * draw(st.integers(1, 3))
    else:
        c_in = in_shape[0]
        groups = draw(st.sampled_from([g for g in range(1, c_in + 1) if c_in % g == 0]))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    py, px = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dy, dx = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if in_shape is None:
        h = draw(st.integers(max(1, dy * (kh - 1) + 1 - 2 * py), max_hw + dy * (kh - 1)))
        w = draw(st.integers(max(1, dx * (kw - 1) + 1 - 2 * px), max_hw + dx * (kw - 1)))
    else:
        _, h, w = in_shape
        # shrink the kernel until it fits the given input
        while not _fits(h, kh, py, dy):
            kh, dy = (kh - 1, dy) if kh > 1 else (1, 1)
        while not _fits(w, kw, px, dx):
            kw, dx = (kw - 1, dx) if kw > 1 else (1, 1)
    return dict(
        in_shape=(c_in, h, w),
        out_channels=c_out,
        kernel_size=(kh, kw),
        stride=(sy, sx),
        padding=(py, px),
        dilation=(dy, dx),
        groups=groups,
    )


def _out_hw(geo):
    """Output height and width (torch's formula)."""
    _, h, w = geo["in_shape"]
    return tuple(
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(
            (h, w), geo["kernel_size"], geo["stride"], geo["padding"], geo["dilation"]
        )
    )


def _conv_kwargs(geo):
    return {k: v for k, v in geo.items() if k not in ("in_shape", "out_channels", "kernel_size")}


def _weight_shape(geo):
    c_in = geo["in_shape"][0]
    return (geo["out_channels"], c_in // geo["groups"], *geo["kernel_size"])


# ---------------------------------------------------------------------------
# (a) the linear part against torch
# ---------------------------------------------------------------------------

NON_SQUARE = dict(
    in_shape=(2, 5, 9),
    out_channels=4,
    kernel_size=(3, 2),
    stride=(2, 3),
    padding=(1, 2),
    dilation=(2, 1),
    groups=2,
)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@example(geo=NON_SQUARE, seed=0, batch=2, T=3)
@example(
    geo=dict(
        in_shape=(3, 7, 4),
        out_channels=3,
        kernel_size=(4, 1),
        stride=(3, 1),
        padding=(2, 0),
        dilation=(1, 2),
        groups=3,
    ),
    seed=1,
    batch=1,
    T=1,
)  # depthwise
@given(geo=conv_geometries(), seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 3), T=st.integers(1, 3))
def test_linear_part_matches_torch_conv2d(dtype, geo, seed, batch, T):
    """Membrane of never-firing IF neurons (v_init 0) == conv2d + bias, for
    analog input (constant: T=1 step; time-varying: 1 step) and for spikes
    over T steps on every path."""
    rng = np.random.default_rng(seed)
    c, h, w = geo["in_shape"]
    weight = rng.uniform(-1, 1, _weight_shape(geo)).astype(np.float32)
    bias = rng.uniform(-1, 1, geo["out_channels"])
    layer = snn.Conv2d(
        geo["in_shape"],
        geo["out_channels"],
        geo["kernel_size"],
        snn.IF(threshold=math.inf),
        weight=weight,
        bias=bias,
        **_conv_kwargs(geo),
    )
    net = snn.Network([layer], dtype=dtype)
    b4 = bias[:, None, None]

    # analog input, with exact zeros
    x = rng.uniform(-1, 1, (batch, c, h, w)) * (rng.random((batch, c, h, w)) < 0.8)
    expected = torch_conv(x, weight, None, geo) + b4
    assert layer.out_shape == expected.shape[1:]
    assert layer.n_out == int(np.prod(expected.shape[1:]))
    magnitude = (torch_conv(np.abs(x), np.abs(weight), None, geo) + np.abs(b4)).reshape(batch, -1)
    expected = expected.reshape(batch, -1)
    flat = x.reshape(batch, -1)
    runs = {
        "analog const, event": net.run(analog=flat, T=1),
        "analog const, reference": net.run(analog=flat, T=1, backend="reference"),
        "analog time-varying, event": net.run(analog=flat[None]),
        "analog time-varying, reference": net.run(analog=flat[None], backend="reference"),
    }
    for label, r in runs.items():
        assert r.membrane.dtype == np.dtype(dtype)
        err = np.abs(r.membrane - expected)
        assert np.all(err <= TOL[dtype] * magnitude), (label, err.max())

    # spikes over T steps: sum_t conv2d(x_t) + T * bias
    s = (rng.random((T, batch, c, h, w)) < 0.4).astype(np.uint8)
    total = s.sum(axis=0).astype(np.float64)
    expected = (torch_conv(total, weight, None, geo) + T * b4).reshape(batch, -1)
    magnitude = (torch_conv(total, np.abs(weight), None, geo) + T * np.abs(b4)).reshape(batch, -1)
    for backend, mode in PATHS:
        r = _run(net, backend, mode, spikes=s.reshape(T, batch, -1))
        assert r.spikes(0).sum() == 0
        err = np.abs(r.membrane - expected)
        assert np.all(err <= TOL[dtype] * magnitude), (backend, mode, err.max())


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend,mode", PATHS)
def test_single_spike_reaches_its_receptive_field(backend, mode):
    """One input spike at a padded corner: the membrane is the (flipped)
    kernel slice that overlaps the output, exactly (dyadic weights, every
    weight distinct so that a wrong tap shows)."""
    geo = dict(
        in_shape=(2, 4, 5), out_channels=3, kernel_size=(3, 3), stride=1, padding=1, dilation=1, groups=1
    )
    weight = (np.arange(3 * 2 * 9, dtype=np.float32).reshape(3, 2, 3, 3) + 1) / 8
    layer = snn.Conv2d(geo["in_shape"], 3, 3, snn.IF(threshold=math.inf), padding=1, weight=weight)
    net = snn.Network([layer])
    for pixel in [(1, 0, 0), (0, 3, 4), (1, 2, 2), (0, 0, 4)]:
        x = np.zeros((1, 1, 2, 4, 5), np.uint8)
        x[(0, 0) + pixel] = 1
        r = _run(net, backend, mode, spikes=x.reshape(1, 1, -1))
        expected = torch_conv(x[0], weight, None, geo).reshape(1, -1)
        assert np.array_equal(r.membrane, expected), pixel


# ---------------------------------------------------------------------------
# (b) event / dense vs reference on conv stacks
# ---------------------------------------------------------------------------


@st.composite
def conv_stacks(draw, exact: bool = False, max_layers: int = 3):
    """A random stack: 1-3 of Conv2d / AvgPool2d / MaxPool2d (not first),
    optionally a Linear readout, and its spike input ``[T, B, n_in]``.
    Returns ``(layers, NetSpec)``. ``exact``: IF neurons, weights multiples of
    1/8, dyadic bias / v_init / thresholds, pooling kernels with dyadic
    1/(kh*kw): every sum is exact in float32 and float64."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    T, batch = draw(st.integers(1, 20)), draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(2, 9)))
    in_shape = shape
    layers = []
    for k in range(draw(st.integers(1, max_layers))):
        kinds = ["conv", "conv"]
        if min(shape[1:]) >= 2:
            kinds += ["avg", "max", "max"] if k > 0 else ["avg"]
        kind = draw(st.sampled_from(kinds))
        if kind == "max":
            layers.append(snn.MaxPool2d(shape, *draw(maxpool_windows(shape))))
            shape = layers[-1].out_shape
            continue
        neuron = draw(neurons(exact=exact))
        thr = neuron.threshold
        if kind == "avg":
            sizes = [1, 2] if exact else [1, 2, 3]
            kh = draw(st.sampled_from([s for s in sizes if s <= shape[1]]))
            kw = draw(st.sampled_from([s for s in sizes if s <= shape[2]]))
            v_init = draw(st.sampled_from([0.0, 0.5])) if exact else float(rng.uniform(-thr, thr))
            layer = snn.AvgPool2d(shape, (kh, kw), neuron=neuron, v_init=v_init)
        else:
            geo = draw(conv_geometries(in_shape=shape))
            n_out = geo["out_channels"] * int(np.prod(_out_hw(geo)))
            fan_in = (shape[0] // geo["groups"]) * geo["kernel_size"][0] * geo["kernel_size"][1]
            if exact:
                weight = rng.integers(-8, 17, _weight_shape(geo)) / 8
                bias = rng.integers(-4, 5, geo["out_channels"]) / 8
                v_init = float(draw(st.integers(0, 8)) / 8)
            else:
                gain = draw(st.floats(0.3, 3.0))
                weight = rng.uniform(-0.4, 1.0, _weight_shape(geo)) * thr * gain / np.sqrt(fan_in)
                bias = draw(st.sampled_from(["zero", "scalar", "channel"]))
                bias = {
                    "zero": 0.0,
                    "scalar": float(rng.uniform(-0.1, 0.2) * thr),
                    "channel": rng.uniform(-0.1, 0.2, geo["out_channels"]) * thr,
                }[bias]
                v_init = draw(st.sampled_from([0.0, "neuron"]))
                if v_init == "neuron":
                    v_init = rng.uniform(-thr, thr, n_out)
            layer = snn.Conv2d(
                shape,
                geo["out_channels"],
                geo["kernel_size"],
                neuron,
                weight=weight,
                bias=bias,
                v_init=v_init,
                **_conv_kwargs(geo),
            )
        layers.append(layer)
        shape = layer.out_shape
    if draw(st.booleans()):
        n_in = int(np.prod(shape))
        neuron = draw(neurons(exact=exact))
        if exact:
            W = rng.integers(-8, 17, (4, n_in)) / 8
        else:
            W = rng.uniform(-0.4, 1.0, (4, n_in)) * neuron.threshold * 2 / np.sqrt(n_in)
        layers.append(snn.Linear(n_in, 4, neuron, weight=W))
    p = draw(st.sampled_from([0.05, 0.2, 0.5, 1.0]))
    x = (rng.random((T, batch, int(np.prod(in_shape)))) < p).astype(np.uint8)
    spec = NetSpec(layers=[None] * len(layers), dtype=dtype, T=T, batch=batch, input_kind="spikes", x=x)
    return layers, spec


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", ["event", "clock"])
@given(stack=conv_stacks(), sparse=st.booleans())
def test_a_stack_and_its_graph_give_the_same_spikes_and_counts(mode, stack, sparse):
    """``Graph.from_network``: the chain as a graph (a Linear fully
    connected, or a SparseLinear readout) run by ``Graph.run`` with its
    input population fed, gives what ``Network.run`` (which runs that graph,
    and maps inputs and results to the stack's layers) gives, bit for bit."""
    layers, spec = stack
    if sparse and layers[-1].kind == "dense":  # the readout as a SparseLinear of half its synapses
        dense = layers[-1]
        w = dense.weight_rows  # [n_in, n_out]
        pre, post = np.nonzero(np.random.default_rng(0).random(w.shape) < 0.5)
        layers[-1] = snn.SparseLinear.from_coo(
            *w.shape, pre, post, w[pre, post], dense.neuron, bias=dense.bias, v_init=dense.v_init
        )
    net = snn.Network(layers, dtype=spec.dtype)
    graph = snn.Graph.from_network(net)
    stack_run = net.run(spec.x, mode=mode)
    graph_run = graph.run(spec.T, inputs={"input": spec.x}, mode=mode)
    assert graph_run.names == ["input"] + [net.layer_name(k) for k in range(len(layers))]
    assert all(stage.layer is not None for stage in graph.schedule())
    for k in range(len(layers)):
        np.testing.assert_array_equal(graph_run.spikes(k + 1), stack_run.spikes(k), err_msg=str(k))
        for field in ("synops", "updates", "spikes", "input_events"):
            np.testing.assert_array_equal(
                getattr(graph_run.counts[k + 1], field), getattr(stack_run.counts[k], field), err_msg=field
            )


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", ["event", "clock", "dense", "auto"])
@given(stack=conv_stacks())
def test_conv_stack_event_matches_reference(mode, stack):
    layers, spec = stack
    net = snn.Network(layers, dtype=spec.dtype)
    ref, traces = reference_with_traces(net, spec)
    result = net.run(spec.x, mode=mode)
    assert_equivalent(net, spec, result, ref, traces, label=f"mode={mode}")


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("mode", ["event", "clock", "dense"])
@settings(max_examples=examples(60))
@given(stack=conv_stacks(exact=True))
def test_conv_stack_exact_arithmetic_bit_identical(mode, stack):
    """Exact arithmetic: identical spikes in every layer (max pooling
    included) and identical final membranes, event/clock/dense vs reference."""
    layers, spec = stack
    net = snn.Network(layers, dtype=spec.dtype)
    ref = net.run(spec.x, backend="reference")
    result = net.run(spec.x, mode=mode)
    for k in range(len(layers)):
        assert np.array_equal(result.spikes(k), ref.spikes(k)), (mode, k)
        assert np.array_equal(result.counts[k].spikes, ref.counts[k].spikes), (mode, k)
    if ref.membrane is None:
        assert result.membrane is None
    else:
        assert np.array_equal(result.membrane, ref.membrane)


# ---------------------------------------------------------------------------
# (c) SynOps = input spikes x fan-out (independent)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "geo",
    [
        dict(in_shape=(1, 3, 3), out_channels=1, kernel_size=3, padding=1),
        dict(in_shape=(2, 5, 4), out_channels=4, kernel_size=(3, 2), stride=(2, 1), padding=(2, 0), groups=2),
    ],
)
def test_fan_out_helper_by_hand(geo):
    """The independent counter itself, against counts done by hand: 3x3
    kernel, padding 1 on a 3x3 input: the centre reaches all 9 outputs, an
    edge 6, a corner 4."""
    fan = conv_fan_out(
        geo["in_shape"],
        geo["out_channels"],
        geo["kernel_size"],
        **{k: v for k, v in geo.items() if k in ("stride", "padding", "dilation", "groups")},
    )
    if geo["in_shape"] == (1, 3, 3):
        assert fan.tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4]
    else:
        # 5x4 input, kernel (3, 2), stride (2, 1), padding (2, 0): h_out = 4, w_out = 3.
        # rows y: outputs oy with 0 <= y + 2 - ky = 2 oy, ky in 0..2, oy < 4
        rows = [
            sum(
                1
                for ky in range(3)
                if (y + 2 - ky) % 2 == 0 and 0 <= (y + 2 - ky) // 2 < 4 and y + 2 - ky >= 0
            )
            for y in range(5)
        ]
        cols = [sum(1 for kx in range(2) if 0 <= x - kx < 3) for x in range(4)]
        per_channel = np.outer(rows, cols).reshape(-1) * 2  # 2 output channels per group
        assert fan.tolist() == np.tile(per_channel, 2).tolist()


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend,mode", PATHS)
@settings(max_examples=examples(40))
@given(
    geo=conv_geometries(max_hw=7),
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(1, 8),
    batch=st.integers(1, 3),
    p=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_synops_equal_spikes_times_fan_out(backend, mode, geo, seed, T, batch, p):
    """Two stacked layers (a Conv2d, then an AvgPool2d or a second Conv2d):
    SynOps of each = its input spikes (the given raster, then layer 0's
    raster) x the fan-out counted by torch; ``layer.fan_out`` is that fan-out
    too. Weights include exact zeros: a conv tap is an accumulate whatever
    its value (structural count)."""
    rng = np.random.default_rng(seed)
    weight = rng.uniform(-0.5, 1.5, _weight_shape(geo)) * (rng.random(_weight_shape(geo)) < 0.8)
    conv = snn.Conv2d(
        geo["in_shape"],
        geo["out_channels"],
        geo["kernel_size"],
        snn.IF(threshold=0.5),
        weight=weight,
        bias=0.05,
        **_conv_kwargs(geo),
    )
    c2, h2, w2 = conv.out_shape
    if h2 >= 2 and w2 >= 2 and rng.random() < 0.5:
        second = snn.AvgPool2d(conv.out_shape, 2)
        fan2 = conv_fan_out(conv.out_shape, c2, 2, stride=2, groups=c2)
    else:
        second = snn.Conv2d(conv.out_shape, 2, 3, snn.IF(), padding=1, seed=3)
        fan2 = conv_fan_out(conv.out_shape, 2, 3, padding=1)
    fan1 = conv_fan_out(geo["in_shape"], geo["out_channels"], geo["kernel_size"], **_conv_kwargs(geo))
    assert np.array_equal(conv.fan_out, fan1)
    assert np.array_equal(second.fan_out, fan2)
    assert conv.n_synapses == int(fan1.sum())
    net = snn.Network([conv, second])
    x = (rng.random((T, batch, conv.n_in)) < p).astype(np.uint8)
    r = _run(net, backend, mode, spikes=x)
    inputs = [x, r.spikes(0)]
    for k, fan in enumerate((fan1, fan2)):
        expected = inputs[k].astype(np.int64).sum(axis=0) @ fan
        assert np.array_equal(r.counts[k].synops, expected), (k, r.counts[k].synops, expected)
        assert np.array_equal(r.counts[k].input_events, inputs[k].reshape(T, batch, -1).sum(axis=(0, 2)))
        assert r.counts[k].macs.tolist() == [0] * batch


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_analog_conv_input_macs_are_nonzero_inputs_times_fan_out(backend):
    """A constant analog image into a Conv2d: MACs = non-zero pixels x the
    (torch-counted) fan-out, once, whatever T."""
    geo = dict(in_shape=(2, 6, 5), out_channels=3, kernel_size=3, stride=2, padding=1)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, (3, 60)) * (rng.random((3, 60)) < 0.5)
    fan = conv_fan_out(**geo)
    for T in (1, 9):
        net = snn.Network([snn.Conv2d(geo["in_shape"], 3, 3, snn.IF(), stride=2, padding=1, seed=0)])
        r = net.run(analog=x, T=T, backend=backend)
        assert r.counts[0].macs.tolist() == ((x != 0).astype(np.int64) @ fan).tolist()
        assert r.counts[0].synops.tolist() == [0, 0, 0]


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_conv_updates_only_reached_neurons(groups):
    """DESIGN.md §2 "touches a neuron only when something happens to it":
    IF neurons that never fire (tiny weights, no bias) in a grouped conv,
    input spikes only in the channels of group 0: the event path updates
    exactly the distinct output neurons reached at each step (here: channels
    of group 0 only), as the sparse layers do (test_counts.py)."""
    c_in = c_out = 4
    geo = dict(in_shape=(c_in, 5, 5), out_channels=c_out, kernel_size=3, padding=1, groups=groups)
    weight = np.full((c_out, c_in // groups, 3, 3), 1e-3)
    layer = snn.Conv2d(
        geo["in_shape"], c_out, 3, snn.IF(), padding=1, groups=groups, weight=weight, mode="event"
    )
    rng = np.random.default_rng(0)
    T = 6
    x = (rng.random((T, 1, c_in, 5, 5)) < 0.2).astype(np.uint8)
    x[:, :, c_in // groups :] = 0  # only group 0 receives spikes
    r = snn.Network([layer]).run(x.reshape(T, 1, -1))
    assert r.spikes(0).sum() == 0
    ones = torch.ones(c_out, c_in // groups, 3, 3, dtype=torch.float64)
    reached = F.conv2d(torch.as_tensor(x[:, 0].astype(np.float64)), ones, padding=1, groups=groups) != 0
    expected = int(reached.sum())
    assert r.counts[0].updates.tolist() == [expected], (
        f"{r.counts[0].updates[0]} updates for {expected} reached (step, neuron) pairs: output "
        "channels of other groups, which receive nothing, are brought forward too"
    )


# ---------------------------------------------------------------------------
# (d) AvgPool2d = depthwise conv with weights 1 / k^2
# ---------------------------------------------------------------------------


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(30))
@given(
    c=st.integers(1, 3),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    k=st.integers(2, 3),
    stride=st.sampled_from([None, 1, 2]),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_avgpool_is_depthwise_conv(c, h, w, k, stride, seed, dtype):
    k = min(k, h, w)
    pool = snn.AvgPool2d((c, h, w), k, stride=stride)
    s = k if stride is None else stride
    conv = snn.Conv2d((c, h, w), c, k, snn.IF(), stride=s, groups=c, weight=np.full((c, 1, k, k), 1 / k**2))
    assert pool.out_shape == conv.out_shape == (c, (h - k) // s + 1, (w - k) // s + 1)
    assert pool.neuron == snn.IF()  # threshold 1, reset by subtraction
    assert pool.weight.shape == (c, 1, k, k) and np.all(pool.weight == np.float32(1 / k**2))
    assert np.array_equal(pool.dense_rows(), conv.dense_rows())
    assert np.array_equal(pool.fan_out, conv_fan_out((c, h, w), c, k, stride=s, groups=c))
    rng = np.random.default_rng(seed)
    x = (rng.random((12, 2, c * h * w)) < 0.6).astype(np.uint8)
    for backend, mode in PATHS:
        rp = _run(snn.Network([pool], dtype=dtype), backend, mode, spikes=x)
        rc = _run(snn.Network([conv], dtype=dtype), backend, mode, spikes=x)
        assert np.array_equal(rp.spikes(0), rc.spikes(0)), (backend, mode)
        assert np.array_equal(rp.membrane, rc.membrane)
        for field in ("synops", "updates", "spikes"):
            assert np.array_equal(getattr(rp.counts[0], field), getattr(rc.counts[0], field)), field


@pytest.mark.usefixtures("warm_kernels")
def test_avgpool_of_more_inputs_than_the_kernels_index_is_refused_before_allocating():
    """Found by the fuzzer: 2**40 channels allocated 8 TiB of kernels (a
    MemoryError) before any size was checked."""
    with pytest.raises(ValueError, match="input size"):
        snn.AvgPool2d((2**40, 1, 1), 1)


def test_avgpool_linear_part_matches_torch():
    """Never-firing neurons: membrane after T spike steps == T x
    avg_pool2d of the mean input (non-square input, kernel (2, 3))."""
    rng = np.random.default_rng(4)
    pool = snn.AvgPool2d((3, 6, 7), (2, 3), neuron=snn.IF(threshold=math.inf))
    x = (rng.random((5, 2, 3, 6, 7)) < 0.5).astype(np.uint8)
    expected = F.avg_pool2d(torch.as_tensor(x.sum(axis=0), dtype=torch.float64), (2, 3)).numpy()
    for backend, mode in PATHS:
        r = _run(snn.Network([pool]), backend, mode, spikes=x.reshape(5, 2, -1))
        assert np.allclose(r.membrane, expected.reshape(2, -1), rtol=1e-6, atol=0), (backend, mode)


@pytest.mark.usefixtures("warm_kernels")
def test_avgpool_rate_is_window_mean_rate():
    """A 2x2 window whose inputs fire at rates 1, 1/2, 1/4, 0 (mean 7/16)
    over T = 64 steps: the IF output (threshold 1, subtract reset) fires
    floor(64 x 7/16) = 28 times."""
    T = 64
    x = np.zeros((T, 1, 4), np.uint8)
    x[:, 0, 0] = 1
    x[::2, 0, 1] = 1
    x[::4, 0, 2] = 1
    for backend, mode in PATHS:
        r = _run(snn.Network([snn.AvgPool2d((1, 2, 2), 2)]), backend, mode, spikes=x)
        assert r.spikes(0).sum() == 28, (backend, mode)


# ---------------------------------------------------------------------------
# (e) MaxPool2d gating
# ---------------------------------------------------------------------------


@st.composite
def maxpool_windows(draw, in_shape):
    """``(kernel_size, stride, padding)`` that torch's ``MaxPool2d`` accepts
    on ``in_shape``: ints or pairs, stride below, at or above the kernel
    (overlapping, tiling, gapped windows), padding at most half the kernel."""
    _, h, w = in_shape
    kh = draw(st.integers(1, min(4, h + 2)))
    kw = draw(st.integers(1, min(4, w + 2)))
    py = draw(st.integers(max(0, (kh - h + 1) // 2), kh // 2))
    px = draw(st.integers(max(0, (kw - w + 1) // 2), kw // 2))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = kh if kh == kw and draw(st.booleans()) else (kh, kw)
    stride = draw(st.sampled_from([None, (sy, sx)] + ([sy] if sy == sx else [])))
    padding = py if py == px and draw(st.booleans()) else (py, px)
    return kernel, stride, padding


def maxpool_oracle(x, in_shape, kernel, stride=None, padding=0):
    """Plain-Python transcription of the rule of ``kernels/pool.py``: output
    ``o`` spikes at ``t`` iff some input of its window spiked at ``t`` with a
    count (``t`` included) > the window's highest count before ``t``; the
    windows are torch's (``F.max_pool2d(kernel, stride, padding)``, padding
    never spikes). Returns ``(raster [T, B, n_out], checks [B])``, checks
    being the (input spike, window containing it) pairs."""
    c, h, w = in_shape
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = (kh, kw) if stride is None else stride
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    py, px = (padding, padding) if isinstance(padding, int) else padding
    T, B, _ = x.shape
    ho, wo = (h + 2 * py - kh) // sy + 1, (w + 2 * px - kw) // sx + 1
    out = np.zeros((T, B, c * ho * wo), np.uint8)
    checks = np.zeros(B, np.int64)
    for b in range(B):
        count = np.zeros((c, h, w), np.int64)
        for t in range(T):
            now = x[t, b].reshape(c, h, w)
            before = count.copy()
            count += now
            for ch in range(c):
                for oy in range(ho):
                    for ox in range(wo):
                        rows = slice(max(0, oy * sy - py), max(0, oy * sy - py + kh))
                        cols = slice(max(0, ox * sx - px), max(0, ox * sx - px + kw))
                        win = (ch, rows, cols)
                        spiking = now[win] > 0
                        checks[b] += spiking.sum()
                        if spiking.any() and count[win][spiking].max() > before[win].max():
                            out[t, b, (ch * ho + oy) * wo + ox] = 1
    return out, checks


def _pool_raster(T, n, spikes):
    """Raster ``[T, 1, n]`` from ``{input: [steps]}``."""
    x = np.zeros((T, 1, n), np.uint8)
    for i, steps in spikes.items():
        x[steps, 0, i] = 1
    return x


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
@pytest.mark.parametrize(
    "case,spikes,expected",
    [
        ("one input passes all its spikes", {2: [0, 2, 5]}, [0, 2, 5]),
        ("the leader by count passes, the other is blocked", {0: [0, 1, 2], 3: [1, 3]}, [0, 1, 2]),
        ("a tie passes nothing", {0: [0], 1: [1]}, [0]),
        (
            "catching up: blocked up to the tie, passes once it leads",
            {0: [0, 1], 3: [2, 3, 4]},
            [0, 1, 4],
        ),
        ("four inputs spiking together: one output", {0: [3], 1: [3], 2: [3], 3: [3]}, [3]),
        ("leader and follower together: one output", {0: [0, 1, 2], 1: [2]}, [0, 1, 2]),
        ("follower alone after the leader stopped", {0: [0, 1, 2], 1: [3, 4, 5, 6]}, [0, 1, 2, 6]),
    ],
)
def test_maxpool_hand_built(backend, case, spikes, expected):
    """One 2x2 window (inputs 0..3 of a 1x2x2 map)."""
    T = 8
    x = _pool_raster(T, 4, spikes)
    r = snn.Network([snn.MaxPool2d((1, 2, 2), 2)]).run(x, backend=backend)
    out = r.spikes(0)[:, 0, 0]
    assert np.nonzero(out)[0].tolist() == expected, case
    assert r.counts[0].spikes.tolist() == [len(expected)]
    assert np.array_equal(maxpool_oracle(x, (1, 2, 2), 2)[0][:, 0, 0], out)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_maxpool_windows_and_channels_are_independent(backend):
    """2 channels x 2x2 windows (a 2x4x4 map): each output sees its own
    window only; the border row/column of a 2x5x5 map (5 // 2 = 2) is outside
    every window, as in torch (floor)."""
    T = 5
    x = np.zeros((T, 1, 2, 5, 5), np.uint8)
    x[:, 0, 0, 0, 0] = 1  # channel 0, window (0, 0): every step
    x[1, 0, 1, 3, 2] = 1  # channel 1, window (1, 1): step 1
    x[:, 0, :, 4, :] = 1  # last row: in no window
    x[:, 0, :, :, 4] = 1  # last column: in no window
    r = snn.Network([snn.MaxPool2d((2, 5, 5), 2)]).run(x.reshape(T, 1, -1), backend=backend)
    out = r.spikes(0).reshape(T, 2, 2, 2)
    assert out[:, 0, 0, 0].tolist() == [1] * T
    assert out[:, 1, 1, 1].tolist() == [0, 1, 0, 0, 0]
    assert out.sum() == T + 1


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_maxpool_overlapping_windows_hand_built(backend):
    """ResNet's stem pool, ``MaxPool2d(3, stride=2, padding=1)``, on a 1x4x4
    map: 2x2 outputs, window ``o = 2 oy + ox`` covering rows ``2 oy - 1 ..
    2 oy + 1`` and columns ``2 ox - 1 .. 2 ox + 1`` of the map (padding
    outside). Inputs: a = (1, 1) in windows 0, 1, 2, 3; b = (0, 1) in 0, 1;
    e = (0, 3) in 1; d = (3, 3) in 3. Counts after each step in brackets::

        t0: e [e1]        window 1: 1 > 0                    -> 1
        t1: e [e2]        window 1: 2 > 1                    -> 1
        t2: b [b1]        window 0: 1 > 0; window 1: 1 <= 2  -> 0
        t3: a, d [a1 d1]  a: w0 1 <= 1, w1 1 <= 2, w2 1 > 0,
                          w3 1 > 0; d: w3 1 <= 1             -> 2, 3
        t4: d [d2]        window 3: 2 > 1                    -> 3
        t5: b, e [b2 e3]  b: w0 2 > 1, w1 2 <= 2; e: w1 3 > 2 -> 0, 1

    Gate evaluations: e 3 x 1 + b 2 x 2 + a 1 x 4 + d 2 x 1 = 13."""
    a, b, e, d = 1 * 4 + 1, 0 * 4 + 1, 0 * 4 + 3, 3 * 4 + 3
    steps = [[e], [e], [b], [a, d], [d], [b, e]]
    x = np.zeros((len(steps), 1, 16), np.uint8)
    for t, inputs in enumerate(steps):
        x[t, 0, inputs] = 1
    pool = snn.MaxPool2d((1, 4, 4), 3, 2, 1)
    assert pool.out_shape == (1, 2, 2)
    r = snn.Network([pool]).run(x, backend=backend)
    got = [np.flatnonzero(row).tolist() for row in r.spikes(0)[:, 0]]
    assert got == [[1], [1], [0], [2, 3], [3], [0, 1]]
    assert r.counts[0].spikes.tolist() == [8]
    if backend == "event":
        assert r.counts[0].updates.tolist() == [13]
    assert np.array_equal(maxpool_oracle(x, (1, 4, 4), 3, 2, 1)[0], r.spikes(0))


@pytest.mark.usefixtures("warm_kernels")
@settings(max_examples=examples(60))
@given(
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    data=st.data(),
    T=st.integers(1, 25),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    p=st.sampled_from([0.05, 0.2, 0.5, 0.9, 1.0]),
)
def test_maxpool_event_matches_reference_and_rule(c, h, w, data, T, batch, seed, p):
    """Random spikes (per-input rates too, so that leaders exist) through
    random windows (overlapping, tiling, gapped, padded): event == reference
    == the plain-Python rule, bit for bit; the output shape is torch's; at
    most one output spike per step and window, counted once; output count of
    a window exactly the highest input count in it (torch's max pooling of
    the counts); no SynOps; one gate evaluation per (input spike, window
    containing it) on the event path."""
    kernel, stride, padding = data.draw(maxpool_windows((c, h, w)))
    rng = np.random.default_rng(seed)
    rates = rng.random(c * h * w) * p
    x = (rng.random((T, batch, c * h * w)) < rates).astype(np.uint8)
    pool = snn.MaxPool2d((c, h, w), kernel, stride, padding)
    counts_in = torch.as_tensor(x.reshape(T, batch, c, h, w).sum(axis=0), dtype=torch.float64)
    highest = F.max_pool2d(counts_in, kernel, stride, padding)
    assert pool.out_shape == tuple(highest.shape[1:])
    net = snn.Network([pool])
    r = net.run(x)
    ref = net.run(x, backend="reference")
    expected, checks = maxpool_oracle(x, (c, h, w), kernel, stride, padding)
    assert np.array_equal(ref.spikes(0), expected)
    assert np.array_equal(r.spikes(0), expected)
    assert r.membrane is None and ref.membrane is None
    events = r.trains[0].to_events()
    assert len(np.unique(events, axis=0)) == len(events) == expected.sum()  # once per step
    assert r.counts[0].spikes.tolist() == expected.reshape(T, batch, -1).sum(axis=(0, 2)).tolist()
    assert r.counts[0].synops.tolist() == [0] * batch == ref.counts[0].synops.tolist()
    assert r.counts[0].updates.tolist() == checks.tolist()
    out_counts = torch.as_tensor(expected.sum(axis=0).reshape(batch, *pool.out_shape), dtype=torch.float64)
    assert torch.equal(out_counts, highest)


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_maxpool_first_layer_refuses_analog_input(backend):
    """MaxPool2d has no neurons and gates spikes: analog input cannot enter
    it. Both backends must refuse it with a clear error (not an internal
    AttributeError, and not by treating analog values as spike counts)."""
    net = snn.Network([snn.MaxPool2d((1, 4, 4), 2), snn.Linear(4, 2, snn.IF(), seed=0)])
    with pytest.raises((ValueError, TypeError), match="(?i)maxpool|analog"):
        net.run(analog=np.full((2, 16), 0.5), T=3, backend=backend)


# ---------------------------------------------------------------------------
# construction errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=5), "larger than the input"),
        (dict(in_shape=(1, 3, 8), kernel_size=4), "larger than the input"),
        (dict(kernel_size=(2, 7), padding=(0, 1)), "larger than the input"),
        (dict(in_shape=(4, 4), kernel_size=2), "in_shape"),
        (dict(kernel_size=0), "kernel_size"),
        (dict(kernel_size=(2, 3, 1)), "kernel_size"),
        (dict(kernel_size=2, stride=0), "stride"),
        (dict(kernel_size=2, stride=(1, -1)), "stride"),
        (dict(kernel_size=2, stride=1.5), "stride"),
        (dict(kernel_size=3, padding=-1), "padding"),
        (dict(kernel_size=3, padding=2), "at most half the kernel"),
        (dict(kernel_size=(3, 2), padding=(1, 2)), "at most half the kernel"),
        (dict(kernel_size=2, padding="same"), "padding"),
        (dict(in_shape=(2**20, 2**10, 2**10), kernel_size=2), "input size"),
        (dict(in_shape=(2**63, 1, 1), kernel_size=1), "input size"),
    ],
)
def test_maxpool_errors(kwargs, match):
    kwargs = {"in_shape": (2, 4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        snn.MaxPool2d(kwargs.pop("in_shape"), kwargs.pop("kernel_size"), **kwargs)


@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=2),
        dict(kernel_size=2, stride=2),
        dict(kernel_size=(2, 3)),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0)),
        dict(kernel_size=2, stride=3),
        dict(kernel_size=5, padding=1),  # the kernel fits the padded 4x6 input only
    ],
)
def test_maxpool_geometry_is_torchs(args):
    """Output shape, stride default (the kernel) and stored window as
    ``torch.nn.MaxPool2d`` has them; a short repr naming the window."""
    pool = snn.MaxPool2d((3, 4, 6), **args)
    ref = torch.nn.MaxPool2d(**args)
    assert pool.out_shape == tuple(ref(torch.zeros(1, 3, 4, 6)).shape[1:])
    assert pool.n_out == int(np.prod(pool.out_shape)) and pool.n_in == 72
    assert pool.kernel_size == torch.nn.modules.utils._pair(ref.kernel_size)
    assert pool.stride == torch.nn.modules.utils._pair(ref.stride)
    assert pool.padding == torch.nn.modules.utils._pair(ref.padding)
    assert not pool.geom.flags.writeable
    assert repr(pool).startswith(f"MaxPool2d(3x4x6 -> {'x'.join(map(str, pool.out_shape))}, kernel ")


def test_maxpool_repr():
    assert repr(snn.MaxPool2d((64, 112, 112), 3, 2, 1)) == (
        "MaxPool2d(64x112x112 -> 64x56x56, kernel 3x3, stride 2x2, padding 1x1)"
    )
    assert repr(snn.MaxPool2d((1, 4, 6), 2)) == "MaxPool2d(1x4x6 -> 1x2x3, kernel 2x2, stride 2x2)"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(groups=2), "groups"),  # 3 input channels
        (dict(in_shape=(4, 6, 6), out_channels=3, groups=2), "groups"),
        (dict(groups=0), "groups"),
        (dict(groups=True), "groups"),
        (dict(kernel_size=7), "does not fit"),
        (dict(kernel_size=3, dilation=3), "does not fit"),
        (dict(kernel_size=(6, 7), padding=(0, 0)), "does not fit"),
        (dict(bias=np.zeros(5)), "bias"),
        (dict(bias=np.zeros((4, 1))), "bias"),
        (dict(weight=np.zeros((4, 3, 3, 2))), "weight must have shape"),
        (dict(weight=np.zeros((4, 3, 3))), "weight"),
        (dict(groups=3, weight=np.zeros((3, 3, 3, 3)), out_channels=3), "weight must have shape"),
        (dict(in_shape=(3, 6)), "in_shape"),
        (dict(in_shape=(3, 0, 6)), "in_shape"),
        (dict(stride=0), "stride"),
        (dict(padding=-1), "padding"),
        (dict(dilation=0), "dilation"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    ],
)
def test_conv_errors(kwargs, match):
    args = dict(in_shape=(3, 6, 6), out_channels=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        snn.Conv2d(args.pop("in_shape"), args.pop("out_channels"), args.pop("kernel_size"), snn.IF(), **args)


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: snn.MaxPool2d((1, 4, 4), 2.0), "kernel_size"),
        (lambda: snn.Conv2d((1, 6, 6), 2, 3.0, snn.IF()), "kernel_size"),
        (lambda: snn.Conv2d((1, 6, 6), 2, 3, snn.IF(), stride=1.5), "stride"),
        (lambda: snn.Conv2d((1, 6, 6), 2, 3, snn.IF(), padding=None), "padding"),
    ],
)
def test_non_integer_geometry_is_refused_by_name(make, name):
    """A float (or None) where an int or a pair of ints is expected: refused
    with a message that names the parameter (``_pair``'s own message), not
    Python's "'float' object is not iterable"."""
    with pytest.raises((TypeError, ValueError), match=name):
        make()


def test_conv_layers_must_chain():
    conv = snn.Conv2d((1, 6, 6), 2, 3, snn.IF(), seed=0)  # 2x4x4 = 32 outputs
    with pytest.raises(ValueError, match="do not chain"):
        snn.Network([conv, snn.MaxPool2d((2, 6, 6), 2)])
    snn.Network([conv, snn.MaxPool2d((2, 4, 4), 2), snn.Flatten(), snn.Linear(8, 3, snn.IF(), seed=0)])
