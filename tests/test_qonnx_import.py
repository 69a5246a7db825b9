"""Importing a binary-weight MLP from QONNX (export/qonnx_import.py, `python -m export from-qonnx`): a Brevitas
bnn_pynq-style MLP trained for one epoch on digits becomes an export whose golden model classifies every test image as
qonnx's execute_onnx of the original graph and the Brevitas model itself do, and which `hw gen` + `sim` reproduce bit
for bit; our own QONNX export imports back to the same network; what lutmac cannot represent is refused in one line,
exit 2, nothing written."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import have_simulator

pytest.importorskip("qonnx", reason="qonnx is not installed (make setup installs it)")

from export.golden import GoldenModel  # noqa: E402
from export.manifest import load_test_set  # noqa: E402
from export.qonnx import write_qonnx  # noqa: E402


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)


def _refused(r, *words):
    """Exit 2 with one line on stderr naming ``words``."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stdout[-2000:] + r.stderr[-3000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _digits():
    from train.data import load_dataset

    return load_dataset("digits")


def _graph_classes(path, images, divide=255.0):
    """Classes of ``images`` ``(N, H, W, C)`` by qonnx's execute_onnx of the .onnx file as written (batch changed on a
    copy), the input ``pixels / divide`` in float32, NCHW reshaped to the graph's input."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    model = ModelWrapper(str(path))
    name, out = model.graph.input[0].name, model.graph.output[0].name
    shape = model.get_tensor_shape(name)
    x = np.asarray(images, np.float32).transpose(0, 3, 1, 2).reshape(len(images), *shape[1:]) / np.float32(divide)
    run = model.transform(ChangeBatchSize(len(x))).transform(InferShapes())
    return np.argmax(execute_onnx(run, {name: x})[out], axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Brevitas: a tiny bnn_pynq-style MLP, one epoch on digits


def _brevitas_model(abits, weight_bits=1):
    """64-32-32-10: an 8-bit unsigned input quantiser on the 1/255 grid (every pixel kept), binary-weight
    QuantLinear layers, batch norm, and A-bit activations: QuantReLU (unsigned) for A=2, bnn_pynq's signed narrow
    QuantIdentity on [-1, 1] for A=4; batch norm scores at the end (bnn_pynq's TensorNorm)."""
    try:
        import onnxoptimizer  # noqa: F401  (brevitas' export_qonnx needs it)
        import torch
        from brevitas.core.scaling import ScalingImplType
        from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
        from brevitas.quant import (
            Int8ActPerTensorFloat,
            Int8WeightPerTensorFloat,
            SignedBinaryWeightPerTensorConst,
            Uint8ActPerTensorFloat,
        )
    except ImportError as e:
        pytest.skip(f"brevitas is not importable ({e}); pip install -e '.[test]' installs it")

    def linear(n_in, n_out, bits=1):
        if bits == 1:
            return QuantLinear(n_in, n_out, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
        return QuantLinear(n_in, n_out, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits)

    def act():
        if abits == 2:
            return QuantReLU(bit_width=abits)
        return QuantIdentity(
            act_quant=Int8ActPerTensorFloat,
            bit_width=abits,
            narrow_range=True,
            scaling_impl_type=ScalingImplType.CONST,
            min_val=-1.0,
            max_val=1.0,
        )

    pixels = QuantIdentity(
        act_quant=Uint8ActPerTensorFloat, scaling_impl_type=ScalingImplType.CONST, min_val=0.0, max_val=1.0
    )
    return torch.nn.Sequential(
        pixels,
        linear(64, 32, weight_bits),
        torch.nn.BatchNorm1d(32),
        act(),
        linear(32, 32),
        torch.nn.BatchNorm1d(32),
        act(),
        linear(32, 10),
        torch.nn.BatchNorm1d(10),
    )


def _train_brevitas(path, abits, weight_bits=1):
    """Train for one epoch on digits (x = pixels / 255), make rows 0 and 3 of the first batch norm fall with the
    accumulator (gamma negated: orientation -1), export with export_qonnx; returns the Brevitas model's test
    classes."""
    net = _brevitas_model(abits, weight_bits)
    import torch
    from brevitas.export import export_qonnx

    splits = _digits()
    x = torch.tensor(splits.train.images.reshape(len(splits.train.images), -1), dtype=torch.float32) / 255
    y = torch.tensor(splits.train.labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: two threads on two shared cores only spin against each other
    try:
        torch.manual_seed(0)
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            net[2].weight[[0, 3]] *= -1
            xt = torch.tensor(splits.test.images.reshape(len(splits.test.images), -1), dtype=torch.float32) / 255
            classes = net(xt).argmax(1).numpy()
        export_qonnx(net, torch.zeros(1, 64), str(path))
    finally:
        torch.set_num_threads(threads)
    return classes


@pytest.fixture(scope="module", params=[2, 4], ids=["A2-QuantReLU", "A4-QuantIdentity"])
def brevitas_import(request, tmp_path_factory):
    """``(onnx path, Brevitas classes, export dir, CLI result)`` of a trained, exported and imported model."""
    root = tmp_path_factory.mktemp(f"brevitas-a{request.param}")
    torch_classes = _train_brevitas(root / "model.onnx", request.param)
    r = _cli("export", "from-qonnx", "--model", root / "model.onnx", "-o", root / "export", "--dataset", "digits")
    return root / "model.onnx", torch_classes, root / "export", r, request.param


def test_brevitas_golden_matches_graph_and_torch(brevitas_import):
    onnx_path, torch_classes, export, r, abits = brevitas_import
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((export / "manifest.json").read_text())
    g = GoldenModel(export)
    images, labels = load_test_set(export, g.manifest)
    golden = g.classify(images)
    graph = _graph_classes(onnx_path, images)
    n = len(labels)
    assert n == 360 and m["source"]["class_matches"] == n and f"same class on {n}/{n}" in r.stdout
    assert np.array_equal(golden, graph)  # qonnx execute_onnx of the file Brevitas wrote
    assert np.array_equal(golden, torch_classes)  # the Brevitas model itself
    assert m["float_test_accuracy"] == m["golden_test_accuracy"] == pytest.approx(float((graph == labels).mean()))
    assert m["golden_test_accuracy"] > 0.5  # one epoch learns something: the import is no constant classifier
    hidden = m["layers"][:-1]
    assert [e["abits"] for e in hidden] == [abits, abits] and m["arch"] == "64-32-32-10"
    assert hidden[0]["activation"]["negative_orientation"] >= 2  # the negated gammas: thresholds on -acc
    assert m["source"]["model"] == str(onnx_path) and len(m["source"]["model_sha256"]) == 64
    c = _cli("export", "check", export)
    assert c.returncode == 0, c.stderr


def test_brevitas_import_gen_sim_bit_exact(brevitas_import, tmp_path):
    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed (make setup installs it)")
    _, _, export, r, _ = brevitas_import
    assert r.returncode == 0, r.stderr[-3000:]
    g = _cli("hw", "gen", "--export", export, "-o", tmp_path / "rtl")
    assert g.returncode == 0, g.stderr[-3000:]
    s = _cli(
        "sim",
        "--export",
        export,
        "--rtl",
        tmp_path / "rtl",
        "--sim",
        "icarus",
        "--n",
        25,
        "--quiet",
        "-o",
        tmp_path / "s",
    )
    assert s.returncode == 0, s.stdout[-2000:] + s.stderr[-3000:]
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["images"] == 25 and res["mismatches"] == 0 and res["passed"]


def test_brevitas_two_bit_weights_refused(tmp_path):
    _train_brevitas(tmp_path / "w2.onnx", 2, weight_bits=2)
    r = _cli("export", "from-qonnx", "--model", tmp_path / "w2.onnx", "-o", tmp_path / "export")
    _refused(r, "w2.onnx", "2 bits", "binary weights")
    assert not (tmp_path / "export").exists()


# ---------------------------------------------------------------------------------------------------------------
# our own QONNX export, imported back (no Brevitas needed)


def test_round_trip_of_our_qonnx_export(tiny_export, tmp_path):
    """`python -m export qonnx` then `from-qonnx --input pixels`: the same weights, thresholds and classes (scores
    up to the common factor fold_scores picks); rows the graph negated come back negated with orientation +1."""
    write_qonnx(tiny_export, tmp_path / "m.onnx")
    r = _cli("export", "from-qonnx", "--model", tmp_path / "m.onnx", "-o", tmp_path / "back", "--input", "pixels")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = GoldenModel(tiny_export), GoldenModel(tmp_path / "back")
    images, _ = load_test_set(tiny_export, a.manifest)
    ta, tb = a.run(images), b.run(images)
    assert np.array_equal(ta.classes, tb.classes)
    assert all(np.array_equal(x, y) for x, y in zip(ta.activations, tb.activations))
    for pa, pb in zip(a.layers, b.layers):
        s = pa.orientation if pa.orientation is not None else np.ones(pa.rows, np.int8)
        assert np.array_equal(pb.weights, pa.weights * s[:, None])
        if pa.thresholds is not None:
            assert np.array_equal(pb.thresholds, pa.thresholds) and (pb.orientation == 1).all()
        else:
            factor = pb.scale[0] // pa.scale[0]
            assert np.array_equal(pb.scale, pa.scale * factor)
            assert np.array_equal(pb.offset - pb.offset[0], (pa.offset - pa.offset[0]) * factor)
    # the same graph read as p / 255: its input quantiser (scale 1) rounds pixels to 0 or 1, which lutmac cannot sum
    r = _cli("export", "from-qonnx", "--model", tmp_path / "m.onnx", "-o", tmp_path / "unit")
    _refused(r, "not affine in the pixel value")
    assert not (tmp_path / "unit").exists()


# ---------------------------------------------------------------------------------------------------------------
# refusals on small hand-built graphs


def _write_graph(path, *, conv=False, weight_bits=1, quantiser=True, rgb=None):
    """A QONNX graph of 64 raw pixels (1, 64): [Conv 4c3 + Flatten] or MatMul 64x16 with BipolarQuant (or k-bit
    Quant) weights, a MultiThreshold (or a bare Relu), MatMul 16x10 with BipolarQuant weights. ``rgb``: a 4x4x3
    image instead, NCHW (1, 3, 4, 4), flattened in C, H, W order (``"chw"``) or after a Transpose to NHWC
    (``"hwc"``)."""
    from onnx import TensorProto, helper
    from qonnx.util.basic import qonnx_make_model

    rng = np.random.default_rng(0)
    inits, nodes = {}, []
    dom = "qonnx.custom_op.general"

    def init(name, v):
        inits[name] = helper.make_tensor(name, TensorProto.FLOAT, np.shape(v), np.asarray(v, np.float32).ravel())
        return name

    x, cols = "x", 64
    if rgb == "hwc":
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]))
    if rgb:
        nodes.append(helper.make_node("Flatten", ["xt" if rgb == "hwc" else "x"], ["xf"], axis=1))
        x, cols = "xf", 48
    if conv:
        nodes.append(
            helper.make_node(
                "BipolarQuant", [init("wc", rng.normal(size=(4, 1, 3, 3))), init("sc", 1.0)], ["wcq"], domain=dom
            )
        )
        nodes.append(helper.make_node("Conv", ["x", "wcq"], ["c"], kernel_shape=[3, 3]))
        nodes.append(helper.make_node("Flatten", ["c"], ["cf"], axis=1))
        x, cols = "cf", 4 * 6 * 6
    w0 = init("w0", rng.normal(size=(cols, 16)))
    if weight_bits == 1:
        nodes.append(helper.make_node("BipolarQuant", [w0, init("s0", 0.5)], ["w0q"], domain=dom))
    else:
        q = [w0, init("s0", 0.5), init("z0", 0.0), init("b0", float(weight_bits))]
        nodes.append(helper.make_node("Quant", q, ["w0q"], domain=dom, signed=1, narrow=0, rounding_mode="ROUND"))
    nodes.append(helper.make_node("MatMul", [x, "w0q"], ["a0"]))
    if quantiser:
        t = np.sort(rng.normal(scale=50, size=(16, 3)), axis=1)
        nodes.append(helper.make_node("MultiThreshold", ["a0", init("t0", t)], ["h0"], domain=dom, out_dtype="UINT2"))
    else:
        nodes.append(helper.make_node("Relu", ["a0"], ["h0"]))
    nodes.append(
        helper.make_node("BipolarQuant", [init("w1", rng.normal(size=(16, 10))), init("s1", 1.0)], ["w1q"], domain=dom)
    )
    nodes.append(helper.make_node("MatMul", ["h0", "w1q"], ["y"]))
    shape = [1, 1, 8, 8] if conv else [1, 3, 4, 4] if rgb else [1, 64]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializer=list(inits.values()),
    )
    path.write_bytes(qonnx_make_model(graph, producer_name="test").SerializeToString())
    return path


