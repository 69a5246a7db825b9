"""python -m hw: `gen` writes the network's Verilog from an export; `fold` chooses a folding; `pe` emits one
processing element; `matrix` one constant ±1 matrix-vector product with shared partial sums."""

import argparse
import sys
from pathlib import Path

from . import HardwareError
from .mvu import BLOCK_ROM_MIN_DEPTH, SEARCHES, WEIGHT_MEMORIES
from .targets import TARGETS


def _gen(a):
    import time

    from .gen import generate

    t0 = time.perf_counter()
    d = generate(
        a.export,
        a.out,
        pe=a.pe,
        simd=a.simd,
        folding_file=a.folding,
        tree_pipeline=a.tree_pipeline,
        buffers=a.buffers,
        weight_memory=a.weight_memory,
        search=a.search,
        target=a.target,
        hardwired=[n for n in (a.hardwired or "").split(",") if n],
        lut_budget=a.lut_budget,
        target_cycles=a.target_cycles,
        fit_luts=a.fit_luts,
        warn=lambda s: print(s, file=sys.stderr),
        name=a.name,
        axis=a.axis,
    )
    folds = ", ".join(
        f"{layer['name']} {layer['pe']}x{layer['simd']} ({layer['cycles']} cyc)"
        if "pe" in layer
        else f"{layer['name']} ({layer['cycles']} cyc)"
        for layer in d["layers"]
    )
    print(
        f"{a.out}/top.v: {folds}; fold bound {d['fold_bound_cycles']} cycles/image, "
        f"{d['beats_per_image']} beats/image, ~{d['estimated_luts']} LUTs est. for --target {d['tree_target']} "
        f"(synth_xilinx LUT6), "
        f"{time.perf_counter() - t0:.1f} s"
    )
    if a.axis or a.name:
        pin, pout = d["ports"]["in"], d["ports"]["out"]
        print(
            f"{a.out}/top.v: top module {d['top']}"
            + (
                f", AXI4-Stream: s_axis_tdata {pin['width']} bits, m_axis_tdata {pout['width']} bits, aclk, aresetn "
                f"(active low)"
                if a.axis
                else ""
            )
        )
    return 0


def _fold(a):
    from common.files import atomic_write_json

    from .autofold import floor_cycles
    from .folding import estimate_luts
    from .gen import choose_folding, folding_json, load_export
    from .network import NetworkTop, UnitOptions

    _, layers = load_export(a.export)
    folding = choose_folding(
        layers, pe=1, simd=1, target_cycles=a.cycles, fit_luts=a.luts, target=a.target, search=a.search
    )
    top = NetworkTop(layers=layers, folding=folding, options=UnitOptions(tree_target=a.target, search=a.search))
    atomic_write_json(a.out, folding_json(layers, folding))
    folds = ", ".join(f"{p.name} {f.pe}x{f.simd}" for p, f in zip(layers, folding) if p.spec.compute)
    luts = estimate_luts(layers, folding, a.target, search=a.search)
    print(
        f"{a.out}: {folds}; {top.fold_bound_cycles} cycles/image (floor {floor_cycles(layers)}), "
        f"{sum(f.pe * f.simd for f in folding if f.pe)} MAC lanes, ~{luts} "
        f"LUTs est. for --target {a.target}"
    )
    return 0


def _pe(a):
    from amaranth.back import verilog

    from common.files import atomic_write_text

    from .targets import make_tree, tree_simulation_models

    if a.lanes < 1:
        raise HardwareError(f"--lanes must be >= 1, not {a.lanes}")
    if not 1 <= a.bits <= 32:
        raise HardwareError(f"--bits must be in 1..32, not {a.bits}")
    if a.pipeline < 0:
        raise HardwareError(f"--pipeline must be >= 0, not {a.pipeline}")
    target = "portable" if a.portable else a.family
    pe = make_tree(target=target, lanes=a.lanes, in_bits=a.bits, signed=a.signed, pipeline=a.pipeline)
    text = verilog.convert(pe, name=a.name, emit_src=False)
    models = tree_simulation_models([pe])
    note = ""
    if models:
        mpath = Path(a.out).with_name(Path(a.out).stem + "_sim_models.v")
        atomic_write_text(mpath, models)
        note = f"; primitive models for simulation in {mpath}"
    atomic_write_text(a.out, text)
    kind = "portable RTL" if a.portable else f"{a.family} LUT6_2 + carry-chain netlist"
    print(
        f"{a.out}: {a.lanes}-lane {a.bits}-bit sign-flip adder tree ({kind}), {pe.width}-bit sum, "
        f"latency {pe.latency}{note}"
    )
    return 0


