"""The output end of a pipeline that never stalls: a FIFO plus the credits that keep it from overflowing."""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CreditedOutput", "RETURN_DELAY"]

RETURN_DELAY = 2  # cycles from a result leaving the FIFO to its place being credited again


class CreditedOutput(wiring.Component):
    """A FIFO of ``depth`` results and a credit counter for a pipeline without a stall enable.

    The producer asks for a place (``take``) when it starts the work for one result and may do so only while
    ``has_credit`` is high; the result reaches ``w_data``/``w_en`` some cycles later and leaves through ``o``.
    Downstream back-pressure thus stops at the counter and the FIFO: no enable net fans out to every pipeline
    register (on a large device such a net alone sets the clock). ``depth`` should cover the results in flight
    plus :data:`RETURN_DELAY` for full throughput; any depth is correct.

    Parameters
    ----------
    shape : shape-castable
        Payload of a result.
    depth : int
        FIFO places (= credits).

    Members
    -------
    take : ``In(1)``; a place is reserved this cycle (only while ``has_credit``).
    has_credit : ``Out(1)``
    w_data : ``In(shape)``
    w_en : ``In(1)``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, *, shape, depth):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self.depth = depth
        super().__init__(
            {
                "take": In(1),
                "has_credit": Out(1),
                "w_data": In(shape),
                "w_en": In(1),
                "o": Out(stream.Signature(shape)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        width = len(Value.cast(self.w_data))
        # the store: a write never checks for room (the credits guarantee it), so no FIFO level gates the wide
        # write enable; a registered output stage fetches from it
        m.submodules.store = store = Memory(shape=width, depth=max(2, self.depth), init=[])
        wp, rp = store.write_port(), store.read_port(domain="comb")
        wptr, rptr = (Signal(range(max(2, self.depth)), name=n) for n in ("wptr", "rptr"))
        stored = Signal(range(self.depth + 1))
        m.d.comb += [wp.addr.eq(wptr), wp.data.eq(self.w_data), wp.en.eq(self.w_en), rp.addr.eq(rptr)]
        with m.If(self.w_en):
            m.d.sync += wptr.eq(Mux(wptr == self.depth - 1, 0, wptr + 1))
        fetch = Signal()
        m.d.comb += fetch.eq((~self.o.valid | self.o.ready) & (stored != 0))
        with m.If(fetch):
            m.d.sync += [
                self.o.payload.eq(rp.data),
                self.o.valid.eq(1),
                rptr.eq(Mux(rptr == self.depth - 1, 0, rptr + 1)),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.w_en & ~fetch):
            m.d.sync += stored.eq(stored + 1)
        with m.Elif(fetch & ~self.w_en):
            m.d.sync += stored.eq(stored - 1)

        credits = Signal(range(self.depth + 1), init=self.depth)
        # a freed place is credited RETURN_DELAY cycles late: the FIFO sits by the consumer, the counter by the
        # producer's issue logic, possibly across the chip; registers on the way let the placer split that route
        popped = self.o.valid & self.o.ready
        for k in range(RETURN_DELAY):
            late = Signal(name=f"popped_{k}")
            m.d.sync += late.eq(popped)
            popped = late
        with m.If(self.take & ~popped):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(popped & ~self.take):
            m.d.sync += credits.eq(credits + 1)
        m.d.comb += self.has_credit.eq(credits != 0)
        return m
