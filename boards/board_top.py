"""The on-board demo: UART in, the generated network (``rtl/top.v``), UART out, LEDs showing the last class.

Host protocol (8N1, ``baud`` from the build): the host sends an image's ``pixels`` bytes (``top.json``); the board
answers with one frame per image: the class (1 byte), every score as ``score_bytes`` little-endian two's complement
bytes, then the network's cycles from the image's last input beat to its result (4 bytes, little-endian).
:func:`boards.host.frame_layout` is the one definition both sides use.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .host import frame_layout
from .uart import UARTReceiver, UARTTransmitter, baud_divisor

__all__ = ["BoardTop"]


class BoardTop(wiring.Component):
    """Network plus host link, free of any platform (a board wrapper connects the pins).

    Parameters
    ----------
    top : dict
        ``top.json`` of the network; the network itself is instantiated by name (``top["top"]``), its Verilog
        (``top.v``) is added to the build beside this module.
    clk_freq : float
        Clock frequency in Hz.
    baud : int
        UART bit rate.
    leds : int
        LEDs showing the last class (binary).

    Members
    -------
    rx : ``In(1, init=1)``
    tx : ``Out(1, init=1)``
    led : ``Out(leds)``
    """

    def __init__(self, *, top, clk_freq, baud=115200, leds=8):
        self.top = top
        self.divisor = baud_divisor(clk_freq, baud)
        self.clk_freq, self.baud, self.leds = clk_freq, baud, leds
        self.score_bytes, self.frame_bytes = frame_layout(top)
        pin = top["ports"]["in"]
        if pin["bits"] > 8:
            raise ValueError(f"network inputs are {pin['bits']} bits wide; the UART link carries bytes")
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led": Out(leds)})

    def elaborate(self, platform):
        m = Module()
        t = self.top
        pin, pout = t["ports"]["in"], t["ports"]["out"]
        lanes, bits, pixels = pin["lanes"], pin["bits"], t["pixels"]
        m.submodules.rx = rx = UARTReceiver(divisor=self.divisor)
        m.submodules.tx = tx = UARTTransmitter(divisor=self.divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]

        # bytes -> input beats of `lanes` pixels; an image's last beat is zero-padded
        beat = Signal(lanes * bits)
        beat_valid, beat_ready = Signal(), Signal()
        lane = Signal(range(lanes))
        pix = Signal(range(pixels))
        last_beat = Signal()  # the beat being offered ends an image
        m.d.comb += rx.o.ready.eq(~beat_valid)
        with m.If(rx.o.valid & ~beat_valid):
            for k in range(lanes):
                with m.If(lane == k):
                    m.d.sync += beat[k * bits : (k + 1) * bits].eq(rx.o.payload[:bits])
            end_of_image = pix == pixels - 1
            with m.If(end_of_image):
                m.d.sync += [pix.eq(0), lane.eq(0), beat_valid.eq(1), last_beat.eq(1)]
            with m.Else():
                m.d.sync += [pix.eq(pix + 1), last_beat.eq(0)]
                with m.If(lane == lanes - 1):
                    m.d.sync += [lane.eq(0), beat_valid.eq(1)]
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)
        with m.If(beat_valid & beat_ready):
            m.d.sync += [beat_valid.eq(0), beat.eq(0)]

        # the network, by name (its Verilog comes from hw gen)
        result = Signal(pout["width"])
        res_valid, res_ready = Signal(), Signal()
        m.submodules.network = Instance(
            t["top"],
            i_clk=ClockSignal(),
            i_rst=ResetSignal(allow_reset_less=True),  # reset-less on boards: init values
            **{
                f"i_{pin['payload']}": beat,
                f"i_{pin['valid']}": beat_valid,
                f"o_{pin['ready']}": beat_ready,
                f"o_{pout['payload']}": result,
                f"o_{pout['valid']}": res_valid,
                f"i_{pout['ready']}": res_ready,
            },
        )

        # cycles from an image's last beat entering the network to its result
        cycles = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(beat_valid & beat_ready & last_beat):
            m.d.sync += cycles.eq(1)

        # result -> reply frame, byte by byte
        cls_f, sc = pout["class"], pout["scores"]
        sb = self.score_bytes
        fields = [result[cls_f["offset"] : cls_f["offset"] + cls_f["bits"]].as_unsigned()]
        fields[0] = Cat(fields[0], Const(0, 8 - cls_f["bits"])) if cls_f["bits"] < 8 else fields[0][:8]
        for j in range(sc["count"]):
            s = result[sc["offset"] + j * sc["bits"] : sc["offset"] + (j + 1) * sc["bits"]].as_signed()
            ext = Signal(8 * sb, name=f"score{j}")
            m.d.comb += ext.eq(s)  # sign-extends to whole bytes
            fields.append(ext)
        frame = Signal(8 * self.frame_bytes)
        sending = Signal()
        byte_idx = Signal(range(self.frame_bytes))
        last_class = Signal(self.leds)
        m.d.comb += [
            res_ready.eq(~sending),
            tx.i.payload.eq(frame.word_select(byte_idx, 8)),
            tx.i.valid.eq(sending),
            self.led.eq(last_class),
        ]
        with m.If(res_valid & res_ready):
            m.d.sync += [frame.eq(Cat(*fields, cycles)), sending.eq(1), byte_idx.eq(0), last_class.eq(fields[0])]
        with m.If(tx.i.valid & tx.i.ready):
            with m.If(byte_idx == self.frame_bytes - 1):
                m.d.sync += sending.eq(0)
            with m.Else():
                m.d.sync += byte_idx.eq(byte_idx + 1)
        return m
