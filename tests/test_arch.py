"""Architecture strings and presets -> typed layers (train.arch.parse_arch): shapes, names, the grammar, every refusal
naming its token, and the CLI refusing before it creates anything."""

import os
import subprocess
import sys

import pytest

from common.layers import Conv2d, Dense, MaxPool2d, check_chain
from train import TrainError
from train.arch import ARCH_PRESETS, describe, parse_arch

RGB32 = (3, 32, 32)
DIGITS = (1, 8, 8)
MNIST = (1, 28, 28)


def _shapes(layers):
    """``[(name, kind, out_shape), ...]``."""
    return [(layer.name, layer.kind, layer.out_shape) for layer in layers]


def test_cnv_preset_shapes():
    layers = parse_arch("cnv", RGB32, 10)
    assert _shapes(layers) == [
        ("conv0", "conv2d", (64, 30, 30)),
        ("conv1", "conv2d", (64, 28, 28)),
        ("pool0", "maxpool2d", (64, 14, 14)),
        ("conv2", "conv2d", (128, 12, 12)),
        ("conv3", "conv2d", (128, 10, 10)),
        ("pool1", "maxpool2d", (128, 5, 5)),
        ("conv4", "conv2d", (256, 3, 3)),
        ("conv5", "conv2d", (256, 1, 1)),
        ("fc0", "dense", (512, 1, 1)),
        ("fc1", "dense", (512, 1, 1)),
        ("fc2", "dense", (10, 1, 1)),
    ]
    assert layers[0].in_shape == RGB32
    assert all(
        layer.padding == 0 and layer.stride == 1 and layer.kernel == 3 for layer in layers if layer.kind == "conv2d"
    )
    # matrix shapes: a conv's columns are its K*K*C_in patch, a dense layer's its whole flattened input
    assert [(layer.rows, layer.columns, layer.vectors) for layer in layers if layer.compute] == [
        (64, 27, 900),
        (64, 576, 784),
        (128, 576, 144),
        (128, 1152, 100),
        (256, 1152, 9),
        (256, 2304, 1),
        (512, 256, 1),
        (512, 512, 1),
        (10, 512, 1),
    ]
    check_chain(layers, RGB32, 10)


@pytest.mark.parametrize("preset, width", [("bc-cifar10", 128), ("bc-svhn", 64)])
def test_binaryconnect_presets_are_padded(preset, width):
    layers = parse_arch(preset, RGB32, 10)
    w = width
    assert _shapes(layers) == [
        ("conv0", "conv2d", (w, 32, 32)),
        ("conv1", "conv2d", (w, 32, 32)),
        ("pool0", "maxpool2d", (w, 16, 16)),
        ("conv2", "conv2d", (2 * w, 16, 16)),
        ("conv3", "conv2d", (2 * w, 16, 16)),
        ("pool1", "maxpool2d", (2 * w, 8, 8)),
        ("conv4", "conv2d", (4 * w, 8, 8)),
        ("conv5", "conv2d", (4 * w, 8, 8)),
        ("pool2", "maxpool2d", (4 * w, 4, 4)),
        ("fc0", "dense", (1024, 1, 1)),
        ("fc1", "dense", (1024, 1, 1)),
        ("fc2", "dense", (10, 1, 1)),
    ]
    assert all(layer.padding == 1 for layer in layers if layer.kind == "conv2d")
    assert layers[9].in_values == 4 * w * 16


