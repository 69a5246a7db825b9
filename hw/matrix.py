"""A constant ±1 matrix times a vector of unsigned inputs, fully unrolled, with partial sums shared across outputs.

``y[j] = sum(W[i, j] * x[i])`` for a fixed ``W`` of ±1: every output is a sum or difference of the inputs, and two
outputs agree or disagree on every pair of inputs, so one adder's ``a + b`` or ``a - b`` can serve many outputs. The
plan is made in two steps and the cheapest of a few candidates wins (by :func:`lut_estimate`, a LUT model that
matches yosys within 1%):

1. **Strips and classes** (Lupanov's method for constant matrices). Cut the outputs into strips of ``s`` rows.
   Inside a strip an input's weights form a sign pattern; up to sign there are at most ``2**(s-1)``, so the strip
   needs only the *class sums* (per pattern, the signed sum of the inputs that carry it), and its ``s`` outputs
   follow from those by recursive halving: a half of the strip merges the classes that agree on it, down to single
   rows (a 2-row strip is ``S + D`` and ``S - D``). That turns ``s * (n_in - 1)`` adders into ``n_in - 2**(s-1)``
   narrow ones plus ~``s * 2**(s-2)`` wide ones (16 for ``s = 4``). ``s = 1`` is the plain per-output tree.
2. **Greedy pair extraction across all class sums** (Paar/Hartley common-subexpression elimination): repeatedly take
   the pair of terms (inputs or earlier nodes) that occurs in the most class sums with the same relative sign (ties:
   shallower, then narrower), make it one adder (``a + b`` or ``a - b``, whichever way round most of its users take
   with a plus sign) and substitute it there; stop when no pair serves two sums. Counting is incremental (a lazy
   max-heap: counts only fall, except the new node's, which are pushed), so 256 x 64 plans in about 2 s. What is
   left of each class sum is added by a Huffman tree on (depth, width).

Why this and not greedy CSE on the rows alone (measured on random 64 x 16): pair extraction straight on the rows
stalls at ~330 adders, because the pairs it takes serve scattered sets of rows and stop pairing again; the strips
make the rows that share classes nested, and CSE across strips then finds the pairs two strips agree on. Strips of
``s = 1..6`` are planned (the small ones only for small matrices, where they can win), then the best ``s`` again for
up to 15 seeded shuffles of the outputs (which outputs share a strip decides which pairs strips share: 1-3%), and the
cheapest plan is kept; the same weights always give the same plan. Random ±1, xc7 LUTs measured (yosys
synth_xilinx, classic abc; LUT/MAC and depth, against da4ml 0.6.0's CMVM on the same flow): 64 x 16 x 8 bits 2.38
(7) vs 2.42 (12); 64 x 16 x 4 bits 1.41 (7) vs 1.46 (17); 64 x 64 x 8 bits 2.23 (7) vs 2.09 (22); 256 x 64 x 8 bits
1.72 (9) vs 1.96 (14). One tree per output (the former hard-wired PE): 8.8.

**Xilinx targets: ternary adders** (``target="xc7"``/``"xcu"``/``"xcup"``, ``python -m hw matrix --target``). On a
6-input LUT beside a carry chain three operands cost what two do, one LUT per bit (:mod:`hw.ternary`). After
planning, each shared node and output keeps its place and what it sums through single-use nodes is rebuilt
(:func:`network`): by fusing single-use adders into their readers (``(a + b) - c`` as one ternary adder) or by a
fresh Huffman tree of ternary adders over its terms, whichever the LUT model says is cheaper and no deeper; shared
nodes stay two-operand adders. Depth is counted in adder levels, a ternary adder (one carry chain) as one level.
The plan is chosen by the fused network's LUT count, which matches yosys within 0.1% (exactly at 64 x 16).
Measured in the same flow (LUT/MAC, depth; portable -> xc7 ternary; da4ml 0.6.0 as above): 64 x 16 x 8 bits 2.38
(7) -> **1.61 (6)** (da4ml 2.42); 64 x 16 x 4 bits 1.41 (7) -> **0.99 (6)** (1.46); 64 x 64 x 8 bits 2.23 (7) ->
**1.57 (6)** (2.09); 256 x 64 x 8 bits 1.72 (9) -> **1.12 (8)** (1.96). ``python -m bench.matrix_luts``
reruns them. ``hw gen --target xc7 --hardwired fc3`` builds hard-wired layers this way (their primitives' models go
to ``sim_models.v``). Like yosys's own adders, the chain positions whose propagate is one plain bit get no LUT in the
count (a real place-and-route spends a route-through LUT there, for portable and ternary alike).

**Depth.** Adding terms of depths ``d_k`` needs ``ceil(log2(sum(2**d_k)))`` levels at best (a Huffman tree reaches
it), so each class sum gets a budget ``2**(D - o)`` (``o`` the output side's levels) and a pair is substituted only
where that sum stays within it: pairs of equal depth are always free, unequal ones spend slack. A candidate whose
outputs end deeper than ``D`` is dropped; ``s = 1`` always fits ``D >= ceil(log2(n_in))`` (but for an all -1
output over a power of two of inputs, whose negation needs one more level).

**Widths.** Every node carries its exact range ``[lo, hi]`` (from the input range and the operations), and its
signal is exactly as wide as that range needs: unsigned where ``lo >= 0``, else two's complement.

**Signs.** A node is ``a + b`` or ``a - b`` (never ``-a - b``), so a sum is negative only when all its terms are; a
target that needs ``-(a + b)`` uses the node with a minus sign. An output whose terms are all negative gets one of
them turned round: a subtraction ``a - b`` as a new ``b - a`` at the same depth, else ``0 - t`` at the shallowest.
"""

