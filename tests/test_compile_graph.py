"""Cold compile of a graph (issue 11, BRUNEL-100 cold ``prepare()``): the
graph kernel compiles only the CSR delivery a plan can take, and a cold
``Graph.prepare()`` compiles the readout's kernel (``kernels.settle``) in a
forked process (``kernels.precompile``) while it compiles the run's.

The prepare test runs in subprocesses, each with a new ``NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import NOJIT

from snn_kernels.event import CONV, CSR
from snn_kernels.graph import CSR_NONE, CSR_ROWS, CSR_SCATTER, MODEL_PLAIN, graph_choices
from tests.test_compile_parallel import _child


def _choices(kinds, rows, clock, may_clock=None):
    """graph_choices of an input and two plain neuron populations, projections of ``kinds``."""
    plan = SimpleNamespace(
        proj_kind=np.array(kinds, np.int64),
        proj_rows=np.array(rows, np.int64),
        model=np.full(3, MODEL_PLAIN, np.int64),
        n_inputs=1,
        bg_lam=np.zeros(0),
    )
    inputs = SimpleNamespace(
        pop_clock=np.array(clock, np.bool_), rec_pop=np.zeros(0, np.int64), exit_rule=np.zeros(0)
    )
    may = None if may_clock is None else np.array(may_clock, np.bool_)
    return graph_choices(plan, inputs, None, may)


def test_csr_choice_names_the_register_sums_only_where_they_can_run():
    """``CSR_ROWS`` (the register sums of rows of the same few targets,
    compiled) only for a plan with such rows (``proj_rows > 0``) and a
    population that may be clock-stepped; other CSR plans get
    ``CSR_SCATTER``, a plan without CSR projections ``CSR_NONE``."""
    assert _choices([CSR, CSR], [0, 10], [False, True, True])[0] == CSR_ROWS
    assert _choices([CSR, CSR], [0, 10], [False, False, True])[0] == CSR_ROWS
    assert _choices([CSR, CSR], [0, 0], [False, True, True])[0] == CSR_SCATTER  # BRUNEL: no such rows
    assert _choices([CSR, CSR], [0, 10], [False, False, False])[0] == CSR_SCATTER  # event-stepped only
    # a population that may be clock-stepped (its path chosen from its input) needs them compiled
    assert _choices([CSR, CSR], [0, 10], [False, False, False], [False, False, True])[0] == CSR_ROWS
    assert _choices([CONV, CONV], [0, 10], [False, True, True])[0] == CSR_NONE  # rows of a CSR only
    assert _choices([CONV, CSR], [10, 0], [False, True, True])[0] == CSR_SCATTER


PREPARE = r"""
import os, numpy as np, snn, snn_kernels
net = snn.models.brunel(100, seed=0)
forks = []
fork = os.fork
def counted_fork():
    forks.append(1)
    return fork()
os.fork = counted_fork
net.prepare()
os.fork = fork
settle = snn_kernels.settle
readout = {"hits": sum(settle.stats.cache_hits.values()), "misses": sum(settle.stats.cache_misses.values())}
before = compiled()
out = []
for batch in (1, 3):
    r = net.run(40, batch_size=batch, progress=False, seed=3)
    out.append([r.spikes("exc").tolist(), r.spikes("inh").tolist(),
                [[c.synops.tolist(), c.spikes.tolist(), c.input_events.tolist()] for c in r.counts],
                r.membrane.tolist()])
print(json.dumps({"forks": len(forks), "readout": readout, "kernels": sorted(before),
                  "new": compiled() != before, "out": out}))
"""


@pytest.mark.skipif(NOJIT, reason="compiles kernels; nothing is compiled without the JIT")
@pytest.mark.skipif(
    not hasattr(os, "fork") or len(os.sched_getaffinity(0)) < 2, reason="needs os.fork and two cores"
)
def test_cold_graph_prepare_compiles_the_readout_in_the_forked_process(tmp_path):
    """A cold ``prepare()`` of BRUNEL-100 forks once; the readout's kernel
    (``settle``, for the arrays the membrane readout passes it) is the
    child's, loaded here from the cache, never compiled here; the runs
    after it compile nothing; the results equal those of a process that
    compiled everything itself. Its graph kernel has no register sums
    (``CSR_SCATTER``: no projection of BRUNEL has rows of the same few
    targets)."""
    forked = _child(PREPARE, tmp_path / "forked")
    assert forked["forks"] == 1
    assert forked["readout"]["hits"] > 0 and forked["readout"]["misses"] == 0, forked["readout"]
    assert not forked["new"]
    graph = [name.rsplit(".", 1)[1] for name in forked["kernels"] if "graph_samples" in name]
    assert graph == [f"graph_samples_{CSR_SCATTER}_0_1_0_1_0"], graph
    serial = _child(PREPARE, tmp_path / "serial", SNN_FORK_COMPILE="0")
    assert serial["forks"] == 0 and serial["readout"]["hits"] == 0
    assert forked["out"] == serial["out"]
