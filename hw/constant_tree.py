"""A processing element with hard-wired weights: each MAC is a fixed add or subtract, no weight memory."""

from amaranth import hdl
from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import check_tree_args, tree_depth
from .widths import Range, unsigned_width

__all__ = ["ConstantWeightTree"]


class ConstantWeightTree(wiring.Component):
    """``total = sum(x[i] for w[i] = +1) - sum(x[i] for w[i] = -1)`` with the weights fixed at elaboration.

    The lanes of each sign are summed by their own balanced unsigned tree and the two sums meet in one subtractor, so
    no lane is inverted or muxed: a fully parallel layer (``PE = out``, ``SIMD = in``) needs neither a weight memory
    nor any per-weight logic. Both trees are padded to ``tree_depth(lanes)`` levels so the latency only depends on
    ``lanes`` and ``pipeline``, like the other trees.

    Parameters
    ----------
    weights : sequence of {0, 1}
        Bit ``i`` is 1 for weight ``+1``, 0 for ``-1``.
    in_bits : int
        Width of each (unsigned) ``x[i]``.
    pipeline : int
        Register every ``pipeline`` levels (0: combinational); the subtractor is the last level.

    Members
    -------
    x : ``In(ArrayLayout(unsigned(in_bits), lanes))``
    en : ``In(1, init=1)``
    total : ``Out(signed(width))``
    latency : int
    """

    def __init__(self, *, weights, in_bits, pipeline=0):
        self.weights = [int(b) & 1 for b in weights]
        if not self.weights:
            raise ValueError("weights must not be empty")
        check_tree_args(lanes=len(self.weights), in_bits=in_bits, pipeline=pipeline)
        self.lanes, self.in_bits, self.pipeline = len(self.weights), in_bits, pipeline
        xhi = (1 << in_bits) - 1
        plus = sum(self.weights)
        self.range = Range(-(self.lanes - plus) * xhi, plus * xhi)
        # as wide as the other trees' worst case, so PEs of any weights are interchangeable
        self.width = Range(-self.lanes * xhi, self.lanes * xhi).width
        self.depth = tree_depth(self.lanes) + 1
        self.latency = self.depth // pipeline if pipeline else 0
        super().__init__(
            {
                "x": In(data.ArrayLayout(hdl.unsigned(in_bits), self.lanes)),
                "en": In(1, init=1),
                "total": Out(hdl.signed(self.width)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        xhi = (1 << self.in_bits) - 1
        groups = {
            sign: [(hdl.Value.cast(self.x[i]), xhi) for i, b in enumerate(self.weights) if b == sign] for sign in (1, 0)
        }
        for level in range(1, self.depth):
            registered = bool(self.pipeline) and level % self.pipeline == 0
            for sign, nodes in groups.items():
                nxt = []
                for j in range(0, len(nodes), 2):
                    if j + 1 < len(nodes):
                        (a, ha), (b, hb) = nodes[j], nodes[j + 1]
                        # keep: one carry chain per node (see SignFlipAdderTree)
                        s = Signal(
                            unsigned_width(ha + hb), name=f"{'p' if sign else 'n'}{level}_{j // 2}", attrs={"keep": 1}
                        )
                        value, hi = a + b, ha + hb
                    else:
                        (value, hi), s = (
                            nodes[j],
                            Signal(len(nodes[j][0]), name=f"{'p' if sign else 'n'}{level}_{j // 2}"),
                        )
                    if registered:
                        with m.If(self.en):
                            m.d.sync += s.eq(value)
                    else:
                        m.d.comb += s.eq(value)
                    nxt.append((s, hi))
                groups[sign] = nxt
        pos = groups[1][0][0] if groups[1] else hdl.Const(0, 1)
        neg = groups[0][0][0] if groups[0] else hdl.Const(0, 1)
        diff = Signal(hdl.signed(self.width), name="difference")
        if bool(self.pipeline) and self.depth % self.pipeline == 0:
            with m.If(self.en):
                m.d.sync += diff.eq(pos - neg)
        else:
            m.d.comb += diff.eq(pos - neg)
        m.d.comb += self.total.eq(diff)
        return m
