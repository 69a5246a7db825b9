import sys

sys.exit("python -m sim: this stage is not implemented yet (see the open issues)")