import heapq
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from amaranth import hdl
from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .ternary import ternary_add, ternary_luts
from .widths import signed_width
from .xilinx_models import simulation_models
from .xilinx_tree import CARRY_CELLS

__all__ = [
    "ConstantMatrix",
    "MatrixPlan",
    "Network",
    "network",
    "MATRIX_TARGETS",
    "plan_matrix",
    "default_depth",
    "lut_estimate",
    "check_weights",
    "STRIP_SIZES",
]

#: strip sizes tried by :func:`plan_matrix` (clipped to the number of outputs)
STRIP_SIZES = (1, 2, 3, 4, 5, 6)

#: ``portable``: every adder is RTL ``a ± b``; a Xilinx family: single-use adders fused into ternary adders
#: (:mod:`hw.ternary`, ``LUT6_2`` + ``CARRY4``/``CARRY8``)
MATRIX_TARGETS = ("portable",) + tuple(CARRY_CELLS)


def _check_target(target):
    if target not in MATRIX_TARGETS:
        raise ValueError(f"target must be one of {MATRIX_TARGETS!r}, not {target!r}")
    return target


def _ceil_log2(n):
    return max(0, int(n - 1).bit_length())


def default_depth(n_in):
    """The default depth bound: a balanced tree over ``n_in`` inputs plus two levels of slack."""
    return _ceil_log2(n_in) + 2


def check_weights(weights):
    """``weights`` as an ``(n_in, n_out)`` int8 array of ±1, or ``ValueError`` saying what is wrong."""
    w = np.asarray(weights)
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"weights must be a non-empty 2-D (n_in, n_out) array, not shape {w.shape}")
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
        raise ValueError(f"weights must be numbers (±1), not {w.dtype}")
    if w.dtype == bool or not np.all((w == 1) | (w == -1)):
        raise ValueError("weights must all be +1 or -1")
    return w.astype(np.int8)


def _node_width(lo, hi):
    return max(1, int(hi).bit_length()) if lo >= 0 else signed_width(lo, hi)


@dataclass
class MatrixPlan:
    """An adder network for ``y = x @ W``.

    Nodes ``0 .. n_in - 1`` are the inputs; node ``n_in + k`` is ``ops[k] = (a, b, sub)``: ``v[a] - v[b]`` if
    ``sub`` else ``v[a] + v[b]`` (``a = -1`` reads as 0: a negation). ``lo``/``hi``/``depth`` are per node; output
    ``j`` is node ``outputs[j]`` (always with a plus sign).
    """

    n_in: int
    n_out: int
    bits: int
    depth_bound: int
    ops: list = field(default_factory=list)
    lo: list = field(default_factory=list)
    hi: list = field(default_factory=list)
    depths: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    strip: int = 0

    @property
    def adders(self):
        return len(self.ops)

    @property
    def depth(self):
        return max(self.depths[n] for n in self.outputs)

    def width(self, n):
        return _node_width(self.lo[n], self.hi[n])

    @property
    def out_width(self):
        """One signed width that holds every output."""
        return max(signed_width(self.lo[n], self.hi[n]) for n in self.outputs)

    def evaluate(self, x):
        """``(N, n_out)`` int64 outputs of the plan for ``(N, n_in)`` inputs (the reference the hardware matches)."""
        x = np.asarray(x, dtype=np.int64)
        v = [x[:, i] for i in range(self.n_in)]
        zero = np.zeros(len(x), dtype=np.int64)
        for a, b, sub in self.ops:
            va = zero if a < 0 else v[a]
            v.append(va - v[b] if sub else va + v[b])
        return np.stack([v[n] for n in self.outputs], axis=1)


