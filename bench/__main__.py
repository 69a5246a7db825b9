"""python -m bench [-o build/bench] [--only NAME ...] — run benchmarks, write one JSON file each plus summary.json."""

import argparse
import json
import sys
import time
from pathlib import Path

from common.files import atomic_write_json

from . import stages

BENCHES = {name: fn for name, fn in vars(stages).items() if name.startswith("bench_")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("-o", "--out", default="build/bench")
    p.add_argument("--only", nargs="*", default=None, help=f"subset of {', '.join(n[6:] for n in BENCHES)}")
    p.add_argument("--build", default="build", help="where training/export runs are kept and reused")
    a = p.parse_args(argv)
    names = [f"bench_{n}" for n in a.only] if a.only else list(BENCHES)
    unknown = [n[6:] for n in names if n not in BENCHES]
    if unknown:
        p.exit(2, f"bench: error: unknown benchmark {unknown[0]!r}; choose from {', '.join(n[6:] for n in BENCHES)}\n")
    out = Path(a.out)
    summary = {}
    for name in names:
        t0 = time.perf_counter()
        result = BENCHES[name](Path(a.build))
        result["bench_seconds"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(out / f"{name[6:]}.json", result)
        summary[name[6:]] = result
        print(f"{name[6:]}: {json.dumps(result)}", flush=True)
    atomic_write_json(out / "summary.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
