"""Multiplier-free requantisation after the accumulators: threshold search (hidden layers) and shift-add scores
(output layer). Both work on ``lanes`` accumulators at once whose neuron index is ``fold * lanes + lane``."""

from dataclasses import dataclass

from amaranth import hdl
from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from export.folding import apply_progression

from .widths import signed_width, unsigned_width

__all__ = ["ThresholdRequantizer", "ProgressionRequantizer", "SearchPlan", "ScoreRequantizer", "csd_digits"]


def csd_digits(value):
    """Canonical signed digits of ``value``: ``[(shift, sign), ...]`` with ``value = sum(sign << shift)``."""
    digits, k, v = [], 0, int(value)
    while v:
        if v & 1:
            d = 2 - (v & 3)  # +1 if v = 1 mod 4, -1 if v = 3 mod 4
            digits.append((k, d))
            v -= d
        v >>= 1
        k += 1
    return digits


def _signed_sum(nodes):
    """One adder for one or two ``(value, sign)`` nodes: ``(value, sign)`` of their signed sum, one carry chain."""
    if len(nodes) == 1:
        return nodes[0]
    (a, sa), (b, sb) = nodes
    if sa == sb:
        return a + b, sa
    return (a - b, 1) if sa > 0 else (b - a, 1)


def _neuron_rows(values, folds, lanes, fill):
    """Rows per ``(fold, lane)``: ``values[fold * lanes + lane]`` or ``fill`` beyond the layer (padding)."""
    return [
        [values[f * lanes + p] if f * lanes + p < len(values) else fill for p in range(lanes)] for f in range(folds)
    ]


def _level_signature(*, acc_width, lanes, folds, abits):
    """The ports every hidden-layer requantiser has: ``lanes`` accumulators of a row fold in, their levels out."""
    return wiring.Signature(
        {
            "acc": In(data.ArrayLayout(hdl.signed(acc_width), lanes)),
            "fold": In(range(max(2, folds))),
            "valid": In(1),
            "result": Out(data.ArrayLayout(hdl.unsigned(abits), lanes)),
            "result_valid": Out(1),
        }
    )


