"""Batch norm + activation folded into integers that hardware applies without a multiplier.

Hidden layers (``docs/folding.md``): the trained function of a neuron's integer accumulator ``acc`` is

    y = (acc + bias - mean) / sqrt(var + eps) * gamma + beta
    a = clamp(floor(y * L / R + 1/2), 0, L),     L = 2**abits - 1

It is monotone in ``acc``, so it is exactly ``a = #{k : s * acc >= T[k]}`` for an orientation ``s`` (the sign of
``gamma``; ``+1`` when ``gamma == 0``) and ``L`` non-decreasing integer thresholds — comparators only.

Output layer: ``score = m * acc + b`` with integers ``m`` (``|m| < 2**(scale_bits-1)``) and ``b``, ``2**shift`` times the
batch-norm output; the class is the first argmax. ``m * acc`` is a constant-coefficient product per class, realised
by hardware as shift-and-add over ``m``'s canonical signed digits — no DSP multiplier.
"""

import numpy as np

from . import ExportError

__all__ = [
    "accumulator_bounds", "signed_bits", "reference_activation", "fold_thresholds", "apply_thresholds",
    "fold_scores", "apply_scores", "reference_scores", "SCALE_BITS", "MAX_SCORE_BITS",
]

SCALE_BITS = 12
MAX_SCORE_BITS = 48   # wider output scores only come from a degenerate output layer


def accumulator_bounds(in_features, in_max):
    """Worst-case ``(min, max)`` of ``sum(w_i * x_i)`` for ``w_i`` in {-1, +1} and ``0 <= x_i <= in_max``."""
    return -in_features * in_max, in_features * in_max


def signed_bits(lo, hi):
    """Smallest two's complement width holding every integer in ``[lo, hi]``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def _bn_terms(mean, var, gamma, beta, bias, eps):
    std = np.sqrt(np.asarray(var, np.float64) + eps)
    centre = np.asarray(mean, np.float64) - np.asarray(bias, np.float64)
    return centre, std, np.asarray(gamma, np.float64), np.asarray(beta, np.float64)


def reference_activation(acc, *, mean, var, gamma, beta, bias, eps, abits, act_range):
    """The trained activation in float64 for integer ``acc`` of shape ``(..., rows)`` (what folding must equal)."""
    centre, std, gamma, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    levels = 2 ** abits - 1
    y = (np.asarray(acc, np.float64) - centre) / std * gamma + beta
    return np.clip(np.floor(y * (levels / act_range) + 0.5), 0, levels).astype(np.int64)


def fold_thresholds(*, mean, var, gamma, beta, bias, eps, abits, act_range, acc_min, acc_max):
    """Orientation ``(rows,)`` and thresholds ``(rows, L)`` reproducing :func:`reference_activation` exactly
    for every ``acc`` in ``[acc_min, acc_max]``; thresholds are clipped to ``[acc_min, acc_max + 1]``."""
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    levels = 2 ** abits - 1
    rows = len(centre)
    k = np.arange(1, levels + 1, dtype=np.float64)[None, :]
    orient = np.where(g < 0, -1, 1).astype(np.int64)
    lo, hi = int(acc_min), int(acc_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        # level >= k  <=>  y >= (k - 1/2) R / L  <=>  s*acc >= s*(centre + ((k - 1/2) R / L - beta) * std / gamma)
        theta = centre[:, None] + ((k - 0.5) * act_range / levels - beta[:, None]) * std[:, None] / g[:, None]
        guess = np.ceil(np.clip(orient[:, None] * theta, lo - 1, hi + 1))
    guess = np.where(np.isnan(guess), hi + 1, guess).astype(np.int64)
    kk = np.broadcast_to(np.arange(1, levels + 1), (rows, levels))
    params = dict(mean=mean, var=var, gamma=gamma, beta=beta, bias=bias, eps=eps, abits=abits, act_range=act_range)

    def level_rows(t):  # row r's reference activation at accumulator value orient[r] * t[r, j]
        return reference_activation((orient[:, None] * t).T, **params).T

    # ceil() of a float64 threshold can be one off when theta sits on an integer: settle it against the reference,
    # which is monotone in s*acc, so the smallest t with level(t) >= k is found by stepping.
    t = np.clip(guess, lo, hi + 1)
    for _ in range(3):
        up = (t <= hi) & (level_rows(np.minimum(t, hi)) < kk)
        t = t + up
        down = (t - 1 >= lo) & (level_rows(np.maximum(t - 1, lo)) >= kk)
        t = t - down
        if not (up.any() or down.any()):
            break
    # gamma == 0: y == beta for every acc, a constant level
    const = g == 0
    if const.any():
        c = reference_activation(np.zeros((1, rows)), **params)[0]
        t[const] = np.where(kk[const] <= c[const, None], lo, hi + 1)
    return orient, np.maximum.accumulate(t, axis=1)


def apply_thresholds(acc, orientation, thresholds):
    """``#{k : s * acc >= T[k]}`` for ``acc`` of shape ``(N, rows)``: per row, a sorted search of its non-decreasing
    thresholds (the count the hardware's pipelined binary search finds)."""
    v = np.ascontiguousarray((np.asarray(acc, np.int64) * orientation[None, :]).T)
    out = np.empty(v.shape, np.int64)
    for r in range(len(v)):
        out[r] = np.searchsorted(thresholds[r], v[r], side="right")
    return out.T


def fold_scores(*, mean, var, gamma, beta, bias, eps, acc_bound, scale_bits=SCALE_BITS):
    """Integer ``(m, b, shift)`` with ``m * acc + b ~= 2**shift * y`` and ``max |m| < 2**(scale_bits - 1)``.

    ``shift`` is the largest that keeps every ``|m|`` below ``2**(scale_bits - 1)`` and every score for
    ``|acc| <= acc_bound`` below ``2**(MAX_SCORE_BITS - 2)``; an output layer whose scale rounds to zero for every
    class (its scores would not depend on the input) is refused.
    """
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    k = g / std
    kmax = float(np.abs(k).max())
    limit = 2 ** (scale_bits - 1) - 1
    shift = int(np.floor(np.log2(limit / kmax))) if kmax > 0 else 0
    shift = min(max(shift, 0), 62)
    ceiling = 2.0 ** (MAX_SCORE_BITS - 2)
    while shift > 0 and float(np.abs((beta - k * centre) * 2.0 ** shift).max()) + limit * acc_bound >= ceiling:
        shift -= 1
    m = np.round(k * 2.0 ** shift).astype(np.int64)
    b = np.round((beta - k * centre) * 2.0 ** shift)
    if not m.any() or not np.all(np.isfinite(b)) or float(np.abs(b).max()) >= ceiling:
        raise ExportError(f"output layer: its batch norm scales every class by |gamma / sigma| <= {kmax:.3g}, so the "
                          f"scores do not depend on the input at {MAX_SCORE_BITS}-bit precision (the training "
                          f"diverged or collapsed); train again")
    return m, b.astype(np.int64), shift


def apply_scores(acc, m, b):
    return np.asarray(acc, np.int64) * m[None, :] + b[None, :]


def reference_scores(acc, *, mean, var, gamma, beta, bias, eps):
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    return (np.asarray(acc, np.float64) - centre) / std * g + beta
