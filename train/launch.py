"""``python -m train --nproc N``: N data-parallel processes on this machine, started by torch's own ``torchrun``.

The launcher checks what would make every process fail the same way (too few GPUs) before starting any, and turns
torchrun's failure report into one line; each process's own error is printed by rank 0 above it.
"""

import logging
import os

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
    try:
        torchrun(
            [
                "--standalone",
                f"--nproc-per-node={nproc}",
                "--local-ranks-filter=0",
                "-m",
                "train",
                *_without_nproc(argv),
            ]
        )
    except ChildFailedError as e:
        # the first failure stops the others (negative exit: their signal); rank 0 printed the reason above
        codes = sorted({f.exitcode for f in e.failures.values() if f.exitcode > 0}) or [1]
        err = TrainError(f"training failed in {len(e.failures)} of {nproc} processes (exit {codes[-1]}); see above")
        err.exit_code = codes[-1]
        raise err from None
    return 0


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
