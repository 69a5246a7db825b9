"""Checkpoint -> export directory. The only module of this stage that imports torch."""

import hashlib
import json
from pathlib import Path

import numpy as np

from . import ExportError
from .folding import (accumulator_bounds, apply_scores, fold_scores, fold_thresholds, signed_bits)
from .golden import GoldenModel
from .manifest import MANIFEST, MANIFEST_VERSION
from .packing import encode_thresholds, encode_weights

__all__ = ["export_checkpoint", "INPUT_BITS"]

INPUT_BITS = 8  # pixels are 8-bit unsigned


def _layer_tensors(model):
    """Per BinaryLinear: sign weights, bias and the following batch norm's statistics (float64 numpy)."""
    from torch import nn
    from train.binary import BinaryLinear
    mods = list(model.net)
    out = []
    for i, mod in enumerate(mods):
        if isinstance(mod, BinaryLinear):
            bn = mods[i + 1] if i + 1 < len(mods) else None
            if not isinstance(bn, nn.BatchNorm1d):
                raise ExportError(f"layer {len(out)}: BinaryLinear is not followed by batch norm")
            w = mod.weight.detach().double().numpy()
            out.append(dict(
                signs=np.where(w >= 0, 1, -1).astype(np.int8),  # sign(0) = +1, as the trainer binarises
                bias=(mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(w.shape[0])),
                mean=bn.running_mean.double().numpy(), var=bn.running_var.double().numpy(),
                gamma=bn.weight.detach().double().numpy(), beta=bn.bias.detach().double().numpy(), eps=bn.eps))
    return out


def _float_accuracy(model, images, labels):
    import torch
    scores = model.predict(torch.from_numpy(images), sign_weights=True)
    return float((scores.argmax(1).numpy() == labels).mean())


def _write(directory, fname, data):
    (Path(directory) / fname).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def export_checkpoint(checkpoint, out_dir):
    """Export ``checkpoint`` (``train/model.pt``) into ``out_dir`` atomically; returns the manifest."""
    from train import TrainError
    from train.data import load_dataset, write_idx
    from train.files import atomic_directory
    from train.trainer import load_model

    try:
        model, ck = load_model(checkpoint)
        cfg, mc = ck["config"], ck["model_config"]
        tensors = _layer_tensors(model)
        splits = load_dataset(cfg["dataset"])
    except TrainError as e:
        raise ExportError(str(e)) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{checkpoint}: checkpoint lacks {e}") from None
    sizes = mc["sizes"]
    if [t["signs"].shape[1] for t in tensors] + [tensors[-1]["signs"].shape[0]] != sizes:
        raise ExportError(f"{checkpoint}: weight shapes do not match layers {sizes}")
    abits, act_range = mc["abits"], mc["act_range"]
    test_images, test_labels = splits.test.images, splits.test.labels

    with atomic_directory(out_dir) as tmp:
        entries = []
        in_bits, in_max = INPUT_BITS, 2 ** INPUT_BITS - 1
        for i, t in enumerate(tensors):
            name = f"fc{i}"
            rows, cols = t["signs"].shape
            lo, hi = accumulator_bounds(cols, in_max)
            entry = {"name": name, "in_features": cols, "out_features": rows, "weights": f"{name}.weights",
                     "sha256": _write(tmp, f"{name}.weights", encode_weights(t["signs"])),
                     "in_bits": in_bits, "abits": None, "acc_bits": signed_bits(lo, hi), "acc_min": lo, "acc_max": hi}
            bn = {k: t[k] for k in ("mean", "var", "gamma", "beta", "bias", "eps")}
            if i < len(tensors) - 1:
                orient, thr = fold_thresholds(**bn, abits=abits, act_range=act_range, acc_min=lo, acc_max=hi)
                entry["abits"] = abits
                entry["activation"] = {
                    "kind": "thresholds", "file": f"{name}.thresholds", "levels": 2 ** abits - 1,
                    "sha256": _write(tmp, f"{name}.thresholds", encode_thresholds(orient, thr)),
                    "threshold_bits": signed_bits(lo, hi + 1),
                    "negative_orientation": int((orient < 0).sum())}
                in_bits, in_max = abits, 2 ** abits - 1
            else:
                m, b, shift = fold_scores(**bn)
                extremes = apply_scores(np.array([[lo] * rows, [hi] * rows]), m, b)
                entry["activation"] = {
                    "kind": "scores", "scale": m.tolist(), "offset": b.tolist(), "shift": shift,
                    "score_bits": signed_bits(int(extremes.min()), int(extremes.max()))}
            entries.append(entry)
        write_idx(Path(tmp) / "test-images.idx.gz", test_images)
        write_idx(Path(tmp) / "test-labels.idx.gz", test_labels.astype(np.uint8))
        sha = {k: hashlib.sha256((Path(tmp) / f"test-{k}.idx.gz").read_bytes()).hexdigest()
               for k in ("images", "labels")}
        manifest = {
            "format_version": MANIFEST_VERSION,
            "dataset": cfg["dataset"], "arch": cfg["arch"], "binarize": cfg["binarize"], "abits": abits,
            "input": {"shape": list(test_images.shape[1:]), "bits": INPUT_BITS, "signed": False,
                      "features": sizes[0]},
            "classes": sizes[-1],
            "layers": entries,
            "activation": {"function": "clamp(floor(y * L / R + 1/2), 0, L)", "L": 2 ** abits - 1, "R": act_range},
            "test_set": {"images": "test-images.idx.gz", "labels": "test-labels.idx.gz", "count": len(test_labels),
                         "images_sha256": sha["images"], "labels_sha256": sha["labels"]},
            "float_test_accuracy": _float_accuracy(model, test_images, test_labels),
            "golden_test_accuracy": None,
            "trained_test_accuracy_sign": ck.get("metrics", {}).get("test_accuracy_sign"),
        }
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        golden = GoldenModel(tmp)  # read back from the files alone: the check is of what was written
        manifest["golden_test_accuracy"] = float((golden.classify(test_images) == test_labels).mean())
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
