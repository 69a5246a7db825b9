"""python -m train: BinaryConnect training with outputs per the lutmac contract."""

import argparse
import os
import sys

_EPILOG = (
    "outputs in OUT: model.pt, metrics.json, curves.png, weights.png, checkpoint.pt (resume state). "
    "python -m train.plots --runs A B -o fig.png overlays the weight histograms of several runs (det vs stoch)."
)


def main(argv=None):
    from .arch import ARCH_PRESETS
    from .data import DATASETS
    from .trainer import TrainConfig, check_run, recipe, run_training

    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a BinaryConnect network (+1/-1 weights in the forward and backward pass, real-valued "
        "weights updated and clipped to [-1, 1]) on a data set, keeping the best validation epoch.",
        epilog=_EPILOG,
    )
    p.add_argument(
        "--dataset",
        default="digits",
        help=f"one of {', '.join(DATASETS)}, or a path to an .npz or a folder of IDX files (default digits)",
    )
    p.add_argument(
        "--arch",
        default=None,
        help=f"preset {'/'.join(ARCH_PRESETS)}, or layers like 16c3-mp2-32c3-10 or sizes like 784-256-10 "
        f"(default tfc for digits, else sfc)",
    )
    p.add_argument(
        "--binarize",
        default="det",
        choices=("det", "stoch"),
        help="det: sign(W); stoch: Bernoulli with hard-sigmoid probability, then a deterministic fine-tune "
        "(default det)",
    )
    p.add_argument("--abits", type=int, default=8, help="hidden activation bits, 2..8 (default 8)")
    p.add_argument("--epochs", type=int, default=None, help="default per data set (the paper's where it has one)")
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="stoch: deterministic epochs at the end so the sign weights the hardware runs are trained "
        "(default a tenth of --epochs; 0: none)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (weights, batch order, stochastic binarisation; default 0)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default per data set (100; 50 for CIFAR-10/SVHN)")
    p.add_argument("--lr-start", type=float, default=None, help="default per data set (0.003)")
    p.add_argument("--lr-end", type=float, default=None, help="default per data set (2e-6)")
    p.add_argument(
        "--loss",
        default="hinge",
        choices=("hinge", "xent"),
        help="hinge: squared hinge, the paper's; xent: cross-entropy (default hinge)",
    )
    p.add_argument("--dropout-in", type=float, default=0.0, help="dropout rate on the input pixels (default 0)")
    p.add_argument(
        "--dropout-hidden", type=float, default=0.0, help="dropout rate after each hidden activation (default 0)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (default auto)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine, launched as torchrun --standalone does; with CUDA at most one "
        "per GPU (default 1)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--out", required=True, help="output directory (e.g. build/digits-tfc/train)")
    a = p.parse_args(argv)
    if a.dataset not in DATASETS and os.path.exists(a.dataset):
        a.dataset = os.path.abspath(a.dataset)  # the checkpoint names the data; export reloads it from anywhere
    defaults = TrainConfig()
    r = recipe(a.dataset)

    def pick(given, key):  # 0 is a value, not "unset": EPOCHS=0 is refused, not replaced by the default
        return given if given is not None else r.get(key, getattr(defaults, key))

    cfg = TrainConfig(
        dataset=a.dataset,
        arch=a.arch or ("tfc" if a.dataset == "digits" else "sfc"),
        binarize=a.binarize,
        abits=a.abits,
        epochs=pick(a.epochs, "epochs"),
        seed=a.seed,
        batch_size=pick(a.batch_size, "batch_size"),
        lr_start=pick(a.lr_start, "lr_start"),
        lr_end=pick(a.lr_end, "lr_end"),
        loss=a.loss,
        dropout_in=a.dropout_in,
        dropout_hidden=a.dropout_hidden,
        finetune_epochs=a.finetune_epochs,
    )
    if a.nproc != 1 and "RANK" not in os.environ:  # the launcher; its processes run the code below
        from .launch import launch

        check_run(cfg, a.out, resume=a.resume)  # once here: an error every process would meet is one line
        return launch(a.nproc, a.device, sys.argv[1:] if argv is None else argv)
    m = run_training(
        cfg, a.out, resume=a.resume, progress=not a.quiet, device=a.device, log=lambda s: print(s, file=sys.stderr)
    )
    if m["world_size"] > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 reports
    synthetic = " [synthetic data: random images, accuracy is meaningless]" if m["synthetic"] else ""
    paper = (
        f"test accuracy {100 * m['test_accuracy']:.2f}% (real-valued weights, the paper's evaluation), "
        if cfg.binarize == "stoch"
        else ""
    )
    print(
        f"{cfg.dataset} {cfg.arch} {cfg.binarize} A{cfg.abits}: {paper}sign-weight test accuracy "
        f"{100 * m['test_accuracy_sign']:.2f}% (what the hardware runs), best epoch {m['best_epoch']}, "
        f"{m['seconds']:.1f} s on {m['device']}{synthetic} -> {a.out}"
    )
    if cfg.binarize == "stoch" and m["test_accuracy"] - m["test_accuracy_sign"] > 0.02:
        print(
            f"train: warning: the sign weights the hardware runs reach {100 * m['test_accuracy_sign']:.2f}%, "
            f"{100 * (m['test_accuracy'] - m['test_accuracy_sign']):.1f} points below the real-valued weights; "
            f"train longer or with more --finetune-epochs",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("train", main)
