"""The sign-flip adder tree as a Xilinx netlist: ``LUT6_2`` + ``CARRY4``/``CARRY8`` primitives, one LUT per sum bit.

yosys maps an adder to one LUT per bit (the propagate ``a ^ b``) beside the carry chain, but it never packs two
functions into one ``LUT6_2``: the portable tree therefore spends a second LUT per bit on each lane's sign flip. Here
the first level is instantiated directly — ``O6`` is the propagate of the two flipped operands, ``O5`` the flipped
operand the carry mux needs — so a sign flip costs nothing, and the ``+1``s of the negations ride on the carry-ins.
"""

from amaranth import hdl
from amaranth.hdl import Cat, Const, Instance, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import check_tree_args, input_bounds
from .widths import Range, unsigned_width

__all__ = ["XilinxSignFlipAdderTree", "CARRY_CELLS", "carry_add", "flip_pair_init", "xilinx_tree_depth"]

# family -> (carry primitive, bits per primitive)
CARRY_CELLS = {"xc7": ("CARRY4", 4), "xcu": ("CARRY8", 8), "xcup": ("CARRY8", 8)}


def xilinx_tree_depth(lanes):
    """Levels of :class:`XilinxSignFlipAdderTree` over ``lanes`` inputs: the flip level (pairs), ternary levels
    (groups of three) over its ``ceil(lanes / 2)`` outputs, and the root correction."""
    if lanes == 1:
        return 1
    d, nodes = 2, (lanes + 1) // 2
    while nodes > 1:
        nodes = (nodes + 2) // 3
        d += 1
    return d


def flip_pair_init(flip_a=0, flip_b=0):
    """``LUT6_2`` INIT for one bit of ``(a ^ wa ^ flip_a) + (b ^ wb ^ flip_b)`` with ``I0=a, I1=wa, I2=b, I3=wb,
    I4=0, I5=1``: ``O6`` = the propagate ``a' ^ b'``, ``O5`` = ``a'`` (the carry mux's data input)."""
    init = 0
    for idx in range(32):
        a, wa, b, wb = (idx >> 0) & 1, (idx >> 1) & 1, (idx >> 2) & 1, (idx >> 3) & 1
        fa, fb = a ^ wa ^ flip_a, b ^ wb ^ flip_b
        init |= fa << idx
        init |= (fa ^ fb) << (32 + idx)
    return init


