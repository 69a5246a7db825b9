"""The matrix-vector unit's input side: a ping-pong store of two whole input vectors, read ``simd`` lanes a step."""

from types import SimpleNamespace

from amaranth import hdl
from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["InputBuffer", "beat_index", "LANES_PER_SELECT", "STORAGES"]

LANES_PER_SELECT = 4  # input lanes sharing one copy of the read select
STORAGES = ("auto", "memory", "registers")


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


def _write_copy(m, name, en, addr):
    """One RAM's own registered write enable and address, from their values in the cycle a beat is accepted (the
    beat register's cycle later they meet the registered beat). ``keep``: yosys would merge the equal copies."""
    en_r = Signal(name=f"{name}_we", attrs={"keep": 1})
    addr_r = Signal(len(addr), name=f"{name}_waddr", attrs={"keep": 1})
    m.d.sync += [en_r.eq(en), addr_r.eq(addr)]
    return en_r, addr_r


class InputBuffer(wiring.Component):
    """Banks of ``length`` values: one fills from the input stream while another is read, ``simd`` lanes per
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
    storage : ``"auto"``, ``"memory"`` or ``"registers"``
        ``"memory"`` keeps the banks in RAM (distributed RAM in practice) instead of ``banks * length * bits``
        flip-flops and SF:1 read multiplexers, in one of three layouts (:attr:`layout`), each needing two or more
        column folds: ``"beats"``, a word per beat, when every beat is whole rows of ``simd`` values (``lanes`` a
        multiple of ``simd``, ``group`` a multiple of ``lanes``: a conv layer's pixels of C channels); ``"slots"``,
        each beat written straight into its slot of a row, when a row is whole beats (``simd`` a multiple of
        ``lanes``, and ``group`` a multiple of ``lanes`` or the whole vector: an MLP layer after a layer of
        ``lanes`` PEs, or a network's first layer); else ``"rows"``,
        rows of ``simd`` values assembled from the beats in one row register, when ``lanes <= simd``. ``"auto"``
        (the default) takes memory wherever it can.

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(bits), lanes)))``
    full : ``Out(1)``; the read bank holds a whole vector.
    step, release : ``In(1)``
    sf_next : ``In(range(sf))``
    x : ``Out(ArrayLayout(unsigned(bits), simd))``
    """

    def __init__(self, *, length, bits, group, lanes, simd, row_folds=1, storage="auto"):
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
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        # memory layouts: a word per beat when a beat is whole rows of simd values; beats written into their slots
        # when a row is whole beats; else rows of simd values assembled from beats of at most simd values (a beat
        # then touches at most two rows)
        whole_beats = group % lanes == 0  # no short beats: beat k holds values k * lanes ..
        self.layout = (
            None
            if self.sf < 2
            else "beats"
            if lanes % simd == 0 and whole_beats
            else "slots"
            if simd % lanes == 0 and (whole_beats or group == length)  # at most the vector's last beat short
            else "rows"
            if lanes <= simd
            else None
        )
        if storage == "memory" and self.layout is None:
            raise ValueError(
                f"storage 'memory' needs two or more column folds and lanes ({lanes!r}) <= simd ({simd!r}), or beats "
                f"of whole rows (lanes a multiple of simd, group {group!r} a multiple of lanes); length {length!r} "
                f"gives {self.sf} column folds"
            )
        if storage == "auto":
            storage = "registers" if self.layout is None else "memory"
        self.storage = storage
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
        B = self.banks
        full = Signal(B)
        wbank = Signal(range(B))
        wbeat = Signal(range(max(2, self.beats)))
        hold = Signal()  # the memory store's second write of a vector's end: no beat is taken that cycle
        m.d.comb += self.i.ready.eq(~full.bit_select(wbank, 1) & ~hold)
        accept = self.i.valid & self.i.ready
        beat = self._register_beat(m, accept, wbank, wbeat)
        with m.If(accept):
            m.d.sync += wbeat.eq(hdl.Mux(wbeat == self.beats - 1, 0, wbeat + 1))
            with m.If(wbeat == self.beats - 1):
                m.d.sync += wbank.eq(_wrap(wbank, B))

        rbank = Signal(range(B))
        set_full = Cat(beat.valid & beat.last & (beat.bank == b) for b in range(B))
        clr_full = Cat(self.step & self.release & (rbank == b) for b in range(B))
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        m.d.comb += self.full.eq(full.bit_select(rbank, 1))
        rbank_next = Signal(range(B))
        m.d.comb += rbank_next.eq(hdl.Mux(self.step & self.release, _wrap(rbank, B), rbank))
        m.d.sync += rbank.eq(rbank_next)

        if self.storage == "memory" and self.layout == "beats":
            self._beat_store(m, beat, rbank_next)
        elif self.storage == "memory" and self.layout == "slots":
            self._slot_store(m, beat, rbank_next)
        elif self.storage == "memory":
            self._memory_store(m, beat, hold, rbank_next)
        else:
            self._register_store(m, beat, rbank_next)
        return m

    def _beat_starts(self):
        """``(position, count)`` of every beat of a vector: its first value's index and how many values it holds."""
        per_group = -(-self.group // self.lanes)
        for k in range(self.beats):
            g, b = divmod(k, per_group)
            yield g * self.group + b * self.lanes, min(self.lanes, self.group - b * self.lanes)

    def _register_beat(self, m, accept, wbank, wbeat):
        """An accepted beat, registered before it is written: the write enables fan out to the whole store, and
        the beat arrives from the previous unit, maybe from across the chip. In the memory store it carries where
        it starts (row ``fold``, lane ``offset``) and whether it is a group's short last beat."""
        beat = SimpleNamespace(
            data=Signal.like(self.i.payload, reset_less=True),
            valid=Signal(),
            last=Signal(),
            bank=Signal(range(self.banks)),
            index=Signal.like(wbeat),
            fold=Signal(range(max(2, self.sf))),
            offset=Signal(range(max(2, self.simd))),
            short=Signal(),
        )
        # the same facts in the accepting cycle, before the beat register: a store registers its own copies of
        # its write enable and address from them, next to its RAMs (one enable for every RAM was a 10 ns route)
        beat.accepting = SimpleNamespace(accept=accept, bank=wbank, index=wbeat, last=wbeat == self.beats - 1)
        m.d.sync += [
            beat.data.eq(self.i.payload),
            beat.valid.eq(accept),
            beat.bank.eq(wbank),
            beat.index.eq(wbeat),
            beat.last.eq(wbeat == self.beats - 1),
        ]
        if self.storage != "memory" or self.layout not in ("rows", "slots"):
            return beat
        fold, offset = Signal.like(beat.fold), Signal.like(beat.offset)
        m.d.sync += [beat.fold.eq(fold), beat.offset.eq(offset)]
        beat.accepting.fold, beat.accepting.offset = fold, offset
        if self.layout == "slots":  # beat k: row k // per_row, slot k % per_row (offset counts slots here)
            with m.If(accept):
                with m.If(wbeat == self.beats - 1):
                    m.d.sync += [fold.eq(0), offset.eq(0)]
                with m.Elif(offset == self.simd // self.lanes - 1):
                    m.d.sync += [fold.eq(fold + 1), offset.eq(0)]
                with m.Else():
                    m.d.sync += offset.eq(offset + 1)
            return beat
        # the next beat's start, advanced by each accepted beat's count (at most simd: one row crossing at most)
        per_group = -(-self.group // self.lanes)
        short_len = self.group - (per_group - 1) * self.lanes
        in_group = Signal(range(max(2, per_group)))
        short = (in_group == per_group - 1) if short_len != self.lanes else hdl.Const(0)
        count = hdl.Mux(short, short_len, self.lanes)
        wrapped = offset + count - self.simd
        m.d.sync += beat.short.eq(short)
        with m.If(accept):
            m.d.sync += in_group.eq(_wrap(in_group, per_group))
            with m.If(wbeat == self.beats - 1):
                m.d.sync += [fold.eq(0), offset.eq(0), in_group.eq(0)]
            with m.Elif(wrapped[-1]):  # offset + count < simd: same row
                m.d.sync += offset.eq(offset + count)
            with m.Else():
                m.d.sync += [offset.eq(wrapped), fold.eq(fold + 1)]
        return beat

    def _select_copies(self, m, rbank_next, width, fold=None):
        """One registered copy of the read select (fold, bank) per :data:`LANES_PER_SELECT` lanes: the read
        multiplexers (or RAM address pins) are wide, and one register fanned out to all of them was a critical
        path. ``keep`` stops yosys merging the copies back into one register. ``fold`` is what is registered of
        the next column fold (default: itself)."""
        for g in range(-(-self.simd // LANES_PER_SELECT)):
            sel_sf = Signal(width, name=f"sel_sf{g}", attrs={"keep": 1})
            sel_bank = Signal(range(self.banks), name=f"sel_bank{g}", attrs={"keep": 1})
            m.d.sync += [sel_sf.eq(self.sf_next if fold is None else fold), sel_bank.eq(rbank_next)]
            yield g, range(g * LANES_PER_SELECT, min(self.simd, (g + 1) * LANES_PER_SELECT)), sel_sf, sel_bank

    def _register_store(self, m, beat, rbank_next):
        """Every value in its own register, written by its beat and read through an SF x banks : 1 multiplexer."""
        n, S, SF, B = self.length, self.simd, self.sf, self.banks
        bank = [[Signal(self.bits, name=f"buf{b}_{i}") for i in range(n)] for b in range(B)]
        with m.If(beat.valid):
            for b in range(B):
                for k in range(self.beats):
                    with m.If((beat.bank == b) & (beat.index == k)):
                        for lane in range(self.lanes):
                            i = beat_index(k, lane, group=self.group, lanes=self.lanes)
                            if i is not None:
                                m.d.sync += bank[b][i].eq(beat.data[lane])
        for _, lanes, sel_sf, sel_bank in self._select_copies(m, rbank_next, len(self.sf_next)):
            for lane in lanes:
                per_bank = [
                    [bank[b][f * S + lane] if f * S + lane < n else hdl.Const(0, self.bits) for f in range(SF)]
                    for b in range(B)
                ]
                pick = [Array(c)[sel_sf] if SF > 1 else c[0] for c in per_bank]
                m.d.sync += self.x[lane].eq(Array(pick)[sel_bank] if B > 2 else hdl.Mux(sel_bank, pick[1], pick[0]))

    def _memory_store(self, m, beat, hold, rbank_next):
        """Rows of ``simd`` values in RAM at ``(bank, fold)``, one row written per cycle from a row being assembled.

        A beat puts its values into the row register at their lanes; the beat that reaches a row's end writes that
        row (its own values merged in), and the values it spills past the end stay for the next row. A vector's
        last beat writes its last row with the lanes past the vector as 0; when that beat also ends the row before,
        the last row is written the cycle after, and the input takes no beat meanwhile (``hold``).
        The RAM is one memory per select copy, read asynchronously (distributed RAM) at the registered select, so
        ``x`` has the register store's timing.
        """
        S, SF, bits = self.simd, self.sf, self.bits
        fbits = (SF - 1).bit_length()
        tail = self.length - (SF - 1) * S  # values in the last row; its other lanes read 0
        row = Signal(data.ArrayLayout(hdl.unsigned(bits), S))
        value = Signal(data.ArrayLayout(hdl.unsigned(bits), S))  # the beat's values at their lanes
        hit, now = Signal(S), Signal(S)  # lanes the beat fills; those of them in its own row
        ends_row, spills = Signal(), Signal()
        kinds = {}
        for position, count in self._beat_starts():
            kinds[(position % S, count != self.lanes)] = count
        with m.Switch(Cat(beat.offset, beat.short)):
            for (offset, short), count in kinds.items():
                with m.Case(offset | (short << len(beat.offset))):
                    for t in range(count):
                        r = (offset + t) % S
                        m.d.comb += [hit[r].eq(1), now[r].eq(offset + t < S), value[r].eq(beat.data[t])]
                    m.d.comb += [ends_row.eq(offset + count >= S), spills.eq(offset + count > S)]
        put = Signal.like(row)  # the row as the beat completes it
        for r in range(S):
            m.d.comb += put[r].eq(hdl.Mux(now[r], value[r], row[r]))
            with m.If(beat.valid & hit[r]):
                m.d.sync += row[r].eq(value[r])
        flush, flush_bank = Signal(), Signal.like(beat.bank)
        m.d.comb += hold.eq(beat.valid & beat.last & spills)
        m.d.sync += [flush.eq(hold), flush_bank.eq(beat.bank)]
        we, waddr, wrow = Signal(), Signal(fbits + len(beat.bank)), Signal.like(row)
        m.d.comb += [
            we.eq(flush | (beat.valid & (ends_row | beat.last))),
            waddr.eq(hdl.Mux(flush, Cat(hdl.Const(SF - 1, fbits), flush_bank), Cat(beat.fold[:fbits], beat.bank))),
            wrow.eq(hdl.Mux(flush, row, put)),
        ]
        last_row = flush | (beat.fold == SF - 1)
        for g, lanes, sel_sf, sel_bank in self._select_copies(m, rbank_next, fbits):
            m.submodules[f"rows{g}"] = mem = Memory(
                shape=hdl.unsigned(bits * len(lanes)), depth=self.banks << fbits, init=[]
            )
            wp, rp = mem.write_port(), mem.read_port(domain="comb")
            m.d.comb += [
                wp.en.eq(we),
                wp.addr.eq(waddr),
                wp.data.eq(Cat(hdl.Mux(last_row, 0, wrow[r]) if r >= tail else wrow[r] for r in lanes)),
                rp.addr.eq(Cat(sel_sf, sel_bank)),
            ]
            m.d.sync += [self.x[r].eq(rp.data[k * bits : (k + 1) * bits]) for k, r in enumerate(lanes)]

    def _slot_store(self, m, beat, rbank_next):
        """Rows of ``simd`` values in RAM at ``(bank, fold)`` as ``simd / lanes`` slots of one beat each: a beat is
        written straight into its slot (no row register, no lane multiplexers). One memory per select copy and
        slot; lanes past the vector are never written and read their initial 0."""
        fbits, per_row = (self.sf - 1).bit_length(), self.simd // self.lanes
        # a short last beat (the vector's end): its padding lanes are not written, and read their initial 0
        last_slot, last_count = (self.beats - 1) % per_row, self.length - (self.beats - 1) * self.lanes
        for g, lanes, sel_sf, sel_bank in self._select_copies(m, rbank_next, fbits):
            for q in range(per_row):
                own = [r for r in lanes if r // self.lanes == q]
                pad = [r for r in own if q == last_slot and r - q * self.lanes >= last_count]
                for name, mine in ((f"slot{g}_{q}", [r for r in own if r not in pad]), (f"pad{g}_{q}", pad)):
                    if mine:
                        self._slot_memory(m, name, mine, beat, q, pad=mine is pad, sel=(sel_sf, sel_bank))

    def _slot_memory(self, m, name, mine, beat, q, *, pad, sel):
        """One memory of the slot store: lanes ``mine`` of slot ``q``, written by a beat into that slot (the
        padding lanes of the last slot by every beat but the last)."""
        fbits, at = (self.sf - 1).bit_length(), beat.accepting
        m.submodules[name] = mem = Memory(shape=hdl.unsigned(self.bits * len(mine)), depth=self.banks << fbits, init=[])
        wp, rp = mem.write_port(), mem.read_port(domain="comb")
        en = at.accept & (at.offset == q)
        en, addr = _write_copy(m, name, en & ~at.last if pad else en, Cat(at.fold[:fbits], at.bank))
        m.d.comb += [
            wp.en.eq(en),
            wp.addr.eq(addr),
            wp.data.eq(Cat(beat.data[r - q * self.lanes] for r in mine)),
            rp.addr.eq(Cat(*sel)),
        ]
        bits = self.bits
        m.d.sync += [self.x[r].eq(rp.data[k * bits : (k + 1) * bits]) for k, r in enumerate(mine)]

    def _beat_store(self, m, beat, rbank_next):
        """Each beat as one RAM word at ``(bank, beat)``: a beat is ``parts = lanes / simd`` whole rows, so a step
        reads word ``fold // parts`` and takes part ``fold % parts`` of it (a parts:1 multiplexer per lane). The
        RAM is one memory per select copy, holding that copy's lanes of every part."""
        S, bits, parts = self.simd, self.bits, self.lanes // self.simd
        wbits = (self.beats - 1).bit_length()
        pbits = (parts - 1).bit_length()
        # the next fold as (word, part), registered in each copy: no division after the select registers
        part, word = Signal(pbits), Signal(wbits)
        m.d.comb += [part.eq(self.sf_next % parts), word.eq(self.sf_next // parts)]
        split = Cat(part, word)
        for g, lanes, sel, sel_bank in self._select_copies(m, rbank_next, len(split), fold=split):
            m.submodules[f"beats{g}"] = mem = Memory(
                shape=hdl.unsigned(bits * parts * len(lanes)), depth=self.banks << wbits, init=[]
            )
            wp, rp = mem.write_port(), mem.read_port(domain="comb")
            at = beat.accepting
            en, addr = _write_copy(m, f"beats{g}", at.accept, Cat(at.index[:wbits], at.bank))
            m.d.comb += [
                wp.en.eq(en),
                wp.addr.eq(addr),
                wp.data.eq(Cat(beat.data[q * S + r] for q in range(parts) for r in lanes)),
                rp.addr.eq(Cat(sel[pbits:], sel_bank)),
            ]
            word = rp.data
            for k, r in enumerate(lanes):
                values = [word[(q * len(lanes) + k) * bits : (q * len(lanes) + k + 1) * bits] for q in range(parts)]
                m.d.sync += self.x[r].eq(Array(values)[sel[:pbits]] if parts > 1 else values[0])
