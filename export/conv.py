"""Feature-map arithmetic of the golden model: patches (im2col) and max-pooling, exact on integers, numpy only.

Maps are ``(N, H, W, C)`` arrays (raster order, channels innermost, ``docs/weight-format.md``). A patch is flattened
``(ky, kx, c)`` with ``c`` fastest — the order the sliding-window hardware emits it and the column order of a conv
layer's packed weights.
"""

import numpy as np

__all__ = ["patches", "maxpool", "out_size"]


def out_size(size, kernel, stride, padding):
    """Output length of a ``kernel``-wide window at ``stride`` over ``size`` values padded by ``padding`` each side."""
    return (size + 2 * padding - kernel) // stride + 1


def patches(x, *, kernel, stride=1, padding=0):
    """``(N, Ho, Wo, K*K*C)``: every output pixel's ``K x K x C`` patch of ``x`` ``(N, H, W, C)``, zero padded,
    flattened ``(ky, kx, c)`` (c fastest)."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = out_size(h, kernel, stride, padding), out_size(w, kernel, stride, padding)
    # a strided view (N, Ho, Wo, K, K, C) -- no copy until the reshape
    sn, sh, sw, sc = x.strides
    view = np.lib.stride_tricks.as_strided(
        x, shape=(n, ho, wo, kernel, kernel, c), strides=(sn, sh * stride, sw * stride, sh, sw, sc), writeable=False
    )
    return view.reshape(n, ho, wo, kernel * kernel * c)


def maxpool(x, kernel):
    """``(N, H // K, W // K, C)``: the maximum of every ``K x K`` window at stride ``K``; a remainder is dropped."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    ho, wo = h // kernel, w // kernel
    return x[:, : ho * kernel, : wo * kernel].reshape(n, ho, kernel, wo, kernel, c).max(axis=(2, 4))
