"""Batch norm + activation folded into integers that hardware applies without a multiplier.

Hidden layers (``docs/folding.md``): the trained function of a neuron's integer accumulator ``acc`` is

    y = (acc + bias - mean) / sqrt(var + eps) * gamma + beta
    a = clamp(floor(y * L / R + 1/2), 0, L),     L = 2**abits - 1

It is monotone in ``acc``, so it is exactly ``a = #{k : s * acc >= T[k]}`` for an orientation ``s`` (the sign of
``gamma``; ``+1`` when ``gamma == 0``) and ``L`` non-decreasing integer thresholds — comparators only.

Output layer: ``score = m * acc + b`` with integers ``m`` (``|m| < 2**(scale_bits-1)``) and ``b``, ``2**shift`` times
the batch-norm output; the class is the first argmax. ``m * acc`` is a constant-coefficient product per class, realised
by hardware as shift-and-add over ``m``'s canonical signed digits — no DSP multiplier.
"""

import numpy as np

from . import ExportError

__all__ = [
    "accumulator_bounds",
    "signed_bits",
    "reference_activation",
    "fold_thresholds",
    "apply_thresholds",
    "fold_scores",
    "apply_scores",
    "reference_scores",
    "SCALE_BITS",
    "MAX_SCORE_BITS",
    "FRAC_BITS_MAX",
    "progression_bounds",
    "progression_widths",
    "progression_fits_int64",
    "expand_progression",
    "apply_progression",
    "progression_terms",
    "fit_progression",
    "threshold_storage_bits",
]

SCALE_BITS = 12
MAX_SCORE_BITS = 48  # wider output scores only come from a degenerate output layer


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
    levels = 2**abits - 1
    y = (np.asarray(acc, np.float64) - centre) / std * gamma + beta
    return np.clip(np.floor(y * (levels / act_range) + 0.5), 0, levels).astype(np.int64)


def fold_thresholds(*, mean, var, gamma, beta, bias, eps, abits, act_range, acc_min, acc_max):
    """Orientation ``(rows,)`` and thresholds ``(rows, L)`` reproducing :func:`reference_activation` exactly
    for every ``acc`` in ``[acc_min, acc_max]``; thresholds are clipped to ``[acc_min, acc_max + 1]``."""
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    levels = 2**abits - 1
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
    while shift > 0 and float(np.abs((beta - k * centre) * 2.0**shift).max()) + limit * acc_bound >= ceiling:
        shift -= 1
    m = np.round(k * 2.0**shift).astype(np.int64)
    b = np.round((beta - k * centre) * 2.0**shift)
    if not m.any() or not np.all(np.isfinite(b)) or float(np.abs(b).max()) >= ceiling:
        raise ExportError(
            f"output layer: its batch norm scales every class by |gamma / sigma| <= {kmax:.3g}, so the "
            f"scores do not depend on the input at {MAX_SCORE_BITS}-bit precision (the training "
            f"diverged or collapsed); train again"
        )
    return m, b.astype(np.int64), shift


def apply_scores(acc, m, b):
    return np.asarray(acc, np.int64) * m[None, :] + b[None, :]


def reference_scores(acc, *, mean, var, gamma, beta, bias, eps):
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    return (np.asarray(acc, np.float64) - centre) / std * g + beta


# ---------------------------------------------------------------------------------------------------------------
# Progression thresholds (docs/folding.md, "Progression thresholds"): before rounding a row's thresholds are
# theta_k = A + k*D (oriented, D > 0). The export may store integers (frac_bits F; A_fx, D_fx per row) instead of the
# table, the level being DEFINED as  #{k in 1..L : s*acc*2^F >= A_fx + k*D_fx}.

FRAC_BITS_MAX = 20  # the largest F the exporter tries (and readers accept)


