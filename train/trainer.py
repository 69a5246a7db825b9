"""The BinaryConnect training loop: Adam with per-layer W_LR_scale, exponential LR decay, best-validation model,
atomic per-epoch checkpoints and exact resume, on the CPU or a CUDA device."""

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from common import Interrupted
from common.files import atomic_path, atomic_write_json, check_output_dir, claim_directory

from . import TrainError
from .arch import parse_arch
from .data import load_dataset
from .model import BinaryNet

__all__ = [
    "TrainConfig",
    "RECIPES",
    "DEFAULT_EPOCHS",
    "recipe",
    "squared_hinge_loss",
    "run_training",
    "load_model",
    "CHECKPOINT_FORMAT",
    "resolve_device",
]

CHECKPOINT_FORMAT = "lutmac-binaryconnect"
CHECKPOINT_VERSION = 2

# Per data set: the authors' settings where the paper has them (MNIST: mnist.py; CIFAR-10: cifar10.py, 500 epochs,
# batch 50; SVHN: svhn.py, 200 epochs, batch 50, LR 0.01 -> 3e-6), short runs for the offline sets.
RECIPES = {
    "digits": {"epochs": 60},
    "mnist": {"epochs": 250},
    "fashion-mnist": {"epochs": 40},
    "cifar10": {"epochs": 500, "batch_size": 50},
    "svhn": {"epochs": 200, "batch_size": 50, "lr_start": 0.01, "lr_end": 0.000003},
    "cifar10-shape": {"epochs": 2},
}
DEFAULT_EPOCHS = {name: r["epochs"] for name, r in RECIPES.items()}
_OWN_DATA = {"epochs": 40}


def recipe(dataset):
    """The defaults (epochs, and batch size / learning rates where they differ) for ``dataset``."""
    return RECIPES.get(dataset, _OWN_DATA)


@dataclass
class TrainConfig:
    """Everything that determines a run: two runs with equal configs give identical weights (on one device)."""

    dataset: str = "digits"
    arch: str = "tfc"
    binarize: str = "det"
    abits: int = 8
    epochs: int = 60
    seed: int = 0
    batch_size: int = 100
    lr_start: float = 0.003  # the authors' MNIST values
    lr_end: float = 0.000002
    loss: str = "hinge"
    dropout_in: float = 0.0
    dropout_hidden: float = 0.0
    # stoch only: epochs of deterministic (sign) training after the stochastic ones, so the weights the hardware
    # runs, sign(W), are the ones trained last (None: a tenth of `epochs`, at least 1; 0: none)
    finetune_epochs: int | None = None

    def validate(self):
        if self.binarize not in ("det", "stoch"):
            raise TrainError(f"binarize {self.binarize!r} must be 'det' or 'stoch'")
        if not isinstance(self.abits, int) or not 2 <= self.abits <= 8:
            raise TrainError(f"abits {self.abits} is outside 2..8")
        if not isinstance(self.epochs, int) or self.epochs < 1:
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
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise TrainError(f"finetune_epochs {self.finetune_epochs} must be >= 0")

    @property
    def finetune(self):
        """Deterministic fine-tune epochs after the stochastic ones (0 for det runs)."""
        if self.binarize != "stoch":
            return 0
        return max(1, self.epochs // 10) if self.finetune_epochs is None else self.finetune_epochs


def resolve_device(spec):
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]`` -> :class:`torch.device`, or :class:`TrainError`."""
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise TrainError(f"device {spec!r} must be auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"device {spec!r}: no CUDA device is available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise TrainError(f"device {spec!r} must be auto, cpu or cuda[:N]")
    return device


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
    # LR_start * LR_decay**epoch with LR_decay = (LR_end / LR_start) ** (1 / epochs), as the authors decay it; the
    # deterministic fine-tune of a stochastic run starts again a decade lower and decays to LR_end
    if epoch < cfg.epochs:
        return cfg.lr_start * (cfg.lr_end / cfg.lr_start) ** (epoch / cfg.epochs)
    start = cfg.lr_start / 10
    return start * (cfg.lr_end / start) ** ((epoch - cfg.epochs) / cfg.finetune)


def _save(path, obj):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _file_identity(path):
    """``(inode, mtime)`` of ``path`` or ``None``: a checkpoint written atomically (a rename) changes both."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _load_checkpoint(path, cfg):
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainError(f"{path}: no checkpoint to resume from") from None
    except Exception as e:  # torch raises many types for a damaged file
        raise TrainError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "resume" not in ck:
        raise TrainError(f"{path}: not a lutmac training checkpoint")
    saved = ck["config"]
    for key, value in dataclasses.asdict(cfg).items():
        if saved.get(key) != value:
            raise TrainError(f"{path}: checkpoint was trained with {key}={saved.get(key)!r}, this run asks {value!r}")
    return ck