def carry_add(m, name, family, s_bits, di_bits, cin):
    """The ``len(s_bits)`` sum bits of a ripple add on ``family``'s carry cells (:data:`CARRY_CELLS`), given each
    position's propagate ``s_bits[i]`` and carry-mux data ``di_bits[i]`` and the chain's carry-in ``cin``."""
    cell, k = CARRY_CELLS[family]
    n = len(s_bits)
    out_bits = []
    carry = cin
    for c in range((n + k - 1) // k):
        lo = c * k
        s = [s_bits[i] if i < n else Const(0, 1) for i in range(lo, lo + k)]
        di = [di_bits[i] if i < n else Const(0, 1) for i in range(lo, lo + k)]
        o = Signal(k, name=f"{name}_o{c}")
        co = Signal(k, name=f"{name}_co{c}")
        ports = dict(i_S=Cat(*s), i_DI=Cat(*di), o_O=o, o_CO=co)
        if cell == "CARRY4":
            # the first cell of a chain takes its carry-in on CYINIT, later ones on CI (the cascade)
            ports.update(i_CI=carry if c else Const(0, 1), i_CYINIT=Const(0, 1) if c else carry)
        else:
            ports.update(p_CARRY_TYPE="SINGLE_CY8", i_CI=carry, i_CI_TOP=Const(0, 1))
        m.submodules[f"{name}_c{c}"] = Instance(cell, **ports)
        out_bits += [o[i] for i in range(min(k, n - lo))]
        carry = co[k - 1]
    return Cat(*out_bits)


class XilinxSignFlipAdderTree(wiring.Component):
    """``total = sum(w[i] ? x[i] : -x[i])`` for ``x[i]`` of ``in_bits`` bits, built from Xilinx primitives.

    The tree sums the *negated* products, so every correction is a plain weight bit ``w`` (no inverters):
    ``-w*x = u + w - w*2^B`` with ``u = x ^ {B{w}}``. ``u - w*2^B`` is the ``B+1``-bit two's complement ``{w, u}``
    (its sign position costs one LUT per first-level adder, ``w_a ^ w_b``), and each ``+w`` rides on an adder's
    carry-in — a tree of ``L`` leaves has ``L - 1`` adders, so all lanes but the last. The root computes
    ``-(T + w_last)`` as ``~T + ~w_last``: one LUT per output bit. Signed inputs are flipped to offset binary first
    (MSB inversion, free inside the same LUT), which makes ``-w*x = u + w - 2^(B-1)``: an unsigned tree and a
    constant at the root.

    Parameters
    ----------
    lanes : int
        Number of products (SIMD width), at least 1.
    in_bits : int
        Width of each ``x[i]``, 1..32.
    signed : bool
        Whether ``x[i]`` is two's complement.
    pipeline : int
        Register the tree every ``pipeline`` levels (0: purely combinational); the root correction is a level.
    family : str
        ``"xc7"`` (``CARRY4``) or ``"xcu"``/``"xcup"`` (``CARRY8``).

    Members
    -------
    x, w, en, total
        As :class:`~hw.adder_tree.SignFlipAdderTree`.
    latency : int
        Clock cycles from ``x``/``w`` to ``total``.
    primitives : set of str
        Names of the instantiated primitives (for a simulation model list).
    """

    def __init__(self, *, lanes, in_bits, signed=False, pipeline=0, family="xc7"):
        check_tree_args(lanes=lanes, in_bits=in_bits, pipeline=pipeline)
        if family not in CARRY_CELLS:
            raise ValueError(f"family must be one of {sorted(CARRY_CELLS)}, not {family!r}")
        self.lanes, self.in_bits, self.is_signed, self.pipeline, self.family = (
            lanes,
            in_bits,
            bool(signed),
            pipeline,
            family,
        )
        xlo, xhi = input_bounds(in_bits, signed)
        self.range = Range(lanes * min(xlo, -xhi), lanes * max(xhi, -xlo))
        self.width = self.range.width
        self.depth = xilinx_tree_depth(lanes)
        self.latency = self.depth // pipeline if pipeline else 0
        self.primitives = {"LUT6_2", CARRY_CELLS[family][0]}
        shape = hdl.signed(in_bits) if signed else hdl.unsigned(in_bits)
        super().__init__(
            {
                "x": In(data.ArrayLayout(shape, lanes)),
                "w": In(lanes),
                "en": In(1, init=1),
                "total": Out(hdl.signed(self.width)),
            }
        )

    # -- building blocks ------------------------------------------------------------------------------------------

    def _carry_add(self, m, name, s_bits, di_bits, cin):
        """The ``len(s_bits)`` sum bits of a ripple add given each position's propagate and carry-mux data."""
        return carry_add(m, name, self.family, s_bits, di_bits, cin)

    @staticmethod
    def _extend(value, rng, n):
        value = value.as_signed() if rng.lo < 0 else value.as_unsigned()
        return [value[min(i, len(value) - 1)] if (i < len(value) or rng.lo < 0) else Const(0, 1) for i in range(n)]

    def _add(self, m, name, a, ra, b, rb, cin, lut_pair=None):
        """``a + b + cin`` (ranges ``ra``, ``rb``); ``lut_pair(i)`` may supply the ``(O6, O5)`` of low positions."""
        r = ra + rb + Range(0, 1)
        n = r.width if r.lo < 0 else unsigned_width(r.hi)
        ab, bb = self._extend(a, ra, n), self._extend(b, rb, n)
        s_bits, di_bits, shared = [], [], {}
        for i in range(n):
            pair = lut_pair(i) if lut_pair else None
            if pair is not None:
                s_bits.append(pair[0])
                di_bits.append(pair[1])
                continue
            key = (repr(ab[i]), repr(bb[i]))
            if key not in shared:  # sign-extension positions share one propagate
                p = Signal(name=f"{name}_p{i}")
                m.d.comb += p.eq(ab[i] ^ bb[i])
                shared[key] = p
            s_bits.append(shared[key])
            di_bits.append(ab[i])
        out = Signal(hdl.signed(n) if r.lo < 0 else hdl.unsigned(n), name=name)
        m.d.comb += out.eq(self._carry_add(m, name, s_bits, di_bits, cin))
        return out, r

    def _ternary(self, m, name, group, cins):
        """``sum(group) + sum(cins)``: two or three nodes ``(value, range)`` on one ternary adder (:mod:`.ternary`)."""
        from .ternary import ternary_add  # ternary builds on this module's carry_add

        r = Range(0, len(cins))
        for _, rng in group:
            r = r + rng
        n = r.width if r.lo < 0 else unsigned_width(r.hi)
        terms = [(v, rng.lo < 0, 1) for v, rng in group]
        out = Signal(hdl.signed(n) if r.lo < 0 else hdl.unsigned(n), name=name)
        m.d.comb += out.eq(ternary_add(m, name, self.family, terms, n, carry_ins=cins))
        return out, r

    def _flip_lut(self, m, name, i, xa, wa, xb, wb):
        """One ``LUT6_2``: ``O6 = u_a ^ u_b``, ``O5 = u_a`` with ``u = x ^ w`` (and the MSB flip for signed x)."""
        flip = int(self.is_signed and i == self.in_bits - 1)
        o6, o5 = Signal(name=f"{name}_p{i}"), Signal(name=f"{name}_g{i}")
        m.submodules[f"{name}_lut{i}"] = Instance(
            "LUT6_2",
            p_INIT=Const(flip_pair_init(flip, flip), 64),
            i_I0=xa[i],
            i_I1=wa,
            i_I2=xb[i],
            i_I3=wb,
            i_I4=Const(0, 1),
            i_I5=Const(1, 1),
            o_O6=o6,
            o_O5=o5,
        )
        return o6, o5

    # -- the tree -------------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        B, L = self.in_bits, self.lanes
        xs = [hdl.Value.cast(self.x[i]).as_unsigned() for i in range(L)]
        w = [self.w[i] for i in range(L)]
        msb = (1 << (B - 1)) if self.is_signed else 0
        # leaf value: {w, u} (two's complement) for unsigned x, u alone for signed x
        leaf_range = Range(0, (1 << B) - 1) if self.is_signed else Range(-(1 << B), (1 << B) - 1)

        def leaf(i):
            u = Signal(B, name=f"u{i}")
            m.d.comb += u.eq(xs[i] ^ w[i].replicate(B) ^ msb)
            if self.is_signed:
                return u
            v = Signal(hdl.signed(B + 1), name=f"leaf{i}")
            m.d.comb += v.eq(Cat(u, w[i]))
            return v

        pending = [(w[i], i) for i in range(L)]  # the +w corrections no carry-in has taken yet
        level = 0
        if L == 1:
            nodes = [(leaf(0), leaf_range)]
        else:
            level = 1
            nodes = []
            for j in range(0, L - 1, 2):
                name = f"add1_{j // 2}"
                cin, _ = pending.pop(0)
                luts = {}

                def lut_pair(i, j=j, name=name, luts=luts):
                    if i >= B:
                        return None
                    return self._flip_lut(m, name, i, xs[j], w[j], xs[j + 1], w[j + 1])

                # the flipped operands exist only inside the LUTs; outside them only the sign bit is seen
                a = Cat(Const(0, B), w[j]).as_signed() if not self.is_signed else Const(0, B)
                b = Cat(Const(0, B), w[j + 1]).as_signed() if not self.is_signed else Const(0, B)
                nodes.append(self._add(m, name, a, leaf_range, b, leaf_range, cin, lut_pair))
            if L % 2:
                nodes.append((leaf(L - 1), leaf_range))
            nodes, pending = self._stage(m, level, nodes, pending)
            while len(nodes) > 1:
                level += 1
                nxt = []
                for j in range(0, len(nodes), 3):
                    group = nodes[j : j + 3]
                    if len(group) == 1:
                        nxt.append(group[0])
                        continue
                    # two +w corrections per adder (chain carry-in and k_0); the root keeps the last one
                    cins = [pending.pop(0)[0] for _ in range(min(2, len(pending) - 1))]
                    nxt.append(self._ternary(m, f"add{level}_{j // 3}", group, cins))
                nodes, pending = self._stage(m, level, nxt, pending)
        assert len(pending) == 1
        (tree, tree_range), (w_last, _) = nodes[0], pending[0]

        # root: sum w*x = K - (T + w_last) = (~T + K) + ~w_last, K = L * 2^(B-1) for signed x, 0 otherwise
        level += 1
        W = self.width
        k = (L * msb) % (1 << W)
        t = self._extend(tree, tree_range, W)
        s_bits = []
        for i in range(W):
            s = Signal(name=f"root_p{i}")
            m.d.comb += s.eq(~t[i] if not (k >> i) & 1 else t[i])  # ~t ^ K
            s_bits.append(s)
        n_last = Signal(name="root_cin")
        m.d.comb += n_last.eq(~w_last)
        total = Signal(hdl.signed(W), name="corrected")
        m.d.comb += total.eq(self._carry_add(m, "root", s_bits, [Const((k >> i) & 1, 1) for i in range(W)], n_last))
        ((out, _),) = self._stage(m, level, [(total, None)], [])[0]
        m.d.comb += self.total.eq(out)
        return m

    def _registered(self, level):
        return bool(self.pipeline) and level % self.pipeline == 0

    def _stage(self, m, level, nodes, pending):
        """Register the nodes and the pending correction bits after ``level`` when the pipeline says so."""
        if not self._registered(level):
            return nodes, pending
        reg_nodes, reg_pending = [], []
        for i, (v, rng) in enumerate(nodes):
            r = Signal(v.shape(), name=f"r{level}_{i}")
            with m.If(self.en):
                m.d.sync += r.eq(v)
            reg_nodes.append((r, rng))
        for v, lane in pending:
            r = Signal(name=f"r{level}_w{lane}")
            with m.If(self.en):
                m.d.sync += r.eq(v)
            reg_pending.append((r, lane))
        return reg_nodes, reg_pending
