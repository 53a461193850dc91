"""snn.profile: every number against an independent computation from the
recorded rasters (``result.spikes(l)``), hand-built silent / max-rate cases,
export round trips and comparisons."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import snn
from snn.energy import EnergyModel
from snn.profile import DEFINITIONS, Profile


def _two_layer(mode="auto"):
    return snn.Network(
        [
            snn.Linear(30, 40, snn.LIF(beta=0.9), seed=0, mode=mode),
            snn.SparseLinear.random(
                40, 12, p=0.3, weight=0.4, neuron=snn.CubaLIF(beta=0.9, alpha=0.8), seed=1, mode=mode
            ),
        ]
    )


@pytest.fixture(scope="module")
def run():
    net = _two_layer()
    spikes = snn.bernoulli(np.full((3, 30), 0.2), T=40, seed=2)
    return net, spikes, net.run(spikes)


def _fan_out_from_weights(layer) -> np.ndarray:
    """Independent fan-out: non-zero weights per presynaptic neuron (the
    test networks draw no zero weight)."""
    return (layer.dense_rows(np.float64) != 0).sum(axis=1)


def test_every_number_matches_the_rasters(run):
    net, spikes, result = run
    dt = 1e-3
    prof = snn.profile(result, dt=dt, activity=True, quantiles=(0.1, 0.5, 0.9), bins=7)
    inputs = [spikes] + [result.spikes(k) for k in range(len(net.layers) - 1)]
    T, B = spikes.shape[:2]
    assert (prof.n_steps, prof.batch_size, prof.dt) == (T, B, dt)
    for k, layer in enumerate(net.layers):
        raster = result.spikes(k).astype(np.int64)  # [T, B, n]
        lp = prof[k]
        per_neuron = raster.sum(axis=(0, 1))
        rates = per_neuron / (T * B)
        n_in_spikes = int(inputs[k].sum())
        synops = int((inputs[k].astype(np.int64) * _fan_out_from_weights(layer)).sum())
        assert lp.neurons == layer.n_out
        assert lp.spikes == raster.sum()
        assert lp.rate == pytest.approx(raster.mean(), rel=1e-12)
        assert lp.rate_hz == pytest.approx(raster.mean() / dt, rel=1e-12)
        assert lp.rate_std == pytest.approx(rates.std(), rel=1e-12, abs=1e-15)
        np.testing.assert_allclose(lp.rate_quantiles, np.quantile(rates, (0.1, 0.5, 0.9)), rtol=1e-12)
        assert lp.silent == np.mean(per_neuron == 0)
        assert lp.at_max_rate == np.mean(per_neuron == T * B)
        assert lp.input_events == n_in_spikes
        assert lp.synops == synops
        assert lp.synops_per_input_spike == pytest.approx(synops / n_in_spikes, rel=1e-12)
        assert lp.macs == 0
        assert lp.dense_updates == T * B * layer.n_out
        assert lp.updates == result.counts[k].total("updates")
        assert 0 < lp.updates <= lp.dense_updates
        assert lp.work_skipped == pytest.approx(1 - lp.updates / (T * B * layer.n_out), rel=1e-12)
        assert lp.energy_pj == pytest.approx(0.9 * synops, rel=1e-12)
        np.testing.assert_array_equal(lp.activity, raster.sum(axis=(1, 2)))
        hist, edges = np.histogram(rates, bins=7, range=(0, rates.max()))
        np.testing.assert_array_equal(lp.hist_counts, hist)
        np.testing.assert_allclose(lp.hist_edges, edges, rtol=1e-12)
        assert sum(lp.hist_counts) == layer.n_out
    assert prof.total("synops") == result.total("synops")
    assert prof.per_sample("spikes") == pytest.approx(sum(result.spikes(k).sum() for k in range(2)) / B)
    dense = sum(T * B * la.n_out for la in net.layers)
    assert prof.work_skipped == pytest.approx(1 - result.total("updates") / dense, rel=1e-12)


def test_dense_path_skips_no_update():
    net = _two_layer(mode="dense")
    result = net.run(snn.bernoulli(np.full((2, 30), 0.3), T=20, seed=0))
    prof = snn.profile(result)
    for lp in prof.layers:
        assert lp.mode == "dense" and lp.work_skipped == 0.0 and lp.updates == lp.dense_updates


def test_hand_built_silent_and_max_rate():
    """IF neurons with no input, biases 1, 0, 0.5, 0.25 and threshold 1 fire
    at every step, never, every 2nd and every 4th step."""
    layer = snn.Linear(1, 4, snn.IF(threshold=1.0), weight=np.zeros((4, 1)), bias=[1.0, 0.0, 0.5, 0.25])
    T, B = 8, 3
    result = snn.Network([layer]).run(np.zeros((T, B, 1), np.uint8))
    lp = snn.profile(result, quantiles=(0.0, 1.0))[0]
    assert lp.spikes == B * (8 + 0 + 4 + 2)
    assert lp.silent == 0.25
    assert lp.at_max_rate == 0.25
    assert lp.rate == pytest.approx(14 / 32)
    assert lp.rate_quantiles == (0.0, 1.0)
    assert lp.input_events == 0 and lp.synops == 0
    assert math.isnan(lp.synops_per_input_spike)
    assert math.isnan(lp.rate_hz)  # no dt
    assert snn.profile(result, dt=0.5)[0].rate_hz == pytest.approx(14 / 32 / 0.5)


def test_all_silent_layer():
    layer = snn.Linear(2, 3, snn.IF(threshold=1.0), weight=np.zeros((3, 2)))
    result = snn.Network([layer]).run(np.zeros((5, 1, 2), np.uint8))
    lp = snn.profile(result)[0]
    assert (lp.spikes, lp.silent, lp.at_max_rate, lp.rate) == (0, 1.0, 0.0, 0.0)
    assert sum(lp.hist_counts) == 3 and lp.hist_counts[0] == 3


def test_analog_input_counts_macs_and_energy():
    rng = np.random.default_rng(0)
    net = snn.Network(
        [snn.Linear(6, 5, snn.IF(), seed=0), snn.Linear(5, 2, snn.IF(threshold=math.inf), seed=1)]
    )
    x = rng.uniform(0, 1, (4, 6))
    x[:, 0] = 0  # zero inputs are not multiplied
    result = net.run(analog=x, T=10)
    energy = EnergyModel(pj_per_ac=2.0, pj_per_mac=10.0)
    prof = snn.profile(result, energy=energy, ann_macs=6 * 5 + 5 * 2)
    macs = int((x != 0).sum() * 5)
    synops = int(result.spikes(0).sum() * 2)
    assert prof[0].macs == macs and prof[0].synops == 0 and prof[0].input_events == 0
    assert prof[1].synops == synops
    assert prof[1].silent == 1.0  # the readout never fires
    assert prof.total("energy_pj") == pytest.approx(2.0 * synops + 10.0 * macs)
    assert prof.ann_energy_pj == pytest.approx(10.0 * 40)
    assert "x the ANN" in repr(prof)


def test_graph_result_populations_and_hz():
    """A graph: an input population driving a neuron population with delay
    1; synops = input spikes of steps < T - 1 times the fan-out."""
    graph = snn.Graph(dt=1e-3)
    inp = graph.input(8, name="in")
    pop = graph.population(5, snn.LIF(beta=0.9), name="pop")
    weight = np.random.default_rng(0).uniform(0.3, 0.8, (5, 8))
    graph.connect(inp, pop, weight, delay=1)
    spikes = snn.bernoulli(np.full((2, 8), 0.3), T=30, seed=1)
    result = graph.run(30, inputs={"in": spikes}, progress=False)
    prof = snn.profile(result)
    assert [lp.name for lp in prof.layers] == ["in", "pop"]
    assert prof.dt == 1e-3
    out = result.spikes("pop")
    assert prof["pop"].spikes == out.sum()
    assert prof["pop"].rate_hz == pytest.approx(result.rate_hz("pop"), rel=1e-12)
    assert prof["pop"].synops == int(spikes[:-1].sum()) * 5
    assert prof["pop"].input_events == int(spikes[:-1].sum())
    assert prof["in"].spikes == spikes.sum()
    assert math.isnan(prof["in"].work_skipped)  # inputs have no neuron to update
    with pytest.raises(KeyError, match="no layer named"):
        prof["nope"]


def test_brunel_rates_match_graph_result():
    graph = snn.models.brunel(200, seed=0)
    result = graph.run(300, seed=0, progress=False)
    prof = snn.profile(result)
    for name in ("exc", "inh"):
        assert prof[name].rate_hz == pytest.approx(result.rate_hz(name), rel=1e-12)
        assert prof[name].silent == np.mean(result.spikes(name).sum(axis=(0, 1)) == 0)


def test_memory_independent_of_T_unless_asked(run):
    _, _, result = run
    prof = snn.profile(result)
    assert all(lp.activity is None for lp in prof.layers)
    sizes = {
        len(
            json.dumps(
                snn.profile(_two_layer().run(snn.bernoulli(np.full((1, 30), 0.2), T=t, seed=0))).to_dict()
            )
        )
        for t in (10, 200)
    }
    assert max(sizes) - min(sizes) < 200  # only the digits of the numbers change


def test_json_round_trip(run, tmp_path):
    _, _, result = run
    prof = snn.profile(result, dt=1e-3, activity=True, ann_macs=1234)
    path = tmp_path / "p.json"
    prof.to_json(path)
    back = Profile.read_json(path)
    assert back.to_dict() == prof.to_dict()
    assert json.loads(path.read_text())["definitions"] == DEFINITIONS
    no_dt = snn.profile(result)
    assert Profile.from_dict(json.loads(json.dumps(no_dt.to_dict()))).to_dict() == no_dt.to_dict()


def test_csv_round_trip(run, tmp_path):
    _, _, result = run
    prof = snn.profile(result, dt=1e-3)
    path = tmp_path / "p.csv"
    prof.to_csv(path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(prof)
    for row, lp in zip(rows, prof.layers):
        assert row["name"] == lp.name
        for key in ("neurons", "spikes", "synops", "updates", "dense_updates", "macs", "input_events"):
            assert int(row[key]) == getattr(lp, key)
        for key in ("rate", "rate_hz", "silent", "work_skipped", "energy_pj"):
            assert float(row[key]) == getattr(lp, key)
        assert float(row["rate_q0.5"]) == lp.rate_quantiles[2]
        assert int(row["T"]) == prof.n_steps


def test_repr_and_html(run):
    _, _, result = run
    prof = snn.profile(result)
    text = repr(prof)
    assert "Profile(T=40, batch=3" in text and "0:Linear" in text and "pJ per AC" in text
    assert f"{prof.total('synops'):,}" in text
    page = prof._repr_html_()
    assert page.count("<tr>") == len(prof) + 2  # head, layers, total


def test_compare_per_sample_ratios():
    net = _two_layer()
    a = snn.profile(net.run(snn.bernoulli(np.full((2, 30), 0.2), T=8, seed=0)))
    b = snn.profile(net.run(snn.bernoulli(np.full((4, 30), 0.2), T=32, seed=0)))
    cmp = a.compare(b, names=("T=8", "T=32"))
    rows = cmp.rows()
    assert len(rows) == 3 and rows[-1]["layer"] == "total"
    va, vb, ratio = rows[0]["synops"]
    assert va == a[0].synops / 2 and vb == b[0].synops / 4 and ratio == pytest.approx(vb / va)
    va, vb, ratio = rows[-1]["energy_pj"]
    assert va == pytest.approx(a.energy_pj_per_sample) and ratio == pytest.approx(vb / va)
    assert rows[1]["rate"][:2] == (a[1].rate, b[1].rate)
    assert "T=32/T=8" in repr(cmp)
    json.dumps(cmp.to_dict(), allow_nan=False)
    other = snn.profile(snn.Network([snn.Linear(30, 2, seed=0)]).run(np.zeros((3, 1, 30), np.uint8)))
    with pytest.raises(ValueError, match="layers"):
        a.compare(other).rows()


def test_bad_arguments(run):
    _, _, result = run
    with pytest.raises(TypeError, match="RunResult"):
        snn.profile(np.zeros(3))
    with pytest.raises(ValueError, match="dt"):
        snn.profile(result, dt=-1.0)
    with pytest.raises(ValueError, match="quantiles"):
        snn.profile(result, quantiles=(1.5,))
    with pytest.raises(ValueError, match="bins"):
        snn.profile(result, bins=0)
