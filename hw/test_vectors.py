"""Random layers with their golden outputs, for unit benches in amaranth.sim (tests) and in HDL simulators (sim/)."""

from dataclasses import dataclass

import numpy as np

from export.folding import accumulator_bounds, apply_scores, apply_thresholds, signed_bits

from .mvu import MatrixVectorUnit

__all__ = ["RandomLayer", "random_layer"]


@dataclass
class RandomLayer:
    """A random layer folded onto a :class:`MatrixVectorUnit`, its input vectors and the golden outputs.

    Members
    -------
    unit : MatrixVectorUnit
    x : (vectors, in) int array
    expected : (vectors, out) int array (levels, or scores for an output layer)
    beats : list of input beats (``in_lanes`` values each, vectors zero-padded to whole beats)
    """

    unit: MatrixVectorUnit
    x: np.ndarray
    expected: np.ndarray
    beats: list


def random_layer(
    *, n_in, n_out, pe, simd, in_lanes, in_bits, abits=None, vectors=4, seed=0, tree_pipeline=0, tree_modules=None
):
    """Hidden layer (thresholds) when ``abits``, else output layer (scores); the first vector is all-maximum."""
    rng = np.random.default_rng(seed)
    weights = rng.choice(np.array([-1, 1], np.int8), (n_out, n_in))
    lo, hi = accumulator_bounds(n_in, 2**in_bits - 1)
    x = rng.integers(0, 2**in_bits, (vectors, n_in))
    x[0] = 2**in_bits - 1
    acc = x @ weights.T.astype(np.int64)
    common = dict(
        weights=weights,
        in_bits=in_bits,
        in_lanes=in_lanes,
        pe=pe,
        simd=simd,
        acc_width=signed_bits(lo, hi),
        tree_pipeline=tree_pipeline,
        tree_modules=tree_modules,
    )
    if abits:
        thr = np.sort(rng.integers(lo // 4, hi // 4 + 1, (n_out, 2**abits - 1)), axis=1)
        orient = rng.choice([-1, 1], n_out)
        expected = apply_thresholds(acc, orient, thr)
        unit = MatrixVectorUnit(**common, thresholds=(orient, thr))
    else:
        scale, offset = rng.integers(-2047, 2048, n_out), rng.integers(-(10**5), 10**5, n_out)
        expected = apply_scores(acc, scale, offset)
        bound = 2047 * hi + 10**5
        unit = MatrixVectorUnit(**common, scores=(scale, offset, signed_bits(-bound, bound)))
    padded = np.zeros((vectors, unit.in_beats * in_lanes), np.int64)
    padded[:, :n_in] = x
    beats = [[int(v) for v in row] for row in padded.reshape(vectors * unit.in_beats, in_lanes)]
    return RandomLayer(unit, x, expected, beats)
