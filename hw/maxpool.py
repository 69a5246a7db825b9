"""Max-pooling of a feature-map stream, K x K windows at stride K, one row of partial maxima kept."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .credit_fifo import RETURN_DELAY, CreditedOutput
from .sliding_window import map_signature

__all__ = ["MaxPool"]


def _integer(name, value, low):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value!r}")


def _wrap_inc(counter, modulus):
    """``counter + 1`` modulo ``modulus`` (a compare, never a divider)."""
    return Mux(counter == modulus - 1, 0, counter + 1)


class MaxPool(wiring.Component):
    """The unsigned maximum of every ``kernel x kernel`` window at stride ``kernel``, streaming.

    Input and output are maps in :func:`~hw.sliding_window.map_signature` format with the same ``lanes``: lane
    ``l`` of beat ``g`` of output pixel ``(py, px)`` is the maximum of input channel ``g * lanes + l`` over rows
    ``py * K ...`` and columns ``px * K ...``; padding lanes come out zero. Rows and columns past the last whole
    window are consumed and dropped (floor, as :func:`export.conv.maxpool` and PyTorch's ``MaxPool2d``).

    The partial maxima of one output row, ``out_width * ceil(channels / lanes)`` words of ``lanes`` values, live in
    a ``Memory`` with an asynchronous read port: each input beat reads its word, takes the maximum and writes it
    back in the same cycle (LUT RAM; a synchronous block RAM would need the read a beat early, which input gaps
    make awkward, and the row is small: ``width / K`` pixels). The beat that closes a window goes to the output
    FIFO instead; it is accepted only with one of the FIFO's credits, so the unit never stalls internally and
    takes one input beat per cycle whatever the output does, until the FIFO is full.

    Parameters
    ----------
    channels, height, width : int
        The input map.
    kernel : int
        Window size and stride K (``K <= height``, ``K <= width``).
    bits : int
        Width of a value.
    lanes : int
        Values per beat, in and out.

    Members
    -------
    i : ``In(map_signature(bits=bits, lanes=lanes))``
    o : ``Out(map_signature(bits=bits, lanes=lanes))``
    out_height, out_width : int
        ``height // kernel``, ``width // kernel``.
    beats_per_pixel : int
        ``ceil(channels / lanes)``.
    in_beats_per_image, out_beats_per_image : int
    latency : int
        Cycles from the beat that closes a window being accepted to its result on ``o``.
    """

    latency = 3  # result register, FIFO write, CreditedOutput's registered fetch

    def __init__(self, *, channels, height, width, kernel, bits, lanes):
        for name, value in (
            ("channels", channels),
            ("height", height),
            ("width", width),
            ("kernel", kernel),
            ("bits", bits),
            ("lanes", lanes),
        ):
            _integer(name, value, 1)
        for name, size in (("height", height), ("width", width)):
            if kernel > size:
                raise ValueError(f"kernel {kernel!r} exceeds the {name} {size!r}: the pooled map would be empty")
        self.channels, self.height, self.width, self.kernel = channels, height, width, kernel
        self.bits, self.lanes = bits, lanes
        self.out_height, self.out_width = height // kernel, width // kernel
        self.beats_per_pixel = -(-channels // lanes)
        self.in_beats_per_image = height * width * self.beats_per_pixel
        self.out_beats_per_image = self.out_height * self.out_width * self.beats_per_pixel
        # results in flight from their credit being taken to it coming back: one window per cycle when K = 1
        self._fifo_depth = self.latency + RETURN_DELAY + 1
        super().__init__(
            {
                "i": In(map_signature(bits=bits, lanes=lanes)),
                "o": Out(map_signature(bits=bits, lanes=lanes)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        G, K, L, W, H = self.beats_per_pixel, self.kernel, self.lanes, self.width, self.height
        Wo = self.out_width
        beat_shape = data.ArrayLayout(unsigned(self.bits), L)
        m.submodules.partial = partial = Memory(shape=beat_shape, depth=Wo * G, init=[])
        read, write = partial.read_port(domain="comb"), partial.write_port()
        m.submodules.out = out = CreditedOutput(shape=beat_shape, depth=self._fifo_depth)
        wiring.connect(m, out.o, wiring.flipped(self.o))

        g, x, y = Signal(range(G)), Signal(range(W)), Signal(range(H))
        kx, ky = Signal(range(K)), Signal(range(K))
        addr = Signal(range(Wo * G + G))  # (x // K) * G + g, kept by counting
        base = Signal(range(Wo * G + G))  # the address of the window's beat 0
        kept = (x < Wo * K) & (y < self.out_height * K)
        first = (kx == 0) & (ky == 0)
        closes = kept & (kx == K - 1) & (ky == K - 1)
        m.d.comb += self.i.ready.eq(~closes | out.has_credit)
        accept = self.i.valid & self.i.ready

        # the beat, padding lanes zeroed, against the partial maximum of its window
        real_last = self.channels - (G - 1) * L  # real lanes in a pixel's last beat
        best = Signal(beat_shape)
        for lane in range(L):
            value = self.i.payload[lane] if lane < real_last else Mux(g == G - 1, 0, self.i.payload[lane])
            m.d.comb += best[lane].eq(Mux(first | (value > read.data[lane]), value, read.data[lane]))
        m.d.comb += [
            read.addr.eq(addr),
            write.addr.eq(addr),
            write.data.eq(best),
            write.en.eq(accept & kept & ~closes),
            out.take.eq(accept & closes),
        ]
        result = Signal(beat_shape)
        result_valid = Signal()
        m.d.sync += [result.eq(best), result_valid.eq(accept & closes)]
        m.d.comb += [out.w_data.eq(result), out.w_en.eq(result_valid)]

        end_pixel = g == G - 1
        end_row = end_pixel & (x == W - 1)
        with m.If(accept):
            m.d.sync += [g.eq(_wrap_inc(g, G)), addr.eq(addr + 1)]
            with m.If(end_pixel):
                m.d.sync += [x.eq(_wrap_inc(x, W)), kx.eq(Mux((x == W - 1) | (kx == K - 1), 0, kx + 1))]
                with m.If(kx == K - 1):
                    m.d.sync += base.eq(addr + 1)  # the next window's beats
                with m.Else():
                    m.d.sync += addr.eq(base)  # the next pixel of the same window
            with m.If(end_row):
                m.d.sync += [
                    y.eq(_wrap_inc(y, H)),
                    ky.eq(Mux((y == H - 1) | (ky == K - 1), 0, ky + 1)),
                    addr.eq(0),
                    base.eq(0),
                ]
        return m