class _Builder:
    """Nodes as they are planned: ranges, depths, and the ops that make them."""

    def __init__(self, n_in, bits):
        self.n_in = n_in
        xhi = (1 << bits) - 1
        self.lo, self.hi, self.dep, self.ops = [0] * n_in, [xhi] * n_in, [0] * n_in, []

    def _new(self, a, b, sub):
        la, ha = (0, 0) if a < 0 else (self.lo[a], self.hi[a])
        lo, hi = (la - self.hi[b], ha - self.lo[b]) if sub else (la + self.lo[b], ha + self.hi[b])
        self.ops.append((a, b, sub))
        self.lo.append(lo)
        self.hi.append(hi)
        self.dep.append(1 + max(self.dep[b], 0 if a < 0 else self.dep[a]))
        return len(self.lo) - 1

    def combine(self, a, sa, b, sb):
        """A node for ``sa*a + sb*b``: returns ``(n, g)`` with ``g * v[n]`` equal to it."""
        if sa == sb:
            return self._new(a, b, False), sa
        return (self._new(a, b, True), 1) if sa > 0 else (self._new(b, a, True), 1)

    def width(self, n):
        return _node_width(self.lo[n], self.hi[n])

    def pair_width(self, a, b, s):
        lo, hi = (
            (self.lo[a] + self.lo[b], self.hi[a] + self.hi[b])
            if s > 0
            else (self.lo[a] - self.hi[b], self.hi[a] - self.lo[b])
        )
        return _node_width(lo, hi)

    def sum_terms(self, terms, positive=False):
        """Add ``terms`` (``(node, sign)``) by a Huffman tree on (depth, width): returns ``(node, sign)``. A node
        is negative only when both its operands are, so the sum comes out positive unless every term is negative;
        with ``positive`` such a sum first turns one term round: a subtraction ``a - b`` as a new ``b - a`` (same
        depth), else the shallowest term as ``0 - t`` (one level more); one adder either way."""
        terms = list(terms)
        if positive and all(s < 0 for _, s in terms):
            # -(a - b) is b - a, one more adder at the same depth; else 0 - t at the shallowest term
            subs = [
                k
                for k, (t, _) in enumerate(terms)
                if t >= self.n_in and self.ops[t - self.n_in][2] and self.ops[t - self.n_in][0] >= 0
            ]
            if subs:
                k = min(subs, key=lambda k: self.width(terms[k][0]))
                a, b, _ = self.ops[terms[k][0] - self.n_in]
                terms[k] = (self._new(b, a, True), 1)
            else:
                k = min(range(len(terms)), key=lambda k: (self.dep[terms[k][0]], self.width(terms[k][0])))
                terms[k] = (self._new(-1, terms[k][0], True), 1)
        heap = [(self.dep[t], self.width(t), k, t, s) for k, (t, s) in enumerate(terms)]
        heapq.heapify(heap)
        k = len(heap)
        while len(heap) > 1:
            _, _, _, a, sa = heapq.heappop(heap)
            _, _, _, b, sb = heapq.heappop(heap)
            n, g = self.combine(a, sa, b, sb)
            heapq.heappush(heap, (self.dep[n], self.width(n), k, n, g))
            k += 1
        return heap[0][3], heap[0][4]


def _cse(bld, targets, budgets):
    """Greedy pair extraction over ``targets`` (dicts ``term -> ±1``, changed in place); a target's Kraft sum
    ``sum(2**depth)`` never exceeds its budget."""
    occ = defaultdict(set)
    for k, tg in enumerate(targets):
        for t in tg:
            occ[t].add(k)
    kraft = [sum(1 << bld.dep[t] for t in tg) for tg in targets]
    heap = []

    def push(count, a, b, s):
        if a > b:
            a, b = b, a
        heapq.heappush(heap, (-count, max(bld.dep[a], bld.dep[b]), bld.pair_width(a, b, s), a, b, s))

    terms = sorted(occ)
    if not terms:
        return
    col = {t: j for j, t in enumerate(terms)}
    m = np.zeros((len(targets), len(terms)), dtype=np.float32)
    for k, tg in enumerate(targets):
        for t, s in tg.items():
            m[k, col[t]] = s
    p, n = m.T @ m, np.abs(m).T @ np.abs(m)
    for s, c in ((1, (n + p) / 2), (-1, (n - p) / 2)):
        ii, jj = np.nonzero(np.triu(c, 1) >= 2)
        for i, j in zip(ii.tolist(), jj.tolist()):
            push(int(round(c[i, j])), terms[i], terms[j], s)
    del m, p, n

    def rows_of(a, b, s):
        da, db = bld.dep[a], bld.dep[b]
        extra = 0 if da == db else (1 << max(da, db)) - (1 << min(da, db))
        return [k for k in occ[a] & occ[b] if targets[k][b] == s * targets[k][a] and kraft[k] + extra <= budgets[k]]

    while heap:
        negc, _, _, a, b, s = heapq.heappop(heap)
        rows = rows_of(a, b, s)
        if len(rows) < 2:
            continue
        if len(rows) < -negc:
            push(len(rows), a, b, s)
            continue
        # a subtraction can be made either way round: the one most rows use with a plus sign (fewer all-minus
        # outputs, each of which costs an adder)
        flip = s < 0 and sum(targets[k][a] for k in rows) < 0
        c, g = bld.combine(b, 1, a, s) if flip else bld.combine(a, 1, b, s)
        if flip:
            g = -g
        extra = (1 << bld.dep[c]) - (1 << bld.dep[a]) - (1 << bld.dep[b])
        counts = defaultdict(int)
        for k in rows:
            tg = targets[k]
            sign = tg.pop(a) * g
            del tg[b]
            occ[a].discard(k)
            occ[b].discard(k)
            tg[c] = sign
            occ[c].add(k)
            kraft[k] += extra
            for t, st in tg.items():
                if t != c:
                    counts[t, st * sign] += 1
        for (t, rel), cnt in counts.items():
            if cnt >= 2:
                push(cnt, t, c, rel)


