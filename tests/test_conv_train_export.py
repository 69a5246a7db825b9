"""Conv nets through export: the golden model against the float model and against torch's own convolution, the conv
weight file's bit order, pools without files, one bit per weight, and the exporter's refusal of a degenerate output
layer."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from export import ExportError
from export.conv import maxpool, patches
from export.golden import GoldenModel
from export.manifest import load_test_set, read_manifest
from export.packing import HEADER_BYTES, decode_weights

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("torch_single_thread")]

_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train_export(root, **cfg):
    from export.exporter import export_checkpoint
    from train.trainer import TrainConfig, run_training

    run_training(TrainConfig(**cfg), root / "train", progress=False, log=lambda s: None)
    export_checkpoint(root / "train" / "model.pt", root / "export")
    return root / "train" / "model.pt", root / "export"


@pytest.fixture(scope="module")
def padded_export(tmp_path_factory):
    """Stride and zero padding: 8c3s2p1 (8x4x4) - mp2 (8x2x2) - 16c3p1 (16x2x2) - 10, 4-bit activations."""
    return _train_export(
        tmp_path_factory.mktemp("conv-padded"), dataset="digits", arch="8c3s2p1-mp2-16c3p1-10", abits=4, epochs=4
    )


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    """Three input channels (the synthetic CIFAR-sized set): 4c3s2 (4x15x15) - mp2 (4x7x7) - 6c3 (6x5x5) - 10."""
    return _train_export(
        tmp_path_factory.mktemp("conv-rgb"), dataset="cifar10-shape", arch="4c3s2-mp2-6c3-10", abits=2, epochs=1
    )


EXPORTS = ["digits_conv_export", "padded_export", "rgb_export"]


def _sign_filters(ckpt):
    """The float model and the ±1 filters ``(C_out, C_in, K, K)`` of its conv layers, from the checkpoint."""
    from train.binary import BinaryConv2d
    from train.trainer import load_model

    model, _ = load_model(ckpt)
    return model, [torch.where(m.weight.detach() >= 0, 1.0, -1.0) for m in model.net if isinstance(m, BinaryConv2d)]


@pytest.mark.parametrize("which", EXPORTS)
def test_export_check_passes(which, request):
    _, d = request.getfixturevalue(which)
    r = subprocess.run([sys.executable, "-m", "export", "check", str(d)], capture_output=True, text=True, env=_ENV)
    assert r.returncode == 0 and "hashes OK" in r.stdout and r.stderr == "", r.stderr


@pytest.mark.parametrize("which", EXPORTS)
def test_golden_equals_float_model_on_every_image(which, request):
    ckpt, d = request.getfixturevalue(which)
    model, _ = _sign_filters(ckpt)
    images, labels = load_test_set(d)
    m = read_manifest(d)
    c, h, w = m["input"]["shape"]
    assert images.shape == (m["test_set"]["count"], h, w, c) and images.dtype == np.uint8
    float_cls = model.predict(torch.from_numpy(images), sign_weights=True).argmax(1).numpy()
    golden_cls = GoldenModel(d).classify(images)
    assert np.array_equal(golden_cls, float_cls), f"{int((golden_cls != float_cls).sum())} images differ"
    assert m["golden_test_accuracy"] == m["float_test_accuracy"] == float((golden_cls == labels).mean())


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).double()


@pytest.mark.parametrize("which", EXPORTS)
def test_golden_conv_accumulators_equal_torch_conv2d(which, request):
    """Every intermediate of a few images, recomputed independently: torch's conv2d on the checkpoint's sign
    filters (NCHW, permuted back to NHWC), the reference patches/maxpool of export.conv, a plain dense product."""
    ckpt, d = request.getfixturevalue(which)
    _, filters = _sign_filters(ckpt)
    g = GoldenModel(d)
    images, _ = load_test_set(d)
    x0 = images[:6]
    tr = g.run(x0)
    inputs = [x0.astype(np.int64)] + tr.activations  # the input of layer i
    convs = iter(filters)
    for i, p in enumerate(g.layers):
        x = inputs[i]
        if p.kind == "conv2d":
            s = p.spec
            ref = nn.functional.conv2d(_nchw(x), next(convs).double(), None, s.stride, s.padding)
            ref = ref.permute(0, 2, 3, 1).numpy().astype(np.int64)
            assert tr.accumulators[i].shape == ref.shape == (len(x0), *s.out_shape[1:], s.out_channels)
            assert np.array_equal(tr.accumulators[i], ref), p.name
            via_patches = patches(x, kernel=s.kernel, stride=s.stride, padding=s.padding) @ p.weights.T.astype(np.int64)
            assert np.array_equal(via_patches, ref), p.name
        elif p.kind == "maxpool2d":
            assert tr.accumulators[i] is None
            assert np.array_equal(tr.activations[i], maxpool(x, p.spec.kernel)), p.name
        else:
            flat = x.reshape(len(x), -1)  # (H, W, C) order
            assert np.array_equal(tr.accumulators[i], flat @ p.weights.T.astype(np.int64)), p.name
        # one layer at a time gives the same
        acc, out = g.layer(i, x)
        assert np.array_equal(out, tr.activations[i] if i < len(g.layers) - 1 else tr.scores), p.name
    assert next(convs, None) is None


@pytest.mark.parametrize("which", EXPORTS)
def test_conv_weight_file_bit_order(which, request):
    """A conv layer's file holds (C_out, K*K*C_in) bits; column (ky*K + kx)*C_in + c is weight[o, c, ky, kx]."""
    ckpt, d = request.getfixturevalue(which)
    model, _ = _sign_filters(ckpt)
    m = read_manifest(d)
    from train.binary import BinaryConv2d

    latent = [mod.weight.detach() for mod in model.net if isinstance(mod, BinaryConv2d)]
    entries = [e for e in m["layers"] if e["kind"] == "conv2d"]
    assert len(entries) == len(latent) >= 1
    for e, w in zip(entries, latent):
        data = (d / e["weights"]).read_bytes()
        c_out, c_in, k, _ = w.shape
        rows, cols = np.frombuffer(data[8:16], "<u4")
        assert (rows, cols) == (c_out, k * k * c_in) == (e["out_channels"], e["kernel"] ** 2 * e["in_shape"][0])
        stride = (cols + 7) // 8

        def bit(o, col):
            return (data[HEADER_BYTES + o * stride + col // 8] >> (col % 8)) & 1

        # one weight spelled out: the last output channel, the last input channel, kernel position (1, 0)
        o, c, ky, kx = c_out - 1, c_in - 1, min(1, k - 1), 0
        assert bit(o, (ky * k + kx) * c_in + c) == int(w[o, c, ky, kx] >= 0)
        # and every one of them
        got = np.array([[bit(o, col) for col in range(cols)] for o in range(c_out)])
        want = (w >= 0).permute(0, 2, 3, 1).reshape(c_out, -1).numpy().astype(int)
        assert np.array_equal(got, want), e["name"]
        assert np.array_equal(decode_weights(data), 2 * want - 1)


@pytest.mark.parametrize("which", EXPORTS)
def test_pools_carry_no_files_and_one_bit_per_weight(which, request):
    _, d = request.getfixturevalue(which)
    m = read_manifest(d)
    files = set()
    for e in m["layers"]:
        if e["kind"] == "maxpool2d":
            assert set(e) == {"name", "kind", "in_shape", "out_shape", "kernel", "stride", "in_bits"}, e
            continue
        files.add(e["weights"])
        rows, cols = (
            (e["out_channels"], e["kernel"] ** 2 * e["in_shape"][0])
            if e["kind"] == "conv2d"
            else (e["out_features"], e["in_features"])
        )
        size = (d / e["weights"]).stat().st_size
        assert size == HEADER_BYTES + rows * -(-cols // 8), e["name"]  # one bit per weight, rows byte-aligned
        assert (size - HEADER_BYTES) * 8 - rows * cols < 8 * rows
        if e["activation"]["kind"] in ("thresholds", "progression"):
            files.add(e["activation"]["file"])
    files |= {m["test_set"]["images"], m["test_set"]["labels"], "manifest.json"}
    assert {p.name for p in d.iterdir() if not p.name.startswith(".")} == files
    assert not any(p.name.startswith("pool") for p in d.iterdir())


def test_conv_manifest_entries(digits_conv_export):
    _, d = digits_conv_export
    m = read_manifest(d)
    assert m["input"]["shape"] == [1, 8, 8] and m["classes"] == 10 and m["format_version"] == 2
    conv0, pool0, conv1, fc0 = m["layers"]
    assert {
        k: conv0[k]
        for k in (
            "name",
            "kind",
            "in_shape",
            "out_shape",
            "out_channels",
            "kernel",
            "stride",
            "padding",
            "in_bits",
            "abits",
            "acc_min",
            "acc_max",
            "acc_bits",
        )
    } == {
        "name": "conv0",
        "kind": "conv2d",
        "in_shape": [1, 8, 8],
        "out_shape": [16, 6, 6],
        "out_channels": 16,
        "kernel": 3,
        "stride": 1,
        "padding": 0,
        "in_bits": 8,
        "abits": 8,
        "acc_min": -9 * 255,
        "acc_max": 9 * 255,
        "acc_bits": 13,
    }
    assert (pool0["name"], pool0["out_shape"], pool0["in_bits"]) == ("pool0", [16, 3, 3], 8)
    # conv1 sees 8-bit activation levels through the pool: 3*3*16 inputs of at most 255
    assert (conv1["in_bits"], conv1["acc_max"], conv1["acc_bits"]) == (8, 144 * 255, 17)
    assert (fc0["in_features"], fc0["out_features"], fc0["abits"], fc0["activation"]["kind"]) == (
        32,
        10,
        None,
        "scores",
    )


@pytest.mark.parametrize("which", ["digits_conv_export", "rgb_export"])
def test_reexport_is_byte_identical(which, request, tmp_path):
    from export.exporter import export_checkpoint

    ckpt, d = request.getfixturevalue(which)
    export_checkpoint(ckpt, tmp_path / "again")

    def digest(folder):
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if not p.name.startswith(".")
        }

    assert digest(tmp_path / "again") == digest(d)


def test_rgb_test_set_is_stored_channels_last(rgb_export):
    _, d = rgb_export
    m = read_manifest(d)
    assert m["input"]["shape"] == [3, 32, 32] and m["synthetic"] is True
    images, _ = load_test_set(d)
    from train.data import load_dataset

    assert np.array_equal(images, load_dataset("cifar10-shape").test.images)


def _degenerate_checkpoint(src, dst, gamma=1e-16):
    """``src`` with the output layer's batch-norm weight (gamma) set to ``gamma`` for every class."""
    ck = torch.load(src, weights_only=False)
    from train.model import BinaryNet

    net = BinaryNet.from_config(ck["model_config"])
    last = len(net.net) - 1
    assert isinstance(net.net[last], nn.BatchNorm1d)
    key = f"net.{last}.weight"
    ck["model"][key] = torch.full_like(ck["model"][key], gamma)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, dst)
    return dst


@pytest.mark.parametrize("which", ["digits_export", "digits_conv_export"])
def test_degenerate_output_layer_is_refused_in_process(which, request, tmp_path):
    from export.exporter import export_checkpoint

    ckpt, _ = request.getfixturevalue(which)
    bad = _degenerate_checkpoint(ckpt, tmp_path / "train" / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way to the refusal
        with pytest.raises(ExportError, match="output layer"):
            export_checkpoint(bad, tmp_path / "export", warn=lambda s: pytest.fail(s))
    assert not (tmp_path / "export").exists()


def test_degenerate_output_layer_cli_exits_2_one_line(digits_conv_export, tmp_path):
    ckpt, _ = digits_conv_export
    bad = _degenerate_checkpoint(ckpt, tmp_path / "train" / "model.pt")
    out = tmp_path / "export"
    r = subprocess.run(
        [sys.executable, "-m", "export", "--checkpoint", str(bad), "-o", str(out)],
        capture_output=True,
        text=True,
        env=_ENV,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export: error:") and "output layer" in lines[0], r.stderr
    assert "Warning" not in r.stderr and r.stdout == ""
    assert not out.exists()
    # the good checkpoint beside it still exports (the refusal is about the numbers, not the file)
    shutil.copy(ckpt, tmp_path / "train" / "model.pt")
    from export.exporter import export_checkpoint

    m = export_checkpoint(tmp_path / "train" / "model.pt", out)
    assert json.loads((out / "manifest.json").read_text())["golden_test_accuracy"] == m["golden_test_accuracy"]
