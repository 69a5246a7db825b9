"""An export directory as a QONNX graph (the ONNX dialect of FINN, hls4ml and Brevitas), exact to the golden model.

Built from the export's files alone (numpy, ``onnx`` and ``qonnx``; never torch or the checkpoint). The graph computes
what ``docs/weight-format.md`` defines, integer for integer, on float tensors that carry integers:

- **Input** ``global_in``: float32 ``(1, C, H, W)`` (NCHW) of integer pixel values 0..255, through a ``Quant`` node
  (scale 1, zero point 0, 8 bits, unsigned, not narrow: the identity on valid pixels, and the 8-bit annotation FINN
  reads). ``(N, H, W, C)`` uint8 test images become the input by ``x.transpose(0, 3, 1, 2).astype(np.float32)``.
- **Weights**: float ±1 initializers through ``BipolarQuant`` (scale 1). A conv layer's weight columns, stored in
  ``(ky, kx, c)`` order, become ONNX's ``(out, in, kH, kW)``; a dense layer's ``(rows, columns)`` matrix becomes the
  ``(columns, rows)`` right operand of ``MatMul``.
- **conv2d**: ``Conv`` (NCHW, the layer's kernel, stride and symmetric zero padding, no bias).
- **dense**: ``MatMul``. A map entering a dense layer is flattened in the export's ``H, W, C`` order: ``Transpose``
  to NHWC, then ``Flatten`` (the Transpose is left out where it changes nothing: one channel or a 1x1 map).
- **hidden activation**: ``MultiThreshold`` (domain ``qonnx.custom_op.general``), which computes
  ``#{k : x >= T[c, k]}`` per channel — the export's rule with the export's thresholds, unchanged. A row with
  orientation ``s = -1`` has its weights negated in the graph instead (``Σ(−w)·x = −acc`` exactly, for a conv row at
  every pixel, zero padding included), as the hardware folds ``s`` into the adder tree's sign flip; the model's
  ``lutmac_negated_rows`` metadata lists those rows.
- **maxpool2d**: ``MaxPool`` (kernel = stride = K, no padding, floor).
- **output layer** ``global_out``: ``score = m·acc + b`` as a ``Mul`` by the integer scale and an ``Add`` of the
  integer offset. float32 when the worst case ``max_c |m_c|·acc_max + |b_c|`` stays below 2^24; otherwise the
  accumulator is ``Cast`` to float64 first (scores stay below 2^46, exact in float64). The class is the first
  argmax of the scores (lowest index on ties), as in the golden model.

Every accumulator is an integer below 2^24 in magnitude — so float32 sums are exact in any order — or the export is
refused: :func:`build_model` checks each compute layer's worst case (``acc_min``/``acc_max``).
"""

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from . import ExportError
from .golden import GoldenModel
from .manifest import load_test_set

__all__ = [
    "QONNXUnavailable",
    "build_model",
    "qonnx_bytes",
    "load_model",
    "run_model",
    "images_to_input",
    "check_model",
    "F32_EXACT",
]

F32_EXACT = 1 << 24  # integers below this are exact in float32, and so is every sum of them that stays below
QONNX_DOMAIN = "qonnx.custom_op.general"
INPUT, OUTPUT = "global_in", "global_out"
_THRESHOLD_BUDGET = 1 << 28  # MultiThreshold holds batch x values x levels comparisons at once: batch bound


class QONNXUnavailable(ExportError):
    """The ``qonnx`` (or ``onnx``) package is not installed."""


def _require():
    try:
        import onnx  # noqa: F401
        import qonnx.core.modelwrapper  # noqa: F401
    except ImportError as e:
        raise QONNXUnavailable(f"the qonnx package is not installed ({e}); `make setup` installs it") from None


def _flat_hwc_needs_transpose(shape):
    c, h, w = shape
    return c > 1 and h * w > 1


