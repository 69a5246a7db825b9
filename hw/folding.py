"""Per-layer PE/SIMD: global values clipped to each layer, or a FOLDING JSON file."""

import json
from pathlib import Path

from . import HardwareError
from .network import LayerFolding

__all__ = ["resolve_folding", "estimate_luts"]


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
        names = [p.name for p in layers]
        for name, entry in overrides.items():
            if name not in names:
                raise HardwareError(f"{path}: unknown layer {name!r}; layers are {', '.join(names)}")
            if not isinstance(entry, dict) or set(entry) - {"pe", "simd", "hardwired"}:
                raise HardwareError(f"{path}: layer {name!r} needs an object with keys pe, simd and/or hardwired")
            if not isinstance(entry.get("hardwired", False), bool):
                raise HardwareError(f"{path}: layer {name!r} hardwired must be true or false")
            for key, v in entry.items():
                if key == "hardwired":
                    continue
                if not isinstance(v, int) or v < 1:
                    raise HardwareError(f"{path}: layer {name!r} {key} must be an integer >= 1, not {v!r}")
    names = [p.name for p in layers]
    for name in hardwired:
        if name not in names:
            raise HardwareError(f"hardwired: unknown layer {name!r}; layers are {', '.join(names)}")
    out = []
    for p in layers:
        o = overrides.get(p.name, {})
        if p.name in hardwired or o.get("hardwired", False):
            out.append(LayerFolding(pe=p.out_features, simd=p.in_features, hardwired=True))
        else:
            out.append(LayerFolding(pe=min(o.get("pe", pe), p.out_features),
                                    simd=min(o.get("simd", simd), p.in_features)))
    return out


def estimate_luts(layers, folding):
    """A first-order LUT estimate for xc7 (LUT6 + CARRY4), used only for the budget warning.

    Per layer: ``PE * SIMD * (in_bits + 2)`` for the adder trees (one LUT per adder bit, the sign XOR folded in),
    ``SIMD * in_bits * ceil(2 * SF / 4)`` for the input-buffer read multiplexers and
    ``PE * abits * acc_bits / 2`` for the threshold comparators.
    """
    total = 0
    for p, f in zip(layers, folding):
        sf = -(-p.in_features // f.simd)
        total += f.pe * f.simd * (p.in_bits + 2)
        total += f.simd * p.in_bits * -(-2 * sf // 4)
        if not p.is_output:
            total += f.pe * p.abits * p.acc_bits // 2
    return total
