"""The whole-patch window (few channels) in amaranth.sim against export.conv's patches, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_hw_window import first_mismatch, map_beats, stream_through

from export.conv import patches
from hw.patch_window import PatchWindow


@pytest.mark.parametrize(
    "channels, height, width, kernel, stride, padding, lanes",
    [
        (1, 8, 8, 3, 1, 0, 1),
        (1, 8, 8, 3, 1, 1, 1),
        (3, 7, 9, 3, 2, 1, 3),
        (2, 6, 5, 2, 1, 0, 1),
        (5, 6, 6, 3, 3, 2, 2),  # stride equal to the kernel, padding 2, a pixel in three beats
        (4, 5, 7, 1, 1, 0, 3),
        (3, 9, 9, 5, 2, 2, 4),
        (2, 4, 9, 3, 4, 0, 8),  # stride beyond the kernel
    ],
)
def test_patch_window_matches_golden(channels, height, width, kernel, stride, padding, lanes):
    rng = np.random.default_rng(channels * 100 + height)
    x = rng.integers(0, 8, (3, height, width, channels))
    dut = PatchWindow(
        channels=channels,
        height=height,
        width=width,
        kernel=kernel,
        stride=stride,
        padding=padding,
        bits=3,
        in_lanes=lanes,
    )
    expected = patches(x, kernel=kernel, stride=stride, padding=padding).reshape(-1, kernel * kernel * channels)
    assert dut.out_beats_per_image * 3 == len(expected)
    got = stream_through(dut, map_beats(x, lanes, rng), len(expected), gap=0.3, stall=0.3, seed=2)
    assert first_mismatch(got, expected, ("beat",)) is None


def test_patch_window_cycles_per_image():
    """Images back to back with no gaps or stalls: one padded-map position per cycle."""
    h, w, k, p = 10, 12, 3, 1
    dut = PatchWindow(channels=1, height=h, width=w, kernel=k, padding=p, bits=4, in_lanes=1)
    images = 3
    x = np.random.default_rng(0).integers(0, 16, (images, h, w, 1))
    beats, per = map_beats(x, 1), dut.out_beats_per_image
    stamps = []

    async def producer(ctx):
        for beat in beats:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, beat)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(stamps) < images * per:
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o.valid):
                stamps.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert dut.cycles_per_image == (h + 2 * p) * (w + 2 * p)
    assert stamps[2 * per - 1] - stamps[per - 1] == dut.cycles_per_image


def test_patch_window_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        PatchWindow(channels=1, height=4, width=4, kernel=3, padding=3, bits=8, in_lanes=1)
    with pytest.raises(ValueError, match="kernel 5 does not fit"):
        PatchWindow(channels=1, height=4, width=4, kernel=5, bits=8, in_lanes=1)
    with pytest.raises(ValueError, match="channels"):
        PatchWindow(channels=0, height=4, width=4, kernel=3, bits=8, in_lanes=1)
