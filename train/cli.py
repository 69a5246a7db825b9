"""The one way every stage's ``python -m STAGE`` ends: its own error type becomes one line on stderr and exit 2."""

import sys

__all__ = ["run_stage"]


def run_stage(name, main, error_type):
    """Call ``main()`` and exit with its status; ``error_type`` prints ``NAME: error: ...`` and exits 2."""
    try:
        sys.exit(main())
    except error_type as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
