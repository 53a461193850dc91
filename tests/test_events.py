"""Event streams (tonic's format) binned into spike trains, and the saccade
event-camera emulator (shared/BENCHMARKS.md EVENT-DIGITS): each against a
slow, obviously correct twin written with plain loops, plus hand-checked
cases and the errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import snn
from snn.events import EVENT_DTYPE, EventsDroppedWarning, bin_events, saccade_events, weighted_input


def stream(rows, dtype=EVENT_DTYPE):
    """A structured stream from ``(x, y, t, p)`` rows."""
    out = np.zeros(len(rows), dtype)
    for k, (x, y, t, p) in enumerate(rows):
        out[k] = (x, y, t, p)
    return out


def naive_bin(streams, sensor, dt_us, T, duplicates):
    """Raster ``[T, B, n]`` built event by event; ``carry``: a repeat moves
    to the neuron's next free step."""
    w, h, _ = sensor
    raster = np.zeros((T, len(streams), sensor[0] * sensor[1] * sensor[2]), np.uint8)
    dropped = 0
    for b, events in enumerate(streams):
        for e in events:
            t = int(e["t"] // dt_us)
            if t >= T:
                continue
            i = (int(e["p"]) * h + int(e["y"])) * w + int(e["x"])
            if duplicates == "carry":
                while t < T and raster[t, b, i]:
                    t += 1
                if t == T:
                    dropped += 1
                    continue
            raster[t, b, i] = 1
    return raster, dropped


def random_streams(rng, sensor, n_streams, max_events, t_max):
    out = []
    for _ in range(n_streams):
        k = int(rng.integers(0, max_events + 1))
        s = np.zeros(k, EVENT_DTYPE)
        s["x"] = rng.integers(0, sensor[0], k)
        s["y"] = rng.integers(0, sensor[1], k)
        s["p"] = rng.integers(0, sensor[2], k).astype(bool)
        s["t"] = np.sort(rng.integers(0, t_max, k))
        out.append(s)
    return out


# -- bin_events ------------------------------------------------------------------------


def test_neuron_numbering_polarity_and_step_edges():
    sensor = (4, 3, 2)  # W, H, P
    s = stream([(1, 2, 0, 0), (3, 0, 999, 1), (0, 0, 1000, 1), (2, 1, 2999, 0), (2, 1, 3000, 1)])
    tr = bin_events(s, sensor, dt=1e-3)
    assert tr.n == 24 and tr.batch_size == 1 and tr.n_steps == 4  # up to the last event
    # (p * H + y) * W + x: channel-first [P, H, W]
    assert tr.to_events().tolist() == [
        [0, 0, (0 * 3 + 2) * 4 + 1],
        [0, 0, (1 * 3 + 0) * 4 + 3],
        [1, 0, 12],
        [2, 0, (0 * 3 + 1) * 4 + 2],
        [3, 0, (1 * 3 + 1) * 4 + 2],
    ]
    assert tr.tptr.tolist() == [[0, 2, 3, 4, 5]]
    assert tr.idx[0, :2].tolist() == [9, 15]  # sorted within a step
    counts = tr.counts_per_neuron().reshape(2, 3, 4)  # [P, H, W] like a torch tensor
    assert counts[1, 0, 3] == 1 and counts[0, 2, 1] == 1 and counts.sum() == 5


def test_window_leaves_out_late_events_and_float_t():
    s = np.zeros(3, [("t", np.float64), ("p", np.uint8), ("x", np.int32), ("y", np.int32)])  # any order
    s["t"], s["x"] = [0.0, 1999.5, 2000.0], [0, 1, 2]
    tr = bin_events(s, (3, 1, 1), dt=1e-3, T=2)
    assert tr.n_steps == 2 and tr.to_events().tolist() == [[0, 0, 0], [1, 0, 1]]


def test_batch_of_unequal_streams_and_an_empty_one():
    rng = np.random.default_rng(0)
    sensor = (5, 4, 2)
    streams = random_streams(rng, sensor, 6, 60, 7000)
    streams.insert(2, np.zeros(0, EVENT_DTYPE))
    for duplicates in ("carry", "merge"):
        tr = bin_events(streams, sensor, dt=1e-3, T=8, duplicates=duplicates)
        expected, dropped = naive_bin(streams, sensor, 1000, 8, duplicates)
        assert tr.batch_size == 7 and tr.per_sample[2] == 0
        np.testing.assert_array_equal(tr.to_raster(), expected)


def test_duplicates_carry_keeps_counts_merge_does_not():
    # three events of one pixel in step 0, one more in step 1; sensor 2x1x1
    s = stream([(0, 0, 10, 0), (0, 0, 20, 0), (0, 0, 30, 0), (1, 0, 40, 0), (0, 0, 1500, 0)])
    carry = bin_events(s, (2, 1, 1), dt=1e-3, T=6)
    assert carry.to_events().tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0], [2, 0, 0], [3, 0, 0]]
    assert carry.counts_per_neuron().tolist() == [[4, 1]]  # every event is a spike
    merge = bin_events(s, (2, 1, 1), dt=1e-3, T=6, duplicates="merge")
    assert merge.to_events().tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0]]
    with pytest.warns(EventsDroppedWarning, match="2 event"):
        short = bin_events(s, (2, 1, 1), dt=1e-3, T=2)
    assert short.counts_per_neuron().tolist() == [[2, 1]]


