"""Automatic folding: per-layer PE/SIMD that balance the pipeline for a target cycles per image or a LUT budget.

Every PE in ``1..rows`` and SIMD in ``1..columns`` is a legal folding here (no divisibility rule: the input buffers
and weight memories pad), so the search ranges over all of them and its answer is legal by construction. For a
target of T cycles per image each compute layer gets the folding with the fewest MAC lanes (``PE * SIMD``) whose
``vectors * ceil(columns / SIMD) * ceil(rows / PE)`` is at most T, ties going to the fewer padded lanes; the LUT
budget is met by the smallest T whose folding fits it.
"""

from . import HardwareError
from .layers import PATCH_WINDOW_BITS, LayerFolding, conv_window, window_cycles
from .patch_window import PatchWindow
from .sliding_window import SlidingWindow

__all__ = ["fold_for_cycles", "fold_for_luts", "floor_cycles"]


def _cycles(p, pe, simd):
    """Cycles per image of a compute layer folded ``pe`` x ``simd``, its window included (hw.layers' rule)."""
    s = p.spec
    steps = s.vectors * -(-s.columns // simd) * -(-s.rows // pe)
    if s.kind == "conv2d":
        return max(steps, window_cycles(s, conv_window(s, p.in_bits, pe, simd)))
    return steps


def floor_cycles(layers):
    """The fewest cycles per image any folding reaches: every compute layer fully parallel still takes ``vectors``
    cycles; a conv layer's window the faster of its padded map (a patch window, for few channels) and ``kernel**2``
    beats per output pixel (a line buffer); a map layer at least a beat per input pixel (the network's input too)."""
    floor = 1
    for p in layers:
        s = p.spec
        _, h, w = s.in_shape
        if s.kind == "conv2d":
            window = window_cycles(s, SlidingWindow)
            if s.columns * p.in_bits <= PATCH_WINDOW_BITS:
                window = min(window, window_cycles(s, PatchWindow))
            floor = max(floor, s.vectors, window, h * w)
        elif s.kind == "maxpool2d":
            floor = max(floor, h * w)
        elif s.compute:
            floor = max(floor, s.vectors)
    return floor


def _best(p, target, cost=None):
    """The (pe, simd) meeting ``target`` cycles at the lowest ``cost(p, pe, simd)`` (default: the fewest MAC lanes),
    ties going to fewer lanes, then fewer padded lanes; None when none meets it."""
    s = p.spec
    best = None
    for pe in range(1, s.rows + 1):
        nf = -(-s.rows // pe)
        budget = target // (s.vectors * nf)  # column folds allowed
        if budget < 1:
            continue
        simd = -(-s.columns // min(budget, s.columns))
        if _cycles(p, pe, simd) > target:  # a conv layer's window cannot keep up at this folding
            continue
        lanes = pe * simd
        waste = nf * pe * -(-s.columns // simd) * simd - s.rows * s.columns
        key = (cost(p, pe, simd) if cost else lanes, lanes, waste, _cycles(p, pe, simd))
        if best is None or key < best[0]:
            best = (key, pe, simd)
    return None if best is None else (best[1], best[2])


def fold_for_cycles(layers, target, cost=None):
    """One :class:`~hw.layers.LayerFolding` per layer meeting ``target`` cycles per image at the lowest ``cost``
    per layer (default: the fewest MAC lanes); :class:`HardwareError` when the target is below
    :func:`floor_cycles`."""
    if not isinstance(target, int) or target < 1:
        raise HardwareError(f"target cycles per image must be a positive integer, not {target!r}")
    floor = floor_cycles(layers)
    if target < floor:
        raise HardwareError(
            f"no folding reaches {target} cycles per image: this network needs at least {floor} "
            f"(its sliding windows emit a patch per kernel position, its input a pixel per beat)"
        )
    out = []
    for p in layers:
        if not p.spec.compute:
            out.append(LayerFolding())
            continue
        best = _best(p, target, cost)
        if best is None:
            raise HardwareError(f"layer {p.name!r} cannot reach {target} cycles per image at any folding")
        out.append(LayerFolding(pe=best[0], simd=best[1]))
    return out


def fold_for_luts(layers, budget, estimate):
    """The folding of the fewest cycles per image whose ``estimate(layers, folding)`` LUTs fit ``budget``:
    ``(folding, cycles)``; :class:`HardwareError` when even the slowest folding does not fit.

    Each layer takes the folding of the lowest estimate that meets a target (the estimate is a sum over layers), so
    the total falls as the target rises and a bisection on the target finds the fastest folding that fits."""

    def cost(p, pe, simd):
        return estimate([p], [LayerFolding(pe=pe, simd=simd)])

    lo = floor_cycles(layers)
    hi = max([_cycles(p, 1, 1) for p in layers if p.spec.compute] + [lo])
    slowest = fold_for_cycles(layers, hi, cost)
    if estimate(layers, slowest) > budget:
        raise HardwareError(
            f"even the slowest folding (PE = SIMD = 1, {hi} cycles per image) needs "
            f"~{estimate(layers, slowest)} LUTs, over the budget of {budget}"
        )
    while lo < hi:
        mid = (lo + hi) // 2
        if estimate(layers, fold_for_cycles(layers, mid, cost)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    folding = fold_for_cycles(layers, hi, cost)
    achieved = max(_cycles(p, f.pe, f.simd) for p, f in zip(layers, folding) if p.spec.compute)
    return folding, max(achieved, floor_cycles(layers))
