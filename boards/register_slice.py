"""A register slice on an :mod:`amaranth.lib.stream`: a stream cut into two timing paths, one beat per cycle."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Every output of the slice comes from a flip-flop: ``o.valid``, ``o.payload`` and ``i.ready``.

    No path runs from the consumer's ``o.ready`` to the producer, or from the producer's ``i.valid`` and
    ``i.payload`` to the consumer. A skid register keeps the throughput at one beat per cycle:
    ``i.ready`` comes from a flip-flop, so it can only fall one cycle after ``o.ready`` does, and the beat
    taken in that cycle waits in the skid register. The slice delays every beat by one cycle, changes
    neither their order nor their number, and holds at most two beats. Clocked by ``sync``; rename the
    domain with :class:`~amaranth.hdl.DomainRenamer`.

    Parameters
    ----------
    shape : shape-like
        The payload's shape.

    Members
    -------
    i : ``In(stream.Signature(shape))``
    o : ``Out(stream.Signature(shape))``
    """

    def __init__(self, *, shape):
        self._shape = Shape.cast(shape)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self._shape)
        skid_full = Signal()
        m.d.comb += self.i.ready.eq(~skid_full)
        with m.If(self.o.ready | ~self.o.valid):  # the output register takes a beat: the skid's, else the input's
            m.d.sync += [
                self.o.payload.eq(Mux(skid_full, skid, self.i.payload)),
                self.o.valid.eq(skid_full | self.i.valid),
                skid_full.eq(0),
            ]
        with m.Elif(self.i.valid & ~skid_full):  # the output holds: the beat taken now waits in the skid register
            m.d.sync += [skid.eq(self.i.payload), skid_full.eq(1)]
        return m