def test_random_streams_against_the_naive_twin():
    rng = np.random.default_rng(1)
    for trial in range(20):
        sensor = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 3)))
        streams = random_streams(rng, sensor, int(rng.integers(1, 5)), 80, 5000)
        T = int(rng.integers(1, 7))
        for duplicates in ("carry", "merge"):
            expected, dropped = naive_bin(streams, sensor, 1000, T, duplicates)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tr = bin_events(streams, sensor, 1e-3, T, duplicates=duplicates)
            np.testing.assert_array_equal(tr.to_raster(), expected, err_msg=f"trial {trial} {duplicates}")
            assert (len(caught) > 0) == (dropped > 0)


def test_plain_arrays_with_an_ordering_and_a_fractional_dt():
    s = stream([(1, 0, 0, 1), (0, 1, 250, 0), (1, 1, 700, 1)])
    plain = np.stack([s["t"], s["x"], s["y"], s["p"].astype(np.int64)], axis=1)  # "txyp"
    a = bin_events(s, (2, 2, 2), dt=2.5e-4)
    b = bin_events(plain, (2, 2, 2), dt=2.5e-4, ordering="txyp")
    assert a.to_events().tolist() == b.to_events().tolist() == [[0, 0, 5], [1, 0, 2], [2, 0, 7]]


def test_user_arrays_are_never_modified():
    rng = np.random.default_rng(2)
    streams = random_streams(rng, (3, 3, 2), 3, 40, 3000)
    copies = [s.copy() for s in streams]
    for s in streams:
        s.flags.writeable = False  # would raise if written
    with pytest.warns(EventsDroppedWarning):
        bin_events(streams, (3, 3, 2), 1e-3, T=2)
    for s, c in zip(streams, copies):
        np.testing.assert_array_equal(s, c)
        assert not s.flags.writeable


@pytest.mark.parametrize(
    "streams, match, error",
    [
        (np.zeros(2, [("x", int), ("y", int), ("t", int)]), r"no field\(s\) \['p'\]", ValueError),
        (stream([(0, 0, 5, 0), (0, 0, 3, 0)]), r"non-decreasing.*t\[1\] = 3 < t\[0\] = 5", ValueError),
        (stream([(0, 0, -1, 0)], [("x", int), ("y", int), ("t", int), ("p", int)]), ">= 0", ValueError),
        (stream([(4, 0, 0, 0)]), r"x must be in \[0, 4\).*\[4, 4\]", ValueError),
        (stream([(0, 3, 0, 0)]), r"y must be in \[0, 3\)", ValueError),
        (stream([(0, 0, 0, 2)], [("x", int), ("y", int), ("t", int), ("p", int)]), r"p must be", ValueError),
        (
            stream([(0.5, 0, 0, 0)], [("x", float), ("y", int), ("t", int), ("p", int)]),
            "'x'.*integer",
            TypeError,
        ),
        (stream([(0, 0, 0, 0)], [("x", int), ("y", int), ("t", "U3"), ("p", int)]), "'t'", TypeError),
        (np.zeros((3, 4), np.float64), "structured array", TypeError),
        ([], "at least one sample", ValueError),
        ("xytp", "sequence", TypeError),
    ],
)
def test_errors(streams, match, error):
    with pytest.raises(error, match=match):
        bin_events(streams, (4, 3, 2), dt=1e-3)


