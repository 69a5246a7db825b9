"""AXI4-Stream wrapper: the network as a drop-in IP with ``aclk``/``aresetn`` and ``s_axis``/``m_axis`` ports.

Framing. The network counts its input beats itself (``beats_per_image``); ``s_axis_tlast`` is the source's word on
where an image ends, and the wrapper makes the two agree so that a wrong ``tlast`` costs one image, never the
alignment of every image after it, and never wedges the core:

* ``tlast`` on the image's last beat (beat ``beats_per_image - 1`` counted from the previous boundary): normal.
* ``tlast`` early (on beat ``k`` < ``beats_per_image - 1``): the beat is taken, then the wrapper holds
  ``s_axis_tready`` low and feeds the network ``beats_per_image - 1 - k`` zero beats to complete the image. The next
  beat on ``s_axis`` starts a new image.
* no ``tlast`` on the image's last beat: the beat completes the image in the network; the wrapper then takes and
  drops every further beat up to and including the next one with ``tlast``. The beat after that starts a new image.

Either way the stream produces exactly one result word per ``tlast``-framed image (plus one for a trailing image
still waiting for its ``tlast``), in order; the result of a malformed image leaves with ``m_axis_tuser = 1`` (its
scores are those of the zero-padded or truncated image) and the sticky ``frame_error`` output goes high until
``aresetn``. Well-formed images are unaffected and bit-exact.

Reset: ``aresetn`` is active low and synchronous, sampled on ``aclk``'s rising edge (AXI: hold it low for at least 16
cycles if the other side needs that; the wrapper and network need one). ``m_axis_tlast`` is high on every result
word (one word per image). tdata widths are the network's port widths rounded up to whole bytes, zero-extended.
"""

from amaranth import hdl
from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

__all__ = ["AxisWrapper", "axis_description", "byte_width", "flag_depth_for", "TLAST_POLICY"]

TLAST_POLICY = (
    "The wrapper counts beats_per_image beats per image. An early s_axis_tlast ends the image: the "
    "network gets zero beats for the rest of it (s_axis_tready low meanwhile). A missing tlast on the "
    "image's last beat: the further beats are dropped up to and including the next tlast. Either way "
    "that image's result word has m_axis_tuser=1 and frame_error goes high (sticky until aresetn); the "
    "images after it are aligned again and exact."
)