def test_hand_built_graph_imports(tmp_path):
    """The refusal graphs' valid twin imports (so each refusal below is about the one thing changed)."""
    r = _cli(
        "export", "from-qonnx", "--model", _write_graph(tmp_path / "ok.onnx"), "-o", tmp_path / "e", "--input", "pixels"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "same class on 360/360" in r.stdout
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert m["layers"][0]["abits"] == 2 and m["layers"][0]["activation"]["source_quantiser"] == "MultiThreshold_0"


@pytest.mark.parametrize("order", ["chw", "hwc"])
def test_colour_columns_follow_the_graphs_flattening(tmp_path, order):
    """A colour image flattened C, H, W (torch's order) or H, W, C: fc0's columns land in lutmac's H, W, C order, so
    the golden model classifies random 4x4x3 images as the graph does (importer's Python API, any test set)."""
    from export.qonnx_import import import_qonnx

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(300, 4, 4, 3), dtype=np.uint8)
    path = _write_graph(tmp_path / "rgb.onnx", rgb=order)
    m = import_qonnx(
        path, tmp_path / "e", dataset="random", images=images, labels=rng.integers(0, 10, 300), input_mode="pixels"
    )
    golden = GoldenModel(tmp_path / "e").classify(images)
    assert m["source"]["class_matches"] == 300 and m["input"]["shape"] == [3, 4, 4]
    assert np.array_equal(golden, _graph_classes(path, images, divide=1))
    assert len(set(golden.tolist())) > 3  # the classes depend on the pixels: a wrong column order would show


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(conv=True), ["Conv", "convolution"]),
        (dict(weight_bits=2), ["MatMul_0", "quantised to 2 bits by Quant_0", "binary weights"]),
        (dict(quantiser=False), ["MatMul_0", "no activation quantiser"]),
    ],
    ids=["conv", "2-bit-weights", "float-activation"],
)
def test_unrepresentable_graphs_refused(tmp_path, kw, words):
    path = _write_graph(tmp_path / "bad.onnx", **kw)
    r = _cli("export", "from-qonnx", "--model", path, "-o", tmp_path / "e", "--input", "pixels")
    _refused(r, "bad.onnx", *words)
    assert not (tmp_path / "e").exists()


