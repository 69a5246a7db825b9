"""The one way every stage's ``python -m STAGE`` ends: an error becomes one line on stderr and an exit status."""

import argparse
import sys
import warnings
from contextlib import contextmanager

from . import LutmacError

__all__ = ["run_stage", "one_line_usage_errors"]


def run_stage(name, main):
    """Call ``main()`` and exit with its status.

    A :class:`~common.LutmacError` prints ``NAME: error: ...`` and exits with its ``exit_code`` (2, or 130 for
    :class:`~common.Interrupted`); Ctrl-C anywhere else prints ``NAME: interrupted`` and exits 130 — never a traceback.
    A bad command line is one line and exit 2 as well (:func:`one_line_usage_errors`).
    """
    try:
        with one_line_usage_errors():
            status = main()
    except KeyboardInterrupt:
        _quiet_abandoned_hardware()
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except LutmacError as e:
        _quiet_abandoned_hardware()
        word = "interrupted" if e.exit_code == 130 else "error"
        print(f"{name}: {word}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(status)


def _quiet_abandoned_hardware():
    # Amaranth warns "... created but never used" for every elaboratable still alive at exit; after work that stopped
    # half-way those are expected, and they would bury the one line. (Amaranth silences them itself only for
    # uncaught exceptions; common/ does not import amaranth, so match the message.)
    warnings.filterwarnings("ignore", message=r".* created but never used")


@contextmanager
def one_line_usage_errors():
    """Inside this, an argparse parser's error (an unknown option, a missing one, a value outside ``choices``) is the
    one line ``PROG: error: MESSAGE (PROG --help for usage)`` and exit 2, like every other error of a stage, instead of
    the usage block followed by the message. Every parser and subparser a stage builds is covered, whichever module
    builds it."""

    def error(parser, message):
        parser.exit(2, f"{parser.prog}: error: {message} ({parser.prog} --help for usage)\n")

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original
