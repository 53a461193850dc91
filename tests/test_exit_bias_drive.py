"""``kernels.drive.bias_drive_kernel``: the drive of a run of one sample of
a stack's early exit (``snn.convert.stopping._one_stack``), its driven
bias row and its MACs in one compiled call, must equal what the general
way computes (``drive_kernel``, then ``np.add(bias, drive, out=row)`` and
``np.dot(x != 0, fan_out)``) bit for bit, for every projection kind, a
bias of one value or one per neuron, rows of the state dtype float64 or
float32, and inputs with zeros (-0.0 included)."""

from __future__ import annotations

import numpy as np
import pytest

from snn.model.conv import conv_geometry
from snn_kernels import CONV, CSR, DENSE
from snn_kernels.drive import bias_drive_kernel, bias_drive_of, bound_drive, drive_kernel


def _projection(kind, rng):
    """``(n_in, n, bound_drive keywords)`` of a small projection of ``kind``."""
    if kind == DENSE:
        n_in, n = 12, 7
        return n_in, n, dict(weights=rng.standard_normal((n_in, n)).astype(np.float32))
    if kind == CSR:
        n_in, n = 9, 6
        lengths = rng.integers(0, 5, n_in)
        rowptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        cols = rng.integers(0, n, rowptr[-1]).astype(np.int32)  # repeated targets included
        weights = rng.standard_normal(rowptr[-1]).astype(np.float32)
        return n_in, n, dict(weights=weights, rowptr=rowptr, cols=cols)
    geom = conv_geometry((2, 5, 5), 3, 3, padding=1)
    size = 2 * 9 * 3
    return 2 * 25, 3 * 25, dict(weights=rng.standard_normal(size).astype(np.float32), geom=geom)


@pytest.mark.parametrize("kind", [DENSE, CSR, CONV])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shared", [False, True])
def test_bias_drive_equals_drive_then_add(kind, dtype, shared):
    rng = np.random.default_rng(kind * 10 + shared)
    n_in, n, kw = _projection(kind, rng)
    kernel, args = bound_drive(kind, **kw)
    assert bias_drive_of(kernel) is bias_drive_kernel(kind)
    fused = bias_drive_kernel(kind)
    fan_out = rng.integers(0, 50, n_in).astype(np.int64)
    bias = rng.standard_normal(1 if shared else n) * 0.3
    for batch in (1, 3):
        x = rng.standard_normal((batch, n_in)) * (rng.random((batch, n_in)) < 0.5)
        x[0, :2] = -0.0, 0.0
        want_drive = np.empty((batch, n))
        drive_kernel(kind)(x, *args, want_drive)
        want_row = np.empty((batch, n), dtype)
        np.add(bias, want_drive, out=want_row)
        want_macs = np.dot(x != 0, fan_out)
        drive = np.full((batch, n), np.nan)
        store = np.full((batch, n + 3), np.nan, dtype)  # the row a view into a wider one, as SteppedExit's
        row = store[:, 1 : n + 1]
        macs = np.full(batch, -1, np.int64)
        fused(x, *args, drive, fan_out, bias, row, macs)
        np.testing.assert_array_equal(drive, want_drive)
        assert row.dtype == want_row.dtype
        np.testing.assert_array_equal(row, want_row)
        assert np.isnan(store[:, 0]).all() and np.isnan(store[:, n + 1 :]).all()  # nothing else written
        np.testing.assert_array_equal(macs, want_macs)