def _plan_strips(w, bits, s, depth, order=None):
    """One candidate plan: strips of ``s`` outputs taken in ``order`` (see the module docstring). None if it ends
    deeper than ``depth``."""
    n_in, n_out = w.shape
    bld = _Builder(n_in, bits)
    order = list(range(n_out)) if order is None else [int(r) for r in order]
    strips = [order[k : k + s] for k in range(0, n_out, s)]
    targets, budgets, keys = [], [], []
    for rows in strips:
        classes = {}
        for i in range(n_in):
            pat = w[i, rows]
            g = int(pat[0])
            classes.setdefault(tuple(int(v) * g for v in pat), {})[i] = g
        side = _ceil_log2(len(classes))
        if side > depth:
            return None
        for key, tg in classes.items():
            targets.append(tg)
            budgets.append(1 << (depth - side))
            keys.append((rows, key))
    _cse(bld, targets, budgets)
    outs = [None] * n_out
    items = defaultdict(list)
    for (rows, key), tg in zip(keys, targets):
        node, sign = bld.sum_terms(tg.items(), positive=len(rows) == 1)
        items[rows[0]].append((node, sign, dict(zip(rows, key))))
    for rows in strips:
        _strip_outputs(bld, rows, items[rows[0]], outs, top=True)
    plan = MatrixPlan(n_in=n_in, n_out=n_out, bits=bits, depth_bound=depth, strip=s)
    _finish(bld, outs, plan)
    return plan if plan.depth <= depth else None


def _strip_outputs(bld, rows, items, outs, top):
    """The outputs of ``rows`` from ``items`` (``(node, sign, {row: ±1})``): merge the items that agree on
    ``rows`` (up to sign), then halve."""
    if not top:
        classes = {}
        for node, sign, pat in items:
            g = pat[rows[0]]
            classes.setdefault(tuple(pat[r] * g for r in rows), []).append((node, sign * g))
        items = []
        for key, terms in classes.items():
            node, sign = bld.sum_terms(terms, positive=len(rows) == 1)
            items.append((node, sign, dict(zip(rows, key))))
    if len(rows) == 1:
        ((node, sign, pat),) = items
        outs[rows[0]] = (node, sign * pat[rows[0]])
        return
    half = (len(rows) + 1) // 2
    _strip_outputs(bld, rows[:half], items, outs, top=False)
    _strip_outputs(bld, rows[half:], items, outs, top=False)


def _finish(bld, outs, plan):
    """Give every output a plus sign (turning its own last subtraction round, else negating), then copy the
    builder's nodes into ``plan``."""
    uses = defaultdict(int)
    for a, b, _ in bld.ops:
        uses[a] += 1
        uses[b] += 1
    for node, _ in outs:
        uses[node] += 1
    final = []
    for node, sign in outs:
        if sign < 0:
            k = node - bld.n_in
            if k >= 0 and uses[node] == 1 and bld.ops[k][2] and bld.ops[k][0] >= 0:
                a, b, _ = bld.ops[k]
                bld.ops[k] = (b, a, True)
                bld.lo[node], bld.hi[node] = -bld.hi[node], -bld.lo[node]
            else:
                node = bld._new(-1, node, True)
        final.append(node)
    plan.ops, plan.lo, plan.hi, plan.depths, plan.outputs = bld.ops, bld.lo, bld.hi, bld.dep, final


def _op_luts(plan, a, b, sub):
    """LUT6 of one adder as synth_xilinx maps it (measured): one LUT per bit beside the carry chain, but an addend
    that is unsigned and narrower than the other is zero-extended, so its upper bits cost nothing; a subtraction
    inverts its subtrahend's extension, so it pays the full width."""
    wb, ub = plan.width(b), plan.lo[b] >= 0
    if a < 0:
        return wb
    wa, ua = plan.width(a), plan.lo[a] >= 0
    if not sub:
        if wa == wb:
            return wa
        narrow, unsigned = (wa, ua) if wa < wb else (wb, ub)
        return narrow if unsigned else max(wa, wb)
    return max(wa, wb) + (1 if ua and not ub and wa >= wb else 0)


def _binary_luts(plan, terms, n):
    """:func:`_op_luts` of a node of one or two signed ``terms`` (``a - b``, ``a + b``, ``0 - b``)."""
    pos = [t for t, g in terms if g > 0]
    neg = [t for t, g in terms if g < 0]
    if len(terms) == 1:
        return _op_luts(plan, -1, terms[0][0], True) if neg else 0
    if len(pos) == 2:
        return _op_luts(plan, pos[0], pos[1], False)
    if len(pos) == 1:
        return _op_luts(plan, pos[0], neg[0], True)
    return ternary_luts([(plan.width(t), plan.lo[t] < 0, -1) for t in neg], plan.width(n))


