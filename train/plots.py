"""Training figures: the BinaryConnect learning curves and the latent-weight histogram."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.files import atomic_path  # noqa: E402

__all__ = ["plot_curves", "plot_weights"]


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_curves(path, history, *, title=""):
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("train_error", "train"), ("val_error", "validation"), ("test_error", "test")):
        ax.plot(epochs, [100 * h[key] for h in history], label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"BinaryConnect learning curves {title}")
    _save(fig, path)


def plot_weights(path, model, *, title=""):
    layers = [layer for layer in model.layers if layer.compute]
    modules = model.binary_layers()
    fig, axes = plt.subplots(1, len(modules), figsize=(3 * len(modules), 2.8), squeeze=False)
    for ax, layer, module in zip(axes[0], layers, modules):
        w = module.weight.detach().flatten().cpu().numpy()
        ax.hist(w, bins=60, range=(-1, 1), color="C0")
        ax.set_title(f"{layer.name} ({layer.columns}->{layer.rows})", fontsize=8)
        ax.set_xlabel("latent W")
    fig.suptitle(f"Real-valued weight distribution {title}")
    _save(fig, path)
