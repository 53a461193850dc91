"""The spikes of neurons due to fire on their own leave an event layer kernel
in index order (``kernels.event._close_step``): a calendar bucket lists its
neurons in the order they were scheduled, which a run cut into chunks
changes, and the order of a step's spikes is that of their delivery
downstream (so of the rounding of float32 sums there). A step with no input
touches only due neurons, so its spikes are in increasing index order, in
every kernel that keeps a calendar (CSR, dense, conv; event path), with few
due (an insertion sort) and many (marks read back in index order), and the
results are the reference backend's (exact arithmetic: IF neurons, dyadic
values)."""

from __future__ import annotations

import numpy as np
import pytest

import snn


def _layer(kind, neuron, rng, n_side, bias):
    if kind == "csr":
        n = n_side * n_side * 4
        rowptr, cols = snn.fixed_in_degree(5, n, 2, seed=1)
        weights = np.full(len(cols), 0.25, np.float32)
        layer = snn.SparseLinear(
            5, n, neuron, rowptr=rowptr, cols=cols, weights=weights, bias=bias(n), v_init=bias(n) * 8
        )
        return layer, 5
    if kind == "dense":
        n = n_side * n_side * 4
        weight = rng.integers(-2, 3, (n, 5)).astype(np.float32) / 4
        return snn.Linear(5, n, neuron, weight=weight, bias=bias(n), v_init=bias(n) * 8), 5
    layer = snn.Conv2d(
        (1, n_side, n_side),
        4,
        3,
        neuron,
        padding=1,
        weight=np.full((4, 1, 3, 3), 0.25, np.float32),
        bias=bias(4)[:4],
        v_init=0.0,
    )
    return layer, n_side * n_side


@pytest.mark.parametrize("kind", ["csr", "dense", "conv"])
@pytest.mark.parametrize("n_side", [4, 40])  # about 8 and 800 neurons due per step
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("refractory", [0, 2])
def test_self_driven_spikes_leave_in_index_order(kind, n_side, dtype, refractory):
    rng = np.random.default_rng(n_side + refractory)

    def bias(n):  # periods of 2 to 16 steps, in a random order of the neurons
        return rng.integers(1, 9, n) / 16

    neuron = snn.IF(threshold=1.0, refractory=refractory)
    layer, n_in = _layer(kind, neuron, rng, n_side, bias)
    T = 40
    x = np.zeros((T, 2, n_in), np.uint8)
    x[5, 0, :2] = 1  # one step with input: its spikes are not all due ones
    event = snn.Network([layer], dtype=dtype).run(x, mode="event")
    reference = snn.Network([layer], dtype=dtype).run(x, backend="reference")
    trains = event.trains[0]
    due_per_step = []
    for b in range(2):
        for t in range(T):
            spikes = trains.idx[b, trains.tptr[b, t] : trains.tptr[b, t + 1]]
            if not (b == 0 and t == 5):
                np.testing.assert_array_equal(spikes, np.sort(spikes), err_msg=f"sample {b} step {t}")
            due_per_step.append(len(spikes))
    assert max(due_per_step) > (32 if n_side == 40 else 2)
    # the same spikes (the step with input lists them in another order)
    got, want = (np.unique(r.trains[0].to_events(), axis=0) for r in (event, reference))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(event.membrane, reference.membrane)