def progression_bounds(acc_min, acc_max, levels, frac_bits):
    """``(a_lo, a_hi, d_lo, d_hi)``: the ranges every ``A_fx`` and ``D_fx`` of a progression layer lies in.

    ``D_fx`` in ``[1, span * 2^F]`` (``span = acc_max - acc_min + 1``: a larger step leaves at most one threshold
    inside the accumulator range, which this step does too); ``A_fx`` in ``[(acc_min - 1 - L*span) * 2^F,
    (acc_max + 1) * 2^F]`` (a row with a threshold inside the range has ``A_fx + k*D_fx`` there for some
    ``k <= L``; constant rows use the canonical constants of :func:`fit_progression`)."""
    span = acc_max - acc_min + 1
    one = 1 << frac_bits
    return (acc_min - 1 - levels * span) * one, (acc_max + 1) * one, 1, span * one


def progression_widths(acc_min, acc_max, levels, frac_bits):
    """``(a_bits, d_bits)``: two's complement width of the ``A_fx`` range, unsigned width of the ``D_fx`` range."""
    a_lo, a_hi, _, d_hi = progression_bounds(acc_min, acc_max, levels, frac_bits)
    return signed_bits(a_lo, a_hi), int(d_hi).bit_length()


def progression_fits_int64(acc_min, acc_max, levels, frac_bits):
    """Whether every ``A_fx + k*D_fx`` and ``s*acc*2^F - A_fx`` stays far inside 64-bit integers."""
    a_lo, a_hi, _, d_hi = progression_bounds(acc_min, acc_max, levels, frac_bits)
    worst = max(-a_lo, a_hi) + levels * d_hi + (max(-acc_min, acc_max) << frac_bits)
    return worst < 1 << 62


def expand_progression(a_fx, d_fx, frac_bits, levels, acc_min, acc_max):
    """The table ``(rows, L)`` of a progression: ``T_k = ceil((A_fx + k*D_fx) / 2^F)`` clipped to
    ``[acc_min, acc_max + 1]`` -- the same level as the progression for every ``acc`` in ``[acc_min, acc_max]``."""
    a = np.asarray(a_fx, np.int64)[:, None]
    d = np.asarray(d_fx, np.int64)[:, None]
    k = np.arange(1, levels + 1, dtype=np.int64)[None, :]
    num = a + k * d
    t = -((-num) >> frac_bits)  # ceil(num / 2^F), exact on integers
    return np.clip(t, acc_min, acc_max + 1)


