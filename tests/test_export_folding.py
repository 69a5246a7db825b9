"""Integer folding equals the float batch norm + quantised activation, at every threshold boundary."""

import warnings

import numpy as np
import pytest

from export import ExportError
from export.folding import (
    MAX_SCORE_BITS,
    SCALE_BITS,
    accumulator_bounds,
    apply_scores,
    apply_thresholds,
    fold_scores,
    fold_thresholds,
    reference_activation,
    reference_scores,
    signed_bits,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")  # the session's trainings: see conftest


def _random_bn(rng, rows):
    return dict(
        mean=rng.normal(0, 300, rows),
        var=rng.uniform(0, 4e4, rows) * (rng.random(rows) > 0.1),
        gamma=rng.normal(0, 1.5, rows) * (rng.random(rows) > 0.1),
        beta=rng.normal(0, 1, rows),
        bias=rng.normal(0, 0.5, rows),
        eps=1e-4,
    )


@pytest.mark.parametrize("abits", [2, 4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_match_reference_at_every_boundary(abits, seed):
    rng = np.random.default_rng(seed)
    rows, n_in = 48, 784
    bn = _random_bn(rng, rows)
    bn["var"][:3] = 0.0  # zero variance
    bn["gamma"][3:6] = 0.0  # constant neurons
    bn["gamma"][6:12] = -np.abs(bn["gamma"][6:12]) - 0.1  # negative scale: order flips
    lo, hi = accumulator_bounds(n_in, 255)
    orient, thr = fold_thresholds(**bn, abits=abits, act_range=4.0, acc_min=lo, acc_max=hi)
    assert thr.shape == (rows, 2**abits - 1) and (orient[6:12] == -1).all()
    assert thr.min() >= lo and thr.max() <= hi + 1
    # every threshold, one below and one above, mapped back to the accumulator domain
    t = np.concatenate([thr - 1, thr, thr + 1], axis=1)
    acc = np.clip(orient[:, None] * t, lo, hi).T  # (samples, rows)
    acc = np.concatenate([acc, rng.integers(lo, hi + 1, (500, rows)), np.full((1, rows), lo), np.full((1, rows), hi)])
    ref = reference_activation(acc, **bn, abits=abits, act_range=4.0)
    assert np.array_equal(apply_thresholds(acc, orient, thr), ref)
    # the constant neurons give the same level everywhere
    assert (ref[:, 3:6] == ref[:1, 3:6]).all()


def _trained_bn(model, index):
    """Batch-norm parameters (float64) of the ``index``-th compute layer of a trained BinaryNet."""
    from train.binary import BinaryConv2d, BinaryLinear

    mods = list(model.net)
    at = [i for i, m in enumerate(mods) if isinstance(m, (BinaryLinear, BinaryConv2d))][index]
    lin, bn = mods[at], mods[at + 1]
    return dict(
        mean=bn.running_mean.double().numpy(),
        var=bn.running_var.double().numpy(),
        gamma=bn.weight.detach().double().numpy(),
        beta=bn.bias.detach().double().numpy(),
        bias=lin.bias.detach().double().numpy(),
        eps=bn.eps,
    )


@pytest.mark.parametrize("which", ["digits_export", "digits_conv_export"])
def test_thresholds_on_a_trained_layer(which, request):
    from export.manifest import load_layers
    from train.trainer import load_model

    ckpt, export_dir = request.getfixturevalue(which)
    layers = [p for p in load_layers(export_dir) if p.spec.compute]
    model, ck = load_model(ckpt)
    act_range = ck["model_config"]["act_range"]
    for i, p in enumerate(layers[:-1]):  # every hidden compute layer (dense or conv)
        acc = np.arange(p.acc_min, p.acc_max + 1, 7)[:, None].repeat(p.out_features, 1)
        ref = reference_activation(acc, **_trained_bn(model, i), abits=8, act_range=act_range)
        assert np.array_equal(apply_thresholds(acc, p.orientation, p.thresholds), ref), p.name
    out = layers[-1]
    bn = _trained_bn(model, len(layers) - 1)
    acc = np.arange(out.acc_min, out.acc_max + 1, 3)[:, None].repeat(out.rows, 1)
    ref = reference_scores(acc, **bn) * 2.0 ** _shift(export_dir)
    assert np.abs(apply_scores(acc, out.scale, out.offset) - ref).max() <= 0.5 * out.acc_max + 0.5 + 1e-6


def _shift(export_dir):
    from export.manifest import read_manifest

    return read_manifest(export_dir)["layers"][-1]["activation"]["shift"]


def test_scores_track_float_and_fit_width():
    rng = np.random.default_rng(5)
    rows = 10
    bn = _random_bn(rng, rows)
    bn["gamma"] = np.abs(bn["gamma"]) + 0.2
    bn["var"] = rng.uniform(1e3, 4e4, rows)  # trained output layers: no degenerate classes
    m, b, shift = fold_scores(**bn, acc_bound=2000)
    assert np.abs(m).max() < 2**11
    acc = rng.integers(-2000, 2000, (1000, rows))
    ref = reference_scores(acc, **bn) * 2.0**shift
    got = apply_scores(acc, m, b)
    assert np.abs(got - ref).max() <= 0.5 * 2000 * 1.0 + 0.5 + 1e-6  # |dm| <= 1/2 per unit of acc, |db| <= 1/2
    assert (np.argmax(got, 1) == np.argmax(ref, 1)).mean() > 0.99


def test_signed_bits_and_bounds():
    assert signed_bits(-128, 127) == 8 and signed_bits(-129, 0) == 9 and signed_bits(0, 128) == 9
    lo, hi = accumulator_bounds(784, 255)
    assert (lo, hi) == (-199920, 199920) and signed_bits(lo, hi) == 19


def test_extremes_stay_inside_accumulator_width(digits_export):
    """All +1 weights x max pixels (and all -1) must fit the manifest's acc_bits for every layer."""
    from export.golden import binary_matvec
    from export.manifest import load_layers

    for p in load_layers(digits_export[1]):
        x_max = np.full((1, p.in_features), 2**p.in_bits - 1)
        for w in (np.ones((1, p.in_features), np.int8), -np.ones((1, p.in_features), np.int8)):
            acc = int(binary_matvec(x_max, w, p.acc_max)[0, 0])
            assert p.acc_min <= acc <= p.acc_max
            assert -(1 << (p.acc_bits - 1)) <= acc < (1 << (p.acc_bits - 1))
        if p.is_output:
            s = apply_scores(np.array([[p.acc_min] * p.out_features, [p.acc_max] * p.out_features]), p.scale, p.offset)
            assert np.abs(s).max() < 1 << (p.score_bits - 1)


def test_apply_thresholds_is_a_count_of_passed_thresholds():
    rng = np.random.default_rng(7)
    rows, levels = 13, 15
    thr = np.sort(rng.integers(-40, 40, (rows, levels)), axis=1)
    thr[0] = 5  # all equal
    thr[1, :7] = -41  # below every value: always passed
    orient = rng.choice([-1, 1], rows)
    acc = rng.integers(-45, 46, (300, rows))
    naive = ((orient[None, :, None] * acc[:, :, None]) >= thr[None, :, :]).sum(axis=2)
    assert np.array_equal(apply_thresholds(acc, orient, thr), naive)
    assert apply_thresholds(np.array([[4] * rows]), orient * 0 + 1, thr)[0, 0] == 0
    assert apply_thresholds(np.array([[5] * rows]), orient * 0 + 1, thr)[0, 0] == levels


def _output_bn(rows=10, seed=3):
    rng = np.random.default_rng(seed)
    return dict(
        mean=rng.normal(0, 50, rows),
        var=rng.uniform(1e3, 4e4, rows),
        gamma=rng.uniform(0.5, 2, rows),
        beta=rng.normal(0, 1, rows),
        bias=rng.normal(0, 0.5, rows),
        eps=1e-4,
    )


@pytest.mark.parametrize("gamma", [1e-16, -1e-16, 0.0])
def test_fold_scores_refuses_a_degenerate_output_layer(gamma):
    """|gamma| ~ 1e-16 on every class: the scores cannot depend on the input at any usable width; refused with an
    ExportError -- not a numpy overflow warning and a wrapped integer export."""
    bn = _output_bn()
    bn["gamma"] = np.full(10, gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ExportError, match="output layer"):
            fold_scores(**bn, acc_bound=8160)


def test_fold_scores_keeps_scores_in_range():
    bn = _output_bn()
    bn["gamma"][3] = 1e-16  # one dead class is allowed: its scale rounds to 0
    bn["beta"][5] = 40.0  # a large offset lowers the shift instead of overflowing
    for bound in (10, 8160, 199920, 2**30):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            m, b, shift = fold_scores(**bn, acc_bound=bound)
        assert np.abs(m).max() < 2 ** (SCALE_BITS - 1) and m[3] == 0 and 0 <= shift <= 62
        extremes = apply_scores(np.array([[-bound] * 10, [bound] * 10]), m, b)
        assert np.abs(extremes).max() < 2 ** (MAX_SCORE_BITS - 2), bound
        ref = reference_scores(np.array([[-bound] * 10, [0] * 10, [bound] * 10]), **bn) * 2.0**shift
        got = apply_scores(np.array([[-bound] * 10, [0] * 10, [bound] * 10]), m, b)
        assert np.abs(got - ref).max() <= 0.5 * bound + 0.5 + 1e-6
