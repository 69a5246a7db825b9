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

    The argmax is a registered tournament, one comparator level per cycle (``ceil(log2(classes))`` cycles), so no
    path is longer than one score comparison; the next image's beats are gathered meanwhile.

    Parameters
    ----------
    classes, lanes, score_width : int

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(score_width), lanes)))``
    o : ``Out(stream.Signature(result_layout(classes, score_width)))``
    latency : int
        Cycles from the last score beat to ``o.valid`` (when the output is free).
    """

    def __init__(self, *, classes, lanes, score_width):
        self.classes, self.lanes, self.score_width = classes, lanes, score_width
        self.beats = -(-classes // lanes)
        self.levels = (classes - 1).bit_length()
        self.latency = 1 + self.levels
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(hdl.signed(score_width), lanes))),
            "o": Out(stream.Signature(result_layout(classes, score_width))),
        })

    def elaborate(self, platform):
        m = Module()
        C, W = self.classes, self.score_width
        scores = [Signal(hdl.signed(W), name=f"score{c}") for c in range(C)]
        held = [Signal(hdl.signed(W), name=f"out_score{c}") for c in range(C)]
        cand = [Signal(hdl.signed(W), name=f"cand{c}") for c in range(C)]
        cand_i = [Signal(self.o.payload.cls.shape(), name=f"cand_idx{c}") for c in range(C)]
        beat = Signal(range(max(2, self.beats)))
        complete = Signal()           # `scores` holds a whole image not yet handed to the tournament
        running = Signal()
        step = Signal(range(max(2, self.levels)))
        load = Signal()
        m.d.comb += [self.i.ready.eq(~complete), load.eq(complete & ~running & ~self.o.valid)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for c in range(C):
                with m.If(beat == c // self.lanes):
                    m.d.sync += scores[c].eq(self.i.payload[c % self.lanes])
            with m.If(beat == self.beats - 1):
                m.d.sync += [beat.eq(0), complete.eq(1)]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        with m.If(load):
            m.d.sync += [complete.eq(0), step.eq(0)]
            m.d.sync += [h.eq(s) for h, s in zip(held, scores)]
            m.d.sync += [v.eq(s) for v, s in zip(cand, scores)] + [ci.eq(c) for c, ci in enumerate(cand_i)]
            if self.levels:
                m.d.sync += running.eq(1)
            else:
                m.d.sync += self.o.valid.eq(1)
        with m.If(running):
            # level l halves the candidates; a later class wins only if strictly greater (first argmax)
            with m.Switch(step):
                for level in range(self.levels):
                    n = -(-C // (1 << level))
                    with m.Case(level):
                        for j in range(-(-n // 2)):
                            a, b = 2 * j, 2 * j + 1
                            if b < n:
                                win = cand[b] > cand[a]
                                m.d.sync += [cand[j].eq(hdl.Mux(win, cand[b], cand[a])),
                                             cand_i[j].eq(hdl.Mux(win, cand_i[b], cand_i[a]))]
                            else:
                                m.d.sync += [cand[j].eq(cand[a]), cand_i[j].eq(cand_i[a])]
            with m.If(step == self.levels - 1):
                m.d.sync += [running.eq(0), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
        m.d.comb += self.o.payload.cls.eq(cand_i[0])
        for c in range(C):
            m.d.comb += self.o.payload.scores[c].eq(held[c])
        return m
