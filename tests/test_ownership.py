"""The library owns what it keeps (STYLE.md, "own what you keep"): arrays a
user passes to a layer, a population or a projection are copied when they
are validated, never kept by reference, never made read-only in the
caller's hands; what the library keeps cannot be changed in place, and a new
value assigned to a parameter is validated like the constructor's.

Each test changes the caller's arrays after construction (to values that
would crash a kernel or silently change the answer had they been kept) and
checks that the network still computes what it was built with.
"""

from __future__ import annotations

import numpy as np
import pytest

import snn

T = 6


def _spikes(n, batch=2, seed=0):
    return snn.bernoulli(np.full((batch, n), 0.5), T=T, seed=seed)


def _spoil(arrays):
    """Overwrite the caller's arrays with values a kernel must never see."""
    for arr in arrays:
        assert arr.flags.writeable, "the library made the caller's array read-only"
        if arr.dtype.kind in "iu":
            arr[...] = np.iinfo(arr.dtype).max  # out of range as an index or an offset
        else:
            arr[...] = np.nan


def _same_run(a, b, x):
    ra, rb = a.run(x), b.run(x)
    for k in range(len(a.layers)):
        np.testing.assert_array_equal(ra.spikes(k), rb.spikes(k))
    np.testing.assert_array_equal(ra.membrane, rb.membrane)


def _linear(arrays):
    w, bias, v_init = arrays
    return snn.Linear(4, 3, snn.IF(threshold=0.5), weight=w, bias=bias, v_init=v_init)


def _linear_fortran(arrays):
    (w,) = arrays
    return snn.Linear(4, 3, snn.IF(threshold=0.5), weight=w)


def _sparse(arrays):
    rowptr, cols, weights = arrays
    return snn.SparseLinear(4, 3, snn.IF(threshold=0.5), rowptr=rowptr, cols=cols, weights=weights)


def _coo(arrays):
    pre, post, weights = arrays
    return snn.SparseLinear.from_coo(4, 3, pre, post, weights, snn.IF(threshold=0.5))


def _conv(arrays):
    w, bias = arrays
    return snn.Conv2d((1, 2, 2), 1, 2, snn.IF(threshold=0.5), weight=w, bias=bias)


LAYERS = {
    "Linear": (
        _linear,
        lambda: [np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), np.full(3, 0.1), np.full(3, 0.2)],
    ),
    "Linear, Fortran order": (
        _linear_fortran,
        lambda: [np.asfortranarray(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))],
    ),
    "SparseLinear": (
        _sparse,
        lambda: [
            np.array([0, 2, 3, 3, 5], np.int64),
            np.array([0, 2, 1, 0, 1], np.int32),
            np.array([0.5, 0.7, 0.9, 0.3, 0.6], np.float32),
        ],
    ),
    "SparseLinear.from_coo": (
        _coo,
        lambda: [np.array([0, 1, 3, 3]), np.array([2, 0, 1, 2]), np.array([0.6, 0.7, 0.8, 0.9], np.float32)],
    ),
    "Conv2d": (_conv, lambda: [np.ones((1, 1, 2, 2), np.float32) * 0.3, np.array([0.1])]),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_layers_copy_the_arrays_they_are_given(kind):
    build, make = LAYERS[kind]
    given = make()
    layer = build(given)
    reference = snn.Network([build(make())])
    _spoil(given)
    _same_run(snn.Network([layer]), reference, _spikes(layer.n_in))


def test_layer_arrays_cannot_be_changed_in_place():
    layer = _sparse(LAYERS["SparseLinear"][1]())
    for name in ("rowptr", "cols", "weights", "bias", "v_init"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(layer, name)[0] = 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, np.ones(5)])
def test_v_init_is_checked_when_assigned(bad):
    layer = snn.Linear(4, 3)
    with pytest.raises(ValueError, match="v_init"):
        layer.v_init = bad


def test_v_init_assigned_is_copied_and_used():
    layer = snn.Linear(4, 3, snn.IF(threshold=10.0), weight=np.zeros((3, 4)))
    v0 = np.array([1.0, 2.0, 3.0])
    layer.v_init = v0
    v0[:] = np.nan
    result = snn.Network([layer]).run(_spikes(4))
    np.testing.assert_array_equal(result.membrane, [[1.0, 2.0, 3.0]] * 2)


def _graph(rowptr, cols, weights, delay, bias, v_init):
    g = snn.Graph()
    inp = g.input(4, name="in")
    pop = g.population(3, snn.IF(threshold=0.5), bias=bias, v_init=v_init, name="out")
    g.connect(inp, pop, weights, connectivity=(rowptr, cols), delay=delay)
    g.connect(pop, pop, 0.25, connectivity=(np.array([0, 1, 2, 3]), np.array([1, 2, 0])), delay=1)
    return g


def _graph_arrays(delays="per synapse"):
    """Arrays of the dtypes the kernels use (nothing to convert, so nothing
    copied by accident); one delay for all synapses or one each."""
    return [
        np.array([0, 2, 3, 3, 5], np.int64),
        np.array([0, 2, 1, 0, 1], np.int32),
        np.array([0.5, 0.7, 0.9, 0.3, 0.6], np.float32),
        np.array([0, 1, 2, 0, 1], np.int64) if delays == "per synapse" else np.array(1),
        np.full(3, 0.05),
        np.full(3, 0.1),
    ]


@pytest.mark.parametrize("delays", ["per synapse", "shared"])
@pytest.mark.parametrize("spoil_after", ["connect", "first run"])
def test_graphs_copy_the_arrays_they_are_given(spoil_after, delays):
    given = _graph_arrays(delays)
    g, reference = _graph(*given), _graph(*_graph_arrays(delays))
    x = {"in": _spikes(4)}
    if spoil_after == "first run":
        g.run(T, inputs=x)
    _spoil(given)
    a, b = g.run(T, inputs=x), reference.run(T, inputs=x)
    np.testing.assert_array_equal(a.spikes("out"), b.spikes("out"))


def test_graph_dense_weights_are_copied():
    w = np.full((3, 4), 0.4, np.float32)
    g = snn.Graph()
    inp, pop = g.input(4), g.population(3, snn.IF(threshold=0.5))
    g.connect(inp, pop, w, delay=0)
    before = g.run(T, inputs={inp: _spikes(4)}).spikes(pop.name)
    _spoil([w])
    np.testing.assert_array_equal(g.run(T, inputs={inp: _spikes(4)}).spikes(pop.name), before)


def test_graph_handles_expose_read_only_arrays():
    g = _graph(*_graph_arrays())
    for moment in ("built", "run"):
        pop = g["out"]
        arrays = [pop.bias, pop.v_init]
        for proj in g.projections:
            arrays += [a for _, *group in proj.groups for a in group if a is not None]
        for arr in arrays:
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = arr[0]
        if moment == "built":
            g.run(T, inputs={"in": _spikes(4)})
