"""The one way every stage's ``python -m STAGE`` ends: an error becomes one line on stderr and an exit status."""

import sys
import warnings

from . import LutmacError

__all__ = ["run_stage"]


def run_stage(name, main):
    """Call ``main()`` and exit with its status.

    A :class:`~common.LutmacError` prints ``NAME: error: ...`` and exits with its ``exit_code`` (2, or 130 for
    :class:`~common.Interrupted`); Ctrl-C anywhere else prints ``NAME: interrupted`` and exits 130 — never a traceback.
    """
    try:
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
