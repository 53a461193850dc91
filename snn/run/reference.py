"""The reference backend: DESIGN.md §1 as a plain clock-driven loop.

Every neuron of every layer is updated at every step with numpy; nothing is
skipped, cached or reordered. It is the oracle the event backend is tested
against, so it is kept short and obviously correct, not fast.
"""

from __future__ import annotations

import numpy as np

import snn_kernels as kernels

from ..model.conv import conv_dense_rows
from .result import LayerCounts, RunResult
from .spiketrains import SpikeTrains


def run_reference(network, source, analog_x, n_steps, record_v: bool = False):
    """Run ``network`` clock-driven. ``source``: input :class:`SpikeTrains`
    (or None), ``analog_x``: analog input ``[B, n_in]`` / ``[T, B, n_in]``
    (or None). With ``record_v`` also returns, per layer, the membrane of
    every neuron at every step after integration and before reset
    (``[T, B, n]``), for tolerance checks near threshold."""
    dtype = network.dtype
    layers = network.layers
    if source is not None:
        spikes_in = source.to_raster().astype(dtype)
        batch = source.batch_size
    else:
        batch = analog_x.shape[-2]
    weights = [layer.dense_rows(dtype) if layer.kind != "maxpool" else None for layer in layers]
    seen = [np.zeros((batch, layer.n_in)) for layer in layers]  # spike counts, for max pooling
    v = [
        np.tile(getattr(layer, "v_init", np.zeros(layer.n_out)).astype(dtype), (batch, 1)) for layer in layers
    ]
    i = [np.zeros((batch, layer.n_out), dtype) for layer in layers]
    ref_until = [np.full((batch, layer.n_out), -1) for layer in layers]
    rasters = [np.zeros((n_steps, batch, layer.n_out), np.uint8) for layer in layers]
    traces = [np.zeros((n_steps, batch, layer.n_out), dtype) for layer in layers] if record_v else None

    for t in range(n_steps):
        if source is not None:
            x = spikes_in[t]
        else:
            x = (analog_x if analog_x.ndim == 2 else analog_x[t]).astype(dtype)
        for k, layer in enumerate(layers):
            if layer.kind == "maxpool":
                x = _maxpool_step(layer, x, seen[k])
                rasters[k][t] = x
                continue
            v[k], i[k], ref_until[k], spike, before_reset = _step_neurons(
                layer.neuron, dtype, v[k], i[k], ref_until[k], layer.bias.astype(dtype), x @ weights[k], t
            )
            if record_v:
                traces[k][t] = before_reset
            rasters[k][t] = spike
            x = spike.astype(dtype)

    trains = [SpikeTrains.from_raster(r) for r in rasters]
    counts = []
    inputs = [source] + trains[:-1]
    for k, layer in enumerate(layers):
        received = inputs[k].counts_per_neuron() if inputs[k] is not None else None
        n_upd = np.full(batch, n_steps * layer.n_out, np.int64)
        if received is None:  # analog input: non-zero inputs x fan-out MACs
            nz = (analog_x != 0).reshape(-1, batch, layer.n_in).sum(axis=0)
            macs, synops, in_events = nz @ layer.fan_out, np.zeros(batch, np.int64), np.zeros(batch, np.int64)
        else:
            macs, synops, in_events = (
                np.zeros(batch, np.int64),
                received @ layer.fan_out,
                received.sum(axis=1),
            )
        counts.append(
            LayerCounts(
                network.layer_name(k),
                "reference",
                synops,
                macs,
                n_upd,
                n_upd.copy(),
                trains[k].per_sample,
                in_events,
            )
        )
    membrane = v[-1].copy() if layers[-1].kind != "maxpool" else None
    result = RunResult(trains, counts, membrane, "reference")
    return (result, traces) if record_v else result