def test_errors_of_the_arguments():
    s = stream([(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="sensor_size"):
        bin_events(s, (4, 3), 1e-3)
    with pytest.raises(ValueError, match="dt"):
        bin_events(s, (4, 3, 2), 0.0)
    with pytest.raises(ValueError, match="T must"):
        bin_events(s, (4, 3, 2), 1e-3, T=0)
    with pytest.raises(ValueError, match="duplicates"):
        bin_events(s, (4, 3, 2), 1e-3, duplicates="sum")
    with pytest.raises(ValueError, match="NaN"):
        bin_events(
            stream([(0, 0, math.nan, 0)], [("x", int), ("y", int), ("t", float), ("p", int)]), (4, 3, 2), 1e-3
        )


def test_tonic_types_and_transforms():
    tonic = pytest.importorskip("tonic")
    import tonic.transforms as transforms

    sensor = (6, 5, 2)
    rng = np.random.default_rng(3)
    k = 400
    events = tonic.io.make_structured_array(
        rng.integers(0, 6, k),
        rng.integers(0, 5, k),
        np.sort(rng.integers(0, 10_000, k)),
        rng.integers(0, 2, k),
    )
    assert events.dtype == EVENT_DTYPE  # ours is tonic's events_struct
    kept = transforms.Compose([transforms.Denoise(filter_time=2000), transforms.TimeAlignment()])(events)
    frames = transforms.ToFrame(sensor_size=sensor, time_window=1000, include_incomplete=True)(kept)
    tr = bin_events(kept, sensor, dt=1e-3, duplicates="merge")
    # ToFrame's frames count the events of each [P, H, W] pixel per window of 1 ms (from t = 0 here)
    raster = tr.to_raster()[:, 0].reshape(-1, 2, 5, 6)
    assert raster.shape[0] == len(frames)
    np.testing.assert_array_equal(raster, (frames > 0).astype(np.uint8))
    carry = bin_events(kept, sensor, dt=1e-3, T=len(frames) + int(frames.max()))
    np.testing.assert_array_equal(carry.counts_per_neuron()[0], frames.sum(axis=0).ravel())


# -- saccade_events ----------------------------------------------------------------------


def naive_saccades(image, seed, pad, size, side, steps_per_side, threshold=0.15, eps=0.1):
    """The emulator pixel by pixel: ``(x, y, step, p)`` events of one image."""
    img = np.pad(np.asarray(image, np.float64), pad)
    n = img.shape[0]

    def up(y, x):  # torch's bilinear, align_corners=False (a square image)
        def tap(v):
            src = max((v + 0.5) * n / size - 0.5, 0.0)
            lo = min(math.floor(src), n - 1)
            return lo, min(lo + 1, n - 1), src - lo

        y0, y1, fy = tap(y)
        x0, x1, fx = tap(x)
        top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
        bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
        return top * (1 - fy) + bottom * fy

    big = np.array([[up(y, x) for x in range(size)] for y in range(size)])

    def at(y, x):
        return big[y, x] if 0 <= y < size and 0 <= x < size else 0.0

    r = side / math.sqrt(3)
    vs = [(0.0, -r), (-side / 2, r / 2), (side / 2, r / 2)]

    def frame(step):
        j, k = divmod(step, steps_per_side)
        dx = vs[j][0] + (vs[(j + 1) % 3][0] - vs[j][0]) * (k / steps_per_side)
        dy = vs[j][1] + (vs[(j + 1) % 3][1] - vs[j][1]) * (k / steps_per_side)
        out = np.zeros((size, size))
        for y in range(size):
            for x in range(size):
                sy, sx = y - dy, x - dx
                y0, x0 = math.floor(sy), math.floor(sx)
                fy, fx = sy - y0, sx - x0
                out[y, x] = (
                    (1 - fy) * (1 - fx) * at(y0, x0)
                    + (1 - fy) * fx * at(y0, x0 + 1)
                    + fy * (1 - fx) * at(y0 + 1, x0)
                    + fy * fx * at(y0 + 1, x0 + 1)
                )
        return out

    ref = (
        np.log(frame(0) + eps)
        + np.random.default_rng(seed).uniform(-threshold, threshold, (1, size, size))[0]
    )
    events = []
    for step in range(1, 3 * steps_per_side):
        level = np.log(frame(step) + eps)
        for y in range(size):
            for x in range(size):
                d = level[y, x] - ref[y, x]
                if abs(d) > threshold:
                    events.append((x, y, step, d > 0))
                    ref[y, x] = level[y, x]
    return events


def test_saccades_against_the_naive_twin():
    rng = np.random.default_rng(4)
    images = rng.random((1, 4, 4))
    got = saccade_events(images, seed=7, pad=1, size=9, side=2.0, steps_per_side=4)[0]
    expected = naive_saccades(images[0], 7, 1, 9, 2.0, 4)
    assert len(expected) > 20
    ours = [(int(e["x"]), int(e["y"]), int(e["t"]) // 1000, bool(e["p"])) for e in got]
    assert sorted(ours) == sorted(expected)
    assert np.all(np.diff(got["t"]) >= 0) and got.dtype == EVENT_DTYPE


def test_static_and_blank_images_give_no_event():
    rng = np.random.default_rng(5)
    digits = rng.random((3, 8, 8))
    assert all(len(e) == 0 for e in saccade_events(digits, seed=0, side=0.0))  # no movement
    assert all(len(e) == 0 for e in saccade_events(np.zeros((2, 8, 8)), seed=0))  # nothing to see


def test_an_edge_gives_events_of_the_right_polarity_and_place():
    # a vertical edge, dark left, bright right, no padding, no upsampling (size = width)
    img = np.zeros((1, 16, 16))
    img[:, :, 8:] = 1.0
    (events,) = saccade_events(img, seed=0, pad=0, size=16, steps_per_side=50)
    step = events["t"] // 1000
    # away from the frame's borders (zeros come in from outside there)
    rows = (events["y"] >= 3) & (events["y"] <= 12) & (events["x"] >= 3) & (events["x"] <= 12)
    inner = events[rows]
    # the edge moves at most 1.8 px each way: only columns 6..9 change inside
    assert set(np.unique(inner["x"])) <= {6, 7, 8, 9} and len(inner) > 0
    assert set(np.unique(events["x"][(events["y"] >= 3) & (events["y"] <= 12)])) <= {6, 7, 8, 9, 14, 15}
    side = (step[rows] - 1) // 50  # the move from step s - 1 to s
    # side 0 moves left (dx 0 -> -1.5): the bright half covers dark pixels: ON; side 1 moves right: OFF
    assert inner["p"][side == 0].all() and not inner["p"][side == 1].any() and inner["p"][side == 2].all()
    # every row sees the same edge: each inner row has events in the same columns
    per_row = {int(y): set(inner["x"][inner["y"] == y].tolist()) for y in range(3, 13)}
    assert len({frozenset(v) for v in per_row.values()}) == 1
    # at most one event per pixel per step
    keys = (step * 16 + events["y"]) * 16 + events["x"]
    assert len(np.unique(keys)) == len(keys)


def test_seeded_and_the_caller_images_untouched():
    rng = np.random.default_rng(6)
    images = rng.random((2, 1, 8, 8))
    before = images.copy()
    a = saccade_events(images, seed=3, steps_per_side=10)
    b = saccade_events(images, seed=3, steps_per_side=10)
    c = saccade_events(images, seed=4, steps_per_side=10)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    np.testing.assert_array_equal(images, before)
    tr = bin_events(a, (32, 32, 2), dt=1e-3, T=30)  # one event per pixel per step: nothing merged or moved
    assert tr.total == sum(len(e) for e in a)


def test_saccade_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        saccade_events(np.full((1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="shape"):
        saccade_events(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="whole number of microseconds"):
        saccade_events(np.zeros((1, 8, 8)), dt=1.5e-7)


# -- weighted_input -------------------------------------------------------------------------


def test_weighted_input_scales_the_first_layer_only():
    net = snn.Network(
        [
            snn.Conv2d((2, 6, 6), 3, 3, snn.IF(), padding=1, bias=0.1, v_init=0.5, seed=0),
            snn.Linear(108, 4, snn.IF(threshold=math.inf), seed=1),
        ]
    )
    scaled = weighted_input(net, 4.0)
    assert scaled.layers[1] is net.layers[1] and net.layers[0].weight is not scaled.layers[0].weight
    np.testing.assert_array_equal(scaled.layers[0].weight, net.layers[0].weight * 4)
    np.testing.assert_array_equal(scaled.layers[0].bias, net.layers[0].bias)
    np.testing.assert_array_equal(scaled.layers[0].v_init, net.layers[0].v_init)
    # a spike into the scaled net adds 4x the weight: the same as four unit spikes' membranes
    rng = np.random.default_rng(0)
    spikes = (rng.random((5, 2, 72)) < 0.2).astype(np.uint8)
    a = scaled.run(spikes).counts[0].synops
    b = net.run(spikes).counts[0].synops
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        weighted_input(snn.Network([snn.MaxPool2d((1, 4, 4), 2)]), 2.0)


def test_network_runs_binned_trains_without_a_raster():
    """``Network.run(spikes=SpikeTrains)``: the binned trains as they are,
    the same spikes as the raster; malformed trains refused by name."""
    net = snn.Network([snn.Linear(4, 3, snn.IF(), weight=np.ones((3, 4)))])
    raster = (np.random.default_rng(0).random((6, 2, 4)) < 0.5).astype(np.uint8)
    np.testing.assert_array_equal(
        net.run(snn.SpikeTrains.from_raster(raster)).spikes(0), net.run(raster).spikes(0)
    )
    for tptr, idx, match in (
        ([[0, 2]], [[1, 1]], "twice"),
        ([[0, 1]], [[7]], "outside"),
        ([[1, 1]], [[0]], "start at 0"),
        ([[0, 3]], [[0]], "within idx"),
    ):
        with pytest.raises(ValueError, match=match):
            net.run(snn.SpikeTrains(np.array(tptr), np.array(idx, np.int32), 4))
    with pytest.raises(ValueError, match="int32"):
        net.run(snn.SpikeTrains(np.array([[0, 1]]), np.array([[0]]), 4))
