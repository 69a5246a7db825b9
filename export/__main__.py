import sys

sys.exit("python -m export: this stage is not implemented yet (see the open issues)")
