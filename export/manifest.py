"""Reading an export directory: ``manifest.json``, hash-checked layer files and the test set (numpy only).

The reader trusts nothing it can re-derive: every shape follows from the layer kinds (:mod:`common.layers`), every
width and bound from the shapes and bits, every file must match its hash and the manifest's claims. A manifest that
lies is refused with :class:`~export.ExportError` naming the file, the layer and the key — never turned into
hardware that disagrees with the golden model. ``docs/weight-format.md`` specifies the format.
"""

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.idx import IDXError, read_idx
from common.layers import LayerError, check_chain, check_names, layer_from_dict

from . import ExportError, WeightFormatError
from .folding import (
    FRAC_BITS_MAX,
    MAX_SCORE_BITS,
    SCALE_BITS,
    accumulator_bounds,
    apply_scores,
    expand_progression,
    progression_bounds,
    progression_fits_int64,
    progression_widths,
    signed_bits,
)
from .packing import decode_progression, decode_thresholds, decode_weights

__all__ = [
    "MANIFEST",
    "MANIFEST_VERSION",
    "REQUIRED_KEYS",
    "LayerParams",
    "read_manifest",
    "load_layers",
    "load_test_set",
    "sha256_file",
    "scores_sha256",
    "upgrade_v1",
    "MAX_SCORE_BITS",
    "INPUT_BITS",
]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
REQUIRED_KEYS = (
    "format_version",
    "dataset",
    "input",
    "classes",
    "layers",
    "test_set",
    "float_test_accuracy",
    "golden_test_accuracy",
)
INPUT_BITS = 8  # pixels are 8-bit unsigned
_MAX_SHIFT = 62


@dataclass(frozen=True)
class LayerParams:
    """One layer as the golden model and the generator need it.

    Members
    -------
    spec : :class:`common.layers.Layer`
        Kind, shapes and the kind's parameters.
    in_bits : int
        Width of the unsigned values entering the layer.
    weights : ``(rows, columns)`` int8 array of ±1 (compute layers only)
    orientation, thresholds : hidden compute layers only: ``a = #{k : orientation * acc >= thresholds[k]}`` (a
        progression layer's table is its expansion, :func:`export.folding.expand_progression`)
    progression : ``(frac_bits, a_fx, d_fx)`` for a hidden layer stored as a progression, else None
    scale, offset : output layer only: ``score = scale * acc + offset``
    """

    spec: object
    index: int
    in_bits: int
    weights: np.ndarray | None = None
    acc_bits: int | None = None
    acc_min: int | None = None
    acc_max: int | None = None
    abits: int | None = None
    orientation: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    progression: tuple | None = None
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    score_bits: int | None = None

    name = property(lambda self: self.spec.name)
    kind = property(lambda self: self.spec.kind)
    is_output = property(lambda self: self.scale is not None)
    # compute layers: the matrix-vector product's shape (a conv layer's columns are its K*K*C patch)
    rows = property(lambda self: self.spec.rows)
    columns = property(lambda self: self.spec.columns)
    in_features = columns
    out_features = rows

    @property
    def out_bits(self):
        """Width of the values the layer passes on (activation levels, or its input's for a pool)."""
        if self.spec.kind == "maxpool2d":
            return self.in_bits
        return self.abits


