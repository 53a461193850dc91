"""Saving and loading networks: ``snn.save`` / ``snn.load`` (``snn/io.py``).

What is checked, and against what:

- Exact round trip on networks covering every layer type (Linear,
  SparseLinear, Conv2d with stride/padding/dilation/groups, AvgPool2d with
  its options, MaxPool2d, Flatten dropped), every neuron model and option
  (IF/LIF/CubaLIF, refractory, reset subtract/zero/value, infinite-threshold
  readout), per-neuron bias and v_init, layer names and modes, both state
  dtypes: every attribute of every layer is compared with the original's,
  arrays bit for bit (dtype, shape and bytes), and runs on the same random
  spikes (and analog input) give equal spikes, counts and final membrane.
  A network made by the converter from a small torch CNN round-trips too.
- The manifest of a tiny network against its documented literal form (the
  format is a contract).
- Errors on load, each a ``ValueError`` naming the file: not a zip, a
  truncated or corrupted archive, no manifest, malformed JSON, wrong format
  name, newer or invalid format version, missing array, an array no record
  reads, wrong dtype or shape, missing field, unknown type, values the
  constructors refuse.
- Errors on save: unregistered types (``TypeError`` saying how to register),
  what cannot be stored exactly; and a registered plug-in type round-trips.
- Graphs (``snn.Graph``): exact round trip of the Brunel network and of a
  graph with every kind of part (an input population, CubaLIF/LIF/IF
  populations with refractory periods, bias and v_init per neuron, a
  population onto itself, zero delays, per-synapse delays 1..3 (several delay
  groups) with shared and with per-synapse weights, a dense-matrix
  projection, Poisson sources, both dtypes), saved before and after a run
  (a run rebinds the projections' arrays to views): every group array bit for
  bit, and runs of the loaded graph give equal spikes, counts and membranes;
  the manifest of a tiny graph against its documented form; load errors
  naming the file and the record (unknown population, missing group array,
  wrong dtype, delays or groups that do not match).
- Crafted files (issue 15): manifests nested thousands of levels deep,
  fields of the wrong JSON type, sizes that would allocate terabytes, .npy
  headers declaring bytes they do not hold, object arrays: each gives the
  FileFormatError; and a property test replaces any field of a valid
  manifest by any JSON value: a network or a FileFormatError, nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from conftest import examples

import snn
import snn.io

T, BATCH = 16, 3


# ---------------------------------------------------------------------------
# Networks covering every layer type, neuron model and option
# ---------------------------------------------------------------------------


def dense_network(dtype=np.float64) -> snn.Network:
    rng = np.random.default_rng(0)
    return snn.Network(
        [
            snn.Linear(
                20,
                16,
                snn.LIF(beta=0.9, refractory=2),
                weight=rng.normal(0.15, 0.3, (16, 20)),
                bias=rng.normal(0.0, 0.05, 16),
                v_init=rng.uniform(0.0, 0.5, 16),
                mode="event",
                name="in",
            ),
            snn.SparseLinear.random(
                16,
                12,
                0.5,
                weight=lambda r, n: r.normal(0.4, 0.3, n),
                neuron=snn.CubaLIF(beta=0.85, alpha=0.6, reset="zero"),
                seed=1,
                bias=0.01,
                mode="dense",
                name="sparse",
            ),
            snn.SparseLinear.from_dense(
                np.where(rng.random((10, 12)) < 0.6, rng.normal(0.5, 0.3, (10, 12)), 0.0),
                snn.LIF(tau_mem=7.0, threshold=0.7, reset="value", v_reset=-0.2),
                v_init=0.1,
            ),
            snn.Linear(
                10, 4, snn.IF(threshold=math.inf), weight=rng.normal(0.0, 0.5, (4, 10)), name="readout"
            ),
        ],
        dtype=dtype,
    )


def conv_network(dtype=np.float64) -> snn.Network:
    """Like a converted CNN: Conv2d -> AvgPool2d -> Flatten -> Linear readout, IF neurons."""
    rng = np.random.default_rng(1)
    return snn.Network(
        [
            snn.Conv2d(
                (2, 8, 8),
                4,
                3,
                snn.IF(),
                padding=1,
                weight=rng.normal(0.2, 0.3, (4, 2, 3, 3)),
                bias=rng.normal(0.0, 0.05, 4),
                v_init=0.5,
                name="conv",
            ),
            snn.AvgPool2d((4, 8, 8), 2, v_init=0.5, name="pool"),
            snn.Flatten(),
            snn.Linear(64, 5, snn.IF(threshold=math.inf), weight=rng.normal(0.0, 0.3, (5, 64)), name="fc"),
        ],
        dtype=dtype,
    )


def pooling_network(dtype=np.float64) -> snn.Network:
    """Conv2d with every geometry option -> AvgPool2d with its options -> MaxPool2d -> Linear."""
    rng = np.random.default_rng(2)
    conv = snn.Conv2d(
        (2, 11, 9),
        4,
        (3, 2),
        snn.LIF(beta=0.95, reset="zero", refractory=1),
        stride=(1, 2),
        padding=(1, 0),
        dilation=(2, 1),
        groups=2,
        weight=rng.normal(0.5, 0.3, (4, 1, 3, 2)),
        v_init=rng.uniform(0.0, 0.5, 4 * 9 * 4),
        mode="dense",
    )
    avg = snn.AvgPool2d(
        conv.out_shape,
        3,
        stride=1,
        padding=1,
        dilation=1,
        neuron=snn.CubaLIF(beta=0.9, alpha=0.5, threshold=0.5),
        bias=[0.0, 0.01, 0.02, 0.03],
        mode="event",
    )
    maxpool = snn.MaxPool2d(avg.out_shape, 2, name="max")
    return snn.Network(
        [
            conv,
            avg,
            maxpool,
            snn.Linear(
                maxpool.n_out,
                3,
                snn.IF(threshold=2.0, reset="value", v_reset=-1.0),
                weight=rng.normal(0.5, 0.5, (3, maxpool.n_out)),
            ),
        ],
        dtype=dtype,
    )


def maxpool_network(dtype=np.float64) -> snn.Network:
    """Conv2d -> MaxPool2d(3, 2, 1) (ResNet's stem: overlapping, padded) ->
    MaxPool2d((2, 3), stride (1, 2), padding (1, 0)) -> Linear."""
    rng = np.random.default_rng(5)
    conv = snn.Conv2d((1, 9, 10), 3, 3, snn.IF(), padding=1, weight=rng.normal(0.4, 0.3, (3, 1, 3, 3)))
    stem = snn.MaxPool2d(conv.out_shape, 3, 2, 1, name="stem")
    odd = snn.MaxPool2d(stem.out_shape, (2, 3), stride=(1, 2), padding=(1, 0))
    readout = snn.Linear(odd.n_out, 2, snn.IF(), weight=rng.normal(0.3, 0.3, (2, odd.n_out)))
    return snn.Network([conv, stem, odd, readout], dtype=dtype)


NETWORKS = {
    "dense-float64": lambda: dense_network(),
    "dense-float32": lambda: dense_network(np.float32),
    "conv-float64": lambda: conv_network(),
    "conv-float32": lambda: conv_network(np.float32),
    "pooling": lambda: pooling_network(),
    "maxpool-windows": lambda: maxpool_network(),
}


def random_spikes(network, seed=3, p=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, BATCH, network.n_in)) < p).astype(np.uint8)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_layer(a, b):
    """Every attribute equal (arrays bit for bit, neurons field by field with
    their types: equal neurons share a cached propagator, so only the types
    show that a fresh process would compute the same one), ignoring the
    dense-matrix cache ``_rows``."""
    assert type(a) is type(b)
    attrs_a = {k: v for k, v in vars(a).items() if k != "_rows"}
    attrs_b = {k: v for k, v in vars(b).items() if k != "_rows"}
    assert attrs_a.keys() == attrs_b.keys()
    for key, value in attrs_a.items():
        other = attrs_b[key]
        if isinstance(value, np.ndarray):
            assert same_bits(value, other), key
        elif isinstance(value, snn.Neuron):
            fields = [f.name for f in dataclasses.fields(value)]
            assert [(type(getattr(value, f)), getattr(value, f)) for f in fields] == [
                (type(getattr(other, f)), getattr(other, f)) for f in fields
            ], key
        else:
            assert type(value) is type(other) and value == other, key


def assert_same_network(a: snn.Network, b: snn.Network):
    assert a.dtype is b.dtype
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert_same_layer(la, lb)
    assert repr(a) == repr(b)


def assert_same_run(a: snn.Network, b: snn.Network, **inputs):
    ra, rb = a.run(**inputs), b.run(**inputs)
    for k in range(len(a.layers)):
        assert np.array_equal(ra.spikes(k), rb.spikes(k)), k
        for f in dataclasses.fields(snn.LayerCounts):
            va, vb = getattr(ra.counts[k], f.name), getattr(rb.counts[k], f.name)
            assert same_bits(va, vb) if isinstance(va, np.ndarray) else va == vb, (k, f.name)
    assert (ra.membrane is None and rb.membrane is None) or same_bits(ra.membrane, rb.membrane)
    return ra


# ---------------------------------------------------------------------------
# Exact round trip
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
def test_round_trip_is_exact(make, tmp_path):
    network = make()
    path = tmp_path / "net.npz"
    snn.save(network, path)
    loaded = snn.load(path)
    assert_same_network(network, loaded)
    spikes = random_spikes(network)
    result = assert_same_run(network, loaded, spikes=spikes)
    hidden = [result.counts[k].total("spikes") for k in range(len(network.layers) - 1)]
    assert all(hidden), f"a hidden layer is silent, the comparison would be vacuous: {hidden}"
    assert_same_run(network, loaded, spikes=spikes, backend="reference")


@pytest.mark.parametrize("make", [conv_network, dense_network], ids=["conv", "dense"])
def test_round_trip_analog_input(make, tmp_path):
    network = make()
    snn.save(network, tmp_path / "net.npz")
    loaded = snn.load(tmp_path / "net.npz")
    x = np.random.default_rng(4).random((BATCH, network.n_in))
    assert_same_run(network, loaded, analog=x, T=T)


def test_flatten_is_dropped_and_the_rest_kept_in_order(tmp_path):
    network = conv_network()
    snn.save(network, tmp_path / "net.npz")
    assert [type(layer) for layer in snn.load(tmp_path / "net.npz").layers] == [
        snn.Conv2d,
        snn.AvgPool2d,
        snn.Linear,
    ]


def test_converted_network_round_trips(tmp_path):
    torch = pytest.importorskip("torch")
    from snn.convert import convert

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 3),
    ).eval()
    data = torch.rand(32, 1, 8, 8)
    network = convert(model, data, per_channel=True).network
    snn.save(network, tmp_path / "converted.npz")
    loaded = snn.load(tmp_path / "converted.npz")
    assert_same_network(network, loaded)
    assert_same_run(network, loaded, analog=data[:BATCH].reshape(BATCH, -1).numpy(), T=T)


def test_path_is_written_exactly_without_a_suffix(tmp_path):
    network = dense_network()
    snn.save(network, str(tmp_path / "model"))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert_same_network(network, snn.load(str(tmp_path / "model")))


def test_manifest_of_a_tiny_network(tmp_path):
    network = snn.Network(
        [snn.Linear(2, 3, snn.LIF(beta=0.5, threshold=math.inf), weight=np.ones((3, 2)), name="only")],
        dtype=np.float32,
    )
    snn.save(network, tmp_path / "tiny.npz")
    with np.load(tmp_path / "tiny.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["layer0.bias", "layer0.v_init", "layer0.weight", "manifest"]
        manifest = json.loads(str(npz["manifest"]))
    assert manifest == {
        "format": "snn-zero-waste network",
        "format_version": 1,
        "snn_version": snn.__version__,
        "network": {
            "type": "Network",
            "dtype": "float32",
            "layers": [
                {
                    "type": "Linear",
                    "n_in": 2,
                    "n_out": 3,
                    "mode": "auto",
                    "name": "only",
                    "neuron": {
                        "type": "Neuron",
                        "beta": 0.5,
                        "alpha": None,
                        "threshold": "inf",
                        "reset": "subtract",
                        "v_reset": 0.0,
                        "refractory": 0,
                        "name": "LIF",
                    },
                }
            ],
        },
    }


# ---------------------------------------------------------------------------
# Errors on load
# ---------------------------------------------------------------------------


def entries(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def write_entries(path, arrays: dict):
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def edit_manifest(path, edit):
    """Rewrite the file with ``edit(manifest)`` applied to its manifest."""
    arrays = entries(path)
    manifest = json.loads(str(arrays["manifest"]))
    edit(manifest)
    arrays["manifest"] = np.array(json.dumps(manifest))
    write_entries(path, arrays)


def layer0(manifest) -> dict:
    return manifest["network"]["layers"][0]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_weight_byte(path):
    data = bytearray(path.read_bytes())
    at = data.find(dense_network().layers[0].weight.tobytes()[:64])
    assert at > 0
    data[at + 10] ^= 0xFF
    path.write_bytes(bytes(data))


def _replace_array(key, value):
    def edit(path):
        arrays = entries(path)
        arrays[key] = value(arrays[key]) if callable(value) else value
        write_entries(path, arrays)

    return edit


def _drop_array(key):
    def edit(path):
        arrays = entries(path)
        del arrays[key]
        write_entries(path, arrays)

    return edit


def _add_array(key, value):
    def edit(path):
        arrays = entries(path)
        arrays[key] = value
        write_entries(path, arrays)

    return edit


def _set(field, value, where=layer0):
    return lambda path: edit_manifest(path, lambda m: where(m).__setitem__(field, value))


def _delete(field, where=layer0):
    return lambda path: edit_manifest(path, lambda m: where(m).pop(field))


LOAD_ERRORS = {
    "not-a-zip": (lambda p: p.write_bytes(b"these bytes are not a network"), "not an .npz file"),
    "npy-not-npz": (lambda p: np.save(p.open("wb"), np.zeros(3)), "not an .npz file"),
    "truncated": (_truncate, "not an .npz file"),
    "corrupted-bytes": (_flip_weight_byte, "corrupted"),
    "no-manifest": (lambda p: write_entries(p, {"w": np.zeros(3)}), "no JSON 'manifest'"),
    "manifest-not-text": (_replace_array("manifest", np.zeros(3)), "no JSON 'manifest'"),
    "malformed-json": (
        _replace_array("manifest", np.array('{"format": "snn-zero-waste network",')),
        "not valid JSON",
    ),
    "manifest-not-object": (_replace_array("manifest", np.array("[1, 2]")), "not an snn network file"),
    "wrong-format-name": (_set("format", "another format", lambda m: m), "not an snn network file"),
    "newer-version": (_set("format_version", 2, lambda m: m), "newer than this snn.*upgrade"),
    "version-not-int": (
        _set("format_version", "1", lambda m: m),
        "format_version must be a positive integer",
    ),
    "no-network-record": (_delete("network", lambda m: m), "no 'network' record"),
    "missing-array": (_drop_array("layer0.weight"), "layer0: array 'layer0.weight' is missing"),
    "wrong-dtype": (
        _replace_array("layer0.weight", lambda w: w.astype(np.float64)),
        "'layer0.weight' is float64 .* expected float32",
    ),
    "wrong-ndim": (_replace_array("layer1.cols", lambda c: c[None]), "'layer1.cols' is int32 of shape"),
    "wrong-shape": (
        _replace_array("layer0.weight", lambda w: np.ascontiguousarray(w.T)),
        "layer0: cannot rebuild the Linear: weight must have shape",
    ),
    "short-bias": (_replace_array("layer2.bias", lambda b: b[1:]), "layer2: cannot rebuild.*bias must be"),
    "inconsistent-csr": (
        _replace_array("layer1.cols", lambda c: c[1:]),
        "layer1: cannot rebuild the SparseLinear",
    ),
    "missing-field": (_delete("n_in"), "layer0: the Linear record has no field 'n_in'"),
    "stray-array": (
        _add_array("layer5.weight", np.zeros(3, np.float32)),
        r"arrays that no record reads: layer5\.weight$",
    ),
    "unknown-type": (_set("type", "Bogus"), "layer0: unknown type 'Bogus'"),
    "record-not-object": (
        lambda p: edit_manifest(p, lambda m: m["network"]["layers"].append(3)),
        "layer4: expected a JSON object",
    ),
    "refused-mode": (_set("mode", "fast"), "layer0: cannot rebuild the Linear: mode must be"),
    "refused-neuron": (
        _set("beta", 1.5, lambda m: layer0(m)["neuron"]),
        r"layer0\.neuron: cannot rebuild the Neuron: beta must be in \[0, 1\]",
    ),
    "refused-dtype": (_set("dtype", "int8", lambda m: m["network"]), "network: cannot rebuild the Network"),
}


@pytest.mark.parametrize("corrupt, message", LOAD_ERRORS.values(), ids=LOAD_ERRORS.keys())
def test_load_errors_name_the_file_and_the_problem(corrupt, message, tmp_path):
    path = tmp_path / "net.npz"
    snn.save(dense_network(), path)
    corrupt(path)
    with pytest.raises(ValueError, match=message) as err:
        snn.load(path)
    assert isinstance(err.value, snn.io.FileFormatError)
    assert str(err.value).startswith(f"{path}: ")


def test_load_refuses_layers_that_do_not_chain(tmp_path):
    path = tmp_path / "net.npz"
    snn.save(pooling_network(), path)  # its MaxPool2d (layer2) has no arrays: only the manifest changes
    edit_manifest(path, lambda m: m["network"]["layers"][2].__setitem__("in_shape", [4, 10, 4]))
    with pytest.raises(ValueError, match=f"{path}: network: cannot rebuild the Network: layers do not chain"):
        snn.load(path)


def test_maxpool_records_its_window(tmp_path):
    """A MaxPool2d of stride = kernel, square, unpadded is written as before
    (``kernel_size`` an int, no ``stride``/``padding``: readers that predate
    them read it right); any other window with pairs, so that such a reader
    refuses it (its schema wants an int ``kernel_size``) instead of dropping
    the stride and padding. A record without ``stride``/``padding`` (an
    older file) loads with stride = kernel and no padding."""
    path = tmp_path / "net.npz"
    snn.save(maxpool_network(), path)
    layers = json.loads(str(entries(path)["manifest"]))["network"]["layers"]
    assert {k: v for k, v in layers[1].items() if k != "type"} == {
        "in_shape": [3, 9, 10],
        "kernel_size": [3, 3],
        "stride": [2, 2],
        "padding": [1, 1],
        "name": "stem",
    }
    assert (layers[2]["kernel_size"], layers[2]["stride"], layers[2]["padding"]) == ([2, 3], [1, 2], [1, 0])
    snn.save(pooling_network(), path)
    layers = json.loads(str(entries(path)["manifest"]))["network"]["layers"]
    old_record = {"type": "MaxPool2d", "in_shape": [4, 9, 4], "kernel_size": 2, "name": "max"}
    assert layers[2] == old_record
    pool = snn.load(path).layers[2]
    assert (pool.kernel_size, pool.stride, pool.padding) == ((2, 2), (2, 2), (0, 0))
    assert pool.out_shape == (4, 4, 2)
    # stride and padding are pairs in a record (an int kernel_size may go with them)
    edit_manifest(path, lambda m: m["network"]["layers"][2].update(kernel_size=3, stride=[2, 1], padding=1))
    with pytest.raises(snn.io.FileFormatError, match="layer2: field 'padding' must be a pair of integers"):
        snn.load(path)
    edit_manifest(path, lambda m: m["network"]["layers"][2].update(padding=[1, 1]))
    with pytest.raises(snn.io.FileFormatError, match="layers do not chain"):  # 4x9x4 -> 4x5x4 now
        snn.load(path)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"kernel_size": [3, 3], "padding": [2, 1]}, "at most half the kernel size"),
        ({"kernel_size": [2, 2], "stride": [0, 2]}, "stride must be >= 1"),
        ({"kernel_size": [2, 2], "stride": [2, 2, 2]}, "field 'stride' must be a pair of integers"),
        ({"kernel_size": [2, 2, 2]}, "field 'kernel_size' must be an integer of at most .* or a pair"),
        ({"kernel_size": [20, 2], "padding": [1, 1]}, "larger than the input"),
    ],
)
def test_maxpool_window_errors_on_load(update, message, tmp_path):
    path = tmp_path / "net.npz"
    snn.save(maxpool_network(), path)
    edit_manifest(path, lambda m: m["network"]["layers"][1].update(update))
    with pytest.raises(snn.io.FileFormatError, match=f"layer1: .*{message}"):
        snn.load(path)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        snn.load(tmp_path / "absent.npz")


# ---------------------------------------------------------------------------
# Errors on save, and the registry
# ---------------------------------------------------------------------------


class ScaledLinear(snn.Linear):
    """A plug-in layer type: a Linear whose weights are multiplied by ``scale``."""

    def __init__(self, n_in, n_out, neuron=None, *, scale=1.0, weight=None, **kwargs):
        super().__init__(n_in, n_out, neuron, weight=np.asarray(weight) * scale, **kwargs)
        self.scale = scale


def test_unregistered_layer_type_is_refused_with_how_to_register(tmp_path):
    network = snn.Network([ScaledLinear(2, 2, scale=2.0, weight=np.eye(2))])
    with pytest.raises(TypeError, match=r"ScaledLinear.*snn\.io\.register"):
        snn.save(network, tmp_path / "net.npz")
    assert not (tmp_path / "net.npz").exists()


def test_a_registered_plug_in_type_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(snn.io, "_REGISTRY", dict(snn.io._REGISTRY))  # undone after the test

    def to_record(layer, out):
        out.array("weight", layer.weight / layer.scale)
        return {
            "n_in": layer.n_in,
            "n_out": layer.n_out,
            "scale": layer.scale,
            "neuron": out.part("neuron", layer.neuron),
        }

    def from_record(src):
        return ScaledLinear(
            src["n_in"],
            src["n_out"],
            src.part("neuron", src["neuron"]),
            scale=src["scale"],
            weight=src.array("weight", np.float32, 2),
        )

    snn.io.register(ScaledLinear, to_record, from_record)
    network = snn.Network(
        [ScaledLinear(3, 2, snn.IF(threshold=0.5), scale=2.0, weight=np.full((2, 3), 0.25))]
    )
    snn.save(network, tmp_path / "net.npz")
    loaded = snn.load(tmp_path / "net.npz")
    assert_same_network(network, loaded)
    assert_same_run(network, loaded, spikes=random_spikes(network))


def test_register_refuses_a_name_taken_by_another_class():
    class Linear(snn.Linear):
        pass

    with pytest.raises(ValueError, match="already registered"):
        snn.io.register(Linear, lambda layer, out: {}, lambda src: None)


def test_save_takes_a_network(tmp_path):
    with pytest.raises(TypeError, match="takes a network"):
        snn.save(snn.Linear(2, 2), tmp_path / "layer.npz")


def test_conv_bias_varying_within_a_channel_is_refused(tmp_path):
    network = conv_network()
    conv = network.layers[0]
    conv.bias = np.arange(conv.n_out, dtype=np.float64)  # set by hand: no constructor builds this
    with pytest.raises(ValueError, match="varies within an output channel"):
        snn.save(network, tmp_path / "net.npz")


def test_float32_decay_of_a_hand_built_neuron_is_stored_as_the_float_it_became(tmp_path):
    """``Neuron`` turns a numpy ``beta`` into a Python float (the propagator
    is computed from that), so its value round-trips exactly."""
    neuron = snn.Neuron(beta=np.float32(0.9), alpha=np.float32(0.7), name="CubaLIF")
    assert type(neuron.beta) is float and type(neuron.alpha) is float
    network = snn.Network([snn.Linear(2, 2, neuron)])
    snn.save(network, tmp_path / "net.npz")
    assert_same_network(network, snn.load(tmp_path / "net.npz"))


# ---------------------------------------------------------------------------
# Graphs
# ---------------------------------------------------------------------------


def mixed_graph(dtype=np.float64) -> snn.Graph:
    """Every kind of graph part: an input population; CubaLIF, LIF and IF
    populations with refractory periods, per-neuron bias and v_init; per-synapse
    delays 1..3 (three delay groups) with per-synapse and with shared weights;
    a population onto itself; a zero delay; a dense-matrix projection; Poisson
    sources."""
    rng = np.random.default_rng(5)
    g = snn.Graph(dt=1e-3, dtype=dtype)
    inp = g.input(30, name="in")
    cuba = g.population(
        40,
        snn.CubaLIF(beta=0.9, alpha=0.7, threshold=1.0, refractory=2),
        bias=rng.normal(0.02, 0.01, 40),
        v_init=rng.uniform(0.0, 0.5, 40),
        name="cuba",
    )
    lif = g.population(25, snn.LIF(tau_mem=20e-3, dt=1e-3, reset="zero", refractory=1), bias=0.05, name="lif")
    readout = g.population(5, snn.IF(threshold=math.inf))
    rowptr, cols = snn.fixed_probability(30, 40, 0.3, seed=2)
    g.connect(
        inp,
        cuba,
        rng.normal(0.3, 0.2, len(cols)),
        connectivity=(rowptr, cols),
        delay=rng.integers(1, 4, len(cols)),
        name="in->cuba",
    )
    rowptr, cols = snn.fixed_probability(40, 40, 0.2, seed=3)
    g.connect(cuba, cuba, -0.2, connectivity=(rowptr, cols), delay=rng.integers(1, 4, len(cols)))
    g.connect(
        cuba,
        lif,
        np.where(rng.random((25, 40)) < 0.3, rng.normal(0.4, 0.2, (25, 40)), 0.0),
        delay=0,
        name="dense",
    )
    g.connect(lif, cuba, 0.1, connectivity=snn.fixed_probability(25, 40, 0.2, seed=4), delay=2)
    g.connect(lif, readout, rng.normal(0.0, 0.5, (5, 25)))
    g.poisson_input(lif, n_trains=20, rate=30.0, weight=0.1)
    g.poisson_input(cuba, n_trains=10, rate=15.0, weight=0.05)
    return g


GRAPHS = {
    "brunel": (lambda: snn.models.brunel(500, seed=1), 300),
    "mixed-float64": (lambda: mixed_graph(), 100),
    "mixed-float32": (lambda: mixed_graph(np.float32), 100),
}


def graph_inputs(graph, n_steps, batch=2) -> dict:
    rng = np.random.default_rng(6)
    return {
        p.name: (rng.random((n_steps, batch, p.n)) < 0.2).astype(np.uint8)
        for p in graph.populations
        if p.is_input
    }


def same_value(a, b) -> bool:
    return type(a) is type(b) and a == b


def assert_same_neuron(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return
    fields = [f.name for f in dataclasses.fields(a)]
    assert [(type(getattr(a, f)), getattr(a, f)) for f in fields] == [
        (type(getattr(b, f)), getattr(b, f)) for f in fields
    ]


def assert_same_graph(a: snn.Graph, b: snn.Graph):
    assert same_value(a.dt, b.dt) and a.dtype is b.dtype
    assert len(a.populations) == len(b.populations)
    for pa, pb in zip(a.populations, b.populations):
        assert same_value(pa.name, pb.name) and same_value(pa.n, pb.n), pa.name
        assert_same_neuron(pa.neuron, pb.neuron)
        for key in ("bias", "v_init"):
            va, vb = getattr(pa, key), getattr(pb, key)
            assert (va is None and vb is None) or same_bits(va, vb), (pa.name, key)
    assert len(a.projections) == len(b.projections)
    for ra, rb in zip(a.projections, b.projections):
        assert same_value(ra.name, rb.name)
        assert ra.source.name == rb.source.name and ra.target.name == rb.target.name, ra.name
        assert rb.source is b[rb.source.name] and rb.target is b[rb.target.name]
        assert same_value(ra.weight, rb.weight), ra.name
        assert len(ra.groups) == len(rb.groups), ra.name
        for ga, gb in zip(ra.groups, rb.groups):
            assert same_value(ga[0], gb[0]), ra.name
            for xa, xb in zip(ga[1:], gb[1:]):
                assert (xa is None and xb is None) or same_bits(xa, xb), (ra.name, ga[0])
    assert len(a.sources) == len(b.sources)
    for sa, sb in zip(a.sources, b.sources):
        assert sa.target.name == sb.target.name and sb.target is b[sb.target.name]
        assert all(same_value(getattr(sa, f), getattr(sb, f)) for f in ("n_trains", "rate", "weight"))
    assert repr(a) == repr(b)


def assert_same_graph_run(a: snn.Graph, b: snn.Graph, n_steps: int, backend="event"):
    inputs = graph_inputs(a, n_steps)
    record = {p.name: np.arange(0, p.n, 3) for p in a.populations if p.has_neurons}
    ra, rb = (
        g.run(n_steps, inputs=inputs, batch_size=2, seed=7, record_v=record, backend=backend, progress=False)
        for g in (a, b)
    )
    for pop in a.populations:
        assert np.array_equal(ra.spikes(pop.name), rb.spikes(pop.name)), pop.name
        if pop.has_neurons:
            assert same_bits(ra.v(pop.name), rb.v(pop.name)), pop.name
    for ca, cb in zip(ra.counts, rb.counts):
        for f in dataclasses.fields(snn.LayerCounts):
            va, vb = getattr(ca, f.name), getattr(cb, f.name)
            assert same_bits(va, vb) if isinstance(va, np.ndarray) else va == vb, (ca, f.name)
    return ra


@pytest.mark.parametrize("make, n_steps", GRAPHS.values(), ids=GRAPHS.keys())
def test_graph_round_trip_is_exact_before_and_after_a_run(make, n_steps, tmp_path):
    graph = make()
    snn.save(graph, tmp_path / "before.npz")  # the projections hold their own arrays
    before = snn.load(tmp_path / "before.npz")
    assert isinstance(before, snn.Graph)
    assert_same_graph(graph, before)
    result = assert_same_graph_run(graph, before, n_steps)
    silent = [
        p.name
        for p, c in zip(graph.populations, result.counts)
        if not p.is_input and np.isfinite(p.neuron.threshold) and not c.total("spikes")
    ]
    assert not silent, f"silent populations make the comparison vacuous: {silent}"
    assert any(len(p.groups) > 1 for p in graph.projections) or make is GRAPHS["brunel"][0]

    assert any(cols.base is not None for p in graph.projections for _, _, cols, _ in p.groups), (
        "the run no longer rebinds the projections' arrays to views: this half of the test checks nothing new"
    )
    snn.save(graph, tmp_path / "after.npz")  # after a run: views into the compiled plan's arrays
    after = snn.load(tmp_path / "after.npz")
    assert_same_graph(graph, after)
    assert_same_graph_run(graph, after, n_steps)
    first, second = entries(tmp_path / "before.npz"), entries(tmp_path / "after.npz")
    assert first.keys() == second.keys()
    assert all(same_bits(first[k], second[k]) for k in first)
    snn.save(after, tmp_path / "again.npz")  # a loaded graph saves to the same file contents
    third = entries(tmp_path / "again.npz")
    assert third.keys() == first.keys() and all(same_bits(first[k], third[k]) for k in first)


def test_graph_round_trip_with_the_reference_backend(tmp_path):
    graph = mixed_graph()
    snn.save(graph, tmp_path / "graph.npz")
    assert_same_graph_run(graph, snn.load(tmp_path / "graph.npz"), 40, backend="reference")


def test_graph_delay_groups_are_merged_back_in_order(tmp_path):
    """Per presynaptic neuron, synapses of different delays interleaved in
    any order: the loaded groups are the original ones, row order kept."""
    rng = np.random.default_rng(8)
    g = snn.Graph()
    a, b = g.population(50, name="a"), g.population(60, name="b")
    rowptr, cols = snn.fixed_probability(50, 60, 0.5, seed=9)
    g.connect(
        a,
        b,
        rng.normal(0.0, 1.0, len(cols)),
        connectivity=(rowptr, cols),
        delay=rng.choice([0, 2, 5, 7], len(cols)),
    )
    rowptr, cols = snn.fixed_probability(60, 50, 0.05, seed=10)
    g.connect(b, a, 0.5, connectivity=(rowptr, cols), delay=np.full(len(cols), 4))  # per synapse, one value
    assert g.projections[0].delays == [0, 2, 5, 7] and g.projections[1].delays == [4]
    snn.save(g, tmp_path / "graph.npz")
    assert_same_graph(g, snn.load(tmp_path / "graph.npz"))


def test_graph_projection_without_synapses_round_trips(tmp_path):
    g = snn.Graph()
    a, b = g.population(3, name="a"), g.population(2, name="b")
    g.connect(a, b, np.zeros((2, 3)), delay=3)
    g.connect(
        a,
        b,
        np.zeros(0),
        connectivity=(np.zeros(4, np.int64), np.zeros(0, np.int32)),
        delay=np.zeros(0, np.int64),
    )
    snn.save(g, tmp_path / "graph.npz")
    assert_same_graph(g, snn.load(tmp_path / "graph.npz"))


def test_manifest_of_a_tiny_graph(tmp_path):
    g = snn.Graph(dt=0.5, dtype=np.float32)
    inp = g.input(2, name="in")
    out = g.population(2, snn.IF(), bias=[0.0, 0.25], name="out")
    g.connect(inp, out, [0.5, 0.75], connectivity=([0, 1, 2], [1, 0]), delay=[2, 1])
    g.poisson_input(out, n_trains=3, rate=10.0, weight=0.5)
    snn.save(g, tmp_path / "tiny.npz")
    arrays = entries(tmp_path / "tiny.npz")
    manifest = json.loads(str(arrays.pop("manifest")))
    assert manifest == {
        "format": "snn-zero-waste network",
        "format_version": 1,
        "snn_version": snn.__version__,
        "network": {
            "type": "Graph",
            "dt": 0.5,
            "dtype": "float32",
            "populations": [
                {"name": "in", "n": 2, "neuron": None},
                {
                    "name": "out",
                    "n": 2,
                    "neuron": {
                        "type": "Neuron",
                        "beta": 1.0,
                        "alpha": None,
                        "threshold": 1.0,
                        "reset": "subtract",
                        "v_reset": 0.0,
                        "refractory": 0,
                        "name": "IF",
                    },
                    "mode": "auto",
                },
            ],
            "projections": [
                {"name": "in->out", "source": "in", "target": "out", "weight": None, "delays": [1, 2]}
            ],
            "sources": [{"target": "out", "n_trains": 3, "rate": 10.0, "weight": 0.5}],
        },
    }
    expected = {
        "population1.bias": np.array([0.0, 0.25]),
        "population1.v_init": np.zeros(2),
        "projection0.group0.rowptr": np.array([0, 0, 1], np.int64),
        "projection0.group0.cols": np.array([0], np.int32),
        "projection0.group0.weights": np.array([0.75], np.float32),
        "projection0.group1.rowptr": np.array([0, 1, 1], np.int64),
        "projection0.group1.cols": np.array([1], np.int32),
        "projection0.group1.weights": np.array([0.5], np.float32),
    }
    assert arrays.keys() == expected.keys()
    assert all(same_bits(arrays[k], v) for k, v in expected.items())


def graph_record(manifest) -> dict:
    return manifest["network"]


def projection(k):
    return lambda m: graph_record(m)["projections"][k]


def _empty_group(path):
    """Projection 2 (dense, delay 0) given a second, empty group."""
    arrays = entries(path)
    manifest = json.loads(str(arrays["manifest"]))
    projection(2)(manifest)["delays"] = [0, 5]
    arrays["manifest"] = np.array(json.dumps(manifest))
    n_source = len(arrays["projection2.group0.rowptr"]) - 1
    arrays["projection2.group1.rowptr"] = np.zeros(n_source + 1, np.int64)
    arrays["projection2.group1.cols"] = np.zeros(0, np.int32)
    arrays["projection2.group1.weights"] = np.zeros(0, np.float32)
    write_entries(path, arrays)


GRAPH_LOAD_ERRORS = {
    "unknown-source": (
        _set("source", "nowhere", projection(1)),
        r"projection1: its source names an unknown population 'nowhere'",
    ),
    "unknown-target": (
        _set("target", "nowhere", projection(0)),
        r"projection0: its target names an unknown population 'nowhere'",
    ),
    "unknown-poisson-target": (
        _set("target", "gone", lambda m: graph_record(m)["sources"][0]),
        r"source0: its target names an unknown population 'gone'",
    ),
    "target-is-input": (
        _set("target", "in", projection(0)),
        r"projection0: cannot rebuild the projection: target 'in' is an input",
    ),
    "missing-cols": (
        _drop_array("projection0.group1.cols"),
        r"projection0: array 'projection0.group1.cols' is missing",
    ),
    "missing-rowptr": (
        _drop_array("projection1.group0.rowptr"),
        r"projection1: array 'projection1.group0.rowptr' is missing",
    ),
    "missing-weights": (
        _drop_array("projection0.group2.weights"),
        r"projection0: array 'projection0.group2.weights' is missing",
    ),
    "shared-weight-made-per-synapse": (
        _set("weight", None, projection(1)),
        r"projection1: array 'projection1.group0.weights' is missing",
    ),
    "cols-int64": (
        _replace_array("projection0.group0.cols", lambda c: c.astype(np.int64)),
        r"projection0: array 'projection0.group0.cols' is int64 .* expected int32",
    ),
    "rowptr-int32": (
        _replace_array("projection1.group2.rowptr", lambda r: r.astype(np.int32)),
        r"'projection1.group2.rowptr' is int32 .* expected int64",
    ),
    "weights-float64": (
        _replace_array("projection0.group1.weights", lambda w: w.astype(np.float64)),
        r"'projection0.group1.weights' is float64 .* expected float32",
    ),
    "short-rowptr": (
        _replace_array("projection0.group1.rowptr", lambda r: r[:-1]),
        r"projection0: group 1 \(delay 2\): rowptr must be",
    ),
    "short-cols": (
        _replace_array("projection1.group0.cols", lambda c: c[1:]),
        r"projection1: group 0 \(delay 1\): rowptr must be",
    ),
    "short-weights": (
        _replace_array("projection0.group2.weights", lambda w: w[1:]),
        r"projection0: group 2 \(delay 3\): weights has shape",
    ),
    "cols-out-of-range": (
        _replace_array("projection3.group0.cols", lambda c: c + 1000),
        r"projection3: cannot rebuild the projection: cols must index targets",
    ),
    "delays-not-increasing": (_set("delays", [1, 3, 2], projection(0)), "delays must be strictly increasing"),
    "delays-not-integers": (_set("delays", [1, 2.5, 3], projection(0)), "delays must be a non-empty list"),
    "fewer-delays-than-groups": (
        _set("delays", [1, 2], projection(0)),
        "arrays that no record reads: "
        + re.escape(", ".join(f"projection0.group2.{a}" for a in ("cols", "rowptr", "weights")))
        + "$",
    ),
    "stray-weights": (
        _add_array("projection3.group0.weights", np.zeros(3, np.float32)),
        r"arrays that no record reads: projection3\.group0\.weights$",
    ),
    "more-delays-than-groups": (
        _set("delays", [1, 2, 3, 4], projection(0)),
        "'projection0.group3.rowptr' is missing",
    ),
    "empty-group": (_empty_group, r"projection2: group 1 \(delay 5\) has no synapses"),
    "zero-delay-cycle": (
        _set("delays", [0], projection(3)),
        "projection3: cannot rebuild the projection: zero-delay projections form a cycle",
    ),
    "recurrent-zero-delay": (_set("delays", [0, 2, 3], projection(1)), "delay < 1 on a recurrent projection"),
    "population-not-object": (
        _set(1, 7, lambda m: graph_record(m)["populations"]),
        "population1: expected a JSON object",
    ),
    "populations-not-list": (
        _set("populations", {"a": 1}, graph_record),
        "field 'populations' must be a list",
    ),
    "duplicate-population": (
        _set("name", "cuba", lambda m: graph_record(m)["populations"][2]),
        "population2: cannot rebuild the population: a population named 'cuba'",
    ),
    "refused-size": (
        _set("n", 0, lambda m: graph_record(m)["populations"][0]),
        "population0: cannot rebuild the population: population size must be",
    ),
    "short-v-init": (
        _replace_array("population1.v_init", lambda v: v[1:]),
        "population1: cannot rebuild the population: v_init must",
    ),
    "missing-bias": (_drop_array("population2.bias"), "population2: array 'population2.bias' is missing"),
    "refused-neuron": (
        _set("alpha", 2.0, lambda m: graph_record(m)["populations"][1]["neuron"]),
        r"population1\.neuron: cannot rebuild the Neuron: alpha must be in \[0, 1\]",
    ),
    "refused-rate": (
        _set("rate", -1.0, lambda m: graph_record(m)["sources"][1]),
        "source1: cannot rebuild the Poisson source: rate must be >= 0",
    ),
    "refused-dt": (_set("dt", 0.0, graph_record), "network: cannot rebuild the Graph: dt must be"),
    "missing-field": (_delete("weight", projection(2)), "projection2: the record has no field 'weight'"),
}


@pytest.mark.parametrize("corrupt, message", GRAPH_LOAD_ERRORS.values(), ids=GRAPH_LOAD_ERRORS.keys())
def test_graph_load_errors_name_the_file_and_the_record(corrupt, message, tmp_path):
    path = tmp_path / "graph.npz"
    graph = mixed_graph()
    assert [len(p.groups) for p in graph.projections] == [3, 3, 1, 1, 1]
    snn.save(graph, path)
    corrupt(path)
    with pytest.raises(ValueError, match=message) as err:
        snn.load(path)
    assert isinstance(err.value, snn.io.FileFormatError)
    assert str(err.value).startswith(f"{path}: ")


def test_save_names_both_kinds_of_network(tmp_path):
    with pytest.raises(TypeError, match=r"takes a network \(snn.Network or snn.Graph\), got a Neuron"):
        snn.save(mixed_graph()["cuba"].neuron, tmp_path / "neuron.npz")


# ---------------------------------------------------------------------------
# Hardening: crafted files give FileFormatError, never a crash or a huge allocation
# ---------------------------------------------------------------------------


def _manifest_text(text):
    return _replace_array("manifest", np.array(text))


def _nested_networks(depth):
    def edit(m):
        record = {"type": "Linear"}
        for _ in range(depth):
            record = {"type": "Network", "dtype": "float64", "layers": [record]}
        m["network"] = record

    return lambda path: edit_manifest(path, edit)


def _npy_entry(name, header_shape, payload: np.ndarray, allow_pickle=False):
    """Add entry ``name`` whose .npy header declares ``header_shape`` but holds ``payload``'s bytes."""

    def edit(path):
        import io
        import zipfile

        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, payload, allow_pickle=allow_pickle)
        raw = buffer.getvalue()
        old = repr(payload.shape).encode()
        new = repr(header_shape).encode()
        raw = raw.replace(old, new.ljust(len(old)) if len(new) < len(old) else new, 1)
        magic_len = 10  # version 1.0: the header length is a 2-byte field at offset 8
        header_len = raw.index(b"\n") + 1 - magic_len
        raw = raw[:8] + header_len.to_bytes(2, "little") + raw[magic_len:]
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(f"{name}.npy", raw)

    return edit


