"""The stream register slice of the board top's clock-domain crossings: every beat once and in order under random
gaps and stalls, one beat per cycle, and no combinational path through it in either direction."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.register_slice import RegisterSlice
from hw.stream_helpers import stream_get_all, stream_put_all


def _run(dut, testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(1e-8 * 5000)  # a slice that loses a beat leaves the consumer waiting: stop, and compare


@pytest.mark.parametrize("gap, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.4, 0.4)])
def test_every_beat_once_in_order(gap, stall):
    dut = RegisterSlice(shape=12)
    rng = np.random.default_rng(7)
    beats = [int(v) for v in rng.integers(0, 1 << 12, 300)]
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=rng, gap=gap)

    async def consumer(ctx):
        got.extend(await stream_get_all(ctx, dut.o, len(beats), rng=rng, stall=stall))

    _run(dut, [producer, consumer])
    assert got == beats


def test_one_beat_per_cycle_through_a_stall():
    """Valid and ready held high: a beat leaves every cycle after the first; a one-cycle stall costs one cycle."""
    dut = RegisterSlice(shape=8)
    moved = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        sent = 0
        for cycle in range(40):
            ctx.set(dut.i.payload, sent)
            ctx.set(dut.o.ready, cycle != 20)
            if ctx.get(dut.o.valid) and cycle != 20:
                moved.append(ctx.get(dut.o.payload))
            sent += ctx.get(dut.i.ready)
            await ctx.tick()

    _run(dut, [bench])
    # every beat offered while i.ready was high leaves, once, in order; 38 of the 39 cycles after the first move one
    assert moved == list(range(len(moved))) and len(moved) == 38


def test_no_combinational_path_through_the_slice():
    """Within a cycle, nothing the producer or consumer drives changes what the slice drives."""
    dut = RegisterSlice(shape=6)
    rng = np.random.default_rng(3)

    async def bench(ctx):
        for _ in range(300):
            before = None
            for _ in range(4):  # the same cycle, other inputs
                ctx.set(dut.i.valid, int(rng.integers(2)))
                ctx.set(dut.i.payload, int(rng.integers(64)))
                ctx.set(dut.o.ready, int(rng.integers(2)))
                now = (ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload))
                assert before is None or now == before
                before = now
            await ctx.tick()

    _run(dut, [bench])


def test_shape_is_checked():
    with pytest.raises(TypeError):
        RegisterSlice(shape="wide")
