"""The integer golden model: the oracle every hardware result is compared against, bit for bit.

Reads an export directory — the files alone, never the checkpoint — and needs numpy only. One function per layer kind
(:data:`GOLDEN`). What it computes is defined in ``docs/weight-format.md`` on ``(N, H, W, C)`` maps; inside, a batch is
held channel-major (maps ``(C, N, H, W)``, vectors ``(features, N)``), which lets BLAS produce every output channel as
one contiguous row for its thresholds and keeps pooling on contiguous planes. Sums are exact: float32 below 2**24,
float64 below 2**53.
"""

from dataclasses import dataclass

import numpy as np

from .folding import apply_scores
from .manifest import load_layers, read_manifest

__all__ = ["GoldenModel", "GoldenTrace", "binary_matvec", "GOLDEN"]

_F32_EXACT = 1 << 24  # every partial sum below this is exact in float32
_TABLE_LIMIT = 1 << 20  # a row's level table is built when its thresholds span fewer accumulator values


def binary_matvec(x, weights, bound):
    """``x @ weights.T`` for integer ``x`` ``(..., columns)`` and ±1 ``weights``, exactly, using BLAS.

    ``bound`` is the worst-case ``|acc|``: float32 is exact below 2**24, float64 below 2**53.
    """
    dtype = np.float32 if bound < _F32_EXACT else np.float64
    return (np.asarray(x, dtype) @ weights.T.astype(dtype)).astype(np.int64)


def _exact_dtype(p):
    return np.float32 if max(-p.acc_min, p.acc_max) < _F32_EXACT else np.float64


def _level_tables(p):
    """Per row of a hidden layer, ``(lo, table)`` with ``table[v - lo]`` the level of ``s * acc = v`` for
    ``lo <= v <= T[-1]`` (a lookup is ~20x faster than a search), or None where the span is too wide."""
    tables = []
    for t in p.thresholds:
        lo, hi = int(t[0]) - 1, int(t[-1])
        tables.append(
            (lo, np.searchsorted(t, np.arange(lo, hi + 1), side="right").astype(np.uint16))
            if hi - lo < _TABLE_LIMIT
            else None
        )
    return tables


def _requantise_rows(p, acc, tables):
    """Levels (hidden) or scores (output) of ``acc`` ``(rows, vectors)``, row by row: ``#{k : s * acc >= T[k]}``
    by table lookup (values clipped into the table: below it the level is 0, above it ``L``) or a sorted search."""
    if p.is_output:
        return apply_scores(acc.T.astype(np.int64), p.scale, p.offset).T
    out = np.empty(acc.shape, acc.dtype)
    for r in range(len(acc)):
        v = -acc[r] if p.orientation[r] < 0 else acc[r]
        if tables[r] is None:
            out[r] = np.searchsorted(p.thresholds[r], v, side="right")
        else:
            lo, table = tables[r]
            out[r] = table[(np.clip(v, lo, lo + len(table) - 1) - lo).astype(np.intp)]
    return out


def _columns(x, kernel, stride, padding):
    """``(K*K*C, N*Ho*Wo)``: the patch of every output pixel as a column, rows in ``(ky, kx, c)`` order (the order
    of a conv layer's weight columns), for a channel-major map ``x`` ``(C, N, H, W)``."""
    c, n, h, w = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    sc, sn, sh, sw = x.strides
    view = np.lib.stride_tricks.as_strided(
        x, shape=(kernel, kernel, c, n, ho, wo), strides=(sh, sw, sc, sn, sh * stride, sw * stride), writeable=False
    )
    return view.reshape(kernel * kernel * c, n * ho * wo), (n, ho, wo)


def _dense(p, x, tables):
    # a map (C, N, H, W) flattens per image in (H, W, C) order; a vector (F, N) is already one
    if x.ndim == 4:
        c, n, h, w = x.shape
        x = x.transpose(2, 3, 0, 1).reshape(h * w * c, n)
    dtype = _exact_dtype(p)
    acc = p.weights.astype(dtype) @ x.astype(dtype, copy=False)
    return acc, _requantise_rows(p, acc, tables)