def _is_ternary(target, terms):
    """Whether a node of ``terms`` is a ternary adder on ``target``: three terms, or two subtracted."""
    return target != "portable" and (len(terms) == 3 or (len(terms) == 2 and all(g < 0 for _, g in terms)))


def _node_luts(plan, n, terms, target):
    """LUTs of node ``n`` as ``sum(g * v[t] for t, g in terms)`` on ``target``: a ternary adder
    (:func:`_is_ternary`) counted LUT by LUT, the rest RTL as yosys maps it."""
    if _is_ternary(target, terms):
        return ternary_luts([(plan.width(t), plan.lo[t] < 0, g) for t, g in terms], plan.width(n))
    return _binary_luts(plan, terms, n)


@dataclass
class Network:
    """The adders a :class:`ConstantMatrix` emits for a plan on a target: ``nodes`` is ``[(n, terms)]`` in
    topological order, node ``n`` being ``sum(g * v[t] for t, g in terms)`` (one to three terms); ``depths[n]`` its
    adder levels (a ternary adder is one level: one carry chain), ``None`` for plan nodes not emitted. Nodes past
    the plan's are new partial sums (their ranges in ``lo``/``hi``, which extend the plan's)."""

    plan: MatrixPlan
    target: str
    nodes: list
    depths: list
    lo: list
    hi: list

    @property
    def adders(self):
        return len(self.nodes)

    @property
    def ternary(self):
        """How many of the adders have three operands."""
        return sum(1 for _, terms in self.nodes if len(terms) == 3)

    @property
    def depth(self):
        return max(self.depths[n] for n in self.plan.outputs)

    @property
    def primitives(self):
        """Xilinx primitives the emitted network instantiates (empty where no node is a ternary adder)."""
        if any(_is_ternary(self.target, terms) for _, terms in self.nodes):
            return {"LUT6_2", CARRY_CELLS[self.target][0]}
        return set()

    def width(self, n):
        return _node_width(self.lo[n], self.hi[n])

    def luts(self):
        return sum(_node_luts(self, n, terms, self.target) for n, terms in self.nodes)


def _ternary_tree(net, leaves, root):
    """``sum(g * v[t] for t, g in leaves)`` as a tree of adders of up to three operands, made into ``net`` (nodes,
    ranges and depths appended; the last node is ``root``): a Huffman tree on (depth, width) that takes three terms
    at a time (two first where the count needs it), a partial sum with more minus than plus terms made positive and
    used with a minus sign. None (and ``net`` unchanged) where the root would need three subtractions."""
    heap = [(net.depths[t], net.width(t), k, t, g) for k, (t, g) in enumerate(leaves)]
    heapq.heapify(heap)
    made, k = [], len(heap)
    lo, hi, depths = dict(), dict(), dict()
    while len(heap) > 1:
        take = 2 if len(heap) % 2 == 0 else 3
        group = [heapq.heappop(heap) for _ in range(take)]
        last = not heap
        terms = [(t, g) for _, _, _, t, g in group]
        sign = 1
        if not last and 2 * sum(1 for _, g in terms if g < 0) > len(terms):
            terms, sign = [(t, -g) for t, g in terms], -1
        if sum(1 for _, g in terms if g < 0) > 2:  # only at the root, where no sign can be given back
            return None
        n = root if last else len(net.lo) + len(made)
        rng = lambda t: (lo[t], hi[t]) if t in lo else (net.lo[t], net.hi[t])  # noqa: E731
        lo[n] = sum(rng(t)[0] if g > 0 else -rng(t)[1] for t, g in terms)
        hi[n] = sum(rng(t)[1] if g > 0 else -rng(t)[0] for t, g in terms)
        depths[n] = 1 + max(depths[t] if t in depths else net.depths[t] for t, _ in terms)
        made.append((n, terms))
        heapq.heappush(heap, (depths[n], _node_width(lo[n], hi[n]), k, n, sign))
        k += 1
    for n, _ in made:
        if n != root:
            net.lo.append(lo[n])
            net.hi.append(hi[n])
            net.depths.append(depths[n])
    net.depths[root] = depths[root]
    return made


