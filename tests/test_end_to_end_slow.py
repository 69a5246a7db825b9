"""The whole pipeline on Fashion-MNIST (slow: `make test-slow`). `make test` covers the same path on digits."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
    ),
]


def _run(*args):
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_fashion_sfc_train_export_gen_sim(tmp_path):
    _run("train", "--dataset", "fashion-mnist", "--arch", "sfc", "--epochs", "3", "--quiet", "-o", str(tmp_path / "t"))
    _run("export", "--checkpoint", str(tmp_path / "t" / "model.pt"), "-o", str(tmp_path / "e"))
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert m["golden_test_accuracy"] > 0.8 and abs(m["golden_test_accuracy"] - m["float_test_accuracy"]) <= 0.003
    _run("hw", "gen", "--export", str(tmp_path / "e"), "--pe", "16", "--simd", "64", "-o", str(tmp_path / "r"))
    _run(
        "sim",
        "--export",
        str(tmp_path / "e"),
        "--rtl",
        str(tmp_path / "r"),
        "--n",
        "200",
        "--quiet",
        "-o",
        str(tmp_path / "s"),
    )
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["mismatches"] == 0 and res["cycles_per_image"] <= 1.05 * res["fold_bound_cycles"]