def byte_width(bits):
    """``bits`` rounded up to whole bytes (AXI4-Stream tdata is a whole number of bytes)."""
    return 8 * max(1, -(-bits // 8))


class AxisWrapper(wiring.Component):
    """A network core (``i``/``o`` :mod:`amaranth.lib.stream` ports, clocked by ``sync``) behind AXI4-Stream ports.

    Parameters
    ----------
    core : wiring.Component
        With ``i: In(stream.Signature(...))`` and ``o: Out(stream.Signature(...))``, e.g.
        :class:`hw.network.NetworkTop`.
    beats_per_image : int
        Input beats the core takes per image.
    flag_depth : int
        Images whose last beat has entered the core and whose result has not left yet, tracked for ``m_axis_tuser``.
        Fewer than the core holds only slows the input while results wait (:func:`flag_depth_for`); any depth is
        correct.

    Members
    -------
    aclk, aresetn : ``In(1)``; the clock, and the active-low synchronous reset.
    s_axis_tdata : ``In(byte_width(core input bits))``; lane k at bits [k*bits, (k+1)*bits), bits above unused.
    s_axis_tvalid, s_axis_tlast : ``In(1)``; s_axis_tready : ``Out(1)``.
    m_axis_tdata : ``Out(byte_width(result bits))``; the core's result (class at bit 0, then the scores), zero-extended.
    m_axis_tvalid, m_axis_tlast, m_axis_tuser : ``Out(1)``; m_axis_tready : ``In(1)``.
    frame_error : ``Out(1)``; sticky: some image's tlast was not on its last beat.
    """

    def __init__(self, core, *, beats_per_image, flag_depth=4):
        if not isinstance(beats_per_image, int) or beats_per_image < 1:
            raise ValueError(f"beats_per_image must be a positive integer, not {beats_per_image!r}")
        if not isinstance(flag_depth, int) or flag_depth < 1:
            raise ValueError(f"flag_depth must be a positive integer, not {flag_depth!r}")
        self.core, self.beats_per_image, self.flag_depth = core, beats_per_image, flag_depth
        self.in_bits = hdl.Shape.cast(core.i.payload.shape()).width
        self.out_bits = hdl.Shape.cast(core.o.payload.shape()).width
        super().__init__(
            {
                "aclk": In(1),
                "aresetn": In(1),
                "s_axis_tdata": In(byte_width(self.in_bits)),
                "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1),
                "s_axis_tlast": In(1),
                "m_axis_tdata": Out(byte_width(self.out_bits)),
                "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1),
                "m_axis_tlast": Out(1),
                "m_axis_tuser": Out(1),
                "frame_error": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        # the core's `sync` domain is aclk itself, reset by ~aresetn (synchronous, as Amaranth resets are)
        m.domains.sync = cd = ClockDomain("sync", local=True)
        cd.clk = self.aclk
        m.d.comb += cd.rst.eq(~self.aresetn)
        m.submodules.network = core = self.core
        m.submodules.tuser_fifo = flags = SyncFIFO(width=1, depth=self.flag_depth)

        n = self.beats_per_image
        beat = Signal(range(max(2, n)))  # beat of the current image, counted into the core
        last = Signal()
        m.d.comb += last.eq(beat == n - 1)
        padding = Signal()  # completing an early-ended image with zero beats
        dropping = Signal()  # discarding beats up to the tlast of an overlong image
        taken = Signal()  # the core takes a beat
        # the image's last beat enters only with a place for its flag (a result never leaves without one)
        gate = ~last | flags.w_rdy
        m.d.comb += [
            hdl.Value.cast(core.i.payload).eq(hdl.Mux(padding, 0, self.s_axis_tdata[: self.in_bits])),
            core.i.valid.eq(~dropping & (padding | self.s_axis_tvalid) & gate),
            self.s_axis_tready.eq(dropping | (~padding & core.i.ready & gate)),
            taken.eq(core.i.valid & core.i.ready),
        ]
        accepted = self.s_axis_tvalid & self.s_axis_tready
        with m.If(taken):
            m.d.sync += beat.eq(hdl.Mux(last, 0, beat + 1))
        with m.If(dropping):
            with m.If(accepted & self.s_axis_tlast):
                m.d.sync += dropping.eq(0)
        with m.Elif(padding):
            with m.If(taken & last):
                m.d.sync += padding.eq(0)
        with m.Elif(taken):
            with m.If(last):
                with m.If(~self.s_axis_tlast):
                    m.d.sync += [dropping.eq(1), self.frame_error.eq(1)]
            with m.Elif(self.s_axis_tlast):
                m.d.sync += [padding.eq(1), self.frame_error.eq(1)]
        # one flag per image, written as its last beat enters the core
        m.d.comb += [flags.w_en.eq(taken & last), flags.w_data.eq(padding | ~self.s_axis_tlast)]

        m.d.comb += [
            self.m_axis_tdata.eq(hdl.Value.cast(core.o.payload)),
            self.m_axis_tvalid.eq(core.o.valid),
            core.o.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(1),
            self.m_axis_tuser.eq(flags.r_data),
            flags.r_en.eq(core.o.valid & self.m_axis_tready),
        ]
        return m


def flag_depth_for(latency_cycles, fold_bound_cycles):
    """Images a network holds past their last input beat in steady state, plus slack: the tuser FIFO's depth."""
    return -(-latency_cycles // max(1, fold_bound_cycles)) + 2


def axis_description(desc, wrapper):
    """``top.json`` for the wrapped network: ``desc`` (the network's) with the AXI4-Stream ports in ``ports``, the
    network's own ports under ``core``, and ``"interface": "axis"``."""
    core_ports = desc["ports"]
    pin, pout = core_ports["in"], core_ports["out"]
    tin, tout = wrapper.s_axis_tdata.shape().width, wrapper.m_axis_tdata.shape().width
    bits, lanes = pin["bits"], pin["lanes"]
    sc, cl = pout["scores"], pout["class"]
    d = dict(desc)
    d.update(
        {
            "interface": "axis",
            "clock": "aclk",
            "reset": "aresetn",
            "reset_active": "low",
            "reset_kind": "synchronous",
            "ports": {
                "in": {
                    "payload": "s_axis_tdata",
                    "valid": "s_axis_tvalid",
                    "ready": "s_axis_tready",
                    "last": "s_axis_tlast",
                    "width": tin,
                    "bytes": tin // 8,
                    "data_bits": pin["width"],
                    **{k: pin[k] for k in ("lanes", "bits", "group", "lane_order", "value_order")},
                    "byte_layout": (
                        f"lane k (a {bits}-bit value) at bits [{bits}*k, {bits}*k+{bits}) of tdata"
                        + (", i.e. byte k is lane k" if bits == 8 else "")
                        + (
                            f"; {lanes} lanes use bits [0, {pin['width']}), bits [{pin['width']}, {tin})"
                            f" are ignored (send zeros)"
                            if tin > pin["width"]
                            else ""
                        )
                    ),
                    "tlast": "high on the image's last beat (beat beats_per_image-1)",
                },
                "out": {
                    "payload": "m_axis_tdata",
                    "valid": "m_axis_tvalid",
                    "ready": "m_axis_tready",
                    "last": "m_axis_tlast",
                    "user": "m_axis_tuser",
                    "width": tout,
                    "bytes": tout // 8,
                    "data_bits": pout["width"],
                    "class": cl,
                    "scores": sc,
                    "byte_layout": (
                        f"bits [{cl['offset']}, {cl['offset'] + cl['bits']}) the class (unsigned); "
                        f"score j (signed, two's complement) at bits [{sc['offset']}+{sc['bits']}*j, "
                        f"{sc['offset']}+{sc['bits']}*(j+1)) for j in 0..{sc['count'] - 1}; "
                        + (f"bits [{pout['width']}, {tout}) zero; " if tout > pout["width"] else "")
                        + "byte b of tdata is bits [8b, 8b+8)"
                    ),
                    "tlast": "high on every result word (one word per image)",
                    "tuser": "1: the image's s_axis_tlast was not on its last beat (see tlast_policy)",
                },
                "error": {
                    "name": "frame_error",
                    "width": 1,
                    "sticky": True,
                    "meaning": "some image's s_axis_tlast was not on its last beat; cleared by aresetn",
                },
            },
            "core": {"clock": desc["clock"], "reset": desc["reset"], "reset_active": "high", "ports": core_ports},
            "axis": {
                "s_axis": {"tdata_bits": tin, "tdata_bytes": tin // 8, "tlast": True},
                "m_axis": {"tdata_bits": tout, "tdata_bytes": tout // 8, "tlast": True, "tuser_bits": 1},
                "clock": "aclk",
                "reset": "aresetn",
                "reset_polarity": "ACTIVE_LOW",
                "tuser_fifo_depth": wrapper.flag_depth,
            },
            "tlast_policy": TLAST_POLICY,
        }
    )
    return d
