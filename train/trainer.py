"""The BinaryConnect training loop: Adam with per-layer W_LR_scale, exponential LR decay, best-validation model,
atomic per-epoch checkpoints and exact resume."""

import copy
import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import TrainError
from .data import load_dataset
from .files import atomic_path, atomic_write_json
from .model import BinaryMLP, parse_arch

__all__ = ["TrainConfig", "DEFAULT_EPOCHS", "squared_hinge_loss", "run_training", "load_model", "CHECKPOINT_FORMAT"]

DEFAULT_EPOCHS = {"digits": 60, "fashion-mnist": 40, "mnist": 250}
CHECKPOINT_FORMAT = "lutmac-binaryconnect"
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Everything that determines a run: two runs with equal configs give identical weights."""
    dataset: str = "digits"
    arch: str = "tfc"
    binarize: str = "det"
    abits: int = 8
    epochs: int = 60
    seed: int = 0
    batch_size: int = 100
    lr_start: float = 0.003     # the authors' MNIST values
    lr_end: float = 0.000002
    loss: str = "hinge"
    dropout_in: float = 0.0
    dropout_hidden: float = 0.0

    def validate(self):
        if self.binarize not in ("det", "stoch"):
            raise TrainError(f"binarize {self.binarize!r} must be 'det' or 'stoch'")
        if not 2 <= self.abits <= 8:
            raise TrainError(f"abits {self.abits} is outside 2..8")
        if self.epochs < 1:
            raise TrainError(f"epochs {self.epochs} must be at least 1")
        if self.batch_size < 1:
            raise TrainError(f"batch_size {self.batch_size} must be at least 1")
        if not (0 < self.lr_end <= self.lr_start):
            raise TrainError(f"learning rates must satisfy 0 < lr_end ({self.lr_end}) <= lr_start ({self.lr_start})")
        if self.loss not in ("hinge", "xent"):
            raise TrainError(f"loss {self.loss!r} must be 'hinge' or 'xent'")
        for name in ("dropout_in", "dropout_hidden"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainError(f"{name} {getattr(self, name)} must be in [0, 1)")


def squared_hinge_loss(scores, labels):
    """The authors' loss: mean over classes and samples of max(0, 1 - t * y)^2 with targets t in {-1, +1}."""
    t = 2.0 * nn.functional.one_hot(labels, scores.shape[1]).to(scores.dtype) - 1.0
    return torch.clamp(1.0 - t * scores, min=0.0).square().mean()


def _errors(scores, labels):
    return int((scores.argmax(1) != labels).sum())


def _make_optimizer(model):
    # binary weights get W_LR_scale; batch norm and biases plain Adam (scale 1)
    groups = []
    for layer in model.binary_layers():
        groups.append({"params": [layer.weight], "lr_scale": layer.lr_scale})
    binary_ids = {id(layer.weight) for layer in model.binary_layers()}
    rest = [p for p in model.parameters() if id(p) not in binary_ids]
    groups.append({"params": rest, "lr_scale": 1.0})
    return torch.optim.Adam(groups, lr=1.0)


def _lr_at(cfg, epoch):
    # LR_start * LR_decay**epoch with LR_decay = (LR_end / LR_start) ** (1 / epochs), as the authors decay it
    return cfg.lr_start * (cfg.lr_end / cfg.lr_start) ** (epoch / cfg.epochs)


def _tensor(ds):
    return torch.from_numpy(ds.images.reshape(len(ds), -1).astype(np.float32)), torch.from_numpy(ds.labels)


def _save(path, obj):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load_checkpoint(path, cfg):
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainError(f"{path}: no checkpoint to resume from") from None
    except Exception as e:  # torch raises many types for a damaged file
        raise TrainError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "resume" not in ck:
        raise TrainError(f"{path}: not a lutmac training checkpoint")
    saved = ck["config"]
    for key, value in dataclasses.asdict(cfg).items():
        if saved.get(key) != value:
            raise TrainError(f"{path}: checkpoint was trained with {key}={saved.get(key)!r}, this run asks {value!r}")
    return ck


