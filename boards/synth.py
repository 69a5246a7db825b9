"""``make synth``: utilisation of ``rtl/top.v`` under yosys synth_xilinx, with the DSP-free rule enforced."""

import json
import re
import shutil
import time
from pathlib import Path

from . import BoardsError
from .yosys import classify_cells, memory_init_files, run_yosys, xilinx_flow

__all__ = ["synthesize", "utilization"]


def utilization(verilog_path, top, family, work_dir, *, timeout=None):
    """Synthesise ``verilog_path`` in ``work_dir``; returns the resource dict plus ``logic_levels`` (``ltp``)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    local = work / "design.v"
    if Path(verilog_path).resolve() != local.resolve():
        local.write_text(memory_init_files(Path(verilog_path).read_text(), work))
    t0 = time.perf_counter()
    log = run_yosys(xilinx_flow("design.v", top, family), work, timeout=timeout)
    res = classify_cells((work / "stat.json").read_text())
    m = re.search(r"length=(\d+)", (work / "ltp.txt").read_text() if (work / "ltp.txt").exists() else log)
    res["logic_levels"] = int(m.group(1)) if m else None
    res["family"] = family
    res["synth_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def synthesize(rtl_dir, out_dir, *, family="xc7", timeout=None):
    """Synthesise ``rtl_dir/top.v``; write ``utilization.json`` and the raw report atomically into ``out_dir``."""
    from common.files import atomic_directory, check_output_dir
    rtl_dir = Path(rtl_dir)
    try:
        top = json.loads((rtl_dir / "top.json").read_text())
        (rtl_dir / "top.v").stat()
    except (OSError, json.JSONDecodeError) as e:
        raise BoardsError(f"{rtl_dir}: no usable top.v/top.json ({e}); run `make gen` first") from None
    check_output_dir(out_dir, stage="synth", inputs=(rtl_dir,))
    scratch = Path(out_dir).parent / f".{Path(out_dir).name}.work"
    shutil.rmtree(scratch, ignore_errors=True)
    res = utilization(rtl_dir / "top.v", top["top"], family, scratch, timeout=timeout)
    layers = [layer for layer in top["layers"] if "pe" in layer]   # compute layers (pools have no MAC array)
    macs = sum(layer["pe"] * layer["simd"] for layer in layers)
    res.update(pe=[layer["pe"] for layer in layers], simd=[layer["simd"] for layer in layers],
               layers=[layer["name"] for layer in layers], mac_lanes=macs,
               lut_per_mac_lane=round(res["LUT"] / macs, 3), fold_bound_cycles=top["fold_bound_cycles"])
    cells = res.pop("cells")
    if res["DSP"] > 0:
        raise BoardsError(f"{rtl_dir}/top.v maps to {res['DSP']} DSP blocks: a binary design must be DSP-free "
                          f"(report in {scratch})")
    with atomic_directory(out_dir, stage="synth", inputs=(rtl_dir,)) as tmp:
        (Path(tmp) / "utilization.json").write_text(json.dumps(res, indent=2) + "\n")
        (Path(tmp) / "cells.json").write_text(json.dumps(cells, indent=2, sort_keys=True) + "\n")
        for name in ("yosys.log", "ltp.txt", "stat.json"):
            if (scratch / name).exists():
                shutil.copyfile(scratch / name, Path(tmp) / name)
    shutil.rmtree(scratch, ignore_errors=True)
    return res
