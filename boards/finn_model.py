"""FINN's analytical LUT cost of a matrix-vector-activation unit (MVAU), for comparison with measured lutmac LUTs.

The model is FINN's ``MVAU.lut_estimation()`` (``finn/custom_op/fpgadataflow/matrixvectoractivation.py``), whose
constants come from the FINN-R paper (Blott, Preusser, Fraser, Gambardella, O'Brien, Umuroglu, Leeser, Vissers,
*FINN-R: An End-to-End Deep-Learning Framework for Fast Exploration of Quantized Neural Networks*, ACM TRETS 2018)::

    LUT = c0 + c1 * PE * (mult + addertree + acc + thr + comp) + c2,   c0 = 300, c1 = 1.1
    mult      = SIMD * (2 * ceil((W + A) / 6) - 1) * (W + A)           (multipliers in LUTs: resType "lut")
    addertree = (W + A) * (2 * SIMD - 1)
    acc       = ceil(alpha + log2(1 + 2^-alpha) + 1),  alpha = log2(MW) + W + A - 1 - signed(A)
    thr       = (2^B - 1) * acc * ceil(TMEM / 64),  comp = (2^B - 1) * acc   (thresholds in distributed RAM)
    c2        = 0                                                     (weights in block RAM)

with ``W`` weight bits (1 here), ``A`` input bits, ``B`` output bits, ``MW``/``MH`` the matrix width/height and
``TMEM = MH / PE`` threshold words per PE. The output layer has no thresholds (``noActivation``).
"""

import math

__all__ = ["mvau_luts", "network_luts"]


def mvau_luts(*, pe, simd, mw, mh, a_bits, out_bits=None, w_bits=1, a_signed=False):
    """FINN's LUT estimate for one MVAU (``out_bits=None``: no activation, the output layer)."""
    W, A = w_bits, a_bits
    mult = simd * (2 * math.ceil((W + A) / 6) - 1) * (W + A)
    addertree = (W + A) * (2 * simd - 1)
    alpha = math.log2(mw) + W + A - 1 - int(a_signed)
    acc = math.ceil(alpha + math.log2(1 + 2**-alpha) + 1)
    thr = comp = 0
    if out_bits is not None:
        tmem = math.ceil(mh / pe)
        thr = (2**out_bits - 1) * acc * math.ceil(tmem / 64)
        comp = (2**out_bits - 1) * acc
    return int(300 + 1.1 * pe * (mult + addertree + acc + thr + comp))


def network_luts(top):
    """Sum of :func:`mvau_luts` over the compute layers of a ``top.json`` description (``layers`` with pe/simd/bits;
    a conv layer is an MVAU over its K*K*C patch, as in FINN; pools and sliding windows are not counted)."""
    total = 0
    layers = [layer for layer in top["layers"] if "pe" in layer]
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        total += mvau_luts(
            pe=layer["pe"],
            simd=layer["simd"],
            mw=layer["in_features"],
            mh=layer["out_features"],
            a_bits=layer["in_bits"],
            out_bits=None if last else layer["out_bits"],
        )
    return total
