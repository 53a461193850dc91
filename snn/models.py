"""Ready-made networks of the standard benchmarks."""

from __future__ import annotations

import numpy as np

from .model.connectivity import fixed_probability
from .model.graph import Graph
from .model.neurons import LIF


def brunel(
    n: int = 4000,
    *,
    seed: int = 0,
    dt: float = 1e-4,
    in_degree: float = 100.0,
    w_exc: float = 0.5,
    w_inh: float = -4.0,
    n_ext: int = 100,
    rate_ext: float = 20.0,
    dtype=np.float64,
) -> Graph:
    """The BRUNEL-100 network of ``shared/BENCHMARKS.md``: a sparse random
    excitatory/inhibitory network in the asynchronous irregular regime.

    ``n`` LIF neurons (80 % excitatory ``"exc"``, 20 % inhibitory ``"inh"``),
    potentials in mV relative to rest: tau_m = 20 ms with the exact leak per
    step, spike at 20 mV, reset to 10 mV, no refractory period, initial v
    uniform in [0, 20). Every ordered pair (self-pairs included) is
    connected with probability ``in_degree / n``, weights ``w_exc`` from
    excitatory and ``w_inh`` from inhibitory neurons, delivered one step
    after the spike; each neuron gets ``n_ext`` Poisson trains of
    ``rate_ext`` Hz of ``w_exc`` each. ``dt`` in seconds. Connectivity and
    initial potentials are drawn from ``seed``; the Poisson drive from the
    seed given to :meth:`Graph.run`.

    Threshold rule: the simulator fires at ``v >= 20`` where Brian2's
    version of this model fires at ``v > 20``; with these weights and leak
    a membrane lands exactly on 20 mV with probability zero in practice.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 5:
        raise ValueError(f"n must be an integer >= 5, got {n!r}")
    n_exc = int(0.8 * n)
    rng = np.random.default_rng(seed)
    neuron = LIF(tau_mem=20e-3, dt=dt, threshold=20.0, reset="value", v_reset=10.0)
    graph = Graph(dt=dt, dtype=dtype)
    exc = graph.population(n_exc, neuron, v_init=rng.uniform(0.0, 20.0, n_exc), name="exc")
    inh = graph.population(n - n_exc, neuron, v_init=rng.uniform(0.0, 20.0, n - n_exc), name="inh")
    p = in_degree / n
    pair_seeds = rng.integers(0, 2**63, size=4)
    k = 0
    for source, weight in ((exc, w_exc), (inh, w_inh)):
        for target in (exc, inh):
            rows = fixed_probability(source.n, target.n, p, seed=int(pair_seeds[k]))
            graph.connect(source, target, weight, connectivity=rows, delay=1)
            k += 1
    for target in (exc, inh):
        graph.poisson_input(target, n_trains=n_ext, rate=rate_ext, weight=w_exc)
    return graph