def build_model(directory):
    """The QONNX :class:`~qonnx.core.modelwrapper.ModelWrapper` of the export at ``directory`` (batch 1, shapes and
    QONNX data types inferred). :class:`~export.ExportError` for an invalid export, :class:`QONNXUnavailable`
    without qonnx."""
    _require()
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    golden = GoldenModel(directory)  # reads and verifies every file, as every reader does
    m, layers = golden.manifest, golden.layers
    c, h, w = m["input"]["shape"]
    nodes, inits, negated, annotations = [], {}, {}, {}

    def init(name, value):
        inits[name] = np.asarray(value)
        return name

    def node(op, inputs, output, domain="", **attrs):
        nodes.append(
            helper.make_node(op, inputs, [output], name=output.removesuffix("_out") + "_" + op, domain=domain, **attrs)
        )
        return output

    x = node(
        "Quant",
        [
            INPUT,
            init("pixel_scale", np.float32(1)),
            init("pixel_zeropt", np.float32(0)),
            init("pixel_bitwidth", np.float32(8)),
        ],
        "pixels",
        domain=QONNX_DOMAIN,
        signed=0,
        narrow=0,
        rounding_mode="ROUND",
    )
    shape = (c, h, w)
    for p in layers:
        s, name = p.spec, p.name
        if s.compute and max(-p.acc_min, p.acc_max) >= F32_EXACT:
            raise ExportError(
                f"{directory}: layer {name!r}: the worst-case accumulator ±{p.acc_max} reaches 2^24, "
                f"beyond float32's exact integers: QONNX's float tensors cannot hold it exactly"
            )
        if s.kind == "maxpool2d":
            x = node(
                "MaxPool",
                [x],
                f"{name}_out",
                kernel_shape=[s.kernel] * 2,
                strides=[s.stride] * 2,
                pads=[0] * 4,
                ceil_mode=0,
            )
            shape = s.out_shape
            continue
        weights = p.weights.astype(np.float32)
        if p.orientation is not None and (p.orientation < 0).any():
            neg = p.orientation < 0
            weights[neg] = -weights[neg]
            negated[name] = np.flatnonzero(neg).tolist()
        if s.kind == "conv2d":
            k = s.kernel
            wt = weights.reshape(s.rows, k, k, shape[0]).transpose(0, 3, 1, 2)  # (ky, kx, c) -> (out, in, kH, kW)
            wq = node(
                "BipolarQuant",
                [init(f"{name}_weights", np.ascontiguousarray(wt)), init(f"{name}_weight_scale", np.float32(1))],
                f"{name}_weights_q",
                domain=QONNX_DOMAIN,
            )
            acc = node(
                "Conv",
                [x, wq],
                f"{name}_acc",
                kernel_shape=[k, k],
                strides=[s.stride] * 2,
                pads=[s.padding] * 4,
                dilations=[1, 1],
                group=1,
            )
            layout = "NCHW"
        else:
            if len(shape) == 3:  # a map (or the image): flatten in H, W, C order
                if _flat_hwc_needs_transpose(shape):
                    x = node("Transpose", [x], f"{name}_in_nhwc", perm=[0, 2, 3, 1])
                x = node("Flatten", [x], f"{name}_in_flat", axis=1)
            wq = node(
                "BipolarQuant",
                [init(f"{name}_weights", np.ascontiguousarray(weights.T)), init(f"{name}_weight_scale", np.float32(1))],
                f"{name}_weights_q",
                domain=QONNX_DOMAIN,
            )
            acc = node("MatMul", [x, wq], f"{name}_acc")
            layout = "NC"
        annotations[acc] = f"INT{p.acc_bits}"
        if p.is_output:
            bound = int((np.abs(p.scale) * max(-p.acc_min, p.acc_max) + np.abs(p.offset)).max())
            dtype = np.float32 if bound < F32_EXACT else np.float64
            if dtype is np.float64:
                acc = node("Cast", [acc], f"{name}_acc_f64", to=TensorProto.DOUBLE)
            prod = node("Mul", [acc, init(f"{name}_scale", p.scale.astype(dtype))], f"{name}_scaled")
            node("Add", [prod, init(f"{name}_offset", p.offset.astype(dtype))], OUTPUT)
            annotations[OUTPUT] = f"INT{p.score_bits}"
            out_type = TensorProto.FLOAT if dtype is np.float32 else TensorProto.DOUBLE
        else:
            x = node(
                "MultiThreshold",
                [acc, init(f"{name}_thresholds", p.thresholds.astype(np.float32))],
                f"{name}_out",
                domain=QONNX_DOMAIN,
                out_dtype=f"UINT{p.abits}",
                data_layout=layout,
            )
            annotations[x] = f"UINT{p.abits}"
        shape = s.out_shape if s.kind == "conv2d" else (s.rows,)

    classes = m["classes"]
    graph = helper.make_graph(
        nodes,
        f"lutmac_{m['dataset']}_{m.get('arch', 'net')}".replace("-", "_").replace("/", "_"),
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(OUTPUT, out_type, [1, classes])],
        initializer=[_tensor(name, v) for name, v in inits.items()],
    )
    graph.doc_string = (
        "lutmac export as QONNX: input float32 NCHW integer pixels 0..255; output integer scores "
        "(class = first argmax); exact to the export's golden model"
    )
    model = ModelWrapper(qonnx_make_model(graph, producer_name="lutmac"))
    model.set_tensor_datatype(INPUT, DataType["UINT8"])
    for p in layers:
        if p.spec.compute:
            model.set_tensor_datatype(f"{p.name}_weights_q", DataType["BIPOLAR"])
    model = model.transform(InferShapes())
    model = model.transform(InferDataTypes())
    for tensor, dt in annotations.items():  # the export's exact widths, where InferDataTypes says INT32
        model.set_tensor_datatype(tensor, DataType[dt])
    for key, value in (
        ("lutmac_dataset", m["dataset"]),
        ("lutmac_arch", str(m.get("arch"))),
        ("lutmac_input", f"float32 NCHW (1, {c}, {h}, {w}), integer pixels 0..255"),
        (
            "lutmac_output",
            f"{'float32' if out_type == TensorProto.FLOAT else 'float64'} integer "
            f"scores (1, {classes}), class = first argmax",
        ),
        ("lutmac_negated_rows", json.dumps(negated)),
    ):
        model.set_metadata_prop(key, value)
    return model