HARDENING_ERRORS = {
    "object-nested-100000-deep": (
        _manifest_text('{"a": ' * 100_000 + "1" + "}" * 100_000),
        "nests deeper than 32 levels",
    ),
    "list-nested-100000-deep": (_manifest_text("[" * 100_000 + "]" * 100_000), "nests deeper"),
    "list-nested-500-deep": (_manifest_text("[" * 500 + "]" * 500), "nests deeper"),
    "networks-nested-40-deep": (_nested_networks(40), "nests deeper"),
    "nan-constant": (
        lambda p: edit_manifest(p, lambda m: layer0(m)["neuron"].__setitem__("beta", math.nan)),
        "not valid JSON.*NaN",
    ),
    "size-as-string": (_set("n_in", "20"), "layer0: field 'n_in' must be an integer"),
    "size-as-bool": (_set("n_out", True), "layer0: field 'n_out' must be an integer"),
    "size-beyond-int64": (_set("n_in", 10**400), "layer0: field 'n_in' must be an integer"),
    "int-beyond-int64": (
        _set("refractory", 10**30, lambda m: layer0(m)["neuron"]),
        r"layer0\.neuron: field 'refractory' must be an integer",
    ),
    "number-as-list": (
        _set("beta", [0.5], lambda m: layer0(m)["neuron"]),
        r"layer0\.neuron: field 'beta' must be a number",
    ),
    "name-as-object": (_set("name", {"a": 1}), "layer0: field 'name' must be a string or null"),
    "mode-as-list": (_set("mode", ["event"]), "layer0: field 'mode' must be a string"),
    "dtype-as-object": (_set("dtype", {"x": 1}, lambda m: m["network"]), "field 'dtype' must be a string"),
    "layers-as-object": (_set("layers", {}, lambda m: m["network"]), "field 'layers' must be a list"),
    "neuron-as-list": (_set("neuron", [1]), "layer0: field 'neuron' must be a JSON object"),
    "maxpool-of-a-trillion-inputs": (
        lambda p: edit_manifest(
            p,
            lambda m: m["network"]["layers"].insert(
                0, {"type": "MaxPool2d", "in_shape": [10**4, 10**4, 10**4], "kernel_size": 2, "name": None}
            ),
        ),
        "layer0: field 'in_shape' must be three positive integers",
    ),
    "npy-header-declares-80-terabytes": (
        _npy_entry("extra", (10**13,), np.zeros(3)),
        r"array 'extra' declares float64 of shape \(10000000000000,\)",
    ),
    "npy-header-declares-too-few-bytes": (_npy_entry("extra", (2,), np.zeros(3)), "array 'extra' declares"),
    "object-array": (
        _npy_entry("extra", (2,), np.array([1, "a"], dtype=object), allow_pickle=True),
        "Python objects",
    ),
}


