"""Golden single-neuron trajectories, worked out by hand.

One neuron behind a 1-input Linear layer (weight ``w``), threshold 1, fed a
known spike train. The step (DESIGN.md §1): leak, integrate, fire if
``v >= threshold``, reset; CubaLIF: ``i <- alpha*i + input``, ``v <- beta*v + i``;
refractory ``r``: after a spike at ``t``, steps ``t+1 .. t+r`` hold ``v``
(no leak, input discarded; a current keeps integrating).

All values are dyadic (w, beta, alpha are multiples of powers of 1/2), so
every intermediate is exact in float32 and float64 and the final membranes
are compared with ``==``. Every case runs on the reference backend and on the
event backend in both modes, in both precisions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import snn

INPUT_STEPS = [0, 1, 2, 4, 5, 7]
T = 10

PATHS = [("reference", None), ("event", "event"), ("event", "clock"), ("event", "dense")]


def spike_train(steps, T):
    x = np.zeros((T, 1, 1), np.uint8)
    x[list(steps), 0, 0] = 1
    return x


def run_single(neuron, w, x, dtype, backend, mode, bias=0.0):
    net = snn.Network([snn.Linear(1, 1, neuron, weight=[[w]], bias=bias)], dtype=dtype)
    if backend == "reference":
        return net.run(x, backend="reference")
    return net.run(x, mode=mode)


GOLDEN = [
    # --- IF, w = 0.625, input at 0 1 2 4 5 7 ------------------------------
    pytest.param(
        snn.IF(),
        0.625,
        # t0 .625 | t1 1.25 F->.25 | t2 .875 | t3 .875 | t4 1.5 F->.5 | t5 1.125 F->.125
        # t6 .125 | t7 .75 | t8 .75 | t9 .75
        [1, 4, 5],
        0.75,
        id="IF-subtract",
    ),
    pytest.param(
        snn.IF(reset="zero"),
        0.625,
        # t0 .625 | t1 1.25 F->0 | t2 .625 | t3 .625 | t4 1.25 F->0 | t5 .625 | t6 .625
        # t7 1.25 F->0 | t8 0 | t9 0
        [1, 4, 7],
        0.0,
        id="IF-zero",
    ),
    pytest.param(
        snn.IF(reset="value", v_reset=-0.25),
        0.625,
        # t0 .625 | t1 1.25 F->-.25 | t2 .375 | t3 .375 | t4 1.0 F->-.25 | t5 .375 | t6 .375
        # t7 1.0 F->-.25 | t8 -.25 | t9 -.25
        [1, 4, 7],
        -0.25,
        id="IF-value",
    ),
    pytest.param(
        snn.IF(refractory=2),
        0.625,
        # t0 .625 | t1 1.25 F->.25 (held t2,t3) | t2 .25 (input lost) | t3 .25
        # t4 .25+.625=.875 | t5 1.5 F->.5 (held t6,t7) | t6 .5 | t7 .5 (input lost) | t8 .5 | t9 .5
        [1, 5],
        0.5,
        id="IF-refractory2",
    ),
    # --- LIF beta = 0.5, w = 0.75 ----------------------------------------
    pytest.param(
        snn.LIF(beta=0.5),
        0.75,
        # t0 .75 | t1 .375+.75=1.125 F->.125 | t2 .0625+.75=.8125 | t3 .40625
        # t4 .203125+.75=.953125 | t5 .4765625+.75=1.2265625 F->.2265625 | t6 .11328125
        # t7 .056640625+.75=.806640625 | t8 .4033203125 | t9 .20166015625
        [1, 5],
        0.20166015625,
        id="LIF-subtract",
    ),
    pytest.param(
        snn.LIF(beta=0.5, reset="zero"),
        0.75,
        # t0 .75 | t1 1.125 F->0 | t2 .75 | t3 .375 | t4 .1875+.75=.9375
        # t5 .46875+.75=1.21875 F->0 | t6 0 | t7 .75 | t8 .375 | t9 .1875
        [1, 5],
        0.1875,
        id="LIF-zero",
    ),
    pytest.param(
        snn.LIF(beta=0.5, refractory=2),
        0.75,
        # t0 .75 | t1 1.125 F->.125 (held t2,t3, no leak) | t2 .125 (input lost) | t3 .125
        # t4 .0625+.75=.8125 | t5 .40625+.75=1.15625 F->.15625 (held t6,t7) | t6 .15625
        # t7 .15625 (input lost) | t8 .078125 | t9 .0390625
        [1, 5],
        0.0390625,
        id="LIF-refractory2",
    ),
    # --- CubaLIF beta = alpha = 0.5, w = 0.5 -------------------------------
    pytest.param(
        snn.CubaLIF(beta=0.5, alpha=0.5),
        0.5,
        # (i, v): t0 (.5, .5) | t1 (.25+.5=.75, .25+.75=1.0) F->0 (v == threshold fires)
        # t2 (.375+.5=.875, .875) | t3 (.4375, .4375+.4375=.875)
        # t4 (.21875+.5=.71875, .4375+.71875=1.15625) F->.15625
        # t5 (.359375+.5=.859375, .078125+.859375=.9375) | t6 (.4296875, .46875+.4296875=.8984375)
        # t7 (.21484375+.5=.71484375, .44921875+.71484375=1.1640625) F->.1640625
        # t8 (.357421875, .08203125+.357421875=.439453125)
        # t9 (.1787109375, .2197265625+.1787109375=.3984375)
        [1, 4, 7],
        0.3984375,
        id="CubaLIF-subtract",
    ),
    pytest.param(
        snn.CubaLIF(beta=0.5, alpha=0.5, reset="zero"),
        0.5,
        # (i, v): t0 (.5, .5) | t1 (.75, 1.0) F->0 | t2 (.875, .875) | t3 (.4375, .875)
        # t4 (.71875, 1.15625) F->0 | t5 (.859375, .859375) | t6 (.4296875, .4296875+.4296875=.859375)
        # t7 (.71484375, .4296875+.71484375=1.14453125) F->0 | t8 (.357421875, .357421875)
        # t9 (.1787109375, .1787109375+.1787109375=.357421875)
        [1, 4, 7],
        0.357421875,
        id="CubaLIF-zero",
    ),
    pytest.param(
        snn.CubaLIF(beta=0.5, alpha=0.5, refractory=2),
        0.5,
        # (i, v): t0 (.5, .5) | t1 (.75, 1.0) F->0, v held t2,t3 while i integrates
        # t2 (.375+.5=.875, 0) | t3 (.4375, 0) | t4 (.21875+.5=.71875, 0+.71875=.71875)
        # t5 (.359375+.5=.859375, .359375+.859375=1.21875) F->.21875, held t6,t7
        # t6 (.4296875, .21875) | t7 (.21484375+.5=.71484375, .21875)
        # t8 (.357421875, .109375+.357421875=.466796875)
        # t9 (.1787109375, .2333984375+.1787109375=.412109375)
        [1, 5],
        0.412109375,
        id="CubaLIF-refractory2",
    ),
]

DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]
PATH_PARAMS = [pytest.param(b, m, id=f"{b}-{m}" if m else b) for b, m in PATHS]


@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron,w,spike_steps,v_final", GOLDEN)
def test_golden_trajectory(neuron, w, spike_steps, v_final, dtype, backend, mode):
    r = run_single(neuron, w, spike_train(INPUT_STEPS, T), dtype, backend, mode)
    assert np.nonzero(r.spikes(0)[:, 0, 0])[0].tolist() == spike_steps
    assert r.membrane.shape == (1, 1)
    assert r.membrane[0, 0] == v_final


SELF_DRIVEN = [
    pytest.param(
        snn.IF(),
        0.0,
        [],
        0.375,
        10,
        # bias .375, no input: t0 .375 | t1 .75 | t2 1.125 F->.125 | t3 .5 | t4 .875
        # t5 1.25 F->.25 | t6 .625 | t7 1.0 F->0 | t8 .375 | t9 .75
        [2, 5, 7],
        0.75,
        id="IF-bias",
    ),
    pytest.param(
        snn.LIF(beta=0.5),
        0.0,
        [],
        0.75,
        10,
        # bias .75: t0 .75 | t1 .375+.75=1.125 F->.125 | t2 .0625+.75=.8125
        # t3 .40625+.75=1.15625 F->.15625 | t4 .078125+.75=.828125
        # t5 .4140625+.75=1.1640625 F->.1640625 | t6 .08203125+.75=.83203125
        # t7 .416015625+.75=1.166015625 F->.166015625 | t8 .0830078125+.75=.8330078125
        # t9 .41650390625+.75=1.16650390625 F->.16650390625
        [1, 3, 5, 7, 9],
        0.16650390625,
        id="LIF-bias",
    ),
    pytest.param(
        snn.IF(refractory=2),
        0.0,
        [],
        0.375,
        10,
        # bias .375, held 2 steps after each spike: t0 .375 | t1 .75 | t2 1.125 F->.125
        # t3 .125 | t4 .125 (held) | t5 .5 | t6 .875 | t7 1.25 F->.25 | t8 .25 | t9 .25 (held)
        [2, 7],
        0.25,
        id="IF-bias-refractory2",
    ),
    pytest.param(
        snn.IF(),
        3.5,
        [0],
        0.0,
        6,
        # one input 3.5 at t0: t0 3.5 F->2.5 | t1 2.5 F->1.5 | t2 1.5 F->.5 | t3 .5 | t4 .5 | t5 .5
        [0, 1, 2],
        0.5,
        id="IF-residue",
    ),
    pytest.param(
        snn.LIF(beta=0.5),
        7.0,
        [0],
        0.0,
        6,
        # one input 7 at t0: t0 7 F->6 | t1 3 F->2 | t2 1 F->0 | t3 0 | t4 0 | t5 0
        [0, 1, 2],
        0.0,
        id="LIF-residue",
    ),
    pytest.param(
        snn.IF(reset="zero"),
        3.5,
        [0],
        0.0,
        6,
        # zero reset keeps no residue: t0 3.5 F->0, then 0
        [0],
        0.0,
        id="IF-zero-no-residue",
    ),
    pytest.param(
        snn.CubaLIF(beta=0.75, alpha=0.75),
        0.625,
        [0],
        0.0,
        6,
        # one input .625 at t0; (i, v): t0 (.625, .625) | t1 (.46875, .46875+.46875=.9375)
        # t2 (.3515625, .703125+.3515625=1.0546875) F->.0546875
        # t3 (.263671875, .041015625+.263671875=.3046875)
        # t4 (.19775390625, .228515625+.19775390625=.42626953125)
        # t5 (.1483154296875, .3197021484375+.1483154296875=.468017578125)
        [2],
        0.468017578125,
        id="CubaLIF-current-fires-later",
    ),
    pytest.param(
        snn.CubaLIF(beta=0.5, alpha=1.0),
        0.625,
        [0],
        0.0,
        9,
        # alpha = 1: the current .625 never decays; v: t0 .625 | t1 .3125+.625=.9375
        # t2 .46875+.625=1.09375 F->.09375 | t3 .046875+.625=.671875 | t4 .3359375+.625=.9609375
        # t5 .48046875+.625=1.10546875 F->.10546875 | t6 .052734375+.625=.677734375
        # t7 .3388671875+.625=.9638671875 | t8 .48193359375+.625=1.10693359375 F->.10693359375
        [2, 5, 8],
        0.10693359375,
        id="CubaLIF-current-never-decays",
    ),
]


@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("neuron,w,input_steps,bias,T_run,spike_steps,v_final", SELF_DRIVEN)
def test_self_driven_spikes(neuron, w, input_steps, bias, T_run, spike_steps, v_final, dtype, backend, mode):
    r = run_single(neuron, w, spike_train(input_steps, T_run), dtype, backend, mode, bias=bias)
    assert np.nonzero(r.spikes(0)[:, 0, 0])[0].tolist() == spike_steps
    assert r.membrane[0, 0] == v_final


@pytest.mark.parametrize("sparse", [False, True], ids=["Linear", "SparseLinear"])
@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
def test_self_driven_spikes_cost_only_their_updates(backend, mode, sparse):
    """The residue case in event mode: the neuron is touched at the input step
    and at its own spike steps only (3 updates), not at every step."""
    if sparse:
        net = snn.Network([snn.SparseLinear.from_dense([[3.5]], snn.IF())])
        x = spike_train([0], 6)
        r = net.run(x, backend="reference") if backend == "reference" else net.run(x, mode=mode)
        assert np.nonzero(r.spikes(0)[:, 0, 0])[0].tolist() == [0, 1, 2]
    else:
        r = run_single(snn.IF(), 3.5, spike_train([0], 6), np.float64, backend, mode)
    expected = 3 if mode == "event" else 6
    assert r.counts[0].updates.tolist() == [expected]
    assert r.counts[0].synops.tolist() == [1]


@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
def test_v_init_above_threshold_fires_at_step_0(backend, mode):
    # v_init 2.25, IF subtract, no input: t0 2.25 F->1.25 | t1 1.25 F->.25 | t2 .25
    net = snn.Network([snn.Linear(1, 1, snn.IF(), weight=[[1.0]], v_init=2.25)])
    x = spike_train([], 3)
    r = net.run(x, backend="reference") if backend == "reference" else net.run(x, mode=mode)
    assert np.nonzero(r.spikes(0)[:, 0, 0])[0].tolist() == [0, 1]
    assert r.membrane[0, 0] == 0.25


@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
def test_two_layer_chain_same_step(backend, mode):
    """Spikes of layer 0 at step t reach layer 1 in the same step.
    Layer 0: IF w=1 fires at each input step 0, 2, 3; layer 1: IF w=.5 ->
    t0 .5 | t2 1.0 F->0 | t3 .5; final .5."""
    net = snn.Network(
        [snn.Linear(1, 1, snn.IF(), weight=[[1.0]]), snn.Linear(1, 1, snn.IF(), weight=[[0.5]])]
    )
    x = spike_train([0, 2, 3], 5)
    r = net.run(x, backend="reference") if backend == "reference" else net.run(x, mode=mode)
    assert np.nonzero(r.spikes(0)[:, 0, 0])[0].tolist() == [0, 2, 3]
    assert np.nonzero(r.spikes(1)[:, 0, 0])[0].tolist() == [2]
    assert r.membrane[0, 0] == 0.5


@pytest.mark.parametrize("backend,mode", PATH_PARAMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "neuron,w,v_final",
    [
        # IF, no reset ever: 6 inputs x .625 = 3.75
        pytest.param(snn.IF(threshold=math.inf), 0.625, 3.75, id="IF"),
        # LIF beta .5, w .75, input at 0 1 2 4 5 7: t0 .75 | t1 1.125 | t2 .5625+.75=1.3125 | t3 .65625
        # t4 .328125+.75=1.078125 | t5 .5390625+.75=1.2890625 | t6 .64453125
        # t7 .322265625+.75=1.072265625 | t8 .5361328125 | t9 .26806640625
        pytest.param(snn.LIF(beta=0.5, threshold=math.inf), 0.75, 0.26806640625, id="LIF"),
    ],
)
def test_infinite_threshold_is_a_membrane_readout(neuron, w, v_final, dtype, backend, mode):
    r = run_single(neuron, w, spike_train(INPUT_STEPS, T), dtype, backend, mode)
    assert r.spikes(0).sum() == 0
    assert r.membrane[0, 0] == v_final
