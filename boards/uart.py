"""8N1 UART receiver and transmitter with ``lib.stream`` byte interfaces (for the board top's host link)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "baud_divisor"]


def baud_divisor(clk_freq, baud):
    """Clock cycles per bit, rounded; rejects rates the clock cannot resolve to within 2 %."""
    if not baud > 0 or not clk_freq > 0:
        raise ValueError(f"clock and baud rate must be positive, not {clk_freq!r} and {baud!r}")
    div = round(clk_freq / baud)
    if div < 4 or abs(clk_freq / div - baud) / baud > 0.02:
        raise ValueError(
            f"baud rate {baud!r} cannot be made from a {clk_freq!r} Hz clock within 2 % ({div} cycles per bit)"
        )
    return div


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer >= 4, not {divisor!r}")


class UARTReceiver(wiring.Component):
    """8N1 receiver: samples each bit in its middle (``divisor`` clock cycles per bit, input double-registered).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : ``In(1, init=1)``
        The serial line (idle high).
    o : ``Out(stream.Signature(8))``
        Received bytes. A byte that arrives while the previous one is still unaccepted is dropped and counted.
    overflow : ``Out(1)``
        Pulses when a byte is dropped.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)), "overflow": Out(1)})

    def elaborate(self, platform):
        m = Module()
        sync1, line = Signal(init=1), Signal(init=1)  # two flops against metastability
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bits = Signal(8)
        count = Signal(range(9))
        m.d.sync += self.overflow.eq(0)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [timer.eq(self.divisor // 2 - 1)]
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), count.eq(0)]
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [bits.eq((bits >> 1) | (line << 7)), count.eq(count + 1), timer.eq(self.divisor - 1)]
                    with m.If(count == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):  # a framing error (low stop bit) drops the byte
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overflow.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(bits), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send; one is taken whenever the line is free.
    tx : ``Out(1, init=1)``
        The serial line.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=0x3FF)  # stop bit, 8 data bits, start bit; shifted out LSB first
        left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shift[0]), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [shift.eq((self.i.payload << 1) | (1 << 9)), left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shift.eq((shift >> 1) | (1 << 9)), left.eq(left - 1), timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