class _World:
    """This process's place under ``torchrun`` (``rank``, ``size``), or a world of one."""

    def __init__(self, device):
        self.size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.size > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def sum(self, value):
        """``value`` summed over all ranks (an int or float)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item()

    def average_buffers(self, model):
        """Batch-norm running statistics averaged over the ranks, so every rank holds the same model (each rank
        normalises its own share of a batch during training: per-rank statistics, SyncBatchNorm would need GPUs)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for buf in model.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf)
                buf /= self.size

    def wait_for_all(self):
        """Return once every rank has reached this point (rank 0 writes the files while the others wait: a gloo group
        torn down by one process while another still works in it can crash the one still working)."""
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self):
        if self.size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _evaluate(model, x, y, world, *, sign_weights=False):
    """Error rate on ``(x, y)``, each rank evaluating every ``world.size``-th image."""
    part = slice(world.rank, None, world.size)
    errors = _errors(model.predict(x[part], sign_weights=sign_weights), y[part])
    return world.sum(errors) / len(y)


def _batches(cfg, n, epoch, shuffle, world, device):
    """Index batches of one epoch for this rank. One process: a permutation from the run's own generator (the
    order resumes exactly). Under torchrun: :class:`~torch.utils.data.DistributedSampler` (seeded, set to the
    epoch), each rank taking ``batch_size / world`` of every global batch."""
    if world.size == 1:
        perm = torch.randperm(n, generator=shuffle).to(device)
        return [perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=world.size, rank=world.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(sampler), device=device)
    per = max(1, cfg.batch_size // world.size)
    return [idx[i : i + per] for i in range(0, len(idx), per)]


def run_training(cfg, out_dir, *, resume=False, progress=True, device="cpu", log=print):
    """Train and write ``model.pt``, ``metrics.json``, ``curves.png``, ``weights.png`` under ``out_dir``.

    ``checkpoint.pt`` is rewritten atomically after every epoch; ``resume=True`` continues from it and ends with
    exactly the weights an uninterrupted run gives. Ctrl-C raises :class:`common.Interrupted` saying how to resume.
    A stochastic run ends with :attr:`TrainConfig.finetune` deterministic epochs. Under ``torchrun`` every rank
    trains its share of each batch (gradients averaged by DistributedDataParallel) and rank 0 alone writes files.
    """
    world = _World(resolve_device(device))
    try:
        metrics = _train(cfg, out_dir, resume=resume, progress=progress, world=world, log=log)
        world.wait_for_all()
        return metrics
    finally:
        world.close()


def check_run(cfg, out_dir, *, resume=False):
    """Raise :class:`TrainError` (or an output error) for what would stop a run before its first epoch: the settings,
    the data, the architecture on it, the output folder and, to resume, the checkpoint. Returns the data, the layers
    and the checkpoint (or ``None``). ``python -m train --nproc N`` calls it once before starting any process, so an
    error every process would meet is one line."""
    cfg.validate()
    splits = load_dataset(cfg.dataset)
    layers = parse_arch(cfg.arch, splits.shape, splits.classes)
    check_output_dir(Path(out_dir), stage="train", in_place=True)
    ck = _load_checkpoint(Path(out_dir) / "checkpoint.pt", cfg) if resume else None
    return splits, layers, ck


def _train(cfg, out_dir, *, resume, progress, world, log):
    device, lead = world.device, world.rank == 0
    splits, layers, ck = check_run(cfg, out_dir, resume=resume)  # before claiming the folder: a refusal leaves nothing
    out_dir = claim_directory(out_dir, stage="train") if lead else Path(out_dir)
    ck_path = out_dir / "checkpoint.pt"

    # the same seed on every rank: identical initial weights and identical stochastic binarisation samples, so a
    # global batch sees one Wb as in a single process
    torch.manual_seed(cfg.seed)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    model = BinaryNet(
        layers, binarize=cfg.binarize, abits=cfg.abits, dropout_in=cfg.dropout_in, dropout_hidden=cfg.dropout_hidden
    )
    history, best, start, elapsed, stoch_best = [], None, 0, 0.0, None
    if ck is not None:
        model.load_state_dict(ck["model"])
        torch.set_rng_state(ck["resume"]["rng"])
        shuffle.set_state(ck["resume"]["shuffle"])
        history, best, start, elapsed = ck["history"], ck["best"], ck["epoch"], ck["seconds"]
        stoch_best = ck.get("stochastic_best")
        if lead:
            log(f"train: resuming from epoch {start} of {cfg.epochs + cfg.finetune} ({ck_path})")
    model.to(device)
    opt = _make_optimizer(model)
    if ck is not None:
        opt.load_state_dict(ck["resume"]["optimizer"])
    step_model = model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # buffers stay per rank (each normalises its share) and are averaged at every epoch's end
        step_model = DistributedDataParallel(model, forward_sync_buffers=False)
        # a one-channel conv's weight gradient has an arbitrary stride on its size-1 dimension; DDP copies it into
        # its bucket (a few hundred values) and warns at every backward pass of the run
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    # whole splits on the device as uint8 (a quarter of float32's memory); batches are converted as they are used
    def tensors(ds):
        return torch.from_numpy(ds.images).to(device), torch.from_numpy(ds.labels).to(device)

    (xtr, ytr), (xva, yva), (xte, yte) = tensors(splits.train), tensors(splits.val), tensors(splits.test)
    lossf = squared_hinge_loss if cfg.loss == "hinge" else nn.functional.cross_entropy
    total = cfg.epochs + cfg.finetune

    bar = tqdm(
        range(start, total),
        initial=start,
        total=total,
        desc=f"train {cfg.dataset}-{cfg.arch}",
        unit="epoch",
        disable=not (progress and lead),
        dynamic_ncols=True,
    )
    epoch = saved = start
    pending = None  # (epoch, the checkpoint file's identity before) while a checkpoint is being written
    try:
        for epoch in bar:
            if epoch == cfg.epochs and cfg.finetune:
                # end of the stochastic phase: keep its best model for the paper's evaluation, then fine-tune the
                # sign weights from it (the validation choice restarts: it is now made on what hardware runs)
                stoch_best = best
                model.load_state_dict(best["model"])
                best = None
            model.set_stochastic(cfg.binarize == "stoch" and epoch < cfg.epochs)
            t0 = time.perf_counter()
            lr = _lr_at(cfg, epoch)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_scale"]
            step_model.train()
            loss_sum, train_err, seen = 0.0, 0, 0
            for idx in _batches(cfg, len(ytr), epoch, shuffle, world, device):
                scores = step_model(xtr[idx])
                loss = lossf(scores, ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                model.clip_weights_()
                loss_sum += float(loss.detach()) * len(idx)
                train_err += _errors(scores.detach(), ytr[idx])
                seen += len(idx)
            world.average_buffers(model)
            loss_sum, train_err, seen = world.sum(loss_sum), world.sum(train_err), world.sum(seen)
            val_err = _evaluate(model, xva, yva, world)
            test_err = _evaluate(model, xte, yte, world)
            elapsed += time.perf_counter() - t0
            history.append(
                {
                    "epoch": epoch + 1,
                    "lr": lr,
                    "train_loss": loss_sum / seen,
                    "train_error": train_err / seen,
                    "val_error": val_err,
                    "test_error": test_err,
                    "phase": "stochastic" if model.binary_layers()[0].stochastic else "deterministic",
                }
            )
            if best is None or val_err <= best["val_error"]:  # the authors keep the later epoch on ties
                best = {"epoch": epoch + 1, "val_error": val_err, "model": _cpu_state(model)}
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", val_err=f"{100 * val_err:.2f}%", lr=f"{lr:.2e}")
            if lead:
                pending = (epoch + 1, _file_identity(ck_path))
                _save(
                    ck_path,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "version": CHECKPOINT_VERSION,
                        "config": dataclasses.asdict(cfg),
                        "epoch": epoch + 1,
                        "seconds": elapsed,
                        "model": _cpu_state(model),
                        "history": history,
                        "best": best,
                        "stochastic_best": stoch_best,
                        "resume": {
                            "optimizer": opt.state_dict(),
                            "rng": torch.get_rng_state(),
                            "shuffle": shuffle.get_state(),
                        },
                    },
                )
                saved, pending = epoch + 1, None
    except KeyboardInterrupt:
        bar.close()
        if pending is not None and _file_identity(ck_path) != pending[1]:
            saved = pending[0]  # the write's last step, the rename, had happened: the new checkpoint is there
        raise Interrupted(
            f"interrupted in epoch {epoch + 1} of {total} ({saved} complete, saved in "
            f"{ck_path}); resume with `make train RESUME=1` and the same variables "
            f"(python -m train ... --resume)"
        ) from None
    bar.close()

    model.load_state_dict(best["model"])
    test_accuracy_sign = 1.0 - _evaluate(model, xte, yte, world, sign_weights=True)
    if stoch_best is not None:
        # the paper's evaluation of a stochastic run: its real-valued weights, before the fine-tune
        model.load_state_dict(stoch_best["model"])
    model.set_stochastic(cfg.binarize == "stoch")
    test_accuracy = 1.0 - _evaluate(model, xte, yte, world)
    stoch_sign = 1.0 - _evaluate(model, xte, yte, world, sign_weights=True) if stoch_best is not None else None
    model.load_state_dict(best["model"])
    metrics = {
        "dataset": cfg.dataset,
        "arch": cfg.arch,
        "layers": [layer.to_dict() for layer in layers],
        "synthetic": bool(getattr(splits, "synthetic", False)),
        "binarize": cfg.binarize,
        "abits": cfg.abits,
        "epochs": cfg.epochs,
        "finetune_epochs": cfg.finetune,
        "best_epoch": best["epoch"],
        "val_accuracy": 1.0 - best["val_error"],
        "test_accuracy": test_accuracy,
        "test_accuracy_sign": test_accuracy_sign,
        "test_accuracy_sign_before_finetune": stoch_sign,
        "seconds": round(elapsed, 3),
        "seconds_per_epoch": round(elapsed / max(1, len(history)), 4),
        "seed": cfg.seed,
        "device": str(world.device),
        "world_size": world.size,
        "config": dataclasses.asdict(cfg),
        "history": history,
    }
    if not lead:
        return metrics
    _save(
        out_dir / "model.pt",
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": dataclasses.asdict(cfg),
            "model_config": model.config(),
            "model": best["model"],
            "metrics": {k: v for k, v in metrics.items() if k != "history"},
        },
    )
    atomic_write_json(out_dir / "metrics.json", metrics)
    from .plots import plot_curves, plot_weights

    model.cpu()
    plot_curves(out_dir / "curves.png", history, title=f"{cfg.dataset} {cfg.arch} {cfg.binarize} A{cfg.abits}")
    plot_weights(out_dir / "weights.png", model, title=f"{cfg.dataset} {cfg.arch} {cfg.binarize}")
    return metrics


def _cpu_state(model):
    # checkpoints hold CPU tensors, so a GPU-trained model exports on a machine without one
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def load_model(path):
    """Read back ``model.pt``: the :class:`BinaryNet` (evaluation mode, CPU) and the saved dictionary."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such checkpoint (run `make train` first)") from None
    except Exception as e:
        raise TrainError(f"{path}: unreadable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "model_config" not in ck:
        raise TrainError(f"{path}: not a lutmac model checkpoint")
    mc = ck["model_config"]
    if "layers" not in mc:
        raise TrainError(f"{path}: a checkpoint of an older lutmac (no layer list); train it again with `make train`")
    try:
        model = BinaryNet.from_config(mc)
        model.load_state_dict(ck["model"], strict=False)
    except (RuntimeError, KeyError, TypeError) as e:
        raise TrainError(f"{path}: weights do not fit the saved layers ({str(e).splitlines()[0][:120]})") from None
    model.eval()
    return model, ck
