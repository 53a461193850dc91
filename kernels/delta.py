"""Delta propagation (sigma-delta units) of a feed-forward stack over frame
sequences: each frame costs in proportion to what changed since the last.

The network is a chain of layers (convolution, dense, max pool), its last
layer the readout. Every unit keeps its accumulated input ``z`` (the
pre-activation, starting at its bias) and the activation ``s`` it last sent
to its fan-out. In each frame:

- input: pixel ``j`` sends ``d = x[j] - s[j]`` when ``|d| > theta[0]``
  (then ``s[j] = x[j]``); a smaller change is kept (``x - s``, the residue)
  and sent once the changes since the last send add up past ``theta[0]``;
- affine layer ``l`` (convolution, dense): each delta ``d`` of its input
  unit ``j`` adds ``d * w[j, i]`` to ``z[i]`` of every target ``i`` (one
  synaptic operation per weight added); then every unit whose ``z`` changed
  computes ``a = max(z, 0) * inv_thr[l]`` and sends ``a - s`` when
  ``|a - s| > theta[l + 1]`` (then ``s = a``), keeping the residue
  otherwise; the last layer (the readout) sends nothing, its ``z`` is the
  output (logits);
- max pool: every window containing an input that changed takes the maximum
  of its inputs' sent values again (exact, padding excluded) and sends the
  change of that maximum when it is not zero.

So ``z`` of every unit is at all times its bias plus the weighted sum of the
activations its inputs last sent, and with every ``theta = 0`` the readout
is the ANN's output on the frame (up to the rounding of the sums). A frame
equal to the last one does no work; a changed pixel does work only in the
units its change reaches.

Layer ``l`` (``0 .. L-1``): ``kinds[l]`` (:data:`CONV`, :data:`DENSE`,
:data:`MAXPOOL`); ``geoms[l]`` int64 ``[15]``: a convolution's geometry
(``kernels.conv.GEOM_FIELDS``: c_in, h, w, c_out, h_out, w_out, kh, kw, sy,
sx, py, px, dy, dx, groups), a max pool's (``kernels.pool.GEOM_FIELDS``, 11
fields, the rest 0), a dense layer's ``[n_in, n_out, 0...]``; weights in
``w_all[w_off[l]:w_off[l + 1]]`` (float64; a convolution's in the kernels'
layout ``[C_in / groups, kh, kw, C_out]``, a dense layer's as rows ``[n_in,
n_out]``, a max pool none). State per sequence: ``z[z_off[l]:z_off[l + 1]]``
(layer ``l``'s accumulated input; a max pool's unused) and
``sent[s_off[0]:s_off[1]]`` (the input's), ``sent[s_off[l + 1]:s_off[l + 2]]``
(layer ``l``'s outputs).

Counts per frame, ``counts[..., k, c]`` for ``k = 0`` (the input) and ``k =
l + 1`` (layer ``l``): ``c = 0`` synaptic operations received (weights
added into the layer's units; 0 for the input and max pools), ``c = 1``
units that sent a delta, ``c = 2`` units evaluated (a max pool: windows
recomputed; the input: its pixels).
"""

import numpy as np

from ._jit import jit, run_samples

CONV = 0
DENSE = 1
MAXPOOL = 2


@jit
def _conv_scatter(geom, w_all, wo, z, zo, ids, vals, n_in_events, mark, touched):
    """Adds the deltas ``vals[:n_in_events]`` of input units ``ids`` to the
    convolution's targets; returns ``(synaptic operations, units touched)``,
    the touched units listed in ``touched`` (and marked in ``mark``)."""
    c_in, h, w, c_out, h_out, w_out = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    kh, kw, sy, sx, py, px, dy, dx, groups = (
        geom[6],
        geom[7],
        geom[8],
        geom[9],
        geom[10],
        geom[11],
        geom[12],
        geom[13],
        geom[14],
    )
    cg_in = c_in // groups
    cg_out = c_out // groups
    plane = h_out * w_out
    ops = 0
    n_touched = 0
    for e in range(n_in_events):
        j = ids[e]
        d = vals[e]
        ci = j // (h * w)
        rem = j - ci * h * w
        y = rem // w
        x = rem - y * w
        g = ci // cg_in
        cl = ci - g * cg_in
        co0 = g * cg_out
        for ky in range(kh):
            ny = y + py - ky * dy
            if ny < 0 or ny % sy != 0:
                continue
            oy = ny // sy
            if oy >= h_out:
                continue
            for kx in range(kw):
                nx = x + px - kx * dx
                if nx < 0 or nx % sx != 0:
                    continue
                ox = nx // sx
                if ox >= w_out:
                    continue
                base = wo + ((cl * kh + ky) * kw + kx) * c_out
                o = oy * w_out + ox
                for co in range(co0, co0 + cg_out):
                    t = co * plane + o
                    z[zo + t] += w_all[base + co] * d
                    if mark[t] == 0:
                        mark[t] = 1
                        touched[n_touched] = t
                        n_touched += 1
                ops += cg_out
    return ops, n_touched


