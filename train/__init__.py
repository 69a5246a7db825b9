"""BinaryConnect training (stage 1 of lutmac).

Kept free of torch at import time so later stages can use :mod:`train.files` and :mod:`train.data`
(numpy only) without pulling PyTorch in.
"""

__all__ = ["TrainError"]


class TrainError(Exception):
    """Bad input to the training stage: carries the offending file or parameter and the reason."""
