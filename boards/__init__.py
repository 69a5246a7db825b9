"""Boards (stage 5 of lutmac): yosys utilisation reports, PE sweeps, place and route, board builds and flashing."""

from common import LutmacError

__all__ = ["BoardsError"]


class BoardsError(LutmacError):
    """A missing tool, an unknown board, a design that does not fit or breaks a rule (DSPs in a binary design)."""
