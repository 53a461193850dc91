"""Event-camera data: streams of address events binned straight into
:class:`SpikeTrains`, and an emulated event camera that makes such streams
from still images by saccades (``shared/BENCHMARKS.md`` EVENT-DIGITS).

A stream is what the ``tonic`` library hands out: a numpy structured array
with fields ``x``, ``y``, ``t``, ``p`` in any order (``t`` in microseconds,
non-decreasing; ``p`` the polarity, bool or 0/1), on a sensor of size
``(W, H, P)`` (tonic's ``sensor_size``). ``tonic`` itself is never imported.

Event ``(x, y, p)`` is input neuron ``(p * H + y) * W + x``: the input is laid
out channel-first ``[P, H, W]``, like a flattened torch tensor of tonic's
``ToFrame`` output, so a converted network's first ``Conv2d(P, ...)`` reads
it as it is.

Example::

    events = snn.events.saccade_events(images, seed=0)  # one stream per image
    trains = snn.events.bin_events(events, snn.events.SACCADE_SENSOR, dt=1e-3, T=300)
    counts = trains.counts_per_neuron()  # what an ANN sees (divide by a scale C)
    net = snn.events.weighted_input(converted.network, 300 / C)  # each event weighs T / C
    result = net.run(events=trains.to_events(), T=300, batch_size=trains.batch_size)
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._validate import MAX_INDEX, positive_int, real_array
from .model.conv import Conv2d
from .model.layers import Linear
from .model.network import Network
from .run.spiketrains import SpikeTrains

__all__ = [
    "EVENT_DTYPE",
    "SACCADE_SENSOR",
    "EventBinner",
    "EventsDroppedWarning",
    "bin_events",
    "saccade_events",
    "weighted_input",
]

#: tonic's ``tonic.io.events_struct``: what :func:`saccade_events` returns.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])

#: ``(W, H, P)`` of :func:`saccade_events` with its default ``size``.
SACCADE_SENSOR = (32, 32, 2)

_FIELDS = ("x", "y", "t", "p")
_DUPLICATES = ("carry", "merge")


class EventsDroppedWarning(UserWarning):
    """Events carried past the last step by ``bin_events(duplicates="carry")``
    were dropped."""


# -- streams to spike trains -----------------------------------------------------


def bin_events(
    streams,
    sensor_size,
    dt: float,
    T: int | None = None,
    *,
    duplicates: str = "carry",
    ordering: str = "xytp",
) -> SpikeTrains:
    """Bin event streams into spike trains of ``T`` steps of ``dt`` seconds,
    without building a dense raster.

    Event ``e`` falls in step ``floor(t_e / dt)`` (``t`` in microseconds,
    counted from 0; tonic's ``TimeAlignment`` shifts a stream to start at 0)
    and is a spike of input neuron ``(p * H + y) * W + x``.

    Parameters
    ----------
    streams : one stream or a sequence of streams (one per sample, of any
        lengths, empty ones included): numpy structured arrays with integer
        fields ``x``, ``y``, ``p`` (bool allowed) and an integer or float
        field ``t`` (microseconds, ``>= 0``, non-decreasing), in any order
        (``y`` may be missing when ``H == 1``); or plain integer ``[E, 4]``
        arrays whose columns are named by ``ordering``.
    sensor_size : ``(W, H, P)``, tonic's ``sensor_size``.
    dt : step length in seconds (``> 0``).
    T : number of steps; default: up to the last event of the batch. Events
        at ``t >= T * dt`` are outside the run and left out.
    duplicates : what happens to several events of one pixel and polarity in
        one step (a spike train holds at most one spike per neuron per step):

        - ``"carry"`` (default): each extra event is moved to the next step
          in which that neuron has none, so every event stays one spike and
          the spike count of each neuron is its event count. This keeps the
          time average of a run equal to the event counts an ANN is trained
          on (a converted network receives each event with weight ``T / C``,
          ``shared/BENCHMARKS.md`` EVENT-DIGITS); an event delays the ones
          after it by at most a step each. Events carried past step ``T - 1``
          are dropped, with an :class:`EventsDroppedWarning` saying how many.
        - ``"merge"``: the events of one neuron in one step are one spike
          (the count is lost).
    ordering : column names of plain ``[E, 4]`` arrays (tonic's
        ``ordering``, e.g. ``"xytp"`` or ``"txyp"``); structured arrays are
        read by field name.

    Returns
    -------
    :class:`SpikeTrains` of ``B`` samples, ``T`` steps and ``P * H * W``
    neurons, sorted by neuron within each step. The streams are never
    modified (nor kept).
    """
    width, height, n_pol = _sensor(sensor_size)
    n = n_pol * height * width
    step_us = _step_us(dt)
    if T is not None:
        T = positive_int("T", T)
    if duplicates not in _DUPLICATES:
        raise ValueError(f"duplicates must be one of {_DUPLICATES}, got {duplicates!r}")
    if isinstance(streams, np.ndarray) and (streams.dtype.names is not None or streams.ndim == 2):
        streams = [streams]
    elif isinstance(streams, (str, bytes)) or not hasattr(streams, "__len__"):
        raise TypeError(
            "streams must be a structured event array or a sequence of them (one per sample), "
            f"got {type(streams).__name__}"
        )
    if len(streams) == 0:
        raise ValueError("streams is empty: a batch needs at least one sample (an empty stream is fine)")

    batch = len(streams)
    s, k, i = _events_of(streams, ordering, (width, height, n_pol), step_us)
    if T is None:
        T = int(k.max()) + 1 if len(k) else 1
        if T > MAX_INDEX:
            raise ValueError(f"the events span {T:,} steps of dt={dt} s; pass a smaller T")
    if batch * T * n >= 2**62:
        raise ValueError(f"{batch} samples x {T} steps x {n} neurons is too large a run to index")
    inside = k < T
    if not inside.all():
        s, k, i = s[inside], k[inside], i[inside]
    trains, (_, late, _) = _bin(s, k, i, T, batch, n, duplicates)
    if len(late):
        warnings.warn(
            f"{len(late)} event(s) carried past the last step (T={T}) were dropped; "
            "pass a larger T or duplicates='merge'",
            EventsDroppedWarning,
            stacklevel=2,
        )
    return trains


class EventBinner:
    """Bins event streams that arrive in packets, chunk by chunk, into the
    spike trains :func:`bin_events` makes of the whole streams, cut at the
    same steps: the input of a stream run (``Simulation.advance``) fed
    from a sensor, in memory bounded by the events not binned yet.

    ``binner(T, packets)`` returns the next ``T`` steps (steps ``t .. t + T
    - 1`` of the streams, ``t`` = :attr:`t`, the steps binned so far) as
    :class:`SpikeTrains` ``[T steps, batch_size samples]``; ``packets``: the
    events that arrived since the last call, one array per sample (or one
    array when ``batch_size`` is 1; ``None`` or empty for none), in the
    format :func:`bin_events` reads, times counted from the streams'
    start. Events of later steps wait for the call that bins them, and so
    do events carried past the chunk's last step (``duplicates="carry"``);
    an event of a step already binned is refused. :attr:`pending`: the
    number of events waiting. The packets are never modified (nor kept)."""

    def __init__(self, sensor_size, dt: float, batch_size: int = 1, *, duplicates="carry", ordering="xytp"):
        self._sensor = _sensor(sensor_size)
        self._step_us = _step_us(dt)
        self.batch_size = positive_int("batch_size", batch_size)
        if duplicates not in _DUPLICATES:
            raise ValueError(f"duplicates must be one of {_DUPLICATES}, got {duplicates!r}")
        self.duplicates, self.ordering = duplicates, ordering
        self.t = 0
        self._waiting = (np.zeros(0, np.int64),) * 3  # (sample, step of the streams, neuron)

    @property
    def pending(self) -> int:
        return len(self._waiting[0])

    def __call__(self, T: int, packets=None) -> SpikeTrains:
        T = positive_int("T", T)
        width, height, n_pol = self._sensor
        n, batch = n_pol * height * width, self.batch_size
        if batch * T * n >= 2**62:
            raise ValueError(f"{batch} samples x {T} steps x {n} neurons is too large a chunk to index")
        s, k, i = self._waiting
        if packets is not None:
            if isinstance(packets, np.ndarray) and (packets.dtype.names is not None or packets.ndim == 2):
                packets = [packets]
            if not hasattr(packets, "__len__") or isinstance(packets, (str, bytes)) or len(packets) != batch:
                raise ValueError(f"packets must be one event array per sample ({batch}), or None")
            packets = [np.zeros(0, EVENT_DTYPE) if p is None else p for p in packets]
            new = _events_of(packets, self.ordering, self._sensor, self._step_us)
            late = new[1] < self.t
            if late.any():
                e = int(np.flatnonzero(late)[0])
                raise ValueError(
                    f"sample {int(new[0][e])}: an event of step {int(new[1][e])} arrived after steps 0-"
                    f"{self.t - 1} were binned (give each event before the chunk of its step)"
                )
            s, k, i = (np.concatenate(pair) for pair in zip((s, k, i), new, strict=True))
        now = k < self.t + T
        later = ~now
        trains, carried = _bin(s[now], k[now] - self.t, i[now], T, batch, n, self.duplicates)
        carried_s, carried_k, carried_i = carried
        self._waiting = (
            np.concatenate((s[later], carried_s)),
            np.concatenate((k[later], carried_k + self.t)),
            np.concatenate((i[later], carried_i)),
        )
        self.t += T
        return trains


def _events_of(streams, ordering, sensor, step_us):
    """``(sample, step, neuron)`` int64 arrays of the events of a batch of
    streams, checked."""
    width, height, n_pol = sensor
    sample, steps, neuron = [], [], []
    for b, stream in enumerate(streams):
        x, y, t, p = _columns(b, stream, ordering, height)
        _check_stream(b, x, y, t, p, width, height, n_pol)
        steps.append(_steps_of(t, step_us))
        neuron.append((p.astype(np.int64) * height + y) * width + x)
        sample.append(np.full(len(t), b, np.int64))
    return tuple(np.concatenate(a) if a else np.zeros(0, np.int64) for a in (sample, steps, neuron))


def _bin(s, k, i, T, batch, n, duplicates):
    """Spike trains of events ``(sample, step < T, neuron)``, repeats merged
    or carried; returns them and the ``(sample, step >= T, neuron)`` of the
    events carried past step ``T - 1``."""
    key = np.sort((s * T + k) * n + i)  # (sample, step, neuron), the order of a spike train
    repeated = key[1:] == key[:-1]
    none = np.zeros(0, np.int64)
    carried = (none, none, none)
    if repeated.any():
        if duplicates == "merge":
            key = key[np.concatenate(([True], ~repeated))]
        else:
            key, carried = _carry(key, T, n)
    s_k, i = np.divmod(key, n)
    s, k = np.divmod(s_k, T)
    return SpikeTrains._from_sorted(s, k, i.astype(np.int32), T, batch, n), carried


def _carry(key, T, n):
    """Sorted ``(sample, step, neuron)`` keys with repeats, each repeat moved
    to its neuron's next free step; returns the new keys of steps ``< T``,
    sorted and unique, and ``(sample, step, neuron)`` of those carried
    further."""
    s_k, i = np.divmod(key, n)
    s, k = np.divmod(s_k, T)
    order = np.lexsort((k, i, s))  # by sample, neuron, then step
    s, k, i = s[order], k[order], i[order]
    group = np.concatenate(([True], (s[1:] != s[:-1]) | (i[1:] != i[:-1])))
    gid = np.cumsum(group) - 1
    start = np.flatnonzero(group)
    rank = np.arange(len(k)) - start[gid]
    # the r-th event of a neuron lands at max over j <= r of (k_j + r - j): a running max of
    # k - rank within each neuron, made one global running max by offsetting the groups
    lead = k - rank
    span = int(lead.max() - lead.min()) + 1
    base = gid * span - int(lead.min())
    k = np.maximum.accumulate(lead + base) - base + rank
    kept = k < T
    return np.sort((s[kept] * T + k[kept]) * n + i[kept]), (s[~kept], k[~kept], i[~kept])


def _sensor(sensor_size):
    try:
        size = tuple(sensor_size)
    except TypeError:
        size = ()
    if len(size) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
    ):
        raise ValueError(
            f"sensor_size must be (W, H, P) of positive ints (tonic's order), got {sensor_size!r}"
        )
    width, height, n_pol = (int(v) for v in size)
    if n_pol * height * width > MAX_INDEX:
        raise ValueError(f"a sensor of {sensor_size} has more inputs than a layer indexes ({MAX_INDEX:,})")
    return width, height, n_pol


def _step_us(dt) -> float | int:
    """``dt`` in microseconds: an int when it is one (exact integer binning)."""
    value = float(real_array("dt", dt, ndim=0))
    if not value > 0:
        raise ValueError(f"dt must be a positive step length in seconds, got {dt!r}")
    us = value * 1e6
    whole = round(us)
    return int(whole) if whole >= 1 and abs(us - whole) <= 1e-9 * us else us


def _columns(b, stream, ordering, height):
    if hasattr(stream, "detach"):  # a torch tensor: tonic's ToSparseTensor and friends are not streams
        raise TypeError(f"stream {b} is a torch tensor; pass the structured numpy array of events")
    if not isinstance(stream, np.ndarray):
        raise TypeError(f"stream {b} must be a numpy structured array of events, got {type(stream).__name__}")
    names = stream.dtype.names
    if names is None:
        if stream.ndim != 2 or stream.dtype.kind not in "biu":
            raise TypeError(
                f"stream {b} must be a structured array with fields x, y, t, p, or an integer [E, "
                f"{len(ordering)}] array with columns {ordering!r}; got dtype {stream.dtype}, "
                f"shape {stream.shape}"
            )
        if sorted(ordering) != sorted(_FIELDS) or stream.shape[1] != len(ordering):
            raise ValueError(
                f"ordering must name the columns x, y, t, p once each (e.g. 'xytp') and match stream "
                f"{b}'s {stream.shape[1]} columns, got {ordering!r}"
            )
        cols = {name: stream[:, ordering.index(name)] for name in _FIELDS}
    else:
        if stream.ndim != 1:
            raise ValueError(f"stream {b} must be one-dimensional (one record per event), got {stream.shape}")
        missing = [f for f in _FIELDS if f not in names and not (f == "y" and height == 1)]
        if missing:
            raise ValueError(f"stream {b} has no field(s) {missing}; it has {list(names)} (need x, y, t, p)")
        cols = {f: stream[f] for f in _FIELDS if f in names}
        if "y" not in cols:
            cols["y"] = np.zeros(len(stream), np.int64)
        for f in ("x", "y", "p"):
            if cols[f].dtype.kind not in "biu":
                raise TypeError(
                    f"stream {b}: field {f!r} must be integer{' or bool' if f == 'p' else ''}, got dtype "
                    f"{cols[f].dtype} (cast it with astype if its values are whole)"
                )
        if cols["t"].dtype.kind not in "iuf":
            raise TypeError(
                f"stream {b}: field 't' must be integer or float microseconds, got {cols['t'].dtype}"
            )
    x, y, p = (cols[f].astype(np.int64) for f in ("x", "y", "p"))
    return x, y, cols["t"], p


def _check_stream(b, x, y, t, p, width, height, n_pol):
    if len(t) == 0:
        return
    if t.dtype.kind == "f" and not np.all(np.isfinite(t)):
        raise ValueError(f"stream {b}: t contains NaN or inf")
    if t[0] < 0:  # non-decreasing, checked next: the first is the smallest
        raise ValueError(f"stream {b}: t must be >= 0 microseconds, got {t[0]} at event 0")
    back = np.flatnonzero(t[1:] < t[:-1])
    if len(back):
        e = int(back[0]) + 1
        raise ValueError(
            f"stream {b}: t must be non-decreasing (events in time order); t[{e}] = {t[e]} < "
            f"t[{e - 1}] = {t[e - 1]} (sort the stream by t first)"
        )
    for label, v, bound in (("x", x, width), ("y", y, height), ("p", p, n_pol)):
        low, high = int(v.min()), int(v.max())
        if low < 0 or high >= bound:
            raise ValueError(
                f"stream {b}: {label} must be in [0, {bound}) for sensor_size {(width, height, n_pol)}, got "
                f"values in [{low}, {high}]"
            )


def _steps_of(t, step_us):
    if t.dtype.kind in "iu" and isinstance(step_us, int):
        return t.astype(np.int64) // step_us
    steps = np.floor(t.astype(np.float64) / step_us)
    if len(steps) and steps[-1] > MAX_INDEX:
        raise ValueError(f"an event at t = {t[-1]} us is more steps away than a run holds")
    return steps.astype(np.int64)


# -- a converted network fed with events --------------------------------------------


def weighted_input(network: Network, weight: float) -> Network:
    """``network`` whose input spikes each count ``weight`` times: its first
    layer's weights multiplied by ``weight`` (then stored as float32, like
    every weight), everything else shared with ``network``, which is left as
    it is. For a network converted from an ANN trained on event counts / C,
    ``weight = T / C`` makes a run of ``T`` steps on the events average to
    the ANN's input (``shared/BENCHMARKS.md`` EVENT-DIGITS)."""
    w = float(real_array("weight", weight, ndim=0))
    if not isinstance(network, Network):
        raise TypeError(f"network must be an snn.Network, got {type(network).__name__}")
    first = network.layers[0]
    if type(first) not in (Conv2d, Linear):
        raise TypeError(f"weighted_input scales a first Linear or Conv2d layer, not a {type(first).__name__}")
    common = dict(bias=0.0, v_init=0.0, mode=first.mode, name=first.name)
    if type(first) is Conv2d:
        g = [int(v) for v in first.geom]
        layer = Conv2d(
            first.in_shape,
            first.out_shape[0],
            (g[6], g[7]),
            first.neuron,
            stride=(g[8], g[9]),
            padding=(g[10], g[11]),
            dilation=(g[12], g[13]),
            groups=g[14],
            weight=np.asarray(first.weight, np.float64) * w,
            **common,
        )
    else:
        layer = Linear(
            first.n_in, first.n_out, first.neuron, weight=np.asarray(first.weight, np.float64) * w, **common
        )
    layer.bias, layer.v_init = first.bias, first.v_init  # per neuron, as they were
    return Network([layer, *network.layers[1:]], dtype=network.dtype)


