"""The export directory, the golden model against the float model, re-export and the CLI's errors."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from export import ExportError, WeightFormatError
from export.golden import GoldenModel
from export.manifest import REQUIRED_KEYS, load_test_set, read_manifest

pytestmark = pytest.mark.usefixtures("torch_single_thread")  # the session's trainings: see conftest


def _tree_digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_manifest_contract_keys(digits_export):
    m = read_manifest(digits_export[1])
    for key in REQUIRED_KEYS:
        assert key in m
    assert m["format_version"] == 2 and m["classes"] == 10
    # (C, H, W) since format version 2; values are ordered H, W, C
    assert {k: m["input"][k] for k in ("shape", "bits", "signed")} == {"shape": [1, 8, 8], "bits": 8, "signed": False}
    assert [layer["name"] for layer in m["layers"]] == ["fc0", "fc1", "fc2", "fc3"]
    for layer in m["layers"]:
        for key in (
            "name",
            "kind",
            "in_shape",
            "out_shape",
            "in_features",
            "out_features",
            "weights",
            "sha256",
            "abits",
            "in_bits",
            "acc_bits",
            "acc_min",
            "acc_max",
            "activation",
        ):
            assert key in layer, key
        assert layer["kind"] == "dense" and layer["out_shape"] == [layer["out_features"], 1, 1]
    assert m["layers"][0]["in_shape"] == [1, 8, 8] and m["layers"][0]["in_features"] == 64


def test_golden_agrees_with_float_model(digits_export):
    ckpt, d = digits_export
    m = read_manifest(d)
    trained = torch.load(ckpt, weights_only=False)["metrics"]["test_accuracy_sign"]
    assert abs(m["golden_test_accuracy"] - trained) <= 0.003
    assert abs(m["float_test_accuracy"] - trained) < 1e-9


def test_golden_matches_float_per_image(digits_export):
    """Beyond accuracy: the float model (sign weights) and the golden model classify the same images."""
    from train.trainer import load_model

    ckpt, d = digits_export
    model, _ = load_model(ckpt)
    images, labels = load_test_set(d)
    g = GoldenModel(d)
    float_cls = model.predict(torch.from_numpy(images), sign_weights=True).argmax(1).numpy()
    assert images.shape[1:] == (8, 8, 1)
    assert (g.classify(images) == float_cls).mean() >= 0.99
    assert np.array_equal(g.classify(images), g.run(images).classes)
    assert np.array_equal(g.classify(images[..., 0]), g.classify(images))  # (N, H, W) for one channel


def test_golden_trace_intermediates(digits_export):
    g = GoldenModel(digits_export[1])
    images, _ = load_test_set(digits_export[1])
    tr = g.run(images[:50])
    assert len(tr.accumulators) == 4 and len(tr.activations) == 3
    x = images[:50].reshape(50, -1).astype(np.int64)
    assert np.array_equal(tr.accumulators[0], x @ g.layers[0].weights.T.astype(np.int64))
    assert tr.activations[0].min() >= 0 and tr.activations[0].max() <= 255
    # lowest index on ties
    scores = np.array([[3, 7, 7, 1]])
    assert np.argmax(scores, 1)[0] == 1
    assert np.array_equal(tr.classes, np.argmax(tr.scores, 1))


def test_reexport_is_byte_identical(digits_export, tmp_path):
    from export.exporter import export_checkpoint

    ckpt, d = digits_export
    export_checkpoint(ckpt, tmp_path / "again")
    assert _tree_digest(tmp_path / "again") == _tree_digest(d)


def test_golden_reader_needs_no_torch(digits_export):
    code = (
        "import sys; from export.golden import GoldenModel; from export.manifest import load_test_set;"
        f"g = GoldenModel({str(digits_export[1])!r}); i, l = load_test_set(g.directory);"
        "print((g.classify(i) == l).mean()); assert 'torch' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _broken_copy(src, dst, edit):
    shutil.copytree(src, dst)
    edit(dst)
    return dst


@pytest.mark.parametrize(
    "edit, exc, words",
    [
        (
            lambda d: (d / "fc1.weights").write_bytes((d / "fc1.weights").read_bytes()[:-3]),
            WeightFormatError,
            "SHA-256",
        ),
        (lambda d: (d / "manifest.json").write_text("{"), ExportError, "unreadable manifest"),
        (lambda d: _edit_manifest(d, lambda m: m.pop("layers")), ExportError, "missing key 'layers'"),
        (lambda d: _edit_manifest(d, lambda m: m["layers"][1].update(out_features=65)), ExportError, "out_shape"),
        (
            lambda d: _edit_manifest(d, lambda m: m["layers"][1].update(out_features=65, out_shape=[65, 1, 1])),
            ExportError,
            "'fc2' takes \\[64, 1, 1\\], its input is \\[65, 1, 1\\]",
        ),
        (lambda d: _edit_manifest(d, lambda m: m.update(format_version=9)), ExportError, "format_version"),
        (lambda d: (d / "fc0.thresholds").unlink(), WeightFormatError, "cannot read"),
    ],
)
def test_bad_export_directory(digits_export, tmp_path, edit, exc, words):
    d = _broken_copy(digits_export[1], tmp_path / "bad", edit)
    with pytest.raises(exc, match=words) as e:
        GoldenModel(d)
    assert str(d) in str(e.value)


def _edit_manifest(d, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "export", *args], capture_output=True, text=True)


def test_cli_check_ok_and_bad(digits_export, tmp_path):
    r = _cli("check", str(digits_export[1]))
    assert r.returncode == 0 and "hashes OK" in r.stdout
    d = _broken_copy(digits_export[1], tmp_path / "bad", lambda d: (d / "fc2.weights").write_bytes(b"LMWB"))
    r = _cli("check", str(d))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "fc2.weights" in r.stderr


def test_cli_failed_export_leaves_previous_intact(digits_export, tmp_path, capsys):
    out = tmp_path / "export"
    shutil.copytree(digits_export[1], out)
    before = _tree_digest(out)
    cks = tmp_path / "ck"  # beside the export: an output inside its input's folder is refused by itself
    cks.mkdir()
    (cks / "junk.pt").write_bytes(b"not a checkpoint")
    for ck in (cks / "junk.pt", cks / "missing.pt"):
        r = _cli("--checkpoint", str(ck), "-o", str(out))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(ck) in r.stderr
    # a checkpoint of an unknown shape
    bad = torch.load(digits_export[0], weights_only=False)
    layers = bad["model_config"]["layers"]
    layers[0].update(out_features=32, out_shape=[32, 1, 1])
    layers[1]["in_shape"] = [32, 1, 1]
    torch.save(bad, cks / "shape.pt")
    old = torch.load(digits_export[0], weights_only=False)  # an older lutmac's checkpoint: no layer list
    old["model_config"] = {"sizes": [64, 64, 64, 64, 10], "binarize": "det", "abits": 8}
    torch.save(old, cks / "old.pt")
    from common.cli import run_stage
    from export.__main__ import main

    for name, words in (("shape.pt", "do not fit"), ("old.pt", "no layer list")):
        with pytest.raises(SystemExit) as e:  # in this process (no second torch start-up), same wrapper
            run_stage("export", lambda: main(["--checkpoint", str(cks / name), "-o", str(out)]))
        err = capsys.readouterr().err
        assert e.value.code == 2 and name in err and words in err, err
        assert len(err.strip().splitlines()) == 1
    assert _tree_digest(out) == before


def test_odd_sizes_and_two_bit_activations(digits_export_a2):
    _, d = digits_export_a2
    m = read_manifest(d)
    g = GoldenModel(d)
    assert [layer.out_features for layer in g.layers] == [24, 16, 10]
    assert all(layer.thresholds.shape[1] == 3 for layer in g.layers[:-1])
    assert abs(m["golden_test_accuracy"] - m["float_test_accuracy"]) <= 0.003
