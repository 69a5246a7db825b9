"""A sliding window that emits a whole K x K x C patch per beat: the window in front of a conv layer with few channels.

:class:`~hw.sliding_window.SlidingWindow` emits one pixel of a patch per beat, K² beats per output pixel — cheap for
wide maps, but for a first layer of one to three channels those K² beats are the whole pipeline's bottleneck. This
unit holds the K x K window itself in registers, fed one column per cycle from K-1 row delay lines, and emits every
output pixel's patch in one beat: a layer's cycles per image drop to its padded map's size.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .sliding_window import map_signature

__all__ = ["PatchWindow"]


class PatchWindow(wiring.Component):
    """Every ``kernel x kernel`` patch of a feature map, one whole patch per output beat.

    The unit walks the zero-padded map, ``(H + 2P) x (W + 2P)`` positions in raster order, one position per cycle:
    a position inside the map takes the next input pixel (its ``ceil(C / in_lanes)`` beats assembled first), a padding
    position a zero pixel. The position's column — the pixel and those above it, read from K-1 row delay lines of
    ``W + 2P`` words (LUT RAM) — shifts into a K x K register window; where the window is a stride step from the
    map's corner, its contents leave as one beat, flattened ``(ky, kx, c)`` (c fastest): exactly one row of
    :func:`export.conv.patches`. A stalled output holds the walk (the unit is small: its registers are one patch).

    Parameters
    ----------
    channels, height, width, kernel, stride, padding, bits, in_lanes : int
        As for :class:`~hw.sliding_window.SlidingWindow`.

    Members
    -------
    i : ``In(map_signature(bits=bits, lanes=in_lanes))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(bits), kernel * kernel * channels)))``; one patch per beat.
    out_height, out_width, beats_per_pixel, in_beats_per_image : int
    out_beats_per_image : int
        ``out_height * out_width``.
    cycles_per_image : int
        ``max((H + 2P) * (W + 2P), in_beats_per_image)``: images back to back, no gaps or stalls.
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
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(padding, int) or not 0 <= padding < kernel:
            raise ValueError(f"padding must be an integer in 0..{kernel - 1}, not {padding!r}")
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
        self.out_beats_per_image = self.out_height * self.out_width
        self.cycles_per_image = max((height + 2 * padding) * (width + 2 * padding), self.in_beats_per_image)
        self.latency = 1
        super().__init__(
            {
                "i": In(map_signature(bits=bits, lanes=in_lanes)),
                "o": Out(stream.Signature(data.ArrayLayout(unsigned(bits), kernel * kernel * channels))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        C, K, S, P = self.channels, self.kernel, self.stride, self.padding
        Hp, Wp = self.height + 2 * P, self.width + 2 * P
        pixel_shape = data.ArrayLayout(unsigned(self.bits), C)

        # the walk over the padded map, and where the window stands in its stride
        y, x = Signal(range(Hp)), Signal(range(Wp))
        ys, xs = Signal(range(S)), Signal(range(S))  # (y - K + 1) mod S and (x - K + 1) mod S, once >= 0
        real = (y >= P) & (y < P + self.height) & (x >= P) & (x < P + self.width)
        emits = (y >= K - 1) & (x >= K - 1) & (ys == 0) & (xs == 0)

        pixel, have, assembling = self._assemble(m, pixel_shape)
        step = Signal()  # the walk moves on: the position's pixel is here (or padding) and the output is free
        m.d.comb += step.eq((~real | have) & (~self.o.valid | self.o.ready))
        m.d.comb += self.i.ready.eq(assembling | (step & real))
        value = Signal(pixel_shape)
        m.d.comb += value.eq(Mux(real, pixel, 0))

        # the column at x: this position's value above the K-1 rows before it, from the delay lines
        column = [value]
        for j in range(K - 1):
            m.submodules[f"line{j}"] = line = Memory(shape=pixel_shape, depth=max(2, Wp), init=[])
            rd, wr = line.read_port(domain="comb"), line.write_port()
            m.d.comb += [rd.addr.eq(x), wr.addr.eq(x), wr.data.eq(column[-1]), wr.en.eq(step)]
            column.append(rd.data)
        # window[ky][kx]: ky = 0 is the oldest row (column[K-1]), kx = K-1 the newest column
        window = [[Signal(pixel_shape, name=f"win{ky}_{kx}") for kx in range(K)] for ky in range(K)]
        shifted = [[window[ky][kx + 1] if kx < K - 1 else column[K - 1 - ky] for kx in range(K)] for ky in range(K)]
        with m.If(step):
            m.d.sync += [window[ky][kx].eq(shifted[ky][kx]) for ky in range(K) for kx in range(K)]
            self._advance(m, y, x, ys, xs, Hp, Wp)
        with m.If(step & emits):
            m.d.sync += self.o.valid.eq(1)
            for ky in range(K):
                for kx in range(K):
                    for c in range(C):
                        m.d.sync += self.o.payload[(ky * K + kx) * C + c].eq(shifted[ky][kx][c])
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _assemble(self, m, pixel_shape):
        """The next input pixel from its beats: ``(pixel, have, assembling)``; the pixel is whole when its last beat
        is offered (``have``), which is taken only as the walk consumes it; earlier beats are taken while
        ``assembling``. A single-beat pixel comes straight from the input."""
        G, L, C = self.beats_per_pixel, self.in_lanes, self.channels
        if G == 1:
            pixel = Signal(pixel_shape)
            m.d.comb += [pixel[c].eq(self.i.payload[c]) for c in range(C)]
            return pixel, self.i.valid, 0
        parts = Signal(data.ArrayLayout(unsigned(self.bits), (G - 1) * L))  # every beat of a pixel but its last
        beat = Signal(range(G))
        assembling = Signal()
        m.d.comb += assembling.eq(beat != G - 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += beat.eq(Mux(beat == G - 1, 0, beat + 1))
            for g in range(G - 1):
                with m.If(beat == g):
                    m.d.sync += [parts[g * L + k].eq(self.i.payload[k]) for k in range(L)]
        pixel = Signal(pixel_shape)
        for c in range(C):
            g, k = divmod(c, L)
            m.d.comb += pixel[c].eq(parts[c] if g < G - 1 else self.i.payload[k])
        return pixel, self.i.valid & ~assembling, assembling

    def _advance(self, m, y, x, ys, xs, Hp, Wp):
        """Move the walk one position (raster order over the padded map, stride phases beside it)."""
        K, S = self.kernel, self.stride
        last_x, last_y = x == Wp - 1, y == Hp - 1
        m.d.sync += x.eq(Mux(last_x, 0, x + 1))
        # the stride phases count from the first window position (K - 1) of each row and column
        m.d.sync += xs.eq(Mux(last_x | (x < K - 1), 0, Mux(xs == S - 1, 0, xs + 1)))
        with m.If(last_x):
            m.d.sync += y.eq(Mux(last_y, 0, y + 1))
            m.d.sync += ys.eq(Mux(last_y | (y < K - 1), 0, Mux(ys == S - 1, 0, ys + 1)))