@pytest.mark.parametrize("corrupt, message", HARDENING_ERRORS.values(), ids=HARDENING_ERRORS.keys())
def test_crafted_files_give_the_format_error(corrupt, message, tmp_path):
    """Each crafted file was a RecursionError, a MemoryError, a silently
    loaded wrong network, or an error from deep inside a constructor."""
    path = tmp_path / "net.npz"
    snn.save(dense_network(), path)
    corrupt(path)
    with pytest.raises(snn.io.FileFormatError, match=message) as err:
        snn.load(path)
    assert str(err.value).startswith(f"{path}: ")


GRAPH_HARDENING = {
    "input-of-1e15-neurons": (
        _set("n", 10**15, lambda m: graph_record(m)["populations"][0]),
        "population0: field 'n' must be an integer of at most 2147483647",
    ),
    "population-name-as-list": (
        _set("name", [1], lambda m: graph_record(m)["populations"][0]),
        "population0: field 'name' must be a string or null",
    ),
    "source-target-as-int": (
        _set("target", 3, lambda m: graph_record(m)["sources"][0]),
        "source0: field 'target' must be a string",
    ),
    "dt-as-string": (_set("dt", "1e-3", graph_record), "network: field 'dt' must be a number"),
}


@pytest.mark.parametrize("corrupt, message", GRAPH_HARDENING.values(), ids=GRAPH_HARDENING.keys())
def test_crafted_graph_files_give_the_format_error(corrupt, message, tmp_path):
    path = tmp_path / "graph.npz"
    snn.save(mixed_graph(), path)
    corrupt(path)
    with pytest.raises(snn.io.FileFormatError, match=message):
        snn.load(path)


