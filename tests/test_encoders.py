"""Input encoders: spike statistics, seeded determinism, exact latency times,
validation errors, and end-to-end runs through a network."""

import numpy as np
import pytest

import snn


def assert_counts_binomial(spikes, p):
    """Each input's spike count over ``T`` steps is Binomial(T, p): it must lie
    within 5 standard errors ``sqrt(T p (1 - p))`` of ``T p`` (a two-sided
    normal tail of 6e-7 per input; exact where ``p`` is 0 or 1)."""
    T = spikes.shape[0]
    counts = spikes.sum(axis=0, dtype=np.int64)
    bound = 5 * np.sqrt(T * p * (1 - p))
    assert np.all(np.abs(counts - T * p) <= bound), np.max(np.abs(counts - T * p) - bound)


def test_rate_statistics():
    x = np.linspace(0, 1, 11)[None, :].repeat(3, axis=0)
    spikes = snn.rate(x, 4000, max_rate=0.5, seed=0)
    assert spikes.dtype == np.uint8 and spikes.shape == (4000, 3, 11)
    assert set(np.unique(spikes).tolist()) <= {0, 1}
    assert_counts_binomial(spikes, x * 0.5)


def test_rate_extremes_are_exact():
    spikes = snn.rate(np.array([[0.0, 1.0]]), 50, seed=1)
    assert spikes[:, 0, 0].sum() == 0 and spikes[:, 0, 1].sum() == 50


def test_poisson_statistics():
    """At 1 ms steps a 1 kHz input spikes with probability 1 - exp(-1) = 0.632
    per step, not rate * dt = 1: several events in a step are one spike."""
    rates = np.array([[0.0, 5.0, 50.0, 200.0, 1000.0, 5000.0]])
    dt = 1e-3
    spikes = snn.poisson(rates, 5000, dt, seed=2)
    assert spikes.dtype == np.uint8 and spikes.shape == (5000, 1, 6)
    assert_counts_binomial(spikes, 1 - np.exp(-rates * dt))
    assert spikes[:, 0, 4].mean() < 0.7


