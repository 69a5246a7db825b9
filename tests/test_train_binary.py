"""BinaryConnect layer behaviour on tiny tensors: STE, clipping, binarisation, W_LR_scale."""

import pytest
import torch

from train.binary import BinaryLinear, QuantReLU, binarize, hard_sigmoid, w_lr_scale
from train.model import BinaryMLP, parse_arch
from train import TrainError


def test_deterministic_sign_zero_is_plus_one():
    w = torch.tensor([-0.7, -0.0, 0.0, 1e-9, 0.3])
    assert binarize(w).tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]


def test_stochastic_mean_matches_hard_sigmoid():
    g = torch.Generator().manual_seed(1)
    w = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.25, 0.9, 1.0, 2.0])
    n = 200_000
    samples = binarize(w.expand(n, -1).contiguous(), stochastic=True, generator=g)
    assert set(samples.unique().tolist()) <= {-1.0, 1.0}
    p_plus = (samples > 0).float().mean(0)
    assert torch.allclose(p_plus, hard_sigmoid(w), atol=4e-3)
    # E[Wb] = 2p - 1 = clip(W, -1, 1)
    assert torch.allclose(samples.mean(0), w.clamp(-1, 1), atol=8e-3)


def test_straight_through_gradient_reaches_real_weights_unmasked():
    layer = BinaryLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.2, 1.0], [-1.0, 0.0, 0.3]]))
        layer.bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    y = layer(x)
    # forward uses sign(W)
    assert y.tolist() == [[1 - 2 + 3, -1 + 2 + 3]]
    y.sum().backward()
    # d sum / d Wb = x for every row; passed to W unchanged, including |W| = 1 entries (no mask)
    assert layer.weight.grad.tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]


def test_clip_after_step_keeps_weights_in_range():
    layer = BinaryLinear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -3.0, 0.5, 1.0]] * 3))
    layer.clip_()
    assert layer.weight.max() <= 1.0 and layer.weight.min() >= -1.0
    assert layer.weight[0].tolist() == [1.0, -1.0, 0.5, 1.0]


def test_init_uniform_in_unit_interval():
    layer = BinaryLinear(500, 400)
    w = layer.weight.detach()
    assert w.min() >= -1 and w.max() <= 1
    assert abs(float(w.mean())) < 0.01 and abs(float(w.std()) - (1 / 3) ** 0.5) < 0.01


def test_w_lr_scale_glorot_values():
    assert w_lr_scale(784, 1024) == pytest.approx(34.7, abs=0.05)
    assert w_lr_scale(1024, 10) == pytest.approx(26.3, abs=0.05)
    assert BinaryLinear(784, 1024).lr_scale == pytest.approx(34.72, abs=0.01)


def test_eval_weights_det_sign_stoch_real():
    det, sto = BinaryLinear(2, 1), BinaryLinear(2, 1, stochastic=True)
    for layer in (det, sto):
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[0.25, -0.5]]))
        layer.eval()
    assert det.binary_weight().tolist() == [[1.0, -1.0]]
    assert sto.binary_weight().tolist() == [[0.25, -0.5]]


def test_quant_relu_levels_and_ste():
    q = QuantReLU(2, act_range=3.0)  # L = 3, one level per BN unit
    y = torch.tensor([-1.0, 0.49, 0.5, 1.49, 1.5, 2.5, 9.0], requires_grad=True)
    a = q(y)
    assert a.tolist() == [0, 0, 1, 1, 2, 3, 3]
    a.sum().backward()
    assert y.grad.tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_parse_arch():
    assert parse_arch("sfc", 784, 10) == [784, 256, 256, 256, 10]
    assert parse_arch("784-100-10", 784, 10) == [784, 100, 10]
    for bad in ("xfc", "784-0-10", "64-10", "784--10", ""):
        with pytest.raises(TrainError):
            parse_arch(bad, 784, 10)


def test_model_rejects_bad_abits():
    for abits in (1, 9):
        with pytest.raises(TrainError, match="abits"):
            BinaryMLP([4, 3, 2], abits=abits)
