"""snn.distributed on a LocalCluster of 2 worker processes (1 thread each):
evaluation, runs, profiles and sweeps equal to one process (``==``, not
close), failures reported per sweep point, clear errors, and the package
without Dask."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

import snn  # noqa: E402
from snn import distributed as sd  # noqa: E402
from snn.convert import convert, evaluate  # noqa: E402
from snn.convert.training import digits_mlp, load_digits_split, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        c = sd.local_client(2, numba_threads=1, threads_per_worker=1)
    yield c
    c.close()
    c.cluster.close()


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.fixture(scope="module")
def converted(digits):
    x_train, y_train, _, _ = digits
    model = train(digits_mlp(), x_train, y_train, epochs=3, progress=False)
    return model, convert(model, x_train, percentile=99.9)


def _rows_without_time(evaluation):
    return [{k: v for k, v in r.items() if k != "ms_per_sample"} for r in evaluation.rows]


def _same_rows(a, b):
    """Equal rows, NaN where both have NaN (``updates`` off T_max in a single pass)."""
    ra, rb = _rows_without_time(a), _rows_without_time(b)
    assert [sorted(r) for r in ra] == [sorted(r) for r in rb]
    for x, y in zip(ra, rb):
        for key in x:
            assert x[key] == y[key] or (np.isnan(x[key]) and np.isnan(y[key])), (key, x[key], y[key])


@pytest.mark.parametrize("single_pass", [True, False], ids=["single_pass", "runs_per_T"])
def test_evaluate_equals_one_process(client, converted, digits, single_pass):
    model, conv = converted
    _, _, x, y = digits
    weights = [np.array(layer.dense_rows()) for layer in conv.network.layers]
    steps = (4, 16, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sd.PathWarning)
        one = evaluate(conv, x, y, steps, single_pass=single_pass, ann_model=model, mode="event")
        many = sd.evaluate(
            conv,
            x,
            y,
            steps,
            single_pass=single_pass,
            ann_model=model,
            mode="event",
            client=client,
            partitions=5,
        )
    _same_rows(one, many)
    assert one.ann_accuracy == many.ann_accuracy and one.ann_macs == many.ann_macs
    if single_pass:
        for key in ("readout", "synops", "macs"):
            assert np.array_equal(getattr(one.trajectory, key), getattr(many.trajectory, key)), key
        a, b = one.early_exit(patience=3), many.early_exit(patience=3)
        for key in ("exit_step", "decision", "synops", "full_synops", "stable_step", "stable_synops"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key
        assert (a.accuracy, a.full_accuracy, a.synops_saved) == (b.accuracy, b.full_accuracy, b.synops_saved)
    for layer, w in zip(conv.network.layers, weights):  # the user's network is untouched
        assert np.array_equal(layer.dense_rows(), w)


def test_evaluate_hook_in_convert(client, converted, digits):
    """``snn.convert.evaluate(..., client=)`` delegates to snn.distributed."""
    _, conv = converted
    _, _, x, y = digits
    one = evaluate(conv, x[:200], y[:200], (8, 16), mode="clock")
    many = evaluate(conv, x[:200], y[:200], (8, 16), mode="clock", client=client)
    _same_rows(one, many)


def test_evaluate_reads_a_dask_array_on_the_workers(client, converted, digits):
    da = pytest.importorskip("dask.array")
    _, conv = converted
    _, _, x, y = digits
    one = evaluate(conv, x, y, (8,), mode="event")
    many = sd.evaluate(
        conv,
        da.from_array(x, chunks=(100, 1, 8, 8)),
        da.from_array(y, chunks=100),
        (8,),
        mode="event",
        client=client,
    )
    _same_rows(one, many)


def _net():
    return snn.Network(
        [
            snn.Linear(30, 40, snn.LIF(beta=0.9), seed=0),
            snn.SparseLinear.random(
                40, 12, p=0.3, weight=0.4, neuron=snn.CubaLIF(beta=0.9, alpha=0.8), seed=1
            ),
        ]
    )


def _same_run(a: snn.RunResult, b: snn.RunResult):
    assert a.n_steps == b.n_steps and a.batch_size == b.batch_size and a.backend == b.backend
    for ta, tb in zip(a.trains, b.trains):
        assert np.array_equal(ta.tptr, tb.tptr) and np.array_equal(ta.to_events(), tb.to_events())
    for ca, cb in zip(a.counts, b.counts):
        assert (ca.name, ca.mode) == (cb.name, cb.mode)
        for key in ("synops", "macs", "updates", "dense_updates", "spikes", "input_events"):
            assert np.array_equal(getattr(ca, key), getattr(cb, key)), key
    assert (a.membrane is None and b.membrane is None) or np.array_equal(a.membrane, b.membrane)
    assert a.names == b.names and a.dt == b.dt
    for got, want in ((a.recorded, b.recorded), (a.recorded_i, b.recorded_i)):
        assert sorted(got) == sorted(want)
        for name, (idx, values) in got.items():
            assert np.array_equal(idx, want[name][0]) and np.array_equal(values, want[name][1]), name


def _graph():
    """Input spikes, a per-sample drive, Poisson background, a recurrent
    CubaLIF population (delay 2) and a readout: every way a graph's samples
    could depend on where they run."""
    g = snn.Graph(dt=1e-3)
    x = g.input(20, name="x")
    hidden = g.population(30, snn.CubaLIF(beta=0.9, alpha=0.8, threshold=1.0), name="hidden")
    out = g.population(5, snn.LIF(beta=0.95), name="out")
    rng = np.random.default_rng(5)
    g.connect(x, hidden, rng.uniform(0, 0.6, (30, 20)) * (rng.random((30, 20)) < 0.4))
    g.connect(hidden, hidden, rng.uniform(-0.3, 0.3, (30, 30)) * (rng.random((30, 30)) < 0.2), delay=2)
    g.connect(hidden, out, rng.uniform(0, 0.8, (5, 30)))
    g.poisson_input(hidden, n_trains=10, rate=300.0, weight=0.2)
    return g


def test_graph_run_equals_one_process(client):
    """A graph's batch split over workers: each partition draws the Poisson
    background of its samples in the whole batch (``first_sample``), so the
    merged run, its recordings included, equals one process's."""
    g = _graph()
    spikes = snn.bernoulli(np.full((17, 20), 0.1), T=40, seed=6)
    drive = np.random.default_rng(7).uniform(0, 0.05, (17, 5))
    kwargs = dict(
        inputs={"x": spikes},
        drive={"out": drive},
        seed=3,
        record_v={"hidden": [0, 7, 29]},
        record_i={"hidden": [1]},
    )
    one = g.run(40, **kwargs, mode="event", progress=False)
    many = sd.run(g, T=40, **kwargs, mode="event", client=client, partitions=3)
    assert one.counts[1].spikes.sum() > 0 and len(one.recorded["hidden"][1]) == 40
    _same_run(one, many)
    shifted = g.run(40, **kwargs, mode="event", progress=False, first_sample=1)  # another sample's draws
    assert not np.array_equal(shifted.spikes("hidden"), one.spikes("hidden"))