def _step_neurons(nrn, dtype, v, i, ref_until, bias, current, t):
    """One step of DESIGN.md §1 for a population ``[B, n]``: returns the new
    ``(v, i, ref_until, spike, v before reset)``."""
    beta, thr = dtype(nrn.beta), dtype(nrn.threshold)
    if nrn.has_current:
        i = dtype(nrn.alpha) * i + bias + current
        v_new = beta * v + i
    else:
        v_new = beta * v + bias + current
    refractory = ref_until >= t
    v = np.where(refractory, v, v_new)
    spike = (v >= thr) & ~refractory
    reset_to = {"subtract": v - thr, "none": v}.get(nrn.reset, dtype(nrn.v_reset))
    v_out = np.where(spike, reset_to, v)
    return v_out, i, np.where(spike, t + nrn.refractory, ref_until), spike, v


def run_graph_reference(graph, n_steps, given, batch, seed, record, traces=None, drives=None):
    """Run a :class:`snn.Graph` clock-driven: every population in the
    event backend's order, every neuron, every step; background events
    replay the event backend's draws (``kernels.background_step`` on the
    same streams, one per sample and source). ``given``: input SpikeTrains by population
    name; ``drives``: constant currents ``[B, n]`` by population name,
    added to the bias (in float64, then rounded to the state dtype, as
    the event backend does), or currents over time ``[T, B, n]``, added to
    the synaptic input of each step in the state dtype; ``record``:
    ``[(population, indices, "v" | "i")]``. If ``traces`` is a dict, it
    receives per population the membrane of every neuron after
    integration and before reset, ``[T, B, n]`` (for tolerance checks)."""
    dtype = graph.dtype
    order = graph._order()
    rasters = {p.name: np.zeros((n_steps, batch, p.n), np.uint8) for p in order}
    for name, trains in given.items():
        rasters[name] = trains.to_raster()
    incoming = {p.name: [] for p in order}  # (projection, source, delay, W [n_src, n_tgt], fan-out [n_src])
    gated = {}  # gate name: (source name, spike counts so far [B, n_source])
    for proj in graph.projections:
        if proj.kind == "maxpool":
            gated[proj.target.name] = (proj.source.name, np.zeros((batch, proj.source.n), np.int64))
            continue
        if proj.kind == "conv":
            dense = conv_dense_rows(proj.geom, proj.kernel, dtype)
            incoming[proj.target.name].append(
                (proj.name, proj.source.name, proj.delay, dense, proj.fan_out())
            )
            continue
        for d, rowptr, cols, w in proj.groups:
            dense = np.zeros((proj.source.n, proj.target.n), dtype)
            pre = np.repeat(np.arange(proj.source.n), np.diff(rowptr))
            np.add.at(dense, (pre, cols), np.float32(proj.weight) if w is None else w)
            incoming[proj.target.name].append((proj.name, proj.source.name, d, dense, np.diff(rowptr)))
    states = kernels.sample_states(seed, batch, range(len(graph.sources)))  # seed: int or (seed, first)
    rngs = {(b, id(source)): states[b, g] for b in range(batch) for g, source in enumerate(graph.sources)}
    state = {
        p.name: (
            np.tile(p.v_init.astype(dtype), (batch, 1)),
            np.zeros((batch, p.n), dtype),
            np.full((batch, p.n), -1),
        )
        for p in order
        if p.has_neurons
    }
    synops = {p.name: np.zeros(batch, np.int64) for p in order}
    per_projection = {p.name: np.zeros(batch, np.int64) for p in graph.projections if p.kind != "maxpool"}
    arrived = {p.name: np.zeros(batch, np.int64) for p in order}
    recorded = {
        (pop.name, var): (idx, np.zeros((n_steps, batch, len(idx)), dtype)) for pop, idx, var in record
    }
    for t in range(n_steps):
        for pop in order:
            if pop.is_input:
                continue
            if pop.pool is not None:  # a max-pool gate, in the same step as its source
                src, seen = gated[pop.name]
                x = rasters[src][t]
                arrived[pop.name] += x.sum(axis=1, dtype=np.int64)
                rasters[pop.name][t] = _maxpool_step(pop.pool, x.astype(np.int64), seen)
                continue
            current = np.zeros((batch, pop.n), dtype)
            for proj, src, d, dense, fan_out in incoming[pop.name]:
                if t - d >= 0:
                    x = rasters[src][t - d]
                    current += x.astype(dtype) @ dense
                    synops[pop.name] += x @ fan_out
                    per_projection[proj] += x @ fan_out
                    arrived[pop.name] += x.sum(axis=1, dtype=np.int64)
            for source in graph.sources:
                if source.target is pop:
                    lam = source.events_per_step(graph.dt) * pop.n
                    for b in range(batch):
                        arrived[pop.name][b] += kernels.background_step(
                            rngs[b, id(source)], lam, dtype(source.weight), current[b]
                        )
            v, i, ref_until = state[pop.name]
            drive = (drives or {}).get(pop.name)
            if drive is not None and drive.ndim == 3:  # a current over time, in the state precision
                current += drive[t].astype(dtype)
                drive = None
            bias = pop.bias if drive is None else pop.bias + drive
            v, i, ref_until, spike, before_reset = _step_neurons(
                pop.neuron, dtype, v, i, ref_until, bias.astype(dtype), current, t
            )
            if traces is not None:
                traces.setdefault(pop.name, np.zeros((n_steps, batch, pop.n), dtype))[t] = before_reset
            state[pop.name] = (v, i, ref_until)
            rasters[pop.name][t] = spike
            for var, values in (("v", v), ("i", i)):
                if (pop.name, var) in recorded:
                    recorded[pop.name, var][1][t] = values[:, recorded[pop.name, var][0]]
    names = [p.name for p in graph.populations]
    trains = [SpikeTrains.from_raster(rasters[n]) for n in names]
    counts = []
    for pop, train in zip(graph.populations, trains, strict=True):
        dense = np.full(batch, 0 if pop.is_input else n_steps * pop.n, np.int64)
        counts.append(
            LayerCounts(
                pop.name,
                "input" if pop.is_input else "gate" if pop.pool is not None else "reference",
                synops[pop.name],
                np.zeros(batch, np.int64),
                dense,
                dense.copy(),
                train.per_sample,
                arrived[pop.name],
            )
        )
    readout = [p.name for p in graph.populations if p.has_neurons][-1:]
    return RunResult(
        trains,
        counts,
        state[readout[0]][0].copy() if readout else None,
        "reference",
        names=names,
        recorded={n: r for (n, var), r in recorded.items() if var == "v"},
        recorded_i={n: r for (n, var), r in recorded.items() if var == "i"},
        dt=graph.dt,
        projection_synops=per_projection,
    )


