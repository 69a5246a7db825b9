"""``make synth``: utilisation of ``rtl/top.v`` under yosys synth_xilinx, with the DSP-free rule enforced."""

import gzip
import json
import re
import shutil
import time
from pathlib import Path

from . import BoardsError
from .yosys import (
    RESOURCES,
    classify_cells,
    compact_ltp,
    cone_stat_commands,
    memory_init_files,
    read_stat_stream,
    run_yosys,
    xilinx_flow,
)

__all__ = ["synthesize", "utilization", "breakdown", "UNIT_KINDS", "format_breakdown"]

#: The one table from names in the generated module hierarchy to unit kinds (``by_unit`` in utilization.json): the
#: first pattern that matches the whole name wins; a name none matches is counted under "other", never dropped. A
#: name is a submodule's instance name in top.v (``pe3``, ``buffer``, ``requant``, ``out`` ...) or, for the cells a
#: module holds itself, a role: ``top`` (the network top), ``mvu`` (a unit with ``buffer`` and ``requant``
#: submodules), ``window`` / ``pool`` (the other units of a conv / max-pool layer), ``weights`` (in an MVU, the
#: fan-in of its ``wreg*`` weight registers that its ``waddr`` counter does not also feed: the weight ROM).
UNIT_KINDS = {
    r"pe\d+|matrix": "trees",  # adder trees (a hard-wired layer: one shared-sum constant matrix)
    r"weights": "weights",  # weight ROM (LUTs, LUTRAM or block RAM) and its read registers
    r"mvu": "accumulator",  # the MVU's own logic: accumulators, fold sequencer, pipeline registers
    r"buffer": "input_buffer",  # the MVU's ping-pong input vectors and their SIMD read multiplexers
    r"requant": "requantiser",  # thresholds and compares; the output layer's score scaling
    r"out|tuser_fifo": "fifo",  # every unit's credited output FIFO; the AXI-Stream wrapper's tuser FIFO
    r"window": "window",  # sliding / patch window with its line buffers
    r"pool": "maxpool",  # max-pool with its partial-row memory
    r"argmax": "argmax",  # class select over the output scores
    r"top|network": "control",  # stream glue in the top (and an AXI-Stream wrapper's)
}

_MODULE = re.compile(r"^module\s+(\\\S+|[\w$]+)\s*\(", re.M)
_INSTANCE = re.compile(r"^\s+(\\\S+|[A-Za-z_][\w$]*)\s+(\\\S+|[A-Za-z_][\w$]*)\s*\(\s*$", re.M)
_WEIGHT_REG = re.compile(r"^\s*reg\b[^;=]*\bwreg\d+\b", re.M)
_WEIGHT_ADDR = re.compile(r"^\s*(?:wire|reg)\b[^;=]*\bwaddr\b", re.M)


def _verilog_hierarchy(text):
    """{module: [(submodule, instance name)]} and the modules holding a weight ROM (``wreg*`` fed from ``waddr``),
    from the generated Verilog (names without the escaping backslash)."""
    bodies = {}
    for m, nxt in zip(_MODULE.finditer(text), list(_MODULE.finditer(text))[1:] + [None]):
        bodies[m.group(1).lstrip("\\")] = text[m.end() : nxt.start() if nxt else len(text)]
    insts = {
        name: [(t.lstrip("\\"), i.lstrip("\\")) for t, i in _INSTANCE.findall(body) if t.lstrip("\\") in bodies]
        for name, body in bodies.items()
    }
    rom = [name for name, body in bodies.items() if _WEIGHT_REG.search(body) and _WEIGHT_ADDR.search(body)]
    return insts, rom


def _kind(name):
    return next((kind for pattern, kind in UNIT_KINDS.items() if re.fullmatch(pattern, name)), "other")


def _resources(cells):
    res = classify_cells({"design": {"num_cells_by_type": cells}}) if cells else classify_cells({})
    return {k: res[k] for k in RESOURCES}