# -- an emulated event camera ----------------------------------------------------------


def saccade_events(
    images,
    *,
    seed=None,
    pad: int = 1,
    size: int = 32,
    side: float = 3.0,
    steps_per_side: int = 100,
    threshold: float = 0.15,
    eps: float = 0.1,
    dt: float = 1e-3,
) -> list[np.ndarray]:
    """Event streams of still images seen by an emulated event camera during
    three saccades, as N-MNIST was recorded (``shared/BENCHMARKS.md``
    EVENT-DIGITS; the defaults are its settings).

    Each image is padded with ``pad`` zero pixels on every side and upsampled
    to ``size x size`` by bilinear interpolation (``torch``'s
    ``interpolate(mode="bilinear", align_corners=False)``). It then moves
    along an equilateral triangle of ``side`` pixels centred on its rest
    position, ``steps_per_side`` steps per side (``T = 3 *
    steps_per_side``): at step ``k`` of side ``j`` it is shifted by
    ``V_j + (V_{j+1} - V_j) * k / steps_per_side``, with vertices ``V_0 = (0,
    -r)`` (up), ``V_1 = (-side/2, r/2)``, ``V_2 = (side/2, r/2)`` (``(dx,
    dy)`` in pixels, ``r = side / sqrt(3)``), resampled bilinearly with zero
    outside the frame. A pixel emits an ON (``p = 1``) or OFF (``p = 0``)
    event when its log intensity ``log(I + eps)`` is more than ``threshold``
    above or below its reference, which then takes the current value (so at
    most one event per pixel per step). References start at the first
    frame's log intensity plus an offset uniform in ``(-threshold,
    threshold)`` per pixel drawn from ``seed`` (so step 0 has no event).

    Parameters
    ----------
    images : ``[N, h, w]`` or ``[N, 1, h, w]`` intensities in [0, 1] (the
        digits' pixels / 16).
    seed : int, None or numpy Generator (the reference offsets).
    dt : step length in seconds; the event of step ``k`` has ``t = k * dt``
        in microseconds.

    Returns
    -------
    A list of ``N`` structured arrays of dtype :data:`EVENT_DTYPE` (tonic's),
    each sorted by ``t``, on a sensor of ``(size, size, 2)``
    (:data:`SACCADE_SENSOR` with the defaults). Bin them with
    ``bin_events(events, (size, size, 2), dt)``.
    """
    img = real_array("images", images)
    if img.ndim == 4 and img.shape[1] == 1:
        img = img[:, 0]
    if img.ndim != 3 or img.shape[0] == 0 or min(img.shape[1:]) < 1:
        raise ValueError(
            f"images must be [N, h, w] or [N, 1, h, w] with N >= 1, got shape {np.shape(images)}"
        )
    if np.any((img < 0) | (img > 1)):
        raise ValueError("images must be intensities in [0, 1]")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}")
    size = positive_int("size", size, 2**15 - 1)  # x and y are int16 in tonic's dtype
    steps_per_side = positive_int("steps_per_side", steps_per_side)
    side, threshold, eps = (
        float(real_array(name, v, ndim=0))
        for name, v in (("side", side), ("threshold", threshold), ("eps", eps))
    )
    if side < 0 or threshold <= 0 or eps <= 0:
        raise ValueError(f"side must be >= 0, threshold and eps > 0; got {side}, {threshold}, {eps}")
    step_us = _step_us(dt)
    if not isinstance(step_us, int):
        raise ValueError(f"dt must be a whole number of microseconds here (t is int64), got {dt!r}")

    up = _upsample(np.pad(img, ((0, 0), (pad, pad), (pad, pad))), size)
    radius = side / math.sqrt(3.0)
    margin = int(math.ceil(radius)) + 2  # a shift reads at most this far outside the frame
    framed = np.pad(up, ((0, 0), (margin, margin), (margin, margin)))
    vertices = np.array([(0.0, -radius), (-side / 2, radius / 2), (side / 2, radius / 2)])
    n_steps = 3 * steps_per_side

    rng = np.random.default_rng(seed)
    frame = _shifted(framed, vertices[0], margin, size)
    reference = np.log(frame + eps) + rng.uniform(-threshold, threshold, frame.shape)
    found = []  # per step: (image, y, x, polarity)
    for step in range(1, n_steps):
        j, k = divmod(step, steps_per_side)
        shift = vertices[j] + (vertices[(j + 1) % 3] - vertices[j]) * (k / steps_per_side)
        level = np.log(_shifted(framed, shift, margin, size) + eps)
        change = level - reference
        on, off = change > threshold, change < -threshold
        fired = on | off
        reference[fired] = level[fired]
        n_i, y, x = np.nonzero(fired)
        found.append((n_i, y, x, on[n_i, y, x], np.full(len(n_i), step, np.int64)))
    n_i, y, x, p, step = (np.concatenate(parts) for parts in zip(*found, strict=True))  # T >= 3
    order = np.argsort(n_i, kind="stable")  # by image, then step (as found)
    events = np.empty(len(order), EVENT_DTYPE)
    events["x"], events["y"], events["p"] = x[order], y[order], p[order]
    events["t"] = step[order] * step_us
    bounds = np.searchsorted(n_i[order], np.arange(1, len(img)))
    return [part.copy() for part in np.split(events, bounds)]


def _upsample(img, size):
    """Bilinear resize ``[N, h, w]`` -> ``[N, size, size]`` as torch's
    ``interpolate(mode="bilinear", align_corners=False)``."""

    def taps(n_in):
        src = np.maximum((np.arange(size) + 0.5) * (n_in / size) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = taps(img.shape[1])
    x0, x1, fx = taps(img.shape[2])
    rows = img[:, y0] * (1 - fy)[None, :, None] + img[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def _shifted(framed, shift, margin, size):
    """The image moved by ``shift = (dx, dy)`` pixels, bilinear, zero outside:
    frame ``[y, x]`` = image at ``(y - dy, x - dx)``; ``framed`` is the image
    with ``margin`` zeros on every side."""
    dx, dy = shift
    x0, y0 = math.floor(-dx), math.floor(-dy)
    fx, fy = -dx - x0, -dy - y0
    out = 0.0
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            top, left = margin + y0 + oy, margin + x0 + ox
            out = out + (wy * wx) * framed[:, top : top + size, left : left + size]
    return out
