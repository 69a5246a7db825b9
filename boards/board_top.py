"""The on-board demo: UART in, the generated network (``rtl/top.v``), UART out, LEDs showing the last class.

Host protocol (8N1, ``baud`` from the build): the host sends an image's ``pixels`` bytes (``top.json``); the board
answers with one frame per image: the class (1 byte), every score as ``score_bytes`` little-endian two's complement
bytes, then the network's cycles from the image's last input beat to its result (4 bytes, little-endian).
:func:`boards.host.frame_layout` is the one definition both sides use.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import AsyncFIFO
from amaranth.lib.wiring import In, Out

from .host import frame_layout
from .uart import UARTReceiver, UARTTransmitter, baud_divisor

__all__ = ["BoardTop"]

#: entries of each clock-domain crossing FIFO: the UART delivers a byte every few hundred clock cycles and the
#: network a result per image, so a few entries cover the pointer synchronisation
CDC_DEPTH = 4


class BoardTop(wiring.Component):
    """Network plus host link, free of any platform (a board wrapper connects the pins).

    Parameters
    ----------
    top : dict
        ``top.json`` of the network; the network itself is instantiated by name (``top["top"]``), its Verilog
        (``top.v``) is added to the build beside this module.
    clk_freq : float
        Frequency of the ``sync`` domain (the UART's) in Hz.
    baud : int
        UART bit rate.
    leds : int
        LEDs showing the last class (binary).
    net_clk_freq : float or None
        ``None``: the network runs in ``sync`` too. A frequency in Hz: the network runs in the ``net`` clock domain;
        the received bytes cross to ``net`` (where they become beats) and results cross back to ``sync``, through
        :mod:`amaranth.lib.fifo`'s asynchronous FIFOs; the reply's cycle count is in ``net`` cycles. This
        component uses ``net`` without creating it: a board wrapper drives it (from a PLL, with its reset held until
        the PLL locks), and converted alone to Verilog it becomes the ports ``net_clk`` and ``net_rst`` (what the
        board simulation drives). The ``net`` reset clears the crossings and keeps beats from the network; on a
        platform the network's own ``rst`` is tied low (it starts from its initial values, as on ECP5's reset-less
        ``sync``), in Verilog without one it is ``net_rst``.

    Members
    -------
    rx : ``In(1, init=1)``
    tx : ``Out(1, init=1)``
    led : ``Out(leds)``
    """

    def __init__(self, *, top, clk_freq, baud=115200, leds=8, net_clk_freq=None):
        self.top = top
        self.divisor = baud_divisor(clk_freq, baud)
        self.clk_freq, self.baud, self.leds = clk_freq, baud, leds
        if net_clk_freq is not None and (
            isinstance(net_clk_freq, bool) or not isinstance(net_clk_freq, (int, float)) or not net_clk_freq > 0
        ):
            raise ValueError(f"net_clk_freq must be None or a positive frequency in Hz, not {net_clk_freq!r}")
        self.net_clk_freq = net_clk_freq
        self.score_bytes, self.frame_bytes = frame_layout(top)
        pin = top["ports"]["in"]
        if pin["bits"] > 8:
            raise ValueError(f"network inputs are {pin['bits']} bits wide; the UART link carries bytes")
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led": Out(leds)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTReceiver(divisor=self.divisor)
        m.submodules.tx = tx = UARTTransmitter(divisor=self.divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        if self.net_clk_freq is None:
            beat, beat_valid, beat_ready, last_beat = self._beats(m, "sync", rx.o.payload, rx.o.valid, rx.o.ready)
            reset = ResetSignal("sync", allow_reset_less=True)  # reset-less on ECP5 boards: init values
            result, res_valid, res_ready = self._network(m, "sync", beat, beat_valid, beat_ready, reset=reset)
            cycles = self._cycle_counter(m, "sync", beat_valid & beat_ready & last_beat)
        else:
            beat, beat_valid, beat_ready, last_beat = self._beats(m, "net", *self._bytes_to_net(m, rx.o))
            result, res_valid, res_ready, cycles = self._network_across(
                m, platform, beat, beat_valid, beat_ready, last_beat
            )
        self._reply(m, tx, result, res_valid, res_ready, cycles)
        return m

    def _beats(self, m, domain, byte, byte_valid, byte_ready):
        """Bytes -> input beats of ``lanes`` pixels in ``domain``; an image's last beat is zero-padded.

        A beat is offered from registers and taken by clearing one flag: the network's ready (logic inside its
        first layer) reaches no data bit, and neither does the crossing's ``valid``, which enables only the byte's
        own lane. An image's last pixel is always in lane ``(pixels - 1) % lanes``: the lanes above it are masked
        by the last-beat flag on their way out. Drives ``byte_ready``; returns ``(beat, beat_valid, beat_ready,
        last_beat)``, the caller driving ``beat_ready``."""
        pin = self.top["ports"]["in"]
        lanes, bits, pixels = pin["lanes"], pin["bits"], self.top["pixels"]
        stored = Signal(lanes * bits, reset_less=True)  # every lane is written (or masked) before it is offered
        beat_valid, beat_ready = Signal(), Signal()
        lane = Signal(range(lanes))
        pix = Signal(range(pixels))
        last_beat = Signal()  # the beat being offered ends an image
        sync = m.d[domain]
        m.d.comb += byte_ready.eq(~beat_valid)
        with m.If(byte_valid & ~beat_valid):
            for k in range(lanes):
                with m.If(lane == k):
                    sync += stored[k * bits : (k + 1) * bits].eq(byte[:bits])
            with m.If(pix == pixels - 1):
                sync += [pix.eq(0), lane.eq(0), beat_valid.eq(1), last_beat.eq(1)]
            with m.Else():
                sync += [pix.eq(pix + 1), last_beat.eq(0)]
                with m.If(lane == lanes - 1):
                    sync += [lane.eq(0), beat_valid.eq(1)]
                with m.Else():
                    sync += lane.eq(lane + 1)
        with m.If(beat_valid & beat_ready):
            sync += beat_valid.eq(0)
        padded = ((pixels - 1) % lanes + 1) * bits  # the bits below hold pixels in every beat
        beat = Cat(stored[:padded], Mux(last_beat, 0, stored[padded:])) if padded < len(stored) else stored
        return beat, beat_valid, beat_ready, last_beat

    def _network(self, m, domain, beat, beat_valid, beat_ready, *, reset):
        """The network, by name (its Verilog comes from ``hw gen``), clocked by ``domain``, reset by ``reset``.

        Returns ``(result, res_valid, res_ready)``; the caller drives ``res_ready``."""
        pin, pout = self.top["ports"]["in"], self.top["ports"]["out"]
        result = Signal(pout["width"])
        res_valid, res_ready = Signal(), Signal()
        m.submodules.network = Instance(
            self.top["top"],
            i_clk=ClockSignal(domain),
            i_rst=reset,
            **{
                f"i_{pin['payload']}": beat,
                f"i_{pin['valid']}": beat_valid,
                f"o_{pin['ready']}": beat_ready,
                f"o_{pout['payload']}": result,
                f"o_{pout['valid']}": res_valid,
                f"i_{pout['ready']}": res_ready,
            },
        )
        return result, res_valid, res_ready

    def _cycle_counter(self, m, domain, restart, *, start=1, reset_less=False):
        """A 32-bit count of ``domain``'s cycles, set to ``start`` after a cycle with ``restart``."""
        cycles = Signal(32, reset_less=reset_less)
        m.d[domain] += cycles.eq(cycles + 1)
        with m.If(restart):
            m.d[domain] += cycles.eq(start)
        return cycles

    def _network_across(self, m, platform, net_beat, net_valid, net_ready, net_last):
        """The network in ``net``, fed beats made in ``net``, its results crossing to ``sync``.

        Returns ``(result, res_valid, res_ready, cycles)`` in ``sync``; the caller drives ``res_ready``."""
        # Until the PLL locks (the net reset) the network is neither offered nor takes a beat; a register carries
        # that, so the reset reaches only it, the result crossing's pointers and, in simulation, the network. On
        # an FPGA the network's flip-flops start from their initial values at configuration (as on ECP5's reset-less
        # `sync`): a reset would fan out to every one (11,532 on digits tfc PE4xSIMD16: placed at 59 MHz, and it
        # stalled nextpnr's router). Simulators start registers unknown, so there (no platform) it is reset.
        running = Signal()
        m.d.net += running.eq(~ResetSignal("net"))
        offered, taken = Signal(), Signal()
        m.d.comb += [offered.eq(net_valid & running), net_ready.eq(taken & running)]
        reset = ResetSignal("net") if platform is None else Const(0)
        net_result, net_res_valid, net_res_ready = self._network(m, "net", net_beat, offered, taken, reset=reset)
        # the count restarts from a register, not from the network's ready (logic elsewhere on the chip): one cycle
        # late, at 2, it counts the same cycles as the single-clock counter from then on (a result is never due
        # the cycle after the last beat)
        restart = Signal(reset_less=True)
        m.d.net += restart.eq(offered & taken & net_last)
        net_cycles = self._cycle_counter(m, "net", restart, start=2, reset_less=True)
        return self._results_to_sync(m, net_result, net_res_valid, net_res_ready, net_cycles)

    def _bytes_to_net(self, m, byte_stream):
        """``sync`` -> ``net``: the received bytes through an :class:`~amaranth.lib.fifo.AsyncFIFO`, one byte wide
        (a beat-wide one fanned its read address out to every bit of a beat: 152 MHz). Drives ``byte_stream``'s
        ready; returns ``(byte, valid, ready)`` in ``net``, the caller driving ``ready``."""
        m.submodules.bytes_cdc = fifo = AsyncFIFO(
            width=len(byte_stream.payload), depth=CDC_DEPTH, w_domain="sync", r_domain="net", exact_depth=True
        )
        m.d.comb += [
            fifo.w_data.eq(byte_stream.payload),
            fifo.w_en.eq(byte_stream.valid),
            byte_stream.ready.eq(fifo.w_rdy),
        ]
        return fifo.r_data, fifo.r_rdy, fifo.r_en

    def _results_to_sync(self, m, result, res_valid, res_ready, cycles):
        """``net`` -> ``sync``: each result with its cycle count through an :class:`~amaranth.lib.fifo.AsyncFIFO`.
        The network's ready is a register, ``room``: the FIFO had room in the cycle before and took no write in it.
        Only a write takes room, so the FIFO has room now; it costs a cycle after each result, one image's whole
        fold bound apart. Drives ``res_ready``; returns ``(result, valid, ready, cycles)`` in ``sync``, the caller
        driving ``ready``."""
        m.submodules.results_cdc = fifo = AsyncFIFO(
            width=len(result) + len(cycles), depth=CDC_DEPTH, w_domain="net", r_domain="sync", exact_depth=True
        )
        room = Signal()
        m.d.net += room.eq(fifo.w_rdy & ~fifo.w_en)
        m.d.comb += [fifo.w_data.eq(Cat(result, cycles)), fifo.w_en.eq(res_valid & room), res_ready.eq(room)]
        return fifo.r_data[: len(result)], fifo.r_rdy, fifo.r_en, fifo.r_data[len(result) :]

    def _reply(self, m, tx, result, res_valid, res_ready, cycles):
        """Result -> reply frame (class, scores, ``cycles``), byte by byte through the transmitter; LEDs."""
        pout = self.top["ports"]["out"]
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
