"""Sparse random connectivity: CSR layout, degree statistics, exact degrees,
uniform choice, seeded determinism, errors, and the SparseLinear builders."""

import math

import numpy as np
import pytest

import snn
from snn.model.connectivity import fixed_in_degree, fixed_out_degree, fixed_probability


def check_csr(rowptr, cols, n_pre, n_post):
    """Layout contract: dtypes, shapes, targets in range, strictly increasing
    within each row (sorted, hence no duplicate pair)."""
    assert rowptr.dtype == np.int64 and rowptr.shape == (n_pre + 1,)
    assert cols.dtype == np.int32 and rowptr[0] == 0 and rowptr[-1] == len(cols)
    assert np.all(np.diff(rowptr) >= 0)
    assert len(cols) == 0 or (cols.min() >= 0 and cols.max() < n_post)
    step = np.diff(cols.astype(np.int64))
    row_start = np.zeros(len(cols), bool)
    row_start[rowptr[:-1][rowptr[:-1] < len(cols)]] = True
    assert np.all(step[~row_start[1:]] > 0)


def assert_binomial_degrees(degree, trials, q):
    """Degrees that are Binomial(trials, q) draws: their mean lies within 5
    standard errors ``sqrt(var / n)`` of ``trials q``, and their sample variance
    within 5 relative standard errors ``sqrt(2 / n)`` (+1% for the binomial's
    small excess kurtosis) of ``var = trials q (1 - q)``."""
    n, var = len(degree), trials * q * (1 - q)
    assert abs(degree.mean() - trials * q) <= 5 * np.sqrt(var / n)
    assert abs(degree.var() / var - 1) <= 5 * np.sqrt(2 / n) + 0.01


def pre_of(rowptr):
    return np.repeat(np.arange(len(rowptr) - 1), np.diff(rowptr))


@pytest.mark.parametrize("autapses", [True, False])
def test_fixed_probability_statistics(autapses):
    """20k x 20k at p = 5e-3 (2 M synapses; correctness at scale, not speed):
    in- and out-degrees are Binomial(m, p), m the possible partners."""
    n, p = 20_000, 5e-3
    rowptr, cols = fixed_probability(n, n, p, seed=0, autapses=autapses)
    check_csr(rowptr, cols, n, n)
    m = n if autapses else n - 1
    assert_binomial_degrees(np.bincount(cols, minlength=n), m, p)
    assert_binomial_degrees(np.diff(rowptr), m, p)
    if not autapses:
        assert not np.any(pre_of(rowptr) == cols)


def test_fixed_probability_every_pair_equally_likely():
    """Over 4,000 seeds each of the 12 pairs of a 3 x 4 projection at p = 0.3
    is present 0.3 of the time, within 5 standard errors sqrt(0.21 / 4000);
    this pins the first and last flat index (an off-by-one would show there)."""
    hits = np.zeros((3, 4))
    for seed in range(4000):
        rowptr, cols = fixed_probability(3, 4, 0.3, seed=seed)
        hits[pre_of(rowptr), cols] += 1
    assert np.all(np.abs(hits / 4000 - 0.3) <= 5 * np.sqrt(0.21 / 4000)), hits


def test_fixed_probability_edge_cases():
    rowptr, cols = fixed_probability(5, 7, 0.0, seed=0)
    assert rowptr.tolist() == [0] * 6 and len(cols) == 0
    rowptr, cols = fixed_probability(3, 4, 1.0, seed=0)
    assert rowptr.tolist() == [0, 4, 8, 12] and cols.tolist() == [0, 1, 2, 3] * 3
    rowptr, cols = fixed_probability(3, 3, 1.0, seed=0, autapses=False)
    assert rowptr.tolist() == [0, 2, 4, 6] and cols.tolist() == [1, 2, 0, 2, 0, 1]
    check_csr(*fixed_probability(1, 1, 0.5, seed=0), 1, 1)
    # gaps far past the end (up to int64 max at p = 1e-300) must not overflow the running index
    assert len(fixed_probability(10, 10, 1e-300, seed=0)[1]) == 0
    rowptr, cols = fixed_probability(3, 2**31 - 1, 1e-8, seed=0)  # ~64 synapses among 6.4e9 pairs
    check_csr(rowptr, cols, 3, 2**31 - 1)
    assert 0 < len(cols) < 200


