"""One compute layer folded onto ``pe`` rows x ``simd`` lanes: the matrix-vector unit (dense, and conv behind a
sliding window)."""

import numpy as np
from amaranth import hdl
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .credit_fifo import RETURN_DELAY, CreditedOutput
from .input_buffer import InputBuffer
from .matrix import ConstantMatrix, network, plan_matrix
from .requant import ProgressionRequantizer, ScoreRequantizer, ThresholdRequantizer
from .targets import make_tree, tree_latency

__all__ = ["MatrixVectorUnit", "weight_words", "tree_module_name", "mvu_latency", "search_interval"]


def tree_module_name(lanes, in_bits, pipeline, target="portable"):
    suffix = "" if target == "portable" else f"_{target}"
    return f"lutmac_pe_l{lanes}_b{in_bits}_p{pipeline}{suffix}"


def mvu_latency(tree, requant, *, block_rom=False):
    """Cycles from an input beat to its results in the output FIFO, given the tree and requantiser latencies: input
    beat register (1), buffer and weight read (1), their registers (1; 2 for a weight ROM in block RAM: the RAM's
    output register, then the fabric's), tree, accumulate (1), requantiser, output register (1), FIFO (2). The one
    place this pipeline's depth is written."""
    return 3 + block_rom + tree + 1 + requant + 1 + 2


#: Weight ROMs deeper than this many words go to block RAM under ``weight_memory="auto"``: in logic such a ROM
#: takes several LUT4 per bit and a multiplexer level (ECP5's critical path at 160 MHz was one), and several LUT6
#: per bit beyond 64 words; a ROM this shallow stays one LUT per bit.
BLOCK_ROM_MIN_DEPTH = 16

#: ``weight_memory`` choices (:func:`weight_rom_style`)
WEIGHT_MEMORIES = ("auto", "block", "tool")

#: ``search`` choices: a progression requantiser in stages of up to SF - 1 steps, or one step per stage
SEARCHES = ("staged", "pipeline")


def search_interval(search, *, sf):
    """The input interval a progression requantiser is planned for (:class:`~hw.requant.ProgressionRequantizer`'s
    ``interval``): a lane's sums come a row fold, ``sf`` steps, apart, so ``"staged"`` stages take up to SF - 1
    steps; ``"pipeline"`` plans for a new input every cycle, one step per stage."""
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, not {search!r}")
    return sf if search == "staged" else 1


def weight_rom_style(weight_memory, *, depth):
    """The ``rom_style`` attribute (yosys and Vivado both read it) of a weight ROM of ``depth`` words (``None``: a
    hard-wired layer has none): ``"block"`` or ``None`` (no attribute)."""
    if weight_memory not in WEIGHT_MEMORIES:
        raise ValueError(f"weight_memory must be one of {', '.join(WEIGHT_MEMORIES)}, not {weight_memory!r}")
    if depth is None or weight_memory == "tool":
        return None
    return "block" if weight_memory == "block" or depth > BLOCK_ROM_MIN_DEPTH else None


