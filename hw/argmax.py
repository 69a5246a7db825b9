"""Collects the output layer's score beats into one result per image: the class and every score."""

from amaranth import hdl
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ArgmaxCollector", "result_layout"]


def result_layout(classes, score_width):
    """Output payload: ``cls`` (first argmax, lowest index on ties) at bit 0, then ``scores[classes]``."""
    return data.StructLayout({
        "cls": hdl.unsigned(max(1, (classes - 1).bit_length())),
        "scores": data.ArrayLayout(hdl.signed(score_width), classes),
    })


class ArgmaxCollector(wiring.Component):
    """Gathers ``ceil(classes / lanes)`` beats of ``lanes`` scores and emits ``{cls, scores}`` once per image.

    Parameters
    ----------
    classes, lanes, score_width : int

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(score_width), lanes)))``
    o : ``Out(stream.Signature(result_layout(classes, score_width)))``
    """

    def __init__(self, *, classes, lanes, score_width):
        self.classes, self.lanes, self.score_width = classes, lanes, score_width
        self.beats = -(-classes // lanes)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(hdl.signed(score_width), lanes))),
            "o": Out(stream.Signature(result_layout(classes, score_width))),
        })

    def elaborate(self, platform):
        m = Module()
        scores = [Signal(hdl.signed(self.score_width), name=f"score{c}") for c in range(self.classes)]
        beat = Signal(range(max(2, self.beats)))
        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for c in range(self.classes):
                with m.If(beat == c // self.lanes):
                    m.d.sync += scores[c].eq(self.i.payload[c % self.lanes])
            with m.If(beat == self.beats - 1):
                m.d.sync += [beat.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        # first argmax: a later class wins only if strictly greater
        best, best_idx = scores[0], hdl.Const(0, self.o.payload.cls.shape())
        for c in range(1, self.classes):
            win = scores[c] > best
            best = hdl.Mux(win, scores[c], best)
            best_idx = hdl.Mux(win, c, best_idx)
        m.d.comb += self.o.payload.cls.eq(best_idx)
        for c in range(self.classes):
            m.d.comb += self.o.payload.scores[c].eq(scores[c])
        return m
