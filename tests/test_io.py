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
  name, newer or invalid format version, missing array, wrong dtype or
  shape, missing field, unknown type, values the constructors refuse.
- Errors on save: unregistered types (``TypeError`` saying how to register),
  what cannot be stored exactly; and a registered plug-in type round-trips.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import snn
import snn.io

T, BATCH = 16, 3


# ---------------------------------------------------------------------------
# Networks covering every layer type, neuron model and option
# ---------------------------------------------------------------------------

def dense_network(dtype=np.float64) -> snn.Network:
    rng = np.random.default_rng(0)
    return snn.Network([
        snn.Linear(20, 16, snn.LIF(beta=0.9, refractory=2), weight=rng.normal(0.15, 0.3, (16, 20)),
                   bias=rng.normal(0.0, 0.05, 16), v_init=rng.uniform(0.0, 0.5, 16), mode="event", name="in"),
        snn.SparseLinear.random(16, 12, 0.5, weight=lambda r, n: r.normal(0.4, 0.3, n),
                                neuron=snn.CubaLIF(beta=0.85, alpha=0.6, reset="zero"), seed=1, bias=0.01,
                                mode="dense", name="sparse"),
        snn.SparseLinear.from_dense(np.where(rng.random((10, 12)) < 0.6, rng.normal(0.5, 0.3, (10, 12)), 0.0),
                                    snn.LIF(tau_mem=7.0, threshold=0.7, reset="value", v_reset=-0.2),
                                    v_init=0.1),
        snn.Linear(10, 4, snn.IF(threshold=math.inf), weight=rng.normal(0.0, 0.5, (4, 10)), name="readout"),
    ], dtype=dtype)


def conv_network(dtype=np.float64) -> snn.Network:
    """Like a converted CNN: Conv2d -> AvgPool2d -> Flatten -> Linear readout, IF neurons."""
    rng = np.random.default_rng(1)
    return snn.Network([
        snn.Conv2d((2, 8, 8), 4, 3, snn.IF(), padding=1, weight=rng.normal(0.2, 0.3, (4, 2, 3, 3)),
                   bias=rng.normal(0.0, 0.05, 4), v_init=0.5, name="conv"),
        snn.AvgPool2d((4, 8, 8), 2, v_init=0.5, name="pool"),
        snn.Flatten(),
        snn.Linear(64, 5, snn.IF(threshold=math.inf), weight=rng.normal(0.0, 0.3, (5, 64)), name="fc"),
    ], dtype=dtype)


def pooling_network(dtype=np.float64) -> snn.Network:
    """Conv2d with every geometry option -> AvgPool2d with its options -> MaxPool2d -> Linear."""
    rng = np.random.default_rng(2)
    conv = snn.Conv2d((2, 11, 9), 4, (3, 2), snn.LIF(beta=0.95, reset="zero", refractory=1), stride=(1, 2),
                      padding=(1, 0), dilation=(2, 1), groups=2, weight=rng.normal(0.5, 0.3, (4, 1, 3, 2)),
                      v_init=rng.uniform(0.0, 0.5, 4 * 9 * 4), mode="dense")
    avg = snn.AvgPool2d(conv.out_shape, 3, stride=1, padding=1, dilation=1,
                        neuron=snn.CubaLIF(beta=0.9, alpha=0.5, threshold=0.5), bias=[0.0, 0.01, 0.02, 0.03],
                        mode="event")
    maxpool = snn.MaxPool2d(avg.out_shape, 2, name="max")
    return snn.Network([
        conv, avg, maxpool,
        snn.Linear(maxpool.n_out, 3, snn.IF(threshold=2.0, reset="value", v_reset=-1.0),
                   weight=rng.normal(0.5, 0.5, (3, maxpool.n_out))),
    ], dtype=dtype)


