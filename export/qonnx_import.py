"""A binary-weight MLP in QONNX (Brevitas' ``export_qonnx``, FINN's or our own ``python -m export qonnx``) as an
export directory: packed ±1 weights, integer thresholds, score constants, manifest and test set, which ``gen`` and
``sim`` take unchanged (``python -m export from-qonnx``). numpy, ``onnx`` and ``qonnx`` only: never torch or Brevitas.

The graph is cleaned with qonnx's own ``cleanup_model`` (InferShapes, FoldConstants that keeps the quantisers,
GiveUniqueNodeNames, GiveReadableTensorNames), its constant weight subgraphs (``BipolarQuant``/``Quant`` of an
initializer) are folded, and it must then be one chain from the input to the output:

- **input**: a pixel ``p`` (0..255) enters the graph as ``x = p / 255`` in float32 (``input="unit"``, what
  torchvision's ``ToTensor`` feeds a Brevitas model) or as ``x = p`` (``input="pixels"``, our QONNX graphs), NCHW,
  reshaped to the graph input's shape. The nodes before the first layer (``Quant``, ``Mul``/``Add``/``Sub``/``Div`` by
  constants, ``Flatten``/``Reshape``/``Transpose``) must map a pixel to ``α·p + β_j`` (one ``α`` for every column
  ``j``; checked on all 256 values), so that the first layer's float product is ``α·acc + Σ_j W_rj β_j`` of lutmac's
  integer ``acc = Σ_j w_rj p_j``. An input quantiser with scale 1/255 and 8 unsigned bits is such a map; one that
  rounds pixels to fewer levels (Brevitas' ``bnn_pynq`` ``2x - 1`` then 8 signed bits) is not, and is refused.
- **layers**: ``MatMul`` or ``Gemm`` (``transA`` 0; ``alpha``, ``beta``, a bias) whose constant weights are ``±s_r``
  per output row ``r`` (``s_r > 0``: a ``BipolarQuant``, a 1-bit signed ``Quant``, any per-tensor or per-channel
  scale); anything else is refused naming the node. The row scale folds into the float function that follows:
  the product for integer ``acc`` is ``y_r = s_r·(α·acc + Σ_j w_rj β_j) + bias_r`` (a negative ``α`` flips the
  stored signs).
- **hidden activation**: the nodes up to the next layer (``BatchNormalization``, ``Mul``/``Add``/``Sub``/``Div`` by a
  per-row or scalar constant, ``Relu``, ``Clip``, monotone functions, and one quantiser: ``Quant``, ``BipolarQuant``
  or ``MultiThreshold``, followed by at most scalar scales and shifts) end on a grid ``v = σ·u + c`` with integer
  levels ``u`` in ``0..L``; the next layer's input descriptor is ``α = σ``, ``β_j = c``, and its ``in_bits`` is
  ``abits = bit length of L``. The level function is **evaluated by the graph itself** (qonnx ``execute_onnx`` of
  just those nodes, the graph's float32 semantics) on ``float32(y_r(acc))`` for every integer ``acc`` of the
  worst-case range ``[acc_min, acc_max]``, every row: it must be monotone in ``acc`` (orientation ``-1`` where it
  falls), and its thresholds are ``T_k = acc_min + #{acc : u(s·acc) < k}`` — the table ``docs/weight-format.md``
  defines, exact on the whole range, not only on the test images.
- **output layer**: the nodes after the last layer must be affine per class (``BatchNormalization``,
  ``Mul``/``Add``/``Sub``/``Div``); composed in float64 into ``score_r = K_r·acc + D_r`` and rounded to lutmac's
  integer ``m·acc + b`` by :func:`export.folding.fold_scores` (12-bit ``m``), as the exporter does.

Where the golden model and the graph can still disagree: the graph computes its products in float32 (rounding each
partial sum unless every weight scale and input step is a power of two) and rounds the level values ``σ·u + c``;
the golden model uses the exact real value of the product. A level or class differs only when a value lies within
those few ulps of a quantiser's rounding boundary, or two classes' scores within the output rounding of
``fold_scores`` (``2^-shift`` relative): :func:`import_qonnx` counts the test images whose class differs.
"""

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ExportError
from .folding import accumulator_bounds, apply_scores, fold_scores, signed_bits
from .golden import GoldenModel
from .manifest import INPUT_BITS, MANIFEST, MANIFEST_VERSION, scores_sha256
from .packing import encode_thresholds, encode_weights
from .qonnx import INPUT, OUTPUT, _require, _sanitising, load_model, run_model

