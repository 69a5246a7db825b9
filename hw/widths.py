"""Worst-case integer ranges and the two's complement widths that hold them."""

from export.folding import signed_bits as signed_width

__all__ = ["signed_width", "unsigned_width", "Range"]


def unsigned_width(hi):
    return max(1, int(hi).bit_length())


class Range:
    """A closed integer interval ``[lo, hi]`` that adds like the values it bounds."""

    def __init__(self, lo, hi):
        self.lo, self.hi = int(lo), int(hi)

    def __add__(self, other):
        return Range(self.lo + other.lo, self.hi + other.hi)

    @property
    def width(self):
        return signed_width(self.lo, self.hi)

    def __repr__(self):
        return f"Range({self.lo}, {self.hi})"
