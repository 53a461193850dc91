"""The CONV clock kernel's spikes with a spike buffer smaller than every
neuron at every step (``kernels.event._conv_sweep``: a branch-free append
while a whole step fits, a checked one after): the same spikes, steps,
counts and final state as with room for every neuron at every step, for
stride, padding, dilation, groups, DIGITS-CNN's second convolution, one
sample and several. DIGITS-CNN's second layer runs this way at T = 4 (its
buffer, sized from the input, holds fewer indices than its 2048 neurons).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_conv_delivery import GEOMETRIES, _clock, _raster, dyadic_weights, geometry

import snn_kernels as kernels
from snn_kernels.event import OK
from snn_kernels.neuron import V

DIGITS_CONV2 = (16, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("args", [*GEOMETRIES, DIGITS_CONV2])
@pytest.mark.parametrize("batch", [1, 4])
def test_small_spike_buffer_gives_the_same_spikes(args, batch):
    geom = geometry(*args)
    rng = np.random.default_rng(4)
    flat = dyadic_weights(geom, rng)
    n = int(geom[3] * geom[4] * geom[5])
    raster = _raster(geom, 5, batch, 0.15, rng)
    bias = rng.integers(-2, 3, (1, n)) / 16
    v_init = rng.integers(0, 8, n) / 8
    roomy = _clock(geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT)
    state, out_tptr, out_idx, counts = roomy
    assert np.all(counts[:, 3] == OK)
    most = int(counts[:, 2].max())
    assert 0 < most < 5 * n  # (a buffer of every neuron at every step is larger than needed)
    # just enough for the busiest sample; and room for all neurons of the first step but not of the second
    for cap in sorted({most, max(most, n + 1)}):
        small = _clock(geom, flat, raster, bias, v_init, 1.0, kernels.RESET_SUBTRACT, cap=cap)
        np.testing.assert_array_equal(small[3], counts)
        np.testing.assert_array_equal(small[1], out_tptr)
        for s in range(batch):
            used = out_tptr[s, -1]
            np.testing.assert_array_equal(small[2][s, :used], out_idx[s, :used])
        np.testing.assert_array_equal(small[0][:, :, V], state[:, :, V])