def sha256_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def scores_sha256(scale, offset):
    """The output layer's ``scores_sha256``: SHA-256 of the little-endian signed 64-bit integers ``scale[0..n-1]``,
    then ``offset[c] - offset[0]`` for ``c`` in ``0..n-1`` -- the score constants up to a common offset, which moves
    every score alike and changes no class."""
    scale, offset = [int(x) for x in scale], [int(x) for x in offset]
    values = scale + [b - offset[0] for b in offset]
    return hashlib.sha256(struct.pack(f"<{len(values)}q", *values)).hexdigest()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Type checks that name the manifest, the layer and the key."""

    def __init__(self, path):
        self.path = path

    def fail(self, where, msg):
        raise ExportError(f"{self.path}: {where}{': ' if where else ''}{msg}")

    def int(self, obj, key, where, *, lo=None, hi=None, none=False):
        if key not in obj:
            self.fail(where, f"missing key {key!r}")
        v = obj[key]
        if v is None and none:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(where, f"{key} must be an integer, not {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(
                where, f"{key} {v} is outside {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            )
        return v

    def number(self, obj, key, where, *, none=False):
        if key not in obj:
            self.fail(where, f"missing key {key!r}")
        v = obj[key]
        if v is None and none:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not 0 <= v <= 1:
            self.fail(where, f"{key} must be a fraction in 0..1, not {v!r}")
        return v

    def dict(self, obj, key, where):
        v = obj.get(key)
        if not isinstance(v, dict):
            self.fail(where, f"{key} must be an object, not {v!r}")
        return v

    def file(self, obj, key, where):
        v = obj.get(key)
        # a plain name inside the export directory: no path, no parent reference, no hidden name
        if not isinstance(v, str) or not v or Path(v).name != v or v in (".", "..") or v.startswith("."):
            self.fail(where, f"{key} {v!r} must be a plain file name inside the export directory")
        return v

    def sha(self, obj, key, where):
        v = obj.get(key)
        if not (isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)):
            self.fail(where, f"{key} must be a SHA-256 hex digest, not {v!r}")
        return v

    def equal(self, obj, key, expected, where, why):
        """``obj[key] == expected``, and of its type: an integer must be a JSON integer (not 13.0, not true)."""
        v = obj.get(key)
        if v != expected or (_is_int(expected) and not _is_int(v)):
            self.fail(where, f"{key} is {v!r}, {why} gives {expected!r}")


def upgrade_v1(m):
    """A format-version-1 manifest (dense layers only, ``in_features``/``out_features``, ``input.shape`` [H, W])
    as version 2, in memory. Its files are unchanged: a v1 export is a valid v2 export of an MLP."""
    m = dict(m)
    inp = m.get("input")
    if inp is None:
        inp = {}
    if isinstance(inp, dict):  # anything else is left for read_manifest to refuse ("input must be an object")
        inp = dict(inp)
        shape = inp.get("shape")
        if isinstance(shape, list) and len(shape) == 2:
            inp["shape"] = [1, *shape]
    m["input"] = inp
    layers = []
    if isinstance(m.get("layers"), list):
        shape = inp.get("shape") if isinstance(inp, dict) else None
        for e in m["layers"]:
            if isinstance(e, dict):
                e = {**e, "kind": "dense", "in_shape": shape, "out_features": e.get("out_features")}
                shape = [e["out_features"], 1, 1]
            layers.append(e)
    m["layers"] = layers
    m.setdefault("classes", layers[-1].get("out_features") if layers and isinstance(layers[-1], dict) else None)
    m["format_version"] = MANIFEST_VERSION
    m["upgraded_from"] = 1
    return m


def read_manifest(directory):
    """Parse ``manifest.json`` and validate everything that needs no other file: keys, types, the layer chain,
    bits, worst-case bounds and widths, score constants. :class:`ExportError` naming the file, layer and key."""
    path = Path(directory) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no manifest (run `make export` first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: unreadable manifest ({e})") from None
    c = _Checker(path)
    if not isinstance(m, dict):
        c.fail("", "manifest is not a JSON object")
    if _is_int(m.get("format_version")) and m["format_version"] == 1:
        m = upgrade_v1(m)
    for key in REQUIRED_KEYS:
        if key not in m:
            c.fail("", f"missing key {key!r}")
    if m["format_version"] != MANIFEST_VERSION or not _is_int(m["format_version"]):
        c.fail("", f"format_version {m['format_version']!r}, this reader knows 1 and {MANIFEST_VERSION}")
    if not isinstance(m["dataset"], str):
        c.fail("", f"dataset must be a string, not {m['dataset']!r}")
    inp = c.dict(m, "input", "")
    c.equal(inp, "bits", INPUT_BITS, "input", "the pixel format (8-bit unsigned)")
    if inp.get("signed", False) is not False:
        c.fail("input", f"signed must be false, not {inp.get('signed')!r}")
    shape = inp.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ):
        c.fail("input", f"shape must be [C, H, W] of positive integers, not {shape!r}")
    classes = c.int(m, "classes", "", lo=1)
    if not isinstance(m["layers"], list) or not m["layers"]:
        c.fail("", "'layers' must be a non-empty list")
    specs = []
    for i, e in enumerate(m["layers"]):
        where = f"layer {i}" + (f" {e.get('name')!r}" if isinstance(e, dict) and isinstance(e.get("name"), str) else "")
        try:
            specs.append(layer_from_dict(e, where))
        except LayerError as err:
            c.fail("", str(err))
    try:
        check_chain(specs, tuple(shape), classes)
        check_names(specs)
    except LayerError as err:
        c.fail("", str(err))
    abits = m.get("abits")
    if abits is not None and not _is_int(abits):
        c.fail("", f"abits must be an integer or null, not {abits!r}")
    bits = INPUT_BITS
    for i, (e, spec) in enumerate(zip(m["layers"], specs)):
        bits = _check_layer(c, e, spec, bits, last=i == len(specs) - 1, abits=abits)
    ts = c.dict(m, "test_set", "")
    for key in ("images", "labels"):
        c.file(ts, key, "test_set")
        c.sha(ts, key + "_sha256", "test_set")
    c.int(ts, "count", "test_set", lo=1)
    c.number(m, "float_test_accuracy", "")
    c.number(m, "golden_test_accuracy", "", none=True)
    if "trained_test_accuracy_sign" in m:
        c.number(m, "trained_test_accuracy_sign", "", none=True)
    return m


def _check_layer(c, e, spec, in_bits, *, last, abits):
    """Validate one layer entry against what its kind, shapes and input bits imply; returns its output bits."""
    where = f"layer {spec.name!r}"
    c.equal(e, "in_bits", in_bits, where, "the layers before it")
    if not spec.compute:
        return in_bits
    if spec.kind == "dense":
        c.equal(e, "in_features", spec.columns, where, "its in_shape")
        c.equal(e, "out_features", spec.rows, where, "its kind")
    c.file(e, "weights", where)
    if e["weights"] != f"{spec.name}.weights":
        c.fail(where, f"weights {e['weights']!r} must be '{spec.name}.weights' (a layer's files carry its name)")
    c.sha(e, "sha256", where)
    lo, hi = accumulator_bounds(spec.columns, (1 << in_bits) - 1)
    c.equal(e, "acc_min", lo, where, f"the worst case of {spec.columns} inputs of {in_bits} bits")
    c.equal(e, "acc_max", hi, where, f"the worst case of {spec.columns} inputs of {in_bits} bits")
    c.equal(e, "acc_bits", signed_bits(lo, hi), where, f"acc range [{lo}, {hi}]")
    act = c.dict(e, "activation", where)
    if "abits" not in e:
        c.fail(where, "missing key 'abits' (null for the output layer)")
    if last:
        if e["abits"] is not None:
            c.fail(where, f"abits must be null for the output layer, not {e.get('abits')!r}")
        if act.get("kind") != "scores":
            c.fail(where, f"the output layer's activation kind must be 'scores', not {act.get('kind')!r}")
        _check_scores(c, act, spec, lo, hi, where)
        return None
    layer_abits = c.int(e, "abits", where, lo=1, hi=16)
    if abits is not None and layer_abits != abits:
        c.fail(where, f"abits {layer_abits} differs from the network's {abits!r}")
    if act.get("kind") not in ("thresholds", "progression"):
        c.fail(
            where, f"a hidden layer's activation kind must be 'thresholds' or 'progression', not {act.get('kind')!r}"
        )
    c.file(act, "file", where + " activation")
    if act["file"] != f"{spec.name}.thresholds":
        c.fail(
            where + " activation",
            f"file {act['file']!r} must be '{spec.name}.thresholds' (a layer's files carry its name)",
        )
    c.sha(act, "sha256", where + " activation")
    c.equal(act, "levels", (1 << layer_abits) - 1, where + " activation", f"abits {layer_abits}")
    c.equal(act, "threshold_bits", signed_bits(lo, hi + 1), where + " activation", f"acc range [{lo}, {hi}]")
    c.int(act, "negative_orientation", where + " activation", lo=0, hi=spec.rows)
    if act["kind"] == "progression":
        levels = (1 << layer_abits) - 1
        f = c.int(act, "frac_bits", where + " activation", lo=0, hi=FRAC_BITS_MAX)
        if not progression_fits_int64(lo, hi, levels, f):
            c.fail(
                where + " activation",
                f"frac_bits {f} with acc range [{lo}, {hi}] and {levels} levels leaves 64-bit integers",
            )
        a_bits, d_bits = progression_widths(lo, hi, levels, f)
        c.equal(act, "a_bits", a_bits, where + " activation", f"acc range [{lo}, {hi}], {levels} levels, frac_bits {f}")
        c.equal(act, "d_bits", d_bits, where + " activation", f"acc range [{lo}, {hi}], frac_bits {f}")
    return layer_abits


def _check_scores(c, act, spec, lo, hi, where):
    where = where + " activation"
    for key in ("scale", "offset"):
        v = act.get(key)
        if not (
            isinstance(v, list)
            and len(v) == spec.rows
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ):
            c.fail(where, f"{key} must be a list of {spec.rows} integers")
    limit = 1 << (SCALE_BITS - 1)
    if any(abs(x) >= limit for x in act["scale"]):
        c.fail(where, f"scale values must satisfy |m| < 2^{SCALE_BITS - 1} (the shift-add hardware's digits)")
    c.int(act, "shift", where, lo=0, hi=_MAX_SHIFT)
    if any(abs(x) >= 1 << (MAX_SCORE_BITS - 2) for x in act["offset"]):
        c.fail(where, f"offset values must be below 2^{MAX_SCORE_BITS - 2} in magnitude")
    m, b = np.asarray(act["scale"], np.int64), np.asarray(act["offset"], np.int64)
    extremes = apply_scores(np.array([[lo] * spec.rows, [hi] * spec.rows]), m, b)
    c.equal(
        act,
        "score_bits",
        signed_bits(int(extremes.min()), int(extremes.max())),
        where,
        f"the worst case of scale * acc + offset over acc in [{lo}, {hi}]",
    )
    if "scores_sha256" in act:  # every export writes it; exports made before it was recorded lack it
        c.sha(act, "scores_sha256", where)
        if scores_sha256(act["scale"], act["offset"]) != act["scores_sha256"]:
            c.fail(where, "scale/offset do not match scores_sha256 (score constants changed, swapped or corrupt)")


def _checked_bytes(directory, fname, sha, what):
    path = Path(directory) / fname
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightFormatError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise WeightFormatError(f"{path}: SHA-256 does not match the manifest ({what} changed or corrupt)")
    return data, str(path)


def load_layers(directory, manifest=None):
    """All layers of an export as :class:`LayerParams`, every file hash-, shape- and range-checked against the
    (validated) manifest."""
    m = manifest or read_manifest(directory)
    mpath = Path(directory) / MANIFEST
    layers, bits = [], INPUT_BITS
    for i, e in enumerate(m["layers"]):
        spec = layer_from_dict(e, f"layer {i}")
        if not spec.compute:
            layers.append(LayerParams(spec=spec, index=i, in_bits=bits))
            continue
        data, name = _checked_bytes(directory, e["weights"], e["sha256"], "weights")
        w = decode_weights(data, name)
        if w.shape != (spec.rows, spec.columns):
            raise WeightFormatError(
                f"{name}: holds {w.shape[0]}x{w.shape[1]} weights, layer {spec.name!r} needs {spec.rows}x{spec.columns}"
            )
        common = dict(
            spec=spec,
            index=i,
            in_bits=bits,
            weights=w,
            acc_bits=e["acc_bits"],
            acc_min=e["acc_min"],
            acc_max=e["acc_max"],
            abits=e["abits"],
        )
        act = e["activation"]
        if act["kind"] == "progression":
            layers.append(LayerParams(**common, **_load_progression(directory, mpath, spec, e, act)))
            bits = e["abits"]
        elif act["kind"] == "thresholds":
            data, tname = _checked_bytes(directory, act["file"], act["sha256"], "thresholds")
            orient, thr = decode_thresholds(data, tname)
            if thr.shape != (spec.rows, act["levels"]):
                raise WeightFormatError(
                    f"{tname}: {thr.shape} thresholds do not fit layer {spec.name!r} with abits={e['abits']}"
                )
            if thr.min() < e["acc_min"] or thr.max() > e["acc_max"] + 1:
                raise WeightFormatError(
                    f"{tname}: thresholds of layer {spec.name!r} leave "
                    f"[acc_min, acc_max + 1] = [{e['acc_min']}, {e['acc_max'] + 1}]"
                )
            if int((orient < 0).sum()) != act["negative_orientation"]:
                raise ExportError(
                    f"{mpath}: layer {spec.name!r} activation negative_orientation is "
                    f"{act['negative_orientation']}, {tname} has {int((orient < 0).sum())}"
                )
            layers.append(LayerParams(**common, orientation=orient, thresholds=thr))
            bits = e["abits"]
        else:
            layers.append(
                LayerParams(
                    **common,
                    scale=np.asarray(act["scale"], np.int64),
                    offset=np.asarray(act["offset"], np.int64),
                    score_bits=act["score_bits"],
                )
            )
    return layers


def _load_progression(directory, mpath, spec, e, act):
    """A progression threshold file, checked against the manifest and the format's bounds, with its expansion."""
    data, tname = _checked_bytes(directory, act["file"], act["sha256"], "thresholds")
    orient, a_fx, d_fx, f, levels = decode_progression(data, tname)
    where = f"{tname}: layer {spec.name!r}"
    if len(orient) != spec.rows:
        raise WeightFormatError(f"{where}: {len(orient)} rows, the layer has {spec.rows}")
    if levels != act["levels"]:
        raise ExportError(f"{mpath}: layer {spec.name!r} activation levels is {act['levels']}, {tname} has {levels}")
    if f != act["frac_bits"]:
        raise ExportError(f"{mpath}: layer {spec.name!r} activation frac_bits is {act['frac_bits']}, {tname} has {f}")
    lo, hi = e["acc_min"], e["acc_max"]
    a_lo, a_hi, d_lo, d_hi = progression_bounds(lo, hi, levels, f)
    for key, v, vlo, vhi in (("A_fx", a_fx, a_lo, a_hi), ("D_fx", d_fx, d_lo, d_hi)):
        bad = np.flatnonzero((v < vlo) | (v > vhi))
        if len(bad):
            raise WeightFormatError(
                f"{where}: {key} of row {int(bad[0])} is {int(v[bad[0]])}, outside "
                f"{vlo}..{vhi} (acc range [{lo}, {hi}], frac_bits {f})"
            )
    if int((orient < 0).sum()) != act["negative_orientation"]:
        raise ExportError(
            f"{mpath}: layer {spec.name!r} activation negative_orientation is "
            f"{act['negative_orientation']}, {tname} has {int((orient < 0).sum())}"
        )
    return dict(
        orientation=orient, thresholds=expand_progression(a_fx, d_fx, f, levels, lo, hi), progression=(f, a_fx, d_fx)
    )


