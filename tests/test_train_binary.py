"""BinaryConnect layer behaviour on tiny tensors: STE, clipping, binarisation, W_LR_scale, for the dense and the
conv layer; BinaryNet's block order and its HWC flattening."""

import pytest
import torch
from torch import nn

from train import TrainError
from train.arch import parse_arch
from train.binary import BinaryConv2d, BinaryLinear, QuantReLU, binarize, hard_sigmoid, w_lr_scale
from train.model import BinaryNet


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
    # MLP strings keep their meaning (sizes from input to classes); presets get the classes appended
    dense = parse_arch("sfc", (1, 28, 28), 10)
    assert [(layer.kind, layer.in_values, layer.out_features) for layer in dense] == [
        ("dense", 784, 256),
        ("dense", 256, 256),
        ("dense", 256, 256),
        ("dense", 256, 10),
    ]
    assert [layer.out_features for layer in parse_arch("784-100-10", (1, 28, 28), 10)] == [100, 10]
    for bad in ("xfc", "784-0-10", "64-10", "784--10", ""):
        with pytest.raises(TrainError):
            parse_arch(bad, (1, 28, 28), 10)


def test_model_rejects_bad_abits():
    for abits in (1, 9):
        with pytest.raises(TrainError, match="abits"):
            BinaryNet(parse_arch("4-3-2", (1, 2, 2), 2), abits=abits)
    with pytest.raises(TrainError, match="binarize"):
        BinaryNet(parse_arch("4-3-2", (1, 2, 2), 2), binarize="sign")


def _conv_with(weight, **kw):
    layer = BinaryConv2d(weight.shape[1], weight.shape[0], weight.shape[2], **kw)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.zero_()
    return layer


def _sign(w):
    return torch.where(w >= 0, 1.0, -1.0)  # sign(0) = +1


def test_conv_forward_uses_plus_minus_one_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(5, 3, 3, 3, generator=g) * 2 - 1
    w[0, 0, 0, 0] = 0.0  # sign(0) = +1
    w[1, 1, 1, 1] = -0.0
    for stride, padding in ((1, 0), (2, 1)):
        layer = _conv_with(w, stride=stride, padding=padding)
        x = torch.randint(0, 256, (2, 3, 7, 6), generator=g).float()
        y = layer(x)
        ref = nn.functional.conv2d(x, _sign(w), None, stride, padding)
        assert torch.equal(y, ref)  # integer inputs, +-1 weights: exact
    assert set(layer.binary_weight().unique().tolist()) == {-1.0, 1.0}
    layer.eval()  # deterministic evaluation: sign(W) too
    assert torch.equal(layer.binary_weight(), _sign(w))


def test_conv_straight_through_gradient_unmasked():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(4, 2, 3, 3, generator=g) * 2 - 1
    w[0, 0] = 1.0  # on the clip boundary
    w[1, 1] = -1.0
    w[2, 0, 0, 0] = 1.5  # outside [-1, 1] (before clipping): the gradient is not masked there either
    layer = _conv_with(w, padding=1)
    x = torch.randint(0, 16, (3, 2, 5, 5), generator=g).float()
    upstream = torch.randn(3, 4, 5, 5, generator=g)
    (layer(x) * upstream).sum().backward()
    wb = _sign(w).requires_grad_()
    (nn.functional.conv2d(x, wb, None, 1, 1) * upstream).sum().backward()
    # d loss / d Wb, handed to W unchanged
    assert torch.allclose(layer.weight.grad, wb.grad, rtol=0, atol=1e-4)
    assert layer.weight.grad.abs().sum() > 0


def test_conv_clip_and_init():
    layer = BinaryConv2d(16, 32, 3)
    w = layer.weight.detach()
    assert w.min() >= -1 and w.max() <= 1 and abs(float(w.mean())) < 0.02
    with torch.no_grad():
        layer.weight.mul_(3.0)
        layer.weight[0, 0, 0, 0] = 0.25
    layer.clip_()
    assert layer.weight.max() <= 1.0 and layer.weight.min() >= -1.0
    assert layer.weight[0, 0, 0, 0].item() == 0.25
    assert layer.bias is not None and not layer.bias.any()


def test_conv_w_lr_scale_counts_the_receptive_field():
    # Lasagne's Glorot fan-in/out of a conv layer: C_in*K*K and C_out*K*K
    layer = BinaryConv2d(3, 64, 3)
    assert layer.lr_scale == pytest.approx(w_lr_scale(3 * 9, 64 * 9))
    assert layer.lr_scale == pytest.approx((603 / 1.5) ** 0.5)  # 20.05
    assert BinaryConv2d(128, 256, 3).lr_scale == pytest.approx(1 / (1.5 / (128 * 9 + 256 * 9)) ** 0.5)
    assert BinaryConv2d(128, 256, 3).lr_scale != pytest.approx(w_lr_scale(128, 256))


