"""Integer folding equals the float batch norm + quantised activation, at every threshold boundary."""

import numpy as np
import pytest

from export.folding import (accumulator_bounds, apply_scores, apply_thresholds, fold_scores, fold_thresholds,
                            reference_activation, reference_scores, signed_bits)


def _random_bn(rng, rows):
    return dict(mean=rng.normal(0, 300, rows), var=rng.uniform(0, 4e4, rows) * (rng.random(rows) > 0.1),
                gamma=rng.normal(0, 1.5, rows) * (rng.random(rows) > 0.1), beta=rng.normal(0, 1, rows),
                bias=rng.normal(0, 0.5, rows), eps=1e-4)


@pytest.mark.parametrize("abits", [2, 4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_match_reference_at_every_boundary(abits, seed):
    rng = np.random.default_rng(seed)
    rows, n_in = 48, 784
    bn = _random_bn(rng, rows)
    bn["var"][:3] = 0.0      # zero variance
    bn["gamma"][3:6] = 0.0   # constant neurons
    bn["gamma"][6:12] = -np.abs(bn["gamma"][6:12]) - 0.1  # negative scale: order flips
    lo, hi = accumulator_bounds(n_in, 255)
    orient, thr = fold_thresholds(**bn, abits=abits, act_range=4.0, acc_min=lo, acc_max=hi)
    assert thr.shape == (rows, 2 ** abits - 1) and (orient[6:12] == -1).all()
    assert thr.min() >= lo and thr.max() <= hi + 1
    # every threshold, one below and one above, mapped back to the accumulator domain
    t = np.concatenate([thr - 1, thr, thr + 1], axis=1)
    acc = np.clip(orient[:, None] * t, lo, hi).T  # (samples, rows)
    acc = np.concatenate([acc, rng.integers(lo, hi + 1, (500, rows)), np.full((1, rows), lo), np.full((1, rows), hi)])
    ref = reference_activation(acc, **bn, abits=abits, act_range=4.0)
    assert np.array_equal(apply_thresholds(acc, orient, thr), ref)
    # the constant neurons give the same level everywhere
    assert (ref[:, 3:6] == ref[:1, 3:6]).all()


def test_thresholds_on_a_trained_layer(digits_export):
    from export.manifest import load_layers
    import torch
    ckpt, export_dir = digits_export
    layers = load_layers(export_dir)
    model = torch.load(ckpt, weights_only=False)
    sd = model["model"]
    p = layers[0]
    acc = np.arange(p.acc_min, p.acc_max + 1, 7)[:, None].repeat(p.out_features, 1)
    bn = dict(mean=sd["net.1.running_mean"].double().numpy(), var=sd["net.1.running_var"].double().numpy(),
              gamma=sd["net.1.weight"].double().numpy(), beta=sd["net.1.bias"].double().numpy(),
              bias=sd["net.0.bias"].double().numpy(), eps=1e-4)
    ref = reference_activation(acc, **bn, abits=8, act_range=4.0)
    assert np.array_equal(apply_thresholds(acc, p.orientation, p.thresholds), ref)


def test_scores_track_float_and_fit_width():
    rng = np.random.default_rng(5)
    rows = 10
    bn = _random_bn(rng, rows)
    bn["gamma"] = np.abs(bn["gamma"]) + 0.2
    bn["var"] = rng.uniform(1e3, 4e4, rows)  # trained output layers: no degenerate classes
    m, b, shift = fold_scores(**bn)
    assert np.abs(m).max() < 2 ** 11
    acc = rng.integers(-2000, 2000, (1000, rows))
    ref = reference_scores(acc, **bn) * 2.0 ** shift
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
        x_max = np.full((1, p.in_features), 2 ** p.in_bits - 1)
        for w in (np.ones((1, p.in_features), np.int8), -np.ones((1, p.in_features), np.int8)):
            acc = int(binary_matvec(x_max, w, p.acc_max)[0, 0])
            assert p.acc_min <= acc <= p.acc_max
            assert -(1 << (p.acc_bits - 1)) <= acc < (1 << (p.acc_bits - 1))
        if p.is_output:
            s = apply_scores(np.array([[p.acc_min] * p.out_features, [p.acc_max] * p.out_features]), p.scale,
                             p.offset)
            assert np.abs(s).max() < 1 << (p.score_bits - 1)
