"""Binary-weight networks built from the typed layer list (:mod:`common.layers`), the network the exporter reads back.

Block order per compute layer: binary conv or dense -> batch norm -> quantised activation (hidden layers only);
a max-pool layer pools the activation levels that precede it (what the hardware pools). The last layer's batch-norm
output is the class scores.
"""

import torch
from torch import nn

from common.layers import layer_from_dict

from . import TrainError
from .binary import BinaryConv2d, BinaryLinear, QuantReLU

__all__ = ["BinaryNet", "BN_EPS", "BN_MOMENTUM", "ACT_RANGE"]

BN_EPS = 1e-4  # the authors' epsilon
BN_MOMENTUM = 0.15  # the authors' alpha: running = (1 - alpha) * running + alpha * batch
ACT_RANGE = 4.0  # QuantReLU clip point, in batch-norm output units


class _Pixels(nn.Module):
    """``(N, H, W, C)`` 8-bit pixels -> float, as ``(N, C, H, W)`` for a map layer or flattened ``H, W, C`` for a
    dense one. Pixels enter as their integer values 0..255, exactly what the hardware receives."""

    def __init__(self, flatten):
        super().__init__()
        self.flatten = flatten

    def forward(self, x):
        x = x.to(torch.float32)
        return x.reshape(len(x), -1) if self.flatten else x.permute(0, 3, 1, 2)


class _FlattenHWC(nn.Module):
    """``(N, C, H, W)`` -> ``(N, H*W*C)`` in raster order with channels innermost: the order the hardware streams a
    map and the column order of the next dense layer's exported weights."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)


class BinaryNet(nn.Module):
    """A BinaryConnect network of :class:`~train.binary.BinaryConv2d`, :class:`~train.binary.BinaryLinear` and
    max-pool layers.

    Parameters
    ----------
    layers : list of :class:`common.layers.Layer`
        The typed layer list (``train.arch.parse_arch``); the last is dense and gives the scores.
    binarize : str
        ``"det"`` or ``"stoch"``.
    abits : int
        Hidden activation bits (2..8).
    dropout_in, dropout_hidden : float
        Optional dropout on the input and after each hidden activation (0 disables it, the default).
    binary : bool
        False trains real-valued weights (the float baseline for measuring binarisation overhead).
    """

    def __init__(self, layers, *, binarize="det", abits=8, dropout_in=0.0, dropout_hidden=0.0, binary=True):
        super().__init__()
        if binarize not in ("det", "stoch"):
            raise TrainError(f"binarize {binarize!r} must be 'det' or 'stoch'")
        if not (isinstance(abits, int) and 2 <= abits <= 8):
            raise TrainError(f"abits {abits!r} must be an integer in 2..8")
        self.layers = list(layers)
        self.binarize = binarize
        self.abits = abits
        stoch = binarize == "stoch"
        mods = [_Pixels(flatten=self.layers[0].kind == "dense")]
        mods += [nn.Dropout(dropout_in)] if dropout_in else []
        last, previous = self.layers[-1], None
        for layer in self.layers:
            c = layer.in_shape[0]
            if layer.kind == "conv2d":
                mods += [
                    BinaryConv2d(
                        c,
                        layer.out_channels,
                        layer.kernel,
                        stride=layer.stride,
                        padding=layer.padding,
                        stochastic=stoch,
                        binary=binary,
                    ),
                    nn.BatchNorm2d(layer.out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
                ]
            elif layer.kind == "maxpool2d":
                mods.append(nn.MaxPool2d(layer.kernel, layer.stride))
                previous = layer
                continue
            elif layer.kind == "dense":
                if previous is not None and previous.kind != "dense":
                    mods.append(_FlattenHWC())
                mods += [
                    BinaryLinear(layer.in_values, layer.out_features, stochastic=stoch, binary=binary),
                    nn.BatchNorm1d(layer.out_features, eps=BN_EPS, momentum=BN_MOMENTUM),
                ]
            else:
                raise TrainError(f"layer {layer.name!r}: kind {layer.kind!r} cannot be trained")
            if layer is not last:
                mods.append(QuantReLU(abits, ACT_RANGE))
                if dropout_hidden:
                    mods.append(nn.Dropout(dropout_hidden))
            previous = layer
        self.net = nn.Sequential(*mods)

    @classmethod
    def from_config(cls, config):
        """The network of a checkpoint's ``model_config`` (see :meth:`config`)."""
        layers = [layer_from_dict(d, f"model_config layer {i}") for i, d in enumerate(config["layers"])]
        return cls(layers, binarize=config["binarize"], abits=config["abits"])

    def forward(self, pixels):
        """Scores for ``(N, H, W, C)`` pixels (``(N, H, W)`` for one channel also works)."""
        if pixels.dim() == 3:
            pixels = pixels.unsqueeze(-1)
        return self.net(pixels)

    def binary_layers(self):
        return [m for m in self.net if isinstance(m, (BinaryLinear, BinaryConv2d))]

    def clip_weights_(self):
        for layer in self.binary_layers():
            layer.clip_()

    def set_stochastic(self, stochastic):
        for layer in self.binary_layers():
            layer.stochastic = stochastic

    def config(self):
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "binarize": self.binarize,
            "abits": self.abits,
            "act_range": ACT_RANGE,
            "bn_eps": BN_EPS,
        }

    @torch.no_grad()
    def predict(self, pixels, *, sign_weights=False, batch=None):
        """Class scores in evaluation mode; ``sign_weights`` forces sign(W) (what hardware runs) for stoch nets."""
        was = self.training
        self.eval()
        saved = [layer.stochastic for layer in self.binary_layers()]
        if sign_weights:
            self.set_stochastic(False)
        batch = batch or (2000 if self.layers[0].kind == "dense" else 500)
        try:
            return torch.cat([self(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])
        finally:
            for layer, s in zip(self.binary_layers(), saved):
                layer.stochastic = s
            self.train(was)