def load_test_set(directory, manifest=None):
    """The exported test images ``(N, H, W, C)`` uint8 and labels ``(N,)`` int64, hash- and shape-checked."""
    m = manifest or read_manifest(directory)
    t = m["test_set"]
    out = []
    for key in ("images", "labels"):
        _, name = _checked_bytes(directory, t[key], t[key + "_sha256"], f"test {key}")
        try:
            out.append(read_idx(name))
        except IDXError as e:
            raise ExportError(str(e)) from None
    images, labels = out
    c, h, w = m["input"]["shape"]
    if images.dtype != np.uint8 or images.shape[1:] not in ((h, w, c), (h, w) if c == 1 else None):
        raise ExportError(
            f"{Path(directory) / t['images']}: images of shape {images.shape[1:]} and type "
            f"{images.dtype}, the manifest's input is {c}x{h}x{w} uint8"
        )
    if labels.ndim != 1 or len(labels) != len(images) or len(images) != t["count"]:
        raise ExportError(
            f"{Path(directory) / MANIFEST}: test_set count {t['count']}, but "
            f"{t['images']} holds {len(images)} images and {t['labels']} {len(labels)} labels"
        )
    classes = m["classes"]
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise ExportError(f"{Path(directory) / t['labels']}: labels outside 0..{classes - 1}")
    return images.reshape(len(images), h, w, c), labels.astype(np.int64)
