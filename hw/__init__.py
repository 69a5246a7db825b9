"""Hardware generator (stage 3 of lutmac): Amaranth 0.5 components for LUT-only binary-weight inference.

``SignFlipAdderTree`` (one PE's dot product), ``MatrixVectorUnit`` (one layer folded PE x SIMD),
``NetworkTop`` (the layers as a dataflow pipeline) and Verilog emission from an export directory.
"""

from common import LutmacError

__all__ = ["HardwareError"]


class HardwareError(LutmacError):
    """Bad generator input (folding, widths, export directory): names the parameter or file and the reason."""
