"""The ECP5 flows' pieces that need no long run: block RAM output-register absorption on hand-made and on
yosys-made netlists, the critical-path parser, and the network-alone flow's errors (plus one real, small run)."""

import copy
import json
import subprocess
import sys

import pytest

from boards.ecp5_netlist import absorb_bram_output_registers, absorb_in_file
from boards.platforms import parse_critical_path


def _ram_netlist(*, bits=4, reset=False, ce=(50,), extra_sink=False, other_clock=False):
    """One DP16KD (port A: clock net 2, read enable 3, data nets 10..) whose outputs feed one flip-flop each."""
    ram = {
        "type": "DP16KD",
        "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG"},
        "port_directions": {
            "CLKA": "input",
            "CEA": "input",
            "OCEA": "input",
            **{f"DOA{k}": "output" for k in range(18)},
        },
        "connections": {"CLKA": [2], "CEA": [3], "OCEA": ["1"], **{f"DOA{k}": [10 + k] for k in range(18)}},
    }
    cells = {"ram": ram}
    for k in range(bits):
        cells[f"ff{k}"] = {
            "type": "TRELLIS_FF",
            "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "LSRMUX": "LSR", "REGSET": "RESET"},
            "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input", "Q": "output"},
            "connections": {
                "CLK": [7 if (other_clock and k == 1) else 2],
                "CE": list(ce),
                "LSR": [5] if reset else ["0"],
                "DI": [10 + k],
                "Q": [100 + k],
            },
        }
    ports = {"q": {"direction": "output", "bits": [100 + k for k in range(bits)]}}
    if extra_sink:
        cells["lut"] = {
            "type": "LUT4",
            "parameters": {},
            "port_directions": {"A": "input", "Z": "output"},
            "connections": {"A": [10], "Z": [200]},
        }
    return {"modules": {"top": {"ports": ports, "cells": cells}}}


def test_absorbs_registered_read():
    n = _ram_netlist()
    assert absorb_bram_output_registers(n) == 1
    cells = n["modules"]["top"]["cells"]
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_A"] == "OUTREG" and ram["parameters"]["REGMODE_B"] == "NOREG"
    assert ram["connections"]["OCEA"] == [50]  # the register's enable
    assert [ram["connections"][f"DOA{k}"] for k in range(4)] == [[100], [101], [102], [103]]
    assert not any(c["type"] == "TRELLIS_FF" for c in cells.values())
    assert absorb_bram_output_registers(n) == 0  # idempotent


@pytest.mark.parametrize("why", ["reset", "extra_sink", "other_clock", "mixed_enable"])
def test_leaves_unsafe_ports_alone(why):
    n = _ram_netlist(
        **(
            {"reset": True}
            if why == "reset"
            else {"extra_sink": True}
            if why == "extra_sink"
            else {"other_clock": True}
            if why == "other_clock"
            else {}
        )
    )
    if why == "mixed_enable":
        n["modules"]["top"]["cells"]["ff2"]["connections"]["CE"] = [51]
    before = copy.deepcopy(n)
    assert absorb_bram_output_registers(n) == 0
    assert n == before


def test_constant_enable_register(tmp_path):
    n = _ram_netlist()
    for k in range(4):
        n["modules"]["top"]["cells"][f"ff{k}"]["parameters"]["CEMUX"] = "1 "
    path = tmp_path / "net.json"
    path.write_text(json.dumps(n))
    assert absorb_in_file(path) == 1
    ram = json.loads(path.read_text())["modules"]["top"]["cells"]["ram"]
    assert ram["connections"]["OCEA"] == ["1"]


