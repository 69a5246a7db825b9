"""`python -m boards ip` (`make ip`): the Vivado IP packaging script of an AXI4-Stream network.

Vivado is not installed here: the generated package_ip.tcl is run by a real Tcl interpreter (tclsh) with stub procs
for Vivado's commands that record every call, and the recorded calls are checked against top.json and top.v: the
project, the bus interfaces (s_axis/m_axis axis, the clock with ASSOCIATED_BUSIF/ASSOCIATED_RESET, the active-low
reset), their port maps and TDATA widths.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from boards import BoardsError

HAVE_TCLSH = shutil.which("tclsh") is not None
needs_tclsh = pytest.mark.skipif(not HAVE_TCLSH, reason="tclsh is not installed (apt-get install tcl)")

# Every command Tcl does not know (all of Vivado's) lands in `unknown`: recorded as "<id> <cmd> <args...>" (fields
# separated by \x1f), answered with a fresh object id. `version -short` answers like Vivado; the inferred-interface
# query answers two objects (so the script's clean-up loop runs); save_core writes an empty component.xml.
STUB = r"""
set ::log [open [lindex $argv 1] w]
set ::n 0
proc unknown {args} {
    incr ::n
    set id "obj$::n"
    puts $::log [join [concat [list $id] $args] "\x1f"]
    set cmd [lindex $args 0]
    if {$cmd eq "version"} { return 2099.1 }
    if {$cmd eq "ipx::get_bus_interfaces" && [lindex $args 1] eq "-of_objects"} { return [list inferred1 inferred2] }
    if {$cmd eq "ipx::save_core"} { file mkdir $::ip_dir; close [open [file join $::ip_dir component.xml] w] }
    return $id
}
cd [file dirname [file normalize [lindex $argv 0]]]
source [file tail [lindex $argv 0]]
close $::log
"""


def _record(tmp, script):
    """Run ``script`` under tclsh with the stubs; the recorded calls as ``[(id, cmd, args)]``."""
    stub = tmp / "stub.tcl"
    stub.write_text(STUB)
    log = tmp / "calls.txt"
    r = subprocess.run(["tclsh", str(stub), str(script), str(log)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [(f[0], f[1], f[2:]) for f in (line.split("\x1f") for line in log.read_text().splitlines())]


def _model(calls):
    """What the calls built: ``{bus: {"props": {...}, "ports": {logical: physical}, "params": {...}}}`` plus the
    project-level calls by command."""
    objs = {i: (cmd, args) for i, cmd, args in calls}

    def bus_of(obj):
        cmd, args = objs[obj]
        assert cmd == "ipx::get_bus_interfaces" and args[1] == "-of_objects", (cmd, args)
        return args[0]

    buses, by_cmd, order = {}, {}, []
    for _, cmd, args in calls:
        by_cmd.setdefault(cmd, []).append(args)
        order.append(cmd)
        if cmd == "ipx::add_bus_interface":
            buses[args[0]] = {"props": {}, "ports": {}, "params": {}}
        elif cmd == "set_property" and args[-1] in objs:
            target_cmd, target_args = objs[args[-1]]
            prop, value = args[0], args[1]
            if target_cmd == "ipx::get_bus_interfaces":
                buses[target_args[0]]["props"][prop] = value
            elif target_cmd == "ipx::get_port_maps":
                assert prop == "physical_name"
                buses[bus_of(target_args[2])]["ports"][target_args[0]] = value
            elif target_cmd == "ipx::get_bus_parameters":
                assert prop == "value"
                buses[bus_of(target_args[2])]["params"][target_args[0]] = value
    return buses, by_cmd, order


def _top_ports(verilog, top):
    """``{port: (direction, width)}`` of module ``top`` in ``verilog``."""
    body = verilog.split(f"module {top}(", 1)[1].split("endmodule", 1)[0]
    return {
        name: (d, int(hi) + 1 if hi else 1)
        for d, hi, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, flags=re.M)
    }


@pytest.fixture(scope="module")
def axis_rtl(tiny_export, tmp_path_factory):
    from hw.gen import generate

    root = tmp_path_factory.mktemp("ip")
    generate(tiny_export, root / "rtl", pe=4, simd=16, axis=True, name="digits_ip")
    generate(tiny_export, root / "plain", pe=4, simd=16)
    return root


@pytest.fixture
def no_vivado(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "vivado").exists())
    )
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)


@needs_tclsh
def test_package_ip_tcl_against_top_json(axis_rtl, tmp_path, no_vivado, capsys):
    from boards.__main__ import main

    out = tmp_path / "ip"
    assert main(["ip", "--rtl", str(axis_rtl / "rtl"), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "Vivado is not installed here" in said and "vivado -mode batch -source package_ip.tcl" in said
    top = json.loads((axis_rtl / "rtl" / "top.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["component"] is None and not summary["vivado"] and summary["part"] == "xc7a35ticsg324-1L"
    assert (out / "src" / "top.v").read_text() == (axis_rtl / "rtl" / "top.v").read_text()
    ports = _top_ports((out / "src" / "top.v").read_text(), top["top"])

    calls = _record(tmp_path, out / "package_ip.tcl")
    buses, by_cmd, order = _model(calls)
    assert by_cmd["create_project"][0][-2:] == ["-part", "xc7a35ticsg324-1L"]
    assert by_cmd["add_files"][0][-1] == str((out / "src" / "top.v").resolve())
    assert ["top", top["top"]] == by_cmd["set_property"][0][:2]
    pp = by_cmd["ipx::package_project"][0]
    assert pp[pp.index("-root_dir") + 1] == str((out / "ip").resolve()) and "-import_files" in pp
    assert "ipx::save_core" in order and "ipx::check_integrity" in order
    # the inferred interfaces are removed before any is declared, and the core saved after the last
    removed = [k for k, c in enumerate(order) if c == "ipx::remove_bus_interface"]
    assert len(removed) == 2 and max(removed) < order.index("ipx::add_bus_interface")
    assert order.index("ipx::save_core") > max(k for k, c in enumerate(order) if c == "set_property")

    pin, pout = top["ports"]["in"], top["ports"]["out"]
    assert set(buses) == {"s_axis", "m_axis", "aclk", "aresetn", "frame_error"}
    for name, mode, p in (("s_axis", "slave", pin), ("m_axis", "master", pout)):
        b = buses[name]
        assert b["props"] == {
            "abstraction_type_vlnv": "xilinx.com:interface:axis_rtl:1.0",
            "bus_type_vlnv": "xilinx.com:interface:axis:1.0",
            "interface_mode": mode,
        }
        assert b["ports"]["TDATA"] == p["payload"] and b["ports"]["TVALID"] == p["valid"]
        assert b["ports"]["TREADY"] == p["ready"] and b["ports"]["TLAST"] == p["last"]
        assert int(b["params"]["TDATA_NUM_BYTES"]) * 8 == p["width"] == ports[p["payload"]][1]
        assert b["params"]["HAS_TLAST"] == "1"
    assert buses["m_axis"]["ports"]["TUSER"] == pout["user"] == "m_axis_tuser"
    assert buses["m_axis"]["params"]["TUSER_WIDTH"] == "1" and buses["s_axis"]["params"]["TUSER_WIDTH"] == "0"
    clk, rst = buses["aclk"], buses["aresetn"]
    assert clk["props"]["bus_type_vlnv"] == "xilinx.com:signal:clock:1.0" and clk["ports"] == {"CLK": "aclk"}
    assert clk["params"] == {"ASSOCIATED_BUSIF": "s_axis:m_axis", "ASSOCIATED_RESET": "aresetn"}
    assert rst["props"]["bus_type_vlnv"] == "xilinx.com:signal:reset:1.0" and rst["ports"] == {"RST": "aresetn"}
    assert rst["params"] == {"POLARITY": "ACTIVE_LOW"}
    assert buses["frame_error"]["params"] == {"SENSITIVITY": "LEVEL_HIGH"}
    # every physical port the script maps is a port of the top module, in the direction its role needs, and every
    # port is mapped
    directions = {
        "TDATA": "input",
        "TVALID": "input",
        "TLAST": "input",
        "TREADY": "output",
        "TUSER": "input",
        "CLK": "input",
        "RST": "input",
        "INTERRUPT": "input",
    }  # as a slave sees them
    flip = {"input": "output", "output": "input"}
    for name, b in buses.items():
        for logical, physical in b["ports"].items():
            want = directions[logical] if b["props"]["interface_mode"] != "master" else flip[directions[logical]]
            assert ports[physical][0] == want, (name, logical, physical)
    assert set(ports) == {p for b in buses.values() for p in b["ports"].values()}


@needs_tclsh
def test_package_ip_tcl_outside_vivado_says_so(axis_rtl, tmp_path):
    from boards.platforms import ip_package_tcl

    script = tmp_path / "package_ip.tcl"
    script.write_text(ip_package_tcl(json.loads((axis_rtl / "rtl" / "top.json").read_text()), part="xc7a35tcpg236-1"))
    r = subprocess.run(["tclsh", str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and "runs in Vivado" in r.stderr


@needs_tclsh
def test_package_ip_runs_vivado_where_present(axis_rtl, tmp_path, monkeypatch):
    """With a `vivado` on PATH (here a stand-in that sources the script under the Tcl stubs), `boards ip` runs it
    and publishes ip/component.xml."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "stub.tcl").write_text(STUB)
    fake = bindir / "vivado"
    fake.write_text(
        '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -source ] && src="$2"; shift; done\n'
        f'exec tclsh {bindir / "stub.tcl"} "$src" calls.txt\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("AMARANTH_ENV_VIVADO", raising=False)
    from boards.flows import package_ip

    s = package_ip(axis_rtl / "rtl", tmp_path / "ip", board_name="arty_a7_100", progress=lambda s: None)
    assert s["vivado"] and s["component"] == "ip/component.xml" and s["part"] == "xc7a100ticsg324-1L"
    assert (tmp_path / "ip" / "ip" / "component.xml").is_file()
    assert s["vlnv"] == "lutmac.local:lutmac:digits_ip_top:1.0"


def test_ip_refusals(axis_rtl, tmp_path, no_vivado):
    from boards.flows import package_ip, vivado_build
    from boards.platforms import ip_part

    with pytest.raises(BoardsError, match="AXIS=1"):
        package_ip(axis_rtl / "plain", tmp_path / "a", progress=lambda s: None)
    with pytest.raises(BoardsError, match="xilinx boards"):
        package_ip(axis_rtl / "rtl", tmp_path / "b", board_name="ulx3s_85f", progress=lambda s: None)
    with pytest.raises(BoardsError, match="not a Xilinx part"):
        package_ip(axis_rtl / "rtl", tmp_path / "c", part="LFE5U-85F", progress=lambda s: None)
    assert not any((tmp_path / x).exists() for x in "abc")
    with pytest.raises(BoardsError, match="xc7 primitives"):
        ip_part({"tree_target": "xc7"}, part="xczu3eg-sbva484-1-e")
    assert ip_part({"tree_target": "xcup"}, part="xczu3eg-sbva484-1-e") == "xczu3eg-sbva484-1-e"
    # the UART board top drives the plain stream ports: an AXIS network is refused with the way out
    with pytest.raises(BoardsError, match="make ip"):
        vivado_build(axis_rtl / "rtl", tmp_path / "build", board_name="arty_a7_35", progress=lambda s: None)


def test_make_passes_axis_name_and_ip():
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        ["make", "-n", "-o", "setup", "gen", "ip", "AXIS=1", "NAME=net_a", "OUT=/tmp/x", "BOARD=arty_a7_35"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.replace("\\\n", " ").splitlines()
    gen = next(line for line in lines if " -m hw gen " in line)
    assert "--axis" in gen and "--name net_a" in gen
    ip = next(line for line in lines if " -m boards ip " in line)
    assert "--rtl /tmp/x/rtl" in ip and "--board arty_a7_35" in ip and "-o /tmp/x/ip" in ip
    plain = subprocess.run(
        ["make", "-n", "-o", "setup", "gen", "OUT=/tmp/x"], cwd=root, capture_output=True, text=True, timeout=60
    ).stdout
    assert "--axis" not in plain and "--name" not in plain
