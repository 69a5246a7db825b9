"""Training figures: log-scale curves with plain tick labels, weight histograms, and the det-vs-stoch overlay of
``python -m train.plots``."""

import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("torch_single_thread")]

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def stoch_run(tmp_path_factory):
    from train.trainer import TrainConfig, run_training

    out = tmp_path_factory.mktemp("digits-stoch") / "train"
    run_training(TrainConfig(dataset="digits", arch="tfc", binarize="stoch", epochs=4), out, progress=False)
    return out


def test_log_axis_ticks_are_plain_percentages():
    import matplotlib.pyplot as plt

    from train.plots import _log_percent_axis

    for values, expect in (([16.0, 42.0], {"20", "30", "40"}), ([0.4, 60.0], {"1", "2", "5", "10", "20", "50"})):
        fig, ax = plt.subplots()
        ax.plot(range(len(values)), values)
        _log_percent_axis(ax, values)
        fig.canvas.draw()
        lo, hi = ax.get_ylim()
        labels = {t.get_text() for t in ax.get_yticklabels() if lo <= t.get_position()[1] <= hi}
        plt.close(fig)
        assert expect <= labels and not any("times" in s or "^" in s for s in labels), labels


def test_curves_mark_the_fine_tune(stoch_run, tmp_path):
    import json

    from train.plots import plot_curves

    history = json.loads((stoch_run / "metrics.json").read_text())["history"]
    assert {h["phase"] for h in history} == {"stochastic", "deterministic"}
    plot_curves(tmp_path / "c.png", history, title="digits tfc stoch")
    assert (tmp_path / "c.png").read_bytes()[:4] == PNG
    assert (stoch_run / "weights.png").read_bytes()[:4] == PNG


def test_det_and_stoch_overlay(digits_export, stoch_run, tmp_path):
    from train import TrainError
    from train.plots import main, plot_weight_runs

    det = digits_export[0].parent
    assert plot_weight_runs(tmp_path / "o.png", [det, stoch_run]) == ["det", "stoch"]
    assert (tmp_path / "o.png").read_bytes()[:4] == PNG
    # the same mode twice: the folders tell the runs apart
    (tmp_path / "again").mkdir()
    shutil.copyfile(det / "model.pt", tmp_path / "again" / "model.pt")
    labels = plot_weight_runs(tmp_path / "same.png", [det, tmp_path / "again" / "model.pt"], layers=["fc0"])
    assert len(set(labels)) == 2 and all(label.startswith("det (") for label in labels)
    assert main(["--runs", str(det), str(stoch_run), "--labels", "a", "b", "-o", str(tmp_path / "cli.png")]) == 0
    with pytest.raises(TrainError, match="no compute layer 'fc9'"):
        plot_weight_runs(tmp_path / "x.png", [det], layers=["fc9"])
    with pytest.raises(TrainError, match="labels for 2 runs"):
        plot_weight_runs(tmp_path / "x.png", [det, stoch_run], labels=["only one"])
    assert not (tmp_path / "x.png").exists()


def test_overlay_refuses_another_network(digits_export, tmp_path):
    from train.trainer import TrainConfig, run_training

    other = tmp_path / "other"
    run_training(TrainConfig(dataset="digits", arch="64-16-10", epochs=1), other, progress=False)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.plots",
            "--runs",
            str(digits_export[0].parent),
            str(other),
            "-o",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "another network" in r.stderr
    assert not (tmp_path / "p.png").exists()