def breakdown(stat, instances, weights, top, layers=None):
    """``by_unit`` {kind: resources} and ``by_layer`` {layer: {kind: resources}} from the hierarchical ``stat -json``
    of synth_xilinx: every module instance's own cells (submodule instances excluded) under the kind
    :data:`UNIT_KINDS` gives its name, walking the instance tree from ``top`` (a module used twice counts twice, as
    in the design totals). ``instances``: :func:`_verilog_hierarchy`'s instance names; ``weights``: {module: cells}
    of the weight ROMs; ``layers``: {layer name: layer kind} from top.json (units outside any layer, and any cells
    the walk did not reach, go to the layer ``network``). The kinds' sums equal the design totals."""
    modules = {name.lstrip("\\"): dict(mod.get("num_cells_by_type") or {}) for name, mod in stat["modules"].items()}
    layers = layers or {}
    by_unit, by_layer = {}, {}

    def add(kind, layer, res):
        for table in (by_unit.setdefault(kind, {}), by_layer.setdefault(layer, {}).setdefault(kind, {})):
            for k in RESOURCES:
                table[k] = table.get(k, 0) + res[k]

    def layer_of(name):
        return next((lay for lay in layers if name == lay or re.fullmatch(rf"{re.escape(lay)}_\d+", name)), None)

    def visit(module, name, layer, role):
        cells = modules.get(module, {})
        own = {t: n for t, n in cells.items() if t.lstrip("\\") not in modules}
        known = instances.get(module, [])
        children = []
        for t, n in cells.items():
            t = t.lstrip("\\")
            if t in modules:
                names = [i for ty, i in known if ty == t] or [t.rsplit(".", 1)[-1]]
                children += [(t, names[min(k, len(names) - 1)]) for k in range(n)]
        child_names = {i for _, i in children}
        if role is None:
            unit_layer = layer_of(name) if layer is None else None
            layer = unit_layer or layer
            if {"buffer", "requant"} <= child_names:
                role = "mvu"
            elif unit_layer is not None:
                role = "pool" if layers[unit_layer] == "maxpool2d" else "window"
            else:
                role = name
        if role == "mvu" and module in weights:
            rom = {t: min(n, own.get(t, 0)) for t, n in weights[module].items()}
            own = {t: n - rom.get(t, 0) for t, n in own.items()}
            add(_kind("weights"), layer or "network", _resources(rom))
        add(_kind(role), layer or "network", _resources(own))
        for t, inst in children:
            visit(t, inst, layer, None)

    visit(top, top, None, "top")
    totals = classify_cells(stat)
    rest = {k: totals[k] - sum(u[k] for u in by_unit.values()) for k in RESOURCES}
    if any(rest.values()):
        add("other", "network", rest)
    return by_unit, by_layer


def format_breakdown(res):
    """A short text table of ``res['by_unit']``, largest LUT consumer first."""
    units = res.get("by_unit") or {}
    cols = [k for k in ("LUT", "FF", "CARRY", "LUTRAM", "SRL", "MUXF", "BRAM") if any(u[k] for u in units.values())]
    lut = res["LUT"] or 1
    rows = [f"{'unit':<14}" + "".join(f"{c:>9}" for c in cols) + "   LUT %"]
    for kind, u in sorted(units.items(), key=lambda kv: (-kv[1]["LUT"], -kv[1]["FF"], kv[0])):
        if not any(u.values()):
            continue
        rows.append(f"{kind:<14}" + "".join(f"{u[c]:>9g}" for c in cols) + f"{100 * u['LUT'] / lut:>8.1f}")
    rows.append(f"{'total':<14}" + "".join(f"{res[c]:>9g}" for c in cols) + f"{100.0:>8.1f}")
    return "\n".join(rows)


