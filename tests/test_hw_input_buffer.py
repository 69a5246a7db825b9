"""The MVU's input buffer in both stores (rows in RAM, or a register per value), driven the way the MVU drives it:
random input gaps and consumer stalls, every step's lanes checked against the vector it belongs to."""

import numpy as np
import pytest
from amaranth import hdl
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.input_buffer import InputBuffer, beat_index


class _Consumer(hdl.Elaboratable):
    """The MVU's fold sequencer around the buffer (without its output credits): ``stall`` holds it; ``x_valid``,
    ``x_sf`` say which column fold ``buf.x`` holds."""

    def __init__(self, **kw):
        self.buf = InputBuffer(**kw)
        self.stall, self.x_valid = Signal(), Signal()
        self.x_sf = Signal(range(max(2, self.buf.sf)))
        self.row_folds = kw.get("row_folds", 1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = self.buf
        SF, NF = buf.sf, self.row_folds
        sf, nf = Signal.like(self.x_sf), Signal(range(max(2, NF)))
        last = sf == SF - 1
        go, sf_next = Signal(), Signal.like(sf)
        m.d.comb += [go.eq(buf.full & ~self.stall), sf_next.eq(sf)]
        with m.If(go):
            m.d.comb += sf_next.eq(hdl.Mux(last, 0, sf + 1))
            with m.If(last):
                m.d.sync += nf.eq(hdl.Mux(nf == NF - 1, 0, nf + 1))
        m.d.sync += [sf.eq(sf_next), self.x_valid.eq(go), self.x_sf.eq(sf)]
        m.d.comb += [buf.step.eq(go), buf.release.eq(go & last & (nf == NF - 1)), buf.sf_next.eq(sf_next)]
        return m


def _run(storage, *, length, group, lanes, simd, row_folds, bits=3, vectors=4, gaps=0.3, stalls=0.3, seed=0):
    rng = np.random.default_rng(seed)
    dut = _Consumer(length=length, bits=bits, group=group, lanes=lanes, simd=simd, row_folds=row_folds,
                    storage=storage)  # fmt: skip
    buf = dut.buf
    assert buf.storage == storage
    return _drive(dut, rng, length=length, group=group, lanes=lanes, simd=simd, row_folds=row_folds, bits=bits,
                  vectors=vectors, gaps=gaps, stalls=stalls)  # fmt: skip


def _drive(dut, rng, *, length, group, lanes, simd, row_folds, bits, vectors, gaps, stalls):
    buf = dut.buf
    data = rng.integers(0, 2**bits, (vectors, length))
    seen = []

    async def producer(ctx):
        for v in data:
            for k in range(buf.beats):
                while rng.random() < gaps:
                    await ctx.tick()
                for lane in range(lanes):
                    i = beat_index(k, lane, group=group, lanes=lanes)
                    ctx.set(buf.i.payload[lane], int(v[i]) if i is not None else int(rng.integers(0, 2**bits)))
                ctx.set(buf.i.valid, 1)
                await ctx.tick().until(buf.i.ready)
                ctx.set(buf.i.valid, 0)

    async def consumer(ctx):
        steps = vectors * buf.sf * row_folds
        while len(seen) < steps:
            ctx.set(dut.stall, int(rng.random() < stalls))
            await ctx.tick()
            if ctx.get(dut.x_valid):
                seen.append((ctx.get(dut.x_sf), [ctx.get(buf.x[lane]) for lane in range(simd)]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()
    padded = np.concatenate([data, np.zeros((vectors, buf.sf * simd - length), dtype=data.dtype)], axis=1)
    expected = [(f, list(padded[v, f * simd : (f + 1) * simd])) for v in range(vectors)
                for _ in range(row_folds) for f in range(buf.sf)]  # fmt: skip
    assert seen == expected


CASES = [
    # length, group, lanes, simd, row_folds
    (64, 64, 4, 16, 2),  # an MLP layer: beats line up with rows (the slots layout)
    (48, 48, 4, 20, 2),  # slots, the last row's last two slots past the vector
    (48, 24, 3, 12, 1),  # slots of 3 lanes across the select copies of 4
    (50, 50, 8, 16, 2),  # slots, the vector's last beat short (a first layer's image): its padding not written
    (50, 50, 16, 16, 1),  # beats that are rows, the last one short
    (7, 7, 4, 5, 1),  # the last beat ends one row and spills into the last: two writes, the input waits a cycle
    (27, 3, 2, 5, 2),  # a 3x3 patch of 3 channels in beats of 2: short beats, rows crossed mid-beat
    (36, 4, 3, 8, 1),  # short beats at every group, no row boundary on a beat boundary
    (20, 20, 5, 5, 3),  # lanes == simd
    (10, 10, 1, 3, 1),  # one value a beat
    (24, 8, 8, 4, 2),  # a conv layer's pixels of 8 channels: each beat two whole rows (the beats layout)
    (36, 12, 12, 4, 1),  # three rows a beat
    (32, 32, 16, 16, 2),  # an MLP layer whose beats are rows
]


@pytest.mark.parametrize("storage", ["memory", "registers"])
@pytest.mark.parametrize("length, group, lanes, simd, row_folds", CASES)
def test_steps_read_the_vector(storage, length, group, lanes, simd, row_folds):
    _run(storage, length=length, group=group, lanes=lanes, simd=simd, row_folds=row_folds)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda group: st.tuples(
            st.integers(1, 5).map(lambda n: n * group),
            st.just(group),
            st.integers(1, 4),
            st.integers(1, 9),
            st.integers(1, 3),
            st.integers(0, 2**16),
        )
    )
)
def test_memory_store_any_shape(shape):
    length, group, lanes, simd, row_folds, seed = shape
    simd = max(simd, lanes)
    if -(-length // simd) < 2:
        simd = max(lanes, -(-length // 2))
        if -(-length // simd) < 2:
            return  # one column fold: the register store's case
    _run("memory", length=length, group=group, lanes=lanes, simd=simd, row_folds=row_folds, vectors=3, seed=seed)


def test_auto_takes_memory_where_it_can_and_bad_storage_is_refused():
    def layout(**kw):
        b = InputBuffer(bits=2, **kw)
        return b.storage, b.layout

    assert layout(length=64, group=64, lanes=4, simd=16) == ("memory", "slots")
    assert layout(length=48, group=24, lanes=3, simd=12) == ("memory", "slots")
    assert layout(length=7, group=7, lanes=4, simd=5) == ("memory", "rows")  # a beat crosses a row
    assert layout(length=784, group=784, lanes=64, simd=64) == ("memory", "slots")  # an image, its last beat short
    assert layout(length=27, group=3, lanes=2, simd=4) == ("memory", "rows")  # short beats
    assert layout(length=576, group=64, lanes=64, simd=16) == ("memory", "beats")  # conv1 of cnv: 3x3 x 64
    assert layout(length=64, group=64, lanes=16, simd=16) == ("memory", "beats")
    assert layout(length=16, group=16, lanes=4, simd=16)[0] == "registers"  # one column fold
    assert layout(length=60, group=20, lanes=20, simd=8)[0] == "registers"  # beats of 2.5 rows
    with pytest.raises(ValueError, match=r"storage 'memory' needs two or more column folds and lanes \(20\)"):
        InputBuffer(length=60, bits=2, group=20, lanes=20, simd=8, storage="memory")
    with pytest.raises(ValueError, match=r"storage must be one of auto, memory, registers, not 'ram'"):
        InputBuffer(length=64, bits=2, group=64, lanes=4, simd=16, storage="ram")