def test_conv_stochastic_and_real_valued_switches():
    g = torch.Generator().manual_seed(2)
    w = torch.rand(3, 2, 3, 3, generator=g) * 2 - 1
    sto = _conv_with(w, stochastic=True)
    sto.train()
    assert set(sto.binary_weight().unique().tolist()) <= {-1.0, 1.0}
    sto.eval()  # the authors evaluate a stochastic net with its real-valued weights
    assert torch.equal(sto.binary_weight(), w)
    real = _conv_with(w, binary=False)
    assert torch.equal(real.binary_weight(), w)


def _kinds(net):
    return [type(m).__name__ for m in net.net]


def test_binary_net_block_order():
    net = BinaryNet(parse_arch("4c3p1-mp2-6c3-5-3", (2, 6, 6), 3), abits=2)
    # conv -> batch norm -> quantised activation -> max-pool; flatten (H, W, C) before the first dense layer
    assert _kinds(net) == [
        "_Pixels",
        "BinaryConv2d",
        "BatchNorm2d",
        "QuantReLU",
        "MaxPool2d",
        "BinaryConv2d",
        "BatchNorm2d",
        "QuantReLU",
        "_FlattenHWC",
        "BinaryLinear",
        "BatchNorm1d",
        "QuantReLU",
        "BinaryLinear",
        "BatchNorm1d",
    ]
    assert [type(m).__name__ for m in net.binary_layers()] == [
        "BinaryConv2d",
        "BinaryConv2d",
        "BinaryLinear",
        "BinaryLinear",
    ]
    conv1 = net.binary_layers()[1]
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.padding) == (4, 6, (3, 3), (0, 0))
    assert net.binary_layers()[2].in_features == 6 * 1 * 1
    mlp = BinaryNet(parse_arch("64-8-10", (1, 8, 8), 10))
    assert _kinds(mlp) == ["_Pixels", "BinaryLinear", "BatchNorm1d", "QuantReLU", "BinaryLinear", "BatchNorm1d"]


def test_binary_net_flattens_hwc_before_dense():
    net = BinaryNet(parse_arch("3c1-4", (2, 2, 3), 4)).eval()
    seen = {}
    relu = next(m for m in net.net if isinstance(m, QuantReLU))
    dense = next(m for m in net.net if isinstance(m, BinaryLinear))
    relu.register_forward_hook(lambda m, i, o: seen.__setitem__("map", o))
    dense.register_forward_pre_hook(lambda m, i: seen.__setitem__("vector", i[0]))
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (5, 2, 3, 2), generator=g, dtype=torch.uint8)  # (N, H, W, C)
    net(x)
    nchw = seen["map"]
    assert nchw.shape == (5, 3, 2, 3)
    # raster order, channels innermost: value (h, w, c) at h*W*C + w*C + c
    assert torch.equal(seen["vector"], nchw.permute(0, 2, 3, 1).reshape(5, -1))
    assert torch.equal(seen["vector"][:, 1 * 3 * 3 + 2 * 3 + 1], nchw[:, 1, 1, 2])


def test_binary_net_pixels_layout():
    g = torch.Generator().manual_seed(4)
    conv = BinaryNet(parse_arch("4c3-10", (1, 5, 5), 10)).eval()
    x = torch.randint(0, 256, (3, 5, 5, 1), generator=g, dtype=torch.uint8)
    # one channel: (N, H, W) is accepted as well
    assert torch.equal(conv(x), conv(x[..., 0]))
    rgb = BinaryNet(parse_arch("2c1-3", (3, 1, 1), 3)).eval()
    conv0 = rgb.binary_layers()[0]
    with torch.no_grad():
        conv0.weight.copy_(torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]]).reshape(2, 3, 1, 1))
    seen = {}
    rgb.net[2].register_forward_pre_hook(lambda m, i: seen.__setitem__("acc", i[0]))  # batch norm input
    rgb(torch.tensor([[[[10, 20, 40]]]], dtype=torch.uint8))  # one pixel, channels last: R, G, B
    assert seen["acc"].flatten().tolist() == [10 - 20 - 40, -10 - 20 + 40]


def test_binary_net_config_round_trip():
    layers = parse_arch("8c3s2p1-mp2-16-10", (3, 9, 9), 10)
    net = BinaryNet(layers, binarize="stoch", abits=3)
    again = BinaryNet.from_config(net.config())
    assert again.layers == layers and again.binarize == "stoch" and again.abits == 3
    assert again.state_dict().keys() == net.state_dict().keys()
    assert all(layer.stochastic for layer in again.binary_layers())