__all__ = ["INPUT_MODES", "import_qonnx", "read_qonnx", "ImportedLayer"]

#: what the graph's input holds for a pixel ``p``
INPUT_MODES = {"unit": "x = p / 255 (float32, torchvision's ToTensor)", "pixels": "x = p (0..255)"}
_COMPUTE = {"MatMul", "Gemm"}
_SHAPE = {"Flatten", "Reshape", "Transpose", "Identity"}
_AFFINE = {"Mul", "Add", "Sub", "Div", "BatchNormalization"}
_MONOTONE = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid"}
_QUANTISERS = {"Quant", "BipolarQuant", "MultiThreshold"}
_CONV = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Im2Col"}
_EVAL_VALUES = 1 << 21  # accumulator values x rows per execution of a hidden layer's activation nodes


@dataclass
class ImportedLayer:
    """One dense layer: ``signs`` ``(rows, columns)`` ±1 in lutmac's column order, ``in_bits``, and either
    ``orientation``/``thresholds``/``abits`` (hidden) or ``scale``/``offset``/``shift`` (output)."""

    node: str
    signs: np.ndarray
    in_bits: int
    abits: int | None = None
    orientation: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    shift: int | None = None
    quantiser: str | None = None


@dataclass
class _Dense:
    node: object
    weights: np.ndarray  # (rows, columns) float64, Gemm's alpha and transB applied
    bias: np.ndarray  # (rows,) float64: Gemm's beta * C, else zeros
    chain: list = field(default_factory=list)  # the nodes after it, up to the next layer or the graph output


def _fail(where, node, msg):
    raise ExportError(f"{where}: {f'node {node.name} ({node.op_type}): ' if node is not None else ''}{msg}")


