"""LUT/MAC of the constant ±1 matrix (``hw.matrix``, issue #15) in the issue's flow: ``python -m bench.matrix_luts``.

``W = numpy.random.default_rng(0).choice([-1, 1], (n_in, n_out))``, unsigned ``bits``-bit inputs, combinational;
yosys ``synth_xilinx`` xc7 with classic ``abc`` LUT mapping (``boards.yosys.xilinx_flow``, hierarchy kept);
LUT/MAC = LUTs / (n_in * n_out). One row per case and target (``portable`` RTL, ``xc7`` ternary adders); depth in
adder levels, a ternary adder counting as one. Runs one yosys at a time; results to ``--out`` as JSON.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = ((64, 16, 8), (64, 16, 4), (64, 64, 8), (256, 64, 8))


def measure(n_in, n_out, bits, target, work):
    """One case on one target: ``{luts, lut_per_mac, depth, adders, ternary_adders, estimated_luts, carry}``."""
    from boards.yosys import classify_cells, run_yosys, xilinx_flow
    from hw.matrix import write_matrix

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    w = np.random.default_rng(0).choice([-1, 1], (n_in, n_out))
    np.save(work / "w.npy", w)
    meta = write_matrix(work / "w.npy", work / "m.v", bits=bits, target=target)
    t0 = time.perf_counter()
    run_yosys(xilinx_flow("m.v", "lutmac_matrix", "xc7"), work)
    res = classify_cells((work / "stat.json").read_text())
    return {
        "n_in": n_in,
        "n_out": n_out,
        "bits": bits,
        "target": target,
        "luts": res["LUT"],
        "lut_per_mac": round(res["LUT"] / (n_in * n_out), 3),
        "carry": res["CARRY"],
        "depth": meta["depth"],
        "adders": meta["adders"],
        "ternary_adders": meta["ternary_adders"],
        "estimated_luts": meta["estimated_luts"],
        "synth_seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.matrix_luts", description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="portable,xc7", help="comma-separated hw.matrix targets")
    p.add_argument("--cases", default=",".join("x".join(map(str, c)) for c in CASES), help="n_in x n_out x bits")
    p.add_argument("--out", default="build/bench/matrix_luts.json", help="JSON file of the rows")
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases.split(","):
            n_in, n_out, bits = map(int, case.split("x"))
            for target in a.targets.split(","):
                row = measure(n_in, n_out, bits, target, Path(tmp) / f"{case}_{target}")
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