def weight_words(weights, pe, simd):
    """Weight memory contents for a folding, one memory per PE: ``words[p][nf * SF + sf]`` holds at bit ``l`` the
    weight of row ``nf * pe + p`` for column ``sf * simd + l`` (1 = +1). Padding rows/columns are +1 and only
    ever meet zero inputs."""
    rows, cols = weights.shape
    nf, sf = -(-rows // pe), -(-cols // simd)
    padded = np.ones((nf * pe, sf * simd), dtype=np.uint8)
    padded[:rows, :cols] = weights > 0
    blocks = padded.reshape(nf, pe, sf, simd).transpose(1, 0, 2, 3).reshape(pe, nf * sf, simd)
    bits = np.packbits(blocks, axis=2, bitorder="little")
    return [[int.from_bytes(word.tobytes(), "little") for word in per_pe] for per_pe in bits]


class MatrixVectorUnit(wiring.Component):
    """A binary-weight matrix-vector product, folded: ``pe`` sign-flip adder trees of ``simd`` lanes each.

    Inputs arrive into an :class:`~hw.input_buffer.InputBuffer` (ping-pong, so the next vector loads while this one
    is used once per row fold). For a dense layer a vector is the whole input (the previous layer's output map, its
    pixels' channels in ``group``s); for a conv layer it is one output pixel's patch, ``kernel**2`` beats of
    ``group`` = C channels from the sliding window. Each cycle one ``(row fold, column fold)`` step is processed: the
    weights of the step (one :class:`~amaranth.lib.memory.Memory` per PE, laid out for the folding) meet the step's
    lanes in the trees, the accumulators sum the column folds, and the layer's multiplier-free requantiser turns each
    row fold's sums into ``pe`` output values (neurons ``nf * pe ...``), one output beat per row fold.

    The pipeline never stalls: a row fold starts only with a credit, a place reserved in the output FIFO
    (:class:`~hw.credit_fifo.CreditedOutput`), so the downstream ``ready`` reaches the credit counter and the FIFO
    alone, never the thousands of pipeline registers (a chip-wide enable net would set the clock).

    Parameters
    ----------
    weights : (rows, columns) array of ±1
    in_bits : int
        Width of the unsigned inputs.
    group, in_lanes : int
        Input format: ``columns / group`` groups per vector, each ``ceil(group / in_lanes)`` beats of ``in_lanes``.
    pe, simd : int
        Folding; each in 1..rows and 1..columns.
    acc_width : int
        Accumulator width (the exporter's worst case).
    thresholds : ``(orientation, thresholds)``, optional
        Hidden layer requantisation by a threshold table (:class:`~hw.requant.ThresholdRequantizer`).
    progression : ``(orientation, a_fx, d_fx, frac_bits, levels, acc_range)``, optional
        Hidden layer requantisation by progression thresholds (:class:`~hw.requant.ProgressionRequantizer`;
        ``acc_range`` the accumulators' reachable ``(min, max)``, or ``None`` for all of ``acc_width``).
    scores : ``(scale, offset, score_width)``, optional
        Output layer requantisation.
    tree_pipeline : int
        Register every this many adder levels (0: combinational trees).
    hardwired : bool
        Bake the weights in as constants: one :class:`~hw.matrix.ConstantMatrix` for all rows, partial sums shared
        across them, no weight memory. Only for a fully parallel layer (``pe = rows``, ``simd = columns``: one step
        per vector); ``tree_latency`` is then the matrix's registered levels.
    tree_target : str
        Netlist of the adder trees (:data:`hw.targets.TARGETS`): ``"portable"`` RTL, or Xilinx primitives (a
        hard-wired layer's matrix then fuses its single-use adders into ternary adders: ``primitives`` names them).
    buffers : str
        Storage of the input buffer (:class:`~hw.input_buffer.InputBuffer`'s ``storage``).
    weight_memory : str
        Where each PE's weight ROM goes (:func:`weight_rom_style`): ``"auto"`` (block RAM when deeper than
        :data:`BLOCK_ROM_MIN_DEPTH` words), ``"block"`` (always) or ``"tool"`` (no attribute: the synthesis tool's
        choice; yosys maps ROMs to logic).
    search : str
        A progression requantiser's stages (:data:`SEARCHES`): ``"staged"``, up to SF - 1 steps each, since a lane's
        sums come SF cycles apart (fewest LUTs); ``"pipeline"``, one step each, whose registers take a new value
        every cycle (no load multiplexer behind the subtractor: a faster clock for about twice the LUTs).
    tree_modules : dict, optional
        When given, each PE is an ``Instance`` of a separately emitted tree module, recorded here as
        ``name -> tree``: Verilog emission then converts one tree per shape instead of one per PE (much faster for
        large networks). Without it the trees are ordinary submodules (for amaranth.sim).

    Members
    -------
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), in_lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
    sf, nf : int
        Column and row folds; ``cycles = sf * nf`` steps per vector.
    latency : int
        :func:`mvu_latency` for this unit.
    search : :class:`~hw.requant.SearchPlan` or None
        The progression requantiser's plan (stages, widths), for a ``progression=`` unit.
    """

    def __init__(
        self,
        *,
        weights,
        in_bits,
        in_lanes,
        pe,
        simd,
        acc_width,
        group=None,
        thresholds=None,
        scores=None,
        progression=None,
        tree_pipeline=0,
        tree_modules=None,
        tree_target="portable",
        hardwired=False,
        buffers="auto",
        weight_memory="auto",
        search="staged",
    ):
        if sum(x is not None for x in (thresholds, progression, scores)) != 1:
            raise ValueError("exactly one of thresholds=, progression= or scores= is needed")
        self.out_features, self.in_features = weights.shape
        for name, v, hi in (("pe", pe, self.out_features), ("simd", simd, self.in_features)):
            if not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"{name} must be an integer in 1..{hi}, not {v!r}")
        self.pe, self.simd, self.in_bits, self.in_lanes = pe, simd, in_bits, in_lanes
        self.group = self.in_features if group is None else group
        self.acc_width = acc_width
        self.sf = -(-self.in_features // simd)
        self.nf = -(-self.out_features // pe)
        self.in_beats = (self.in_features // self.group) * -(-self.group // in_lanes)
        self._weights = weights
        self.tree_pipeline = tree_pipeline
        self._tree_modules = tree_modules
        self.tree_target = tree_target
        self.hardwired = bool(hardwired)
        self.search = None  # a progression requantiser's plan (hw.requant.SearchPlan)
        self.buffers = buffers
        self.weight_rom_style = weight_rom_style(weight_memory, depth=None if hardwired else self.sf * self.nf)
        search_every = search_interval(search, sf=self.sf)  # checked for every unit; a progression's plan takes it
        if self.hardwired and (self.sf, self.nf) != (1, 1):
            raise ValueError(
                f"a hard-wired layer is fully parallel: pe must be {self.out_features} and simd "
                f"{self.in_features}, not {pe} and {simd}"
            )
        if self.hardwired:  # planned here (the latency needs its depth), built when elaborated
            self._matrix_plan = plan_matrix(np.where(weights.T > 0, 1, -1), in_bits, target=tree_target)
            matrix = network(self._matrix_plan, tree_target)  # on a Xilinx target: ternary adders, fewer levels
            self.tree_latency = ConstantMatrix.latency_for(matrix.depth, tree_pipeline)
            self.primitives = matrix.primitives
        else:
            self.tree_latency = tree_latency(target=tree_target, lanes=simd, pipeline=tree_pipeline)
            self.primitives = set()  # the trees' own are theirs (tree_modules)
        if progression is not None:
            orient, a_fx, d_fx, frac_bits, levels, acc_range = progression
            rows = dict(orientation=orient, a_fx=a_fx, d_fx=d_fx, frac_bits=frac_bits, levels=levels)
            rows.update(acc_width=acc_width, acc_range=acc_range, interval=search_every)
            self.search = ProgressionRequantizer.plan(**rows)
            self._make_requant = lambda: ProgressionRequantizer(**rows, lanes=pe)
            out_shape = hdl.unsigned(self.search.abits)
            requant_latency = self.search.latency
        elif thresholds is not None:
            self._make_requant = lambda: ThresholdRequantizer(
                orientation=thresholds[0], thresholds=thresholds[1], lanes=pe, acc_width=acc_width
            )
            levels = thresholds[1].shape[1]
            out_shape = hdl.unsigned((levels + 1).bit_length() - 1)
            requant_latency = ThresholdRequantizer.latency_for(out_shape.width)
        else:
            scale, offset, score_width = scores
            self._make_requant = lambda: ScoreRequantizer(
                scale=scale, offset=offset, lanes=pe, acc_width=acc_width, score_width=score_width
            )
            out_shape = hdl.signed(score_width)
            requant_latency = ScoreRequantizer.latency_for(scale)
        self.out_shape = out_shape
        self.latency = mvu_latency(self.tree_latency, requant_latency, block_rom=self.weight_rom_style == "block")
        # output FIFO places: every result that can be in flight when a row fold starts, plus slack, so credits
        # never hold back a consumer that keeps up (results leave one per SF cycles)
        self.fifo_depth = -(-(self.latency + RETURN_DELAY) // self.sf) + 2
        self.cycles = self.sf * self.nf
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(hdl.unsigned(in_bits), in_lanes))),
                "o": Out(stream.Signature(data.ArrayLayout(out_shape, pe))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buf = InputBuffer(
            length=self.in_features,
            bits=self.in_bits,
            group=self.group,
            lanes=self.in_lanes,
            simd=self.simd,
            row_folds=self.nf,
            storage=self.buffers,
        )
        wiring.connect(m, wiring.flipped(self.i), buf.i)
        m.submodules.out = out = CreditedOutput(shape=data.ArrayLayout(self.out_shape, self.pe), depth=self.fifo_depth)
        wiring.connect(m, out.o, wiring.flipped(self.o))

        ctl, waddr = self._sequencer(m, buf, out)
        wdata = self._weight_source(m, waddr)
        # stage B: the weight words and lanes registered once more, so a block RAM's slow clock-to-output ends in
        # a register (which ECP5 and Xilinx flows fold into the RAM's own output register); for a block RAM twice
        x_b, ctl_b = buf.x, ctl
        for k in range(1 + (self.weight_rom_style == "block")):
            x_next, ctl_next = Signal.like(buf.x, reset_less=True, name=f"x_b{k}"), Signal.like(ctl, name=f"ctl_b{k}")
            m.d.sync += [x_next.eq(x_b), ctl_next.eq(ctl_b)]
            x_b, ctl_b = x_next, ctl_next
        totals = self._pe_array(m, x_b, wdata)
        for k in range(self.tree_latency):  # control travels beside the trees' registers
            nxt = Signal.like(ctl_b, name=f"ctl_tree{k}")
            m.d.sync += nxt.eq(ctl_b)
            ctl_b = nxt
        final, final_valid, final_nf = self._accumulate(m, ctl_b, totals)

        # requantise, then the output register, then the output FIFO
        m.submodules.requant = rq = self._make_requant()
        m.d.comb += [rq.acc.eq(final), rq.fold.eq(final_nf), rq.valid.eq(final_valid)]
        out_r = Signal.like(rq.result, reset_less=True)
        out_r_valid = Signal()
        m.d.sync += [out_r.eq(rq.result), out_r_valid.eq(rq.result_valid)]
        m.d.comb += [out.w_data.eq(out_r), out.w_en.eq(out_r_valid)]
        return m

    def _sequencer(self, m, buf, out):
        """The fold counters: a step issues when the buffer holds a vector and, at a row fold's first column fold,
        the output has a credit. Returns the registered step control (aligned with ``buf.x``) and the weight
        address, which walks 0 .. SF*NF-1 in order (a counter, so no nf * SF + sf multiplier)."""
        SF, NF = self.sf, self.nf
        nf = Signal(range(max(2, NF)))
        sf = Signal(range(max(2, SF)))
        # "sf == 0" and "sf == SF - 1" as registers of sf's next value: the issue decision `go`, which reaches the
        # whole unit, is then one gate after registers
        first, last = Signal(init=1), Signal(init=SF == 1)
        last_all = last & (nf == NF - 1)
        go = Signal()
        m.d.comb += [go.eq(buf.full & (~first | out.has_credit)), out.take.eq(go & first)]
        sf_next = Signal.like(sf)
        m.d.comb += sf_next.eq(sf)
        with m.If(go):
            m.d.comb += sf_next.eq(hdl.Mux(last, 0, sf + 1))
            with m.If(last):
                m.d.sync += nf.eq(hdl.Mux(nf == NF - 1, 0, nf + 1))
        m.d.sync += [sf.eq(sf_next), first.eq(sf_next == 0), last.eq(sf_next == SF - 1)]
        m.d.comb += [buf.step.eq(go), buf.release.eq(last_all), buf.sf_next.eq(sf_next)]
        waddr = Signal(range(max(2, SF * NF)))
        with m.If(go):
            m.d.sync += waddr.eq(hdl.Mux(last_all, 0, waddr + 1))
        # clear: the step that ends a row fold (its sums leave, the accumulators restart from 0)
        ctl = Signal(data.StructLayout({"valid": 1, "clear": 1, "nf": range(max(2, NF))}))
        m.d.sync += [ctl.valid.eq(go), ctl.clear.eq(go & last), ctl.nf.eq(nf)]
        return ctl, waddr

    def _weight_source(self, m, waddr):
        """Per PE, the step's ``simd`` weight bits, registered (stage B): a memory read at ``waddr``, or the one
        constant word of a hard-wired layer. A block RAM's word is registered twice: once in the RAM's own output
        register (its clock-to-output is slow), once in the fabric (the word fans out to every lane of a tree,
        across the chip from the RAM column)."""
        wdata = []
        for p, init in enumerate(weight_words(self._weights, self.pe, self.simd)):
            if self.hardwired:
                wdata.append(init[0])
                continue
            attrs = {"rom_style": self.weight_rom_style} if self.weight_rom_style else None
            mem = Memory(shape=self.simd, depth=max(2, self.sf * self.nf), init=init, attrs=attrs)
            m.submodules[f"weights{p}"] = mem
            port = mem.read_port()
            early = self.weight_rom_style == "block"
            m.d.comb += port.addr.eq(waddr)
            word = port.data
            if early:
                word = Signal(self.simd, name=f"wout{p}", reset_less=True)  # the RAM's output register
                m.d.sync += word.eq(port.data)
            w_b = Signal(self.simd, name=f"wreg{p}", reset_less=True)
            m.d.sync += w_b.eq(word)
            wdata.append(w_b)
        return wdata

    def _pe_array(self, m, x, wdata):
        """``pe`` adder trees over the lanes ``x`` (a hard-wired layer: one shared-sum matrix); returns their sums
        (``tree_latency`` cycles later)."""
        if self.hardwired:
            m.submodules.matrix = mat = ConstantMatrix(
                weights=None,
                in_bits=self.in_bits,
                pipeline=self.tree_pipeline,
                plan=self._matrix_plan,
                target=self.tree_target,
            )
            m.d.comb += mat.x.eq(x)
            return [mat.y[p] for p in range(self.pe)]
        totals = []
        for p, w in enumerate(wdata):
            if self._tree_modules is None:
                tree = make_tree(
                    target=self.tree_target, lanes=self.simd, in_bits=self.in_bits, pipeline=self.tree_pipeline
                )
                m.submodules[f"pe{p}"] = tree
                m.d.comb += [tree.x.eq(x), tree.w.eq(w)]
                totals.append(tree.total)
            else:
                name = tree_module_name(self.simd, self.in_bits, self.tree_pipeline, self.tree_target)
                if name not in self._tree_modules:
                    self._tree_modules[name] = make_tree(
                        target=self.tree_target, lanes=self.simd, in_bits=self.in_bits, pipeline=self.tree_pipeline
                    )
                total = Signal(hdl.signed(self._tree_modules[name].width), name=f"total{p}")
                clocking = dict(i_clk=ClockSignal(), i_rst=ResetSignal(), i_en=1) if self.tree_pipeline else {}
                m.submodules[f"pe{p}"] = Instance(name, i_x=x.as_value(), i_w=w, o_total=total, **clocking)
                totals.append(total)
        return totals

    def _accumulate(self, m, ctl, totals):
        """Sum the column folds of each row fold; the last one's sums leave registered with their row fold. An
        accumulator is cleared as its row fold's sums leave (its register's synchronous reset, over its enable as
        both families' flip-flops have it), so a row fold starts from 0 with no multiplexer in front of the adder."""
        final = Signal(data.ArrayLayout(hdl.signed(self.acc_width), self.pe))
        final_valid = Signal()
        final_nf = Signal.like(ctl.nf)
        m.d.sync += [final_valid.eq(ctl.clear), final_nf.eq(ctl.nf)]
        for p, total in enumerate(totals):
            acc = Signal(hdl.signed(self.acc_width), name=f"acc{p}")
            s = Signal(hdl.signed(self.acc_width), name=f"sum{p}")
            m.d.comb += s.eq(acc + total)
            with m.If(ctl.clear):
                m.d.sync += acc.eq(0)
            with m.Elif(ctl.valid):
                m.d.sync += acc.eq(s)
            m.d.sync += final[p].eq(s)
        return final, final_valid, final_nf
