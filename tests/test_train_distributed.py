"""Data-parallel training (``python -m train --nproc N``, torchrun underneath) on the CPU with gloo: two processes
land within noise of one, their checkpoint exports and simulates like any other, and launch errors are one line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import have_simulator

from export.exporter import export_checkpoint
from export.golden import GoldenModel
from export.manifest import load_test_set
from train import TrainError
from train.launch import launch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _train(out, *args):
    r = subprocess.run(
        [sys.executable, "-m", "train", "--nproc", "2", "--dataset", "digits", "--quiet", *args, "-o", str(out)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
    )
    return r, (json.loads((out / "metrics.json").read_text()) if r.returncode == 0 else None)


def _golden_accuracy(export):
    g = GoldenModel(export)
    images, labels = load_test_set(export, g.manifest)
    return float(np.mean(g.classify(images) == labels))


@pytest.fixture(scope="module")
def two_process_tfc(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp-tfc")
    r, m = _train(root / "train", "--arch", "tfc", "--epochs", "60")
    assert r.returncode == 0, r.stderr[-2000:]
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root, r, m


def test_two_processes_match_one_on_digits(two_process_tfc, digits_export):
    """Same recipe as conftest's one-process run (tfc, 60 epochs, seed 0): accuracy within noise, the world recorded,
    one summary line, and the golden model of its export agrees with the trainer."""
    root, r, m = two_process_tfc
    one = json.loads((digits_export[0].parent / "metrics.json").read_text())
    assert (m["world_size"], m["device"]) == (2, "cpu")
    assert abs(m["test_accuracy_sign"] - one["test_accuracy_sign"]) <= 0.03, (m["test_accuracy_sign"], one)
    assert r.stdout.count("sign-weight test accuracy") == 1  # rank 0 alone reports
    assert abs(_golden_accuracy(root / "export") - m["test_accuracy_sign"]) < 1e-9


def test_two_process_checkpoint_simulates_bit_exact(two_process_tfc, tmp_path):
    sim = next((s for s in ("icarus", "verilator") if have_simulator(s)), None)  # Icarus: no 15 s build
    if sim is None:
        pytest.skip("no simulator (make setup installs Verilator and Icarus)")
    root = two_process_tfc[0]
    run = lambda *a: subprocess.run([sys.executable, "-m", *a], capture_output=True, text=True)
    g = run("hw", "gen", "--export", str(root / "export"), "--pe", "4", "--simd", "16", "-o", str(tmp_path / "rtl"))
    assert g.returncode == 0, g.stderr[-2000:]
    s = run("sim", "--export", str(root / "export"), "--rtl", str(tmp_path / "rtl"), "--sim", sim, "--n", "12",
            "-o", str(tmp_path / "sim"))  # fmt: skip
    assert s.returncode == 0, s.stderr[-2000:]
    result = json.loads((tmp_path / "sim" / "results.json").read_text())
    assert result["mismatches"] == 0 and result["images"] == 12


def test_two_processes_conv_and_resume(tmp_path, digits_conv_export):
    """A small conv net (conftest's 16c3-mp2-32c3-10, 15 epochs) under two processes, then --resume of the finished
    run under two processes: it loads the checkpoint on every rank and ends with the same weights."""
    r, m = _train(tmp_path / "train", "--arch", "16c3-mp2-32c3-10", "--epochs", "15")
    assert r.returncode == 0, r.stderr[-2000:]
    one = json.loads((digits_conv_export[0].parent / "metrics.json").read_text())
    assert m["world_size"] == 2 and abs(m["test_accuracy_sign"] - one["test_accuracy_sign"]) <= 0.04
    before = torch.load(tmp_path / "train" / "model.pt", weights_only=False)
    r2, m2 = _train(tmp_path / "train", "--arch", "16c3-mp2-32c3-10", "--epochs", "15", "--resume")
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "resuming from epoch 15" in r2.stderr
    after = torch.load(tmp_path / "train" / "model.pt", weights_only=False)
    for k, v in before["model"].items():
        assert torch.equal(v, after["model"][k]), k
    export_checkpoint(tmp_path / "train" / "model.pt", tmp_path / "export")
    assert abs(_golden_accuracy(tmp_path / "export") - m2["test_accuracy_sign"]) < 1e-9


@pytest.mark.parametrize(
    "args, words",
    [
        (["--nproc", "0"], "--nproc 0 must be at least 1"),
        (["--nproc", "2", "--epochs", "0"], "epochs 0 must be at least 1"),
    ],
)
def test_launch_errors_one_line(tmp_path, args, words):
    r = subprocess.run(
        [sys.executable, "-m", "train", *args, "-o", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert not (tmp_path / "out").exists()


def test_more_processes_than_gpus_refused_before_launch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(TrainError, match=r"--nproc 2 with --device cuda: only 1 CUDA device\(s\) here"):
        launch(2, "cuda", ["--device", "cuda"])


def test_failure_names_the_process_that_failed_first_and_shows_its_log(tmp_path, capsys):
    """Rank 1 crashed (SIGSEGV) and rank 0 was stopped by the launcher in the same second: the line names rank 1 and its
    log file's last lines are printed, since rank 1 does not write to the terminal."""
    import signal

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from train.launch import _failure

    log = tmp_path / "run0" / "attempt_0" / "1" / "stderr.log"
    log.parent.mkdir(parents=True)
    log.write_text("epoch 3\nFatal Python error: Segmentation fault\n\n")
    fails = {
        0: ProcessFailure(local_rank=0, pid=10, exitcode=-signal.SIGTERM, error_file=str(tmp_path / "none")),
        1: ProcessFailure(local_rank=1, pid=11, exitcode=-signal.SIGSEGV, error_file=str(tmp_path / "none")),
    }
    fails[1].timestamp = fails[0].timestamp
    err = _failure(ChildFailedError("train", fails), 2, tmp_path)
    assert str(err) == "training failed: process 1 of 2 was killed by SIGSEGV (its output above)"
    assert err.exit_code == 1
    shown = capsys.readouterr().err.splitlines()
    assert shown == ["[rank 1] epoch 3", "[rank 1] Fatal Python error: Segmentation fault"]
    # a one-line error of a stage is shown alone; rank 0's own output is already on the terminal
    log.write_text("Traceback ...\ntrain: error: out of memory\n")
    fails[1] = ProcessFailure(local_rank=1, pid=11, exitcode=2, error_file=str(tmp_path / "none"))
    assert _failure(ChildFailedError("train", fails), 2, tmp_path).exit_code == 2
    assert capsys.readouterr().err == "[rank 1] train: error: out of memory\n"


def test_error_every_process_would_meet_is_one_line_before_launch(tmp_path):
    """A missing checkpoint to resume (like bad settings, data or architecture) is found by the launcher before any
    process starts: one line, exit 2, no folder left behind."""
    r = subprocess.run(
        [sys.executable, "-m", "train", "--nproc", "2", "--dataset", "digits", "--resume", "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"train: error: {tmp_path / 'o' / 'checkpoint.pt'}: no checkpoint to resume from"
    ]
    assert not (tmp_path / "o").exists()
