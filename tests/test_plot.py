"""snn.plot under the Agg backend: the artists hold what the run holds (one
point per spike, one bar per layer) and the figures render to files."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

import snn
from snn import plot


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def result():
    net = snn.Network(
        [snn.Linear(30, 40, snn.LIF(beta=0.9), seed=0), snn.Linear(40, 10, snn.LIF(beta=0.9), seed=1)]
    )
    return net.run(snn.bernoulli(np.full((2, 30), 0.3), T=50, seed=0))


@pytest.fixture(scope="module")
def graph_result():
    graph = snn.models.brunel(200, seed=0)
    return graph.run(400, seed=0, progress=False, record_v={"exc": [0, 1, 2]})


def _points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections)


def test_raster_one_point_per_spike(result, tmp_path):
    ax = plot.raster(result, sample=1)
    expected = sum(int(result.spikes(k)[:, 1].sum()) for k in range(2))
    assert expected > 0
    assert _points(ax) == expected == ax.raster_shown == ax.raster_total
    assert len(ax.collections) == 2  # one colour per layer
    ax.figure.savefig(tmp_path / "raster.png")
    assert (tmp_path / "raster.png").stat().st_size > 0


def test_raster_points_are_the_spikes(result):
    ax = plot.raster(result, layers=[0], sample=0)
    xy = ax.collections[0].get_offsets()
    t, s, i = result.trains[0].to_events().T
    got = sorted(map(tuple, np.asarray(xy, np.int64).tolist()))
    assert got == sorted(zip(t[s == 0].tolist(), i[s == 0].tolist()))


def test_raster_decimation_says_how_many(graph_result):
    total = int(graph_result.spikes("exc")[:, 0].sum() + graph_result.spikes("inh")[:, 0].sum())
    ax = plot.raster(graph_result, max_points=30)
    assert _points(ax) == ax.raster_shown <= 31 and ax.raster_total == total > 30
    assert f"of {total:,} spikes shown" in ax.get_title()
    assert ax.get_xlabel() == "time (s)"


def test_population_rate(graph_result, result):
    ax = plot.population_rate(graph_result, bin_steps=10)
    assert len(ax.lines) == 2 and len(ax.lines[0].get_xdata()) == 40
    per_step = graph_result.spikes("exc").sum(axis=(1, 2))[:400].reshape(40, 10).sum(1)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), per_step / (160 * 10 * graph_result.dt))
    ax = plot.population_rate(result, layers=0, color="k")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), result.spikes(0).mean(axis=(1, 2)))
    assert ax.lines[0].get_color() == "k"  # kwargs forwarded


def test_bars_one_per_layer(result, graph_result, tmp_path):
    prof = snn.profile(result)
    ax = plot.layer_rates(prof)
    assert len(ax.patches) == len(prof)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [lp.rate for lp in prof.layers])
    ax = plot.layer_rates(graph_result)  # a result is profiled on the fly; graph rates in Hz
    assert len(ax.patches) == 2 and "Hz" in ax.get_ylabel()
    ax = plot.work_skipped(result)
    assert len(ax.patches) == 2
    np.testing.assert_allclose(
        [p.get_height() for p in ax.patches], [100 * lp.work_skipped for lp in prof.layers]
    )
    ax.figure.savefig(tmp_path / "skipped.svg")
    assert (tmp_path / "skipped.svg").read_text().count("<svg") == 1


def test_rate_histogram(result):
    prof = snn.profile(result, bins=12)
    ax = plot.rate_histogram(prof, layer=0)
    (stairs,) = ax.patches
    np.testing.assert_array_equal(stairs.get_data().values, prof[0].hist_counts)
    assert "silent" in ax.get_title()


def test_traces(graph_result):
    ax = plot.traces(graph_result, population="exc", neurons=[0, 2], threshold=20.0)
    assert len(ax.lines) == 3  # two traces and the threshold
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), graph_result.v("exc")[:, 0, 2])
    assert ax.lines[0].get_label() == "neuron 0"
    ax = plot.traces(np.zeros((10, 4)), dt=0.1, lw=3)
    assert len(ax.lines) == 4 and ax.lines[0].get_linewidth() == 3
    with pytest.raises(ValueError, match="population"):
        plot.traces(graph_result)


class _Evaluation:  # the fields of snn.convert.Evaluation that the plots read
    rows: ClassVar[list] = [
        {"T": t, "accuracy": a, "synops": s, "energy_pj": 0.9 * s}
        for t, a, s in ((4, 0.5, 100.0), (8, 0.8, 200.0), (16, 0.9, 400.0))
    ]
    ann_accuracy, ann_macs, ann_energy_pj = 0.95, 1000, 4600.0


def test_accuracy_and_cost_vs_T(tmp_path):
    ax = plot.accuracy_vs_T(_Evaluation())
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [50, 80, 90])
    assert ax.lines[1].get_ydata()[0] == pytest.approx(95)
    twin = plot.cost_vs_T(_Evaluation(), ax=ax.twinx())
    np.testing.assert_allclose(twin.lines[0].get_ydata(), [0.9 * s / 4600 for s in (100, 200, 400)])
    ax2 = plot.cost_vs_T(_Evaluation(), "synops", relative=False)
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), [100, 200, 400])
    ax.figure.savefig(tmp_path / "acc.png")
    with pytest.raises(ValueError, match="cost"):
        plot.cost_vs_T(_Evaluation(), "time")


def test_bad_sources(result):
    with pytest.raises(TypeError, match="Profile"):
        plot.layer_rates(np.zeros(3))
    with pytest.raises(KeyError, match="no layer"):
        plot.raster(result, layers="nope")
    with pytest.raises(ValueError, match="sample"):
        plot.raster(result, sample=5)