def utilization(verilog_path, top, family, work_dir, *, timeout=None, layers=None, by_unit=False):
    """Synthesise ``verilog_path`` in ``work_dir``; returns the resource dict plus ``logic_levels`` (``ltp``) and,
    with ``by_unit``, the per-unit breakdown (:func:`breakdown`; ``layers``: {name: kind} from top.json)."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    local = work / "design.v"
    if Path(verilog_path).resolve() != local.resolve():
        local.write_text(memory_init_files(Path(verilog_path).read_text(), work))
    extra, instances, roms = [], {}, []
    if by_unit:
        instances, roms = _verilog_hierarchy(local.read_text())
        (work / "weights.json").unlink(missing_ok=True)
        for module in roms:
            extra += cone_stat_commands(module, "wreg*", "waddr", "weights.json")
    t0 = time.perf_counter()
    log = run_yosys(xilinx_flow("design.v", top, family, extra=extra), work, timeout=timeout)
    stat = json.loads((work / "stat.json").read_text())
    res = classify_cells(stat)
    if by_unit:
        weights = read_stat_stream((work / "weights.json").read_text()) if roms else {}
        res["by_unit"], res["by_layer"] = breakdown(stat, instances, weights, top, layers)
    ltp = work / "ltp.txt"
    if ltp.exists():
        ltp.write_text(compact_ltp(ltp.read_text()))
    m = re.search(r"length=(\d+)", ltp.read_text() if ltp.exists() else log)
    res["logic_levels"] = int(m.group(1)) if m else None
    res["family"] = family
    res["synth_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def synthesize(rtl_dir, out_dir, *, family="xc7", timeout=None):
    """Synthesise ``rtl_dir/top.v``; write ``utilization.json``, ``cells.json``, ``stat.json``, ``ltp.txt`` and the
    yosys log (gzip-compressed: ``yosys.log.gz``) atomically into ``out_dir``. On failure the scratch folder with
    the plain log stays, and the error names it."""
    from common.files import atomic_directory, check_output_dir

    rtl_dir = Path(rtl_dir)
    try:
        top = json.loads((rtl_dir / "top.json").read_text())
        (rtl_dir / "top.v").stat()
    except (OSError, json.JSONDecodeError) as e:
        raise BoardsError(f"{rtl_dir}: no usable top.v/top.json ({e}); run `make gen` first") from None
    check_output_dir(out_dir, stage="synth", inputs=(rtl_dir,))
    scratch = Path(out_dir).parent / f".{Path(out_dir).name}.work"
    shutil.rmtree(scratch, ignore_errors=True)
    res = utilization(
        rtl_dir / "top.v",
        top["top"],
        family,
        scratch,
        timeout=timeout,
        by_unit=True,
        layers={layer["name"]: layer.get("kind", "dense") for layer in top["layers"]},
    )
    layers = [layer for layer in top["layers"] if "pe" in layer]  # compute layers (pools have no MAC array)
    macs = sum(layer["pe"] * layer["simd"] for layer in layers)
    res.update(
        pe=[layer["pe"] for layer in layers],
        simd=[layer["simd"] for layer in layers],
        layers=[layer["name"] for layer in layers],
        mac_lanes=macs,
        lut_per_mac_lane=round(res["LUT"] / macs, 3),
        fold_bound_cycles=top["fold_bound_cycles"],
    )
    cells = res.pop("cells")
    if res["DSP"] > 0:
        raise BoardsError(
            f"{rtl_dir}/top.v maps to {res['DSP']} DSP blocks: a binary design must be DSP-free (report in {scratch})"
        )
    with atomic_directory(out_dir, stage="synth", inputs=(rtl_dir,)) as tmp:
        (Path(tmp) / "utilization.json").write_text(json.dumps(res, indent=2) + "\n")
        (Path(tmp) / "cells.json").write_text(json.dumps(cells, indent=2, sort_keys=True) + "\n")
        for name in ("ltp.txt", "stat.json"):
            if (scratch / name).exists():
                shutil.copyfile(scratch / name, Path(tmp) / name)
        if (scratch / "yosys.log").exists():  # megabytes of pass output for a network; a tenth of that packed
            with open(scratch / "yosys.log", "rb") as f, gzip.open(Path(tmp) / "yosys.log.gz", "wb") as g:
                shutil.copyfileobj(f, g)
    shutil.rmtree(scratch, ignore_errors=True)
    return res
