"""Export directory -> ``top.v`` (self-contained Verilog) and ``top.json`` (how to drive it)."""

import hashlib
import json
import re
from pathlib import Path

from amaranth.back import verilog

from . import HardwareError
from .argmax import argmax_latency
from .fast_emit import fast_memory_init
from .folding import estimate_luts, resolve_folding
from .network import NetworkTop, UnitOptions
from .targets import tree_simulation_models

__all__ = [
    "load_export",
    "generate",
    "choose_folding",
    "top_description",
    "folding_json",
    "TOP_NAME",
    "DEFAULT_PREFIX",
    "module_prefix",
]

DEFAULT_PREFIX = "lutmac"  # every module in top.v is named <prefix>_...; `hw gen --name` picks another prefix
TOP_NAME = f"{DEFAULT_PREFIX}_top"
SIM_MODELS = "sim_models.v"  # primitive models for simulation only (synthesis maps the real primitives)


def load_export(export_dir):
    """Manifest and layers of an export directory that passes the reader's checks that ``python -m export check``
    makes (manifest, layer files' hashes, headers, shapes and ranges, and the test set: hashes, ``count``, labels;
    only the golden accuracy is not recomputed), or :class:`HardwareError`."""
    from export import ExportError
    from export.manifest import load_layers, load_test_set, read_manifest

    try:
        manifest = read_manifest(export_dir)
        layers = load_layers(export_dir, manifest)
        load_test_set(export_dir, manifest)  # sim judges the hardware on this test set: a lie in it is refused here
        return manifest, layers
    except ExportError as e:
        raise HardwareError(f"export check failed: {e}") from None


def _port_widths(top):
    return {"in": top.i.payload.shape().size, "out": top.o.payload.shape().size}


def top_description(top, manifest, export_dir, *, top_name=TOP_NAME):
    """The ``top.json`` dictionary for a :class:`NetworkTop` emitted as module ``top_name``."""
    layout = top.o.payload.shape()
    sc = layout["scores"]
    c, h, w = manifest["input"]["shape"]
    return {
        "top": top_name,
        "interface": "stream",
        "export": str(export_dir),
        "dataset": manifest["dataset"],
        "synthetic": bool(manifest.get("synthetic", False)),
        "clock": "clk",
        "reset": "rst",
        "reset_active": "high",
        "ports": {
            "in": {
                "payload": "i__payload",
                "valid": "i__valid",
                "ready": "i__ready",
                "width": top.i.payload.shape().size,
                "lanes": top.lanes_per_beat,
                "bits": top.in_bits,
                "group": top.group,
                "lane_order": "lane k at bits [k*bits, (k+1)*bits)",
                "value_order": "the image (H, W, C) in raster order, channels innermost, in groups of `group` "
                "values (a pixel, or the whole image), each group ceil(group/lanes) beats, "
                "its last beat zero-padded",
            },
            "out": {
                "payload": "o__payload",
                "valid": "o__valid",
                "ready": "o__ready",
                "width": layout.size,
                "class": {"offset": layout["cls"].offset, "bits": layout["cls"].shape.width},
                "scores": {"offset": sc.offset, "count": top.classes, "bits": top.score_bits, "signed": True},
            },
        },
        "input_shape": [c, h, w],
        "pixels": c * h * w,
        "beats_per_image": top.beats_per_image,
        "latency_cycles": top.latency_bound + 1 + argmax_latency(top.classes),
        "fold_bound_cycles": top.fold_bound_cycles,
        "layers": top.layer_info,
        **top.options.to_dict(),  # tree_pipeline, tree_target, buffers, weight_memory, search
        "macs_per_cycle": sum(f.pe * f.simd for p, f in zip(top._layers, top.folding) if p.spec.compute),
    }


def choose_folding(
    layers,
    *,
    pe,
    simd,
    folding_file=None,
    hardwired=(),
    target_cycles=None,
    fit_luts=None,
    target="portable",
    buffers="auto",
    search="staged",
):
    """Per-layer folding: automatic for ``target_cycles`` (cycles per image) or ``fit_luts`` (a LUT budget),
    else ``pe``/``simd`` clipped to each layer with ``folding_file`` overrides (:func:`hw.folding.resolve_folding`)."""
    from .autofold import fold_for_cycles, fold_for_luts

    if target_cycles is not None and fit_luts is not None:
        raise HardwareError("give a target of cycles per image or a LUT budget, not both")
    if (target_cycles is not None or fit_luts is not None) and (folding_file or hardwired):
        raise HardwareError("automatic folding chooses every layer: drop --folding and --hardwired")
    if target_cycles is not None:
        return fold_for_cycles(layers, target_cycles)
    if fit_luts is not None:
        return fold_for_luts(
            layers, fit_luts, lambda ls, f: estimate_luts(ls, f, target, buffers=buffers, search=search)
        )[0]
    return resolve_folding(layers, pe=pe, simd=simd, folding_file=folding_file, hardwired=tuple(hardwired))