def apply_progression(acc, orientation, a_fx, d_fx, frac_bits, levels):
    """``clamp(floor((s*acc*2^F - A_fx) / D_fx), 0, L)`` for ``acc`` ``(N, rows)``: the progression's definition,
    computed directly (what the hardware's restoring search finds)."""
    v = np.asarray(acc, np.int64) * np.asarray(orientation, np.int64)[None, :]
    r = (v << frac_bits) - np.asarray(a_fx, np.int64)[None, :]
    return np.clip(r // np.asarray(d_fx, np.int64)[None, :], 0, levels)


def progression_terms(*, mean, var, gamma, beta, bias, eps, abits, act_range):
    """Float ``(A, D)`` per row with the oriented thresholds ``s * theta_k = A + k*D`` (``D > 0``; ``nan`` where
    ``gamma == 0``)."""
    centre, std, g, beta = _bn_terms(mean, var, gamma, beta, bias, eps)
    levels = 2**abits - 1
    s = np.where(g < 0, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = s * (centre + (-0.5 * act_range / levels - beta) * std / g)
        d = s * (act_range / levels) * std / g
    bad = ~np.isfinite(a) | ~np.isfinite(d) | (d <= 0)
    return np.where(bad, np.nan, a), np.where(bad, np.nan, d)


def _fit_rows(table, a_est, d_est, frac_bits, acc_min, acc_max, d_tries=3):
    """Per row, integers ``(A_fx, D_fx)`` whose expansion equals ``table`` exactly, or a row mask of failures."""
    rows, levels = table.shape
    one = 1 << frac_bits
    a_lo_b, a_hi_b, d_lo_b, d_hi_b = progression_bounds(acc_min, acc_max, levels, frac_bits)
    k = np.arange(1, levels + 1, dtype=np.int64)[None, :]
    t = np.asarray(table, np.int64)
    below, above = t <= acc_min, t >= acc_max + 1
    # A_fx + k D_fx in ((T-1) 2^F, T 2^F] inside the range; <= acc_min 2^F at the bottom; > acc_max 2^F at the top
    low_base = np.where(below, np.iinfo(np.int64).min // 4, np.where(above, acc_max * one + 1, (t - 1) * one + 1))
    high_base = np.where(above, np.iinfo(np.int64).max // 4, np.where(below, acc_min * one, t * one))
    a_fx = np.zeros(rows, np.int64)
    d_fx = np.ones(rows, np.int64)
    ok = np.zeros(rows, bool)
    const = (below | above).all(axis=1)
    c = below.sum(axis=1)
    # constant rows (gamma == 0, or every threshold clipped): canonical constants
    a_fx[const & (c == levels)] = acc_min * one - levels
    a_fx[const & (c == 0)] = acc_max * one
    mid = const & (c > 0) & (c < levels)
    d_fx[mid] = d_hi_b
    a_fx[mid] = acc_min * one - c[mid] * d_hi_b
    ok[const] = True
    finite = np.isfinite(d_est) & np.isfinite(a_est)
    d0 = np.where(finite, np.clip(np.round(np.nan_to_num(d_est) * one), d_lo_b, d_hi_b), d_lo_b).astype(np.int64)
    a0 = np.where(finite, np.clip(np.round(np.nan_to_num(a_est) * one), a_lo_b, a_hi_b), 0).astype(np.int64)
    todo = ~ok
    for off in [0] + [s * i for i in range(1, d_tries + 1) for s in (-1, 1)]:
        if not todo.any():
            break
        d = np.clip(d0 + off, d_lo_b, d_hi_b)
        lo = (low_base - k * d[:, None]).max(axis=1)
        hi = (high_base - k * d[:, None]).min(axis=1)
        lo, hi = np.maximum(lo, a_lo_b), np.minimum(hi, a_hi_b)
        hit = todo & (lo <= hi)
        a_fx[hit] = np.clip(a0[hit], lo[hit], hi[hit])
        d_fx[hit] = d[hit]
        todo &= ~hit
    return a_fx, d_fx, ~todo


def fit_progression(table, a_est, d_est, *, acc_min, acc_max, max_frac_bits=FRAC_BITS_MAX):
    """The smallest ``F`` (0..``max_frac_bits``) and integers ``A_fx``, ``D_fx`` per row whose progression levels
    equal the exact ``table``'s on every ``acc`` in ``[acc_min, acc_max]``, as ``(F, A_fx, D_fx)``; ``None`` when no
    ``F`` up to the cap fits every row (the layer then keeps its table).

    For a candidate ``D_fx`` (``round(D * 2^F)`` and its neighbours) the admissible ``A_fx`` form one interval (the
    intersection of every ``k``'s), so a fit is exact by construction; :func:`expand_progression` re-checks it."""
    table = np.asarray(table, np.int64)
    levels = table.shape[1]
    for f in range(max_frac_bits + 1):
        if not progression_fits_int64(acc_min, acc_max, levels, f):
            break
        a_fx, d_fx, ok = _fit_rows(table, a_est, d_est, f, acc_min, acc_max)
        if ok.all() and np.array_equal(expand_progression(a_fx, d_fx, f, levels, acc_min, acc_max), table):
            return f, a_fx, d_fx
    return None


def threshold_storage_bits(kind, *, rows, levels, acc_min, acc_max, frac_bits=None):
    """Bits a layer's thresholds take in the format's worst-case widths: a table ``rows * L * threshold_bits``, a
    progression ``rows * (a_bits + d_bits)`` (orientation, one bit per row, is the same for both and left out)."""
    if kind == "table":
        return rows * levels * signed_bits(acc_min, acc_max + 1)
    a_bits, d_bits = progression_widths(acc_min, acc_max, levels, frac_bits)
    return rows * (a_bits + d_bits)