def _json_values():
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.sampled_from(["inf", "float32", "subtract", "Linear", "Network", "in"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    )


def _paths(value, prefix=()):
    """Every (container path) in a JSON value where a field or item can be replaced."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            yield (*prefix, k)
            yield from _paths(item, (*prefix, k))


@pytest.mark.parametrize("make", [dense_network, pooling_network, maxpool_network, mixed_graph])
def test_any_edit_of_the_manifest_loads_or_gives_the_format_error(make, tmp_path):
    """Property: replacing any one field of a valid manifest by any JSON
    value gives a network or a FileFormatError, never another exception."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    path = tmp_path / "net.npz"
    snn.save(make(), path)
    arrays = entries(path)
    manifest = json.loads(str(arrays["manifest"]))
    paths = sorted(_paths(manifest["network"]), key=repr)

    @settings(
        max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.sampled_from(paths), _json_values())
    def check(where, value):
        edited = json.loads(json.dumps(manifest))
        container = edited["network"]
        for key in where[:-1]:
            container = container[key]
        container[where[-1]] = value
        write_entries(path, {**arrays, "manifest": np.array(json.dumps(edited))})
        try:
            snn.load(path)
        except snn.io.FileFormatError:
            pass

    check()


def test_graph_with_max_pool_gates_round_trips(tmp_path):
    """A gate comes back with its source and windows, in its place among
    the populations, and runs the same."""
    rng = np.random.default_rng(1)
    g = snn.Graph()
    x = g.input((2, 6, 6), name="x")
    h = g.population((3, 6, 6), snn.IF(), name="h")
    g.conv(x, h, rng.normal(size=(3, 2, 3, 3)), padding=1, delay=0)
    gate = g.max_pool(h, 3, 2, 1, name="stem_pool")
    o = g.population(4, snn.IF(), name="o")
    g.connect(gate, o, rng.normal(size=(4, gate.n)), delay=0)
    snn.save(g, tmp_path / "gate.npz")
    back = snn.load(tmp_path / "gate.npz")
    assert repr(back) == repr(g)
    assert [p.name for p in back.populations] == ["x", "h", "stem_pool", "o"]
    pool = back["stem_pool"].pool
    assert (pool.kernel_size, pool.stride, pool.padding) == ((3, 3), (2, 2), (1, 1))
    assert assert_same_graph_run(g, back, 12).spikes("stem_pool").any()


def test_graph_with_convolutions_round_trips(tmp_path):
    """Shaped populations and convolutions (a merge, a recurrence) come back
    exactly: same shapes, kernels, windows, delays and runs."""
    rng = np.random.default_rng(0)
    g = snn.Graph()
    x = g.input((2, 5, 5), name="x")
    h = g.population((4, 5, 5), snn.IF(), name="h")
    o = g.population((2, 3, 3), snn.LIF(beta=0.5), name="o")
    g.conv(x, h, rng.normal(size=(4, 2, 3, 3)), padding=1, delay=0)
    g.conv(h, h, rng.normal(size=(4, 2, 3, 3)) * 0.3, padding=1, groups=2, delay=1)
    g.conv(h, o, rng.normal(size=(2, 4, 2, 2)), stride=2, padding=1, dilation=(1, 1), delay=2, name="down")
    g.connect(x, o, rng.normal(size=(18, 50)) * 0.1, delay=1)
    snn.save(g, tmp_path / "conv.npz")
    back = snn.load(tmp_path / "conv.npz")
    assert repr(back) == repr(g)
    assert [p.shape for p in back.populations] == [(2, 5, 5), (4, 5, 5), (2, 3, 3)]
    for a, b in zip(g.projections[:3], back.projections[:3]):
        assert b.kind == "conv" and same_bits(a.kernel, b.kernel) and same_bits(a.geom, b.geom)
        assert a.delay == b.delay and a.name == b.name
    result = assert_same_graph_run(g, back, 12)
    assert result.spikes("o").any()
