"""The output end of a pipeline that never stalls: a FIFO plus the credits that keep it from overflowing."""

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CreditedOutput", "RETURN_DELAY"]

RETURN_DELAY = 2  # cycles from a result leaving the FIFO to its place being credited again
FETCH_BITS = 32  # result bits per copy of the output register's fetch enable


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
        # the output register fetches when it is free and the store holds a result. That enable reaches every bit
        # of a wide result, so it is made in copies, one per FETCH_BITS of the result, each from its own copy of
        # `o.valid` and of "the store is not empty" (registers kept apart: yosys would merge equal ones)
        nonempty_next = Signal()
        fetches = []
        for g, lo in enumerate(range(0, width, FETCH_BITS)):
            valid, nonempty = (Signal(name=f"{n}{g}", attrs={"keep": 1}) for n in ("valid", "nonempty"))
            fetch = Signal(name=f"fetch{g}")
            m.d.comb += fetch.eq((~valid | self.o.ready) & nonempty)
            m.d.sync += [valid.eq(fetch | (valid & ~self.o.ready)), nonempty.eq(nonempty_next)]
            with m.If(fetch):
                m.d.sync += Value.cast(self.o.payload)[lo : lo + FETCH_BITS].eq(rp.data[lo : lo + FETCH_BITS])
            fetches.append((valid, fetch))
        valid, fetch = fetches[0]
        m.d.comb += self.o.valid.eq(valid)
        with m.If(fetch):
            m.d.sync += rptr.eq(Mux(rptr == self.depth - 1, 0, rptr + 1))
        # the count after this cycle's write, then the next count and "non-empty" both with and without a fetch: all
        # before the fetch is known, so the consumer's ready is two gates from those registers (the fetch, the choice)
        stored_in = Signal(range(self.depth + 2))
        m.d.comb += stored_in.eq(stored + self.w_en)
        m.d.sync += stored.eq(Mux(fetch, stored_in - 1, stored_in))
        m.d.comb += nonempty_next.eq(Mux(fetch, stored_in > 1, stored_in != 0))  # a fetch finds stored >= 1

        credits = Signal(range(self.depth + 1), init=self.depth)
        # a freed place is credited RETURN_DELAY cycles late: the FIFO sits by the consumer, the counter by the
        # producer's issue logic, possibly across the chip; registers on the way let the placer split that route
        popped = self.o.valid & self.o.ready
        for k in range(RETURN_DELAY):
            late = Signal(name=f"popped_{k}")
            m.d.sync += late.eq(popped)
            popped = late
        credits_next = Signal.like(credits)
        m.d.comb += credits_next.eq(credits - self.take + popped)
        m.d.sync += credits.eq(credits_next)
        # "credits != 0" as a register of its next value: the producer's issue decision is one gate after it
        has_credit = Signal(init=1)
        m.d.sync += has_credit.eq(credits_next != 0)
        m.d.comb += self.has_credit.eq(has_credit)
        return m