def _attr(node, name, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _load(path):
    """The cleaned, constant-folded :class:`ModelWrapper` of ``path`` and the file's SHA-256."""
    _require()
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.util.cleanup import cleanup_model

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        model = cleanup_model(load_model(data))
        raw = model  # with its weight quantisers, for naming them in refusals (transform works on a copy)
        model = model.transform(FoldConstants(exclude_op_types=[]))
    except Exception as e:  # protobuf's DecodeError, onnx's and qonnx's errors: a file that is no QONNX graph
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(f"{path}: not a readable ONNX/QONNX model ({type(e).__name__}: {first})") from None
    return model, raw, hashlib.sha256(data).hexdigest()


def _const(model, tensor):
    return None if not tensor else model.get_initializer(tensor)


def _row_constant(model, node, tensor, rows, where):
    """A constant operand as ``(rows,)`` float64: a scalar or one value per row (broadcast along the features)."""
    c = np.asarray(_const(model, tensor), np.float64)
    try:
        if c.ndim <= 2:
            return np.broadcast_to(c, (1, rows)).reshape(rows).copy()
    except ValueError:
        pass
    _fail(where, node, f"constant {tensor} of shape {list(c.shape)} is not one value per feature of {rows}")


def _weights(model, raw, node, where):
    """``_Dense`` of a MatMul/Gemm node: its constant weights must be ``±s_r`` per row."""
    w = _const(model, node.input[1])
    if w is None:
        _fail(where, node, "its weights are not constant")
    w = np.asarray(w, np.float64)
    bias = None
    if w.ndim != 2:
        _fail(where, node, f"weights of shape {list(w.shape)}: lutmac imports dense layers (2-D weights)")
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0):
            _fail(where, node, "transA=1 is not supported")
        w = (w if _attr(node, "transB", 0) else w.T) * _attr(node, "alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            bias = _row_constant(model, node, node.input[2], w.shape[0], where) * _attr(node, "beta", 1.0)
    else:
        w = w.T
    mags = np.abs(w)
    s = mags.max(axis=1)
    bad = np.flatnonzero((s <= 0) | (mags != s[:, None]).any(axis=1))
    if len(bad):
        q = raw.find_producer(node.input[1])
        how = ""
        if q is not None and q.op_type == "Quant":
            bits = raw.get_initializer(q.input[3])
            how = f" (quantised to {float(np.asarray(bits).ravel()[0]):g} bits by {q.name})" if bits is not None else ""
        values = np.unique(w[bad[0]]) + 0.0  # no -0
        _fail(
            where,
            node,
            f"row {int(bad[0])}'s weights take {len(values)} values{how}, {np.array2string(values[:4], precision=4)}"
            f"{' ...' if len(values) > 4 else ''}: lutmac needs binary weights, ±s per row (BipolarQuant or a 1-bit "
            f"signed Quant)",
        )
    return _Dense(node=node, weights=w, bias=np.zeros(w.shape[0]) if bias is None else bias)


def _walk(model, raw, where):
    """``(nodes before the first layer, [_Dense])`` of the chain from the graph's input to its output."""
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        _fail(where, None, f"{len(g.input)} inputs and {len(g.output)} outputs; lutmac imports one image to one score")
    users = {}
    for n in g.node:
        for t in n.input:
            users.setdefault(t, []).append(n)
    tensor, end = g.input[0].name, g.output[0].name
    pre, layers = [], []
    chain = pre
    while tensor != end:
        nodes = users.get(tensor, [])
        if not nodes:
            _fail(where, None, f"tensor {tensor} leads nowhere (no node takes it, and it is not the output)")
        if len(nodes) > 1:
            _fail(
                where,
                None,
                f"tensor {tensor} feeds {', '.join(n.name for n in nodes)}: lutmac imports a chain, no branches",
            )
        n = nodes[0]
        variable = [t for t in n.input if t and _const(model, t) is None]
        if n.op_type in _CONV:
            _fail(where, n, "convolution and pooling are not imported: lutmac imports MLPs from QONNX")
        if n.op_type not in _COMPUTE | _SHAPE | _AFFINE | _MONOTONE | _QUANTISERS:
            _fail(where, n, "unsupported operator for a binary-weight MLP")
        if variable != [tensor] or len(n.output) != 1:
            _fail(where, n, "must take one variable input and give one output (the rest constants)")
        if n.op_type in _COMPUTE:
            if n.input[0] != tensor:
                _fail(where, n, "the activations must be its first input")
            layers.append(_weights(model, raw, n, where))
            chain = layers[-1].chain
        else:
            chain.append(n)
        tensor = n.output[0]
    if not layers:
        _fail(where, None, "no MatMul or Gemm layer")
    return pre, layers


def _submodel(model, nodes, inp, out, shape):
    """The nodes ``inp -> out`` alone, as a model with input shape ``shape`` (shapes inferred)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    names = {t for n in nodes for t in n.input}
    graph = helper.make_graph(
        nodes,
        "lutmac_part",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        initializer=[i for i in model.graph.initializer if i.name in names],
    )
    part = ModelWrapper(qonnx_make_model(graph, opset_imports=list(model.model.opset_import)))
    return part.transform(InferShapes())


def _execute(part, inp, out, x):
    from qonnx.core.onnx_exec import execute_onnx

    with _sanitising(False):
        return np.asarray(execute_onnx(part, {inp: np.ascontiguousarray(x, np.float32)})[out])


def _reshape_batch(model, nodes, batch):
    """``nodes`` with every constant Reshape target's batch dimension set to ``batch`` (as qonnx's ChangeBatchSize
    does to a whole graph), on a copy."""
    model = copy.deepcopy(model)
    for n in nodes:
        if n.op_type == "Reshape" and (t := _const(model, n.input[1])) is not None:
            t = np.array(t)
            t[0] = batch
            model.set_initializer(n.input[1], t)
    return model


def _index_map(model, pre, graph_shape, image_shape, where):
    """For each column of the first layer's input, the index of its pixel in lutmac's ``H, W, C`` order."""
    c, h, w = image_shape
    idx = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(graph_shape)  # the NCHW image, reshaped
    for n in pre:
        if n.op_type == "Flatten":
            axis = _attr(n, "axis", 1) % idx.ndim
            idx = idx.reshape(int(np.prod(idx.shape[:axis])), -1)
        elif n.op_type == "Reshape":
            target = [int(d) for d in _const(model, n.input[1])]
            idx = idx.reshape([idx.shape[i] if d == 0 else d for i, d in enumerate(target)])
        elif n.op_type == "Transpose":
            idx = idx.transpose(_attr(n, "perm", list(range(idx.ndim))[::-1]))
    if idx.ndim != 2 or idx.shape[0] != 1 or sorted(idx.ravel().tolist()) != list(range(h * w * c)):
        _fail(where, None, f"the first layer's input {list(idx.shape)} is not the image's {c * h * w} values flattened")
    return idx.ravel()


def _input_map(model, pre, first, graph_shape, image_shape, input_mode, where):
    """``(α, β (columns,), perm)``: the first layer's input is ``α·p + β_j`` for pixel ``p`` at column ``j``."""
    perm = _index_map(model, pre, graph_shape, image_shape, where)
    p = np.arange(256, dtype=np.float32)
    x = p / np.float32(255) if input_mode == "unit" else p
    x = np.broadcast_to(x.reshape(-1, *[1] * (len(graph_shape) - 1)), (256, *graph_shape[1:]))
    if pre:
        inp, out = model.graph.input[0].name, first.node.input[0]
        part = _submodel(_reshape_batch(model, pre, 256), pre, inp, out, (256, *graph_shape[1:]))
        g = _execute(part, inp, out, x).reshape(256, -1).astype(np.float64)
    else:
        g = x.reshape(256, -1).astype(np.float64)
    alpha = (g[255] - g[0]) / 255
    a = float(np.median(alpha))
    dev = np.abs(g - (g[0] + a * np.arange(256)[:, None])).max()
    if a == 0 or not np.allclose(alpha, a, rtol=1e-6, atol=0) or dev > 1e-5 * np.abs(g).max():
        _fail(
            where,
            None,
            f"the pixels reach {first.node.name} as a map that is not affine in the pixel value ({input_mode}: "
            f"{INPUT_MODES[input_mode]}): lutmac's first layer sums 8-bit pixels, so the graph's input quantiser must "
            f"keep every pixel (8 unsigned bits, scale 1/255 for unit inputs)",
        )
    return a, g[0], perm


