"""Checkpoint -> export directory. The only module of this stage that imports torch.

One exporter function per layer kind (:data:`EXPORTERS`) writes that layer's files and manifest entry; the manifest
is then read back through the same validating reader every later stage uses, and the golden model's accuracy on the
test set is recorded.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from . import ExportError
from .folding import (
    accumulator_bounds,
    apply_scores,
    fit_progression,
    fold_scores,
    fold_thresholds,
    progression_terms,
    progression_widths,
    signed_bits,
    threshold_storage_bits,
)
from .golden import GoldenModel
from .manifest import INPUT_BITS, MANIFEST, MANIFEST_VERSION, scores_sha256
from .packing import encode_progression, encode_thresholds, encode_weights

__all__ = ["export_checkpoint", "EXPORTERS", "THRESHOLD_MODES"]

#: ``--thresholds``: every hidden layer a table, every one a progression (refused where none is exact), or per layer
#: the progression where it is exact and stores fewer bits than the table
THRESHOLD_MODES = ("auto", "table", "progression")


def _write(directory, fname, data):
    (Path(directory) / fname).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _signs(module, layer):
    """A compute layer's ±1 matrix ``(rows, columns)`` in the export's column order: a conv filter ``(C_out, C_in,
    K, K)`` becomes ``(C_out, K*K*C_in)`` flattened ``(ky, kx, c)``; a dense layer's columns already follow the HWC
    order its input was flattened in during training."""
    w = module.weight.detach().double().cpu().numpy()
    if layer.kind == "conv2d":
        w = w.transpose(0, 2, 3, 1).reshape(layer.rows, layer.columns)
    return np.where(w >= 0, 1, -1).astype(np.int8)  # sign(0) = +1, as the trainer binarises


def _bn_params(module, bn):
    return dict(
        mean=bn.running_mean.double().cpu().numpy(),
        var=bn.running_var.double().cpu().numpy(),
        gamma=bn.weight.detach().double().cpu().numpy(),
        beta=bn.bias.detach().double().cpu().numpy(),
        bias=(module.bias.detach().double().cpu().numpy() if module.bias is not None else np.zeros(bn.num_features)),
        eps=bn.eps,
    )


def _export_compute(tmp, layer, ctx):
    """Weights, and thresholds (hidden) or score constants (output) of a conv or dense layer."""
    module, bn = ctx["modules"].pop(0)
    signs = _signs(module, layer)
    in_bits = ctx["bits"]
    lo, hi = accumulator_bounds(layer.columns, (1 << in_bits) - 1)
    entry = {
        **layer.to_dict(),
        "weights": f"{layer.name}.weights",
        "sha256": _write(tmp, f"{layer.name}.weights", encode_weights(signs)),
        "in_bits": in_bits,
        "abits": None,
        "acc_bits": signed_bits(lo, hi),
        "acc_min": lo,
        "acc_max": hi,
    }
    if layer.kind == "dense":
        entry.update(in_features=layer.columns, out_features=layer.rows)
    bnp = _bn_params(module, bn)
    if not ctx["last"]:
        abits = ctx["abits"]
        orient, thr = fold_thresholds(**bnp, abits=abits, act_range=ctx["act_range"], acc_min=lo, acc_max=hi)
        levels = 2**abits - 1
        entry["abits"] = abits
        fname = f"{layer.name}.thresholds"
        act = {
            "file": fname,
            "levels": levels,
            "threshold_bits": signed_bits(lo, hi + 1),
            "negative_orientation": int((orient < 0).sum()),
        }
        fit = _choose_progression(layer, thr, bnp, ctx, lo, hi)
        if fit is None:
            entry["activation"] = {
                "kind": "thresholds",
                **act,
                "sha256": _write(tmp, fname, encode_thresholds(orient, thr)),
            }
        else:
            f, a_fx, d_fx = fit
            a_bits, d_bits = progression_widths(lo, hi, levels, f)
            entry["activation"] = {
                "kind": "progression",
                **act,
                "frac_bits": f,
                "a_bits": a_bits,
                "d_bits": d_bits,
                "sha256": _write(tmp, fname, encode_progression(orient, a_fx, d_fx, f, levels)),
            }
        ctx["bits"] = abits
    else:
        m, b, shift = fold_scores(**bnp, acc_bound=hi)
        extremes = apply_scores(np.array([[lo] * layer.rows, [hi] * layer.rows]), m, b)
        entry["activation"] = {
            "kind": "scores",
            "scale": m.tolist(),
            "offset": b.tolist(),
            "shift": shift,
            "score_bits": signed_bits(int(extremes.min()), int(extremes.max())),
            "scores_sha256": scores_sha256(m.tolist(), b.tolist()),
        }
    return entry


def _choose_progression(layer, table, bnp, ctx, lo, hi):
    """``(F, A_fx, D_fx)`` when this hidden layer stores a progression (``ctx["thresholds"]``), else None."""
    mode = ctx["thresholds"]
    if mode == "table":
        return None
    rows, levels = table.shape
    a_est, d_est = progression_terms(**bnp, abits=ctx["abits"], act_range=ctx["act_range"])
    fit = fit_progression(table, a_est, d_est, acc_min=lo, acc_max=hi)
    if fit is None:
        if mode == "progression":
            raise ExportError(
                f"layer {layer.name!r}: no progression with up to the allowed fractional bits "
                f"reproduces its thresholds exactly; export with --thresholds table or auto"
            )
        return None
    if mode == "auto" and threshold_storage_bits(
        "progression", rows=rows, levels=levels, acc_min=lo, acc_max=hi, frac_bits=fit[0]
    ) >= threshold_storage_bits("table", rows=rows, levels=levels, acc_min=lo, acc_max=hi):
        return None
    return fit


def _export_pool(tmp, layer, ctx):
    return {**layer.to_dict(), "in_bits": ctx["bits"]}


#: layer kind -> ``f(directory, layer, context) -> manifest entry``
EXPORTERS = {"conv2d": _export_compute, "dense": _export_compute, "maxpool2d": _export_pool}


def _compute_modules(model):
    """``(binary module, its batch norm)`` per compute layer, in order."""
    from torch import nn

    from train.binary import BinaryConv2d, BinaryLinear

    mods = list(model.net)
    out = []
    for i, mod in enumerate(mods):
        if isinstance(mod, (BinaryLinear, BinaryConv2d)):
            bn = mods[i + 1] if i + 1 < len(mods) else None
            if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                raise ExportError(f"compute layer {len(out)}: its binary weights are not followed by batch norm")
            out.append((mod, bn))
    return out


def _float_accuracy(model, images, labels):
    import torch

    scores = model.predict(torch.from_numpy(images), sign_weights=True)
    return float((scores.argmax(1).numpy() == labels).mean())


def export_checkpoint(checkpoint, out_dir, *, warn=print, thresholds="auto"):
    """Export ``checkpoint`` (``train/model.pt``) into ``out_dir`` atomically; returns the manifest.

    ``thresholds`` (:data:`THRESHOLD_MODES`) chooses each hidden layer's threshold representation."""
    if thresholds not in THRESHOLD_MODES:
        raise ExportError(f"thresholds {thresholds!r}: choose one of {', '.join(THRESHOLD_MODES)}")
    from common import LutmacError
    from common.files import atomic_directory, check_output_dir
    from common.idx import write_idx

    check_output_dir(out_dir, stage="export", inputs=(Path(checkpoint).parent,))  # before torch loads (seconds)
    from train.data import load_dataset
    from train.trainer import load_model

    try:
        model, ck = load_model(checkpoint)
        cfg, mc = ck["config"], ck["model_config"]
        modules = _compute_modules(model)
        splits = load_dataset(cfg["dataset"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ExportError(f"{checkpoint}: checkpoint lacks {e}") from None
    except LutmacError as e:
        raise ExportError(str(e)) from None
    layers = model.layers
    if len(modules) != sum(layer.compute for layer in layers):
        raise ExportError(f"{checkpoint}: {len(modules)} binary layers for {len(layers)} layers")
    if tuple(splits.shape) != tuple(layers[0].in_shape):
        raise ExportError(
            f"{checkpoint}: trained on {list(layers[0].in_shape)} inputs, data set {cfg['dataset']!r} "
            f"has {list(splits.shape)}"
        )
    test_images, test_labels = splits.test.images, splits.test.labels
    synthetic = bool(getattr(splits, "synthetic", False))

    with atomic_directory(out_dir, stage="export", inputs=(Path(checkpoint).parent,)) as tmp:
        ctx = {
            "modules": list(modules),
            "bits": INPUT_BITS,
            "abits": mc["abits"],
            "act_range": mc["act_range"],
            "thresholds": thresholds,
        }
        entries = []
        for i, layer in enumerate(layers):
            ctx["last"] = i == len(layers) - 1
            entries.append(EXPORTERS[layer.kind](tmp, layer, ctx))
        # one channel: (N, H, W) as MNIST's own files; RGB: (N, H, W, C)
        stored = test_images[..., 0] if test_images.shape[-1] == 1 else test_images
        write_idx(Path(tmp) / "test-images.idx.gz", stored)
        write_idx(Path(tmp) / "test-labels.idx.gz", test_labels.astype(np.uint8))
        sha = {
            k: hashlib.sha256((Path(tmp) / f"test-{k}.idx.gz").read_bytes()).hexdigest() for k in ("images", "labels")
        }
        manifest = {
            "format_version": MANIFEST_VERSION,
            "dataset": cfg["dataset"],
            "arch": cfg["arch"],
            "binarize": cfg["binarize"],
            "abits": mc["abits"],
            "synthetic": synthetic,
            "input": {
                "shape": list(layers[0].in_shape),
                "bits": INPUT_BITS,
                "signed": False,
                "order": "HWC (raster, channels innermost)",
            },
            "classes": layers[-1].rows,
            "layers": entries,
            "activation": {
                "function": "clamp(floor(y * L / R + 1/2), 0, L)",
                "L": 2 ** mc["abits"] - 1,
                "R": mc["act_range"],
            },
            "test_set": {
                "images": "test-images.idx.gz",
                "labels": "test-labels.idx.gz",
                "count": len(test_labels),
                "images_sha256": sha["images"],
                "labels_sha256": sha["labels"],
            },
            "float_test_accuracy": _float_accuracy(model, test_images, test_labels),
            "golden_test_accuracy": None,
            "trained_test_accuracy_sign": ck.get("metrics", {}).get("test_accuracy_sign"),
        }
        if cfg["binarize"] == "stoch":
            real = ck.get("metrics", {}).get("test_accuracy")
            manifest["trained_test_accuracy_real"] = real
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        golden = GoldenModel(tmp)  # read back from the files alone: the check is of what was written
        manifest["golden_test_accuracy"] = float((golden.classify(test_images) == test_labels).mean())
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if (
        cfg["binarize"] == "stoch"
        and manifest.get("trained_test_accuracy_real") is not None
        and manifest["trained_test_accuracy_real"] - manifest["float_test_accuracy"] > 0.02
    ):
        warn(
            f"export: warning: the hardware runs sign(W): {100 * manifest['float_test_accuracy']:.2f}%, "
            f"{100 * (manifest['trained_test_accuracy_real'] - manifest['float_test_accuracy']):.1f} points below "
            f"the stochastic network's real-valued weights ({100 * manifest['trained_test_accuracy_real']:.2f}%)"
        )
    return manifest
