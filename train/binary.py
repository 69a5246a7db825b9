"""BinaryConnect layers (Courbariaux, Bengio & David, 2015), following the authors' Theano/Lasagne code.

* Forward and backward passes use binary weights ``Wb`` in {-1, +1}; the gradient with respect to ``Wb`` is applied to
  the real-valued weights ``W`` unchanged (straight-through, no ``|W| <= 1`` mask).
* Deterministic: ``Wb = sign(W)`` with ``sign(0) = +1``. Stochastic: ``Wb = +1`` with probability
  ``hard_sigmoid(W) = clip((W + 1) / 2, 0, 1)``.
* ``W`` is initialised uniform in ``[-1, 1]`` (``H = 1``) and clipped to ``[-1, 1]`` after every update.
* Each layer's learning rate is scaled by Glorot's ``W_LR_scale = 1 / sqrt(1.5 / (fan_in + fan_out))``.
"""

import math

import torch
from torch import nn

__all__ = ["hard_sigmoid", "binarize", "w_lr_scale", "BinaryLinear", "BinaryConv2d", "QuantReLU"]


def hard_sigmoid(w):
    return torch.clamp((w + 1.0) / 2.0, 0.0, 1.0)


def binarize(w, *, stochastic=False, generator=None):
    """Binary weights in {-1, +1} as a float tensor, without gradient."""
    if stochastic:
        u = torch.rand(w.shape, generator=generator, dtype=w.dtype, device=w.device)
        return (u < hard_sigmoid(w)).to(w.dtype).mul_(2).sub_(1)
    # sign() maps 0 (and -0) to 0; 2*sign+1 clamped sends it to +1. Ten times faster than torch.where on scalars.
    return torch.sign(w).mul_(2).add_(1).clamp_(-1, 1)


def w_lr_scale(fan_in, fan_out):
    """The authors' "Glorot" learning-rate scale: 34.7 for 784 -> 1024, 26.3 for 1024 -> 10."""
    return 1.0 / math.sqrt(1.5 / (fan_in + fan_out))


class _StraightThrough(torch.autograd.Function):
    # Wb in the forward pass, d loss / d Wb handed to W unchanged: one kernel each way, no w + (wb - w) graph
    @staticmethod
    def forward(ctx, w, stochastic):
        return binarize(w, stochastic=stochastic)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _BinaryWeights:
    """The BinaryConnect recipe shared by the dense and conv layers: binary weights forward and backward, real-valued
    weights initialised uniform in [-1, 1], clipped to [-1, 1], updated at ``lr_scale`` times the learning rate."""

    def _init_binary(self, *, stochastic, binary, fan_in, fan_out):
        self.stochastic = stochastic
        self.binary = binary  # the authors' switch: False trains the same net with real-valued weights
        self.lr_scale = w_lr_scale(fan_in, fan_out)
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            if self.bias is not None:
                self.bias.zero_()

    def binary_weight(self):
        """Weights for the forward pass: binary in training; at evaluation the authors use sign(W) for the
        deterministic method and the real-valued W for the stochastic one."""
        w = self.weight
        if not self.binary or (not self.training and self.stochastic):
            return w
        return _StraightThrough.apply(w, self.stochastic and self.training)

    @torch.no_grad()
    def clip_(self):
        self.weight.clamp_(-1.0, 1.0)

    def extra_repr(self):
        return super().extra_repr() + f", stochastic={self.stochastic}"


class BinaryLinear(_BinaryWeights, nn.Linear):
    """Fully connected layer whose forward pass uses binarised weights.

    Parameters
    ----------
    in_features, out_features : int
        Layer shape.
    stochastic : bool
        Stochastic (hard-sigmoid Bernoulli) instead of deterministic (sign) binarisation during training.
    bias : bool
        Real-valued bias (batch norm follows, so the exporter folds it into the normalisation).
    binary : bool
        False trains real-valued weights (the float baseline).

    Members
    -------
    lr_scale : float
        ``W_LR_scale`` for this layer's binary weights.
    """

    def __init__(self, in_features, out_features, *, stochastic=False, bias=True, binary=True):
        super().__init__(in_features, out_features, bias=bias)
        self._init_binary(stochastic=stochastic, binary=binary, fan_in=in_features, fan_out=out_features)

    def forward(self, x):
        return nn.functional.linear(x, self.binary_weight(), self.bias)


class BinaryConv2d(_BinaryWeights, nn.Conv2d):
    """2-D convolution whose forward pass uses binarised weights (the same recipe as :class:`BinaryLinear`).

    Glorot's fan-in and fan-out count the receptive field, as the authors' Lasagne code does:
    ``fan_in = C_in * K * K``, ``fan_out = C_out * K * K``.

    Parameters
    ----------
    in_channels, out_channels, kernel : int
    stride, padding : int
        Zero padding on every side.
    stochastic, bias, binary : bool
        As for :class:`BinaryLinear`.
    """

    def __init__(
        self, in_channels, out_channels, kernel, *, stride=1, padding=0, stochastic=False, bias=True, binary=True
    ):
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias)
        self._init_binary(
            stochastic=stochastic,
            binary=binary,
            fan_in=in_channels * kernel * kernel,
            fan_out=out_channels * kernel * kernel,
        )

    def forward(self, x):
        return nn.functional.conv2d(x, self.binary_weight(), self.bias, self.stride, self.padding)


class _RoundHalfUpSTE(torch.autograd.Function):
    # floor(y + 1/2): round half up, which the exporter turns into exact integer thresholds.
    @staticmethod
    def forward(ctx, y, levels):
        ctx.save_for_backward(y)
        ctx.levels = levels
        return torch.clamp(torch.floor(y + 0.5), 0, levels)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        # straight-through inside the clipping range, zero outside (clipped-ReLU STE)
        return grad * ((y >= 0) & (y <= ctx.levels)).to(grad.dtype), None


class QuantReLU(nn.Module):
    """Hidden activation quantised to ``abits`` unsigned bits.

    ``a = clamp(floor(y * L / R + 1/2), 0, L)`` with ``L = 2**abits - 1`` and ``R`` = ``act_range`` (4.0): a ReLU
    clipped at ``R`` (in units of the preceding batch norm's output) and rounded half-up to ``L + 1`` levels.
    The output is the integer level itself, so the next layer's accumulator is an exact integer.
    """

    def __init__(self, abits, act_range=4.0):
        super().__init__()
        self.abits = abits
        self.levels = 2**abits - 1
        self.act_range = float(act_range)

    def forward(self, y):
        return _RoundHalfUpSTE.apply(y * (self.levels / self.act_range), self.levels)

    def extra_repr(self):
        return f"abits={self.abits}, act_range={self.act_range}"