def network(plan, target="portable"):
    """The :class:`Network` ``plan`` is built as on ``target``.

    ``portable``: the plan's adders as they are. A Xilinx family: the plan's shared nodes (two readers or more)
    and outputs stay; what each of them adds up through single-use nodes (nodes whose one reader it is) is a
    signed sum of inputs and shared nodes, built in whichever of two forms costs fewer LUTs (:func:`_node_luts`;
    the second only where it is no deeper):

    1. the plan's adders with every single-use node fused into its reader where the reader ends with at most
       three operands and the fusion saves LUTs (of two candidates the one that saves more; a node that took one
       in is not fused again), so ``(a + b) - c`` becomes one ternary adder;
    2. a fresh tree of ternary adders over the sum's terms (:func:`_ternary_tree`): about half the adders of a
       binary tree."""
    _check_target(target)
    n_in = plan.n_in
    terms = [[(b, -1)] if a < 0 else [(a, 1), (b, -1 if sub else 1)] for a, b, sub in plan.ops]
    depths = [0] * n_in + [None] * len(terms)
    net = Network(plan=plan, target=target, nodes=[], depths=depths, lo=list(plan.lo), hi=list(plan.hi))
    if target == "portable":
        for k, tm in enumerate(terms):
            depths[n_in + k] = 1 + max(depths[t] for t, _ in tm)
            net.nodes.append((n_in + k, tm))
        return net
    uses = defaultdict(int)
    for a, b, _ in plan.ops:
        uses[a] += 1
        uses[b] += 1
    for n in plan.outputs:
        uses[n] += 1

    outs = set(plan.outputs)

    def single(n):
        return n >= n_in and uses[n] == 1 and n not in outs

    # (1) greedy fusion of single-use nodes into their readers
    gone, grown = set(), set()
    cost = [_binary_luts(net, tm, n_in + k) for k, tm in enumerate(terms)]
    fused = [list(tm) for tm in terms]
    for k in range(len(terms)):
        n = n_in + k
        while True:
            best = None
            for c, g in fused[k]:
                if not single(c) or c in grown or c in gone:
                    continue
                merged = [(t, s) for t, s in fused[k] if t != c] + [(t, s * g) for t, s in fused[c - n_in]]
                if len(merged) > 3 or sum(1 for _, s in merged if s < 0) > 2:
                    continue
                save = cost[k] + cost[c - n_in] - _node_luts(net, n, merged, target)
                if save > 0 and (best is None or save > best[0]):
                    best = (save, c, merged)
            if best is None:
                break
            _, c, fused[k] = best
            cost[k] = _node_luts(net, n, fused[k], target)
            gone.add(c)
            grown.add(n)

    def subtree(n):
        """The single-use nodes under ``n`` (and ``n``), children first; and the signed sum they make."""
        nodes, leaves = [], []

        def walk(m, sign):
            for t, g in terms[m - n_in]:
                if single(t):
                    walk(t, sign * g)
                else:
                    leaves.append((t, sign * g))
            nodes.append(m)

        walk(n, 1)
        return nodes, leaves

    # (2) per kept node, the cheaper of the fused plan and a fresh ternary tree
    for k in range(len(terms)):
        r = n_in + k
        if single(r):
            continue
        members, leaves = subtree(r)
        form1 = []
        for m in members:
            if m not in gone:
                depths[m] = 1 + max(depths[t] for t, _ in fused[m - n_in])
                form1.append((m, fused[m - n_in]))
        cost1, depth1 = sum(_node_luts(net, m, tm, target) for m, tm in form1), depths[r]
        mark = len(net.lo)
        form2 = _ternary_tree(net, leaves, r) if len(leaves) > 3 else None
        if form2 is not None:
            cost2 = sum(_node_luts(net, m, tm, target) for m, tm in form2)
            if depths[r] <= depth1 and (cost2, depths[r]) < (cost1, depth1):  # cheaper, never deeper
                net.nodes += form2
                for m in members[:-1]:
                    depths[m] = None
                continue
            del net.lo[mark:], net.hi[mark:], net.depths[mark:]
            depths[r] = depth1
        net.nodes += form1
    return net


def lut_estimate(plan, target="portable"):
    """The plan's LUT6 count as yosys ``synth_xilinx`` (classic abc) maps it on ``target``: :func:`_op_luts`
    summed for ``portable`` (within 0.1% of the measured count on 64 x 16 x 8), the fused :func:`network`'s
    ternary adders counted LUT by LUT for a Xilinx family."""
    if target == "portable":
        return sum(_op_luts(plan, a, b, sub) for a, b, sub in plan.ops)
    return network(plan, target).luts()


