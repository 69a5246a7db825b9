"""The integer golden model: the oracle every hardware result is compared against, bit for bit.

Reads an export directory — the files alone, never the checkpoint — and needs numpy only. One function per layer kind
(:data:`GOLDEN`); maps are ``(N, H, W, C)`` integer arrays, a dense layer's input is its map flattened in that order.
"""

from dataclasses import dataclass

import numpy as np

from .conv import maxpool, patches
from .folding import apply_scores, apply_thresholds
from .manifest import load_layers, read_manifest

__all__ = ["GoldenModel", "GoldenTrace", "binary_matvec", "GOLDEN"]

_F32_EXACT = 1 << 24  # every partial sum below this is exact in float32


def binary_matvec(x, weights, bound):
    """``x @ weights.T`` for integer ``x`` ``(..., columns)`` and ±1 ``weights``, exactly, using BLAS.

    ``bound`` is the worst-case ``|acc|``: float32 is exact below 2**24, float64 below 2**53.
    """
    dtype = np.float32 if bound < _F32_EXACT else np.float64
    return (np.asarray(x, dtype) @ weights.T.astype(dtype)).astype(np.int64)


def _requantise(p, acc):
    flat = acc.reshape(-1, acc.shape[-1])
    out = apply_scores(flat, p.scale, p.offset) if p.is_output else apply_thresholds(flat, p.orientation,
                                                                                        p.thresholds)
    return out.reshape(acc.shape)


def _dense(p, x):
    acc = binary_matvec(x.reshape(len(x), -1), p.weights, max(-p.acc_min, p.acc_max))
    return acc, _requantise(p, acc)


def _conv(p, x):
    s = p.spec
    cols = patches(x.astype(np.float32 if p.acc_max < _F32_EXACT else np.float64, copy=False), kernel=s.kernel,
                   stride=s.stride, padding=s.padding)
    acc = binary_matvec(cols, p.weights, max(-p.acc_min, p.acc_max))
    return acc, _requantise(p, acc)


def _maxpool(p, x):
    return None, maxpool(x, p.spec.kernel)


#: layer kind -> ``f(params, x) -> (accumulators or None, output)``
GOLDEN = {"dense": _dense, "conv2d": _conv, "maxpool2d": _maxpool}


@dataclass
class GoldenTrace:
    """Every intermediate of a batch, per layer: ``accumulators[i]`` (None for a pool) and ``activations[i]`` (the
    input of layer ``i + 1``: ``(N, H, W, C)`` after conv and pool layers, ``(N, features)`` after dense ones), the
    output ``scores`` and ``classes`` (first argmax)."""
    accumulators: list
    activations: list
    scores: np.ndarray
    classes: np.ndarray


class GoldenModel:
    """Bit-exact integer inference of an exported network.

    Parameters
    ----------
    directory : path-like
        An export directory (``manifest.json`` and the files it names; everything is verified on load).
    """

    def __init__(self, directory):
        self.directory = directory
        self.manifest = read_manifest(directory)
        self.layers = load_layers(directory, self.manifest)
        self.input_shape = tuple(self.manifest["input"]["shape"])   # (C, H, W)
        self.input_features = int(np.prod(self.input_shape))
        conv = any(p.kind != "dense" for p in self.layers)
        # patches of a conv net are large: smaller batches stay in memory (and cache)
        self.batch = 128 if conv else 1024

    def layer(self, index, x):
        """One layer: ``(acc, out)`` for its input ``x``; ``out`` is the activation of a hidden layer, the pooled map
        of a pool (``acc`` None) or the scores of the output layer."""
        p = self.layers[index]
        return GOLDEN[p.kind](p, x)

    def _map(self, images):
        c, h, w = self.input_shape
        x = np.asarray(images)
        if x.size != len(x) * self.input_features:
            raise ValueError(f"images of shape {x.shape[1:]} have {x.size // max(1, len(x))} values, the network "
                             f"takes {c}x{h}x{w}")
        return x.reshape(len(x), h, w, c)

    def run(self, images):
        """Full trace for ``images`` ``(N, H, W, C)`` (or ``(N, H, W)`` for one channel) of uint8 pixels."""
        x = self._map(images)
        accs, acts = [], []
        for i in range(len(self.layers)):
            acc, x = self.layer(i, x)
            accs.append(acc)
            acts.append(x)
        return GoldenTrace(accs, acts[:-1], x, np.argmax(x, axis=1))

    def classify(self, images, batch=None):
        batch = batch or self.batch
        return np.concatenate([self.run(images[i:i + batch]).classes for i in range(0, len(images), batch)])