def generate(
    export_dir,
    out_dir,
    *,
    pe,
    simd,
    folding_file=None,
    tree_pipeline=0,
    buffers="auto",
    weight_memory="auto",
    search="staged",
    target="portable",
    hardwired=(),
    lut_budget=None,
    target_cycles=None,
    fit_luts=None,
    warn=print,
    name=None,
    axis=False,
):
    """Write ``top.v`` and ``top.json`` into ``out_dir`` (atomically, together); return the description.

    ``name`` is the prefix of every module in ``top.v`` (default ``lutmac``: ``lutmac_top``, ``lutmac_pe_...``), so
    that networks generated with different prefixes live in one design. ``axis`` wraps the network in AXI4-Stream
    ports (:class:`hw.axis.AxisWrapper`); the wrapper is then the top module and ``top.json`` describes its ports.

    ``target`` picks the adder-tree netlist (:data:`hw.targets.TARGETS`); a Xilinx one also writes
    ``sim_models.v``, behavioural models of its primitives that simulation reads beside ``top.v`` and synthesis
    must not.
    """
    from common.files import atomic_directory, check_output_dir

    check_output_dir(out_dir, stage="gen", inputs=(export_dir,))
    options = UnitOptions(
        tree_pipeline=tree_pipeline, tree_target=target, buffers=buffers, weight_memory=weight_memory, search=search
    )  # checked here, before the export is read
    prefix = module_prefix(name)
    manifest, layers = load_export(export_dir)
    for p in layers:
        if p.spec.compute and not 1 <= p.in_bits <= 16:
            raise HardwareError(f"layer {p.name!r}: input width {p.in_bits} bits is outside 1..16")
    folding = choose_folding(
        layers,
        pe=pe,
        simd=simd,
        folding_file=folding_file,
        hardwired=hardwired,
        target_cycles=target_cycles,
        fit_luts=fit_luts,
        target=target,
        buffers=buffers,
        search=search,
    )
    estimate = estimate_luts(layers, folding, target, buffers=buffers, search=search)
    if lut_budget is not None and estimate > lut_budget:
        warn(f"warning: estimated {estimate} LUTs exceed the budget of {lut_budget}")
    tree_modules = {}
    top = NetworkTop(layers=layers, folding=folding, options=options, tree_modules=tree_modules)
    top_name = f"{prefix}_top"
    desc = top_description(top, manifest, export_dir, top_name=top_name)
    desc["estimated_luts"] = estimate
    # which export this is: sim refuses to judge it against another one's golden model
    desc["export_sha256"] = hashlib.sha256((Path(export_dir) / "manifest.json").read_bytes()).hexdigest()
    design = top
    if axis:
        from .axis import AxisWrapper, axis_description, flag_depth_for

        design = AxisWrapper(
            top,
            beats_per_image=top.beats_per_image,
            flag_depth=flag_depth_for(desc["latency_cycles"], desc["fold_bound_cycles"]),
        )
        desc = axis_description(desc, design)
    with fast_memory_init():
        text = verilog.convert(design, name=top_name, emit_src=False)
        # one module per distinct PE shape, instantiated by every unit that uses it (named <prefix>_pe_...)
        renamed = {tree: re.sub(f"^{DEFAULT_PREFIX}_", f"{prefix}_", tree) for tree in tree_modules}
        text = _rename_modules(text, renamed)
        for tree_name, tree in sorted(tree_modules.items()):
            text += "\n" + verilog.convert(tree, name=renamed[tree_name], emit_src=False)
    foreign = [
        mod for mod in re.findall(r"^module\s+\\?([^\s(]+)", text, flags=re.M) if not mod.startswith(prefix + "_")
    ]
    if foreign:
        raise HardwareError(
            f"generated Verilog declares modules without the prefix {prefix!r}: {foreign[:3]} (generator bug)"
        )
    if re.search(r"\$readmem|(?<![@(])\*(?!\))", _strip_comments_and_attrs(text)):
        raise HardwareError("generated Verilog contains a multiplication or $readmem (generator bug)")
    desc["verilog_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    # the trees' primitives, and those of hard-wired layers' matrices (ternary adders on a Xilinx target)
    matrices = (
        [u for u in top.units() if getattr(u, "primitives", None)]
        if target != "portable" and any(getattr(f, "hardwired", False) for f in folding)
        else []
    )
    models = tree_simulation_models([*tree_modules.values(), *matrices])
    desc["simulation_models"] = SIM_MODELS if models else None
    with atomic_directory(out_dir, stage="gen", inputs=(export_dir,)) as tmp:
        (Path(tmp) / "top.v").write_text(text)
        if models:
            (Path(tmp) / SIM_MODELS).write_text(models)
        (Path(tmp) / "top.json").write_text(json.dumps(desc, indent=2) + "\n")
    return desc


def folding_json(layers, folding):
    """The ``FOLDING`` file for a folding: ``{layer: {"pe", "simd"[, "hardwired"]}}`` for the compute layers."""
    return {
        p.name: {"pe": f.pe, "simd": f.simd, **({"hardwired": True} if f.hardwired else {})}
        for p, f in zip(layers, folding)
        if p.spec.compute
    }


def module_prefix(name):
    """The module-name prefix for ``hw gen --name`` (``None``: :data:`DEFAULT_PREFIX`), or :class:`HardwareError`."""
    if name is None:
        return DEFAULT_PREFIX
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise HardwareError(
            f"--name {name!r}: a module-name prefix is a Verilog identifier of letters, digits and "
            f"underscores, not starting with a digit (at most 64 characters)"
        )
    return name


def _rename_modules(text, names):
    """``text`` with every reference to a module in ``names`` (old -> new; plain identifiers) renamed."""
    for old, new in names.items():
        if old != new:
            text = re.sub(rf"(?<![\w$\\.]){re.escape(old)}(?![\w$.])", new, text)
    return text


def _strip_comments_and_attrs(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"\(\*.*?\*\)", "", text)
    return re.sub(r"//[^\n]*", "", text)
