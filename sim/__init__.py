"""Verification (stage 4 of lutmac): cocotb 2 testbenches on Verilator and Icarus, bit-exact against the golden
model of the export stage."""

from common import LutmacError

__all__ = ["SimError"]


class SimError(LutmacError):
    """A simulator that is missing, a bad argument, or an input directory that cannot be used."""