def _affine_step(node, first, k, off, v, where):
    """``(k, off)`` of ``k·x + off`` after a Mul/Add/Sub/Div ``node`` by the constant ``v`` (``first``: the constant
    is its first operand)."""
    if node.op_type == "Mul":
        return k * v, off * v
    if node.op_type == "Add":
        return k, off + v
    if node.op_type == "Sub":
        return (-k, v - off) if first else (k, off - v)
    if first:
        _fail(where, node, "a constant divided by a variable is not affine")
    return k / v, off / v


def _grid(model, chain, where, layer):
    """``(σ, c, L, quantiser)``: the hidden activation's values are ``σ·u + c``, ``u`` in ``0..L``."""
    qs = [i for i, n in enumerate(chain) if n.op_type in _QUANTISERS]
    if not qs:
        _fail(
            where,
            layer,
            "no activation quantiser (Quant, BipolarQuant or MultiThreshold) before the next layer: float "
            "activations are not lutmac's integer levels",
        )
    q = chain[qs[-1]]

    def scalar(tensor, what):
        v = np.asarray(_const(model, tensor), np.float64)
        if v.size != 1:
            _fail(where, q, f"{what} has {v.size} values: lutmac needs one {what} per layer (per tensor)")
        return float(v.ravel()[0])

    if q.op_type == "Quant":
        s, z, b = scalar(q.input[1], "scale"), scalar(q.input[2], "zero point"), scalar(q.input[3], "bit width")
        signed, narrow = _attr(q, "signed", 1), _attr(q, "narrow", 0)
        if b != int(b) or b < 1:
            _fail(where, q, f"bit width {b:g}")
        b = int(b)
        if b == 1 and signed:  # qonnx: a 1-bit signed Quant is bipolar, ±1
            sigma, c, levels = 2 * s, (-1 - z) * s, 1
        else:
            lo = -(1 << (b - 1)) + narrow if signed else 0
            hi = (1 << (b - 1)) - 1 if signed else (1 << b) - 1 - narrow
            sigma, c, levels = s, (lo - z) * s, hi - lo
    elif q.op_type == "BipolarQuant":
        s = scalar(q.input[1], "scale")
        sigma, c, levels = 2 * s, -s, 1
    else:
        t = _const(model, q.input[1])
        sigma, c, levels = float(_attr(q, "out_scale", 1.0)), float(_attr(q, "out_bias", 0.0)), int(t.shape[-1])
    for n in chain[qs[-1] + 1 :]:
        if n.op_type in _SHAPE:
            continue
        const = [t for t in n.input if _const(model, t) is not None]
        if n.op_type not in ("Mul", "Add", "Sub", "Div") or np.asarray(_const(model, const[0])).size != 1:
            _fail(where, n, f"after the activation quantiser {q.name} only a scalar scale or shift may follow")
        k = scalar(const[0], "constant")
        sigma, c = _affine_step(n, n.input[0] == const[0], sigma, c, k, where)
    if sigma == 0 or levels < 1 or levels >= 1 << 16:
        _fail(where, q, f"step {sigma:g} with {levels} levels is not an activation lutmac can carry")
    return sigma, c, levels, q


