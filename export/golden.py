"""The integer golden model: the oracle every hardware result is compared against, bit for bit.

Reads an export directory — the files alone, never the checkpoint — and needs numpy only.
"""

from dataclasses import dataclass

import numpy as np

from .folding import apply_scores, apply_thresholds
from .manifest import load_layers, read_manifest

__all__ = ["GoldenModel", "GoldenTrace", "binary_matvec"]

_F32_EXACT = 1 << 24  # every partial sum below this is exact in float32


def binary_matvec(x, weights, bound):
    """``x @ weights.T`` for integer ``x`` and ±1 ``weights``, exactly, using BLAS.

    ``bound`` is the worst-case ``|acc|``: float32 is exact below 2**24, float64 below 2**53.
    """
    dtype = np.float32 if bound < _F32_EXACT else np.float64
    return (np.asarray(x, dtype) @ weights.T.astype(dtype)).astype(np.int64)


@dataclass
class GoldenTrace:
    """Every intermediate of a batch: ``accumulators[i]`` and ``activations[i]`` (input of layer ``i + 1``) per layer,
    the output ``scores`` and ``classes`` (first argmax)."""
    accumulators: list
    activations: list
    scores: np.ndarray
    classes: np.ndarray


class GoldenModel:
    """Bit-exact integer inference of an exported network.

    Parameters
    ----------
    directory : path-like
        An export directory (``manifest.json`` and the files it names; hashes are verified on load).
    """

    def __init__(self, directory):
        self.directory = directory
        self.manifest = read_manifest(directory)
        self.layers = load_layers(directory, self.manifest)
        self.input_features = self.layers[0].in_features

    def layer(self, index, x):
        """One layer: ``(acc, out)`` for inputs ``x`` of shape ``(N, in_features)``; ``out`` is the activation of a
        hidden layer or the scores of the output layer."""
        p = self.layers[index]
        acc = binary_matvec(x, p.weights, max(-p.acc_min, p.acc_max))
        if p.is_output:
            return acc, apply_scores(acc, p.scale, p.offset)
        return acc, apply_thresholds(acc, p.orientation, p.thresholds)

    def run(self, images):
        """Full trace for ``images`` of shape ``(N, ...)`` (uint8 pixels)."""
        x = np.asarray(images).reshape(len(images), -1)
        if x.shape[1] != self.input_features:
            raise ValueError(f"images have {x.shape[1]} pixels, the network takes {self.input_features}")
        accs, acts = [], []
        for i in range(len(self.layers)):
            acc, x = self.layer(i, x)
            accs.append(acc)
            acts.append(x)
        return GoldenTrace(accs, acts[:-1], x, np.argmax(x, axis=1))

    def classify(self, images, batch=1024):  # batches that stay in cache are ~50% faster than larger ones
        return np.concatenate([self.run(images[i:i + batch]).classes for i in range(0, len(images), batch)])
