"""Post-synthesis pass on a yosys ECP5 netlist (``write_json``): block RAM output register absorption.

yosys maps memories to ``DP16KD`` with ``REGMODE = "NOREG"`` only, so a read costs the block RAM's whole
clock-to-output (5.6 ns on a speed-6 ECP5 in nextpnr's timing model) before any fabric. The network registers every
memory read (the threshold ROMs' and weight memories' output registers, reset-less, clocked with the read's
enable); this pass moves such a register into the block RAM (``REGMODE = "OUTREG"``, its clock enable on ``OCE``),
which is the same cycle-exact behaviour with a fast clock-to-output. A read is rewritten only when every used data
bit drives exactly one reset-less ``TRELLIS_FF`` on the read's clock with one common clock enable; anything else is
left as it is.

A RAM read 36 bits wide is yosys' pseudo-dual-port mapping (``DATA_WIDTH_A = 36``): port A writes, port B reads,
and the read's 36 bits leave on ``DOA`` and ``DOB``. Nextpnr's own ``PDPW16KD`` conversion defines that mode's
output register: ``REGMODE_A`` and ``REGMODE_B`` both ``OUTREG``, enabled by ``OCEB``, clocked by ``CLKB``.
"""

import json
from collections import defaultdict
from pathlib import Path

__all__ = ["absorb_bram_output_registers", "absorb_in_file"]

_WIDTH = 18  # DP16KD data outputs per port


def _is_const(bits, value):
    return len(bits) == 1 and bits[0] == value


def _sinks(module):
    """``net bit -> [(cell name, port)]`` for every cell input, with ``(None, port)`` for module outputs."""
    sinks = defaultdict(list)
    for name, cell in module["cells"].items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if dirs.get(port) != "output":
                for b in bits:
                    if isinstance(b, int):
                        sinks[b].append((name, port))
    for pname, port in module.get("ports", {}).items():
        if port["direction"] != "input":
            for b in port["bits"]:
                if isinstance(b, int):
                    sinks[b].append((None, pname))
    return sinks


def _int_param(value):
    """A yosys JSON integer parameter: a binary string (``"00...100100"``) or a number."""
    return int(value, 2) if isinstance(value, str) else int(value)


def _reads(ram):
    """``[(data output pins, clock port, REGMODE parameters, output clock enable port)]``: each read of ``ram``
    whose output register is still free."""
    params = ram["parameters"]
    free = [p for p in "AB" if params.get(f"REGMODE_{p}", "NOREG") == "NOREG"]
    pins = {p: [f"DO{p}{k}" for k in range(_WIDTH)] for p in "AB"}
    if _int_param(params.get("DATA_WIDTH_A", 18)) == 36:  # one read, port B's, 36 bits wide
        return [(pins["A"] + pins["B"], "CLKB", ("REGMODE_A", "REGMODE_B"), "OCEB")] if len(free) == 2 else []
    return [(pins[p], f"CLK{p}", (f"REGMODE_{p}",), f"OCE{p}") for p in free]


def _output_register(cells, ram, pins, clock, sinks):
    """``({data pin: flip-flop name}, clock-enable bits)`` when the outputs ``pins`` of a read clocked by ``clock``
    can move into the RAM, or None."""
    conn = ram["connections"]
    clk = conn.get(clock)
    found, enable = {}, None
    for pin_name in pins:
        bits = conn.get(pin_name, [])
        if not bits or not isinstance(bits[0], int) or not sinks.get(bits[0]):
            continue  # an unused data bit
        users = sinks[bits[0]]
        if len(users) != 1:
            return None
        name, pin = users[0]
        ff = cells.get(name) if name else None
        if ff is None or ff["type"] != "TRELLIS_FF" or pin != "DI":
            return None
        fc, fp = ff["connections"], ff["parameters"]
        if fc.get("CLK") != clk or fp.get("CLKMUX", "CLK") != "CLK":
            return None
        if fp.get("LSRMUX", "LSR") == "LSR" and not _is_const(fc.get("LSR", ["0"]), "0"):
            return None  # a reset register: the RAM's output register resets differently
        ce = fc.get("CE") if fp.get("CEMUX", "CE").strip() == "CE" else ["1"]
        if enable is None:
            enable = ce
        elif ce != enable:
            return None
        found[pin_name] = name
    return (found, enable) if found else None


def absorb_bram_output_registers(netlist):
    """Rewrite ``netlist`` (a yosys JSON dict) in place; return the number of RAM ports given an output register."""
    count = 0
    for module in netlist["modules"].values():
        cells = module.get("cells", {})
        if not any(c["type"] == "DP16KD" for c in cells.values()):
            continue
        sinks = _sinks(module)
        for ram in [c for c in cells.values() if c["type"] == "DP16KD"]:
            for pins, clock, regmodes, oce in _reads(ram):
                got = _output_register(cells, ram, pins, clock, sinks)
                if got is None:
                    continue
                found, enable = got
                for pin_name, name in found.items():
                    ram["connections"][pin_name] = cells.pop(name)["connections"]["Q"]
                ram["parameters"].update(dict.fromkeys(regmodes, "OUTREG"))
                ram["connections"][oce] = enable
                count += 1
    return count


def absorb_in_file(path):
    """:func:`absorb_bram_output_registers` on a JSON netlist file, rewritten in place; returns the count."""
    path = Path(path)
    netlist = json.loads(path.read_text())
    count = absorb_bram_output_registers(netlist)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(netlist))
    tmp.replace(path)
    return count


if __name__ == "__main__":  # the ECP5 board flow calls this between yosys and nextpnr (see flows.py)
    import sys

    print(f"{sys.argv[1]}: {absorb_in_file(sys.argv[1])} block RAM ports given their output register")
