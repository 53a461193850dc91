"""The reference backend: DESIGN.md §1 as a plain clock-driven loop.

Every neuron of every layer is updated at every step with numpy; nothing is
skipped, cached or reordered. It is the oracle the event backend is tested
against, so it is kept short and obviously correct, not fast.
"""

from __future__ import annotations

import numpy as np

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
    v = [np.tile(getattr(layer, "v_init", np.zeros(layer.n_out)).astype(dtype), (batch, 1))
         for layer in layers]
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
            nrn = layer.neuron
            beta, thr = dtype(nrn.beta), dtype(nrn.threshold)
            bias = layer.bias.astype(dtype)
            current = x @ weights[k]
            if nrn.has_current:
                i[k] = dtype(nrn.alpha) * i[k] + bias + current
                v_new = beta * v[k] + i[k]
            else:
                v_new = beta * v[k] + bias + current
            refractory = ref_until[k] >= t
            v[k] = np.where(refractory, v[k], v_new)
            if record_v:
                traces[k][t] = v[k]
            spike = (v[k] >= thr) & ~refractory
            reset_to = v[k] - thr if nrn.reset == "subtract" else dtype(nrn.v_reset)
            v[k] = np.where(spike, reset_to, v[k])
            ref_until[k] = np.where(spike, t + nrn.refractory, ref_until[k])
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
            macs, synops, in_events = np.zeros(batch, np.int64), received @ layer.fan_out, received.sum(axis=1)
        counts.append(LayerCounts(network.layer_name(k), "reference", synops, macs, n_upd, n_upd.copy(),
                                  trains[k].per_sample, in_events))
    membrane = v[-1].copy() if layers[-1].kind != "maxpool" else None
    result = RunResult(trains, counts, membrane, "reference")
    return (result, traces) if record_v else result


def _maxpool_step(layer, x, seen):
    """One step of spiking max pooling (rule in ``kernels.pool``): an output
    spikes if a window input spiking now has a count (this spike included)
    at least the window's highest count before now. Mutates ``seen``."""
    c, h, w = layer.in_shape
    k = layer.k
    def windows(a):  # [B, n_in] -> [B, C, H/k, W/k, k*k]
        a = a.reshape(-1, c, h, w)[:, :, :h // k * k, :w // k * k]
        a = a.reshape(-1, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5)
        return a.reshape(*a.shape[:4], k * k)
    before = windows(seen).max(axis=-1)
    seen += x
    candidates = np.where(windows(x) > 0, windows(seen), -1).max(axis=-1)
    return (candidates >= before).reshape(x.shape[0], -1).astype(x.dtype)
