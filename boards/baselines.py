"""Comparison processing elements for the reports: what a PE costs when it is *not* a sign-flip adder tree."""

__all__ = ["baseline_pe_verilog"]


def baseline_pe_verilog(kind, lanes, bits):
    """Comparison PEs built like ours (one kept adder per tree node): ``naive`` negates and muxes per lane
    (``w ? x : -x``), ``multiplier`` multiplies by 8-bit signed weights (what a non-binary network needs)."""
    from amaranth import hdl
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    wbits = 1 if kind == "naive" else 8

    class Baseline(wiring.Component):
        def __init__(self):
            super().__init__({"x": In(lanes * bits), "w": In(lanes * wbits), "total": Out(hdl.signed(32))})

        def elaborate(self, platform):
            m = Module()
            terms = []
            for i in range(lanes):
                x = self.x[i * bits : (i + 1) * bits].as_unsigned()
                if kind == "naive":
                    t = hdl.Mux(self.w[i], x, -x)
                else:
                    t = x * self.w[i * 8 : (i + 1) * 8].as_signed()
                s = Signal(hdl.signed(bits + wbits + 1), name=f"t{i}", attrs={"keep": 1})
                m.d.comb += s.eq(t)
                terms.append(s)
            level = 0
            while len(terms) > 1:
                level += 1
                nxt = []
                for j in range(0, len(terms) - 1, 2):
                    s = Signal(hdl.signed(len(terms[j]) + 1), name=f"a{level}_{j}", attrs={"keep": 1})
                    m.d.comb += s.eq(terms[j] + terms[j + 1])
                    nxt.append(s)
                if len(terms) % 2:
                    nxt.append(terms[-1])
                terms = nxt
            m.d.comb += self.total.eq(terms[0])
            return m

    return verilog.convert(Baseline(), name="pe", emit_src=False)