def plan_matrix(weights, bits, depth=None, tries=None, target="portable"):
    """The cheapest adder network found for ``x @ weights`` (``(n_in, n_out)`` ±1, unsigned ``bits``-bit ``x``) no
    deeper than ``depth`` adder levels (default :func:`default_depth`).

    Strip sizes :data:`STRIP_SIZES` are planned in output order; then the best size is planned again for ``tries``
    more orders of the outputs (seeded shuffles: which outputs share a strip changes which pairs the strips share;
    default ``65536 // (n_in * n_out)`` clipped to 0..15) and the cheapest plan (:func:`lut_estimate` on
    ``target``) is kept. Deterministic: the same weights give the same plan."""
    _check_target(target)
    w = check_weights(weights)
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 1..32, not {bits!r}")
    n_in, n_out = w.shape
    least = _ceil_log2(n_in)
    depth = default_depth(n_in) if depth is None else depth
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < least:
        raise ValueError(f"depth must be an integer >= ceil(log2(n_in)) = {least}, not {depth!r}")
    depth, bits = int(depth), int(bits)
    tries = max(0, min(15, 65536 // (n_in * n_out))) if tries is None else int(tries)

    def key(plan):
        return lut_estimate(plan, target), plan.depth

    best = None
    # large strips first: for big matrices they win, and the small ones (slow there) are only tried when needed
    for s in sorted({min(s, n_out) for s in STRIP_SIZES}, reverse=True):
        if s <= 2 and best is not None and n_in * n_out > 4096:
            break
        plan = _plan_strips(w, bits, s, depth)
        if plan is not None and (best is None or key(plan) < key(best)):
            best = plan
    if best is None:  # only an all -1 output over 2**depth inputs: its negation needs one more level
        raise ValueError(
            f"depth {depth} is too small for these weights (an output with every weight -1 needs "
            f"ceil(log2(n_in)) + 1 = {least + 1})"
        )
    if best.strip > 1:
        for t in range(tries):
            plan = _plan_strips(w, bits, best.strip, depth, order=np.random.default_rng(t).permutation(n_out))
            if plan is not None and key(plan) < key(best):
                best = plan
    return best


class ConstantMatrix(wiring.Component):
    """``y[j] = sum_i W[i, j] * x[i]`` for a constant ±1 ``W``, from one shared adder network (:func:`plan_matrix`).

    Parameters
    ----------
    weights : (n_in, n_out) array of ±1
        ``W[i, j]`` is the weight from input ``i`` to output ``j``.
    in_bits : int
        Width of each unsigned ``x[i]``, 1..32.
    pipeline : int
        Register every ``pipeline`` adder levels (0: combinational). Operands from earlier stages are delayed
        alongside, and every output arrives after ``latency = depth // pipeline`` cycles.
    depth : int, optional
        Adder levels allowed (default :func:`default_depth`).
    plan : MatrixPlan, optional
        A plan already made (skips planning; ``weights`` and ``in_bits`` are then the plan's).
    target : str
        :data:`MATRIX_TARGETS`: ``"portable"`` RTL (every adder ``a ± b``), or a Xilinx family whose single-use
        adders are fused into ternary adders of ``LUT6_2`` + carry-chain primitives (:func:`network`).

    Members
    -------
    x : ``In(ArrayLayout(unsigned(in_bits), n_in))``
    y : ``Out(ArrayLayout(signed(out_width), n_out))``
    plan : MatrixPlan
    network : Network
        What is emitted: the plan's adders, fused on a Xilinx target.
    depth, adders, out_width, latency : int
        ``depth`` and ``adders`` are the network's (a ternary adder is one level and one adder).
    primitives : set of str
        Xilinx primitives instantiated (empty for ``portable``): :func:`simulation_models` takes it.
    """

    def __init__(self, *, weights, in_bits, pipeline=0, depth=None, plan=None, target="portable"):
        if not isinstance(pipeline, (int, np.integer)) or pipeline < 0:
            raise ValueError(f"pipeline must be a non-negative integer, not {pipeline!r}")
        if plan is not None and in_bits != plan.bits:
            raise ValueError(f"in_bits {in_bits} differs from the plan's {plan.bits}")
        self.target = _check_target(target)
        self.plan = plan if plan is not None else plan_matrix(weights, in_bits, depth, target=target)
        self.network = network(self.plan, target)
        self.n_in, self.n_out, self.in_bits = self.plan.n_in, self.plan.n_out, self.plan.bits
        self.pipeline = int(pipeline)
        self.depth, self.adders, self.out_width = self.network.depth, self.network.adders, self.plan.out_width
        self.primitives = self.network.primitives
        self.latency = self.latency_for(self.depth, self.pipeline)
        super().__init__(
            {
                "x": In(data.ArrayLayout(hdl.unsigned(self.in_bits), self.n_in)),
                "y": Out(data.ArrayLayout(hdl.signed(self.out_width), self.n_out)),
            }
        )

    @staticmethod
    def latency_for(depth, pipeline):
        """Cycles through a network ``depth`` adder levels deep registered every ``pipeline`` levels (0: none)."""
        return depth // pipeline if pipeline else 0

    def _stage(self, level):
        """Registers between the inputs and the output of a node at ``level``."""
        return level // self.pipeline if self.pipeline else 0

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        # copies[n][k]: node n's value k registers after the stage it is made in (own[n])
        copies = {i: [hdl.Value.cast(self.x[i])] for i in range(self.n_in)}
        own = dict.fromkeys(range(self.n_in), 0)

        def at(n, want):
            """Node ``n`` as seen in stage ``want`` (delay registers made once, shared by every reader)."""
            chain = copies[n]
            while own[n] + len(chain) - 1 < want:
                r = Signal(chain[-1].shape(), name=f"n{n}_d{own[n] + len(chain)}", reset_less=True)
                m.d.sync += r.eq(chain[-1])
                chain.append(r)
            return chain[want - own[n]]

        net = self.network
        for n, terms in net.nodes:
            level = net.depths[n]
            here = self._stage(level - 1)  # the stage the adder's operands are read in
            shape = hdl.unsigned(net.width(n)) if net.lo[n] >= 0 else hdl.signed(net.width(n))
            # keep: one carry chain per node (stops yosys alumacc merging the network into $macc cells)
            s = Signal(shape, name=f"n{n}", attrs={"keep": 1})
            pos = [at(t, here) for t, g in terms if g > 0]
            neg = [at(t, here) for t, g in terms if g < 0]
            if _is_ternary(self.target, terms):
                ops = [(at(t, here), net.lo[t] < 0, g) for t, g in terms]
                m.d.comb += s.eq(ternary_add(m, f"t{n}", self.target, ops, net.width(n)))
            elif len(pos) == 2:
                m.d.comb += s.eq(pos[0] + pos[1])
            else:  # a - b, or 0 - b
                m.d.comb += s.eq((pos[0] if pos else hdl.Const(0, 1)) - neg[0])
            if self._stage(level) > here:  # the last level of a stage: registered
                r = Signal(shape, name=f"n{n}_r", reset_less=True)
                m.d.sync += r.eq(s)
                s = r
            copies[n] = [s]
            own[n] = self._stage(level)
        for j, n in enumerate(plan.outputs):
            m.d.comb += self.y[j].eq(at(n, self.latency))
        return m


def write_matrix(weights_path, out, *, bits, pipeline=0, depth=None, target="portable"):
    """``python -m hw matrix``: plan and emit ``lutmac_matrix`` for the ``.npy`` at ``weights_path`` into the
    Verilog file ``out`` and its ``.json`` beside it (both atomic; nothing is written when an argument is bad); on a
    Xilinx ``target`` also the primitives' simulation models as ``<out stem>_sim_models.v`` (for simulation only:
    synthesis must not read them). Returns the JSON's dict. Raises :class:`~hw.HardwareError` (one line) on bad
    input."""
    import time
    from pathlib import Path

    from amaranth.back import verilog

    from common.files import atomic_write_json, atomic_write_text

    from . import HardwareError

    out = Path(out)
    meta_path = out.with_suffix(".json")
    if meta_path == out:
        raise HardwareError(f"-o {out}: the Verilog file must not end in .json (its .json goes beside it)")
    if out.is_dir():
        raise HardwareError(f"-o {out} is a directory; give the Verilog file to write")
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise HardwareError(f"--bits must be in 1..32, not {bits}")
    if pipeline < 0:
        raise HardwareError(f"--pipeline must be >= 0, not {pipeline}")
    if target not in MATRIX_TARGETS:
        raise HardwareError(f"--target must be one of {', '.join(MATRIX_TARGETS)}, not {target}")
    try:
        w = np.load(weights_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            reason = "no such file"
        else:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HardwareError(f"--weights {weights_path}: cannot read a .npy array ({reason})") from None
    t0 = time.perf_counter()
    try:
        w = check_weights(w)
        least = _ceil_log2(w.shape[0])
        if depth is not None and depth < least:
            raise ValueError(f"--depth must be >= ceil(log2(n_in)) = {least} for {w.shape[0]} inputs, not {depth}")
        plan = plan_matrix(w, bits, depth, target=target)
    except ValueError as e:
        raise HardwareError(f"--weights {weights_path}: {e}" if "weights" in str(e) else str(e)) from None
    planned = time.perf_counter() - t0
    dut = ConstantMatrix(weights=w, in_bits=bits, pipeline=pipeline, plan=plan, target=target)
    text = verilog.convert(dut, name="lutmac_matrix", emit_src=False)
    models_path = out.with_name(out.stem + "_sim_models.v") if dut.primitives else None
    n_in, n_out = w.shape
    meta = {
        "module": "lutmac_matrix",
        "n_in": n_in,
        "n_out": n_out,
        "in_bits": bits,
        "out_bits": dut.out_width,
        "ports": {
            "x": {"direction": "in", "width": n_in * bits, "lanes": n_in, "lane_bits": bits, "signed": False},
            "y": {
                "direction": "out",
                "width": n_out * dut.out_width,
                "lanes": n_out,
                "lane_bits": dut.out_width,
                "signed": True,
            },
            **({"clk": {"direction": "in", "width": 1}, "rst": {"direction": "in", "width": 1}} if dut.latency else {}),
        },
        "target": target,
        "adders": dut.adders,
        "ternary_adders": dut.network.ternary,
        "depth": dut.depth,
        "depth_bound": plan.depth_bound,
        "pipeline": pipeline,
        "latency_cycles": dut.latency,
        "strip": plan.strip,
        "estimated_luts": lut_estimate(plan, target),
        "simulation_models": models_path.name if models_path else None,
        "output_ranges": [[plan.lo[n], plan.hi[n]] for n in plan.outputs],
        "plan_seconds": round(planned, 3),
    }
    if models_path:
        atomic_write_text(models_path, simulation_models(dut.primitives))
    atomic_write_json(meta_path, meta)
    atomic_write_text(out, text)
    return meta
