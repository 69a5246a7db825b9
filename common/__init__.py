"""What every lutmac stage shares: atomic output files and folders, the CLI error wrapper, the IDX reader and the
layer geometry. Imports no stage (``tests/test_architecture.py`` and the import-linter contract check it).
"""

__all__ = ["LutmacError", "Interrupted"]


class LutmacError(Exception):
    """Bad input or a failed step of any stage: ``str()`` names the file or parameter and the reason.

    ``python -m STAGE`` prints it as one line and exits with :attr:`exit_code`.
    """

    exit_code = 2


class Interrupted(LutmacError):
    """The user pressed Ctrl-C; the message says where it stopped and how to continue."""

    exit_code = 130
