"""Clear errors for bad input: the right exception type and a message that
names the offending argument (checked with ``match=``), never a crash deep in
numpy or a kernel, never a silent conversion that changes values."""

from __future__ import annotations

import numpy as np
import pytest

import snn


@pytest.fixture
def net():
    return snn.Network([snn.Linear(3, 2, snn.IF(), seed=0)])


# -- network structure ---------------------------------------------------------


def test_layers_that_do_not_chain():
    with pytest.raises(ValueError, match=r"do not chain: layer 0 has 2 outputs but layer 1 expects 3"):
        snn.Network([snn.Linear(3, 2), snn.Linear(3, 2)])
    with pytest.raises(ValueError, match=r"layer 1 has 4 outputs but layer 2 expects 5"):
        snn.Network([snn.Linear(3, 2), snn.SparseLinear.random(2, 4, 0.5, seed=0), snn.Linear(5, 1)])


def test_network_needs_layers_and_a_float_dtype():
    with pytest.raises(ValueError, match="at least one layer"):
        snn.Network([])
    with pytest.raises(TypeError, match="not a snn layer"):
        snn.Network([object()])
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        snn.Network([snn.Linear(3, 2)], dtype=np.float16)


@pytest.mark.parametrize("shape", [(3, 2), (2, 2), (2, 3, 1), (6,)])
def test_weight_shape_mismatch(shape):
    with pytest.raises(ValueError, match=r"weight must have (shape \(n_out, n_in\) = \(2, 3\)|2 dimension)"):
        snn.Linear(3, 2, weight=np.ones(shape))


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_layer_sizes(size):
    with pytest.raises(ValueError, match="n_in must be a positive integer"):
        snn.Linear(size, 2)
    with pytest.raises(ValueError, match="n_out must be a positive integer"):
        snn.Linear(2, size)


def test_per_neuron_shape():
    with pytest.raises(ValueError, match=r"bias must be a scalar or have shape \(2,\)"):
        snn.Linear(3, 2, bias=np.ones(3))
    with pytest.raises(ValueError, match=r"v_init must be a scalar or have shape \(2,\)"):
        snn.Linear(3, 2, v_init=np.ones((2, 1)))


def test_neuron_and_mode_types():
    with pytest.raises(TypeError, match="neuron must be a snn.Neuron"):
        snn.Linear(3, 2, "LIF")
    with pytest.raises(ValueError, match="mode must be one of"):
        snn.Linear(3, 2, mode="fast")


# -- non-finite values -----------------------------------------------------------

BAD = [pytest.param(np.nan, id="nan"), pytest.param(np.inf, id="inf"), pytest.param(-np.inf, id="-inf")]


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_weights(bad):
    W = np.ones((2, 3))
    W[1, 2] = bad
    with pytest.raises(ValueError, match=r"weight contains NaN or inf \(first at index \(1, 2\)\)"):
        snn.Linear(3, 2, weight=W)
    with pytest.raises(ValueError, match="weight contains NaN or inf"):
        snn.SparseLinear.from_dense(W)
    with pytest.raises(ValueError, match="weights contains NaN or inf"):
        snn.SparseLinear.from_coo(3, 2, [0, 1], [0, 1], [1.0, bad])
    with pytest.raises(ValueError, match="weights contains NaN or inf"):
        snn.SparseLinear.random(3, 2, 1.0, weight=lambda rng, n: np.full(n, bad))
    with pytest.raises(ValueError, match="weights contains NaN or inf"):
        snn.SparseLinear(3, 2, rowptr=[0, 1, 2, 2], cols=[0, 1], weights=[0.5, bad])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("sparse", [False, True])
def test_weights_that_overflow_float32_are_refused(sparse):
    """Weights are stored as float32: 1e39 is finite in float64 but would
    become inf. It must be refused, not silently turned into inf."""
    W = np.array([[1.0, 1e39]])
    with pytest.raises(ValueError, match="weight"):
        if sparse:
            snn.SparseLinear.from_dense(W)
        else:
            snn.Linear(2, 1, snn.IF(), weight=W)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("name", ["bias", "v_init"])
