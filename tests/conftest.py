"""Shared helpers of the test suite: hypothesis strategies that describe small
random networks and their input, builders that turn a description into a
:class:`snn.Network`, and the event-vs-reference comparison with the
tolerance rule stated in ``tests/test_equivalence.py``.

A network description (:class:`NetSpec`) keeps every weight as a dense
``[n_out, n_in]`` float32 matrix (zeros = absent synapses for sparse layers),
so tests can count fan-outs independently of the library's CSR structures.

Hypothesis profiles (``PROFILES``): ``ci`` (derandomized: a failure
reproduces; the default when the environment sets ``CI``), ``dev`` (the
default otherwise: new examples every run), ``nightly`` (ten times the
examples, for a long bug hunt), ``bounds`` (a quarter of ``ci``'s examples,
for the bounds-check leg of ``.ci/run``) and ``nojit`` (a handful of
examples, for the pure-Python leg of ``test_nojit.py``), chosen with the environment variable
``SNN_HYPOTHESIS_PROFILE``. Tests that set their own example count pass it
through :func:`examples`, which scales it by the profile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import snn
from snn.run.reference import run_reference

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
# name: (settings, how many times each test's own example count)
PROFILES = {
    # CI: the same examples every run, so a failure reproduces from its log
    "ci": (dict(derandomize=True, database=None, max_examples=80, suppress_health_check=_QUIET), 1.0),
    # local work (the default outside CI): new examples each run, failures remembered
    "dev": (dict(max_examples=80, suppress_health_check=_QUIET), 1.0),
    # a long bug hunt (by hand or nightly): ten times the examples
    "nightly": (dict(database=None, max_examples=800, suppress_health_check=_QUIET), 10.0),
    # .ci/run's bounds-check leg: every kernel compiled again (with index checks), for each new
    # specialisation a random network asks for, was most of its time (26-29 min of a 62-min CI
    # run on a slow VM at 80 examples): a quarter of the examples
    "bounds": (dict(derandomize=True, database=None, max_examples=20, suppress_health_check=_QUIET), 0.25),
    # the pure-Python leg of test_nojit.py: a handful of examples
    "nojit": (
        dict(derandomize=True, database=None, max_examples=25, suppress_health_check=list(HealthCheck)),
        0.4,
    ),
}
for _name, (_kwargs, _) in PROFILES.items():
    settings.register_profile(_name, deadline=None, print_blob=True, **_kwargs)
PROFILE = os.environ.get("SNN_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """A test's own example count ``n``, scaled by the profile (``nightly``
    runs ten times as many)."""
    return max(1, round(n * PROFILES[PROFILE][1]))


# A test is slow when it trains a model (through one of these fixtures), or
# runs the notebooks, the examples, the benchmark scripts, a Dask cluster or the
# pure-Python kernels:
# ``pytest -m "not slow"`` is the quick loop.
TRAINING_FIXTURES = {"trained", "converted", "qcfs_cnn", "converted_qcfs", "graph_trained", "graph_converted"}
SLOW_MODULES = {
    "test_examples.py",
    "test_notebooks.py",
    "test_distributed.py",
    "test_nojit.py",
    "test_benchmarks.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in SLOW_MODULES or TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


NOJIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")

# Tolerances of the near-threshold rule, relative to a per-layer magnitude scale
# (see test_equivalence.py for the justification).
TOL = {np.float64: 1e-9, np.float32: 1e-4}


# ---------------------------------------------------------------------------
# Descriptions of networks and inputs
# ---------------------------------------------------------------------------


@dataclass
class LayerSpec:
    kind: str  # "dense" (Linear), "sparse" (from_dense), "coo", "random"
    W: np.ndarray  # [n_out, n_in] float32; zeros are absent synapses unless kind == "dense"
    neuron: snn.Neuron
    bias: object = 0.0  # scalar or [n_out]
    v_init: object = 0.0  # scalar or [n_out]
    seed: int = 0  # for kind == "random"
    p: float = 1.0  # for kind == "random"
    wscale: float = 1.0  # for kind == "random": weights drawn uniform(-wscale/2, wscale)
    grid: float | None = None  # for kind == "random": weights rounded to multiples of grid

    @property
    def n_out(self) -> int:
        return self.W.shape[0]

    @property
    def n_in(self) -> int:
        return self.W.shape[1]


@dataclass
class NetSpec:
    layers: list
    dtype: type = np.float64
    T: int = 10
    batch: int = 1
    input_kind: str = "spikes"  # "spikes", "analog_const", "analog_tv"
    x: np.ndarray = field(default=None, repr=False)

    def __repr__(self):
        parts = [
            f"dtype={np.dtype(self.dtype).name}",
            f"T={self.T}",
            f"batch={self.batch}",
            f"input={self.input_kind}",
        ]
        for k, L in enumerate(self.layers):
            parts.append(
                f"L{k}={L.kind}({L.n_in}->{L.n_out}, {L.neuron!r}, "
                f"bias={_short(L.bias)}, v_init={_short(L.v_init)})"
            )
        return "NetSpec(" + ", ".join(parts) + ")"


def _short(value):
    arr = np.asarray(value)
    if arr.ndim == 0:
        return f"{float(arr):.4g}"
    return f"[{arr.min():.3g}..{arr.max():.3g}]"


def build_layer(spec: LayerSpec, mode: str = "auto"):
    common = dict(bias=spec.bias, v_init=spec.v_init, mode=mode)
    if spec.kind == "dense":
        return snn.Linear(spec.n_in, spec.n_out, spec.neuron, weight=spec.W, **common)
    if spec.kind == "sparse":
        return snn.SparseLinear.from_dense(spec.W, spec.neuron, **common)
    if spec.kind == "coo":
        post, pre = np.nonzero(spec.W)
        order = np.random.default_rng(spec.seed).permutation(len(pre))  # any order is allowed
        return snn.SparseLinear.from_coo(
            spec.n_in,
            spec.n_out,
            pre[order],
            post[order],
            spec.W[post[order], pre[order]],
            spec.neuron,
            **common,
        )
    if spec.kind == "random":
        scale, grid = spec.wscale, spec.grid
        return snn.SparseLinear.random(
            spec.n_in,
            spec.n_out,
            spec.p,
            weight=lambda rng, n: _quantize(rng.uniform(-scale / 2, scale, n), grid),
            neuron=spec.neuron,
            seed=spec.seed,
            **common,
        )
    raise AssertionError(spec.kind)


def dense_weight(layer) -> np.ndarray:
    """``[n_out, n_in]`` of a built layer (for ``random`` layers, whose
    weights are drawn by the library)."""
    if isinstance(layer, snn.Linear):
        return layer.weight
    return layer.dense_rows().T.copy()


def build_network(spec: NetSpec, mode: str = "auto") -> snn.Network:
    return snn.Network([build_layer(L, mode) for L in spec.layers], dtype=spec.dtype)


def run_kwargs(spec: NetSpec) -> dict:
    if spec.input_kind == "spikes":
        return dict(spikes=spec.x)
    if spec.input_kind == "analog_const":
        return dict(analog=spec.x, T=spec.T)
    return dict(analog=spec.x)


def reference_with_traces(net: snn.Network, spec: NetSpec):
    if spec.input_kind == "spikes":
        return run_reference(net, snn.SpikeTrains.from_raster(spec.x), None, spec.T, record_v=True)
    return run_reference(net, None, np.asarray(spec.x, np.float64), spec.T, record_v=True)


# ---------------------------------------------------------------------------
# Hypothesis strategies
# ---------------------------------------------------------------------------

GRIDS = (None, 0.125, 0.1)  # continuous weights, dyadic grid, decimal grid (near-ties)


def _quantize(a, grid):
    return a if grid is None else np.round(a / grid) * grid


@st.composite
def neurons(draw, exact: bool = False):
    """A neuron model. ``exact``: beta = 1 and dyadic threshold / v_reset."""
    if exact:
        threshold = draw(st.integers(1, 32)) / 8
    else:
        threshold = draw(
            st.one_of(st.sampled_from([1.0, 0.5, 0.3, 2.0]), st.floats(0.05, 4.0, allow_nan=False))
        )
    reset = draw(st.sampled_from(["subtract", "zero", "value", "none"]))
    v_reset = 0.0
    if reset == "value":
        if exact:
            v_reset = draw(st.integers(-16, int(threshold * 8) - 1)) / 8
        else:
            v_reset = draw(st.floats(-2.0, threshold * 0.99, allow_nan=False))
    refractory = draw(st.integers(0, 3))
    kw = dict(threshold=threshold, reset=reset, v_reset=v_reset, refractory=refractory)
    if exact:
        return snn.IF(**kw)
    model = draw(st.sampled_from(["IF", "LIF", "LIF_tau", "CubaLIF", "CubaLIF_tau"]))
    unit = st.one_of(
        st.sampled_from([1.0, 0.5, 0.9, 0.99]), st.floats(0.0, 1.0, exclude_min=True, allow_nan=False)
    )
    if model == "IF":
        return snn.IF(**kw)
    if model == "LIF":
        return snn.LIF(beta=draw(unit), **kw)
    if model == "LIF_tau":
        return snn.LIF(tau_mem=draw(st.floats(0.5, 50.0)), dt=draw(st.sampled_from([0.5, 1.0])), **kw)
    if model == "CubaLIF":
        alpha = draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0, allow_nan=False)))
        return snn.CubaLIF(beta=draw(unit), alpha=alpha, **kw)
    return snn.CubaLIF(tau_mem=draw(st.floats(0.5, 50.0)), tau_syn=draw(st.floats(0.5, 20.0)), **kw)


@st.composite
def per_neuron(draw, rng, n, lo, hi, grid):
    """A scalar or an ``[n]`` array in ``[lo, hi]`` (both signs when lo < 0)."""
    if draw(st.booleans()):
        value = draw(st.one_of(st.just(0.0), st.floats(lo, hi, allow_nan=False)))
        return float(_quantize(np.float64(value), grid))
    return _quantize(rng.uniform(lo, hi, n), grid)


# Pure-Python kernels (NUMBA_DISABLE_JIT=1) are ~1000x slower: tiny networks there.
MAX_SIZE, MAX_T = (8, 12) if NOJIT else (40, 40)


@st.composite
def net_specs(
    draw,
    exact: bool = False,
    input_kinds=("spikes", "analog_const", "analog_tv"),
    max_size: int | None = None,
    max_T: int | None = None,
    max_batch: int = 3,
    max_layers: int = 3,
    dtypes=(np.float64, np.float32),
    kinds=("dense", "sparse", "coo", "random"),
):
    """A random small network and its input: 1-3 layers of 1-40 neurons,
    T in 1-40, batch 1-3 (smaller with NUMBA_DISABLE_JIT=1).

    ``exact``: IF neurons only, weights multiples of 1/8 in [-2, 2], dyadic
    bias / v_init / threshold / v_reset and analog input: every sum the
    simulator forms is exactly representable, in float32 as in float64.
    """
    max_size = min(max_size or MAX_SIZE, MAX_SIZE)
    max_T = min(max_T or MAX_T, MAX_T)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(dtypes))
    n_layers = draw(st.integers(1, max_layers))
    sizes = [draw(st.integers(1, max_size)) for _ in range(n_layers + 1)]
    T = draw(st.integers(1, max_T))
    batch = draw(st.integers(1, max_batch))
    grid = 0.125 if exact else draw(st.sampled_from(GRIDS))
    layers = []
    for k in range(n_layers):
        n_in, n_out = sizes[k], sizes[k + 1]
        neuron = draw(neurons(exact=exact))
        thr = neuron.threshold
        kind = draw(st.sampled_from(kinds))
        density = 1.0 if kind == "dense" else draw(st.floats(0.0, 1.0))
        gain = draw(st.floats(0.1, 3.0))  # total positive drive relative to threshold
        neg = draw(st.floats(0.0, 1.0))  # share of the range that is inhibitory
        if exact:
            W = rng.integers(-16, 17, (n_out, n_in)) / 8
        else:
            W = rng.uniform(-neg, 1.0, (n_out, n_in)) * thr * gain / max(1.0, np.sqrt(density * n_in))
            W = _quantize(W, grid)
        if kind != "dense":
            W = W * (rng.random(W.shape) < density)
        W = W.astype(np.float32)
        bias = draw(per_neuron(rng, n_out, -0.5 * thr, 0.5 * thr, grid if not exact else 0.125))
        if exact:
            bias = np.clip(bias, -1.0, 1.0) if np.ndim(bias) else float(np.clip(bias, -1.0, 1.0))
        v_init = draw(per_neuron(rng, n_out, -thr, 1.5 * thr, grid if not exact else 0.125))
        layers.append(
            LayerSpec(
                kind=kind,
                W=W,
                neuron=neuron,
                bias=bias,
                v_init=v_init,
                seed=int(rng.integers(2**31)),
                p=density,
                wscale=2.0 if exact else float(thr * gain),
                grid=grid,
            )
        )
    input_kind = draw(st.sampled_from(input_kinds))
    n_in = sizes[0]
    if input_kind == "spikes":
        p = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]) | st.floats(0.0, 1.0))
        x = (rng.random((T, batch, n_in)) < p).astype(np.uint8)
    else:
        shape = (batch, n_in) if input_kind == "analog_const" else (T, batch, n_in)
        if exact:
            x = rng.integers(-8, 9, shape) / 8
        else:
            x = _quantize(rng.uniform(-0.5, 1.5, shape), grid)
        x = x * (rng.random(shape) < draw(st.floats(0.0, 1.0)))  # some exact zeros
    return NetSpec(layers=layers, dtype=dtype, T=T, batch=batch, input_kind=input_kind, x=x)


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------


def layer_scales(net: snn.Network, spec: NetSpec, traces, b: int) -> list[float]:
    """Magnitude scale of each layer's arithmetic in sample ``b``: threshold
    + largest membrane seen + largest one-step input (bias + the sum of
    |weights| times the largest input value) [+ largest current, CubaLIF].
    An infinite threshold (membrane readout) counts as 0; a MaxPool2d layer
    (integer counts, exact) gets scale 0."""
    scales = []
    for k, layer in enumerate(net.layers):
        if layer.kind == "maxpool":  # integer spike counts: exact, no tolerance
            scales.append(0.0)
            continue
        W = np.abs(dense_weight(layer).astype(np.float64))
        in_max = 1.0 if (k > 0 or spec.input_kind == "spikes") else float(np.abs(spec.x).max(initial=0))
        step_in = float(np.abs(layer.bias).max() + W.sum(axis=1).max() * in_max)
        nrn = layer.neuron
        thr = nrn.threshold if np.isfinite(nrn.threshold) else 0.0  # membrane readout (never fires)
        s = (
            thr
            + float(np.abs(traces[k][:, b]).max(initial=0))
            + abs(nrn.v_reset)
            + float(np.abs(layer.v_init).max())
            + step_in
        )
        if nrn.has_current:
            s += step_in * min(spec.T, 1.0 / max(1e-12, 1.0 - nrn.alpha))
        scales.append(s)
    return scales


def first_divergence(ref_rasters, rasters, b):
    """First ``(t, layer)`` in causal order (step, then layer) at which the
    spikes of sample ``b`` differ, or None."""
    T = ref_rasters[0].shape[0]
    for t in range(T):
        for k in range(len(rasters)):
            if not np.array_equal(ref_rasters[k][t, b], rasters[k][t, b]):
                return t, k
    return None


def assert_equivalent(net: snn.Network, spec: NetSpec, result, ref, traces, label=""):
    """The tolerance rule of test_equivalence.py, sample by sample; when no
    spike differs, the final membranes agree within the same tolerance."""
    tol = TOL[net.dtype]
    ref_rasters = [ref.spikes(k) for k in range(len(net.layers))]
    rasters = [result.spikes(k) for k in range(len(net.layers))]
    for k in range(len(net.layers)):
        assert rasters[k].shape == ref_rasters[k].shape, (label, k)
        assert rasters[k].dtype == np.uint8
    for b in range(spec.batch):
        scales = layer_scales(net, spec, traces, b)
        where = first_divergence(ref_rasters, rasters, b)
        if where is None:
            if net.layers[-1].kind == "maxpool":  # no membrane; identical spikes are all there is
                continue
            nrn = net.layers[-1].neuron
            diff = np.abs(result.membrane[b].astype(np.float64) - ref.membrane[b])
            assert np.all(diff <= tol * scales[-1]), (
                f"{label}: sample {b}: identical spikes but final membranes differ by "
                f"{diff.max():.3g} > {tol * scales[-1]:.3g} ({nrn!r})"
            )
            continue
        t, k = where
        assert net.layers[k].kind != "maxpool", (
            f"{label}: sample {b}: max pooling layer {k} differs at step {t} although its input "
            "spikes agree up to that step (the gate works on integer counts: no tolerance)"
        )
        thr = net.layers[k].neuron.threshold
        bad = np.nonzero(ref_rasters[k][t, b] != rasters[k][t, b])[0]
        v = traces[k][t, b, bad].astype(np.float64)
        dist = np.abs(v - thr)
        ok = dist <= tol * scales[k]
        assert np.all(ok), (
            f"{label}: sample {b}: first divergence at step {t}, layer {k}: neurons {bad.tolist()} "
            f"reference spike {ref_rasters[k][t, b, bad].tolist()}, event spike "
            f"{rasters[k][t, b, bad].tolist()}, reference membrane {v.tolist()} vs threshold {thr!r}: "
            f"distance {dist.max():.3g} > tolerance {tol * scales[k]:.3g}"
        )


def conv_fan_out(
    in_shape, out_channels, kernel_size, *, stride=1, padding=0, dilation=1, groups=1
) -> np.ndarray:
    """Targets reached by each input neuron of a Conv2d geometry, counted
    independently of the library: torch's conv2d applied to every one-hot
    input with an all-ones kernel; an output is reached iff it is non-zero
    (exact: the sums are small integers). Padded borders reach fewer."""
    import torch  # lazily: the simulator's own tests run without torch
    import torch.nn.functional as F

    c, h, w = in_shape
    n = c * h * w
    onehot = torch.eye(n, dtype=torch.float64).reshape(n, c, h, w)
    kh, kw = (int(k) for k in np.broadcast_to(kernel_size, (2,)))
    ones = torch.ones(out_channels, c // groups, kh, kw, dtype=torch.float64)
    out = F.conv2d(onehot, ones, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (out != 0).reshape(n, -1).sum(dim=1).numpy().astype(np.int64)


def layer_fan_out(layer) -> np.ndarray:
    """Independent fan-out of a built snn layer: torch one-hot count for
    Conv2d / AvgPool2d (from the layer's public geometry), ``n_out`` for a
    dense Linear (every stored weight is added), 0 for MaxPool2d (a gate,
    no accumulate)."""
    if layer.kind == "maxpool":
        return np.zeros(layer.n_in, np.int64)
    if layer.kind == "conv":
        g = layer.geom  # [c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups]
        return conv_fan_out(
            layer.in_shape,
            layer.out_shape[0],
            (int(g[6]), int(g[7])),
            stride=(int(g[8]), int(g[9])),
            padding=(int(g[10]), int(g[11])),
            dilation=(int(g[12]), int(g[13])),
            groups=int(g[14]),
        )
    if isinstance(layer, snn.Linear):
        return np.full(layer.n_in, layer.n_out, np.int64)
    return np.count_nonzero(dense_weight(layer), axis=0).astype(np.int64)


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile (or load) the kernels once per worker."""
    net = snn.Network([snn.Linear(2, 2, snn.LIF(beta=0.9), seed=0)])
    net.prepare()
    return True
