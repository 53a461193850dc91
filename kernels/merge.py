"""Delivery of several projections into one population over all steps: the
synaptic input of a merge (a population with more than one incoming
projection, or one projection of several delays: a residual add) run as
a layer.

Each kernel adds the spikes of one projection's source, event by event
(work proportional to the synaptic operations), into the population's
currents ``currents[B, T, n]`` (state dtype, neuron order as the
population numbers them), source step ``t`` landing on step ``t`` (the
caller hands the source's spikes already shifted by the delay), and adds
its synaptic operations (the fan-outs of the spikes delivered) to
``synops[B]``; the clock sweep (``kernels.clock_layer``) then runs the
neurons over those currents.

Sums are made as the graph kernel makes them, so that a merge run as a
layer rounds as the stepped one does: CSR and dense projections add
straight into ``currents``, in the order they are delivered, spike by
spike; a convolution adds into channel-last sums (``conv.spatial_runs``:
contiguous runs of ``C_out`` weights), which are then added to
``currents`` pixel by pixel, once per step (``fold``), after every CSR
projection. Several convolutions share the channel-last sums of a step
(``sums[B, T, n]``: only the last one folds), as they share ``cacc`` in
the graph kernel.

Samples run in chunks on threads (``_jit.run_samples``)."""

import numpy as np

from ._jit import jit, run_samples
from .conv import RUN_ACC, RUN_LEN, RUN_W, conv_sizes


@jit
def _csr_samples(tptr_b, idx_b, rowptr, cols, weights, currents_b, synops_b, first, stop):
    for sample in range(first, stop):
        tptr = tptr_b[sample]
        idx = idx_b[sample]
        currents = currents_b[sample]
        synops = 0
        for t in range(currents.shape[0]):
            row = currents[t]
            for e in range(tptr[t], tptr[t + 1]):
                i = idx[e]
                s0 = rowptr[i]
                s1 = rowptr[i + 1]
                synops += s1 - s0
                for s in range(s0, s1):
                    row[cols[s]] += weights[s]
        synops_b[sample] += synops


@jit
def _dense_samples(tptr_b, idx_b, rows, currents_b, synops_b, first, stop):
    n = rows.shape[1]
    for sample in range(first, stop):
        tptr = tptr_b[sample]
        idx = idx_b[sample]
        currents = currents_b[sample]
        for t in range(currents.shape[0]):
            target = currents[t]
            for e in range(tptr[t], tptr[t + 1]):
                w = rows[idx[e]]
                for j in range(n):  # one contiguous row: vectorises
                    target[j] += w[j]
        synops_b[sample] += tptr[currents.shape[0]] * n


@jit
def _conv_samples(
    tptr_b, idx_b, geom, weights, run_n, runs, sums_b, fold, shared, currents_b, synops_b, first, stop
):
    hw_in, cg_in, c_out, cg_out, kk, plane = conv_sizes(geom)
    for sample in range(first, stop):
        tptr = tptr_b[sample]
        idx = idx_b[sample]
        currents = currents_b[sample]
        sums_s = sums_b[sample]
        synops = 0
        c_lo, c_hi, w_base, a_base = 0, 0, 0, 0  # the channel of the last spike: its neurons, bases
        for t in range(currents.shape[0]):
            sums = sums_s[t if shared else 0]
            for e in range(tptr[t], tptr[t + 1]):
                i = idx[e]
                if i < c_lo or i >= c_hi:  # another channel (spikes mostly come in neuron order)
                    c = i // hw_in
                    g = c // cg_in
                    w_base = (c - g * cg_in) * kk * c_out + g * cg_out
                    a_base = g * cg_out
                    c_lo = c * hw_in
                    c_hi = c_lo + hw_in
                p = i - c_lo
                for r in range(run_n[p]):
                    length = runs[p, r, RUN_LEN]
                    synops += length
                    # unsigned: no wrap-around of negative indices in the loop that vectorises
                    a0 = np.uint64(a_base + runs[p, r, RUN_ACC])
                    w0 = np.uint64(w_base + runs[p, r, RUN_W])
                    for co in range(np.uint64(length)):
                        sums[a0 + co] += weights[w0 + co]
            # the channel-last sums into neuron order (written by this convolution, or by earlier ones)
            if fold and (shared or tptr[t + 1] > tptr[t]):
                out = currents[t]
                for pixel in range(plane):
                    source = sums[pixel * c_out : (pixel + 1) * c_out]
                    to = out[pixel:]
                    for co in range(c_out):
                        to[co * plane] += source[co]
                for o in range(sums.shape[0]):
                    sums[o] = 0
        synops_b[sample] += synops


def csr_currents(tptr, idx, rowptr, cols, weights, currents, synops):
    """Add the spikes ``(tptr [B, T + 1], idx [B, cap])`` through CSR rows
    ``(rowptr, cols, weights)`` (one weight per synapse) to ``currents [B,
    T, n]``; their fan-outs to ``synops [B]`` (int64)."""
    run_samples(_csr_samples, len(currents), tptr, idx, rowptr, cols, weights, currents, synops)


def dense_currents(tptr, idx, rows, currents, synops):
    """Add the spikes through fully connected ``rows [n_in, n]`` (a row per
    source neuron, zeros included and counted) to ``currents``."""
    run_samples(_dense_samples, len(currents), tptr, idx, rows, currents, synops)


def conv_currents(tptr, idx, geom, weights, run_n, runs, sums, fold, currents, synops, shared=False):
    """Add the spikes through a convolution (``geom``; ``weights`` as
    ``conv.delivery_weights`` lays them out, ``run_n, runs`` from
    ``conv.run_tables``) to the channel-last sums ``sums [B, R, n]`` (zero
    before the first convolution of a population), and with ``fold`` (the
    population's last convolution) those sums to ``currents`` step by step
    (zeroing them). ``shared``: several convolutions of the population
    share the sums, ``R`` = T rows, each step's (its last folds every
    step, spikes of its own or not); else ``R`` = 1, one step's, reused."""
    run_samples(
        _conv_samples,
        len(currents),
        tptr,
        idx,
        geom,
        weights,
        run_n,
        runs,
        sums,
        bool(fold),
        bool(shared),
        currents,
        synops,
    )