def test_nonfinite_bias_and_v_init(bad, name):
    values = np.zeros(2)
    values[1] = bad
    with pytest.raises(ValueError, match=rf"{name} contains NaN or inf"):
        snn.Linear(3, 2, **{name: values})
    with pytest.raises(ValueError, match=rf"{name} contains NaN or inf"):
        snn.Linear(3, 2, **{name: bad})


@pytest.mark.parametrize("bad", BAD)
def test_bias_is_checked_when_assigned_and_read_only_in_place(bad):
    """A bias changes by assignment (checked like the constructor's); writing
    into it in place is refused, so a run can never use an unchecked value.
    A deep copy keeps it read-only (``snn._validate.KeepsReadOnly``)."""
    import copy

    layer = snn.Linear(1, 2, snn.IF(), weight=[[1.0], [1.0]])
    net = snn.Network([layer])
    spikes = np.zeros((3, 1, 1), np.uint8)
    with pytest.raises(ValueError, match="read-only"):
        layer.bias[0] = 1.0
    with pytest.raises(ValueError, match="bias contains NaN or inf"):
        layer.bias = [0.0, bad]
    layer.bias = [0.0, 1.0]  # neuron 1 now fires at every step on its own
    assert net.run(spikes).spikes(0)[:, 0].tolist() == [[0, 1]] * 3
    twin = copy.deepcopy(net)
    with pytest.raises(ValueError, match="read-only"):
        twin.layers[0].bias[1] = bad
    assert twin.run(spikes).spikes(0)[:, 0].tolist() == [[0, 1]] * 3


@pytest.mark.parametrize("bad", BAD)
def test_nonfinite_analog_input(net, bad):
    x = np.zeros((2, 3))
    x[1, 0] = bad
    with pytest.raises(ValueError, match=r"analog contains NaN or inf \(first at index \(1, 0\)\)"):
        net.run(analog=x, T=4)
    with pytest.raises(ValueError, match="analog contains NaN or inf"):
        net.run(analog=np.stack([np.zeros((2, 3)), x]))
    with pytest.raises(ValueError, match="analog contains NaN or inf"):
        net.run(analog=x, T=4, backend="reference")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("what", ["bias", "analog"])
def test_float32_network_refuses_values_beyond_float32(what):
    """A float32 network cannot hold 1e39: refuse it rather than run with inf."""
    bias = 1e39 if what == "bias" else 0.0
    net = snn.Network([snn.Linear(1, 1, snn.IF(), weight=[[1.0]], bias=bias)], dtype=np.float32)
    with pytest.raises(ValueError, match=what):
        if what == "bias":
            net.run(np.ones((2, 1, 1), np.uint8))
        else:
            net.run(analog=np.full((1, 1), 1e39), T=2)


# -- neuron parameters -------------------------------------------------------------


@pytest.mark.parametrize("tau", [0, -1.0, np.inf, np.nan])
def test_tau_must_be_positive(tau):
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        snn.LIF(tau_mem=tau)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        snn.CubaLIF(beta=0.5, tau_syn=tau)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        snn.beta_from_tau(tau, 1.0)


@pytest.mark.parametrize("dt", [0, -0.5, np.inf, np.nan])
def test_dt_must_be_positive(dt):
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        snn.LIF(tau_mem=10.0, dt=dt)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        snn.LIF(beta=0.5, dt=dt)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        snn.CubaLIF(tau_mem=10.0, tau_syn=5.0, dt=dt)


@pytest.mark.parametrize("thr", [0, 0.0, -1.0, np.nan, -np.inf])
def test_threshold_must_be_positive(thr):
    """(``threshold=math.inf`` is allowed: a membrane-readout population that
    never fires; see test_golden.py.)"""
    for make in (snn.IF, snn.LIF, snn.CubaLIF):
        kwargs = {} if make is snn.IF else dict(beta=0.5) if make is snn.LIF else dict(beta=0.5, alpha=0.5)
        with pytest.raises(ValueError, match="threshold must be finite and > 0"):
            make(threshold=thr, **kwargs)