def _pdp_netlist():
    """One DP16KD in yosys' 36-bit pseudo-dual-port mode: port A (clock net 1) writes, port B (clock net 2) reads,
    the read's 36 bits on DOA and DOB, each into a flip-flop on clock 2 with enable 50."""
    n = _ram_netlist(bits=0)
    ram = n["modules"]["top"]["cells"]["ram"]
    ram["parameters"]["DATA_WIDTH_A"] = ram["parameters"]["DATA_WIDTH_B"] = f"{36:032b}"
    ram["port_directions"].update({"CLKB": "input", "OCEB": "input", **{f"DOB{k}": "output" for k in range(18)}})
    ram["connections"].update({"CLKA": [1], "CLKB": [2], "OCEB": ["0"], **{f"DOB{k}": [30 + k] for k in range(18)}})
    cells = n["modules"]["top"]["cells"]
    for k, net in enumerate([*range(10, 28), *range(30, 48)]):
        cells[f"ff{k}"] = {
            "type": "TRELLIS_FF",
            "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "LSRMUX": "LSR", "REGSET": "RESET"},
            "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input", "Q": "output"},
            "connections": {"CLK": [2], "CE": [50], "LSR": ["0"], "DI": [net], "Q": [100 + k]},
        }
    n["modules"]["top"]["ports"]["q"]["bits"] = [100 + k for k in range(36)]
    return n


def test_absorbs_a_36_bit_read_into_both_halves():
    """A 36-bit read is one read on port B: both halves get their output register (as nextpnr's own PDPW16KD
    conversion sets them), enabled by OCEB; a register on one half alone is undefined, so nothing moves then."""
    n = _pdp_netlist()
    assert absorb_bram_output_registers(n) == 1
    ram = n["modules"]["top"]["cells"]["ram"]
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEB"] == [50] and ram["connections"]["OCEA"] == ["1"]
    assert [ram["connections"][f"DOA{k}"] for k in (0, 17)] == [[100], [117]]
    assert [ram["connections"][f"DOB{k}"] for k in (0, 17)] == [[118], [135]]
    assert not any(c["type"] == "TRELLIS_FF" for c in n["modules"]["top"]["cells"].values())
    n = _pdp_netlist()
    n["modules"]["top"]["cells"]["ff3"]["connections"]["CE"] = [51]  # the low half's enable differs
    before = copy.deepcopy(n)
    assert absorb_bram_output_registers(n) == 0 and n == before


def _yosys_ecp5(tmp_path, elaboratable, ports):
    from amaranth.back import rtlil

    from boards.flows import ECP5_LUT_MAPPING, ECP5_SYNTH_OPTS, _yowasp_env

    env = _yowasp_env()
    (tmp_path / "d.il").write_text(rtlil.convert(elaboratable, ports=ports, name="d"))
    (tmp_path / "d.ys").write_text(
        f"read_rtlil d.il\nsynth_ecp5 {ECP5_SYNTH_OPTS} -top d\n{ECP5_LUT_MAPPING}"
        f"synth_ecp5 -run map_cells: -top d\nwrite_json d.json\n"
    )
    r = subprocess.run([env["YOSYS"], "-q", "d.ys"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path / "d.json"


def _rom(registered_reset_less, width=18):
    from amaranth.hdl import Module, Signal
    from amaranth.lib.memory import Memory

    m = Module()
    depth = 18 * 1024 // width
    init = [(k * 2654435761) % (1 << width) for k in range(depth)]
    m.submodules.rom = rom = Memory(shape=width, depth=depth, init=init)
    addr, en = Signal(range(depth)), Signal()
    q = Signal(width, reset_less=registered_reset_less)
    port = rom.read_port()
    m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
    with m.If(en):
        m.d.sync += q.eq(port.data)
    return m, [addr, en, q]


@pytest.mark.parametrize("reset_less", [True, False])
def test_yosys_netlist_of_a_registered_rom(tmp_path, reset_less):
    """The pattern the network uses (read enable = register enable, reset-less register) is absorbed; a register
    with a reset is not (its reset would change meaning)."""
    path = _yosys_ecp5(tmp_path, *_rom(reset_less))
    net = json.loads(path.read_text())
    assert any(c["type"] == "DP16KD" for m in net["modules"].values() for c in m.get("cells", {}).values())
    assert absorb_in_file(path) == (1 if reset_less else 0)


def test_yosys_netlist_of_a_36_bit_rom(tmp_path):
    """yosys maps a 36-bit read to the pseudo-dual-port mode; its register moves into both halves."""
    path = _yosys_ecp5(tmp_path, *_rom(True, width=36))
    assert absorb_in_file(path) == 1
    (ram,) = [
        c
        for m in json.loads(path.read_text())["modules"].values()
        for c in m["cells"].values()
        if c["type"] == "DP16KD"
    ]
    assert int(ram["parameters"]["DATA_WIDTH_A"], 2) == 36
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"


NEXTPNR_CRITICAL = """\
Info: Critical path report for clock 'clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source a.q_TRELLIS_FF_Q.Q
Info:    routing  1.50  2.02 Net a.q (75,35) -> (79,38)
Info:                          Sink b.lut.A
Info:      logic  0.24  2.26 Source b.lut.F
Info:    routing  0.90  3.16 Net b.x (79,38) -> (79,39)
Info:                          Sink c.r_TRELLIS_FF_Q.DI
Info:      setup  0.00  3.16 Source c.r_TRELLIS_FF_Q.DI
Info: 0.76 ns logic, 2.40 ns routing
"""


def test_parse_critical_path_takes_the_last_report():
    first = NEXTPNR_CRITICAL.replace("a.q_", "early.q_")
    got = parse_critical_path("Info: placed\n" + first + "Info: routed\n" + NEXTPNR_CRITICAL)
    assert got == {
        "from": "a.q_TRELLIS_FF_Q.Q",
        "to": "c.r_TRELLIS_FF_Q.DI",
        "ns": 3.16,
        "logic_ns": 0.76,
        "routing_ns": 2.40,
    }
    assert parse_critical_path("Info: nothing timed\n") is None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "boards", *args], capture_output=True, text=True)