def test_missing_and_unreadable_files_refused(tmp_path):
    r = _cli("export", "from-qonnx", "--model", tmp_path / "none.onnx", "-o", tmp_path / "e")
    _refused(r, "none.onnx", "no such file")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \xff\x00")
    r = _cli("export", "from-qonnx", "--model", tmp_path / "junk.onnx", "-o", tmp_path / "e")
    _refused(r, "junk.onnx", "not a readable ONNX")
    assert not (tmp_path / "e").exists()


def test_output_folder_rules(tmp_path):
    """The output is refused before any work where it is a file or a folder holding anything but an earlier export
    (untouched); an earlier export is replaced."""
    model = _write_graph(tmp_path / "ok.onnx")
    args = ("export", "from-qonnx", "--model", model, "--input", "pixels", "-o")
    (tmp_path / "file").write_text("mine")
    _refused(_cli(*args, tmp_path / "file"), "is a file")
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    _refused(_cli(*args, tmp_path / "user"), "refusing to replace")
    assert [p.name for p in (tmp_path / "user").iterdir()] == ["notes.txt"]
    assert _cli(*args, tmp_path / "e").returncode == 0
    before = (tmp_path / "e" / "manifest.json").read_text()
    r = _cli(*args, tmp_path / "e")  # an earlier export: replaced as a whole
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "e" / "manifest.json").read_text() == before
