"""One layer folded onto ``pe`` rows x ``simd`` lanes: the matrix-vector unit."""

import numpy as np
from amaranth import hdl
from amaranth.hdl import Array, Cat, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adder_tree import tree_depth
from .constant_tree import ConstantWeightTree
from .credit_fifo import RETURN_DELAY, CreditedOutput
from .targets import make_tree, tree_latency
from .requant import ScoreRequantizer, ThresholdRequantizer

__all__ = ["MatrixVectorUnit", "fold_cycles", "weight_words", "tree_module_name"]

LANES_PER_SELECT = 4   # input lanes sharing one copy of the buffer's read select


def tree_module_name(lanes, in_bits, pipeline, target="portable"):
    suffix = "" if target == "portable" else f"_{target}"
    return f"lutmac_pe_l{lanes}_b{in_bits}_p{pipeline}{suffix}"


def fold_cycles(in_features, out_features, pe, simd):
    """Cycles one input vector occupies the unit: ``ceil(in / simd) * ceil(out / pe)``."""
    return -(-in_features // simd) * -(-out_features // pe)


def weight_words(weights, pe, simd):
    """Weight memory contents for a folding, one memory per PE: ``words[p][nf * SF + sf]`` holds at bit ``l`` the
    weight of neuron ``nf * pe + p`` for input ``sf * simd + l`` (1 = +1). Padding rows/columns are +1 and only
    ever meet zero inputs."""
    rows, cols = weights.shape
    nf, sf = -(-rows // pe), -(-cols // simd)
    padded = np.ones((nf * pe, sf * simd), dtype=np.uint8)
    padded[:rows, :cols] = weights > 0
    blocks = padded.reshape(nf, pe, sf, simd).transpose(1, 0, 2, 3).reshape(pe, nf * sf, simd)
    bits = np.packbits(blocks, axis=2, bitorder="little")
    return [[int.from_bytes(word.tobytes(), "little") for word in per_pe] for per_pe in bits]


class MatrixVectorUnit(wiring.Component):
    """A binary-weight fully connected layer, folded: ``pe`` sign-flip adder trees of ``simd`` lanes each.

    Inputs arrive ``in_lanes`` values per beat (the previous unit's PE count, or the pixels per input beat) into a
    ping-pong buffer, so the next vector loads while this one is used once per row fold. The weights sit in a
    :class:`~amaranth.lib.memory.Memory` laid out for the folding. Each cycle one ``(row fold, column fold)`` pair
    is processed; the accumulators then go through the layer's multiplier-free requantiser. Output beats carry
    ``pe`` values (neurons ``nf * pe ...``) per row fold. A stalled output freezes the compute pipeline.

    Parameters
    ----------
    weights : (out, in) array of ±1
    in_bits : int
        Width of the unsigned inputs.
    in_lanes : int
        Values per input beat.
    pe, simd : int
        Folding; clipped to the layer by the caller.
    acc_width : int
        Accumulator width (the exporter's worst case).
    thresholds : ``(orientation, thresholds)``, optional
        Hidden layer requantisation.
    scores : ``(scale, offset, score_width)``, optional
        Output layer requantisation.
    tree_pipeline : int
        Register every this many adder levels (0: combinational trees).
    hardwired : bool
        Bake the weights into the trees as constants (:class:`~hw.constant_tree.ConstantWeightTree`): no weight
        memory, each MAC a fixed add or subtract. Only for a fully parallel layer (``pe = out``, ``simd = in``).
    tree_target : str
        Netlist of the adder trees (:data:`hw.targets.TARGETS`): ``"portable"`` RTL, or Xilinx primitives.
    tree_modules : dict, optional
        When given, each PE is an ``Instance`` of a separately emitted tree module, recorded here as
        ``name -> SignFlipAdderTree``: Verilog emission then converts one tree per shape instead of one per PE
        (much faster for large networks). Without it the trees are ordinary submodules (for amaranth.sim).

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), in_lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
    """

    def __init__(self, *, weights, in_bits, in_lanes, pe, simd, acc_width, thresholds=None, scores=None,
                 tree_pipeline=0, tree_modules=None, tree_target="portable", hardwired=False):
        if (thresholds is None) == (scores is None):
            raise ValueError("exactly one of thresholds= or scores= is needed")
        self.out_features, self.in_features = weights.shape
        for name, v, hi in (("pe", pe, self.out_features), ("simd", simd, self.in_features)):
            if not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"{name} must be an integer in 1..{hi}, not {v!r}")
        self.pe, self.simd, self.in_bits, self.in_lanes = pe, simd, in_bits, in_lanes
        self.acc_width = acc_width
        self.sf = -(-self.in_features // simd)
        self.nf = -(-self.out_features // pe)
        self.in_beats = -(-self.in_features // in_lanes)
        self._weights = weights
        self.tree_pipeline = tree_pipeline
        self._tree_modules = tree_modules
        self.tree_target = tree_target
        self.hardwired = bool(hardwired)
        if self.hardwired and (self.sf, self.nf) != (1, 1):
            raise ValueError(f"a hard-wired layer is fully parallel: pe must be {self.out_features} and simd "
                             f"{self.in_features}, not {pe} and {simd}")
        self._make_tree = lambda: make_tree(target=tree_target, lanes=simd, in_bits=in_bits, pipeline=tree_pipeline)
        self.tree_latency = ((tree_depth(simd) + 1) // tree_pipeline if tree_pipeline else 0) if self.hardwired \
            else tree_latency(target=tree_target, lanes=simd, pipeline=tree_pipeline)
        if thresholds is not None:
            self._make_requant = lambda: ThresholdRequantizer(
                orientation=thresholds[0], thresholds=thresholds[1], lanes=pe, acc_width=acc_width)
            levels = thresholds[1].shape[1]
            out_shape = hdl.unsigned((levels + 1).bit_length() - 1)
            requant_latency = ThresholdRequantizer.latency_for(out_shape.width)
        else:
            scale, offset, score_width = scores
            self._make_requant = lambda: ScoreRequantizer(
                scale=scale, offset=offset, lanes=pe, acc_width=acc_width, score_width=score_width)
            out_shape = hdl.signed(score_width)
            requant_latency = ScoreRequantizer.levels(scale) + 1
        self.out_shape = out_shape
        self.out_shape_beat = data.ArrayLayout(out_shape, pe)
        # input write register (1) + memory read (1) + read register (1) + tree + accumulate (1) + requantiser +
        # output register (1) + FIFO (2)
        self.latency = 3 + self.tree_latency + 1 + requant_latency + 1 + 2
        # output FIFO places: every result that can be in flight when a row fold starts, plus slack, so credits
        # never hold back a consumer that keeps up (results leave one per SF cycles)
        self.fifo_depth = -(-(self.latency + RETURN_DELAY) // self.sf) + 2
        self.cycles = self.sf * self.nf
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(hdl.unsigned(in_bits), in_lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(out_shape, pe))),
        })

    def elaborate(self, platform):
        m = Module()
        n_in, S, P, SF, NF = self.in_features, self.simd, self.pe, self.sf, self.nf

        # ---- input side: ping-pong buffer of two whole input vectors, written in_lanes values per beat
        bank = [[Signal(self.in_bits, name=f"buf{b}_{i}") for i in range(n_in)] for b in range(2)]
        full = Signal(2)
        wbank = Signal()
        wbeat = Signal(range(max(2, self.in_beats)))
        m.d.comb += self.i.ready.eq(~full.bit_select(wbank, 1))
        # an accepted beat is registered first and written into its bank the cycle after: the write enables fan
        # out to every buffer register, and the beat arrives from the previous unit, maybe from across the chip
        beat = Signal.like(self.i.payload, reset_less=True)
        beat_valid, beat_bank, beat_last = Signal(), Signal(), Signal()
        beat_index = Signal.like(wbeat)
        accept = self.i.valid & self.i.ready
        m.d.sync += [beat.eq(self.i.payload), beat_valid.eq(accept), beat_bank.eq(wbank), beat_index.eq(wbeat),
                     beat_last.eq(wbeat == self.in_beats - 1)]
        with m.If(beat_valid):
            for b in range(2):
                for i in range(n_in):
                    with m.If((beat_bank == b) & (beat_index == i // self.in_lanes)):
                        m.d.sync += bank[b][i].eq(beat[i % self.in_lanes])
        with m.If(accept):
            with m.If(wbeat == self.in_beats - 1):
                m.d.sync += [wbeat.eq(0), wbank.eq(~wbank)]
            with m.Else():
                m.d.sync += wbeat.eq(wbeat + 1)
        set_full = Signal(2)
        clr_full = Signal(2)
        m.d.comb += set_full.eq(Cat(beat_valid & beat_last & (beat_bank == b) for b in range(2)))

        # ---- compute side: a pipeline that never stalls. A row fold starts only with a credit, i.e. a free place
        # in the output FIFO reserved for its result, so the downstream `ready` reaches the credit counter and the
        # FIFO alone, never the thousands of pipeline registers (a chip-wide enable net would set the clock).
        m.submodules.out = out = CreditedOutput(shape=self.out_shape_beat, depth=self.fifo_depth)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        rbank = Signal()
        nf = Signal(range(max(2, NF)))
        sf = Signal(range(max(2, SF)))
        busy = full.bit_select(rbank, 1)
        first, last, last_all = sf == 0, sf == SF - 1, (sf == SF - 1) & (nf == NF - 1)
        go = Signal()            # one (row fold, column fold) step enters the pipeline this cycle
        m.d.comb += [go.eq(busy & (~first | out.has_credit)), out.take.eq(go & first)]
        with m.If(go):
            with m.If(last):
                m.d.sync += sf.eq(0)
                with m.If(nf == NF - 1):
                    m.d.sync += [nf.eq(0), rbank.eq(~rbank)]
                with m.Else():
                    m.d.sync += nf.eq(nf + 1)
            with m.Else():
                m.d.sync += sf.eq(sf + 1)
        # copies of (sf, rbank) for every LANES_PER_SELECT input lanes: the buffer's read multiplexers are SF:1 per
        # bit, and one select register fanned out to all of them was a critical path; `keep` stops yosys merging
        # the identical registers back into one
        sf_next, rbank_next = Signal.like(sf), Signal()
        m.d.comb += [sf_next.eq(sf), rbank_next.eq(rbank)]
        with m.If(go):
            m.d.comb += [sf_next.eq(hdl.Mux(last, 0, sf + 1)), rbank_next.eq(rbank ^ last_all)]
        selects = []
        for g in range(-(-S // LANES_PER_SELECT)):
            sel_sf = Signal.like(sf, name=f"sel_sf{g}", attrs={"keep": 1})
            sel_bank = Signal(name=f"sel_bank{g}", attrs={"keep": 1})
            m.d.sync += [sel_sf.eq(sf_next), sel_bank.eq(rbank_next)]
            selects.append((sel_sf, sel_bank))
        m.d.comb += clr_full.eq(Cat(go & last_all & (rbank == b) for b in range(2)))
        m.d.sync += full.eq((full | set_full) & ~clr_full)

        # stage A: one weight memory per PE (S bits wide) read, input lanes from the buffer, control
        # the address walks 0 .. SF*NF-1 in order, so a counter replaces nf * SF + sf (no multiplier anywhere)
        waddr = Signal(range(max(2, SF * NF)))
        with m.If(go):
            m.d.sync += waddr.eq(hdl.Mux(last_all, 0, waddr + 1))
        wdata = []
        for p, init in enumerate(weight_words(self._weights, P, S)):
            if self.hardwired:
                wdata.append(init[0])   # the one weight word, a constant baked into the tree
                continue
            mem = Memory(shape=S, depth=max(2, SF * NF), init=init)
            m.submodules[f"weights{p}"] = mem
            port = mem.read_port()
            m.d.comb += port.addr.eq(waddr)
            wdata.append(port.data)
        x_a = Signal(data.ArrayLayout(hdl.unsigned(self.in_bits), S), reset_less=True)
        # the lanes of the step at the read address (valid or not: ctl says)
        for lane in range(S):
            per_bank = [[bank[b][f * S + lane] if f * S + lane < n_in else hdl.Const(0, self.in_bits)
                         for f in range(SF)] for b in range(2)]
            sel_sf, sel_bank = selects[lane // LANES_PER_SELECT]
            pick = [Array(c)[sel_sf] if SF > 1 else c[0] for c in per_bank]
            m.d.sync += x_a[lane].eq(hdl.Mux(sel_bank, pick[1], pick[0]))
        ctl = data.StructLayout({"valid": 1, "first": 1, "last": 1, "nf": range(max(2, NF))})
        ctl_a = Signal(ctl)
        m.d.sync += [ctl_a.valid.eq(go), ctl_a.first.eq(first), ctl_a.last.eq(last), ctl_a.nf.eq(nf)]
        # stage B: the weight words and input lanes registered once more, so a block RAM's slow clock-to-output
        # ends in a register (which ECP5 and Xilinx flows fold into the RAM's own output register)
        x_b = Signal.like(x_a, reset_less=True)
        ctl_b = Signal(ctl)
        m.d.sync += [x_b.eq(x_a), ctl_b.eq(ctl_a)]
        for p, w in enumerate(wdata):
            if not self.hardwired:
                w_b = Signal(S, name=f"wreg{p}", reset_less=True)
                m.d.sync += w_b.eq(w)
                wdata[p] = w_b

        # stage C: P adder trees (optionally pipelined; their registers stall with the rest)
        totals = []
        for p in range(P):
            w = wdata[p]
            if self.hardwired:
                tree = ConstantWeightTree(weights=[(w >> i) & 1 for i in range(S)], in_bits=self.in_bits,
                                          pipeline=self.tree_pipeline)
                m.submodules[f"pe{p}"] = tree
                m.d.comb += tree.x.eq(x_b)
                totals.append(tree.total)
            elif self._tree_modules is None:
                tree = self._make_tree()
                m.submodules[f"pe{p}"] = tree
                m.d.comb += [tree.x.eq(x_b), tree.w.eq(w)]
                totals.append(tree.total)
            else:
                name = tree_module_name(S, self.in_bits, self.tree_pipeline, self.tree_target)
                if name not in self._tree_modules:
                    self._tree_modules[name] = self._make_tree()
                total = Signal(hdl.signed(self._tree_modules[name].width), name=f"total{p}")
                clocking = dict(i_clk=ClockSignal(), i_rst=ResetSignal(), i_en=1) if self.tree_pipeline else {}
                m.submodules[f"pe{p}"] = Instance(name, i_x=x_b.as_value(), i_w=w, o_total=total, **clocking)
                totals.append(total)
        ctl_c = ctl_b
        for k in range(self.tree_latency):
            nxt = Signal(ctl, name=f"ctl_tree{k}")
            m.d.sync += nxt.eq(ctl_c)
            ctl_c = nxt

        # stage D: accumulate across column folds
        acc = [Signal(hdl.signed(self.acc_width), name=f"acc{p}") for p in range(P)]
        final = Signal(data.ArrayLayout(hdl.signed(self.acc_width), P))
        final_valid = Signal()
        final_nf = Signal(range(max(2, NF)))
        m.d.sync += final_valid.eq(ctl_c.valid & ctl_c.last)
        m.d.sync += final_nf.eq(ctl_c.nf)
        for p in range(P):
            s = Signal(hdl.signed(self.acc_width), name=f"sum{p}")
            m.d.comb += s.eq(hdl.Mux(ctl_c.first, 0, acc[p]) + totals[p])
            with m.If(ctl_c.valid):
                m.d.sync += acc[p].eq(s)
            m.d.sync += final[p].eq(s)

        # stage E: requantise; stage F: output register, then the output FIFO
        m.submodules.requant = rq = self._make_requant()
        m.d.comb += [rq.acc.eq(final), rq.fold.eq(final_nf), rq.valid.eq(final_valid)]
        out_data, out_valid = (rq.level, rq.level_valid) if isinstance(rq, ThresholdRequantizer) \
            else (rq.score, rq.score_valid)
        out_r = Signal.like(out_data, reset_less=True)
        out_r_valid = Signal()
        m.d.sync += [out_r.eq(out_data), out_r_valid.eq(out_valid)]
        m.d.comb += [out.w_data.eq(out_r), out.w_en.eq(out_r_valid)]
        return m
