"""Training figures: the BinaryConnect learning curves, the latent-weight histogram of a run, and the histograms of
several runs of one network on shared axes (``python -m train.plots``: a det run beside a stoch run, as in the
BinaryConnect paper's figure of first-layer weights)."""

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from common.files import atomic_path  # noqa: E402

from . import TrainError  # noqa: E402

__all__ = ["plot_curves", "plot_weights", "plot_weight_runs", "main"]


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _log_percent_axis(ax, values):
    """Log-scale y ticks in plain percent (``2``, ``5``, ``10``, ``20``), as many per decade as the range allows."""
    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 1.0
    subs = (
        (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades <= 1 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
    )
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_curves(path, history, *, title=""):
    """Training, validation and test error per epoch on a log scale; a stochastic run's deterministic fine-tune is
    marked where it starts."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    values = []
    for key, label in (("train_error", "train"), ("val_error", "validation"), ("test_error", "test")):
        ys = [100 * h[key] for h in history]
        values += ys
        ax.plot(epochs, ys, label=label, marker="." if len(epochs) <= 20 else None)
    phases = [h.get("phase") for h in history]
    if "stochastic" in phases and "deterministic" in phases:
        start = epochs[phases.index("deterministic")]
        ax.axvline(start - 0.5, color="0.4", linestyle=":", linewidth=1, label="deterministic fine-tune")
    _log_percent_axis(ax, values)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%, log scale)")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend()
    ax.set_title(f"BinaryConnect learning curves {title}".strip())
    _save(fig, path)


def _layer_weights(model):
    """[(layer name, "in->out", real-valued weights as a flat array)] of a :class:`BinaryNet`'s compute layers."""
    layers = [layer for layer in model.layers if layer.compute]
    return [
        (layer.name, f"{layer.columns}\u2192{layer.rows}", module.weight.detach().flatten().cpu().numpy())
        for layer, module in zip(layers, model.binary_layers())
    ]


def _histograms(path, runs, *, title, bins=60):
    """One panel per layer, each run's histogram of real-valued weights in it. ``runs``: [(label, _layer_weights)],
    all of the same layers."""
    layers = runs[0][1]
    fig, axes = plt.subplots(
        1, len(layers), figsize=(max(4.0, 3.0 * len(layers)), 3.0), squeeze=False, layout="constrained"
    )
    for i, (ax, (name, shape, _)) in enumerate(zip(axes[0], layers)):
        for k, (label, weights) in enumerate(runs):
            w = weights[i][2]
            if len(runs) == 1:
                ax.hist(w, bins=bins, range=(-1, 1), color="C0")
            else:
                ax.hist(w, bins=bins, range=(-1, 1), color=f"C{k}", alpha=0.35, label=label)
                ax.hist(w, bins=bins, range=(-1, 1), color=f"C{k}", histtype="step", linewidth=1.2)
        ax.set_title(f"{name} ({shape})", fontsize=9)
        ax.set_xlabel("real-valued weight W")
        ax.set_xlim(-1.05, 1.05)
    axes[0][0].set_ylabel("weights per bin")
    if len(runs) > 1:
        axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def plot_weights(path, model, *, title=""):
    """Histogram of each compute layer's real-valued (latent) weights, clipped to [-1, 1] in training."""
    _histograms(
        path, [("", _layer_weights(model))], title=f"Real-valued weights: {title}" if title else "Real-valued weights"
    )


def plot_weight_runs(path, run_dirs, *, labels=None, layers=None, bins=60):
    """The real-valued weights of several runs of the same network (``run_dirs``: train output folders holding
    ``model.pt``), overlaid per layer: a det run beside a stoch run shows the paper's comparison. ``layers``: layer
    names to show (default every compute layer). Returns the labels used."""
    from .trainer import load_model

    if not run_dirs:
        raise TrainError("give at least one run (a train output directory)")
    runs, configs = [], []
    for d in run_dirs:
        f = Path(d) / "model.pt" if Path(d).is_dir() else Path(d)
        model, ck = load_model(f)
        weights = _layer_weights(model)
        if layers:
            names = [w[0] for w in weights]
            unknown = [n for n in layers if n not in names]
            if unknown:
                raise TrainError(f"{f}: no compute layer {unknown[0]!r} (it has {', '.join(names)})")
            weights = [w for w in weights if w[0] in layers]
        runs.append(weights)
        configs.append((f, ck.get("config", {})))
    first = [(n, s) for n, s, _ in runs[0]]
    for (f, _), weights in zip(configs[1:], runs[1:]):
        if [(n, s) for n, s, _ in weights] != first:
            raise TrainError(f"{f} is another network than {configs[0][0]}: the runs must share their layers")
    if labels is None:
        labels = [c.get("binarize", "?") for _, c in configs]
        if len(set(labels)) < len(labels):
            labels = [f"{lab} ({f.parent})" for lab, (f, _) in zip(labels, configs)]
    elif len(labels) != len(runs):
        raise TrainError(f"{len(labels)} labels for {len(runs)} runs")
    c = configs[0][1]
    title = f"Real-valued weights: {c.get('dataset', '')} {c.get('arch', '')}".rstrip()
    _histograms(path, list(zip(labels, runs)), title=title, bins=bins)
    return labels


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m train.plots",
        description="Overlay the real-valued weight histograms of several training runs of the same network, one "
        "panel per layer: e.g. a det run and a stoch run (make train BINARIZE=det OUT=a, then BINARIZE=stoch "
        "OUT=b), as in the BinaryConnect paper's comparison of first-layer weights.",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        required=True,
        metavar="DIR",
        help="train output directories (each holding model.pt), or model.pt files, of the same network",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="legend label per run, in the order of --runs (default: each run's binarize mode)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="NAME",
        help="compute layers to show, e.g. fc0 for the paper's first-layer figure (default all)",
    )
    p.add_argument("--bins", type=int, default=60, help="histogram bins over [-1, 1] (default 60)")
    p.add_argument("-o", "--out", required=True, help="the .png file to (re)write atomically")
    a = p.parse_args(argv)
    if a.bins < 1:
        raise TrainError(f"--bins {a.bins} must be at least 1")
    labels = plot_weight_runs(a.out, a.runs, labels=a.labels, layers=a.layers, bins=a.bins)
    print(f"{a.out}: real-valued weights of {len(a.runs)} runs ({', '.join(labels)})")
    return 0


if __name__ == "__main__":
    from common.cli import run_stage

    run_stage("train", main)