def _maxpool_step(layer, x, seen):
    """One step of spiking max pooling (rule in ``kernels.pool``): an output
    spikes if a window input spiking now has a count (this spike included)
    above the window's highest count before now. Windows as torch's
    ``max_pool2d(kernel_size, stride, padding)``: the maps zero-padded (a
    padding position never spikes and counts 0, which is no count's
    maximum: counts are >= 0), every ``kh x kw`` window taken, every
    ``stride``-th kept, floored. Mutates ``seen``."""
    c, h, w = layer.in_shape
    _, h_out, w_out = layer.out_shape
    (kh, kw), (sy, sx), (py, px) = layer.kernel_size, layer.stride, layer.padding

    def windows(a):  # [B, n_in] -> [B, C, h_out, w_out, kh * kw]
        a = np.pad(a.reshape(-1, c, h, w), ((0, 0), (0, 0), (py, py), (px, px)))
        a = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))
        a = a[:, :, ::sy, ::sx][:, :, :h_out, :w_out]
        return a.reshape(*a.shape[:4], kh * kw)

    before = windows(seen).max(axis=-1)
    seen += x
    candidates = np.where(windows(x) > 0, windows(seen), -1).max(axis=-1)
    return (candidates > before).reshape(x.shape[0], -1).astype(x.dtype)
