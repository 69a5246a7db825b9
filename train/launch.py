"""``python -m train --nproc N``: N data-parallel processes on this machine, started by torch's own ``torchrun``.

The launcher checks what would make every process fail the same way (too few GPUs) before starting any. Rank 0
prints to the terminal; the other ranks write to log files, and when one of them is the process that failed first its
last lines are shown. torchrun's failure report becomes one line naming that process and how it ended.
"""

import logging
import os
import tempfile
from pathlib import Path

from .trainer import TrainError, resolve_device

__all__ = ["launch"]


def launch(nproc, device, argv):
    """Run ``python -m train argv`` in ``nproc`` processes (``torchrun --standalone --nproc-per-node nproc``)."""
    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if nproc < 1:
        raise TrainError(f"--nproc {nproc} must be at least 1")
    dev = resolve_device(device)
    if dev.type == "cuda" and nproc > torch.cuda.device_count():
        raise TrainError(
            f"--nproc {nproc} with --device {device}: only {torch.cuda.device_count()} CUDA device(s) here, one "
            f"process per GPU (use --nproc {torch.cuda.device_count()}, or --device cpu for gloo processes)"
        )
    # torchrun logs a banner and, on failure, every process's exit; the one line below says it
    logging.getLogger("torch.distributed").setLevel(logging.ERROR + 10)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    with tempfile.TemporaryDirectory(prefix="lutmac-train-") as logs:
        others = ",".join(f"{r}:3" for r in range(1, nproc))  # ranks 1.. : stdout and stderr to files, not the terminal
        try:
            torchrun(
                ["--standalone", f"--nproc-per-node={nproc}", f"--log-dir={logs}"]
                + ([f"--redirects={others}"] if others else [])
                + ["-m", "train", *_without_nproc(argv)]
            )
        except ChildFailedError as e:
            raise _failure(e, nproc, Path(logs)) from None
    return 0


def _failure(error, nproc, logs):
    """One :class:`TrainError` for a failed run: the process that failed first (the others were stopped because of it),
    how it ended, and, for a rank whose output went to a file, that output's last lines printed above."""
    import signal
    import sys

    # rank 0's own error is already on the terminal (and every rank usually fails the same way); otherwise the
    # earliest failure, where one the launcher's stop signal ended is a consequence, not the cause (timestamps are
    # whole seconds)
    stopped = (-signal.SIGTERM, -signal.SIGKILL)
    f = error.failures
    rank = min(f, key=lambda r: (not (r == 0 and f[r].exitcode > 0), f[r].exitcode in stopped, f[r].timestamp, r))
    first = error.failures[rank]
    how = f"exited with status {first.exitcode}" if first.exitcode > 0 else f"was killed by {first.signal_name()}"
    shown = rank == 0  # rank 0 printed to the terminal itself
    tail = [] if shown else _last_lines(logs, rank)
    if tail:
        print("\n".join(f"[rank {rank}] {line}" for line in tail), file=sys.stderr)
    where = " (its output above)" if shown or tail else ""
    err = TrainError(f"training failed: process {rank} of {nproc} {how}{where}")
    err.exit_code = first.exitcode if first.exitcode > 0 else 1
    return err


def _last_lines(logs, rank, count=12):
    # torchrun writes <log-dir>/<run id>/attempt_<n>/<rank>/stderr.log; a one-line error is its own last line
    lines = [ln for f in sorted(logs.glob(f"*/attempt_*/{rank}/stderr.log")) for ln in f.read_text().splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    if lines and lines[-1].startswith("train: "):
        return lines[-1:]
    return lines[-count:]


def _without_nproc(argv):
    # the processes see RANK and train; torchrun's own parser would take --nproc for its --nproc-per-node
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