def _matrix(a):
    from .matrix import write_matrix

    d = write_matrix(a.weights, a.out, bits=a.bits, pipeline=a.pipeline, depth=a.depth, target=a.target)
    tern = f" ({d['ternary_adders']} ternary)" if a.target != "portable" else ""
    models = f"; primitive models for simulation in {d['simulation_models']}" if d["simulation_models"] else ""
    print(
        f"{a.out}: lutmac_matrix {d['n_in']} x {d['n_out']} x {d['in_bits']} bits, {d['adders']} adders{tern} "
        f"(~{d['estimated_luts']} LUTs est.), depth {d['depth']}, {d['out_bits']}-bit outputs, "
        f"latency {d['latency_cycles']}; planned in {d['plan_seconds']:.1f} s{models}"
    )
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m hw",
        description="LUT-only binary-weight hardware generator (Amaranth): the network's Verilog from an export, "
        "foldings, and standalone units for benchmarking.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    what = "network Verilog + top.json from an export directory"
    g = sub.add_parser(
        "gen",
        help=what,
        description=f"Write the {what}: one matrix-vector unit per layer, folded PE x SIMD, joined as a "
        "valid/ready dataflow pipeline; top.v is self-contained (weights inlined).",
    )
    g.add_argument("--export", required=True, help="export directory (python -m export output)")
    g.add_argument("--pe", type=int, default=16, help="output rows per layer, clipped to each layer (default 16)")
    g.add_argument("--simd", type=int, default=64, help="input lanes per layer, clipped (default 64)")
    g.add_argument("--folding", help='JSON {"fc0": {"pe": 16, "simd": 49}, ...} overriding PE/SIMD per layer')
    g.add_argument("--tree-pipeline", type=int, default=0, help="register adder trees every K levels (0: none)")
    g.add_argument(
        "--buffers",
        default="auto",
        choices=("auto", "registers"),
        help="where MVU input vectors are held: auto (the default) puts them in distributed RAM wherever a layer "
        "allows (input lanes <= SIMD, two or more column folds), registers keeps a register per value",
    )
    g.add_argument(
        "--weight-memory",
        default="auto",
        choices=WEIGHT_MEMORIES,
        help=f"weight ROMs: auto (the default) asks for block RAM where a ROM is deeper than {BLOCK_ROM_MIN_DEPTH} "
        "words, block everywhere, tool leaves it to the synthesis tool (yosys: logic)",
    )
    g.add_argument(
        "--search",
        default="staged",
        choices=SEARCHES,
        help="progression requantisers: staged (the default) searches in stages of up to SF - 1 steps, fewest "
        "LUTs; pipeline takes one step per stage, about twice the requantiser LUTs for a faster clock",
    )
    g.add_argument(
        "--target",
        default="portable",
        choices=TARGETS,
        help="adder-tree netlist: portable RTL (default) or Xilinx LUT6_2/CARRY primitives for a family",
    )
    g.add_argument(
        "--hardwired",
        help="comma-separated layers (e.g. fc3) made fully parallel with constant weights: "
        "no weight memory, each MAC a fixed add or subtract",
    )
    g.add_argument("--lut-budget", type=int, help="warn when the LUT estimate exceeds this")
    g.add_argument(
        "--target-cycles",
        type=int,
        help="fold every layer automatically for this many cycles per image (fewest MAC lanes)",
    )
    g.add_argument(
        "--fit-luts",
        type=int,
        help="fold every layer automatically: the fewest cycles per image within this LUT estimate",
    )
    g.add_argument(
        "--axis",
        action="store_true",
        help="wrap the network in AXI4-Stream ports (aclk, aresetn, s_axis_*, m_axis_* with tlast)",
    )
    g.add_argument(
        "--name",
        help="prefix of every module in top.v (default lutmac: lutmac_top, lutmac_pe_...), "
        "so that two networks can live in one design",
    )
    what = "write a FOLDING file balanced for a cycles-per-image target or a LUT budget"
    f = sub.add_parser(
        "fold",
        help=what,
        description=f"{what[0].upper()}{what[1:]} (give exactly one of --cycles and --luts); make gen takes it "
        "as FOLDING=file.json.",
    )
    f.add_argument("--export", required=True, help="export directory")
    f.add_argument("--cycles", type=int, help="target cycles per image")
    f.add_argument("--luts", type=int, help="LUT budget (gen's estimate for --target)")
    f.add_argument("--target", default="portable", choices=TARGETS, help="netlist the LUT estimate is for")
    f.add_argument("--search", default="staged", choices=SEARCHES, help="progression search the LUT estimate is for")
    f.add_argument("-o", "--out", required=True, help="the FOLDING .json to write")
    g.add_argument("-o", "--out", required=True, help="output directory for top.v and top.json")
    what = "one standalone processing element (for benchmarking)"
    e = sub.add_parser(
        "pe",
        help=what,
        description="Write one standalone processing element, a sign-flip adder tree over --lanes inputs, as "
        "Verilog (for benchmarking and unit synthesis).",
    )
    e.add_argument("--lanes", type=int, required=True, help="inputs summed by the tree (weights per PE)")
    e.add_argument("--bits", type=int, required=True, help="width of each input")
    e.add_argument("--signed", action="store_true", help="two's complement inputs")
    e.add_argument("--pipeline", type=int, default=0, help="register the tree every K levels (default 0: none)")
    e.add_argument(
        "--family",
        default="xc7",
        choices=[t for t in TARGETS if t != "portable"],
        help="Xilinx family of the primitive netlist (xc7: CARRY4; xcu/xcup: CARRY8)",
    )
    e.add_argument("--portable", action="store_true", help="plain RTL instead of the Xilinx primitive netlist")
    e.add_argument("--name", default="pe", help="module name in the Verilog (default pe)")
    e.add_argument("-o", "--out", required=True, help="the Verilog file to write")
    what = (
        "a constant ±1 matrix times a vector, fully unrolled, partial sums shared "
        "across outputs (module lutmac_matrix, widths in a .json beside it)"
    )
    x = sub.add_parser("matrix", help=what, description=f"Write {what}.")
    x.add_argument("--weights", required=True, help="(n_in, n_out) .npy of ±1: W[i, j] weighs input i into output j")
    x.add_argument("--bits", type=int, required=True, help="width of the unsigned inputs, 1..32")
    x.add_argument("--pipeline", type=int, default=0, help="register every K adder levels (default 0: combinational)")
    x.add_argument("--depth", type=int, help="adder levels allowed (default ceil(log2(n_in)) + 2)")
    x.add_argument(
        "--target",
        default="portable",
        choices=TARGETS,
        help="portable RTL (default), or a Xilinx family (xc7: CARRY4; xcu/xcup: CARRY8) whose single-use adders "
        "are fused into LUT6_2 + carry-chain ternary adders (models for simulation in <out>_sim_models.v)",
    )
    x.add_argument("-o", "--out", required=True, help="the Verilog file to write (its .json goes beside it)")
    a = p.parse_args(argv)
    if a.cmd == "fold" and (a.cycles is None) == (a.luts is None):
        raise HardwareError("fold: give exactly one of --cycles and --luts")
    return {"gen": _gen, "pe": _pe, "fold": _fold, "matrix": _matrix}[a.cmd](a)


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("hw", main)