def run_training(cfg, out_dir, *, resume=False, progress=True):
    """Train and write ``model.pt``, ``metrics.json``, ``curves.png``, ``weights.png`` under ``out_dir``.

    ``checkpoint.pt`` is rewritten atomically after every epoch; ``resume=True`` continues from it and ends with
    exactly the weights an uninterrupted run gives.
    """
    cfg.validate()
    splits = load_dataset(cfg.dataset)
    in_features = int(np.prod(splits.shape))
    sizes = parse_arch(cfg.arch, in_features, splits.classes)
    out_dir = Path(out_dir)
    ck_path = out_dir / "checkpoint.pt"
    ck = _load_checkpoint(ck_path, cfg) if resume else None

    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    model = BinaryMLP(sizes, binarize=cfg.binarize, abits=cfg.abits,
                      dropout_in=cfg.dropout_in, dropout_hidden=cfg.dropout_hidden)
    opt = _make_optimizer(model)
    history, best, start, elapsed = [], None, 0, 0.0
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["resume"]["optimizer"])
        torch.set_rng_state(ck["resume"]["rng"])
        shuffle.set_state(ck["resume"]["shuffle"])
        history, best, start, elapsed = ck["history"], ck["best"], ck["epoch"], ck["seconds"]

    xtr, ytr = _tensor(splits.train)
    xva, yva = _tensor(splits.val)
    xte, yte = _tensor(splits.test)
    lossf = squared_hinge_loss if cfg.loss == "hinge" else nn.functional.cross_entropy

    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=f"train {cfg.dataset}-{cfg.arch}",
               unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = _lr_at(cfg, epoch)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        model.train()
        perm = torch.randperm(len(ytr), generator=shuffle)
        loss_sum, train_err = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            scores = model(xtr[idx])
            loss = lossf(scores, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clip_weights_()
            loss_sum += float(loss.detach()) * len(idx)
            train_err += _errors(scores.detach(), ytr[idx])
        val_err = _errors(model.predict(xva), yva) / len(yva)
        test_err = _errors(model.predict(xte), yte) / len(yte)
        elapsed += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / len(ytr),
                        "train_error": train_err / len(ytr), "val_error": val_err, "test_error": test_err})
        if best is None or val_err <= best["val_error"]:  # the authors keep the later epoch on ties
            best = {"epoch": epoch + 1, "val_error": val_err, "model": copy.deepcopy(model.state_dict())}
        bar.set_postfix(loss=f"{loss_sum / len(ytr):.4f}", val_err=f"{100 * val_err:.2f}%", lr=f"{lr:.2e}")
        _save(ck_path, {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                        "config": dataclasses.asdict(cfg), "epoch": epoch + 1, "seconds": elapsed,
                        "model": model.state_dict(), "history": history, "best": best,
                        "resume": {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                                   "shuffle": shuffle.get_state()}})
    bar.close()

    model.load_state_dict(best["model"])
    test_accuracy = 1.0 - _errors(model.predict(xte), yte) / len(yte)
    test_accuracy_sign = 1.0 - _errors(model.predict(xte, sign_weights=True), yte) / len(yte)
    metrics = {
        "dataset": cfg.dataset, "arch": cfg.arch, "layers": sizes, "binarize": cfg.binarize, "abits": cfg.abits,
        "epochs": cfg.epochs, "best_epoch": best["epoch"], "val_accuracy": 1.0 - best["val_error"],
        "test_accuracy": test_accuracy, "test_accuracy_sign": test_accuracy_sign, "seconds": round(elapsed, 3),
        "seconds_per_epoch": round(elapsed / max(1, len(history)), 4), "seed": cfg.seed,
        "config": dataclasses.asdict(cfg), "history": history,
    }
    _save(out_dir / "model.pt", {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                                  "config": dataclasses.asdict(cfg), "model_config": model.config(),
                                  "model": best["model"], "metrics": {k: v for k, v in metrics.items()
                                                                      if k != "history"}})
    atomic_write_json(out_dir / "metrics.json", metrics)
    from .plots import plot_curves, plot_weights
    plot_curves(out_dir / "curves.png", history, title=f"{cfg.dataset} {cfg.arch} {cfg.binarize} A{cfg.abits}")
    plot_weights(out_dir / "weights.png", model, title=f"{cfg.dataset} {cfg.arch} {cfg.binarize}")
    return metrics


def load_model(path):
    """Read back ``model.pt``: the :class:`BinaryMLP` (evaluation mode) and the saved dictionary."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint (run `make train` first)") from None
    except Exception as e:
        raise TrainError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "model_config" not in ck:
        raise TrainError(f"{path}: not a lutmac model checkpoint")
    mc = ck["model_config"]
    model = BinaryMLP(mc["sizes"], binarize=mc["binarize"], abits=mc["abits"])
    try:
        model.load_state_dict(ck["model"], strict=False)
    except RuntimeError as e:
        raise TrainError(f"{path}: weights do not fit layers {mc['sizes']} ({str(e).splitlines()[0][:120]})") from None
    model.eval()
    return model, ck