def _tensor(name, value):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


def qonnx_bytes(directory):
    """The serialised ``.onnx`` of :func:`build_model`."""
    return build_model(directory).model.SerializeToString()


def load_model(data):
    """A :class:`~qonnx.core.modelwrapper.ModelWrapper` of ``.onnx`` bytes or a path."""
    _require()
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(data if isinstance(data, bytes) else str(data))


def images_to_input(images, shape):
    """``(N, H, W, C)`` (or ``(N, H, W)``) uint8 pixels as the graph's float32 NCHW input."""
    c, h, w = shape
    return np.asarray(images).reshape(len(images), h, w, c).transpose(0, 3, 1, 2).astype(np.float32)


def _batch_size(model, n):
    """Images per execution: MultiThreshold compares every value with every threshold at once."""
    per_image = 1
    for nd in model.graph.node:
        if nd.op_type == "MultiThreshold":
            values = int(np.prod(model.get_tensor_shape(nd.input[0])[1:]))
            per_image = max(per_image, values * model.get_initializer(nd.input[1]).shape[1])
    return max(1, min(n, 1024, _THRESHOLD_BUDGET // per_image))


@contextlib.contextmanager
def _sanitising(on):
    """qonnx's ``SANITIZE_QUANT_TENSORS`` switch for the block (it reads the environment at every node)."""
    key, old = "SANITIZE_QUANT_TENSORS", os.environ.get("SANITIZE_QUANT_TENSORS")
    os.environ[key] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def run_model(model, images, shape, batch=None, sanitize=False):
    """Scores ``(N, classes)`` of ``images`` (``(N, H, W, C)`` uint8) by :func:`qonnx.core.onnx_exec.execute_onnx`,
    in batches (the graph's batch dimension is changed on a copy; a last short batch is padded with zero images).

    qonnx's sanitising is off unless ``sanitize``: it rounds every tensor annotated as integer to the nearest
    integer after each node, which would hide an inexact graph (and takes a third of the time, in a Python ``max``
    over every value). Without it the scores are what the float arithmetic gives, so exactness is tested."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    x = images_to_input(images, shape)
    batch = batch or _batch_size(model, len(x))
    run = model.transform(ChangeBatchSize(batch)).transform(InferShapes())
    out = []
    with _sanitising(sanitize):
        for i in range(0, len(x), batch):
            chunk = x[i : i + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out.append(execute_onnx(run, {INPUT: chunk})[OUTPUT][: min(batch, len(x) - i)])
    return np.concatenate(out)


def check_model(model, directory, count=None, batch=None):
    """Run the first ``count`` (default all) test images of the export through ``model`` and the golden model.

    Returns ``{"images", "class_matches", "score_matches"}``; a score matches when every class's graph score equals
    the golden integer exactly."""
    g = GoldenModel(directory)
    images, _ = load_test_set(directory, g.manifest)
    images = images[:count] if count else images
    scores = run_model(model, images, tuple(g.manifest["input"]["shape"]), batch=batch)
    golden = np.concatenate([g.run(images[i : i + g.batch]).scores for i in range(0, len(images), g.batch)])
    exact = (scores.astype(np.float64) == golden.astype(np.float64)).all(axis=1)
    classes = np.argmax(scores, axis=1) == np.argmax(golden, axis=1)
    return {"images": len(images), "class_matches": int(classes.sum()), "score_matches": int(exact.sum())}


def write_qonnx(directory, out):
    """Build the graph of ``directory`` and write it to ``out`` atomically; returns the model."""
    from common.files import atomic_write_bytes

    model = build_model(directory)
    atomic_write_bytes(Path(out), model.model.SerializeToString())
    return model