@pytest.mark.parametrize("value", [-0.1, 1.0000001, 2.0, np.nan, np.inf])
def test_decay_factors_in_unit_interval(value):
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        snn.LIF(beta=value)
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        snn.CubaLIF(beta=value, alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        snn.CubaLIF(beta=0.5, alpha=value)


def test_decay_factor_given_as_string_is_refused():
    """Like threshold='1' (refused), beta='0.5' must not be converted silently."""
    with pytest.raises(TypeError, match="threshold must be a real number"):
        snn.IF(threshold="1")
    with pytest.raises(TypeError, match="beta"):
        snn.LIF(beta="0.5")


def test_decay_given_twice_or_never():
    with pytest.raises(ValueError, match="exactly one of beta or tau_mem"):
        snn.LIF()
    with pytest.raises(ValueError, match="exactly one of beta or tau_mem"):
        snn.LIF(beta=0.5, tau_mem=3.0)
    with pytest.raises(ValueError, match="exactly one of alpha or tau_syn"):
        snn.CubaLIF(beta=0.5)


@pytest.mark.parametrize("refractory", [1.5, 2.0, -1, True, "2", None])
def test_refractory_must_be_a_nonnegative_integer(refractory):
    with pytest.raises(ValueError, match=r"refractory must be an integer number of steps in \[0, "):
        snn.IF(refractory=refractory)


def test_refractory_accepts_numpy_integers():
    assert snn.LIF(beta=0.5, refractory=np.int64(2)).refractory == 2


def test_reset_options():
    with pytest.raises(ValueError, match="reset must be one of"):
        snn.IF(reset="hard")
    with pytest.raises(ValueError, match="reset='zero' resets to 0"):
        snn.IF(reset="zero", v_reset=0.5)
    with pytest.raises(ValueError, match="v_reset must be below threshold"):
        snn.IF(threshold=1.0, reset="value", v_reset=1.0)
    with pytest.raises(ValueError, match="v_reset must be a finite number"):
        snn.IF(reset="value", v_reset=np.nan)


# -- spike and event input ------------------------------------------------------------


@pytest.mark.parametrize("value", [0.5, 2, -1, np.nan])
def test_spike_values_must_be_0_or_1(net, value):
    x = np.zeros((4, 1, 3))
    x[2, 0, 1] = value
    with pytest.raises(ValueError, match=r"only 0 and 1 \(spikes\); found .* at \(2, 0, 1\)"):
        net.run(x)
    with pytest.raises(ValueError, match="only 0 and 1"):
        net.run(x, backend="reference")
    with pytest.raises(ValueError, match="only 0 and 1"):
        snn.SpikeTrains.from_raster(x)


def test_spike_dtype(net):
    with pytest.raises(TypeError, match="numeric or boolean array of 0/1"):
        net.run(np.array([[["1", "0", "1"]]]))
    with pytest.raises(TypeError, match="numeric or boolean array of 0/1"):
        net.run(np.ones((1, 1, 3)) * 1j)


@pytest.mark.parametrize("width", [2, 4])
def test_spike_input_width(net, width):
    with pytest.raises(
        ValueError, match=rf"spikes has {width} inputs per sample but the first layer expects 3"
    ):
        net.run(np.zeros((5, 2, width), np.uint8))
    with pytest.raises(
        ValueError, match=rf"analog has {width} inputs per sample but the first layer expects 3"
    ):
        net.run(analog=np.zeros((2, width)), T=3)


def test_spike_input_rank_and_steps(net):
    with pytest.raises(ValueError, match=r"spikes must have shape \[T, batch, n\]"):
        net.run(np.zeros((5, 3), np.uint8))
    with pytest.raises(ValueError, match="T=4 but spikes have 5 steps"):
        net.run(np.zeros((5, 1, 3), np.uint8), T=4)


@pytest.mark.parametrize(
    "row,label,bound",
    [
        ([5, 0, 1], "t", 5),
        ([-1, 0, 1], "t", 5),
        ([0, 2, 1], "sample", 2),
        ([0, -1, 1], "sample", 2),
        ([0, 0, 3], "index", 3),
        ([0, 0, -1], "index", 3),
    ],
)
def test_events_out_of_range(net, row, label, bound):
    events = np.array([[0, 0, 0], row])
    with pytest.raises(ValueError, match=rf"event {label} must be in \[0, {bound}\)"):
        net.run(events=events, T=5, batch_size=2)


def test_events_shape_type_and_arguments(net):
    with pytest.raises(ValueError, match=r"\[E, 3\] array of \(t, sample, index\)"):
        net.run(events=[[0, 0]], T=3, batch_size=1)
    with pytest.raises(TypeError, match="events must be integers"):
        net.run(events=[[0, 0, 1.5]], T=3, batch_size=1)
    with pytest.raises(ValueError, match="events= needs T= and batch_size="):
        net.run(events=[[0, 0, 1]], T=3)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_events_batch_size_must_be_a_positive_integer(net, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        net.run(events=np.zeros((0, 3), np.int64), T=3, batch_size=batch_size)


# -- run arguments --------------------------------------------------------------------------


def test_run_arguments(net):
    with pytest.raises(ValueError, match="exactly one of spikes=, events= or analog="):
        net.run()
    with pytest.raises(ValueError, match="exactly one of spikes=, events= or analog="):
        net.run(np.zeros((1, 1, 3)), analog=np.zeros((1, 3)), T=1)
    with pytest.raises(ValueError, match="needs T="):
        net.run(analog=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"analog must be \[B, n_in\] or \[T, B, n_in\]"):
        net.run(analog=np.zeros(3), T=2)
    with pytest.raises(ValueError, match="T=3 but analog input has 2 steps"):
        net.run(analog=np.zeros((2, 1, 3)), T=3)
    for T in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="T must be a positive integer"):
            net.run(analog=np.zeros((1, 3)), T=T)
    with pytest.raises(ValueError, match="backend must be one of"):
        net.run(np.zeros((1, 1, 3)), backend="gpu")
    with pytest.raises(ValueError, match="mode must be"):
        net.run(np.zeros((1, 1, 3)), mode="fast")


@pytest.mark.parametrize(
    "value",
    [np.ones((1, 3)) * 1j, np.array([["a", "b", "c"]]), np.array([[1, None, 2]], dtype=object)],
    ids=["complex", "string", "object"],
)
def test_analog_dtype(net, value):
    with pytest.raises(TypeError, match="analog must be a real numeric array"):
        net.run(analog=value, T=2)


# -- weight dtypes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "W",
    [np.ones((2, 3)) * (1 + 1j), np.full((2, 3), "1"), np.full((2, 3), b"1"), np.ones((2, 3), dtype=object)],
    ids=["complex", "str", "bytes", "object"],
)
def test_weight_dtype_complex_or_string(W):
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        snn.Linear(3, 2, weight=W)
    with pytest.raises(TypeError, match="weight must be a real numeric array"):
        snn.SparseLinear.from_dense(W)
    with pytest.raises(TypeError, match="weights must be a real numeric array"):
        snn.SparseLinear.from_coo(3, 2, [0, 1], [0, 1], W.ravel()[:2])