def _thresholds(model, d, k, off, lo, hi, where):
    """Orientation ``(rows,)``, thresholds ``(rows, 2^abits - 1)``, ``abits`` and the grid of a hidden layer, from its
    activation nodes evaluated on ``float32(k·acc + off)`` for every ``acc`` in ``[lo, hi]``."""
    sigma, c, top, q = _grid(model, d.chain, where, d.node)
    rows = len(k)
    for n in d.chain:
        if n.op_type in ("Mul", "Add", "Sub", "Div") and n is not q:
            _row_constant(model, n, next(t for t in n.input if _const(model, t) is not None), rows, where)
    abits = max(1, int(top).bit_length())
    levels = (1 << abits) - 1
    batch = max(1, min(hi - lo + 1, _EVAL_VALUES // rows))
    inp, out = d.node.output[0], d.chain[-1].output[0]
    part = _submodel(_reshape_batch(model, d.chain, batch), d.chain, inp, out, (batch, rows))
    hist = np.zeros((rows, levels + 1), np.int64)
    up, down = np.zeros(rows, bool), np.zeros(rows, bool)
    last = None
    for start in range(lo, hi + 1, batch):
        acc = np.arange(start, start + batch, dtype=np.float64)  # the last batch runs past hi: cut below
        n = min(batch, hi + 1 - start)
        v = _execute(part, inp, out, acc[:, None] * k[None, :] + off[None, :]).reshape(batch, rows)[:n]
        u = (v.astype(np.float64) - c) / sigma
        level = np.rint(u)
        if not (np.abs(u - level) <= 1e-3).all() or level.min() < 0 or level.max() > top:
            _fail(where, q, f"its outputs are not on its grid {sigma:g}·u + {c:g}, u in 0..{top}")
        level = level.astype(np.int64)
        steps = np.diff(level if last is None else np.vstack([last, level]), axis=0)
        up |= (steps > 0).any(axis=0)
        down |= (steps < 0).any(axis=0)
        last = level[-1:]
        hist += np.bincount((level + np.arange(rows) * (levels + 1)).ravel(), minlength=hist.size).reshape(hist.shape)
    if (up & down).any():
        r = int(np.flatnonzero(up & down)[0])
        _fail(where, d.node, f"row {r}'s activation is not monotone in the accumulator: no thresholds give it")
    orientation = np.where(down, -1, 1).astype(np.int8)
    # T_k = the smallest s·acc with level >= k: acc_min + #{values below k} (the range is symmetric, lo = -hi)
    thresholds = lo + np.cumsum(hist, axis=1)[:, :levels]
    return orientation, thresholds, abits, sigma, c, q


def _scores(model, d, k, off, where):
    """``(K, D)`` of ``score = K·acc + D``: the output layer's nodes composed in float64 (affine ones only)."""
    rows = len(k)
    for n in d.chain:
        if n.op_type in _SHAPE:
            continue
        if n.op_type == "BatchNormalization":
            gamma, beta, mean, var = (_row_constant(model, n, t, rows, where) for t in n.input[1:5])
            a = gamma / np.sqrt(var + float(_attr(n, "epsilon", 1e-5)))
            k, off = k * a, (off - mean) * a + beta
            continue
        if n.op_type not in ("Mul", "Add", "Sub", "Div"):
            _fail(
                where,
                n,
                "in the output layer: lutmac's scores are affine in the accumulator (m·acc + b), so only batch "
                "norm and constant Mul/Add/Sub/Div may follow the last layer",
            )
        first = _const(model, n.input[0]) is not None
        k, off = _affine_step(n, first, k, off, _row_constant(model, n, n.input[0 if first else 1], rows, where), where)
    return k, off


def read_qonnx(path, image_shape, *, input_mode="unit"):
    """The layers of the QONNX MLP at ``path`` for images of ``image_shape`` ``(C, H, W)``, as
    ``(layers [ImportedLayer], cleaned model, sha256)``. :class:`~export.ExportError` names the file, the node and
    what lutmac cannot represent."""
    if input_mode not in INPUT_MODES:
        raise ExportError(f"input {input_mode!r}: choose one of {', '.join(INPUT_MODES)}")
    model, raw, sha = _load(path)
    where = str(path)
    pre, dense = _walk(model, raw, where)
    graph_shape = model.get_tensor_shape(model.graph.input[0].name)
    if not graph_shape or int(np.prod(graph_shape[1:])) != int(np.prod(image_shape)):
        _fail(where, None, f"the graph's input {graph_shape} does not hold one {list(image_shape)} image")
    graph_shape = [1, *graph_shape[1:]]
    alpha, beta, perm = _input_map(model, pre, dense[0], graph_shape, image_shape, input_mode, where)
    out, bits = [], INPUT_BITS
    for i, d in enumerate(dense):
        rows, cols = d.weights.shape
        if cols != len(beta):
            _fail(where, d.node, f"takes {cols} inputs, the layer before gives {len(beta)}")
        signs = np.where(d.weights > 0, 1, -1).astype(np.int8)
        s = np.abs(d.weights).max(axis=1)
        k = s * abs(alpha)  # y_r = k_r·acc + off_r, acc over the signs times sign(alpha)
        off = s * (signs.astype(np.float64) @ beta) + d.bias
        signs = signs * np.int8(1 if alpha > 0 else -1)
        if i == 0:
            signs = signs[:, np.argsort(perm)]  # graph column j is pixel perm[j] in H, W, C order
        lo, hi = accumulator_bounds(cols, (1 << bits) - 1)
        layer = ImportedLayer(node=d.node.name, signs=signs, in_bits=bits)
        if i < len(dense) - 1:
            orient, thr, abits, sigma, c, q = _thresholds(model, d, k, off, lo, hi, where)
            layer.orientation, layer.thresholds, layer.abits, layer.quantiser = orient, thr, abits, q.name
            alpha, beta, bits = sigma, np.full(rows, c), abits
        else:
            kk, dd = _scores(model, d, k, off, where)  # fold_scores of a unit batch norm: K = gamma, D = beta
            m, b, shift = fold_scores(
                mean=np.zeros(rows), var=np.ones(rows), gamma=kk, beta=dd, bias=np.zeros(rows), eps=0.0, acc_bound=hi
            )
            layer.scale, layer.offset, layer.shift = m, b, shift
        out.append(layer)
    return out, model, sha


def _pixel_model(model, image_shape, input_mode):
    """The cleaned graph fed as lutmac's QONNX graphs are: ``global_in`` float32 NCHW pixels 0..255 (reshaped to the
    graph's input, and divided by 255 for ``unit`` inputs), output ``global_out``."""
    from onnx import TensorProto, helper
    from qonnx.transformation.infer_shapes import InferShapes

    model = copy.deepcopy(model)
    g = model.graph
    old_in, old_out = g.input[0].name, g.output[0].name
    shape = model.get_tensor_shape(old_in)
    for n in g.node:
        n.input[:] = ["lutmac_graph_in" if t == old_in else t for t in n.input]
        n.output[:] = [OUTPUT if t == old_out else t for t in n.output]
    model.set_initializer("lutmac_input_shape", np.asarray([1, *shape[1:]], np.int64))
    nodes = [helper.make_node("Reshape", [INPUT, "lutmac_input_shape"], ["lutmac_pixels"], name="lutmac_Reshape")]
    if input_mode == "unit":
        model.set_initializer("lutmac_255", np.float32(255))
        nodes.append(helper.make_node("Div", ["lutmac_pixels", "lutmac_255"], ["lutmac_graph_in"], name="lutmac_Div"))
    else:
        nodes.append(helper.make_node("Identity", ["lutmac_pixels"], ["lutmac_graph_in"], name="lutmac_Identity"))
    for n in reversed(nodes):
        g.node.insert(0, n)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, *image_shape]))
    g.output[0].name = OUTPUT
    del g.value_info[:]
    return model.transform(InferShapes())