def test_fcnv_and_tcnv_presets():
    assert _shapes(parse_arch("fcnv", MNIST, 10)) == [
        ("conv0", "conv2d", (32, 26, 26)),
        ("conv1", "conv2d", (32, 24, 24)),
        ("pool0", "maxpool2d", (32, 12, 12)),
        ("conv2", "conv2d", (64, 10, 10)),
        ("conv3", "conv2d", (64, 8, 8)),
        ("pool1", "maxpool2d", (64, 4, 4)),
        ("fc0", "dense", (256, 1, 1)),
        ("fc1", "dense", (10, 1, 1)),
    ]
    tcnv = parse_arch("tcnv", DIGITS, 10)
    assert _shapes(tcnv) == [
        ("conv0", "conv2d", (16, 8, 8)),
        ("pool0", "maxpool2d", (16, 4, 4)),
        ("conv1", "conv2d", (32, 4, 4)),
        ("pool1", "maxpool2d", (32, 2, 2)),
        ("fc0", "dense", (64, 1, 1)),
        ("fc1", "dense", (10, 1, 1)),
    ]
    assert tcnv[4].in_values == 128
    assert parse_arch("tcnv", MNIST, 10)[4].in_shape == (32, 7, 7)
    assert describe(tcnv)[0] == "conv0 conv2d 1x8x8 -> 16x8x8"


@pytest.mark.parametrize("preset, hidden", [("tfc", 64), ("sfc", 256), ("lfc", 1024)])
def test_mlp_presets(preset, hidden):
    layers = parse_arch(preset, MNIST, 10)
    assert [(layer.name, layer.kind, layer.in_values, layer.out_features) for layer in layers] == [
        ("fc0", "dense", 784, hidden),
        ("fc1", "dense", hidden, hidden),
        ("fc2", "dense", hidden, hidden),
        ("fc3", "dense", hidden, 10),
    ]
    assert layers[0].in_shape == MNIST


def test_every_preset_parses_for_cifar_sized_rgb():
    for preset in ARCH_PRESETS:
        if preset in ("tcnv", "fcnv"):
            continue
        layers = parse_arch(preset, RGB32, 10)
        assert layers[-1].out_features == 10


def test_mlp_string_keeps_its_meaning():
    # all-numeric: sizes from the input to the classes (the old meaning); the first size is not a layer
    layers = parse_arch("64-37-23-10", DIGITS, 10)
    assert [(layer.name, layer.in_values, layer.out_features) for layer in layers] == [
        ("fc0", 64, 37),
        ("fc1", 37, 23),
        ("fc2", 23, 10),
    ]
    assert layers[0].in_shape == DIGITS
    assert [layer.out_features for layer in parse_arch("64-10", DIGITS, 10)] == [10]


@pytest.mark.parametrize(
    "arch, shapes",
    [
        ("16c3-mp2-32c3-10", [(16, 6, 6), (16, 3, 3), (32, 1, 1), (10, 1, 1)]),
        ("8c3s2p1-10", [(8, 4, 4), (10, 1, 1)]),  # (8 + 2 - 3) // 2 + 1
        ("8c3p1-8c3s2-mp2-10", [(8, 8, 8), (8, 3, 3), (8, 1, 1), (10, 1, 1)]),
        ("4c5s3-10", [(4, 2, 2), (10, 1, 1)]),  # (8 - 5) // 3 + 1: the remainder is dropped
        ("4c3p0-mp4-10", [(4, 6, 6), (4, 1, 1), (10, 1, 1)]),  # a pool drops its remainder too
        ("4c10p1-10", [(4, 1, 1), (10, 1, 1)]),  # the kernel fits the padded map exactly
        ("mp2-10", [(1, 4, 4), (10, 1, 1)]),
        ("4c1-20-10", [(4, 8, 8), (20, 1, 1), (10, 1, 1)]),
    ],
)
def test_grammar_shapes(arch, shapes):
    layers = parse_arch(arch, DIGITS, 10)
    assert [layer.out_shape for layer in layers] == shapes
    check_chain(layers, DIGITS, 10)