NETWORKS = {
    "dense-float64": lambda: dense_network(),
    "dense-float32": lambda: dense_network(np.float32),
    "conv-float64": lambda: conv_network(),
    "conv-float32": lambda: conv_network(np.float32),
    "pooling": lambda: pooling_network(),
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
            assert [(type(getattr(value, f)), getattr(value, f)) for f in fields] == \
                   [(type(getattr(other, f)), getattr(other, f)) for f in fields], key
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
            assert (same_bits(va, vb) if isinstance(va, np.ndarray) else va == vb), (k, f.name)
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
    assert [type(layer) for layer in snn.load(tmp_path / "net.npz").layers] == [snn.Conv2d, snn.AvgPool2d,
                                                                                 snn.Linear]


def test_converted_network_round_trips(tmp_path):
    torch = pytest.importorskip("torch")
    from snn.convert import convert
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(64, 3)).eval()
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
    network = snn.Network([snn.Linear(2, 3, snn.LIF(beta=0.5, threshold=math.inf), weight=np.ones((3, 2)),
                                      name="only")], dtype=np.float32)
    snn.save(network, tmp_path / "tiny.npz")
    with np.load(tmp_path / "tiny.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["layer0.bias", "layer0.v_init", "layer0.weight", "manifest"]
        manifest = json.loads(str(npz["manifest"]))
    assert manifest == {
        "format": "snn-zero-waste network", "format_version": 1, "snn_version": snn.__version__,
        "network": {"type": "Network", "dtype": "float32", "layers": [{
            "type": "Linear", "n_in": 2, "n_out": 3, "mode": "auto", "name": "only",
            "neuron": {"type": "Neuron", "beta": 0.5, "alpha": None, "threshold": "inf", "reset": "subtract",
                       "v_reset": 0.0, "refractory": 0, "name": "LIF"}}]}}


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
    "malformed-json": (_replace_array("manifest", np.array('{"format": "snn-zero-waste network",')),
                       "not valid JSON"),
    "manifest-not-object": (_replace_array("manifest", np.array("[1, 2]")), "not an snn network file"),
    "wrong-format-name": (_set("format", "another format", lambda m: m), "not an snn network file"),
    "newer-version": (_set("format_version", 2, lambda m: m), "newer than this snn.*upgrade"),
    "version-not-int": (_set("format_version", "1", lambda m: m), "format_version must be a positive integer"),
    "no-network-record": (_delete("network", lambda m: m), "no 'network' record"),
    "missing-array": (_drop_array("layer0.weight"), "layer0: array 'layer0.weight' is missing"),
    "wrong-dtype": (_replace_array("layer0.weight", lambda w: w.astype(np.float64)),
                    "'layer0.weight' is float64 .* expected float32"),
    "wrong-ndim": (_replace_array("layer1.cols", lambda c: c[None]), "'layer1.cols' is int32 of shape"),
    "wrong-shape": (_replace_array("layer0.weight", lambda w: np.ascontiguousarray(w.T)),
                    "layer0: cannot rebuild the Linear: weight must have shape"),
    "short-bias": (_replace_array("layer2.bias", lambda b: b[1:]), "layer2: cannot rebuild.*bias must be"),
    "inconsistent-csr": (_replace_array("layer1.cols", lambda c: c[1:]), "layer1: cannot rebuild the SparseLinear"),
    "missing-field": (_delete("n_in"), "layer0: the Linear record has no field 'n_in'"),
    "unknown-type": (_set("type", "Bogus"), "layer0: unknown type 'Bogus'"),
    "record-not-object": (lambda p: edit_manifest(p, lambda m: m["network"]["layers"].append(3)),
                          "layer4: expected a JSON object"),
    "refused-mode": (_set("mode", "fast"), "layer0: cannot rebuild the Linear: mode must be"),
    "refused-neuron": (_set("beta", 1.5, lambda m: layer0(m)["neuron"]),
                       r"layer0\.neuron: cannot rebuild the Neuron: beta must be in \[0, 1\]"),
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
        return {"n_in": layer.n_in, "n_out": layer.n_out, "scale": layer.scale,
                "neuron": out.part("neuron", layer.neuron)}

    def from_record(src):
        return ScaledLinear(src["n_in"], src["n_out"], src.part("neuron", src["neuron"]), scale=src["scale"],
                            weight=src.array("weight", np.float32, 2))

    snn.io.register(ScaledLinear, to_record, from_record)
    network = snn.Network([ScaledLinear(3, 2, snn.IF(threshold=0.5), scale=2.0, weight=np.full((2, 3), 0.25))])
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


def test_float32_decay_of_a_hand_built_neuron_is_refused(tmp_path):
    neuron = snn.Neuron(beta=np.float32(0.9), name="LIF")  # its propagator is computed in float32
    with pytest.raises(TypeError, match="beta is a float32"):
        snn.save(snn.Network([snn.Linear(2, 2, neuron)]), tmp_path / "net.npz")