@pytest.mark.parametrize(
    "build, arg", [(fixed_probability, 0.05), (fixed_in_degree, 7), (fixed_out_degree, 7)]
)
def test_seeded_determinism(build, arg):
    a = build(300, 200, arg, seed=11)
    b = build(300, 200, arg, seed=11)
    c = build(300, 200, arg, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    g = build(300, 200, arg, seed=np.random.default_rng(11))  # a Generator is accepted
    assert all(np.array_equal(x, y) for x, y in zip(a, g))


@pytest.mark.parametrize(
    "n_pre, n_post, k, autapses",
    [
        (20_000, 5_000, 40, True),  # sparse: few repeats to redraw
        (300, 2_000, 200, True),  # k > n_pre / 2: the complement is drawn
        (150, 150, 149, False),  # every other neuron
        (500, 500, 60, False),
        (50, 80, 0, True),
    ],
)
def test_fixed_in_degree_exact(n_pre, n_post, k, autapses):
    rowptr, cols = fixed_in_degree(n_pre, n_post, k, seed=1, autapses=autapses)
    check_csr(rowptr, cols, n_pre, n_post)
    assert np.all(np.bincount(cols, minlength=n_post) == k)
    if not autapses:
        assert not np.any(pre_of(rowptr) == cols)
    m = n_pre if autapses else n_pre - 1
    if 0 < k < m:  # each post picks pre i with probability k / m: out-degrees are binomial
        assert_binomial_degrees(np.diff(rowptr), n_post if autapses else n_post - 1, k / m)


@pytest.mark.parametrize(
    "n_pre, n_post, k, autapses",
    [
        (5_000, 20_000, 40, True),
        (2_000, 300, 200, True),
        (150, 150, 149, False),
        (500, 500, 60, False),
    ],
)
def test_fixed_out_degree_exact(n_pre, n_post, k, autapses):
    rowptr, cols = fixed_out_degree(n_pre, n_post, k, seed=2, autapses=autapses)
    check_csr(rowptr, cols, n_pre, n_post)
    assert np.all(np.diff(rowptr) == k)
    if not autapses:
        assert not np.any(pre_of(rowptr) == cols)
    m = n_post if autapses else n_post - 1
    if 0 < k < m:  # each pre picks post j with probability k / m: in-degrees are binomial
        assert_binomial_degrees(np.bincount(cols, minlength=n_post), n_pre if autapses else n_pre - 1, k / m)


def partner_sets(build, rowptr, cols, k):
    """``[owners, k]``: the sorted partners of each post (in-degree) or pre (out-degree) neuron."""
    if build is fixed_out_degree:
        return cols.reshape(-1, k)
    pre = pre_of(rowptr)
    return pre[np.lexsort((pre, cols))].reshape(-1, k)


def assert_uniform_subsets(sets, m, k):
    """Each of the C(m, k) subsets is drawn with frequency 1 / C(m, k), within
    5 binomial standard errors over the ``len(sets)`` draws (pair frequencies
    alone would not show a bias between subsets)."""
    subsets, counts = np.unique(sets, axis=0, return_counts=True)
    q, total = 1 / math.comb(m, k), len(sets)
    assert len(subsets) == math.comb(m, k)
    assert np.all(np.abs(counts / total - q) <= 5 * np.sqrt(q * (1 - q) / total)), counts


@pytest.mark.parametrize(
    "build, k",
    [
        (fixed_in_degree, 2),  # direct draw with redraws of repeats (2 <= 5 / 2)
        (fixed_in_degree, 4),  # complement branch
        (fixed_out_degree, 2),
        (fixed_out_degree, 3),
    ],
)
def test_subsets_are_uniform(build, k):
    """30,000 neurons each choose k of 5 partners."""
    sizes = (5, 30_000) if build is fixed_in_degree else (30_000, 5)
    rowptr, cols = build(*sizes, k, seed=4)
    assert_uniform_subsets(partner_sets(build, rowptr, cols, k), 5, k)


@pytest.mark.parametrize("build, k", [(fixed_in_degree, 2), (fixed_out_degree, 3)])
def test_subsets_without_autapses_are_uniform(build, k):
    """Neuron r of 5 chooses k of the 4 others; 4,000 seeds, per neuron."""
    sets = np.stack([partner_sets(build, *build(5, 5, k, seed=s, autapses=False), k) for s in range(4000)])
    for r in range(5):
        assert not np.any(sets[:, r] == r)
        assert_uniform_subsets(sets[:, r], 4, k)


BAD = [
    (lambda: fixed_probability(0, 5, 0.1), "n_pre must be a positive integer"),
    (lambda: fixed_probability(5, -1, 0.1), "n_post must be a positive integer"),
    (lambda: fixed_probability(5.0, 5, 0.1), "n_pre must be a positive integer"),
    (lambda: fixed_probability(5, 2**31, 0.1), "n_post must be a positive integer at most 2147483647"),
    (lambda: fixed_probability(5, 5, 1.5), r"p must be a probability in \[0, 1\]"),
    (lambda: fixed_probability(5, 5, -0.1), r"p must be a probability in \[0, 1\]"),
    (lambda: fixed_probability(5, 5, np.nan), "p contains NaN or inf"),
    (lambda: fixed_probability(5, 6, 0.1, autapses=False), r"autapses=False .* \(n_pre == n_post\)"),
    (lambda: fixed_in_degree(5, 5, -1), "k must be a non-negative integer"),
    (lambda: fixed_in_degree(5, 5, 2.5), "k must be a non-negative integer"),
    (lambda: fixed_in_degree(5, 8, 6), "k = 6 exceeds the 5 possible partners"),
    (lambda: fixed_in_degree(5, 5, 5, autapses=False), r"k = 5 exceeds the 4 .* \(autapses excluded\)"),
    (lambda: fixed_out_degree(8, 5, 6), "k = 6 exceeds the 5 possible partners"),
    (lambda: fixed_out_degree(0, 5, 1), "n_pre must be a positive integer"),
    (lambda: snn.SparseLinear.fixed_in_degree(3, 4, 4), "k = 4 exceeds the 3 possible partners"),
]


@pytest.mark.parametrize("call, message", BAD, ids=[m for _, m in BAD])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sparse_linear_random_uses_fixed_probability():
    """Same seed, same synapses; the weight callable draws from the same
    generator, after the connectivity."""
    layer = snn.SparseLinear.random(400, 300, 0.02, weight=lambda rng, n: rng.normal(size=n), seed=5)
    rng = np.random.default_rng(5)
    rowptr, cols = fixed_probability(400, 300, 0.02, rng)
    assert np.array_equal(layer.rowptr, rowptr) and np.array_equal(layer.cols, cols)
    assert np.array_equal(layer.weights, rng.normal(size=len(cols)).astype(np.float32))
    scalar = snn.SparseLinear.random(400, 300, 0.02, weight=0.25, seed=5)
    assert np.array_equal(scalar.cols, cols) and np.all(scalar.weights == 0.25)


@pytest.mark.usefixtures("warm_kernels")
def test_sparse_linear_fixed_in_degree_runs():
    layer = snn.SparseLinear.fixed_in_degree(50, 20, 7, weight=0.3, neuron=snn.IF(threshold=1.0), seed=3)
    W = layer.dense_rows().T  # [n_out, n_in]
    assert np.all((W > 0).sum(axis=1) == 7) and layer.n_synapses == 140
    x = (np.random.default_rng(0).random((30, 2, 50)) < 0.2).astype(np.uint8)
    net = snn.Network([layer])
    assert np.array_equal(net.run(x).spikes(-1), net.run(x, backend="reference").spikes(-1))
