"""The matrix-vector unit's input side: a ping-pong store of two whole input vectors, read ``simd`` lanes a step."""

from amaranth import hdl
from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["InputBuffer", "beat_index", "LANES_PER_SELECT"]

LANES_PER_SELECT = 4  # input lanes sharing one copy of the read select


def beat_index(beat, lane, *, group, lanes):
    """Vector index of ``lane`` of input ``beat``, or None for a padding lane.

    A vector arrives as groups of ``group`` values (a map's pixel of ``group`` channels; a whole vector is one
    group), each group as ``ceil(group / lanes)`` beats of ``lanes`` values, the last one padded.
    """
    per_group = -(-group // lanes)
    g, b = divmod(beat, per_group)
    k = b * lanes + lane
    return g * group + k if k < group else None


def _wrap(v, n):
    return hdl.Mux(v == n - 1, 0, v + 1)


class InputBuffer(wiring.Component):
    """Banks of ``length`` registers: one fills from the input stream while another is read, ``simd`` lanes per
    step, as many times as the consumer needs (once per row fold).

    Two banks (ping-pong) keep a consumer of two or more steps per vector busy. A bank takes three cycles from its
    vector's last beat to being written again (beat register, full flag, release), so a consumer of one step per
    vector fed in one or two beats would wait a cycle in three: it gets three banks.

    The read port is synchronous and driven by the consumer's fold sequencer: every cycle it gives the column fold
    its counter will hold next (``sf_next``), and with ``step`` (a step is issued this cycle) whether that step is the
    vector's last (``release``: the bank goes back to the writer). ``x`` holds a step's lanes the cycle after it is
    issued.
    The select is kept as one register copy per :data:`LANES_PER_SELECT` lanes: the SF:1 read multiplexers are wide,
    and one select register fanned out to all of them was a critical path.

    Parameters
    ----------
    length : int
        Values per vector.
    bits : int
        Width of the unsigned values.
    group, lanes : int
        Input format (see :func:`beat_index`).
    simd : int
        Lanes per read step; ``ceil(length / simd)`` steps cover a vector, lanes beyond it read 0.
    row_folds : int
        How many times the consumer reads each vector (its steps per vector are ``ceil(length / simd) *
        row_folds``); decides the number of banks.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(bits), lanes)))``
    full : ``Out(1)``; the read bank holds a whole vector.
    step, release : ``In(1)``
    sf_next : ``In(range(sf))``
    x : ``Out(ArrayLayout(unsigned(bits), simd))``
    """

    def __init__(self, *, length, bits, group, lanes, simd, row_folds=1):
        for name, v in (
            ("length", length),
            ("bits", bits),
            ("group", group),
            ("lanes", lanes),
            ("simd", simd),
            ("row_folds", row_folds),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if length % group:
            raise ValueError(f"length {length!r} must be a whole number of groups of {group!r}")
        self.length, self.bits, self.group, self.lanes, self.simd = length, bits, group, lanes, simd
        self.sf = -(-length // simd)
        self.beats = (length // group) * -(-group // lanes)
        self.banks = 3 if self.sf * row_folds == 1 and self.beats <= 2 else 2
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(hdl.unsigned(bits), lanes))),
                "full": Out(1),
                "step": In(1),
                "release": In(1),
                "sf_next": In(range(max(2, self.sf))),
                "x": Out(data.ArrayLayout(hdl.unsigned(bits), simd)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        n, S, SF, B = self.length, self.simd, self.sf, self.banks
        bank = [[Signal(self.bits, name=f"buf{b}_{i}") for i in range(n)] for b in range(B)]
        full = Signal(B)
        wbank = Signal(range(B))
        wbeat = Signal(range(max(2, self.beats)))
        m.d.comb += self.i.ready.eq(~full.bit_select(wbank, 1))
        # an accepted beat is registered first and written into its bank the cycle after: the write enables fan
        # out to every buffer register, and the beat arrives from the previous unit, maybe from across the chip
        beat = Signal.like(self.i.payload, reset_less=True)
        beat_valid, beat_last = Signal(), Signal()
        beat_bank = Signal(range(B))
        beat_index_r = Signal.like(wbeat)
        accept = self.i.valid & self.i.ready
        m.d.sync += [
            beat.eq(self.i.payload),
            beat_valid.eq(accept),
            beat_bank.eq(wbank),
            beat_index_r.eq(wbeat),
            beat_last.eq(wbeat == self.beats - 1),
        ]
        with m.If(beat_valid):
            for b in range(B):
                for k in range(self.beats):
                    with m.If((beat_bank == b) & (beat_index_r == k)):
                        for lane in range(self.lanes):
                            i = beat_index(k, lane, group=self.group, lanes=self.lanes)
                            if i is not None:
                                m.d.sync += bank[b][i].eq(beat[lane])
        with m.If(accept):
            m.d.sync += wbeat.eq(hdl.Mux(wbeat == self.beats - 1, 0, wbeat + 1))
            with m.If(wbeat == self.beats - 1):
                m.d.sync += wbank.eq(_wrap(wbank, B))

        rbank = Signal(range(B))
        set_full = Cat(beat_valid & beat_last & (beat_bank == b) for b in range(B))
        clr_full = Cat(self.step & self.release & (rbank == b) for b in range(B))
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        m.d.comb += self.full.eq(full.bit_select(rbank, 1))
        rbank_next = Signal(range(B))
        m.d.comb += rbank_next.eq(hdl.Mux(self.step & self.release, _wrap(rbank, B), rbank))
        m.d.sync += rbank.eq(rbank_next)

        # `keep` stops yosys merging the identical select copies back into one register
        for g in range(-(-S // LANES_PER_SELECT)):
            sel_sf = Signal.like(self.sf_next, name=f"sel_sf{g}", attrs={"keep": 1})
            sel_bank = Signal(range(B), name=f"sel_bank{g}", attrs={"keep": 1})
            m.d.sync += [sel_sf.eq(self.sf_next), sel_bank.eq(rbank_next)]
            for lane in range(g * LANES_PER_SELECT, min(S, (g + 1) * LANES_PER_SELECT)):
                per_bank = [
                    [bank[b][f * S + lane] if f * S + lane < n else hdl.Const(0, self.bits) for f in range(SF)]
                    for b in range(B)
                ]
                pick = [Array(c)[sel_sf] if SF > 1 else c[0] for c in per_bank]
                m.d.sync += self.x[lane].eq(Array(pick)[sel_bank] if B > 2 else hdl.Mux(sel_bank, pick[1], pick[0]))
        return m