def test_run_takes_each_kind_of_network_its_own_inputs(client):
    with pytest.raises(ValueError, match="a Graph takes inputs="):
        sd.run(_graph(), np.zeros((5, 2, 20), np.uint8), client=client)
    with pytest.raises(ValueError, match="a Network takes spikes="):
        sd.run(_net(), inputs={"x": np.zeros((5, 2, 30), np.uint8)}, client=client)
    with pytest.raises(ValueError, match="first_sample must be an integer >= 0"):
        _graph().run(5, inputs={"x": np.zeros((5, 1, 20), np.uint8)}, first_sample=-1)


@pytest.mark.parametrize("kind", ["spikes", "events", "analog"])
def test_run_equals_one_process(client, kind):
    net = _net()
    spikes = snn.bernoulli(np.full((23, 30), 0.2), T=25, seed=2)
    if kind == "spikes":
        inputs = {"spikes": spikes}
    elif kind == "events":
        inputs = {"events": snn.SpikeTrains.from_raster(spikes).to_events(), "T": 25, "batch_size": 23}
    else:
        inputs = {"analog": np.random.default_rng(3).uniform(0, 0.3, (23, 30)), "T": 25}
    frozen = {k: np.copy(v) for k, v in inputs.items() if isinstance(v, np.ndarray)}
    one = net.run(**inputs, mode="event", record_v={1: [0, 5]})
    many = sd.run(net, **inputs, mode="event", record_v={1: [0, 5]}, client=client, partitions=4)
    _same_run(one, many)
    for k, v in frozen.items():  # the user's arrays are untouched
        assert np.array_equal(inputs[k], v)


