"""QONNX interchange (export/qonnx.py, `python -m export qonnx`): the graph, executed by qonnx's execute_onnx, gives
every test image the golden model's scores and class exactly — an MLP, a conv net with padding, stride, a pool and a
dense layer after a multi-channel map, rows of negative orientation, and scores beyond float32's exact integers."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("qonnx", reason="qonnx is not installed (make setup installs it)")

from common.cli import run_stage  # noqa: E402
from export.folding import apply_scores, signed_bits  # noqa: E402
from export.golden import GoldenModel  # noqa: E402
from export.manifest import load_test_set  # noqa: E402
from export.packing import encode_progression, encode_thresholds, encode_weights  # noqa: E402
from export.qonnx import build_model, check_model, load_model, run_model  # noqa: E402


def _train_export(root, arch, abits, epochs=5):
    import torch

    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: two threads on two shared cores only spin against each other
    try:
        run_training(
            TrainConfig(dataset="digits", arch=arch, abits=abits, epochs=epochs),
            root / "train",
            progress=False,
            log=lambda s: None,
        )
    finally:
        torch.set_num_threads(threads)
    export_checkpoint(root / "train" / "model.pt", root / "export", warn=lambda s: None)
    return root / "export"


@pytest.fixture(scope="module")
def mlp_export(tmp_path_factory):
    """64-24-16-10, 2-bit activations: dense layers only, the image flattened straight into fc0."""
    return _train_export(tmp_path_factory.mktemp("qonnx-mlp"), "64-24-16-10", 2)


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    """8c3p1-mp2-16c3s2p1-10, 4-bit activations: a padded conv, a pool, a strided padded conv, and fc0 on a 2x2x16
    map (the Transpose to NHWC before Flatten matters)."""
    return _train_export(tmp_path_factory.mktemp("qonnx-conv"), "8c3p1-mp2-16c3s2p1-10", 4)


def _golden_scores(directory):
    g = GoldenModel(directory)
    images, _ = load_test_set(directory, g.manifest)
    return g, images, g.run(images).scores


def _assert_exact(directory, model=None):
    g, images, golden = _golden_scores(directory)
    model = model or build_model(directory)
    scores = run_model(model, images, tuple(g.manifest["input"]["shape"]))
    assert scores.shape == golden.shape
    assert np.array_equal(scores.astype(np.float64), golden.astype(np.float64))
    assert np.array_equal(np.argmax(scores, axis=1), np.argmax(golden, axis=1))
    return model, golden


def _rewrite(directory, edit):
    """Apply ``edit(manifest, directory)`` to a copied export and rewrite the manifest."""
    m = json.loads((directory / "manifest.json").read_text())
    edit(m, directory)
    (directory / "manifest.json").write_text(json.dumps(m, indent=2))
    return directory


@pytest.mark.parametrize("which", ["mlp_export", "conv_export"])
def test_graph_matches_golden_on_every_test_image(which, request):
    directory = request.getfixturevalue(which)
    model, golden = _assert_exact(directory)
    g = GoldenModel(directory)
    ops = [n.op_type for n in model.graph.node]
    kinds = [p.kind for p in g.layers]
    assert ops.count("Conv") == kinds.count("conv2d") and ops.count("MatMul") == kinds.count("dense")
    assert ops.count("MaxPool") == kinds.count("maxpool2d") and ops.count("BipolarQuant") == len(g.layers) - ops.count(
        "MaxPool"
    )
    assert ops.count("MultiThreshold") == sum(p.thresholds is not None for p in g.layers)
    assert ops.count("Quant") == 1 and ops[-2:] == ["Mul", "Add"]
    assert ("Transpose" in ops) == (which == "conv_export")  # the 2x2x16 map, not the 1-channel image
    for p in g.layers:
        if p.kind == "conv2d":  # (ky, kx, c) columns -> ONNX (out, in, kH, kW), rows times their orientation
            w = model.get_initializer(f"{p.name}_weights")
            k, c = p.spec.kernel, p.spec.in_shape[0]
            r, ci, ky, kx = 3 % p.rows, c - 1, k - 1, 0
            assert w[r, ci, ky, kx] == p.orientation[r] * p.weights[r, (ky * k + kx) * c + ci]
            assert np.array_equal(np.unique(w), [-1, 1])
    assert model.get_tensor_datatype("global_in").name == "UINT8"
    hidden = [p for p in g.layers if p.thresholds is not None]
    assert model.get_tensor_datatype(f"{hidden[0].name}_out").name == f"UINT{hidden[0].abits}"


def _flip_rows(src, dst, plan):
    """A copy of the export where the rows ``plan[layer]`` have negated weights and orientation -1: ``s * acc`` and
    so every level stay the same, but the export now has rows of negative orientation."""
    shutil.copytree(src, dst)
    layers = {p.name: p for p in GoldenModel(dst).layers}

    def edit(m, directory):
        for e in m["layers"]:
            if e["name"] not in plan:
                continue
            p, rows = layers[e["name"]], plan[e["name"]]
            w, s = p.weights.copy(), p.orientation.copy()
            w[rows], s[rows] = -w[rows], -s[rows]
            if p.progression is not None:  # a progression row keeps its constants: s * acc is unchanged
                f, a_fx, d_fx = p.progression
                tb = encode_progression(s, a_fx, d_fx, f, p.thresholds.shape[1])
            else:
                tb = encode_thresholds(s, p.thresholds)
            wb = encode_weights(w)
            (directory / e["weights"]).write_bytes(wb)
            (directory / e["activation"]["file"]).write_bytes(tb)
            e["sha256"], e["activation"]["sha256"] = hashlib.sha256(wb).hexdigest(), hashlib.sha256(tb).hexdigest()
            e["activation"]["negative_orientation"] = int((s < 0).sum())

    return _rewrite(dst, edit)


@pytest.mark.parametrize(
    "which, plan",
    [
        ("conv_export", {"conv0": [0, 2, 5], "conv1": list(range(0, 16, 3))}),  # padded and strided conv rows
        ("mlp_export", {"fc0": [1, 7, 8], "fc1": [0, 15]}),
    ],
)
def test_negative_orientation_rows(which, plan, request, tmp_path):
    src = request.getfixturevalue(which)
    flipped = _flip_rows(src, tmp_path / "flipped", plan)
    g = GoldenModel(flipped)
    negative = {
        p.name: np.flatnonzero(p.orientation < 0).tolist()
        for p in g.layers
        if p.orientation is not None and (p.orientation < 0).any()
    }
    assert set(negative) == set(plan)
    _, _, original = _golden_scores(src)
    model, golden = _assert_exact(flipped)
    assert np.array_equal(golden, original)  # the flip changed no level: a sanity check of the construction
    assert json.loads(model.get_metadata_prop("lutmac_negated_rows")) == negative
    base = build_model(src)
    for name in plan:  # the graph folds s = -1 into the weights: the same graph weights as the unflipped export
        assert np.array_equal(model.get_initializer(f"{name}_weights"), base.get_initializer(f"{name}_weights"))


def test_scores_beyond_float32_use_float64(mlp_export, tmp_path):
    """Offsets of 2^30 + odd (every class alike: the classes are unchanged) need float64 to stay exact."""
    big = tmp_path / "big"
    shutil.copytree(mlp_export, big)

    def edit(m, directory):
        e = m["layers"][-1]
        act = e["activation"]
        act["offset"] = [b + (1 << 30) + 1 for b in act["offset"]]
        ext = apply_scores(
            np.array([[e["acc_min"]] * len(act["scale"]), [e["acc_max"]] * len(act["scale"])]),
            np.array(act["scale"]),
            np.array(act["offset"]),
        )
        act["score_bits"] = signed_bits(int(ext.min()), int(ext.max()))

    _rewrite(big, edit)
    model, golden = _assert_exact(big)
    assert golden.min() > 1 << 24 and (golden % 2 == 1).any()  # odd integers float32 cannot hold
    assert "Cast" in [n.op_type for n in model.graph.node]
    from onnx import TensorProto

    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    assert (
        model.graph.output[0].type.tensor_type.elem_type
        != build_model(mlp_export).graph.output[0].type.tensor_type.elem_type
    )


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "export", "qonnx", *map(str, args)], capture_output=True, text=True)


def test_cli_writes_and_checks(conv_export, tmp_path):
    out = tmp_path / "net.onnx"
    r = _cli(conv_export, "-o", out, "--check", 100)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "100/100 classes and 100/100 score vectors" in r.stdout
    assert "Conv x2" in r.stdout and "MultiThreshold x2" in r.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # atomic: no temporary left behind
    assert check_model(load_model(out), conv_export, 20) == {"images": 20, "class_matches": 20, "score_matches": 20}


def _main(capsys, *args):
    """``python -m export qonnx ...`` in-process, through the stage's CLI wrapper: (status, stdout, stderr)."""
    from export.__main__ import main

    with pytest.raises(SystemExit) as e:
        run_stage("export", lambda: main(["qonnx", *map(str, args)]))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_mismatch_exits_1(mlp_export, tmp_path, capsys, monkeypatch):
    """A graph that disagrees (one class's offset off by one) is reported and exits 1."""
    import export.qonnx as q

    def off_by_one(data):
        model = load_model(data)
        b = model.get_initializer("fc2_offset").copy()
        b[3] += 1
        model.set_initializer("fc2_offset", b)
        return model

    monkeypatch.setattr(q, "load_model", off_by_one)
    code, out, _ = _main(capsys, mlp_export, "-o", tmp_path / "m.onnx", "--check", "50")
    assert code == 1 and "0/50 score vectors" in out


def test_cli_errors_are_one_line(mlp_export, tmp_path, capsys, monkeypatch):
    def one_line(code, err, *words):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("export: error: "), err
        assert all(w in lines[0] for w in words), lines[0]

    r = _cli(tmp_path / "nothing", "-o", tmp_path / "a.onnx")  # a real process: no traceback on stderr
    one_line(r.returncode, r.stderr, "no manifest")
    bad = tmp_path / "bad"
    shutil.copytree(mlp_export, bad)
    (bad / "fc1.weights").write_bytes((bad / "fc1.weights").read_bytes()[:-1] + b"\x00")
    one_line(*_main(capsys, bad, "-o", tmp_path / "b.onnx")[::2], "SHA-256", "fc1.weights")
    one_line(*_main(capsys, mlp_export, "-o", mlp_export / "c.onnx")[::2], "outside the export directory")
    assert not (mlp_export / "c.onnx").exists()
    for mod in ("onnx", "qonnx", "qonnx.core.modelwrapper"):
        monkeypatch.setitem(sys.modules, mod, None)
    one_line(*_main(capsys, mlp_export, "-o", tmp_path / "d.onnx")[::2], "qonnx", "make setup")
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())
