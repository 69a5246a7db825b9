"""python -m train: BinaryConnect training with outputs per the lutmac contract."""

import argparse

from . import TrainError

_EPILOG = "outputs in OUT: model.pt, metrics.json, curves.png, weights.png, checkpoint.pt (resume state)"


def main(argv=None):
    from .data import DATASETS
    from .model import ARCH_PRESETS
    from .trainer import DEFAULT_EPOCHS, TrainConfig

    p = argparse.ArgumentParser(prog="python -m train", description="Train a BinaryConnect MLP.", epilog=_EPILOG)
    p.add_argument("--dataset", default="digits", help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--arch", default=None,
                   help=f"preset {'/'.join(ARCH_PRESETS)} or sizes like 784-256-256-10 (default tfc for digits, else sfc)")
    p.add_argument("--binarize", default="det", help="det (sign) or stoch (hard-sigmoid Bernoulli)")
    p.add_argument("--abits", type=int, default=8, help="hidden activation bits, 2..8 (default 8)")
    p.add_argument("--epochs", type=int, default=None, help=f"default per data set {DEFAULT_EPOCHS}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr-start", type=float, default=0.003)
    p.add_argument("--lr-end", type=float, default=0.000002)
    p.add_argument("--loss", default="hinge", help="hinge (squared hinge, the paper's) or xent")
    p.add_argument("--dropout-in", type=float, default=0.0)
    p.add_argument("--dropout-hidden", type=float, default=0.0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("-o", "--out", required=True, help="output directory (e.g. build/digits-tfc/train)")
    a = p.parse_args(argv)
    if a.dataset not in DATASETS:
        p.exit(2, f"train: error: dataset {a.dataset!r} is unknown; choose one of {', '.join(DATASETS)}\n")
    cfg = TrainConfig(dataset=a.dataset, arch=a.arch or ("tfc" if a.dataset == "digits" else "sfc"),
                      binarize=a.binarize, abits=a.abits, epochs=a.epochs or DEFAULT_EPOCHS[a.dataset], seed=a.seed,
                      batch_size=a.batch_size, lr_start=a.lr_start, lr_end=a.lr_end, loss=a.loss,
                      dropout_in=a.dropout_in, dropout_hidden=a.dropout_hidden)
    from .trainer import run_training
    m = run_training(cfg, a.out, resume=a.resume, progress=not a.quiet)
    print(f"{cfg.dataset} {cfg.arch} {cfg.binarize} A{cfg.abits}: test accuracy {100 * m['test_accuracy']:.2f}% "
          f"(sign weights {100 * m['test_accuracy_sign']:.2f}%), best epoch {m['best_epoch']}/{cfg.epochs}, "
          f"{m['seconds']:.1f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    from train.cli import run_stage
    run_stage("train", main, TrainError)
