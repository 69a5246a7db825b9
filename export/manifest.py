"""Reading an export directory: ``manifest.json``, hash-checked layer files and the test set (numpy only)."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ExportError, WeightFormatError
from .packing import decode_thresholds, decode_weights

__all__ = ["MANIFEST", "MANIFEST_VERSION", "REQUIRED_KEYS", "LAYER_KEYS", "LayerParams", "read_manifest",
           "load_layers", "load_test_set", "sha256_file"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
REQUIRED_KEYS = ("format_version", "dataset", "input", "layers", "float_test_accuracy", "golden_test_accuracy")
LAYER_KEYS = ("name", "in_features", "out_features", "weights", "sha256", "abits", "in_bits", "acc_bits",
              "acc_min", "acc_max", "activation")


@dataclass(frozen=True)
class LayerParams:
    """One layer as the golden model and the generator need it.

    Members
    -------
    weights : (out, in) int8 array of ±1
    orientation, thresholds : hidden layers only: ``a = #{k : orientation * acc >= thresholds[k]}``
    scale, offset : output layer only: ``score = scale * acc + offset``
    """
    name: str
    index: int
    in_features: int
    out_features: int
    in_bits: int
    acc_bits: int
    acc_min: int
    acc_max: int
    abits: int | None
    weights: np.ndarray
    orientation: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    score_bits: int | None = None

    @property
    def is_output(self):
        return self.scale is not None


def sha256_file(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(directory):
    """Parse and validate ``manifest.json``; :class:`ExportError` naming the file and the missing/odd key."""
    path = Path(directory) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no manifest (run `make export` first)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(m, dict):
        raise ExportError(f"{path}: manifest is not a JSON object")
    for key in REQUIRED_KEYS:
        if key not in m:
            raise ExportError(f"{path}: missing key {key!r}")
    if m["format_version"] != MANIFEST_VERSION:
        raise ExportError(f"{path}: format_version {m['format_version']!r}, this reader knows {MANIFEST_VERSION}")
    if not isinstance(m["layers"], list) or not m["layers"]:
        raise ExportError(f"{path}: 'layers' must be a non-empty list")
    for i, layer in enumerate(m["layers"]):
        for key in LAYER_KEYS:
            if key not in layer:
                raise ExportError(f"{path}: layer {i} is missing key {key!r}")
    for a, b in zip(m["layers"][:-1], m["layers"][1:]):
        if a["out_features"] != b["in_features"]:
            raise ExportError(f"{path}: layer {a['name']!r} has {a['out_features']} outputs but "
                              f"{b['name']!r} takes {b['in_features']}")
    return m


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
    """All layers of an export as :class:`LayerParams`, every file hash- and shape-checked against the manifest."""
    m = manifest or read_manifest(directory)
    layers = []
    for i, e in enumerate(m["layers"]):
        data, name = _checked_bytes(directory, e["weights"], e["sha256"], "weights")
        w = decode_weights(data, name)
        if w.shape != (e["out_features"], e["in_features"]):
            raise WeightFormatError(f"{name}: holds {w.shape[0]}x{w.shape[1]} weights, the manifest says "
                                    f"{e['out_features']}x{e['in_features']}")
        common = dict(name=e["name"], index=i, in_features=e["in_features"], out_features=e["out_features"],
                      in_bits=e["in_bits"], acc_bits=e["acc_bits"], acc_min=e["acc_min"], acc_max=e["acc_max"],
                      abits=e["abits"], weights=w)
        act = e["activation"]
        if act.get("kind") == "thresholds":
            data, tname = _checked_bytes(directory, act["file"], act["sha256"], "thresholds")
            orient, thr = decode_thresholds(data, tname)
            if thr.shape != (e["out_features"], 2 ** e["abits"] - 1):
                raise WeightFormatError(f"{tname}: {thr.shape} thresholds do not fit layer {e['name']!r} "
                                        f"with abits={e['abits']}")
            layers.append(LayerParams(**common, orientation=orient, thresholds=thr))
        elif act.get("kind") == "scores":
            scale, offset = np.asarray(act["scale"], np.int64), np.asarray(act["offset"], np.int64)
            if scale.shape != (e["out_features"],) or offset.shape != scale.shape:
                raise ExportError(f"{Path(directory) / MANIFEST}: layer {e['name']!r} score constants do not "
                                  f"match its {e['out_features']} outputs")
            layers.append(LayerParams(**common, scale=scale, offset=offset, score_bits=act["score_bits"]))
        else:
            raise ExportError(f"{Path(directory) / MANIFEST}: layer {e['name']!r} has unknown activation "
                              f"{act.get('kind')!r}")
    if not layers[-1].is_output or any(layer.is_output for layer in layers[:-1]):
        raise ExportError(f"{Path(directory) / MANIFEST}: only the last layer may (and must) produce scores")
    return layers


def load_test_set(directory, manifest=None):
    """The exported test images ``(N, *input.shape)`` uint8 and labels ``(N,)`` int64, hash-checked."""
    from train.data import IDXError, read_idx  # numpy-only IDX reader of the stage before
    m = manifest or read_manifest(directory)
    t = m.get("test_set")
    if not t:
        raise ExportError(f"{Path(directory) / MANIFEST}: no 'test_set' entry")
    out = []
    for key in ("images", "labels"):
        _, name = _checked_bytes(directory, t[key], t[key + "_sha256"], f"test {key}")
        try:
            out.append(read_idx(name))
        except IDXError as e:
            raise ExportError(str(e)) from None
    images, labels = out
    return images, labels.astype(np.int64)