def _write(tmp, fname, data):
    (Path(tmp) / fname).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _entry(tmp, i, layer, in_shape):
    """The manifest entry of one imported dense layer, its files written into ``tmp``."""
    rows, cols = layer.signs.shape
    name = f"fc{i}"
    lo, hi = accumulator_bounds(cols, (1 << layer.in_bits) - 1)
    entry = {
        "name": name,
        "kind": "dense",
        "in_shape": list(in_shape),
        "out_shape": [rows, 1, 1],
        "out_features": rows,
        "in_features": cols,
        "weights": f"{name}.weights",
        "sha256": _write(tmp, f"{name}.weights", encode_weights(layer.signs)),
        "in_bits": layer.in_bits,
        "abits": layer.abits,
        "acc_bits": signed_bits(lo, hi),
        "acc_min": lo,
        "acc_max": hi,
        "source_node": layer.node,
    }
    if layer.thresholds is not None:
        entry["activation"] = {
            "kind": "thresholds",
            "file": f"{name}.thresholds",
            "levels": (1 << layer.abits) - 1,
            "threshold_bits": signed_bits(lo, hi + 1),
            "negative_orientation": int((layer.orientation < 0).sum()),
            "sha256": _write(tmp, f"{name}.thresholds", encode_thresholds(layer.orientation, layer.thresholds)),
            "source_quantiser": layer.quantiser,
        }
    else:
        m, b = layer.scale, layer.offset
        extremes = apply_scores(np.array([[lo] * rows, [hi] * rows]), m, b)
        entry["activation"] = {
            "kind": "scores",
            "scale": m.tolist(),
            "offset": b.tolist(),
            "shift": layer.shift,
            "score_bits": signed_bits(int(extremes.min()), int(extremes.max())),
            "scores_sha256": scores_sha256(m.tolist(), b.tolist()),
        }
    return entry