class ThresholdRequantizer(wiring.Component):
    """``level = #{k : s * acc >= T[k]}`` by a pipelined binary search: one comparator per output bit per lane.

    Stage ``i`` compares against the threshold selected by the bits decided before it, read from a small memory of
    ``folds * 2**i`` entries per lane; a new set of ``lanes`` accumulators enters every cycle. A stage takes four
    cycles (ROM read, ROM output register — inside the block RAM where the flow can put it —, a fabric register,
    registered comparison), so no path is more than one of them: ``latency = 4 * abits + 1``.

    Parameters
    ----------
    orientation : array of ±1, shape ``(neurons,)``
    thresholds : int array, shape ``(neurons, 2**abits - 1)``, non-decreasing per row
    lanes : int
        Accumulators per cycle (the MVU's PE count).
    acc_width : int
        Width of the signed accumulators.

    Members
    -------
    acc : ``In(ArrayLayout(signed(acc_width), lanes))``
    fold : ``In(range(folds))``; which group of ``lanes`` neurons ``acc`` belongs to.
    valid : ``In(1)``
    result : ``Out(ArrayLayout(unsigned(abits), lanes))``, the levels, ``latency`` cycles later.
    result_valid : ``Out(1)``
    """

    def __init__(self, *, orientation, thresholds, lanes, acc_width):
        self.neurons, levels = thresholds.shape
        self.abits = (levels + 1).bit_length() - 1
        if levels != 2**self.abits - 1:
            raise ValueError(f"thresholds must have 2**abits - 1 columns, not {levels!r}")
        self.lanes, self.acc_width = lanes, acc_width
        self.folds = -(-self.neurons // lanes)
        self._orientation, self._thresholds = orientation, thresholds
        lo = min(int(thresholds.min()), -(1 << (acc_width - 1)))
        hi = max(int(thresholds.max()), 1 << (acc_width - 1))
        self.cmp_width = signed_width(lo, hi)
        self.latency = self.latency_for(self.abits)
        super().__init__(_level_signature(acc_width=acc_width, lanes=lanes, folds=self.folds, abits=self.abits))

    @staticmethod
    def latency_for(abits):
        """Cycles from ``acc`` to ``level``: orientation, then four per output bit."""
        return 4 * abits + 1

    def elaborate(self, platform):
        m = Module()
        b, lanes, folds = self.abits, self.lanes, self.folds
        negate = _neuron_rows([int(s) < 0 for s in self._orientation], folds, lanes, False)
        m.submodules.orient = orient = Memory(
            shape=lanes, depth=max(2, folds), init=[sum(int(n) << p for p, n in enumerate(row)) for row in negate]
        )
        # stage 0: read orientation, then v = s * acc (a negation, not a multiplication)
        rp = orient.read_port()
        m.d.comb += rp.addr.eq(self.fold)
        acc_r = Signal.like(self.acc)
        fold_r = Signal.like(self.fold)
        valid_r = Signal()
        m.d.sync += [acc_r.eq(self.acc), fold_r.eq(self.fold), valid_r.eq(self.valid)]
        v = [Signal(hdl.signed(self.cmp_width), name=f"v{p}") for p in range(lanes)]
        for p in range(lanes):
            m.d.comb += v[p].eq(Mux(rp.data[p], -acc_r[p], acc_r[p]))
        cur_v, cur_fold, cur_valid, cur_keys = v, fold_r, valid_r, [hdl.Const(0, 1)] * lanes
        for s in range(b):
            d = b - 1 - s
            reg_v = [Signal(hdl.signed(self.cmp_width), name=f"v{s + 1}_{p}") for p in range(lanes)]
            reg_key = [Signal(max(1, s), name=f"prefix{s + 1}_{p}") for p in range(lanes)]
            reg_fold = Signal.like(self.fold, name=f"fold{s + 1}")
            reg_valid = Signal(name=f"valid{s + 1}")
            m.d.sync += [reg_fold.eq(cur_fold), reg_valid.eq(cur_valid)]
            keys, stage_v = [], []
            for p in range(lanes):
                # the threshold this stage needs: k = (prefix << (d+1)) | (1 << d), 1-based, for every prefix
                init = []
                for f in range(folds):
                    n = f * lanes + p
                    for prefix in range(2**s):
                        k = (prefix << (d + 1)) | (1 << d)
                        init.append(int(self._thresholds[n, k - 1]) if n < self.neurons else 0)
                mem = Memory(shape=hdl.signed(self.cmp_width), depth=max(2, len(init)), init=init)
                m.submodules[f"thr{s}_{p}"] = mem
                port = mem.read_port()
                m.d.comb += port.addr.eq((cur_fold << s) | cur_keys[p] if s else cur_fold)
                m.d.sync += [reg_v[p].eq(cur_v[p]), reg_key[p].eq(cur_keys[p])]
                # the ROM output is registered (a block RAM's clock-to-output is most of a cycle on its own), then
                # the comparison, before it addresses the next stage's ROM
                # and registered again in the fabric: block RAMs sit in rows of their own, so the ride to the
                # comparator is a long route that gets a cycle of its own
                data_r = Signal(hdl.signed(self.cmp_width), name=f"t{s + 1}_{p}", reset_less=True)
                data_f = Signal(hdl.signed(self.cmp_width), name=f"tf{s + 1}_{p}", reset_less=True)
                v_r = Signal(hdl.signed(self.cmp_width), name=f"w{s + 1}_{p}")
                v_f = Signal(hdl.signed(self.cmp_width), name=f"wf{s + 1}_{p}")
                key_r = Signal(max(1, s), name=f"prefix_r{s + 1}_{p}")
                key_f = Signal(max(1, s), name=f"prefix_f{s + 1}_{p}")
                m.d.sync += [data_r.eq(port.data), v_r.eq(reg_v[p]), key_r.eq(reg_key[p])]
                m.d.sync += [data_f.eq(data_r), v_f.eq(v_r), key_f.eq(key_r)]
                # v >= t as the sign of v - t, one bit wider: a bare carry chain (yosys maps a signed `>=` to a chain
                # plus a few LUT levels to fix the overflow)
                ge = ~(v_f - data_f)[-1]
                key = Signal(s + 1, name=f"key{s + 1}_{p}")
                m.d.sync += key.eq(key_f[:s].as_unsigned() << 1 | ge if s else ge)
                keys.append(key)
                stage_v.append(v_f)
            cmp_v = [Signal(hdl.signed(self.cmp_width), name=f"c{s + 1}_{p}") for p in range(lanes)]
            fold_d, valid_d = Signal.like(self.fold, name=f"dfold{s + 1}"), Signal(name=f"dvalid{s + 1}")
            fold_f, valid_f = Signal.like(self.fold, name=f"ffold{s + 1}"), Signal(name=f"fvalid{s + 1}")
            cmp_fold = Signal.like(self.fold, name=f"cfold{s + 1}")
            cmp_valid = Signal(name=f"cvalid{s + 1}")
            m.d.sync += [
                fold_d.eq(reg_fold),
                valid_d.eq(reg_valid),
                fold_f.eq(fold_d),
                valid_f.eq(valid_d),
                cmp_fold.eq(fold_f),
                cmp_valid.eq(valid_f),
            ]
            m.d.sync += [c.eq(r) for c, r in zip(cmp_v, stage_v)]
            cur_v, cur_fold, cur_valid, cur_keys = cmp_v, cmp_fold, cmp_valid, keys
        for p in range(lanes):
            m.d.comb += self.result[p].eq(cur_keys[p])
        m.d.comb += self.result_valid.eq(cur_valid)
        return m


@dataclass(frozen=True)
class SearchPlan:
    """How :class:`ProgressionRequantizer` searches a layer's rows (see there). Widths in bits; ``steps`` per stage,
    first stage first; ``luts_per_lane`` the LUT model: per stage its subtractor's bits plus its multiplexers' (the
    kept/restored bits, and in a stage of several steps every bit of ``R`` behind the load multiplexer), plus the
    memory word, ``r``'s adder and the bounds cycle's comparator."""

    neurons: int
    abits: int
    levels: int
    frac_bits: int
    orientation: tuple
    zero: tuple
    d: tuple
    b: tuple
    constant_rows: int
    b_width: int
    d_width: int
    r_range: tuple
    r_width: int
    word_width: int
    steps: tuple
    latency: int
    luts_per_lane: int


def _split(n, per):
    """``n`` steps in stages of at most ``per``, the last ones one fewer where they do not divide evenly."""
    stages = -(-n // per)
    return tuple(n // stages + (k < n % stages) for k in range(stages))


def _stage_cycles(steps):
    """Cycles each stage holds a value: its steps, and one more where a stage of several steps hands its ``r`` on
    from its register (its last step's result then has one load, the register's own multiplexer, where yosys packs
    subtraction result, restore and load into one LUT per bit)."""
    return [m + (m > 1 and k < len(steps) - 1) for k, m in enumerate(steps)]


def _stage_widths(steps, *, d_width):
    """``(R bits, subtractor bits)`` of each stage (:meth:`ProgressionRequantizer._stage`): behind the bounds cycle
    a stage whose first step is bit ``hi`` holds ``0 <= r < D << (hi + 1)``."""
    firsts = [sum(steps[k:]) - 1 for k in range(len(steps))]
    return [(d_width + hi + 1, d_width + 2) for hi in firsts]


def _bounds_widths(*, abits, r_width, d_width):
    """``(comparator bits, clamped r bits)`` of the bounds cycle: ``r >> abits`` against ``D`` (nothing where ``r``
    never reaches ``D << abits``), and ``r`` below ``D << abits``."""
    return (max(r_width - abits, d_width + 1) + 1 if r_width - 1 > abits else 0), d_width + abits


def _plan_search(orientation, a_fx, d_fx, frac_bits, levels, acc_width, acc_range, interval):
    neurons = len(orientation)
    abits = (levels + 1).bit_length() - 1
    if not isinstance(interval, int) or interval < 1:
        raise ValueError(f"interval must be a positive integer, not {interval!r}")
    if levels != 2**abits - 1:
        raise ValueError(f"levels must be 2**abits - 1, not {levels!r}")
    if len(a_fx) != neurons or len(d_fx) != neurons:
        raise ValueError("orientation, a_fx and d_fx must have one entry per neuron")
    if min(int(v) for v in d_fx) <= 0:
        raise ValueError("d_fx must be positive")
    lo, hi = acc_range if acc_range is not None else (-(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1)
    if not -(1 << (acc_width - 1)) <= lo <= hi < 1 << (acc_width - 1):
        raise ValueError(f"acc_range {acc_range!r} does not fit {acc_width}-bit accumulators")
    # a row's level moves one way with acc: equal at both ends of the range, it is one level throughout
    ends = apply_progression([[lo] * neurons, [hi] * neurons], orientation, a_fx, d_fx, frac_bits, levels)
    rows = []
    for s, a, d, c, c_hi in zip(orientation, a_fx, d_fx, ends[0], ends[1]):
        zero = c == c_hi  # stored as v = 0, A = -c, D = 1: r = c
        rows.append((1, 1, -int(c), 1) if zero else (int(s), 0, int(a), int(d)))
    orient, zeros, a_s, d_s = (tuple(col) for col in zip(*rows))
    # r = s * acc * 2^F - A = x * 2^F + B with x = acc or ~acc = -acc - 1 (s = -1), B = -A + (s < 0) * 2^F: the
    # orientation is an inversion inside r's adder, and B's low F bits are r's (no carry comes from x * 2^F)
    b_s = tuple(-a + (s < 0) * (1 << frac_bits) for s, a in zip(orient, a_s))
    b_width = max(frac_bits + 1, signed_width(min(0, *b_s), max(0, *b_s)))
    d_width = unsigned_width(max(d_s))
    vmax = max(-lo, hi)  # |s * acc|
    r_range = (-(vmax << frac_bits) - max(0, *a_s), (vmax << frac_bits) - min(0, *a_s))
    r_width = signed_width(*r_range)
    word_width = 2 + b_width + d_width  # per neuron: negate, zero, B, D
    # a stage takes interval - 1 steps before the next input reaches it (interval > abits: a single stage)
    steps = _split(abits, max(1, interval - 1))
    stages = _stage_widths(steps, d_width=d_width)
    # the bounds' clamp of a negative r is its register's synchronous reset: only the comparator costs LUTs
    luts = word_width + r_width - frac_bits + _bounds_widths(abits=abits, r_width=r_width, d_width=d_width)[0]
    luts += sum(sub + (sub if m == 1 else r_bits) for m, (r_bits, sub) in zip(steps, stages))
    return SearchPlan(
        neurons=neurons,
        abits=abits,
        levels=levels,
        frac_bits=frac_bits,
        orientation=orient,
        zero=zeros,
        d=d_s,
        b=b_s,
        constant_rows=sum(zeros),
        b_width=b_width,
        d_width=d_width,
        r_range=r_range,
        r_width=r_width,
        word_width=word_width,
        steps=steps,
        # memory read, its register, r, the bounds, the stages, the level register
        latency=sum(_stage_cycles(steps)) + 5,
        luts_per_lane=luts,
    )


class ProgressionRequantizer(wiring.Component):
    """``level = clamp(floor((s * acc * 2^F - A) / D), 0, L)`` -- the export's progression thresholds,
    ``#{k in 1..L : s * acc * 2^F >= A + k * D}`` (``docs/folding.md``) -- by a restoring search in stages.

    Per neuron the orientation, ``B = -A + (s < 0) * 2^F`` (A = A_fx) and ``D`` = D_fx > 0 sit in one small memory
    per lane, one word per fold (instead of ``L`` thresholds), and ``r = s * acc * 2^F - A = x * 2^F + B`` with
    ``x = acc`` or ``~acc = -acc - 1``: the orientation is an inversion inside one adder of ``B``'s bits above ``F``.
    A row whose level is the same ``c`` over the whole accumulator range (the export's canonical constants for it
    are ``D = span * 2^F``, ``A ~ -c * D``: the widest numbers of the layer) is stored as ``x = 0``, ``B = c``,
    ``D = 1`` with a flag that zeroes ``x``: the same levels, and the subtractors only as wide as the layer's real
    progressions need.

    The clamps come first, in a cycle of their own (the *bounds*): ``r >= D << abits`` sets a flag that makes the
    level ``L``, and a negative ``r`` goes on as 0 (level 0). What the search sees is then ``0 <= r < D << abits``,
    ``d_width + abits`` bits, however wide ``acc * 2^F`` is. Then for ``j = abits-1 .. 0`` one step each: if
    ``r >= D << j`` then ``r -= D << j`` and level bit ``j`` is set.

    The steps are shared out over a pipeline of stages, each one subtractor that takes one step per cycle: where a
    lane's inputs come ``interval`` or more cycles apart (an MVU's sums come a row fold, SF steps, apart), a stage can
    take ``interval - 1`` steps before the next input reaches it; ``interval > abits`` gives a single stage. A stage
    whose first step is bit ``hi`` holds ``0 <= r < D << (hi + 1)``: a register of ``d_width + hi + 1`` bits and a
    subtractor of ``d_width + 2``. A stage of ``m`` steps compares ``r * 2^t`` with the fixed ``D << hi`` at its
    step ``t``, so neither ``D`` nor a step counter moves: a shift of ``r`` is wiring, and only ``R``'s bits from
    ``hi`` up are subtracted. A stage of several steps hands its remainder on from its register a cycle after its
    last step. Cycles (``SearchPlan.latency``): the memory read, its output register, ``r``, the bounds, a cycle per
    step and one per hand-off, the level register.

    Parameters
    ----------
    orientation : array of ±1, shape ``(neurons,)``
    a_fx, d_fx : int arrays, shape ``(neurons,)``; ``d_fx > 0``
    frac_bits : int
        ``F``.
    levels : int
        ``L = 2**abits - 1``.
    lanes, acc_width : int
        As :class:`ThresholdRequantizer`.
    acc_range : (int, int), optional
        The accumulators' reachable ``(min, max)`` (the export's ``acc_min``, ``acc_max``); default the whole of
        ``acc_width`` bits. The search's widths and the constant rows follow from it.
    interval : int
        Fewest cycles between two inputs (``valid``); 1 (the default) for a pipeline that takes one every cycle.

    Members
    -------
    acc, fold, valid, result, result_valid : as :class:`ThresholdRequantizer`
        ``result`` holds only in the cycle ``result_valid`` is high.
    constant_rows : int
        Rows stored as a constant level.
    """

    def __init__(self, *, orientation, a_fx, d_fx, frac_bits, levels, lanes, acc_width, acc_range=None, interval=1):
        plan = self.plan(
            orientation=orientation,
            a_fx=a_fx,
            d_fx=d_fx,
            frac_bits=frac_bits,
            levels=levels,
            acc_width=acc_width,
            acc_range=acc_range,
            interval=interval,
        )
        self.__dict__.update(vars(plan))
        self.lanes, self.acc_width, self.interval = lanes, acc_width, interval
        self.folds = -(-self.neurons // lanes)
        super().__init__(_level_signature(acc_width=acc_width, lanes=lanes, folds=self.folds, abits=self.abits))

    @staticmethod
    def plan(*, orientation, a_fx, d_fx, frac_bits, levels, acc_width, acc_range=None, interval=1):
        """The search for these rows, before any hardware: a :class:`SearchPlan` (widths, stages, latency, LUTs).
        The matrix-vector unit reads its latency from here before it builds the requantiser."""
        return _plan_search(orientation, a_fx, d_fx, int(frac_bits), levels, acc_width, acc_range, interval)

    def constant_words(self):
        """Memory contents, one list per lane: word ``fold`` = ``negate | zero << 1 | B << 2 | D << (2 + b_width)``
        of neuron ``fold * lanes + lane`` (0 beyond the layer)."""
        bmask = (1 << self.b_width) - 1
        words = [
            int(s < 0) | z << 1 | (b & bmask) << 2 | d << (2 + self.b_width)
            for s, z, b, d in zip(self.orientation, self.zero, self.b, self.d)
        ]
        return [list(col) for col in zip(*_neuron_rows(words, self.folds, self.lanes, 0))]

    def elaborate(self, platform):
        m = Module()
        valid, chain = self.valid, []
        for k in range(self.latency):  # valid travels beside the lanes
            nxt = Signal(name=f"valid_d{k + 1}")
            m.d.sync += nxt.eq(valid)
            valid = nxt
            chain.append(nxt)
        m.d.comb += self.result_valid.eq(valid)
        # stage k takes its input in the cycle chain[3 + (cycles before it)] is high (stage 0: from the bounds)
        cycles = _stage_cycles(self.steps)
        loads = [chain[3 + sum(cycles[:k])] for k in range(len(self.steps))]
        for p, init in enumerate(self.constant_words()):
            mem = Memory(shape=self.word_width, depth=max(2, len(init)), init=init)
            m.submodules[f"const{p}"] = mem
            port = mem.read_port()
            m.d.comb += port.addr.eq(self.fold)
            # cycle 1: the word is read beside the registered acc; cycle 2: both registered again (the ROM output
            # register, inside the block RAM where the flow can put it)
            acc1 = Signal(hdl.signed(self.acc_width), name=f"acc1_{p}")
            acc2 = Signal(hdl.signed(self.acc_width), name=f"acc2_{p}")
            word = Signal(self.word_width, name=f"word2_{p}", reset_less=True)
            m.d.sync += [acc1.eq(self.acc[p]), acc2.eq(acc1), word.eq(port.data)]
            neg, zero = word[0], word[1]
            b_val = word[2 : 2 + self.b_width]
            d_val = word[2 + self.b_width :]
            # cycle 3: r = x * 2^F + B, x = acc, ~acc (s = -1) or 0 (a constant row): one adder of B's top bits,
            # the inversion inside it; B's low F bits are r's. D along.
            x = Mux(zero, 0, Mux(neg, ~acc2, acc2))
            r = Signal(hdl.signed(self.r_width), name=f"r3_{p}")
            d = Signal(self.d_width, name=f"d3_{p}", reset_less=True)
            r_hi = x + b_val[self.frac_bits :].as_signed()
            m.d.sync += [r.eq(Cat(b_val[: self.frac_bits], r_hi).as_signed()), d.eq(d_val)]
            r, d, level = self._bounds(m, p, r, d)
            for k, load in enumerate(loads):
                r, d, level = self._stage(m, p, k, r, d, level, load=load)
            m.d.comb += self.result[p].eq(level)
        return m

    def _bounds(self, m, p, r, d_in):
        """Cycle 4 of lane ``p``: the flag ``r >= D << abits`` (level ``L``; ``r >> abits`` against ``D``, one carry
        chain into one flip-flop) and ``r`` clamped below at 0, only as wide as ``r < D << abits`` needs.
        Returns ``(r, D, flag)`` registered."""
        compare_bits, r_bits = _bounds_widths(abits=self.abits, r_width=self.r_width, d_width=self.d_width)
        over = Signal(name=f"over4_{p}")
        clamped = Signal(r_bits, name=f"r4_{p}")
        d = Signal(self.d_width, name=f"d4_{p}", reset_less=True)
        if compare_bits:
            m.d.sync += over.eq(~(r[self.abits :].as_signed() - d_in)[-1])
        m.d.sync += [clamped.eq(Mux(r[-1], 0, r[:r_bits])), d.eq(d_in)]
        return clamped, d, over

    def _stage(self, m, p, k, r_in, d_in, level_in, *, load):
        """Stage ``k`` of lane ``p``: registers ``R = r * 2^t``, ``D`` and the level bits so far (the bounds' flag
        first), taken from the stage before while ``load`` is high and stepped on every other cycle (after its steps
        the registers are unused until the next load). Returns ``(r, D, level)`` after its last step, for the next
        stage (the last: a register, the level read while ``result_valid`` is high).

        The stage holds ``0 <= r < D << (hi + 1)``, ``hi`` its first step's bit, and only ``R``'s bits from ``hi``
        up take part in the subtraction."""
        steps = self.steps[k]
        hi = sum(self.steps[k:]) - 1
        r_bits, sub_bits = _stage_widths(self.steps, d_width=self.d_width)[k]
        R = Signal(r_bits, name=f"r_s{k}_{p}")
        top = R[hi:]
        d = Signal(self.d_width, name=f"d_s{k}_{p}", reset_less=True)
        handoff = _stage_cycles(self.steps)[k] > steps  # the next stage loads from R, a cycle after the last step
        level = Signal(len(level_in) + steps - 1 + handoff, name=f"level_s{k}_{p}")
        trial = Signal(hdl.signed(sub_bits), name=f"trial_s{k}_{p}")
        m.d.comb += trial.eq(top - d)
        take = ~trial[-1]
        kept = Cat(R[:hi], Mux(take, trial, top)[: len(top)])  # R's bits below hi are not touched
        stepped = Cat(take, level)
        if steps == 1:  # a pipeline stage: a new input every cycle
            m.d.sync += [R.eq(r_in), d.eq(d_in), level.eq(level_in)]
        else:
            with m.If(load):
                m.d.sync += [R.eq(r_in), d.eq(d_in), level.eq(level_in)]
            with m.Else():
                m.d.sync += [R.eq(kept << 1), level.eq(stepped)]
        low = hi - steps + 1  # the last step's bit
        # the remainder after the last step, below D << low: R >> steps a cycle later, or kept >> (steps - 1) now
        # (exact: R's low steps-1 bits are zero at the last step)
        if handoff:
            r_out, stepped = R[steps : steps + self.d_width + low], level
        else:
            r_out = kept[steps - 1 : steps - 1 + self.d_width + low]
        if k < len(self.steps) - 1:
            return r_out, d, stepped
        out = Signal(self.abits, name=f"level_{p}")
        m.d.sync += out.eq(Mux(stepped[-1], self.levels, stepped[: self.abits]))  # the bounds' flag: level L
        return r_out, d, out


class ScoreRequantizer(wiring.Component):
    """``score = m[n] * acc + b[n]`` with ``m[n] * acc`` built from shifts and adds of ``m[n]``'s canonical signed
    digits (constants per neuron, selected by ``fold``).

    The digit terms and ``b`` are summed by a balanced tree with a register after every level, then the fold's sum is
    selected and registered: ``latency`` = :meth:`levels` + 1 cycles, one adder (and one mux) deep per cycle. (A
    stalling consumer wraps it in ``EnableInserter``.)

    Members
    -------
    acc : ``In(ArrayLayout(signed(acc_width), lanes))``
    fold : ``In(range(folds))``
    valid : ``In(1)``
    result : ``Out(ArrayLayout(signed(score_width), lanes))``, the scores, ``latency`` cycles later.
    result_valid : ``Out(1)``
    """

    def __init__(self, *, scale, offset, lanes, acc_width, score_width):
        self.neurons = len(scale)
        self.lanes, self.acc_width, self.score_width = lanes, acc_width, score_width
        self.folds = -(-self.neurons // lanes)
        self._scale, self._offset = [int(v) for v in scale], [int(v) for v in offset]
        self.latency = self.latency_for(scale)
        super().__init__(
            {
                "acc": In(data.ArrayLayout(hdl.signed(acc_width), lanes)),
                "fold": In(range(max(2, self.folds))),
                "valid": In(1),
                "result": Out(data.ArrayLayout(hdl.signed(score_width), lanes)),
                "result_valid": Out(1),
            }
        )

    @classmethod
    def latency_for(cls, scale):
        """Cycles from ``acc`` to ``result``: the adder levels, then the fold's selection."""
        return cls.levels(scale) + 1

    @staticmethod
    def levels(scale):
        """Adder levels for the neuron with the most digits (its terms plus the offset)."""
        n = max((len(csd_digits(int(v))) for v in scale), default=0) + 1
        return max(1, (n - 1).bit_length())

    def elaborate(self, platform):
        m = Module()
        L = self.latency - 1
        fold, valid = self.fold, self.valid
        sums = {}
        for f in range(self.folds):
            for p in range(self.lanes):
                n = f * self.lanes + p
                if n >= self.neurons:
                    continue
                acc = self.acc[p]
                # (value, sign) nodes: a negative digit is never negated on its own (a carry chain more in the
                # cycle) but subtracted where it meets a positive node; the offset is positive, so is the root
                nodes = [(acc << k, sign) for k, sign in csd_digits(self._scale[n])]
                nodes.append((hdl.Const(self._offset[n], hdl.signed(self.score_width)), 1))
                for level in range(L):
                    nxt = []
                    for j in range(0, len(nodes), 2):
                        r = Signal(hdl.signed(self.score_width), name=f"n{n}_l{level}_{j // 2}")
                        value, sign = _signed_sum(nodes[j : j + 2])
                        m.d.sync += r.eq(value)
                        nxt.append((r, sign))
                    nodes = nxt
                assert nodes[0][1] > 0
                sums[(f, p)] = nodes[0][0]
        for level in range(L):  # the fold and valid travel beside the sums
            fr, vr = Signal.like(fold, name=f"fold_l{level}"), Signal(name=f"valid_l{level}")
            m.d.sync += [fr.eq(fold), vr.eq(valid)]
            fold, valid = fr, vr
        for p in range(self.lanes):
            options = [sums.get((f, p), hdl.Const(0, hdl.signed(self.score_width))) for f in range(self.folds)]
            sel = Array(options)[fold] if len(options) > 1 else options[0]
            m.d.sync += self.result[p].eq(sel)
        m.d.sync += self.result_valid.eq(valid)
        return m