def _conv(p, x, tables):
    s = p.spec
    cols, (n, ho, wo) = _columns(x.astype(_exact_dtype(p), copy=False), s.kernel, s.stride, s.padding)
    acc = p.weights.astype(cols.dtype) @ cols
    return acc.reshape(-1, n, ho, wo), _requantise_rows(p, acc, tables).reshape(-1, n, ho, wo)


def _maxpool(p, x, tables):
    k = p.spec.kernel
    c, n, h, w = x.shape
    ho, wo = h // k, w // k
    out = x[:, :, 0 : ho * k : k, 0 : wo * k : k].copy()
    for ky in range(k):  # K*K strided slices folded with an elementwise maximum: far faster than a reduction
        for kx in range(k):  # over the inner axes of a reshaped view
            np.maximum(out, x[:, :, ky : ho * k : k, kx : wo * k : k], out=out)
    return None, out


#: layer kind -> ``f(params, x, level tables) -> (accumulators or None, output)``, channel-major
GOLDEN = {"dense": _dense, "conv2d": _conv, "maxpool2d": _maxpool}


def _public(a):
    """Channel-major ``(C, N, H, W)`` -> ``(N, H, W, C)``; ``(F, N)`` -> ``(N, F)``; as int64."""
    if a is None:
        return None
    return (a.transpose(1, 2, 3, 0) if a.ndim == 4 else a.T).astype(np.int64)


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
        self._tables = [_level_tables(p) if p.thresholds is not None else None for p in self.layers]
        self.input_shape = tuple(self.manifest["input"]["shape"])  # (C, H, W)
        self.input_features = int(np.prod(self.input_shape))
        conv = any(p.kind != "dense" for p in self.layers)
        # a conv net's patch matrices are large: smaller batches stay in memory (and cache)
        self.batch = 128 if conv else 1024

    def _internal(self, images):
        """``(N, H, W, C)`` pixels -> the first layer's channel-major input."""
        c, h, w = self.input_shape
        x = np.asarray(images)
        if x.size != len(x) * self.input_features:
            raise ValueError(
                f"images of shape {x.shape[1:]} have {x.size // max(1, len(x))} values, the network takes {c}x{h}x{w}"
            )
        if self.layers[0].kind == "dense":
            return x.reshape(len(x), -1).T
        return x.reshape(len(x), h, w, c).transpose(3, 0, 1, 2)

    def layer(self, index, x):
        """One layer on a public-layout input (``(N, H, W, C)`` map or ``(N, features)``): ``(acc, out)`` in the
        public layout; ``out`` is the activation of a hidden layer, the pooled map of a pool (``acc`` None) or the
        scores of the output layer."""
        p = self.layers[index]
        x = np.asarray(x)
        x = x.transpose(3, 0, 1, 2) if x.ndim == 4 else x.T
        acc, out = GOLDEN[p.kind](p, x, self._tables[index])
        return _public(acc), _public(out)

    def run(self, images):
        """Full trace for ``images`` ``(N, H, W, C)`` (or ``(N, H, W)`` for one channel) of uint8 pixels."""
        x = self._internal(images)
        accs, acts = [], []
        for p, tables in zip(self.layers, self._tables):
            acc, x = GOLDEN[p.kind](p, x, tables)
            accs.append(_public(acc))
            acts.append(_public(x))
        return GoldenTrace(accs, acts[:-1], acts[-1], np.argmax(acts[-1], axis=1))

    def classify(self, images, batch=None):
        """Classes of ``images``: the same arithmetic as :meth:`run` without keeping (or widening) the trace."""
        batch = batch or self.batch
        out = []
        for i in range(0, len(images), batch):
            x = self._internal(images[i : i + batch])
            for p, tables in zip(self.layers, self._tables):
                _, x = GOLDEN[p.kind](p, x, tables)
            out.append(np.argmax(x, axis=0))
        return np.concatenate(out)
