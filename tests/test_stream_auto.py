"""A run cut into chunks computes what the uncut run computes, also with
``mode="auto"``, for a recorded population.

The bug this pins down: ``mode="auto"`` chooses a stepped population's path
(event or clock) from the input activity of the first chunk a run
advances (``snn.run.schedule._stepped_modes``), so a run whose first chunk
was shorter (here 10 quiet steps, against the uncut run's 25 with a busy
tail) could take the other path. Both paths give the same spikes up to
rounding, but a recorded membrane shows the rounding at every step: the
event path reads a neuron left alone for ``k`` steps in closed form
(``beta**k``, the 2x2 propagator), the clock path steps it ``k`` times, and
the two differ in the last bit. Found with ``test_stream.py::
test_streams_equal_uncut_runs_of_the_same_epoch`` and hypothesis seed
265103344631906057727464494377379037171 (51 of 100 recorded membranes 1 ulp
apart). A recorded population now runs the clock path under ``"auto"``
whatever the activity: its membrane is read every step anyway.
"""

from __future__ import annotations

import numpy as np
import pytest

import snn


def _graph(neuron):
    """Input (8) -> h (6, recorded: a stepped population), with random
    weights and a bias; the input silent for 10 steps, then busy: on
    the first 10 steps alone "auto" chooses the event path, on all 25 the
    clock path."""
    rng = np.random.default_rng(5)
    g = snn.Graph()
    x = g.input(8, name="x")
    h = g.population(6, neuron, bias=0.01, v_init=rng.uniform(-0.5, 0.5, 6), name="h")
    g.connect(x, h, rng.uniform(-0.2, 0.6, (6, 8)))
    spikes = np.zeros((25, 1, 8), np.uint8)
    spikes[10:] = rng.random((15, 1, 8)) < 0.9
    return g, spikes


@pytest.mark.parametrize(
    "neuron",
    [snn.CubaLIF(beta=0.6448, alpha=0.8661, threshold=0.5), snn.LIF(beta=0.9, threshold=0.5)],
    ids=["CubaLIF", "LIF"],
)
@pytest.mark.parametrize("cuts", [[10, 15], [10, 6, 9], [1, 24]])
def test_auto_recorded_population_is_the_same_however_cut(neuron, cuts):
    g, spikes = _graph(neuron)
    record = {"h": np.arange(6)}
    whole = g.start(25, inputs={"x": spikes}, record_v=record).advance().result()
    fed = g.start(25, batch_size=1, record_v=record)
    t = 0
    for steps in cuts:
        fed.advance(steps, inputs={"x": spikes[t : t + steps]})
        t += steps
    cut = fed.result()
    np.testing.assert_array_equal(cut.spikes("h"), whole.spikes("h"))
    np.testing.assert_array_equal(cut.v("h"), whole.v("h"))
    assert [c.mode for c in cut.counts] == [c.mode for c in whole.counts]
