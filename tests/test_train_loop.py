"""Training loop: a real short run on digits, exact resume, CLI errors that leave outputs untouched."""

import json
import subprocess
import sys

import pytest
import torch

from train.trainer import TrainConfig, run_training, load_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "train"
    metrics = run_training(TrainConfig(dataset="digits", arch="tfc", epochs=60), out, progress=False)
    return out, metrics


def test_short_digits_training_beats_floor(digits_run):
    out, m = digits_run
    assert m["test_accuracy_sign"] >= 0.94
    for f in ("model.pt", "metrics.json", "curves.png", "weights.png", "checkpoint.pt"):
        assert (out / f).stat().st_size > 0
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("dataset", "arch", "binarize", "abits", "epochs", "test_accuracy", "test_accuracy_sign", "seconds"):
        assert key in saved
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_model_reload_reproduces_accuracy(digits_run):
    out, m = digits_run
    model, ck = load_model(out / "model.pt")
    from train.data import load_dataset
    test = load_dataset("digits").test
    pred = model.predict(torch.from_numpy(test.images)).argmax(1).numpy()
    assert (pred == test.labels).mean() == pytest.approx(m["test_accuracy_sign"])


@pytest.mark.parametrize("binarize", ["det", "stoch"])
def test_resume_equals_uninterrupted(tmp_path, binarize):
    cfg = TrainConfig(dataset="digits", arch="64-32-10", binarize=binarize, epochs=3, abits=4)
    full = run_training(cfg, tmp_path / "full", progress=False)
    # the same run killed right after its second checkpoint
    part = tmp_path / "part"
    import train.trainer as tr
    real_save = tr._save
    count = {"n": 0}

    def save_then_die(path, obj):
        real_save(path, obj)
        if path.name == "checkpoint.pt":
            count["n"] += 1
            if count["n"] == 2:
                raise KeyboardInterrupt

    tr._save = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            run_training(cfg, part, progress=False)
    finally:
        tr._save = real_save
    assert not (part / "model.pt").exists()
    resumed = run_training(cfg, part, resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(part / "model.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["history"] == resumed["history"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "train", *args, "--quiet"], capture_output=True, text=True)


@pytest.mark.parametrize("args, words", [
    (["--dataset", "cifar"], "dataset 'cifar'"),
    (["--arch", "zfc"], "arch 'zfc'"),
    (["--arch", "784-10"], "arch '784-10'"),
    (["--abits", "9"], "abits 9"),
    (["--abits", "1"], "abits 1"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, args, words):
    r = _cli(*args, "-o", str(tmp_path / "t"))
    assert r.returncode == 2
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_cli_resume_mismatch_and_corrupt_leave_outputs(digits_run, tmp_path):
    out, _ = digits_run
    before = {f: (out / f).read_bytes() for f in ("model.pt", "metrics.json")}
    r = _cli("--epochs", "60", "--abits", "4", "--resume", "-o", str(out))
    assert r.returncode == 2 and "abits=8" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"garbage")
    r = _cli("--resume", "-o", str(bad))
    assert r.returncode == 2 and "unreadable checkpoint" in r.stderr
    assert {f: (out / f).read_bytes() for f in before} == before
