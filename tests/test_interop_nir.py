"""NIR export/import (``snn.to_nir`` / ``snn.from_nir``).

Agreement rules:

- ours -> NIR -> ours is exact: equal layers, neuron parameters, weights,
  biases, and identical spike trains and final membranes on both backends.
- A hand-built NIR graph follows the forward-Euler discretisation of
  ``snn.interop.nir``; a numpy loop of that discretisation (float64, fire on
  ``v > v_threshold``) is the reference. With gain 1 and dyadic numbers the
  spikes are compared exactly, membranes landing exactly on the threshold
  included; with a gain != 1 the reference first asserts that no membrane
  comes within ``MARGIN = 1e-9`` of threshold (our rescaled state differs by
  rounding, ~1e-15).
- snnTorch's own NIR export (needs ``nirtorch``) run by snnTorch (float32)
  and by us: identical spike trains; the NIR parameters are float32-rounded
  (beta recovered to ~1e-7), so the test asserts snnTorch's pre-fire
  membranes stay ``MARGIN_ST = 1e-4`` away from threshold first.
- Graphs (recurrent, delayed, branching; ``snn.interop.nir_graph``): ours ->
  NIR (-> file) -> ours gives equal populations, neurons, biases, synapse
  counts, Poisson sources and identical spike trains on both backends (same
  seed); a hand-built graph with Delay nodes and a Delay-free self-loop is
  compared exactly with a numpy loop of the Euler steps (dyadic, gain 1);
  snnTorch's export of an ``RLeaky`` as above (float32, ``MARGIN_ST``).
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import snn
from snn.interop.nir import NIRExportError, NIRExportWarning, NIRImportError

MARGIN = 1e-9
MARGIN_ST = 1e-4
T = 30


def _spikes(rng, n, p=0.3, batch=3, steps=T):
    return (rng.random((steps, batch, n)) < p).astype(np.uint8)


def _export(net, dt=1.0, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRExportWarning)
        return snn.to_nir(net, dt=dt, **kwargs)


def _assert_same_network(a: snn.Network, b: snn.Network):
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        assert la.neuron == lb.neuron and la.neuron.name == lb.neuron.name
        assert np.array_equal(la.dense_rows(), lb.dense_rows())
        assert np.array_equal(la.bias, lb.bias) and np.array_equal(la.v_init, lb.v_init)
        assert (la.mode, la.name) == (lb.mode, lb.name)
        if isinstance(la, snn.Conv2d):
            assert np.array_equal(la.geom, lb.geom)


def _assert_same_runs(a: snn.Network, b: snn.Network, x):
    for backend in ("event", "reference"):
        ra, rb = a.run(x, backend=backend), b.run(x, backend=backend)
        for k in range(len(a.layers)):
            assert np.array_equal(ra.spikes(k), rb.spikes(k)), (backend, k)
        if ra.membrane is not None:
            assert np.array_equal(ra.membrane, rb.membrane)


# -- round trips ----------------------------------------------------------------------------------


def _stacks():
    rng = np.random.default_rng(0)
    yield (
        "linear-lif-if",
        snn.Network(
            [
                snn.Linear(12, 8, snn.LIF(beta=0.85, threshold=0.6), seed=1, bias=rng.normal(0, 0.05, 8)),
                snn.Linear(8, 4, snn.IF(threshold=0.8, reset="zero"), seed=2, mode="event", name="out"),
            ]
        ),
    )
    yield (
        "cubalif-value-refractory-vinit",
        snn.Network(
            [
                snn.Linear(
                    12,
                    6,
                    snn.CubaLIF(0.9, 0.6, threshold=0.7, reset="value", v_reset=-0.2, refractory=2),
                    seed=3,
                    bias=0.02,
                    v_init=rng.uniform(0, 0.5, 6),
                ),
                snn.SparseLinear.random(
                    6, 5, 0.5, weight=0.7, neuron=snn.LIF(beta=0.5, reset="zero"), seed=4
                ),
            ]
        ),
    )
    yield (
        "conv-pool-linear",
        snn.Network(
            [
                snn.Conv2d(
                    (2, 8, 8),
                    4,
                    3,
                    snn.LIF(beta=0.8),
                    stride=1,
                    padding=2,
                    dilation=2,
                    groups=2,
                    seed=5,
                    bias=np.array([0.1, 0.0, -0.05, 0.2]),
                ),
                snn.AvgPool2d((4, 8, 8), 2, neuron=snn.IF(threshold=0.5)),
                snn.Conv2d((4, 4, 4), 4, (2, 3), snn.IF(), stride=(2, 1), padding=(0, 1), seed=6),
                snn.Linear(32, 3, snn.LIF(beta=0.9), seed=7),
            ]
        ),
    )
    yield (
        "pool-with-bias-readout",
        snn.Network(
            [
                snn.AvgPool2d((1, 6, 6), 3, neuron=snn.IF(), bias=0.1),
                snn.Linear(4, 2, snn.LIF(beta=0.7, threshold=float("inf")), seed=8),
            ]
        ),
    )


@pytest.mark.parametrize("name,net", list(_stacks()), ids=[n for n, _ in _stacks()])
def test_round_trip_exact(name, net):
    graph = _export(net, dt=1e-3)
    back = snn.from_nir(graph)  # dt from the graph's metadata
    _assert_same_network(net, back)
    _assert_same_runs(net, back, _spikes(np.random.default_rng(1), net.n_in))


def test_round_trip_through_file(tmp_path):
    _, net = next(iter(_stacks()))
    path = tmp_path / "net.nir"
    nir.write(path, _export(net, dt=0.5))
    back = snn.from_nir(nir.read(path))
    _assert_same_network(net, back)
    _assert_same_runs(net, back, _spikes(np.random.default_rng(2), net.n_in))
    conv = list(_stacks())[2][1]
    nir.write(path, _export(conv))
    # type_check=False: nir 1.0.8 mis-derives the types of grouped and non-square convolutions on read
    back = snn.from_nir(nir.read(path, type_check=False))
    _assert_same_network(conv, back)
    _assert_same_runs(conv, back, _spikes(np.random.default_rng(3), conv.n_in))


def test_exported_parameters_follow_the_stated_discretisation():
    net = snn.Network(
        [
            snn.Linear(3, 2, snn.LIF(beta=0.75, reset="zero"), bias=0.1, seed=0),
            snn.Linear(2, 2, snn.CubaLIF(0.5, 0.8, reset="zero"), seed=0),
            snn.Linear(2, 1, snn.IF(reset="value", v_reset=-1.0), seed=0),
        ]
    )
    g = snn.to_nir(net, dt=2.0)
    lif, cuba, if_ = g.nodes["0.lif"], g.nodes["1.cubalif"], g.nodes["2.if"]
    assert np.allclose(lif.tau, 8.0) and np.allclose(1 - 2.0 / lif.tau, 0.75)
    assert np.allclose(2.0 * lif.r / lif.tau, 1.0) and np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    assert np.allclose(cuba.tau_mem, 4.0) and np.allclose(cuba.tau_syn, 10.0)
    assert np.allclose(2.0 * cuba.w_in / cuba.tau_syn, 1.0) and np.allclose(2.0 * cuba.r / cuba.tau_mem, 1.0)
    assert np.allclose(if_.r, 0.5) and np.all(if_.v_reset == -1.0)
    assert np.array_equal(g.nodes["0.affine"].bias, np.full(2, 0.1))
    assert isinstance(g.nodes["1.linear"], nir.Linear)
    # without our metadata the same graph imports to the same network (up to the ">" nudge)
    for node in g.nodes.values():
        node.metadata = {}
    plain = snn.from_nir(g, dt=2.0)
    for la, lb in zip(net.layers, plain.layers):
        assert lb.neuron.beta == pytest.approx(la.neuron.beta, rel=1e-15)
        assert lb.neuron.threshold == np.nextafter(la.neuron.threshold, np.inf)


# -- export refusals and warnings -------------------------------------------------------------------


def test_subtract_reset_warns_with_the_difference_and_records_it():
    net = snn.Network([snn.Linear(4, 3, snn.LIF(beta=0.9), seed=0)])
    with pytest.warns(NIRExportWarning, match=r"reset by subtraction .* Tools ignoring it reset to 0"):
        g = snn.to_nir(net)
    meta = g.nodes["0.lif"].metadata
    assert meta["snn.reset"] == "subtract" and "subtraction" in meta["snn.differences"]
    with pytest.raises(NIRExportError, match="layer 0 .*subtraction"):
        snn.to_nir(net, on_unsupported="raise")


def test_refractory_and_v_init_warn():
    net = snn.Network([snn.Linear(4, 3, snn.LIF(beta=0.9, reset="zero", refractory=3), v_init=0.2, seed=0)])
    with pytest.warns(NIRExportWarning) as record:
        snn.to_nir(net)
    text = " ".join(str(w.message) for w in record)
    assert "refractory period of 3 steps" in text and "v_init" in text


@pytest.mark.parametrize(
    "layers,match",
    [
        (lambda: [snn.MaxPool2d((1, 4, 4), 2), snn.Linear(4, 2, snn.IF(reset="zero"), seed=0)], "MaxPool2d"),
        (lambda: [snn.Linear(4, 2, snn.CubaLIF(1.0, 0.5, reset="zero"), seed=0)], "CubaLIF with beta=1"),
        (lambda: [snn.Conv2d((1, 3, 3), 1, 2, snn.IF(reset="zero"), seed=0)], "varying within a channel"),
    ],
)
def test_export_refuses_what_nir_cannot_express(layers, match):
    net = snn.Network(layers())
    if isinstance(net.layers[-1], snn.Conv2d):  # per-position bias, set directly
        net.layers[-1].bias = np.arange(4.0)
    with pytest.raises(NIRExportError, match=match):
        snn.to_nir(net)


def test_stale_metadata_is_ignored_with_a_warning():
    net = snn.Network([snn.Linear(4, 3, snn.LIF(beta=0.9, reset="zero"), seed=0)])
    g = snn.to_nir(net)
    g.nodes["0.lif"].v_threshold = np.full(3, 2.0)
    with pytest.warns(UserWarning, match="metadata does not match"):
        back = snn.from_nir(g)
    assert back.layers[0].neuron.threshold == np.nextafter(2.0, np.inf)


# -- hand-built graphs against a numpy reference of the discretisation --------------------------


def _euler_reference(x, layers, dt):
    """Forward Euler of NIR LIF / CubaLIF nodes, float64, fire on v > v_threshold, reset to v_reset.
    ``layers``: list of (W, b, params). Returns spikes per layer and the smallest |v - thr|."""
    h, margin, out = x.astype(np.float64), np.inf, []
    for w, b, p in layers:
        current = h @ w.T + b  # [T, B, n]
        v = np.zeros(current.shape[1:])
        i = np.zeros_like(v)
        spikes = np.zeros_like(current)
        for t in range(current.shape[0]):
            if "tau_syn" in p:
                i = i + dt / p["tau_syn"] * (-i + p["w_in"] * current[t])
                v = v + dt / p["tau_mem"] * (p["v_leak"] - v + p["r"] * i)
            else:
                v = v + dt / p["tau"] * (p["v_leak"] - v + p["r"] * current[t])
            margin = min(margin, float(np.abs(v - p["v_threshold"]).min()))
            spikes[t] = v > p["v_threshold"]
            v = np.where(spikes[t] > 0, p["v_reset"], v)
        out.append(spikes)
        h = spikes
    return out, margin


def _lif(n, **p):
    return {k: np.full(n, float(v)) for k, v in p.items()}


def _graph(layers):
    nodes, chain = {"input": nir.Input(input_type=np.array([layers[0][0].shape[1]]))}, ["input"]
    for k, (w, b, p) in enumerate(layers):
        nodes[f"fc{k}"] = nir.Affine(weight=w, bias=b)
        kind = nir.CubaLIF if "tau_syn" in p else nir.LIF
        nodes[f"lif{k}"] = kind(**p)
        chain += [f"fc{k}", f"lif{k}"]
    nodes["output"] = nir.Output(output_type=np.array([layers[-1][0].shape[0]]))
    chain.append("output")
    return nir.NIRGraph(nodes=nodes, edges=list(itertools.pairwise(chain)))


def test_hand_built_graph_gain_one_exact():
    """Layer 1: tau = r = dt = 1 (beta = 0, gain 1, v = input each step) with quarter weights, so
    membranes land exactly on the threshold, where NIR's ``v > v_threshold`` must not fire; layer 2:
    tau = r = 2 (beta = 0.5, gain 1) with a leak voltage and a reset value."""
    rng = np.random.default_rng(3)
    w1 = rng.integers(-2, 5, (6, 10)) / 4.0
    w2 = rng.integers(-2, 5, (3, 6)) / 4.0
    layers = [
        (w1, np.zeros(6), _lif(6, tau=1, r=1, v_leak=0, v_threshold=1.0, v_reset=0)),
        (w2, np.zeros(3), _lif(3, tau=2, r=2, v_leak=0.5, v_threshold=0.75, v_reset=-0.25)),
    ]
    x = _spikes(rng, 10, p=0.4)
    ref, margin = _euler_reference(x, layers, dt=1.0)
    assert margin == 0.0  # ties happen: the test exercises ">"
    net = snn.from_nir(_graph(layers), dt=1.0)
    for backend in ("reference", "event"):
        result = net.run(x, backend=backend)
        for k in range(2):
            assert np.array_equal(result.spikes(k), ref[k]), (backend, k)


def test_hand_built_graph_with_gain_and_current():
    """Gains != 1 (r, w_in not tau/dt), a leak voltage and a CubaLIF layer."""
    rng = np.random.default_rng(4)
    dt = 0.5
    layers = [
        (
            rng.normal(0, 1.0, (8, 10)),
            rng.normal(0, 0.1, 8),
            _lif(8, tau=5, r=3, v_leak=0.2, v_threshold=0.9, v_reset=0.1),
        ),
        (
            rng.normal(0, 1.0, (4, 8)),
            np.full(4, 0.05),
            _lif(4, tau_syn=2, tau_mem=4, r=5, v_leak=0, w_in=1.5, v_threshold=0.6, v_reset=0),
        ),
    ]
    x = _spikes(rng, 10)
    ref, margin = _euler_reference(x, layers, dt)
    assert margin > MARGIN
    assert sum(s.sum() for s in ref) > 20  # the test sees spikes
    net = snn.from_nir(_graph(layers), dt=dt)
    for backend in ("reference", "event"):
        result = net.run(x, backend=backend)
        for k in range(2):
            assert np.array_equal(result.spikes(k), ref[k]), (backend, k)


def test_membrane_readout_in_node_units():
    rng = np.random.default_rng(5)
    w = rng.normal(0, 1, (3, 5))
    nodes = {
        "in": nir.Input(input_type=np.array([5])),
        "fc": nir.Linear(weight=w),
        "li": nir.LI(tau=np.full(3, 4.0), r=np.full(3, 2.0), v_leak=np.zeros(3)),
        "out": nir.Output(output_type=np.array([3])),
    }
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "li"), ("li", "out")])
    x = _spikes(rng, 5, batch=2, steps=10)
    v = np.zeros((2, 3))
    for t in range(10):
        v = v + 1.0 / 4.0 * (-v + 2.0 * (x[t] @ w.T))
    result = snn.from_nir(g, dt=1.0).run(x, backend="reference")
    assert result.spikes(0).sum() == 0
    np.testing.assert_allclose(result.membrane, v, rtol=1e-6)  # weights stored as float32


# -- snnTorch's export ------------------------------------------------------------------------------


def test_snntorch_export_imports_with_matching_spikes():
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("snntorch")
    from snntorch import utils

    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    # per-neuron parameter tensors: snnTorch's export of scalar ones fails nir's type check
    lif1 = st.Leaky(
        beta=torch.full((16,), 0.8),
        threshold=torch.ones(16),
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    lif2 = st.Leaky(
        beta=torch.full((4,), 0.9),
        threshold=torch.full((4,), 0.5),
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
        output=True,
    )
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), lif1, torch.nn.Linear(16, 4), lif2)
    graph = export_to_nir(model, torch.zeros(1, 10), ignore_dims=[0])
    net = snn.from_nir(graph, dt=1e-4)
    x = _spikes(np.random.default_rng(6), 10, p=0.4, batch=4, steps=40)
    utils.reset(model)
    out, margin = [[], []], np.inf
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.as_tensor(x[t], dtype=torch.float32)
            for k, (fc, lif) in enumerate(((model[0], lif1), (model[2], lif2))):
                cur = fc(h)
                pre = lif.beta * lif.mem + cur if lif.mem.shape == cur.shape else cur
                margin = min(margin, float((pre - lif.threshold).abs().min()))
                h = lif(cur)
                h = h[0] if isinstance(h, tuple) else h
                out[k].append(h.numpy())
    assert margin > MARGIN_ST
    result = net.run(x)
    for k in range(2):
        ours = result.spikes(k)
        assert ours.sum() > 0
        assert np.array_equal(ours, np.stack(out[k])), k


# -- malformed / unsupported graphs ---------------------------------------------------------------


def _nodes():
    return {
        "in": nir.Input(input_type=np.array([4])),
        "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        "lif": nir.LIF(tau=np.full(3, 2.0), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        "out": nir.Output(output_type=np.array([3])),
    }


CHAIN = [("in", "fc"), ("fc", "lif"), ("lif", "out")]


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda n, e: e.remove(("fc", "lif")), "node 'fc' has no outgoing edge"),
        (lambda n, e: e.append(("lif", "ghost")), "refers to node 'ghost'"),
        (
            lambda n, e: n.update(fc=nir.Scale(scale=np.ones(4))),
            "node 'fc': node type Scale is not supported",
        ),
        (
            lambda n, e: n.update(fc=nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))),
            "node 'fc': weight expects 5 inputs but receives shape \\(4,\\)",
        ),
        (
            lambda n, e: n.update(
                lif=nir.LIF(
                    tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2)
                )
            ),
            "node 'lif': r has shape \\(2,\\)",
        ),
        (
            lambda n, e: (
                n.update(fc2=nir.Linear(weight=np.eye(3)), lif2=n["lif"], back=nir.Linear(weight=np.eye(3))),
                e.extend([("lif", "fc2"), ("fc2", "lif2"), ("lif2", "back"), ("back", "lif")]),
            ),
            "node 'back': zero-delay projections form a cycle.*close a cycle through several neuron "
            "nodes with a Delay node",
        ),
        (
            lambda n, e: (
                n.update(d=nir.Delay(delay=np.full(3, 1.5))),
                e.remove(("fc", "lif")),
                e.extend([("fc", "d"), ("d", "lif")]),
            ),
            "node 'd': delay .* is not a whole number of steps",
        ),
        (
            lambda n, e: (
                n.update(
                    li=nir.LI(tau=np.full(3, 2.0), r=np.full(3, 2.0), v_leak=np.zeros(3)),
                    fc2=nir.Linear(weight=np.eye(3)),
                    fc3=nir.Linear(weight=np.eye(3)),
                ),
                e.extend([("lif", "fc2"), ("fc2", "li"), ("li", "fc3"), ("fc3", "lif")]),
            ),
            "node 'li': LI does not fire and passes its membrane on",
        ),
        (
            lambda n, e: (
                n.update(fc2=nir.Linear(weight=np.eye(3))),
                e.extend([("lif", "fc2"), ("fc2", "out")]),
            ),
            "node 'fc2': a projection into an Output",
        ),
        (
            lambda n, e: n.update(
                lif=nir.LIF(
                    tau=np.full(3, 0.5), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.ones(3)
                )
            ),
            "node 'lif': tau=0.5 must be finite and >= dt",
        ),
        (
            lambda n, e: n.update(
                lif=nir.LIF(
                    tau=np.full(3, 2.0),
                    r=np.full(3, 2.0),
                    v_leak=np.zeros(3),
                    v_threshold=np.arange(1.0, 4.0),
                )
            ),
            "node 'lif': per-neuron v_threshold",
        ),
        (
            lambda n, e: n.update(stray=nir.Linear(weight=np.eye(3))),
            "nodes \\['stray'\\] are not on any path",
        ),
    ],
)
def test_malformed_graph_names_the_node(change, match):
    nodes, edges = _nodes(), list(CHAIN)
    change(nodes, edges)
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(NIRImportError, match=match):
        snn.from_nir(g, dt=1.0)


def test_import_refuses_neuron_first_and_missing_dt():
    nodes = _nodes()
    del nodes["fc"]
    nodes["lif"] = nir.LIF(tau=np.full(4, 2.0), r=np.full(4, 2.0), v_leak=np.zeros(4), v_threshold=np.ones(4))
    g = nir.NIRGraph(nodes=nodes, edges=[("in", "lif"), ("lif", "out")], type_check=False)
    with pytest.raises(NIRImportError, match="node 'lif': LIF must follow"):
        snn.from_nir(g, dt=1.0)
    with pytest.raises(NIRImportError, match="needs dt="):
        snn.from_nir(nir.NIRGraph(nodes=_nodes(), edges=list(CHAIN)))


def test_import_snn_stays_free_of_nir():
    code = "import sys, snn; assert 'nir' not in sys.modules and 'h5py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- hardening (issue 15): paths and wrong types -----------------------------------------------


def _small_network():
    return snn.Network(
        [snn.Linear(4, 3, snn.LIF(beta=0.9), seed=0), snn.Linear(3, 2, snn.IF(threshold=math.inf), seed=1)]
    )


@pytest.mark.parametrize("as_path", [str, __import__("pathlib").Path])
def test_from_nir_reads_a_file_path(as_path, tmp_path):
    """A str or pathlib path is read with nir.read (it was an AttributeError)."""
    net = _small_network()
    path = tmp_path / "net.nir"
    nir.write(path, _export(net))
    _assert_same_network(snn.from_nir(as_path(path)), net)


def test_from_nir_and_to_nir_refuse_what_they_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="no NIR file"):
        snn.from_nir(tmp_path / "missing.nir")
    not_nir = tmp_path / "net.npz"
    snn.save(_small_network(), not_nir)
    with pytest.raises(NIRImportError, match="not a readable NIR file"):
        snn.from_nir(not_nir)
    for bad in (3, {"nodes": {}}, _small_network(), None):
        with pytest.raises(TypeError, match=r"nir\.NIRGraph or the path"):
            snn.from_nir(bad)
    for bad in (_export(_small_network()), None, _small_network().layers):
        with pytest.raises(TypeError, match=r"exports an snn\.Network"):
            snn.to_nir(bad)


def test_from_nir_refuses_malformed_metadata_and_input_shapes():
    graph = _export(_small_network())
    graph.metadata["snn.dt"] = "one"
    with pytest.raises(NIRImportError, match="'snn.dt' is not a number"):
        snn.from_nir(graph)
    graph = _export(_small_network())
    graph.nodes["input"].input_type = {"input": np.array([-4])}
    with pytest.raises(NIRImportError, match="Input node's shape must be positive integers"):
        snn.from_nir(graph)


# -- graphs: recurrence, delays, branches (snn.interop.nir_graph) ---------------------------------


def _graphs():
    """Graphs that are not chains: recurrent, delayed (per projection and
    per synapse), branching and merging, current-based, reset 'none' with
    the delayed subtraction, convolutions with delays, Poisson background."""
    rng = np.random.default_rng(11)
    g = snn.Graph(dt=1e-3)
    x = g.input(6, name="x")
    a = g.population(8, snn.LIF(beta=0.875, threshold=1.0), bias=0.125, name="a")
    b = g.population(
        5, snn.CubaLIF(beta=0.75, alpha=0.5, threshold=1.0, reset="zero"), name="b", mode="clock"
    )
    c = g.population(4, snn.LIF(beta=0.5, threshold=0.5, reset="none", refractory=1), v_init=0.25, name="c")
    g.connect(x, a, rng.normal(0, 0.8, (8, 6)), delay=0)
    g.connect(a, a, rng.normal(0, 0.3, (8, 8)), delay=1)
    g.connect(a, b, rng.normal(0, 0.8, (5, 8)), delay=2)
    g.connect(x, b, rng.normal(0, 0.8, (5, 6)), delay=0)  # merge into b
    post, pre = np.nonzero(rng.random((4, 5)) < 0.7)
    order = np.lexsort((post, pre))
    rowptr = np.concatenate(([0], np.cumsum(np.bincount(pre[order], minlength=5))))
    g.connect(b, c, 0.75, connectivity=(rowptr, post[order]), delay=rng.integers(0, 3, len(post)))
    g.connect(c, c, -0.5, connectivity=(np.arange(5), np.arange(4)), delay=1)  # delayed subtraction
    g.connect(c, a, rng.normal(0, 0.5, (8, 4)), delay=3)  # a cycle a -> b -> c -> a
    g.poisson_input(a, 3, 100.0, 0.25)
    yield "recurrent-delayed-merged", g, {"x": (rng.random((T, 2, 6)) < 0.3).astype(np.uint8)}

    g = snn.Graph(dt=0.5)
    x = g.input((1, 6, 6), name="img")
    h = g.population((2, 6, 6), snn.LIF(beta=0.75, threshold=1.0), bias=0.0625, name="h")
    o = g.population(3, snn.IF(threshold=2.0), name="o")
    g.conv(x, h, rng.normal(0, 0.8, (2, 1, 3, 3)), padding=1, delay=1)
    g.conv(h, h, rng.normal(0, 0.3, (2, 2, 3, 3)), padding=1, delay=2)  # convolutional recurrence
    g.connect(h, o, rng.normal(0, 0.5, (3, 72)), delay=0)
    yield "conv-recurrent", g, {"img": (rng.random((T, 2, 36)) < 0.3).astype(np.uint8)}


def _assert_same_graph(a: snn.Graph, b: snn.Graph):
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    assert a.dt == b.dt
    for pa, pb in zip(a.populations, b.populations, strict=True):
        assert (pa.n, pa.shape, pa.mode) == (pb.n, pb.shape, pb.mode)
        if not pa.is_input:
            assert pa.neuron == pb.neuron and pa.neuron.name == pb.neuron.name
            assert np.array_equal(pa.bias, pb.bias) and np.array_equal(pa.v_init, pb.v_init)
    assert a.n_synapses == b.n_synapses
    assert [(s.target.name, s.n_trains, s.rate, s.weight) for s in a.sources] == [
        (s.target.name, s.n_trains, s.rate, s.weight) for s in b.sources
    ]


def _assert_same_graph_runs(a: snn.Graph, b: snn.Graph, inputs):
    for backend in ("event", "reference"):
        ra = a.run(T, inputs=inputs, seed=4, backend=backend)
        rb = b.run(T, inputs=inputs, seed=4, backend=backend)
        for name in ra.names:
            assert np.array_equal(ra.spikes(name), rb.spikes(name)), (backend, name)
            if backend == "event":
                assert ra.spikes(name).sum() > 0 or name in inputs, f"{name} silent: vacuous"


@pytest.mark.parametrize("through_file", [False, True])
@pytest.mark.parametrize("name,graph,inputs", list(_graphs()), ids=[c[0] for c in _graphs()])
def test_graph_round_trip_is_exact(name, graph, inputs, through_file, tmp_path):
    exported = _export(graph, dt=None)
    if through_file:
        nir.write(tmp_path / "g.nir", exported)
        exported = tmp_path / "g.nir"
    back = snn.from_nir(exported)
    assert isinstance(back, snn.Graph)
    _assert_same_graph(graph, back)
    _assert_same_graph_runs(graph, back, inputs)


def test_graph_export_writes_delays_cycles_and_outputs():
    _, g, _ = next(_graphs())
    with pytest.warns(NIRExportWarning) as caught:
        exported = snn.to_nir(g)
    text = " ".join(str(w.message) for w in caught)
    assert "Poisson background" in text and "reset 'none'" in text and "subtraction" in text
    nodes, edges = exported.nodes, set(exported.edges)
    assert isinstance(nodes["x"], nir.Input) and isinstance(nodes["c"], nir.LIF)
    assert isinstance(nodes["a->b.delay"], nir.Delay)
    np.testing.assert_allclose(nodes["a->b.delay"].delay, np.full(8, 2e-3))  # 2 steps of dt = 1e-3
    assert {("a", "a->a.delay"), ("a->a.delay", "a->a"), ("a->a", "a")} <= edges  # a cycle
    assert {"b->c.d0", "b->c.d1", "b->c.d2"} <= set(nodes)  # one node chain per delay
    np.testing.assert_array_equal(nodes["x->a"].bias, np.full(8, 0.125))  # a's bias on its first input
    assert [k for k, n in nodes.items() if isinstance(n, nir.Output)] == ["a.output", "b.output", "c.output"]
    assert exported.metadata["snn.model"] == "Graph" and exported.metadata["snn.dt"] == 1e-3


def test_graph_export_raises_on_unsupported():
    def graph(neuron, poisson=False):
        g = snn.Graph()
        a, b = g.input(4, name="a"), g.population(3, neuron, name="b")
        g.connect(a, b, np.ones((3, 4)), delay=1)
        if poisson:
            g.poisson_input(b, 2, 10.0, 0.5)
        return g

    zero = snn.LIF(beta=0.5, reset="zero")
    snn.to_nir(graph(zero), on_unsupported="raise")  # nothing NIR cannot say
    for g, match in (
        (graph(zero, poisson=True), "population 'b': Poisson background"),
        (graph(snn.LIF(beta=0.5)), "population 'b': reset by subtraction"),
        (graph(snn.LIF(beta=0.5, reset="none")), "population 'b': reset 'none'"),
    ):
        with pytest.raises(NIRExportError, match=match):
            snn.to_nir(g, on_unsupported="raise")


def test_graph_export_refuses_a_bias_nir_cannot_carry():
    g = snn.Graph()
    g.population(3, snn.LIF(beta=0.5, reset="zero"), bias=0.5, name="pacemaker")
    with pytest.raises(NIRExportError, match="population 'pacemaker': its bias has no place in NIR"):
        snn.to_nir(g)
    g = snn.Graph()
    x = g.input(4, name="x")
    img = g.population((1, 2, 2), snn.LIF(beta=0.5, reset="zero"), name="img")
    g.connect(x, img, np.ones((4, 4)), delay=0)
    with pytest.raises(NIRExportError, match="dense projection onto the image population 'img'"):
        snn.to_nir(g)


def test_chain_imports_as_graph_on_request():
    net = _small_network()
    x = _spikes(np.random.default_rng(2), 4, p=0.6)
    g = snn.from_nir(_export(net), as_graph=True)
    assert isinstance(g, snn.Graph) and isinstance(snn.from_nir(_export(net)), snn.Network)
    r_net, r_g = net.run(x), g.run(T, inputs={"input": x}, record_v={g.populations[-1]: np.arange(2)})
    assert np.array_equal(r_net.spikes(0), r_g.spikes(g.populations[1].name))
    np.testing.assert_array_equal(r_g.v(g.populations[-1].name)[-1], r_net.membrane)


def _euler_nodes():
    """Input -> Delay (2, 1, 0 steps per input) -> Affine -> LIF; LIF ->
    Linear -> LIF (no Delay); LIF -> Linear -> Delay(3) -> IF -> Output;
    dt = 1, gains 1."""
    w_in = np.array([[0.5, 0.25, 0.0], [0.75, -0.25, 0.5]])
    w_rec = np.array([[0.0, -0.5], [0.25, 0.0]])
    w_out = np.array([[0.5, 0.75]])
    nodes = {
        "in": nir.Input(input_type=np.array([3])),
        "fc": nir.Affine(weight=w_in, bias=np.array([0.125, 0.0])),
        "d": nir.Delay(delay=np.array([2.0, 1.0, 0.0])),  # per input neuron
        "lif": nir.LIF(tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        "rec": nir.Linear(weight=w_rec),
        "fc2": nir.Linear(weight=w_out),
        "d2": nir.Delay(delay=np.array([3.0])),
        "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "out": nir.Output(output_type=np.array([1])),
    }
    edges = [
        ("in", "d"),
        ("d", "fc"),
        ("fc", "lif"),
        ("lif", "rec"),
        ("rec", "lif"),
        ("lif", "fc2"),
        ("fc2", "d2"),
        ("d2", "if"),
        ("if", "out"),
    ]
    return nodes, edges, (w_in, w_rec, w_out)


def test_hand_built_recurrent_delayed_graph_follows_euler_steps():
    """NIR semantics step by step (numpy, float64, dyadic: exact): Delay
    nodes shift by delay/dt steps (per element), the Delay-free self-loop
    feeds back the previous step's spikes, LIF: v <- v + (dt/tau)(-v + r I),
    fire on v > threshold, reset to v_reset = 0."""
    nodes, edges, (w_in, w_rec, w_out) = _euler_nodes()
    g = snn.from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=1.0)
    assert isinstance(g, snn.Graph)
    x = _spikes(np.random.default_rng(9), 3, p=0.6, batch=2)
    steps = np.array([2, 1, 0])
    v, s, u, z = np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 1)), np.zeros((T, 2, 1))
    lif_out = np.zeros((T, 2, 2))
    for t in range(T):
        xd = np.stack([x[t - d, :, i] if t >= d else np.zeros(2) for i, d in enumerate(steps)], axis=1)
        current = xd @ w_in.T + np.array([0.125, 0.0]) + s @ w_rec.T
        v = v + 0.5 * (-v + 2.0 * current)
        s = (v > 1.0).astype(float)
        v = np.where(s > 0, 0.0, v)
        lif_out[t] = s
        arriving = lif_out[t - 3] @ w_out.T if t >= 3 else np.zeros((2, 1))
        u = u + arriving
        z[t] = u > 1.0
        u = np.where(z[t] > 0, 0.0, u)
    for backend in ("event", "reference"):
        r = g.run(T, inputs={"in": x}, backend=backend)
        assert np.array_equal(r.spikes("lif"), lif_out) and np.array_equal(r.spikes("if"), z)
    assert lif_out.sum() > 0 and z.sum() > 0


def test_snntorch_rleaky_export_imports_with_matching_spikes():
    """snnTorch's NIR export of an RLeaky (a flat cycle lif -> w_rec -> lif,
    nirtorch >= 2) imports as a Graph whose spikes equal snnTorch's."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("snntorch")
    from snntorch import utils

    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    lif1 = st.RLeaky(
        beta=torch.full((16,), 0.8),
        threshold=torch.ones(16),
        linear_features=16,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    lif2 = st.Leaky(
        beta=torch.full((4,), 0.9),
        threshold=torch.full((4,), 0.5),
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
    )
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), lif1, torch.nn.Linear(16, 4), lif2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exported = export_to_nir(model, torch.zeros(1, 10), ignore_dims=[0])
    assert ("1.w_rec", "1.lif") in exported.edges and ("1.lif", "1.w_rec") in exported.edges
    g = snn.from_nir(exported, dt=1e-4)
    assert isinstance(g, snn.Graph)
    rec = [p for p in g.projections if p.source is p.target]
    assert len(rec) == 1 and rec[0].delays == [1]
    x = _spikes(np.random.default_rng(6), 10, p=0.4, batch=4, steps=40)
    utils.reset(model)
    margins, out = [], [[], []]
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = torch.as_tensor(x[t], dtype=torch.float32)
            for k, m in enumerate(model):
                if k % 2:  # the pre-fire membrane: snnTorch's own state function, as its forward
                    if m.mem.shape == h.shape:
                        pre = m.state_function(h)
                        margins.append(float((pre - m.threshold).abs().min()))
                h = m(h)
                h = h[0] if isinstance(h, tuple) else h
                if k % 2:
                    out[k // 2].append(h.numpy().copy())
    assert min(margins) > MARGIN_ST
    result = g.run(x.shape[0], inputs={"input": x})
    for name, expected in zip(("1.lif", "3"), out, strict=True):
        assert result.spikes(name).sum() > 0
        assert np.array_equal(result.spikes(name), np.stack(expected)), name
