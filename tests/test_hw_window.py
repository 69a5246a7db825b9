"""Sliding window and max-pool in amaranth.sim against export.conv's golden patches and pooling, bit for bit."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from export.conv import maxpool, patches
from hw.maxpool import MaxPool
from hw.sliding_window import SlidingWindow
from hw.stream_helpers import stream_get_all, stream_put_all


def map_beats(x, lanes, rng=None):
    """Beats of maps ``x`` (N, H, W, C) in the stream format; padding lanes random when ``rng`` (a unit must ignore
    them), else zero."""
    n, h, w, c = x.shape
    beats = -(-c // lanes)
    padded = (
        np.zeros((n, h, w, beats * lanes), np.int64)
        if rng is None
        else rng.integers(0, int(x.max()) + 1, (n, h, w, beats * lanes))
    )
    padded[..., :c] = x
    return [[int(v) for v in row] for row in padded.reshape(-1, lanes)]


def simulate(dut, *benches, cycles):
    """Run ``benches`` as testbenches; fail instead of hanging when they are not all done within ``cycles`` clock
    cycles (a lost beat or a deadlock leaves a consumer waiting forever)."""
    done = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:

        async def run(ctx, bench=bench):
            await bench(ctx)
            done.append(bench)

        sim.add_testbench(run)

    async def watchdog(ctx):
        for _ in range(0, cycles, 64):
            if len(done) == len(benches):
                return
            await ctx.tick().repeat(64)
        raise AssertionError(f"not done after {cycles} cycles: a lost beat or a deadlock")

    sim.add_testbench(watchdog)
    sim.run()


def stream_through(dut, beats, count, *, gap=0.0, stall=0.0, seed=0):
    """Send ``beats`` into ``dut.i`` and take ``count`` beats from ``dut.o`` (random input gaps and output stalls);
    returns them as an int array (beats x lanes)."""
    rng = np.random.default_rng(seed)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, count, rng=rng, stall=stall))

    simulate(dut, producer, consumer, cycles=10 * (len(beats) + count) + 1000)
    lanes = dut.o.payload.shape().length
    return np.array([[beat[k] for k in range(lanes)] for beat in got], np.int64)


def first_mismatch(got, expected, names):
    """None when equal, else where the first difference is (``names`` the axes before the last, lane, one)."""
    bad = np.argwhere(got != expected)
    if not len(bad):
        return None
    first = tuple(bad[0])
    where = ", ".join(f"{n}={i}" for n, i in zip(names + ("lane",), first))
    return f"{len(bad)} values differ; first at {where}: expected {expected[first]}, got {got[first]}"


def check_window(
    channels, height, width, kernel, stride, padding, lanes, *, bits=3, images=3, gap=0.3, stall=0.3, seed=0
):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**bits, (images, height, width, channels))
    dut = SlidingWindow(
        channels=channels,
        height=height,
        width=width,
        kernel=kernel,
        stride=stride,
        padding=padding,
        bits=bits,
        in_lanes=lanes,
    )
    want = patches(x, kernel=kernel, stride=stride, padding=padding).reshape(-1, channels)
    assert dut.out_beats_per_image * images == len(want)
    got = stream_through(dut, map_beats(x, lanes, rng), len(want), gap=gap, stall=stall, seed=seed)
    shape = (images, dut.out_height, dut.out_width, kernel, kernel, channels)
    problem = first_mismatch(got.reshape(shape), want.reshape(shape), ("image", "oy", "ox", "ky", "kx"))
    assert problem is None, problem


def check_pool(channels, height, width, kernel, lanes, *, bits=3, images=3, gap=0.3, stall=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**bits, (images, height, width, channels))
    dut = MaxPool(channels=channels, height=height, width=width, kernel=kernel, bits=bits, lanes=lanes)
    want = np.array(map_beats(maxpool(x, kernel), lanes))  # padding lanes: zeros
    assert dut.out_beats_per_image * images == len(want)
    got = stream_through(dut, map_beats(x, lanes, rng), len(want), gap=gap, stall=stall, seed=seed)
    shape = (images, dut.out_height, dut.out_width, dut.beats_per_pixel, lanes)
    problem = first_mismatch(got.reshape(shape), want.reshape(shape), ("image", "py", "px", "beat"))
    assert problem is None, problem


# channels, height, width, kernel, stride, padding, in_lanes
WINDOWS = [
    (3, 6, 5, 3, 1, 1, 3),  # the common conv: 3x3, pad 1, one beat per pixel
    (5, 5, 7, 3, 1, 0, 2),  # odd C, L < C not dividing it, unpadded
    (3, 7, 6, 3, 2, 1, 8),  # L > C, stride 2
    (4, 6, 9, 2, 3, 0, 4),  # stride > kernel: rows and columns skipped
    (2, 9, 4, 1, 3, 0, 1),  # 1x1 kernel, stride 3, one channel per beat
    (7, 4, 5, 5, 1, 2, 3),  # 5x5, pad 2, odd C and L
    (3, 5, 3, 4, 2, 3, 2),  # padding K-1
    (2, 6, 3, 3, 1, 0, 1),  # one-pixel-wide output
    (1, 3, 8, 3, 2, 1, 1),  # one channel, stride 2 and padding on a three-row map
    (6, 1, 6, 3, 1, 1, 4),  # one-row map
    (2, 2, 2, 5, 1, 4, 2),  # a map smaller than the kernel
    (9, 4, 4, 3, 3, 0, 4),  # one output pixel, G = 3 with a ragged last beat
    (8, 5, 6, 3, 1, 1, 1),  # input-bound (8 beats a pixel): the reader waits for every row, padding at the end
    (7, 6, 4, 3, 2, 2, 2),  # input-bound, stride 2, padding K-1
]


@pytest.mark.parametrize("traffic", [(0.3, 0.3), (0.7, 0.0)], ids=["stalls", "slow-input"])
@pytest.mark.parametrize("case", WINDOWS, ids=lambda c: "c{}_{}x{}_k{}s{}p{}_l{}".format(*c))
def test_window_matches_patches(case, traffic):
    check_window(*case, gap=traffic[0], stall=traffic[1], seed=sum(case))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.data())
def test_window_random_shapes(draw):
    kernel = draw.draw(st.integers(1, 5), "kernel")
    padding = draw.draw(st.integers(0, kernel - 1), "padding")
    stride = draw.draw(st.integers(1, 4), "stride")
    low = max(1, kernel - 2 * padding)
    height, width = draw.draw(st.integers(low, 7), "height"), draw.draw(st.integers(low, 7), "width")
    channels, lanes = draw.draw(st.integers(1, 9), "channels"), draw.draw(st.integers(1, 8), "lanes")
    gap, stall = draw.draw(st.sampled_from([0.0, 0.3, 0.7]), "gap"), draw.draw(st.sampled_from([0.0, 0.5]), "stall")
    check_window(channels, height, width, kernel, stride, padding, lanes, images=2, gap=gap, stall=stall)


# channels, height, width, kernel, lanes
POOLS = [
    (3, 4, 6, 2, 3),  # one beat per pixel
    (5, 7, 7, 2, 2),  # odd C and map: the last row and column dropped
    (3, 6, 5, 3, 8),  # L > C, K = 3
    (7, 5, 9, 4, 3),  # ragged last beat, K = 4
    (2, 3, 4, 1, 1),  # K = 1: every beat is a window
    (4, 5, 2, 2, 4),  # one-pixel-wide output
    (6, 3, 3, 3, 4),  # one output pixel
    (1, 9, 8, 5, 1),
]


@pytest.mark.parametrize("case", POOLS, ids=lambda c: "c{}_{}x{}_k{}_l{}".format(*c))
def test_maxpool_matches_golden(case):
    check_pool(*case, seed=sum(case))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_maxpool_random_shapes(draw):
    kernel = draw.draw(st.integers(1, 4), "kernel")
    height, width = draw.draw(st.integers(kernel, 8), "height"), draw.draw(st.integers(kernel, 8), "width")
    channels, lanes = draw.draw(st.integers(1, 7), "channels"), draw.draw(st.integers(1, 8), "lanes")
    gap, stall = draw.draw(st.sampled_from([0.0, 0.3, 0.7]), "gap"), draw.draw(st.sampled_from([0.0, 0.5]), "stall")
    check_pool(channels, height, width, kernel, lanes, bits=4, images=2, gap=gap, stall=stall)


def handshake_cycles(dut, beats, count):
    """Stream ``beats`` at full rate into a consumer that is always ready; the cycle of every output beat."""
    cycles = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats)

    async def monitor(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        async for _, _, valid in ctx.tick().sample(dut.o.valid):
            if valid:
                cycles.append(cycle)
            cycle += 1
            if len(cycles) == count:
                return

    simulate(dut, producer, monitor, cycles=4 * (len(beats) + count) + 1000)
    return cycles


@pytest.mark.parametrize(
    "case, exact",
    [
        ((3, 8, 8, 3, 1, 1, 3), True),  # output-bound
        ((3, 8, 8, 3, 1, 0, 3), False),  # output-bound, unpadded: the next image's first rows wait
        ((16, 8, 8, 3, 1, 1, 2), True),  # nearly balanced
        ((64, 6, 6, 3, 1, 1, 4), True),  # input-bound
        ((4, 9, 9, 2, 3, 0, 1), True),  # stride > kernel
        ((8, 10, 10, 3, 2, 1, 4), True),  # stride 2
        ((2, 3, 6, 3, 1, 0, 1), False),  # in = out, unpadded
    ],
    ids=lambda c: "c{}_{}x{}_k{}s{}p{}_l{}".format(*c) if isinstance(c, tuple) else None,
)
def test_window_throughput(case, exact):
    """Images back to back, no gaps or stalls: cycles per image within the documented bound (exactly the slower
    side's beats where ``exact``)."""
    channels, height, width, kernel, stride, padding, lanes = case
    dut = SlidingWindow(
        channels=channels,
        height=height,
        width=width,
        kernel=kernel,
        stride=stride,
        padding=padding,
        bits=2,
        in_lanes=lanes,
    )
    images = 4
    x = np.zeros((images, height, width, channels), np.int64)
    per = dut.out_beats_per_image
    cycles = handshake_cycles(dut, map_beats(x, lanes), images * per)
    # images after the first: the pipeline is full
    worst = max(cycles[(k + 1) * per - 1] - cycles[k * per - 1] for k in range(1, images))
    slower = max(dut.in_beats_per_image, dut.out_beats_per_image)
    bound = max(dut.in_beats_per_image, dut.out_beats_per_image + (kernel - padding) * width * dut.beats_per_pixel)
    assert slower <= worst <= bound
    assert worst == slower or not exact


@pytest.mark.parametrize(
    "case", [(3, 8, 8, 2, 3), (2, 6, 6, 1, 1), (7, 6, 9, 3, 2)], ids=lambda c: "c{}_{}x{}_k{}_l{}".format(*c)
)
def test_maxpool_throughput_and_latency(case):
    channels, height, width, kernel, lanes = case
    dut = MaxPool(channels=channels, height=height, width=width, kernel=kernel, bits=2, lanes=lanes)
    images = 3
    x = np.zeros((images, height, width, channels), np.int64)
    per = dut.out_beats_per_image
    cycles = handshake_cycles(dut, map_beats(x, lanes), images * per)
    assert all(cycles[(k + 1) * per - 1] - cycles[k * per - 1] == dut.in_beats_per_image for k in range(1, images))
    # the first output beat: the beat closing window (0, 0) is beat ((K-1) * W + K - 1) * G of the stream
    closing = ((kernel - 1) * width + kernel - 1) * dut.beats_per_pixel
    assert cycles[0] == closing + dut.latency


def test_no_multiplier_in_the_netlists():
    for dut in (
        SlidingWindow(channels=5, height=7, width=6, kernel=3, stride=2, padding=1, bits=4, in_lanes=2),
        MaxPool(channels=5, height=7, width=7, kernel=3, bits=4, lanes=2),
    ):
        text = rtlil.convert(dut)
        assert "$mul" not in text and "$div" not in text and "$mod" not in text


def test_window_members():
    dut = SlidingWindow(channels=5, height=7, width=6, kernel=3, stride=2, padding=1, bits=4, in_lanes=2)
    assert (dut.out_height, dut.out_width, dut.beats_per_pixel) == (4, 3, 3)
    assert (dut.in_beats_per_image, dut.out_beats_per_image, dut.rows) == (7 * 6 * 3, 4 * 3 * 9, 5)
    assert dut.i.payload.shape().length == 2 and dut.o.payload.shape().length == 5
    pool = MaxPool(channels=5, height=7, width=9, kernel=2, bits=4, lanes=2)
    assert (pool.out_height, pool.out_width, pool.in_beats_per_image, pool.out_beats_per_image) == (3, 4, 189, 36)


WINDOW_ARGS = dict(channels=3, height=5, width=6, kernel=3, stride=1, padding=1, bits=4, in_lanes=2)
POOL_ARGS = dict(channels=3, height=5, width=6, kernel=2, bits=4, lanes=2)


@pytest.mark.parametrize(
    "cls, args, name, value, error",
    [
        (SlidingWindow, WINDOW_ARGS, "channels", 0, ValueError),
        (SlidingWindow, WINDOW_ARGS, "height", 2.0, TypeError),
        (SlidingWindow, WINDOW_ARGS, "width", -1, ValueError),
        (SlidingWindow, WINDOW_ARGS, "kernel", 0, ValueError),
        (SlidingWindow, WINDOW_ARGS, "kernel", 8, ValueError),  # 5 rows + 2 * 1 padding
        (SlidingWindow, WINDOW_ARGS, "stride", 0, ValueError),
        (SlidingWindow, WINDOW_ARGS, "padding", 3, ValueError),  # P < K
        (SlidingWindow, WINDOW_ARGS, "padding", -1, ValueError),
        (SlidingWindow, WINDOW_ARGS, "bits", "8", TypeError),
        (SlidingWindow, WINDOW_ARGS, "in_lanes", True, TypeError),
        (MaxPool, POOL_ARGS, "channels", None, TypeError),
        (MaxPool, POOL_ARGS, "kernel", 6, ValueError),  # exceeds the height
        (MaxPool, POOL_ARGS, "lanes", 0, ValueError),
        (MaxPool, POOL_ARGS, "bits", 0, ValueError),
    ],
)
def test_constructor_errors_name_the_parameter(cls, args, name, value, error):
    with pytest.raises(error) as e:
        cls(**{**args, name: value})
    assert name in str(e.value) and repr(value) in str(e.value)
