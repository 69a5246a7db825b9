"""Collects the output layer's score beats into one result per image: the class and every score."""

from amaranth import hdl
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .credit_fifo import RETURN_DELAY, CreditedOutput

__all__ = ["ArgmaxCollector", "result_layout", "argmax_latency"]


def result_layout(classes, score_width):
    """Output payload: ``cls`` (first argmax, lowest index on ties) at bit 0, then ``scores[classes]``."""
    return data.StructLayout(
        {
            "cls": hdl.unsigned(max(1, (classes - 1).bit_length())),
            "scores": data.ArrayLayout(hdl.signed(score_width), classes),
        }
    )


def argmax_latency(classes):
    """Cycles from the last score beat to ``o.valid``: load, two per tournament level, output FIFO (2)."""
    return 3 + 2 * (classes - 1).bit_length()


class ArgmaxCollector(wiring.Component):
    """Gathers ``ceil(classes / lanes)`` beats of ``lanes`` scores and emits ``{cls, scores}`` once per image.

    The argmax is a pipelined tournament: each level registers its comparisons, then its selections, so no path
    is longer than one score comparison or one two-way multiplexer (the comparison's result drives every bit of a
    candidate, a wide fan-out that gets a cycle of its own). A new image may enter every cycle; the pipeline never
    stalls: an image enters only when the output FIFO has a place reserved for it
    (:class:`~hw.credit_fifo.CreditedOutput`).

    Parameters
    ----------
    classes, lanes, score_width : int

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(signed(score_width), lanes)))``
    o : ``Out(stream.Signature(result_layout(classes, score_width)))``
    latency : int
        Cycles from the last score beat to ``o.valid`` (when the output is free): :func:`argmax_latency`.
    """

    def __init__(self, *, classes, lanes, score_width):
        self.classes, self.lanes, self.score_width = classes, lanes, score_width
        self.beats = -(-classes // lanes)
        self.levels = (classes - 1).bit_length()
        self.latency = argmax_latency(classes)
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(hdl.signed(score_width), lanes))),
                "o": Out(stream.Signature(result_layout(classes, score_width))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        C, W = self.classes, self.score_width
        idx_shape = self.o.payload.cls.shape()
        scores = [Signal(hdl.signed(W), name=f"score{c}") for c in range(C)]
        beat = Signal(range(max(2, self.beats)))
        complete = Signal()  # `scores` holds a whole image not yet taken by the tournament
        # the tournament never stalls: an image enters only with a place reserved in the output FIFO
        m.submodules.out = out = CreditedOutput(shape=self.o.payload.shape(), depth=self.latency + RETURN_DELAY + 1)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        load = Signal()
        m.d.comb += [load.eq(complete & out.has_credit), out.take.eq(load), self.i.ready.eq(~complete)]
        beat_next, complete_next = Signal.like(beat), Signal()
        m.d.comb += [beat_next.eq(beat), complete_next.eq(complete & ~load)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(beat == self.beats - 1):
                m.d.comb += [beat_next.eq(0), complete_next.eq(1)]
            with m.Else():
                m.d.comb += beat_next.eq(beat + 1)
        m.d.sync += [beat.eq(beat_next), complete.eq(complete_next)]
        # class c takes the beat while its register is open (beat c // lanes of an image not yet complete): a
        # register per class, so the enable of each score's bits is one gate after the input's valid instead of a
        # decode fanned out to every score bit
        for c in range(C):
            is_open = Signal(name=f"open{c}", init=c // self.lanes == 0, attrs={"keep": 1})
            m.d.sync += is_open.eq(~complete_next & (beat_next == c // self.lanes))
            with m.If(self.i.valid & is_open):
                m.d.sync += scores[c].eq(self.i.payload[c % self.lanes])

        def stage(name, n):
            """Registers of one pipeline stage: valid, the whole image's scores, ``n`` candidates and indices."""
            return (
                Signal(name=f"{name}_valid"),
                [Signal(hdl.signed(W), name=f"{name}_score{c}") for c in range(C)],
                [Signal(hdl.signed(W), name=f"{name}_cand{j}") for j in range(n)],
                [Signal(idx_shape, name=f"{name}_idx{j}") for j in range(n)],
            )

        valid, held, cand, idx = stage("load", C)
        m.d.sync += [valid.eq(load)] + [h.eq(s) for h, s in zip(held, scores)]
        m.d.sync += [v.eq(s) for v, s in zip(cand, scores)] + [i.eq(c) for c, i in enumerate(idx)]
        for level in range(self.levels):
            n = len(cand)
            pairs = [(2 * j, 2 * j + 1 if 2 * j + 1 < n else None) for j in range(-(-n // 2))]
            # comparison stage: a later class wins only if strictly greater (first argmax)
            c_valid, c_held, c_a, c_ia = stage(f"cmp{level}", len(pairs))
            c_b = [Signal(hdl.signed(W), name=f"cmp{level}_other{j}") for j in range(len(pairs))]
            c_ib = [Signal(idx_shape, name=f"cmp{level}_other_idx{j}") for j in range(len(pairs))]
            win = [Signal(name=f"cmp{level}_win{j}") for j in range(len(pairs))]
            m.d.sync += [c_valid.eq(valid)] + [h.eq(s) for h, s in zip(c_held, held)]
            for j, (a, b) in enumerate(pairs):
                m.d.sync += [c_a[j].eq(cand[a]), c_ia[j].eq(idx[a])]
                if b is not None:
                    # b > a as the sign of a - b (one bit wider: a bare carry chain)
                    m.d.sync += [c_b[j].eq(cand[b]), c_ib[j].eq(idx[b]), win[j].eq((cand[a] - cand[b])[-1])]
            # selection stage
            valid, held, cand, idx = stage(f"sel{level}", len(pairs))
            m.d.sync += [valid.eq(c_valid)] + [h.eq(s) for h, s in zip(held, c_held)]
            for j, (_, b) in enumerate(pairs):
                m.d.sync += [
                    cand[j].eq(hdl.Mux(win[j], c_b[j], c_a[j]) if b is not None else c_a[j]),
                    idx[j].eq(hdl.Mux(win[j], c_ib[j], c_ia[j]) if b is not None else c_ia[j]),
                ]
        m.d.comb += [out.w_en.eq(valid), out.w_data.cls.eq(idx[0])]
        m.d.comb += [out.w_data.scores[c].eq(held[c]) for c in range(C)]
        return m