def import_qonnx(path, out_dir, *, dataset, images, labels, synthetic=False, input_mode="unit"):
    """Import the QONNX MLP at ``path`` into the export directory ``out_dir`` (atomically; nothing is written when
    the graph is refused) with the test set ``images`` ``(N, H, W, C)`` uint8 and ``labels`` of data set ``dataset``.

    The graph itself (qonnx ``execute_onnx``) classifies the test set for ``float_test_accuracy``; the manifest's
    ``source`` records the model's path and SHA-256, the input convention and on how many test images the golden
    model's class equals the graph's (``class_matches``). Returns the manifest."""
    from common.files import atomic_directory, check_output_dir
    from common.idx import write_idx

    images, labels = np.asarray(images), np.asarray(labels)
    n, h, w, c = images.shape if images.ndim == 4 else (*images.shape, 1)
    image_shape = (c, h, w)
    check_output_dir(out_dir, stage="export")
    layers, model, sha = read_qonnx(path, image_shape, input_mode=input_mode)
    classes = len(layers[-1].signs)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ExportError(f"{path}: {classes} classes, but data set {dataset!r} has labels up to {int(labels.max())}")
    graph_classes = np.argmax(run_model(_pixel_model(model, image_shape, input_mode), images, image_shape), axis=1)
    abits = {layer.abits for layer in layers[:-1]}
    with atomic_directory(out_dir, stage="export") as tmp:
        entries, shape = [], image_shape
        for i, layer in enumerate(layers):
            entries.append(_entry(tmp, i, layer, shape))
            shape = (len(layer.signs), 1, 1)
        stored = images.reshape(n, h, w, c)
        write_idx(Path(tmp) / "test-images.idx.gz", stored[..., 0] if c == 1 else stored)
        write_idx(Path(tmp) / "test-labels.idx.gz", labels.astype(np.uint8))
        digest = {
            k: hashlib.sha256((Path(tmp) / f"test-{k}.idx.gz").read_bytes()).hexdigest() for k in ("images", "labels")
        }
        manifest = {
            "format_version": MANIFEST_VERSION,
            "dataset": str(dataset),
            "arch": "-".join(str(x) for x in [c * h * w, *(len(layer.signs) for layer in layers)]),
            "binarize": "det",
            "abits": abits.pop() if len(abits) == 1 else None,
            "synthetic": bool(synthetic),
            "input": {
                "shape": list(image_shape),
                "bits": INPUT_BITS,
                "signed": False,
                "order": "HWC (raster, channels innermost)",
            },
            "classes": classes,
            "layers": entries,
            "activation": {"function": "imported from QONNX: each hidden layer's graph nodes, tabulated as thresholds"},
            "test_set": {
                "images": "test-images.idx.gz",
                "labels": "test-labels.idx.gz",
                "count": int(n),
                "images_sha256": digest["images"],
                "labels_sha256": digest["labels"],
            },
            "float_test_accuracy": float((graph_classes == labels).mean()),
            "golden_test_accuracy": None,
            "source": {
                "format": "qonnx",
                "model": str(path),
                "model_sha256": sha,
                "input": INPUT_MODES[input_mode],
                "float_test_accuracy": "the graph's own (qonnx execute_onnx) accuracy on the test set",
            },
        }
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        golden = GoldenModel(tmp).classify(images.reshape(n, h, w, c))  # read back from the files alone
        manifest["golden_test_accuracy"] = float((golden == labels).mean())
        manifest["source"]["class_matches"] = int((golden == graph_classes).sum())
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