def test_profile_of_partitions_equals_one_process(client):
    net = _net()
    spikes = snn.bernoulli(np.full((40, 30), 0.2), T=30, seed=4)
    one = snn.profile(net.run(spikes, mode="event"), activity=True, ann_macs=1000)
    parts = sd.run(net, spikes, mode="event", client=client, partitions=6, gather=False)
    try:
        many = (
            snn.profile(parts, activity=True, ann_macs=1000)
            if _hooked()
            else sd.profile(parts, activity=True, ann_macs=1000)
        )
        assert many.to_dict() == one.to_dict()
        _same_run(net.run(spikes, mode="event"), parts.gather())
    finally:
        parts.release()


def _hooked() -> bool:
    import inspect

    return "client" in inspect.signature(snn.profile).parameters


def _point(g, drive, seed, x):
    """A small sweep point: a network built from the parameters, a run."""
    if g < 0:
        raise ValueError("g must be >= 0")
    net = snn.Network(
        [
            snn.Linear(8, 6, snn.LIF(beta=0.9), seed=seed, bias=drive),
            snn.Linear(6, 3, snn.LIF(beta=0.9), seed=seed + 1, bias=-0.05 * g),
        ]
    )
    result = net.run(analog=x, T=20, mode="event")
    return {"spikes": result.total("spikes"), "synops": result.total("synops")}


def test_sweep_equals_one_process_and_reports_failures(client):
    x = np.random.default_rng(5).uniform(0, 0.5, (4, 8))
    grid = {"g": [-1.0, 0.0, 2.0, 4.0], "drive": [0.05, 0.2]}
    many = sd.sweep(_point, grid, client=client, seed=7, shared={"x": x}, progress=False)
    one = sd.sweep(_point, grid, client="serial", seed=7, shared={"x": x}, progress=False)
    assert len(many) == 8 and list(many.columns[:3]) == ["g", "drive", "seed"]
    pd.testing.assert_frame_equal(many.drop(columns="seconds"), one.drop(columns="seconds"))
    failed = many[many["error"].notna()]
    assert list(failed.index) == [0, 1] and failed["error"].str.startswith("ValueError: g must be").all()
    assert "Traceback" in many.attrs["tracebacks"][0]
    assert many.loc[2:, "spikes"].notna().all()
    assert list(many["seed"]) == [sd.seed_for(7, i) for i in range(8)]
    assert len(set(many["seed"])) == 8


def test_seeds_follow_numpy_seedsequence():
    assert sd.seed_for(7, 3) == int(np.random.SeedSequence(7).spawn(4)[3].generate_state(1)[0])


def _threads_here():
    import numba

    from snn.distributed import _task_threads

    numba.set_num_threads(_task_threads(None))
    return numba.get_num_threads()


def test_one_numba_thread_per_worker(client):
    got = client.gather([client.submit(_threads_here, pure=False, workers=[w]) for w in client.nthreads()])
    assert got == [1, 1]


def test_worker_that_cannot_import_is_named(client):
    with pytest.raises(
        sd.WorkerImportError,
        match=r"2 of 2 Dask workers cannot import no_such_snn_module.*"
        r"ModuleNotFoundError.*pip install",
    ):
        sd.check_workers(client, module="no_such_snn_module")
    assert sorted(sd.check_workers(client).values()) == [snn.__version__] * 2


def test_the_package_runs_without_dask():
    code = textwrap.dedent("""
        import sys
        for name in ("dask", "distributed", "pandas"):
            sys.modules[name] = None  # import fails as if not installed
        import numpy as np
        import snn, snn.distributed as sd
        net = snn.Network([snn.Linear(4, 3, snn.LIF(beta=0.9), seed=0)])
        net.run(analog=np.ones((2, 4)), T=5)
        snn.profile(net.run(analog=np.ones((2, 4)), T=5))
        try:
            sd.run(net, analog=np.ones((2, 4)), T=5)
        except ImportError as exc:
            assert 'pip install "snn-zero-waste[dask]"' in str(exc), exc
        else:
            raise AssertionError("no ImportError")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
