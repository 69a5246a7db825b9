"""BinaryConnect training (stage 1 of lutmac)."""

from common import LutmacError

__all__ = ["TrainError"]


class TrainError(LutmacError):
    """Bad input to the training stage: carries the offending file or parameter and the reason."""
