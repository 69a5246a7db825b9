"""python -m hw: `gen` writes the network's Verilog from an export; `pe` emits one processing element."""

import argparse
import sys
from pathlib import Path

from . import HardwareError


def _gen(a):
    from .gen import generate
    import time
    t0 = time.perf_counter()
    d = generate(a.export, a.out, pe=a.pe, simd=a.simd, folding_file=a.folding, tree_pipeline=a.tree_pipeline,
                 lut_budget=a.lut_budget, warn=lambda s: print(s, file=sys.stderr))
    folds = ", ".join(f"{layer['name']} {layer['pe']}x{layer['simd']} ({layer['cycles']} cyc)" for layer in d["layers"])
    print(f"{a.out}/top.v: {folds}; fold bound {d['fold_bound_cycles']} cycles/image, "
          f"{d['beats_per_image']} beats/image, ~{d['estimated_luts']} LUTs est., {time.perf_counter() - t0:.1f} s")
    return 0


def _pe(a):
    from amaranth.back import verilog
    from train.files import atomic_write_text
    from .adder_tree import SignFlipAdderTree
    if a.lanes < 1:
        raise HardwareError(f"--lanes must be >= 1, not {a.lanes}")
    if not 1 <= a.bits <= 32:
        raise HardwareError(f"--bits must be in 1..32, not {a.bits}")
    if a.pipeline < 0:
        raise HardwareError(f"--pipeline must be >= 0, not {a.pipeline}")
    pe = SignFlipAdderTree(lanes=a.lanes, in_bits=a.bits, signed=a.signed, pipeline=a.pipeline)
    atomic_write_text(a.out, verilog.convert(pe, name=a.name, emit_src=False))
    print(f"{a.out}: {a.lanes}-lane {a.bits}-bit sign-flip adder tree, {pe.width}-bit sum, latency {pe.latency}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw", description="LUT-only binary-weight hardware generator.")
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="network Verilog + top.json from an export directory")
    g.add_argument("--export", required=True, help="export directory (python -m export output)")
    g.add_argument("--pe", type=int, default=16, help="output rows per layer, clipped to each layer (default 16)")
    g.add_argument("--simd", type=int, default=64, help="input lanes per layer, clipped (default 64)")
    g.add_argument("--folding", help='JSON {"fc0": {"pe": 16, "simd": 49}, ...} overriding PE/SIMD per layer')
    g.add_argument("--tree-pipeline", type=int, default=0, help="register adder trees every K levels (0: none)")
    g.add_argument("--lut-budget", type=int, help="warn when the LUT estimate exceeds this")
    g.add_argument("-o", "--out", required=True, help="output directory for top.v and top.json")
    e = sub.add_parser("pe", help="one standalone processing element (for benchmarking)")
    e.add_argument("--lanes", type=int, required=True)
    e.add_argument("--bits", type=int, required=True)
    e.add_argument("--signed", action="store_true", help="two's complement inputs")
    e.add_argument("--pipeline", type=int, default=0)
    e.add_argument("--portable", action="store_true",
                   help="plain RTL (currently the only netlist style: no vendor primitives are instantiated)")
    e.add_argument("--name", default="pe")
    e.add_argument("-o", "--out", required=True)
    a = p.parse_args(argv)
    return {"gen": _gen, "pe": _pe}[a.cmd](a)


if __name__ == "__main__":
    from train.cli import run_stage
    run_stage("hw", main, HardwareError)
