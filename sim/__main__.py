"""python -m sim: run the network bench on Verilator or Icarus and write results.json."""

import argparse
import sys
from pathlib import Path

from . import SimError


def main(argv=None):
    from .toolchain import SIMULATORS

    p = argparse.ArgumentParser(
        prog="python -m sim",
        description="Bit-exact HDL simulation of rtl/top.v against the export's integer golden model: streams the "
        "test images through the network on Verilator or Icarus, compares every class and score, and writes "
        "results.json. The simulator's own output goes to log files in the output directory.",
    )
    p.add_argument("--export", required=True, help="export directory (golden model and test images)")
    p.add_argument("--rtl", required=True, help="directory with top.v and top.json (python -m hw gen)")
    p.add_argument("--sim", default="verilator", choices=SIMULATORS, help="simulator (default verilator)")
    p.add_argument("--n", default="all", help="test images to simulate: a positive integer or 'all' (default all)")
    p.add_argument("--gap", type=int, default=0, help="input valid gap rate 0..255 (/256 per cycle)")
    p.add_argument("--stall", type=int, default=0, help="output ready stall rate 0..255 (/256 per cycle)")
    p.add_argument("--reset-test", action="store_true", help="reset mid-stream and check recovery")
    p.add_argument("--waves", action="store_true", help="dump waves (FST on Verilator, VCD/FST on Icarus)")
    p.add_argument("--quiet", action="store_true", help="no build line and no progress bar, only the summary")
    p.add_argument(
        "--keep-build",
        action="store_true",
        help="keep Verilator's generated C++ and object files (by default only the simulation executable stays)",
    )
    p.add_argument(
        "-o", "--out", required=True, help="output directory (results.json, logs, the simulator's build cache)"
    )
    a = p.parse_args(argv)
    import os

    waves = a.waves or os.environ.get("WAVES") == "1"
    if a.n != "all" and not a.n.isdigit():
        raise SimError(f"--n {a.n!r} must be a positive integer or 'all'")
    for name, v in (("--gap", a.gap), ("--stall", a.stall)):
        if not 0 <= v <= 255:
            raise SimError(f"{name} {v} is outside 0..255")
    from common.files import atomic_write_json

    from .runner import simulate_network

    s = simulate_network(
        a.export,
        a.rtl,
        sim=a.sim,
        n=None if a.n == "all" else int(a.n),
        work_dir=Path(a.out),
        waves=waves,
        gap_rate=a.gap,
        stall_rate=a.stall,
        reset_test=a.reset_test,
        progress=not a.quiet,
        keep_build=a.keep_build,
    )
    atomic_write_json(Path(a.out) / "results.json", s)
    cpi = s["cycles_per_image"]
    print(
        f"{a.sim}: {s['images']} images, {s['mismatches']} mismatches, accuracy {100 * s['accuracy']:.2f}%, "
        f"{cpi if cpi is not None else '-'} cycles/image (fold bound {s['fold_bound_cycles']}), "
        f"{s['images_per_s']} images/s, {s['wall_seconds']} s (build {s['build_seconds']} s)"
    )
    if s["waves"]:
        print(f"waveform: {s['waves']}")
    if s.get("first_difference"):
        print(f"sim: {s['first_difference']}", file=sys.stderr)
    if s["mismatches"] or not s["passed"]:
        print(
            f"sim: error: {s['first_mismatch'] or 'the bench failed'}; rerun with WAVES=1 for a waveform "
            f"(full log: {s['log']})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("sim", main)
