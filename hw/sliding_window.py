"""A line buffer that turns a feature-map stream into K x K patches: the sliding window in front of a conv layer."""

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .credit_fifo import RETURN_DELAY, CreditedOutput

__all__ = ["SlidingWindow", "map_signature"]


def map_signature(*, bits, lanes):
    """The stream between conv-net units: ``lanes`` unsigned ``bits``-bit values per beat.

    A map of C channels streams pixel by pixel in raster order, each pixel ``ceil(C / lanes)`` beats; beat ``g``
    holds channels ``g * lanes ...`` and lanes beyond C in the last beat are padding (ignored by a reader,
    zero from a writer). Images follow each other with no marker: units count beats.
    """
    return stream.Signature(data.ArrayLayout(unsigned(bits), lanes))


def _integer(name, value, low, high=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low or high is not None and value > high:
        bound = f"at least {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


def _wrap_inc(counter, modulus):
    """``counter + 1`` modulo ``modulus`` (a compare, never a divider)."""
    return Mux(counter == modulus - 1, 0, counter + 1)


class SlidingWindow(wiring.Component):
    """Every ``kernel x kernel`` patch of a feature map, from a line buffer of a few rows.

    The input map streams in :func:`map_signature` format, ``in_lanes`` channels per beat. Each pixel's beats are
    assembled into one word of all C channels and written to a circular buffer of :attr:`rows` map rows, one
    ``Memory`` word per pixel (yosys picks block RAM or LUT RAM by size). For output pixel ``(oy, ox)`` in raster
    order the reader emits ``kernel ** 2`` beats in ``(ky, kx)`` order, ``kx`` fastest: beat ``(ky, kx)`` holds
    the C channels of input pixel ``(oy * stride - padding + ky, ox * stride - padding + kx)``, or zeros where that
    lies outside the map. Concatenated, one output pixel's beats are its patch flattened ``(ky, kx, c)``, exactly
    :func:`export.conv.patches`.

    Flow control counts whole rows: the reader starts an output row once every map row it touches is written, and a
    row's place is given back as soon as no later window of the image needs it (all of an image's remaining rows
    after its last window). Rows a stride skips are written and given back unread. The
    reader never stalls: it issues a read only with a credit of its :class:`~hw.credit_fifo.CreditedOutput`.

    Throughput: one output beat per cycle while the rows are there and ``o`` is ready, one input beat per cycle
    while there is room, the writer working ahead on the next rows and on the next image's first rows; no bubble
    between output rows. Images back to back without gaps or stalls take
    ``max(in_beats_per_image, out_beats_per_image + (kernel - padding) * width * ceil(channels / in_lanes))``
    cycles at most (measured on random shapes; ``tests/test_hw_window.py`` checks it), and within a few cycles of
    ``max(in_beats_per_image, out_beats_per_image)`` for a stride-1 "same" convolution (padding ``(K - 1) / 2``).
    The extra term: when the output side is the slower one, the buffer still holds the previous image's last window
    while the next image's first rows arrive, so the reader may wait for some of them (row writes of ``width *
    ceil(channels / in_lanes)`` cycles) once per image; e.g. 3x3 unpadded at stride 1 loses two row writes.

    Parameters
    ----------
    channels, height, width : int
        The input map: C channels, H rows, W columns.
    kernel : int
        Window size K.
    stride : int
        Step S between windows (may exceed ``kernel``).
    padding : int
        Zero rows and columns P on every side, ``0 <= P < K``.
    bits : int
        Width of a value.
    in_lanes : int
        Values per input beat.

    Members
    -------
    i : ``In(map_signature(bits=bits, lanes=in_lanes))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(bits), channels)))``; one ``(ky, kx)`` beat of a patch.
    out_height, out_width : int
        ``(H + 2P - K) // S + 1`` and likewise.
    beats_per_pixel : int
        ``ceil(C / in_lanes)``.
    in_beats_per_image, out_beats_per_image : int
        ``H * W * beats_per_pixel`` and ``out_height * out_width * K * K``.
    rows : int
        Map rows in the line buffer (``K + max(S, K - P)``).
    latency : int
        Cycles from a read being issued to its beat on ``o``.
    """

    def __init__(self, *, channels, height, width, kernel, stride=1, padding=0, bits, in_lanes):
        for name, value in (
            ("channels", channels),
            ("height", height),
            ("width", width),
            ("kernel", kernel),
            ("stride", stride),
            ("bits", bits),
            ("in_lanes", in_lanes),
        ):
            _integer(name, value, 1)
        _integer("padding", padding, 0, kernel - 1)
        for name, size in (("height", height), ("width", width)):
            if kernel > size + 2 * padding:
                raise ValueError(f"kernel {kernel!r} does not fit a {name} of {size!r} padded by {padding!r}")
        self.channels, self.height, self.width = channels, height, width
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.bits, self.in_lanes = bits, in_lanes
        self.out_height = (height + 2 * padding - kernel) // stride + 1
        self.out_width = (width + 2 * padding - kernel) // stride + 1
        self.beats_per_pixel = -(-channels // in_lanes)
        self.in_beats_per_image = height * width * self.beats_per_pixel
        self.out_beats_per_image = self.out_height * self.out_width * kernel * kernel
        # K rows hold the window being read; S more take the rows of the next window while it is read, so within an
        # image the writer never waits for the reader (nor the reader for the writer) unless one side is slower
        # overall. At an image's end the next window is the next image's first, K - P rows: with fewer places the
        # writer stalls upstream during the last output row and the reader then starves for those rows, once per
        # image (measured on Fashion fcnv: 1.2x the fold bound with K + S rows, when the layers are balanced).
        self.rows = kernel + max(stride, kernel - padding)
        self.latency = 3  # read issued, memory read, FIFO write; CreditedOutput's registered fetch
        self._fifo_depth = self.latency + RETURN_DELAY + 1  # every read in flight until its credit returns
        super().__init__(
            {
                "i": In(map_signature(bits=bits, lanes=in_lanes)),
                "o": Out(stream.Signature(data.ArrayLayout(unsigned(bits), channels))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        word = data.ArrayLayout(unsigned(self.bits), self.channels)
        m.submodules.buffer = buffer = Memory(shape=word, depth=self.rows * self.width, init=[])
        m.submodules.out = out = CreditedOutput(shape=word, depth=self._fifo_depth)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        complete = Signal(range(self.rows + 1))  # rows written and not given back, oldest first
        row_done = self._writer(m, buffer.write_port(), complete)
        release = self._reader(m, buffer.read_port(), out, complete)
        m.d.sync += complete.eq(complete + row_done - release)
        return m

    def _writer(self, m, port, complete):
        """Assemble each pixel's beats into a word and write it at the next place of the circular buffer; returns
        the one-bit "a row was completed" signal."""
        G, L, W = self.beats_per_pixel, self.in_lanes, self.width
        beat = Signal(range(G))
        col = Signal(range(W))
        addr = Signal(range(self.rows * W))
        early = Signal(data.ArrayLayout(unsigned(self.bits), (G - 1) * L))  # a pixel's beats before its last
        # a new row needs a free place; a row once begun always finishes
        m.d.comb += self.i.ready.eq((beat != 0) | (col != 0) | (complete < self.rows))
        accept = self.i.valid & self.i.ready
        last_beat = accept & (beat == G - 1)
        for c in range(self.channels):
            g, lane = divmod(c, L)
            m.d.comb += port.data[c].eq(early[c] if g < G - 1 else self.i.payload[lane])
        m.d.comb += [port.addr.eq(addr), port.en.eq(last_beat)]
        with m.If(accept):
            m.d.sync += beat.eq(_wrap_inc(beat, G))
            for g in range(G - 1):
                with m.If(beat == g):
                    m.d.sync += [early[g * L + lane].eq(self.i.payload[lane]) for lane in range(L)]
        with m.If(last_beat):
            m.d.sync += [col.eq(_wrap_inc(col, W)), addr.eq(_wrap_inc(addr, self.rows * W))]
        return last_beat & (col == W - 1)

    def _row_tables(self):
        """Per output row: map rows inside its window (``need``), rows given back at its end (``advance``: to the
        next row's window, or past the image's last row), and that move in buffer rows (``advance_slots``)."""
        H, K, S, P, R = self.height, self.kernel, self.stride, self.padding, self.rows
        lo_last = max(0, (self.out_height - 1) * S - P)
        need, advance, advance_slots = [], [], []
        for oy in range(self.out_height):
            top = oy * S - P
            lo, hi = max(top, 0), min(top + K - 1, H - 1)
            last = oy == self.out_height - 1
            need.append(hi - lo + 1)
            advance.append(H - lo_last if last else max(top + S, 0) - lo)
            # within an image at most S < R rows; an image's end may pass more, reduced modulo R
            advance_slots.append((H - lo_last) % R if last else advance[-1])
        return need, advance, advance_slots

    def _reader(self, m, port, out, complete):
        """Walk ``(oy, ox, ky, kx)``, issuing one read per credit; returns how many rows are given back now."""
        H, W, K, S, P, R = self.height, self.width, self.kernel, self.stride, self.padding, self.rows
        kx, ky = Signal(range(K)), Signal(range(K))
        ox, oy = Signal(range(self.out_width)), Signal(range(self.out_height))
        left = Signal(range(-P - 1, W + S), init=-P)  # ox * S - P, kept by adding S
        top = Signal(range(-P - 1, H + S), init=-P)  # oy * S - P
        ix, iy = left + kx, top + ky
        win_slot = Signal(range(R))  # buffer row holding the window's first map row
        slot = Signal(range(R))  # buffer row holding map row iy (once iy >= 0)
        behind = Signal(range(H + S + 1))  # rows before the window's first, not yet given back

        # per output row oy, constants: the window's rows inside the map, and the rows it moves past at the row's end
        # (registered from tables, so no adder chain runs from `top` into the issue decision and `behind`)
        need, advance, advance_slots = self._row_tables()
        cur_need = Signal(range(K + 1), init=need[0])
        cur_advance = Signal(range(H + S + 1), init=advance[0])
        cur_advance_slots = Signal(range(R), init=advance_slots[0])
        end_kx = kx == K - 1
        end_ky = end_kx & (ky == K - 1)
        end_ox = end_ky & (ox == self.out_width - 1)
        end_oy = end_ox & (oy == self.out_height - 1)
        moved = Signal(range(2 * R))
        m.d.comb += moved.eq(win_slot + cur_advance_slots)
        next_win_slot = Mux(moved >= R, moved - R, moved)

        # a row of output starts once all of its rows are written; it then holds them to its end
        first = (kx == 0) & (ky == 0) & (ox == 0)
        issue = out.has_credit & (~first | (complete >= behind + cur_need))
        # rows behind the window go back once written (a row a stride skips may not be yet), oldest first
        release = Signal.like(behind)
        m.d.comb += [out.take.eq(issue), release.eq(Mux(complete < behind, complete, behind))]
        m.d.sync += behind.eq(behind - release + Mux(issue & end_ox, cur_advance, 0))
        with m.If(issue):
            m.d.sync += kx.eq(_wrap_inc(kx, K))
            with m.If(end_kx):
                m.d.sync += ky.eq(_wrap_inc(ky, K))
                with m.If(iy >= 0):
                    m.d.sync += slot.eq(_wrap_inc(slot, R))
            with m.If(end_ky):
                m.d.sync += [
                    ox.eq(_wrap_inc(ox, self.out_width)),
                    left.eq(Mux(end_ox, -P, left + S)),
                    slot.eq(Mux(end_ox, next_win_slot, win_slot)),
                ]
            with m.If(end_ox):
                m.d.sync += [
                    oy.eq(_wrap_inc(oy, self.out_height)),
                    top.eq(Mux(end_oy, -P, top + S)),
                    win_slot.eq(next_win_slot),
                ]
                # the next output row's constants (row 0 after the last)
                for reg, table in ((cur_need, need), (cur_advance, advance), (cur_advance_slots, advance_slots)):
                    m.d.sync += reg.eq(Array(table[1:] + table[:1])[oy])

        # the read: slot base + column (a table of R constants, no multiplier); zeros outside the map
        bases = Array(s * W for s in range(R))
        m.d.comb += port.addr.eq(bases[slot] + ix[: len(port.addr)])
        pad = Signal()
        issued = Signal()
        m.d.sync += [pad.eq((iy < 0) | (iy >= H) | (ix < 0) | (ix >= W)), issued.eq(issue)]
        m.d.comb += [out.w_data.eq(Mux(pad, 0, port.data)), out.w_en.eq(issued)]
        return release
