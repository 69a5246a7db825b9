"""Training loop: real short runs on digits (MLP and conv), exact resume, the stochastic fine-tune, Ctrl-C, and CLI
errors that leave outputs untouched."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import sigint_default

from common import Interrupted
from train import TrainError
from train.trainer import TrainConfig, load_model, run_training

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("torch_single_thread")]

_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def digits_run(digits_export):
    """The session's 60-epoch tfc run on digits (conftest ``digits_export``: ``TrainConfig(dataset="digits",
    arch="tfc", epochs=60)``, seed 0) -- its train folder and metrics."""
    out = digits_export[0].parent
    return out, json.loads((out / "metrics.json").read_text())


def _test_split():
    from train.data import load_dataset

    return load_dataset("digits").test


def test_short_digits_training_beats_floor(digits_run):
    out, m = digits_run
    # The MLP path is unchanged by the conv redesign: tfc, 60 epochs, seed 0 gives 96.94% sign-weight accuracy with
    # torch's two CPU threads (as before the redesign) and 96.39% with one thread (this suite's setting; the
    # threads change the float summation order, hence the last bits of batch norm, hence the trajectory).
    assert m["test_accuracy_sign"] >= 0.96
    for f in ("model.pt", "metrics.json", "curves.png", "weights.png", "checkpoint.pt"):
        assert (out / f).stat().st_size > 0
    for key in (
        "dataset",
        "arch",
        "binarize",
        "abits",
        "epochs",
        "test_accuracy",
        "test_accuracy_sign",
        "test_accuracy_sign_before_finetune",
        "seconds",
        "device",
        "world_size",
        "synthetic",
        "layers",
        "finetune_epochs",
        "history",
    ):
        assert key in m, key
    assert (m["dataset"], m["arch"], m["binarize"], m["abits"], m["epochs"]) == ("digits", "tfc", "det", 8, 60)
    assert (m["device"], m["world_size"], m["synthetic"]) == ("cpu", 1, False)
    # a deterministic run: no fine-tune, both accuracies are the sign weights'
    assert m["finetune_epochs"] == 0 and m["test_accuracy_sign_before_finetune"] is None
    assert m["test_accuracy"] == m["test_accuracy_sign"]
    assert len(m["history"]) == 60 and {h["phase"] for h in m["history"]} == {"deterministic"}
    assert [layer["name"] for layer in m["layers"]] == ["fc0", "fc1", "fc2", "fc3"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_model_reload_reproduces_accuracy(digits_run):
    out, m = digits_run
    model, ck = load_model(out / "model.pt")
    test = _test_split()
    assert test.images.shape[1:] == (8, 8, 1)
    pred = model.predict(torch.from_numpy(test.images)).argmax(1).numpy()
    assert (pred == test.labels).mean() == pytest.approx(m["test_accuracy_sign"])


def test_conv_net_trains_and_reloads_identically(digits_conv_export):
    ckpt, _ = digits_conv_export
    m = json.loads((ckpt.parent / "metrics.json").read_text())
    assert m["arch"] == "16c3-mp2-32c3-10" and m["test_accuracy_sign"] >= 0.8  # 91.67% measured (15 epochs)
    assert [(layer["name"], layer["kind"], layer["out_shape"]) for layer in m["layers"]] == [
        ("conv0", "conv2d", [16, 6, 6]),
        ("pool0", "maxpool2d", [16, 3, 3]),
        ("conv1", "conv2d", [32, 1, 1]),
        ("fc0", "dense", [10, 1, 1]),
    ]
    model, ck = load_model(ckpt)
    assert [layer.kind for layer in model.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    test = _test_split()
    x = torch.from_numpy(test.images)
    scores = model.predict(x)
    assert (scores.argmax(1).numpy() == test.labels).mean() == pytest.approx(m["test_accuracy_sign"], abs=0)
    # the reloaded network is the best epoch's, the one the last checkpoint kept
    from train.arch import parse_arch
    from train.model import BinaryNet

    best = torch.load(ckpt.parent / "checkpoint.pt", weights_only=False)["best"]
    assert best["epoch"] == m["best_epoch"]
    again = BinaryNet(parse_arch("16c3-mp2-32c3-10", (1, 8, 8), 10))
    again.load_state_dict(best["model"])
    assert torch.equal(again.predict(x), scores)
    assert torch.equal(load_model(ckpt)[0].predict(x), scores)


def _interrupt_after(monkeypatch, checkpoints):
    """Make the trainer's checkpoint writer raise KeyboardInterrupt (Ctrl-C) right after its ``checkpoints``-th
    checkpoint."""
    import train.trainer as tr

    real_save = tr._save
    count = {"n": 0}

    def save_then_die(path, obj):
        real_save(path, obj)
        if path.name == "checkpoint.pt":
            count["n"] += 1
            if count["n"] == checkpoints:
                raise KeyboardInterrupt

    monkeypatch.setattr(tr, "_save", save_then_die)


@pytest.mark.parametrize(
    "binarize, arch, kill_at",
    [
        ("det", "64-32-10", 2),
        ("stoch", "64-32-10", 2),
        ("stoch", "64-32-10", 3),  # at the end of the stochastic phase: the resumed run starts the fine-tune
        ("det", "8c3-mp2-10", 2),
        ("stoch", "8c3-mp2-10", 3),
    ],
)
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, binarize, arch, kill_at):
    cfg = TrainConfig(dataset="digits", arch=arch, binarize=binarize, epochs=3, abits=4)
    full = run_training(cfg, tmp_path / "full", progress=False, log=lambda s: None)
    # the same run killed right after a checkpoint
    part = tmp_path / "part"
    with monkeypatch.context() as mp:
        _interrupt_after(mp, kill_at)
        with pytest.raises(Interrupted) as e:
            run_training(cfg, part, progress=False, log=lambda s: None)
    # Ctrl-C while epoch `kill_at` was being saved: that epoch is complete and in the checkpoint
    assert f"interrupted in epoch {kill_at} of {3 + cfg.finetune}" in str(e.value)
    assert f"({kill_at} complete" in str(e.value) and "RESUME=1" in str(e.value)
    assert not (part / "model.pt").exists()
    said = []
    resumed = run_training(cfg, part, resume=True, progress=False, log=said.append)
    assert said == [f"train: resuming from epoch {kill_at} of {3 + cfg.finetune} ({part / 'checkpoint.pt'})"]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(part / "model.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["history"] == resumed["history"]
    for key in ("test_accuracy", "test_accuracy_sign", "test_accuracy_sign_before_finetune", "best_epoch"):
        assert full[key] == resumed[key], key


def test_stochastic_run_ends_with_deterministic_finetune(tmp_path):
    cfg = TrainConfig(dataset="digits", arch="64-32-10", binarize="stoch", epochs=4, finetune_epochs=2, abits=4)
    m = run_training(cfg, tmp_path / "t", progress=False, log=lambda s: None)
    assert [h["phase"] for h in m["history"]] == ["stochastic"] * 4 + ["deterministic"] * 2
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3, 4, 5, 6]
    # the fine-tune restarts a decade below lr_start and decays to lr_end
    assert m["history"][4]["lr"] == pytest.approx(cfg.lr_start / 10)
    assert m["history"][3]["lr"] < m["history"][0]["lr"]
    assert m["finetune_epochs"] == 2 and m["epochs"] == 4
    for key in ("test_accuracy", "test_accuracy_sign", "test_accuracy_sign_before_finetune"):
        assert isinstance(m[key], float) and 0.0 <= m[key] <= 1.0, key
    assert m["best_epoch"] in (5, 6)  # chosen among the fine-tuned (sign-weight) epochs
    saved = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert saved["test_accuracy_sign_before_finetune"] == m["test_accuracy_sign_before_finetune"]
    # model.pt holds the fine-tuned network: its sign weights give test_accuracy_sign
    model, ck = load_model(tmp_path / "t" / "model.pt")
    assert ck["model_config"]["binarize"] == "stoch"
    test = _test_split()
    pred = model.predict(torch.from_numpy(test.images), sign_weights=True).argmax(1).numpy()
    assert (pred == test.labels).mean() == pytest.approx(m["test_accuracy_sign"], abs=0)


def test_finetune_epochs_defaults_and_zero(tmp_path):
    assert TrainConfig(binarize="stoch", epochs=25).finetune == 2  # a tenth of the epochs
    assert TrainConfig(binarize="stoch", epochs=3).finetune == 1  # at least one
    assert TrainConfig(binarize="stoch", epochs=25, finetune_epochs=0).finetune == 0
    assert TrainConfig(binarize="det", epochs=25, finetune_epochs=5).finetune == 0
    with pytest.raises(TrainError, match="finetune_epochs"):
        TrainConfig(finetune_epochs=-1).validate()
    with pytest.raises(TrainError, match="epochs 0"):
        TrainConfig(epochs=0).validate()
    m = run_training(
        TrainConfig(dataset="digits", arch="64-16-10", binarize="stoch", epochs=2, finetune_epochs=0),
        tmp_path / "t",
        progress=False,
        log=lambda s: None,
    )
    assert [h["phase"] for h in m["history"]] == ["stochastic"] * 2
    assert m["finetune_epochs"] == 0 and m["test_accuracy_sign_before_finetune"] is None


def _cli_in_process(capsys, *args):
    """``python -m train ARGS`` run in this process through the same wrapper: ``(exit status, stdout, stderr)``."""
    from common.cli import run_stage
    from train.__main__ import main

    with pytest.raises(SystemExit) as e:
        run_stage("train", lambda: main([*args, "--quiet"]))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--dataset", "cifar"], "dataset 'cifar'"),
        (["--arch", "zfc"], "arch 'zfc'"),
        (["--arch", "784-10"], "arch '784-10'"),
        (["--arch", "16c9-10"], "'16c9'"),
        (["--arch", "16c3-mp8-10"], "'mp8'"),
        (["--abits", "9"], "abits 9"),
        (["--abits", "1"], "abits 1"),
        (["--epochs", "0"], "epochs 0"),
        (["--epochs", "-3"], "epochs -3"),
        (["--finetune-epochs", "-1", "--binarize", "stoch"], "finetune_epochs -1"),
        (["--device", "tpu"], "device 'tpu'"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, args, words):
    code, _, err = _cli_in_process(capsys, *args, "-o", str(tmp_path / "t"))
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t").exists()


def test_cli_resume_mismatch_and_corrupt_leave_outputs(digits_run, tmp_path, capsys):
    out = tmp_path / "train"
    shutil.copytree(digits_run[0], out)  # the session's run stays untouched whatever happens here
    before = {f: (out / f).read_bytes() for f in ("model.pt", "metrics.json", "checkpoint.pt")}
    code, _, err = _cli_in_process(capsys, "--epochs", "60", "--abits", "4", "--resume", "-o", str(out))
    assert code == 2 and "abits=8" in err and len(err.strip().splitlines()) == 1, err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"garbage")
    code, _, err = _cli_in_process(capsys, "--resume", "-o", str(bad))
    assert code == 2 and "unreadable checkpoint" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli_in_process(capsys, "--resume", "-o", str(tmp_path / "none"))
    assert code == 2 and "no checkpoint to resume from" in err
    assert not (tmp_path / "none").exists()  # a refused resume leaves no folder behind
    assert {f: (out / f).read_bytes() for f in before} == before


def _wait_for(predicate, proc, what, timeout=90):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"train exited {proc.returncode} before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.02)


def test_ctrl_c_during_a_checkpoint_write_counts_only_the_saved_epochs(tmp_path, monkeypatch):
    """Ctrl-C while epoch 2's checkpoint is being written: the message counts the one epoch the checkpoint holds
    (the atomic write leaves epoch 1's), not the two that ran."""
    import train.trainer as trainer

    real, calls = trainer._save, []

    def save(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(trainer, "_save", save)
    with pytest.raises(Interrupted, match=r"interrupted in epoch 2 of 5 \(1 complete, saved in "):
        run_training(TrainConfig(dataset="digits", arch="64-10", epochs=5), tmp_path / "t", progress=False)
    assert torch.load(tmp_path / "t" / "checkpoint.pt", weights_only=False)["epoch"] == 1


def test_ctrl_c_exits_130_and_resumes(tmp_path):
    out = tmp_path / "t"
    ck = out / "checkpoint.pt"
    args = [
        sys.executable,
        "-m",
        "train",
        "--dataset",
        "digits",
        "--arch",
        "64-32-10",
        "--epochs",
        "400",
        "--quiet",
        "-o",
        str(out),
    ]
    p = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV, preexec_fn=sigint_default
    )
    _wait_for(ck.exists, p, "first checkpoint")
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "RESUME=1" in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not (out / "model.pt").exists()
    done = torch.load(ck, weights_only=False)["epoch"]
    assert done >= 1 and f"({done} complete" in lines[0]

    # --resume says where it continues, then trains on (interrupted again once a later checkpoint is written)
    p = subprocess.Popen(
        args + ["--resume"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
        preexec_fn=sigint_default,
    )
    first = p.stderr.readline()
    assert f"resuming from epoch {done} of 400" in first, first
    inode = ck.stat().st_ino  # every checkpoint is a new file renamed over the old one
    _wait_for(lambda: ck.stat().st_ino != inode, p, "a checkpoint after the resume")
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=60)
    assert p.returncode == 130, rest
    assert len(rest.strip().splitlines()) == 1 and "RESUME=1" in rest
    later = torch.load(ck, weights_only=False)
    assert later["epoch"] > done and len(later["history"]) == later["epoch"]
