"""The sign-flip adder tree: one processing element's ``sum(w[i] * x[i])`` for ``w[i]`` in {-1, +1}."""

from amaranth import hdl
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .widths import Range

__all__ = ["SignFlipAdderTree", "tree_depth", "check_tree_args", "input_bounds"]


def tree_depth(leaves):
    """Adder levels of a balanced binary tree over ``leaves`` inputs."""
    d = 0
    while leaves > 1:
        leaves = (leaves + 1) // 2
        d += 1
    return d


def check_tree_args(*, lanes, in_bits, pipeline):
    """The argument checks every adder tree shares (``ValueError`` naming the parameter)."""
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    if not isinstance(in_bits, int) or not 1 <= in_bits <= 32:
        raise ValueError(f"in_bits must be an integer in 1..32, not {in_bits!r}")
    if not isinstance(pipeline, int) or pipeline < 0:
        raise ValueError(f"pipeline must be a non-negative integer, not {pipeline!r}")


def input_bounds(in_bits, signed):
    """``(lo, hi)`` of one ``in_bits`` input; a tree's worst case is ``lanes * (min(lo, -hi), max(hi, -lo))``."""
    return (-(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1) if signed else (0, (1 << in_bits) - 1)


class SignFlipAdderTree(wiring.Component):
    """Balanced adder tree computing ``total = sum(w[i] ? x[i] : -x[i])`` with no multiplier and no per-lane negate.

    ``-x = ~x + 1`` in two's complement, so lane ``i`` contributes ``x[i] ^ {n{~w[i]}}`` — an XOR that synthesis
    folds into the LUT of the first adder level — and all the ``+1`` corrections, ``popcount(~w)``, are counted by a
    second tree beside the first (same levels, same registers) and added at one more level, the root. Every node is as
    wide as the worst case of its inputs needs.

    Parameters
    ----------
    lanes : int
        Number of products (SIMD width), at least 1.
    in_bits : int
        Width of each ``x[i]``, 1..32.
    signed : bool
        Whether ``x[i]`` is two's complement (default unsigned).
    pipeline : int
        Register the tree every ``pipeline`` adder levels (0: purely combinational).

    Members
    -------
    x : ``In(ArrayLayout(unsigned(in_bits), lanes))`` (``signed`` if ``signed``)
        The inputs.
    w : ``In(lanes)``
        Bit ``i`` is 1 for weight ``+1``, 0 for ``-1``.
    en : ``In(1, init=1)``
        Clock enable of the pipeline registers (a stalled consumer freezes the tree).
    total : ``Out(signed(width))``
        The dot product; ``width`` holds the worst case.
    latency : int
        Clock cycles from ``x``/``w`` to ``total``.
    """

    def __init__(self, *, lanes, in_bits, signed=False, pipeline=0):
        check_tree_args(lanes=lanes, in_bits=in_bits, pipeline=pipeline)
        self.lanes, self.in_bits, self.is_signed, self.pipeline = lanes, in_bits, bool(signed), pipeline
        xlo, xhi = input_bounds(in_bits, signed)
        # signed: x ^ -1 = -x - 1 stays in range; unsigned: x zero-extended by one bit, then flipped
        self._leaf = Range(xlo, xhi) if signed else Range(-(1 << in_bits), xhi)
        self.range = Range(lanes * min(xlo, -xhi), lanes * max(xhi, -xlo))
        self.width = self.range.width
        # the products' tree and the negation count's tree side by side, then one root adder joining them
        self.depth = tree_depth(lanes) + 1
        self.latency = self.depth // pipeline if pipeline else 0
        shape = hdl.signed(in_bits) if signed else hdl.unsigned(in_bits)
        super().__init__(
            {
                "x": In(data.ArrayLayout(shape, lanes)),
                "w": In(lanes),
                "en": In(1, init=1),
                "total": Out(hdl.signed(self.width)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lw = self._leaf.width
        nodes = []
        for i in range(self.lanes):
            x = Value.cast(self.x[i])
            xe = x.as_signed() if self.is_signed else Cat(x, 0).as_signed()
            leaf = Signal(hdl.signed(lw), name=f"leaf{i}")
            # w ? x : ~x is x XOR {n{~w}}: one LUT input per bit, the same logic as an explicit XOR
            m.d.comb += leaf.eq(hdl.Mux(self.w[i], xe, ~xe))
            nodes.append((leaf, self._leaf))
        # the +1 of each negation, counted by a tree of its own in step with the products' tree (registered at the
        # same levels): a flat popcount of the weights was the network's critical path on ECP5
        negs = [((~self.w[i]).as_unsigned(), Range(0, 1)) for i in range(self.lanes)]
        for level in range(1, self.depth + 1):
            if level == self.depth:  # the root: products plus negation count
                nodes, negs = nodes + negs, []
            updates = []
            nodes = _add_pairs(nodes, updates, f"add{level}_")
            negs = _add_pairs(negs, updates, f"neg{level}_")
            if self.pipeline and level % self.pipeline == 0:
                with m.If(self.en):
                    m.d.sync += updates
            else:
                m.d.comb += updates
        m.d.comb += self.total.eq(nodes[0][0])
        return m


def _add_pairs(nodes, updates, prefix):
    """One adder level over ``nodes`` (``(value, Range)`` pairs): adjacent pairs summed, an odd last node passed on.
    The assignments go to ``updates`` (registered or not by the caller); returns the next level's nodes."""
    nxt = []
    for j in range(0, len(nodes) - 1, 2):
        (a, ra), (b, rb) = nodes[j], nodes[j + 1]
        r = ra + rb
        # keep: stops yosys alumacc merging the tree into one $macc (mapped to LUT full adders, not carry chains)
        s = Signal(hdl.signed(r.width), name=f"{prefix}{j // 2}", attrs={"keep": 1})
        updates.append(s.eq(a + b))
        nxt.append((s, r))
    if len(nodes) % 2:
        a, ra = nodes[-1]
        s = Signal(hdl.signed(ra.width), name=f"{prefix}pass")
        updates.append(s.eq(a))
        nxt.append((s, ra))
    return nxt