def test_network_scope_errors(tmp_path, tiny_export):
    from hw.gen import generate

    rtl = tmp_path / "rtl"
    generate(tiny_export, rtl, pe=2, simd=8)
    out = tmp_path / "p"
    r = _cli("pnr", "--scope", "network", "--rtl", str(rtl), "--board", "arty_a7_35", "-o", str(out))
    assert r.returncode == 2 and "ulx3s_85f" in r.stderr and not out.exists()
    r = _cli(
        "pnr", "--scope", "network", "--rtl", str(rtl), "--board", "ulx3s_85f", "--target-mhz", "0", "-o", str(out)
    )
    assert r.returncode == 2 and "--target-mhz" in r.stderr and not out.exists()
    r = _cli("pnr", "--scope", "network", "--rtl", str(tmp_path / "none"), "--board", "ulx3s_85f", "-o", str(out))
    assert r.returncode == 2 and "make gen" in r.stderr and not out.exists()


def test_network_scope_place_and_route_tiny(tmp_path, tiny_export):
    """A real out-of-context P&R of the tiny network: Fmax, utilisation, critical path, absorbed RAM registers."""
    from hw.gen import generate

    rtl = tmp_path / "rtl"
    generate(tiny_export, rtl, pe=2, simd=8)
    out = tmp_path / "ulx3s_85f-network"
    r = _cli(
        "pnr", "--scope", "network", "--rtl", str(rtl), "--board", "ulx3s_85f", "--target-mhz", "150", "-o", str(out)
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["scope"] == "network" and s["device"] == "85k" and s["target_mhz"] == 150
    assert s["fmax_mhz"] > 20 and s["clock_constraint_mhz"] == 150
    assert s["utilization"]["TRELLIS_IO"]["used"] == 0  # out of context: no pins
    assert s["utilization"]["MULT18X18D"]["used"] == 0
    assert s["critical_path"]["ns"] > 0
    assert s["images_per_s_at_fmax"] == pytest.approx(s["fmax_mhz"] * 1e6 / s["fold_bound_cycles"], rel=1e-3)
    assert not (out / "lutmac.bit").exists() and (out / "lutmac.tim").exists()
