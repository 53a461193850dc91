"""Compile time of a convolution's delivery tables.

``kernels.event.conv_tables`` (what the CONV kernel reads: the weights in
the state dtype, the flattened runs, a row per input neuron) is built by
numpy, so a network's ``prepare()`` compiles no kernel for it (a jitted
version cost 1.5 s of the README network's 13.6 s cold ``prepare()``):
checked here against the loops it replaced, and for compiling nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

import naive
import numpy as np
import pytest

from snn_kernels import conv as kconv
from snn_kernels.event import PRE_ACC, PRE_END, PRE_FIRST, PRE_KEY, PRE_W, conv_tables

# (c_in, h, w, c_out, kh, kw, stride_y, stride_x, pad_y, pad_x, dil_y, dil_x, groups)
GEOMETRIES = [
    (1, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1),  # DIGITS-CNN's first layer
    (16, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1),  # and its second
    (2, 10, 10, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1),  # stride 2: rows merge
    (2, 9, 11, 2, 3, 4, 1, 3, 1, 1, 1, 1, 1),  # stride 3 along x, kernel 4 wide
    (4, 6, 7, 4, 3, 2, 1, 1, 0, 1, 1, 1, 2),  # groups: one run per tap
    (2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 1, 2, 1),  # dilation along x
    (2, 4, 5, 2, 4, 4, 1, 1, 2, 2, 1, 1, 1),  # kernel larger than the image with padding
]


def geometry(c_in, h, w, c_out, kh, kw, sy, sx, py, px, dy, dx, groups):
    h_out = naive.conv_out_size(h, kh, sy, py, dy)
    w_out = naive.conv_out_size(w, kw, sx, px, dx)
    return np.array([c_in, h, w, c_out, h_out, w_out, kh, kw, sy, sx, py, px, dy, dx, groups], np.int64)


def tables_by_loops(geom, weights, dtype):
    """The tables as the jitted loops built them before (element by element)."""
    c_in, h_in, w_in, c_out, h_out, w_out, kh, kw = (int(v) for v in geom[:8])
    groups = int(geom[14])
    hw_in, cg_in, cg_out, kk, plane = h_in * w_in, c_in // groups, c_out // groups, kh * kw, h_out * w_out
    w_st = np.empty(weights.shape[0], dtype)
    kconv.delivery_weights(geom, weights, w_st)
    n_runs, runs = kconv.run_tables(geom)
    start = [0]
    for p in range(hw_in):
        start.append(start[-1] + int(n_runs[p]))
    flat_runs = np.empty((start[-1], 5), np.int64)
    for p in range(hw_in):
        for r in range(int(n_runs[p])):
            flat_runs[start[p] + r] = runs[p, r]
    pre_rows = np.empty((c_in * hw_in, 5), np.int64)
    for pre in range(c_in * hw_in):
        c = pre // hw_in
        g = c // cg_in
        p = pre - c * hw_in
        pre_rows[pre, PRE_FIRST] = start[p]
        pre_rows[pre, PRE_END] = start[p + 1]
        pre_rows[pre, PRE_ACC] = g * cg_out
        pre_rows[pre, PRE_W] = (c - g * cg_in) * kk * c_out + g * cg_out
        pre_rows[pre, PRE_KEY] = g * plane
    return w_st, pre_rows, flat_runs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", GEOMETRIES)
def test_tables_are_the_loops(args, dtype):
    geom = geometry(*args)
    c_in, c_out, kh, kw, groups = (int(geom[k]) for k in (0, 3, 6, 7, 14))
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((c_in // groups) * kh * kw * c_out).astype(np.float32)
    got = conv_tables(geom, weights, dtype)
    for mine, expected in zip(got, tables_by_loops(geom, weights, dtype), strict=True):
        assert mine.dtype == expected.dtype and mine.shape == expected.shape
        assert mine.flags.c_contiguous and mine.flags.writeable  # the types the kernel is compiled for
        np.testing.assert_array_equal(mine, expected)


CHILD = """
import gc
import numpy as np
from numba.core.registry import CPUDispatcher
from snn_kernels.event import conv_tables

def overloads():  # kernel specialisations in memory, compiled or loaded from the cache
    return sum(len(obj.overloads) for obj in gc.get_objects()
               if isinstance(obj, CPUDispatcher) and obj.py_func.__module__.startswith("snn_kernels"))

geom = np.array([3, 7, 6, 5, 4, 6, 3, 3, 2, 1, 1, 0, 1, 1, 1], np.int64)  # rows merge
before = overloads()
for dtype in (np.float32, np.float64):
    conv_tables(geom, np.ones(3 * 9 * 5, np.float32), dtype)
print(overloads() - before)
"""


def test_tables_compile_nothing():
    """No kernel compiled nor loaded (in a fresh process) to build the tables."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "0"
