"""A three-operand adder ``±a ± b ± c`` on one Xilinx carry chain: ``LUT6_2`` + ``CARRY4``/``CARRY8``, one LUT per bit.

A 6-input LUT beside a carry chain can add three numbers for the price of two (the "ternary adder" Vivado infers
for ``a + b + c``): bit ``i`` of the sum is split carry-save into ``t_i = a_i ^ b_i ^ c_i`` and the carry
``k_{i+1} = maj(a_i, b_i, c_i)``, and the chain adds ``T + K``. Each bit is one ``LUT6_2`` with ``I5`` tied high
and inputs ``a_i, b_i, c_i, k_i``:

- ``O5 = maj(a_i, b_i, c_i)`` — the carry-save carry ``k_{i+1}``, routed to the next bit's LUT;
- ``O6 = a_i ^ b_i ^ c_i ^ k_i`` — the propagate ``S_i`` of the carry chain, whose data input ``DI_i`` takes
  ``k_i`` (through the slice's bypass input: UG474 sources DI from ``O5`` or from ``AX..DX``): where the
  propagate is 0, ``t_i == k_i`` and the carry out is that bit.

Subtraction is by inversion: ``-x = ~x + 1``, and the ``+1``s ride on the chain's carry-in (one) and on ``k_0``
(a second), so ``a + b - c`` and ``a - b - c`` cost nothing extra (three negative operands are refused). Operands
may be signed or unsigned and of any widths: each is sign- or zero-extended (or cut) to the result's ``n`` bits
and the sum is taken modulo ``2**n``, which is exact when the true result fits ``n`` bits. Every bit function is
simplified symbolically first: constant positions (zero extension, inverted zero extension) fold into the LUT's
INIT, a position that reduces to one plain bit needs no LUT (it drives the chain directly, as yosys maps a
binary adder's zero-extended positions), and the sign-extension positions above every operand share one LUT.
"""

from amaranth import hdl
from amaranth.hdl import Const, Instance, Signal

from .xilinx_tree import CARRY_CELLS, carry_add

__all__ = ["ternary_add", "ternary_luts", "TernaryLayout"]


def _lit(width, signed, sign, j, i):
    """Operand ``j``'s bit ``i`` after extension and inversion: ``("c", v)`` or ``("v", (j, bit), inv)``."""
    inv = int(sign < 0)
    if i < width:
        return ("v", (j, i), inv)
    if signed:
        return ("v", (j, width - 1), inv)
    return ("c", inv)


def _xor(lits):
    """XOR of literals: ``("c", v)``, ``("v", var, inv)`` or ``("f", vars, inv)`` (vars: sorted tuple, ≥ 2)."""
    par, vs = 0, set()
    for lit in lits:
        if lit[0] == "c":
            par ^= lit[1]
        else:
            par ^= lit[2]
            vs ^= {lit[1]}
    if not vs:
        return ("c", par)
    if len(vs) == 1:
        return ("v", next(iter(vs)), par)
    return ("f", tuple(sorted(vs, key=repr)), par)


def _maj(lits):
    """Majority of three literals, simplified: a constant, one literal, or the variable ``("k", key)`` (made by a
    LUT's ``O5``)."""
    consts = [lit[1] for lit in lits if lit[0] == "c"]
    vs = [lit for lit in lits if lit[0] != "c"]
    if len(consts) >= 2:
        if len(consts) == 3 or consts[0] == consts[1]:
            return ("c", int(sum(consts) >= 2)) if len(consts) == 3 else ("c", consts[0])
        return vs[0]
    for x in range(len(vs)):
        for y in range(x + 1, len(vs)):
            if vs[x][1] == vs[y][1]:
                if vs[x][2] == vs[y][2]:  # maj(x, x, z) = x
                    return vs[x]
                rest = [lit for k, lit in enumerate(lits) if lit is not vs[x] and lit is not vs[y]]
                return rest[0]  # maj(x, ~x, z) = z
    return ("v", ("k", tuple(sorted(lits, key=repr))), 0)


def _is_maj(lit):
    return lit[0] == "v" and lit[1][0] == "k"


def _eval(lit, env):
    return lit[1] if lit[0] == "c" else env[lit[1]] ^ lit[2]


