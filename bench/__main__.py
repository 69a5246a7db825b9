"""python -m bench [-o build/bench] [--only NAME ...] — run benchmarks, write one JSON file each plus summary.json.

Benchmarks run cheapest first; training runs are kept under --build and reused by every benchmark (and by `make`) of
the same config. A benchmark that fails is recorded with its error and the others still run (exit status 1).
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from common.files import atomic_write_json

from . import stages

BENCHES = {name: getattr(stages, name) for name in stages.__all__ if name.startswith("bench_")}


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-o",
        "--out",
        default="build/bench",
        help="where each benchmark's JSON and summary.json go (default build/bench)",
    )
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=[n[6:] for n in BENCHES],
        metavar="NAME",
        help=f"run only these benchmarks: {', '.join(n[6:] for n in BENCHES)} (default all)",
    )
    p.add_argument("--build", default="build", help="where training/export runs are kept and reused (default build)")
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        metavar="N",
        help="smoke test: cap every training at N epochs (capped runs go to their own -eN folders)",
    )
    p.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="smoke test: simulate at most N test images"
    )
    a = p.parse_args(argv)
    names = [f"bench_{n}" for n in a.only] if a.only else list(BENCHES)
    for flag, v in (("--max-epochs", a.max_epochs), ("--max-images", a.max_images)):
        if v is not None and v < 1:
            p.exit(2, f"bench: error: {flag} must be at least 1, not {v}\n")
    stages.LIMITS.update(epochs=a.max_epochs, images=a.max_images)
    limits = {k: v for k, v in stages.LIMITS.items() if v is not None}
    out = Path(a.out)
    summary_file = out / "summary.json"
    try:  # --only updates its benchmarks in the summary and keeps the others
        summary = json.loads(summary_file.read_text())
        summary = summary if isinstance(summary, dict) else {}
    except (OSError, ValueError):
        summary = {}
    failed = []
    for name in names:
        t0 = time.perf_counter()
        try:
            result = BENCHES[name](Path(a.build))
        except Exception as e:  # noqa: BLE001 - one benchmark's failure is its result; the rest still run
            traceback.print_exc()
            result = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name[6:])
        result["bench_seconds"] = round(time.perf_counter() - t0, 2)
        if limits:
            result["limits"] = {**limits, "note": "smoke-test caps: not the benchmark's figures"}
        atomic_write_json(out / f"{name[6:]}.json", result)
        summary[name[6:]] = result
        order = [n[6:] for n in BENCHES]
        summary = {k: summary[k] for k in sorted(summary, key=lambda k: order.index(k) if k in order else len(order))}
        atomic_write_json(summary_file, summary)
        print(f"{name[6:]}: {json.dumps(result)}", flush=True)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("bench", main)