# -- CSR structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("cols,lo,hi", [([0, 2, 1], 0, 2), ([0, -1, 1], -1, 1), ([5, 0, 1], 0, 5)])
def test_csr_cols_out_of_range(cols, lo, hi):
    with pytest.raises(
        ValueError, match=rf"cols must index targets in \[0, 2\), got values in \[{lo}, {hi}\]"
    ):
        snn.SparseLinear(3, 2, snn.IF(), rowptr=[0, 1, 2, 3], cols=cols, weights=[1.0, 1.0, 1.0])


def test_coo_post_out_of_range():
    with pytest.raises(ValueError, match=r"index targets in \[0, 2\)"):
        snn.SparseLinear.from_coo(3, 2, [0, 1], [0, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"pre must index sources in \[0, 3\)"):
        snn.SparseLinear.from_coo(3, 2, [0, 3], [0, 1], [1.0, 1.0])


def test_csr_structure():
    with pytest.raises(TypeError, match="rowptr and cols must be integer arrays"):
        snn.SparseLinear(3, 2, rowptr=[0, 1, 2, 3], cols=[0.0, 1.0, 0.0], weights=[1, 1, 1])
    with pytest.raises(TypeError, match="rowptr and cols must be integer arrays"):  # not truncated silently
        snn.SparseLinear(3, 2, rowptr=[0.0, 1.5, 2.0, 3.0], cols=[0, 1, 0], weights=[1, 1, 1])
    with pytest.raises(ValueError, match="rowptr must be non-decreasing offsets of shape"):
        snn.SparseLinear(3, 2, rowptr=[0, 2, 1, 3], cols=[0, 1, 0], weights=[1, 1, 1])
    with pytest.raises(ValueError, match="rowptr must be non-decreasing offsets of shape"):
        snn.SparseLinear(3, 2, rowptr=[0, 1, 3], cols=[0, 1, 0], weights=[1, 1, 1])
    with pytest.raises(ValueError, match="rowptr must be non-decreasing offsets of shape"):
        snn.SparseLinear(3, 2, rowptr=[1, 1, 2, 3], cols=[0, 1, 0], weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"cols must be 1-D with rowptr\[-1\] = 3 entries"):
        snn.SparseLinear(3, 2, rowptr=[0, 1, 2, 3], cols=[0, 1], weights=[1, 1])
    with pytest.raises(ValueError, match=r"weights must have one value per synapse \(3\)"):
        snn.SparseLinear(3, 2, rowptr=[0, 1, 2, 3], cols=[0, 1, 0], weights=[1, 1])
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
        snn.SparseLinear.random(3, 2, 1.5)


# -- runs of no step, no sample, or too many steps ---------------------------------


def _empty_runs(net, backend):
    return {
        "spikes, T=0": lambda: net.run(np.zeros((0, 1, 3), np.uint8), backend=backend),
        "spikes, batch 0": lambda: net.run(np.zeros((4, 0, 3), np.uint8), backend=backend),
        "constant analog, batch 0": lambda: net.run(analog=np.zeros((0, 3)), T=4, backend=backend),
        "varying analog, T=0": lambda: net.run(analog=np.zeros((0, 1, 3)), backend=backend),
        "varying analog, batch 0": lambda: net.run(analog=np.zeros((4, 0, 3)), backend=backend),
    }


@pytest.mark.parametrize("backend", ["event", "reference"])
@pytest.mark.parametrize(
    "case", list(_empty_runs(None, None)), ids=lambda c: c.replace(" ", "-").replace(",", "")
)
def test_runs_of_no_step_or_no_sample_are_refused(net, backend, case):
    with pytest.raises(
        ValueError, match=r"a run needs at least one (step, got T=0|sample, got a batch of 0)"
    ):
        _empty_runs(net, backend)[case]()


@pytest.mark.parametrize("backend", ["event", "reference"])
def test_graph_runs_of_no_sample_are_refused(backend):
    g = snn.Graph()
    inp = g.input(3)
    g.connect(inp, g.population(2), np.ones((2, 3)))
    with pytest.raises(ValueError, match="a run needs at least one sample, got a batch of 0"):
        g.run(2, inputs={inp: np.zeros((2, 0, 3), np.uint8)}, backend=backend)


@pytest.mark.parametrize("backend", ["event", "reference"])
def test_float32_runs_longer_than_it_counts_are_refused(backend):
    """float32 state holds step numbers exactly up to 2**24 (the event path
    keeps each neuron's last update step): longer runs would lose spikes."""
    net32 = snn.Network([snn.Linear(3, 2)], dtype=np.float32)
    with pytest.raises(ValueError, match=r"T=16777217 steps is more than .* float32 .* use dtype=np.float64"):
        net32.run(analog=np.ones((1, 3)), T=2**24 + 1, backend=backend)
    g = snn.Graph(dtype=np.float32)
    g.population(2)
    with pytest.raises(ValueError, match=r"T=16777217 steps .* float32 .* use dtype=np.float64"):
        g.run(2**24 + 1, backend=backend)
    with pytest.raises(ValueError, match=r"T=2147483648 steps is more than a run in float64 state can count"):
        snn.Network([snn.Linear(3, 2)]).run(analog=np.ones((1, 3)), T=2**31, backend=backend)


# -- values the state precision cannot hold, absurd values ---------------------------


@pytest.mark.parametrize(
    "neuron",
    [snn.IF(threshold=1e39), snn.IF(threshold=1e-50), snn.LIF(beta=0.9, reset="value", v_reset=-1e39)],
    ids=["threshold-overflows", "threshold-underflows-to-0", "v_reset-overflows"],
)
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_float32_refuses_neuron_constants_it_cannot_hold(neuron, backend):
    net32 = snn.Network([snn.Linear(3, 2, neuron)], dtype=np.float32)
    with pytest.raises(ValueError, match=r"(threshold|v_reset) .* float32"):
        net32.run(analog=np.ones((1, 3)), T=3, backend=backend)
    snn.Network([snn.Linear(3, 2, neuron)]).run(
        analog=np.ones((1, 3)), T=3, backend=backend
    )  # float64 holds them
    g = snn.Graph(dtype=np.float32)
    g.population(2, neuron)
    with pytest.raises(ValueError, match=r"(threshold|v_reset) .* float32"):
        g.run(3, backend=backend)


@pytest.mark.parametrize("what", ["bias", "v_init"])
@pytest.mark.parametrize("backend", ["event", "reference"])
def test_float32_graph_refuses_membranes_it_cannot_hold(what, backend):
    g = snn.Graph(dtype=np.float32)
    g.population(2, **{what: 1e39})
    with pytest.raises(ValueError, match=rf"{what} of 'pop0' has values too large for float32"):
        g.run(3, backend=backend)


def test_poisson_background_beyond_what_can_be_simulated_is_refused():
    g = snn.Graph()
    pop = g.population(2, snn.IF())
    with pytest.raises(ValueError, match=r"events per step .* at most"):
        g.poisson_input(pop, 10, 1e300, 0.1)
    with pytest.raises(ValueError, match=r"events per step .* at most"):
        g.poisson_input(pop, 2**62, 1.0, 0.1)


@pytest.mark.parametrize("graph", [False, True])
def test_n_threads_is_checked_and_restored(graph):
    numba = pytest.importorskip("numba")
    if graph:
        g = snn.Graph()
        g.population(2, bias=0.5)
        run = g.run
        kwargs = {"T": 3}
    else:
        run = snn.Network([snn.Linear(3, 2)]).run
        kwargs = {"analog": np.ones((2, 3)), "T": 3}
    before = numba.get_num_threads()
    run(**kwargs, n_threads=1)
    assert numba.get_num_threads() == before
    for bad in (0, -1, numba.config.NUMBA_NUM_THREADS + 1, 1.5, True):
        with pytest.raises(ValueError, match="n_threads must be"):
            run(**kwargs, n_threads=bad)
    assert numba.get_num_threads() == before


@pytest.mark.parametrize(
    "build",
    [
        lambda: snn.Linear(2**31, 1),
        lambda: snn.Linear(1, 2**40),
        lambda: snn.Graph().population(2**31),
        lambda: snn.rate(np.full((1, 2), 0.5), 2**40),
    ],
    ids=["n_in", "n_out", "population", "encoder-T"],
)
def test_sizes_beyond_int32_indices_are_refused(build):
    with pytest.raises(ValueError, match="must be a positive integer at most 2147483647"):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: snn.MaxPool2d((1, 3, 3), 0),
        lambda: snn.AvgPool2d((1, 3, 3), 0),
        lambda: snn.AvgPool2d((1, 2, 5), -1),
    ],
)
def test_pooling_windows_must_be_positive(build):
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        build()


def test_refractory_beyond_int_range_is_refused():
    with pytest.raises(ValueError, match="refractory must be an integer number of steps in"):
        snn.IF(refractory=2**63)


@pytest.mark.parametrize("backend, mode", [("event", "event"), ("event", "dense"), ("reference", None)])
def test_repeated_synapses_sum_in_the_state_precision(backend, mode):
    """Two synapses on the same pair: every path adds both weights in float64
    (the dense matrix of the reference and dense paths too, not in float32)."""
    w = np.array([1.0, 2.0**-30], np.float32)
    layer = snn.SparseLinear(1, 1, snn.IF(threshold=10.0), rowptr=[0, 2], cols=[0, 0], weights=w)
    result = snn.Network([layer]).run(np.ones((1, 1, 1), np.uint8), backend=backend, mode=mode)
    assert result.membrane[0, 0] == 1.0 + 2.0**-30