def test_grammar_parameters_and_names():
    layers = parse_arch("8c3s2p1-mp2-12c1-mp1-30-20-10", (3, 16, 16), 10)
    assert [layer.name for layer in layers] == ["conv0", "pool0", "conv1", "pool1", "fc0", "fc1", "fc2"]
    conv0 = layers[0]
    assert isinstance(conv0, Conv2d)
    assert (conv0.out_channels, conv0.kernel, conv0.stride, conv0.padding) == (8, 3, 2, 1)
    assert conv0.out_shape == (8, 8, 8) and conv0.columns == 27
    assert isinstance(layers[1], MaxPool2d) and (layers[1].kernel, layers[1].stride) == (2, 2)
    assert isinstance(layers[4], Dense) and layers[4].in_shape == (12, 4, 4) and layers[4].in_values == 192
    assert [layer.to_dict()["kind"] for layer in layers] == [
        "conv2d",
        "maxpool2d",
        "conv2d",
        "maxpool2d",
        "dense",
        "dense",
        "dense",
    ]


@pytest.mark.parametrize(
    "arch, shape, token, why",
    [
        ("16c9-10", DIGITS, "16c9", "does not fit"),  # kernel larger than the map
        ("16c3-mp2-32c5-10", DIGITS, "32c5", "does not fit"),  # ... after a pool
        ("16c3p3-10", DIGITS, "16c3p3", "padding"),  # padding not smaller than the kernel
        ("16c3-mp8-10", DIGITS, "mp8", "leaves nothing"),  # a pool leaving 0x0
        ("4c3s2-4c3s2-mp2-10", DIGITS, "mp2", "leaves nothing"),  # 8 -> 3 -> 1 -> 0
        ("32-16c3-10", DIGITS, "16c3", "dense"),  # conv after dense
        ("16c3-32-mp2-10", DIGITS, "mp2", "dense"),  # pool after dense
        ("16x3-10", DIGITS, "16x3", "not <C>c<K>"),  # bad tokens
        ("16C3-10", DIGITS, "16C3", "not <C>c<K>"),
        ("16c3p1s1-10", DIGITS, "16c3p1s1", "not <C>c<K>"),  # suffix order is s, then p
        ("0c3-10", DIGITS, "0c3", "not <C>c<K>"),
        ("16c0-10", DIGITS, "16c0", "not <C>c<K>"),
        ("16c3s0-10", DIGITS, "16c3s0", "not <C>c<K>"),
        ("mp-10", DIGITS, "mp", "not <C>c<K>"),
        ("mp0-10", DIGITS, "mp0", "not <C>c<K>"),
        ("16c3--10", DIGITS, "", "not <C>c<K>"),
        ("16c3-5", DIGITS, "5", "10 classes"),  # wrong class count
        ("16c3-0", DIGITS, "0", "10 classes"),
        ("16c3-mp2", DIGITS, "mp2", "10 classes"),  # the last token is not the classes
        ("cnv", DIGITS, "128c3", "does not fit"),  # a preset too deep for 8x8 inputs
    ],
)
def test_refusals_name_the_token(arch, shape, token, why):
    with pytest.raises(TrainError) as e:
        parse_arch(arch, shape, 10)
    msg = str(e.value)
    assert f"arch {arch!r}" in msg and f"{token!r}" in msg and why in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("arch", ["784-256-10", "10", "63-10", "64"])
def test_mlp_string_must_start_with_the_input_size(arch):
    with pytest.raises(TrainError) as e:
        parse_arch(arch, DIGITS, 10)
    # names the string and the size it should start with
    assert f"arch {arch!r}" in str(e.value) and "64 inputs" in str(e.value)


@pytest.mark.parametrize("arch", ["", None, 64, ["16c3", "10"]])
def test_refuses_what_is_not_a_string(arch):
    with pytest.raises(TrainError, match="preset"):
        parse_arch(arch, DIGITS, 10)


def test_cli_refuses_impossible_arch_before_creating_anything(tmp_path):
    out = tmp_path / "t"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "train", "--dataset", "digits", "--arch", "16c9-10", "--quiet", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error:") and "'16c9'" in lines[0], r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
