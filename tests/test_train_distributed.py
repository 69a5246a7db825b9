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
