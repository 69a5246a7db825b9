"""Binary-weight multilayer perceptrons: architecture presets and the network the exporter reads back."""

import re

import torch
from torch import nn

from . import TrainError
from .binary import BinaryLinear, QuantReLU

__all__ = ["ARCH_PRESETS", "parse_arch", "BinaryMLP", "BN_EPS", "BN_MOMENTUM", "ACT_RANGE"]

# FINN's names for the three BinaryConnect-style MLPs; lfc is the paper's MNIST network.
ARCH_PRESETS = {"tfc": [64] * 3, "sfc": [256] * 3, "lfc": [1024] * 3}
BN_EPS = 1e-4        # the authors' epsilon
BN_MOMENTUM = 0.15   # the authors' alpha: running = (1 - alpha) * running + alpha * batch
ACT_RANGE = 4.0      # QuantReLU clip point, in batch-norm output units


def parse_arch(arch, in_features, classes):
    """Layer sizes ``[in, hidden..., classes]`` from a preset name or an explicit ``784-256-256-10`` string."""
    if arch in ARCH_PRESETS:
        return [in_features, *ARCH_PRESETS[arch], classes]
    if not re.fullmatch(r"[1-9][0-9]*(-[1-9][0-9]*)+", arch or ""):
        raise TrainError(f"arch {arch!r} is neither a preset ({', '.join(ARCH_PRESETS)}) nor sizes like 784-256-256-10")
    sizes = [int(s) for s in arch.split("-")]
    if sizes[0] != in_features or sizes[-1] != classes:
        raise TrainError(f"arch {arch!r} must start with the data set's {in_features} inputs "
                         f"and end with its {classes} classes")
    return sizes


class BinaryMLP(nn.Module):
    """``BinaryLinear -> BatchNorm -> QuantReLU`` per hidden layer, then ``BinaryLinear -> BatchNorm`` (scores).

    Parameters
    ----------
    sizes : list of int
        ``[in, hidden..., classes]``.
    binarize : str
        ``"det"`` or ``"stoch"``.
    abits : int
        Hidden activation bits (2..8).
    dropout_in, dropout_hidden : float
        Optional dropout on the input and after each hidden activation (0 disables it, the default).
    binary : bool
        False trains real-valued weights (the float baseline for measuring binarisation overhead).
    """

    def __init__(self, sizes, *, binarize="det", abits=8, dropout_in=0.0, dropout_hidden=0.0, binary=True):
        super().__init__()
        if binarize not in ("det", "stoch"):
            raise TrainError(f"binarize {binarize!r} must be 'det' or 'stoch'")
        if not (isinstance(abits, int) and 2 <= abits <= 8):
            raise TrainError(f"abits {abits!r} must be an integer in 2..8")
        self.sizes = list(sizes)
        self.binarize = binarize
        self.abits = abits
        layers = [nn.Dropout(dropout_in)] if dropout_in else []
        for i, (fin, fout) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(BinaryLinear(fin, fout, stochastic=binarize == "stoch", binary=binary))
            layers.append(nn.BatchNorm1d(fout, eps=BN_EPS, momentum=BN_MOMENTUM))
            if i < len(sizes) - 2:
                layers.append(QuantReLU(abits, ACT_RANGE))
                if dropout_hidden:
                    layers.append(nn.Dropout(dropout_hidden))
        self.net = nn.Sequential(*layers)

    def forward(self, pixels):
        # 8-bit pixels enter as their integer values 0..255, exactly what the hardware receives.
        return self.net(pixels.reshape(len(pixels), -1).to(torch.float32))

    def binary_layers(self):
        return [m for m in self.net if isinstance(m, BinaryLinear)]

    def clip_weights_(self):
        for layer in self.binary_layers():
            layer.clip_()

    def config(self):
        return {"sizes": self.sizes, "binarize": self.binarize, "abits": self.abits,
                "act_range": ACT_RANGE, "bn_eps": BN_EPS}

    @torch.no_grad()
    def predict(self, pixels, *, sign_weights=False, batch=2000):
        """Class scores in evaluation mode; ``sign_weights`` forces sign(W) (what hardware runs) for stoch nets."""
        was = self.training
        self.eval()
        saved = []
        if sign_weights:
            for layer in self.binary_layers():
                saved.append(layer.stochastic)
                layer.stochastic = False
        try:
            return torch.cat([self(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])
        finally:
            for layer, s in zip(self.binary_layers(), saved):
                layer.stochastic = s
            self.train(was)