@pytest.mark.parametrize(
    "encode",
    [
        lambda seed: snn.rate(np.full((2, 30), 0.3), 40, seed=seed),
        lambda seed: snn.poisson(np.full((2, 30), 100.0), 40, 1e-3, seed=seed),
        lambda seed: snn.bernoulli(np.full((2, 30), 0.3), 40, seed=seed),
    ],
    ids=["rate", "poisson", "bernoulli"],
)
def test_seeded_determinism(encode):
    a, b, c = encode(7), encode(7), encode(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(encode(np.random.default_rng(7)), a)  # a Generator is accepted


def first_spike(spikes):
    """Step of each input's first spike, -1 if none."""
    return np.where(spikes.any(axis=0), spikes.argmax(axis=0), -1)


def test_latency_linear_hand_example():
    """t = round((1 - x) * (T - 1)), T = 5: x = 1 -> 0, 0.5 -> 2, 0.3 -> 2.8 -> 3,
    0.2 -> 3.2 -> 3; x = 0 and x = 0.01 (at threshold) never spike."""
    x = np.array([[1.0, 0.5, 0.3, 0.2, 0.0, 0.01]])
    spikes = snn.latency(x, 5)
    assert spikes.dtype == np.uint8 and spikes.shape == (5, 1, 6)
    assert first_spike(spikes).tolist() == [[0, 2, 3, 3, -1, -1]]
    assert spikes.sum() == 4


def test_latency_rc_hand_example():
    """t = round(tau ln(x / (x - threshold))), tau = 10, threshold = 0.2:
    x = 1 -> 2.23 -> 2, 0.5 -> 5.11 -> 5, 0.25 -> 16.1 (>= T = 10, dropped),
    0.2 -> never."""
    x = np.array([[1.0, 0.5, 0.25, 0.2]])
    spikes = snn.latency(x, 10, tau=10.0, threshold=0.2)
    assert first_spike(spikes).tolist() == [[2, 5, -1, -1]]
    assert spikes.sum() == 2


@pytest.mark.parametrize("tau", [None, 5.0])
def test_latency_order_and_single_spike(tau):
    x = np.random.default_rng(3).random((4, 50))
    spikes = snn.latency(x, 40, tau=tau, threshold=0.05)
    assert spikes.sum(axis=0).max() <= 1
    t = first_spike(spikes)
    t[t < 0] = 40  # no spike: later than any step
    order = np.argsort(-x, axis=1)  # strongest first
    assert np.all(np.diff(np.take_along_axis(t, order, axis=1), axis=1) >= 0)
    assert np.array_equal(spikes.any(axis=0), (x > 0.05) & (t < 40))


@pytest.mark.usefixtures("warm_kernels")
def test_direct_is_constant_analog_input():
    x = np.random.default_rng(4).random((2, 6)).astype(np.float32)
    d = snn.direct(x, T=20)
    assert d.dtype == np.float64 and d.shape == (2, 6) and np.array_equal(d, x)
    assert d is not x
    net = snn.Network([snn.Linear(6, 3, snn.IF(threshold=0.5), seed=0)])
    result = net.run(analog=d, T=20)
    assert result.spikes(-1).shape == (20, 2, 3)
    assert result.spikes(-1).any()
    assert np.array_equal(result.spikes(-1), net.run(analog=d, T=20, backend="reference").spikes(-1))


BAD_INPUTS = [
    (lambda: snn.rate([[0.5, np.nan]], 10), "x contains NaN or inf"),
    (lambda: snn.rate([0.5, 0.2], 10), "x must have 2 dimension"),
    (lambda: snn.rate([[1.5]], 10), r"x must be in \[0, 1\]"),
    (lambda: snn.rate([[-0.1]], 10), r"x must be in \[0, 1\]"),
    (lambda: snn.rate([[0.5]], 0), "T must be a positive integer"),
    (lambda: snn.rate([[0.5]], 2.5), "T must be a positive integer"),
    (lambda: snn.rate([[0.5]], True), "T must be a positive integer"),
    (lambda: snn.rate([[0.5]], 10, max_rate=0.0), r"max_rate must be .* in \(0, 1\]"),
    (lambda: snn.rate([[0.5]], 10, max_rate=2.0), r"max_rate must be .* in \(0, 1\]"),
    (lambda: snn.rate([[0.5]], 10, max_rate=np.inf), "max_rate contains NaN or inf"),
    (lambda: snn.poisson([[10.0, np.inf]], 10, 1e-3), "rate_hz contains NaN or inf"),
    (lambda: snn.poisson([[-1.0]], 10, 1e-3), "rate_hz must be non-negative"),
    (lambda: snn.poisson([[10.0]], 10, 0.0), "dt must be a positive step length"),
    (lambda: snn.poisson([[10.0]], 10, -1e-3), "dt must be a positive step length"),
    (lambda: snn.poisson([[10.0]], 10, np.nan), "dt contains NaN or inf"),
    (lambda: snn.poisson([[10.0]], -3, 1e-3), "T must be a positive integer"),
    (lambda: snn.poisson([10.0], 10, 1e-3), "rate_hz must have 2 dimension"),
    (lambda: snn.latency([[1.2]], 10), r"x must be in \[0, 1\]"),
    (lambda: snn.latency([[0.5]], 10, threshold=1.0), r"threshold must be in \[0, 1\)"),
    (lambda: snn.latency([[0.5]], 10, threshold=-0.1), r"threshold must be in \[0, 1\)"),
    (lambda: snn.latency([[0.5]], 10, tau=0.0), "tau must be a positive time constant"),
    (lambda: snn.latency([[0.5]], 10, tau=np.nan), "tau contains NaN or inf"),
    (lambda: snn.latency([[0.5]], None), "T must be a positive integer"),
    (lambda: snn.direct([[0.5, np.nan]]), "x contains NaN or inf"),
    (lambda: snn.direct(np.ones((2, 3, 4))), "x must have 2 dimension"),
    (lambda: snn.direct([[0.5]], T=0), "T must be a positive integer"),
    (lambda: snn.bernoulli([[1.5]], 10), r"rates must be in \[0, 1\]"),
]


@pytest.mark.parametrize("call, message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.usefixtures("warm_kernels")
@pytest.mark.parametrize(
    "encode",
    [
        lambda x: snn.rate(x, 25, seed=0),
        lambda x: snn.poisson(x * 300.0, 25, 1e-3, seed=0),
        lambda x: snn.latency(x, 25),
        lambda x: snn.bernoulli(x, 25, seed=0),
    ],
    ids=["rate", "poisson", "latency", "bernoulli"],
)
def test_encoded_spikes_run_through_a_network(encode):
    x = np.random.default_rng(5).random((3, 8))
    spikes = encode(x)
    net = snn.Network([snn.Linear(8, 3, snn.IF(threshold=0.5), seed=0)])
    result = net.run(spikes)
    assert result.spikes(-1).shape == (25, 3, 3)
    assert np.array_equal(result.spikes(-1), net.run(spikes, backend="reference").spikes(-1))