class TernaryLayout:
    """The bit-level plan of ``sum(sign_j * x_j)`` over ``n`` bits for operands ``(width, signed, sign)``: which
    ``LUT6_2`` each position needs (deduplicated), what drives each chain position's ``S`` and ``DI``, and the
    carry-in. Shared by :func:`ternary_add` (which builds it) and :func:`ternary_luts` (which counts it)."""

    def __init__(self, operands, n, carry_ins=0):
        if not 1 <= len(operands) <= 3:
            raise ValueError(f"a ternary adder takes 1 to 3 operands, not {len(operands)}")
        neg = sum(1 for _, _, s in operands if s < 0)
        if neg > 2:
            raise ValueError("at most two operands may be subtracted (the chain has two +1 inputs)")
        if neg + carry_ins > 2:
            raise ValueError(f"{neg} subtractions and {carry_ins} carry-in bits exceed the chain's two +1 inputs")
        self.n = n
        # the two +1 inputs (chain carry-in, k_0): the subtractions' constants first, then the carry-in bits,
        # which are variables ``(len(operands) + t, 0)``
        ones = [("c", 1)] * neg + [("v", (len(operands) + t, 0), 0) for t in range(carry_ins)]
        ones += [("c", 0)] * (2 - len(ones))
        self.cin = ones[0][1] if ones[0][0] == "c" else 0
        self.cin_var = ones[0][1] if ones[0][0] == "v" else None
        self.luts = []  # (input vars, INIT)
        self.inverters = []  # vars whose complement drives a DI
        self.s, self.di = [], []  # per position: ("c", v) | ("v", var) | ("o6", lut) | ("not", var)
        self.maj_lut = {}  # maj key -> the LUT whose O5 makes it
        index = {}
        k = ones[1]
        for i in range(n):
            lits = [_lit(w, sg, s, j, i) for j, (w, sg, s) in enumerate(operands)]
            lits += [("c", 0)] * (3 - len(lits))
            p = _xor([*lits, k])
            nxt = _maj(lits)
            need_lut = p[0] == "f" or (p[0] == "v" and p[2]) or _is_maj(nxt)
            if need_lut:
                ins = []
                for lit in [*lits, k]:
                    if lit[0] != "c" and lit[1] not in ins:
                        ins.append(lit[1])
                init = 0
                for idx in range(1 << len(ins)):
                    env = {v: (idx >> b) & 1 for b, v in enumerate(ins)}
                    t = 0
                    for lit in [*lits, k]:
                        t ^= _eval(lit, env)
                    mj = int(sum(_eval(lit, env) for lit in lits) >= 2)
                    for rep in range(0, 32, 1 << len(ins)):  # don't-care inputs: the table repeats
                        init |= mj << (idx + rep)
                        init |= t << (32 + idx + rep)
                key = (tuple(ins), init)
                if key not in index:
                    index[key] = len(self.luts)
                    self.luts.append(key)
                lut = index[key]
                if _is_maj(nxt):
                    self.maj_lut.setdefault(nxt[1], lut)
                self.s.append(("o6", lut))
            elif p[0] == "c":
                self.s.append(p)
            else:
                self.s.append(("v", p[1]))
            # the carry mux's data input matters only where the propagate is 0, i.e. where t_i == k_i
            if k[0] == "c":
                self.di.append(k)
            elif k[0] == "v" and k[2]:
                t = _xor(lits)
                if t[0] == "c" or (t[0] == "v" and not t[2]):
                    self.di.append(t if t[0] == "c" else ("v", t[1]))
                else:
                    if k[1] not in self.inverters:
                        self.inverters.append(k[1])
                    self.di.append(("not", k[1]))
            else:
                self.di.append(("v", k[1]))
            k = nxt

    @property
    def lut_count(self):
        return len(self.luts) + len(self.inverters)


def ternary_luts(operands, n):
    """LUTs of :func:`ternary_add` for operands ``(width, signed, sign)`` and an ``n``-bit result."""
    return TernaryLayout(operands, n).lut_count


def ternary_add(m, name, family, terms, n, carry_ins=()):
    """``sum(sign * value) + sum(carry_ins)`` for up to three ``terms`` ``(value, signed, sign)`` as ``n`` bits
    (modulo ``2**n``), built from ``LUT6_2`` and ``family``'s carry cells in ``m``. ``carry_ins``: 1-bit values
    added on the chain's +1 inputs a subtraction leaves free (at most ``2 - subtractions``). Returns the ``n``-bit
    value (unsigned; the caller gives it the result's signedness)."""
    if family not in CARRY_CELLS:
        raise ValueError(f"family must be one of {sorted(CARRY_CELLS)}, not {family!r}")
    values = [hdl.Value.cast(v).as_unsigned() for v, _, _ in terms]
    ops = [(len(v), bool(sg), s) for v, (_, sg, s) in zip(values, terms)]
    lay = TernaryLayout(ops, n, len(carry_ins)) if carry_ins else TernaryLayout(ops, n)
    values += [hdl.Value.cast(c).as_unsigned() for c in carry_ins]
    o6, o5 = [], []

    def sig(var):
        if var[0] == "k":
            return o5[lay.maj_lut[var]]
        j, b = var
        return values[j][b]

    for u in range(len(lay.luts)):
        o6.append(Signal(name=f"{name}_s{u}"))
        o5.append(Signal(name=f"{name}_k{u}"))
    for u, (ins, init) in enumerate(lay.luts):
        pins = [sig(v) for v in ins] + [Const(0, 1)] * (5 - len(ins))
        m.submodules[f"{name}_lut{u}"] = Instance(
            "LUT6_2",
            p_INIT=Const(init, 64),
            **{f"i_I{b}": pins[b] for b in range(5)},
            i_I5=Const(1, 1),
            o_O6=o6[u],
            o_O5=o5[u],
        )
    inv = {}
    for var in lay.inverters:
        inv[var] = Signal(name=f"{name}_n{len(inv)}")
        m.d.comb += inv[var].eq(~sig(var))

    def drive(spec):
        kind = spec[0]
        if kind == "c":
            return Const(spec[1], 1)
        if kind == "v":
            return sig(spec[1])
        if kind == "o6":
            return o6[spec[1]]
        return inv[spec[1]]

    cin = sig(lay.cin_var) if lay.cin_var is not None else Const(lay.cin, 1)
    return carry_add(m, name, family, [drive(s) for s in lay.s], [drive(d) for d in lay.di], cin)