@jit
def _dense_scatter(n_out, w_all, wo, z, zo, ids, vals, n_in_events):
    """Adds the deltas to every target of a dense layer; returns the
    synaptic operations."""
    for e in range(n_in_events):
        row = wo + ids[e] * n_out
        d = vals[e]
        for i in range(n_out):
            z[zo + i] += w_all[row + i] * d
    return n_in_events * n_out


@jit
def _pool_windows(geom, ids, n_in_events, mark, touched):
    """Marks the windows containing the changed inputs; returns how many."""
    h, w, h_out, w_out, kh, kw, sy, sx, py, px = (
        geom[1],
        geom[2],
        geom[3],
        geom[4],
        geom[5],
        geom[6],
        geom[7],
        geom[8],
        geom[9],
        geom[10],
    )
    n_touched = 0
    for e in range(n_in_events):
        j = ids[e]
        c = j // (h * w)
        rem = j - c * h * w
        y = rem // w
        x = rem - y * w
        oy_lo = max(0, (y + py - kh + sy) // sy)  # ceil((y + py - kh + 1) / sy), y + py - kh + 1 may be < 0
        oy_hi = min(h_out - 1, (y + py) // sy)
        ox_lo = max(0, (x + px - kw + sx) // sx)
        ox_hi = min(w_out - 1, (x + px) // sx)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                t = (c * h_out + oy) * w_out + ox
                if mark[t] == 0:
                    mark[t] = 1
                    touched[n_touched] = t
                    n_touched += 1
    return n_touched


@jit
def _pool_max(geom, sent, si, t):
    """The maximum of window ``t``'s inputs (their sent values, ``sent[si:]``)."""
    h, w, h_out, w_out, kh, kw, sy, sx, py, px = (
        geom[1],
        geom[2],
        geom[3],
        geom[4],
        geom[5],
        geom[6],
        geom[7],
        geom[8],
        geom[9],
        geom[10],
    )
    c = t // (h_out * w_out)
    rem = t - c * h_out * w_out
    oy = rem // w_out
    ox = rem - oy * w_out
    m = -np.inf
    for yy in range(max(0, oy * sy - py), min(h, oy * sy - py + kh)):
        for xx in range(max(0, ox * sx - px), min(w, ox * sx - px + kw)):
            v = sent[si + (c * h + yy) * w + xx]
            if v > m:
                m = v
    return m


@jit
def delta_frame(
    x,
    theta,
    kinds,
    geoms,
    z_off,
    s_off,
    w_all,
    w_off,
    inv_thr,
    z,
    sent,
    everything,
    bufs,
    ibufs,
    mark,
    counts,
):
    """One frame ``x`` (``[n_in]`` float64) through the network (module
    docstring), updating one sequence's ``z`` and ``sent``; ``counts``
    ``[L + 1, 3]`` receives the frame's counts. ``everything``: evaluate
    every unit of every layer with ``theta = 0`` whether its input changed
    or not (used once, to settle a network at zero input). Scratch: ``bufs``
    float64 ``[2, n_max]``, ``ibufs`` int64 ``[3, n_max]``, ``mark`` uint8
    ``[n_max]`` (all 0, left 0), ``n_max`` the largest layer (input
    included)."""
    n_layers = len(kinds)
    n0 = s_off[1] - s_off[0]
    cur = 0
    n_ev = 0
    th = 0.0 if everything else theta[0]
    for j in range(n0):
        d = x[j] - sent[j]
        if abs(d) > th:
            ibufs[cur, n_ev] = j
            bufs[cur, n_ev] = d
            sent[j] = x[j]
            n_ev += 1
    counts[0, 1] += n_ev
    counts[0, 2] += n0
    for layer in range(n_layers):
        kind = kinds[layer]
        geom = geoms[layer]
        zo = z_off[layer]
        so = s_off[layer + 1]
        n_out = s_off[layer + 2] - so
        last = layer == n_layers - 1
        th = 0.0 if everything else theta[layer + 1]
        ops = 0
        n_touched = 0
        if kind == CONV:
            ops, n_touched = _conv_scatter(
                geom, w_all, w_off[layer], z, zo, ibufs[cur], bufs[cur], n_ev, mark, ibufs[2]
            )
        elif kind == DENSE:
            ops = _dense_scatter(n_out, w_all, w_off[layer], z, zo, ibufs[cur], bufs[cur], n_ev)
        else:
            n_touched = _pool_windows(geom, ibufs[cur], n_ev, mark, ibufs[2])
        all_units = everything or (kind == DENSE and n_ev > 0)
        n_eval = n_out if all_units else n_touched
        nxt = 1 - cur
        n_next = 0
        if not last:
            for k in range(n_eval):
                t = k if all_units else ibufs[2, k]
                if kind == MAXPOOL:
                    a = _pool_max(geom, sent, s_off[layer], t)
                    d = a - sent[so + t]
                    send = d != 0.0
                else:
                    zt = z[zo + t]
                    a = (zt if zt > 0.0 else 0.0) * inv_thr[layer]
                    d = a - sent[so + t]
                    send = abs(d) > th
                if send:
                    ibufs[nxt, n_next] = t
                    bufs[nxt, n_next] = d
                    sent[so + t] = a
                    n_next += 1
        for k in range(n_touched):
            mark[ibufs[2, k]] = 0
        counts[layer + 1, 0] += ops
        counts[layer + 1, 1] += n_next
        counts[layer + 1, 2] += 0 if last else n_eval
        cur = nxt
        n_ev = n_next


@jit
def delta_kernel(
    frames, theta, kinds, geoms, z_off, s_off, w_all, w_off, inv_thr, z, sent, logits, counts, first, stop
):
    """Sequences ``first .. stop - 1`` of ``frames`` (``[S, F, n_in]``
    float64), each from its state ``z[s]``, ``sent[s]`` (updated: the state
    carries over to the next call); ``logits[s, f]`` ``[C]`` receives the
    readout's ``z`` after frame ``f``, ``counts[s, f]`` ``[L + 1, 3]`` the
    frame's counts (added to)."""
    n_max = 0
    for k in range(len(s_off) - 1):
        n_max = max(n_max, s_off[k + 1] - s_off[k])
    bufs = np.empty((2, n_max), np.float64)
    ibufs = np.empty((3, n_max), np.int64)
    mark = np.zeros(n_max, np.uint8)
    n_layers = len(kinds)
    ro = z_off[n_layers - 1]
    n_cls = logits.shape[2]
    for s in range(first, stop):
        for f in range(frames.shape[1]):
            delta_frame(
                frames[s, f],
                theta,
                kinds,
                geoms,
                z_off,
                s_off,
                w_all,
                w_off,
                inv_thr,
                z[s],
                sent[s],
                False,
                bufs,
                ibufs,
                mark,
                counts[s, f],
            )
            for c in range(n_cls):
                logits[s, f, c] = z[s, ro + c]


def delta_run(frames, theta, kinds, geoms, z_off, s_off, w_all, w_off, inv_thr, z, sent, logits, counts):
    """:func:`delta_kernel` over all sequences, in chunks on
    ``numba.get_num_threads()`` threads (``kernels._jit.run_samples``)."""
    run_samples(
        delta_kernel,
        frames.shape[0],
        frames,
        theta,
        kinds,
        geoms,
        z_off,
        s_off,
        w_all,
        w_off,
        inv_thr,
        z,
        sent,
        logits,
        counts,
    )


@jit
def delta_settle(kinds, geoms, z_off, s_off, w_all, w_off, inv_thr, z, sent, counts):
    """Settles one state (``z`` at the biases, ``sent`` 0) at zero input:
    every unit evaluated once, layer by layer, its activation sent exactly,
    so that the state is the network's at a zero frame (counts added to
    ``counts`` ``[L + 1, 3]``)."""
    n_max = 0
    for k in range(len(s_off) - 1):
        n_max = max(n_max, s_off[k + 1] - s_off[k])
    bufs = np.empty((2, n_max), np.float64)
    ibufs = np.empty((3, n_max), np.int64)
    mark = np.zeros(n_max, np.uint8)
    x = np.zeros(s_off[1] - s_off[0], np.float64)
    theta = np.zeros(len(kinds) + 1, np.float64)
    delta_frame(
        x, theta, kinds, geoms, z_off, s_off, w_all, w_off, inv_thr, z, sent, True, bufs, ibufs, mark, counts
    )
