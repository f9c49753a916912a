"""Matplotlib (Agg) figures of the tools: training curves, confusion matrix.

Each function writes one PNG atomically and returns its path. matplotlib is
imported on first use with the Agg backend (no display needed).
"""
import math

import numpy as np

from hrenet.files import atomic_path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finite(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def plot_curves(records, path, title=None):
    """Loss (top) and validation scores (bottom) against iterations.

    ``records``: dicts as tools/train.py and tools/plot_log.py write them:
    ``{"type": "train", "iter", "loss", "lr", ...}`` and
    ``{"type": "val", "iter", "miou", ...}`` (any other numeric val keys are
    drawn when there is no ``miou``); the last ``{"type": "best"}`` is
    starred, ``{"type": "lr"}`` drops are dashed lines.
    """
    plt = _pyplot()
    train = [r for r in records if r.get("type") == "train"
             and _finite(r.get("loss"))]
    val = [r for r in records if r.get("type") == "val"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    if train:
        ax1.plot([r["iter"] for r in train], [r["loss"] for r in train],
                 color="tab:blue", lw=1.2, label="training loss")
        ax1.legend(loc="upper right")
    else:
        ax1.text(0.5, 0.5, "no training loss yet", ha="center",
                 transform=ax1.transAxes)
    ax1.set_ylabel("loss")
    ax1.grid(alpha=0.3)
    keys = ["miou"] if any(_finite(r.get("miou")) for r in val) else sorted(
        {k for r in val for k, v in r.items()
         if k not in ("type", "iter", "wall") and isinstance(v, (int, float))
         and not isinstance(v, bool)})
    for key in keys:
        pts = [(r["iter"], r[key]) for r in val if _finite(r.get(key))]
        if pts:
            scale = 100.0 if key in ("miou", "pixel_acc", "class_acc") else 1
            ax2.plot([p[0] for p in pts], [scale * p[1] for p in pts],
                     marker="o", ms=3, lw=1.2,
                     label="val mean IoU (%)" if key == "miou" else key)
    best = [r for r in records if r.get("type") == "best"]
    if best and keys == ["miou"]:
        ax2.plot([best[-1]["iter"]], [100.0 * best[-1]["miou"]], marker="*",
                 ms=12, color="tab:red", ls="none", label="best (kept)")
    for r in records:
        if r.get("type") == "lr":  # a learning-rate drop on a plateau
            for ax in (ax1, ax2):
                ax.axvline(r["iter"], color="grey", ls="--", lw=0.8)
    if keys and val:
        ax2.legend(loc="lower right")
    else:
        ax2.text(0.5, 0.5, "no validation scores", ha="center",
                 transform=ax2.transAxes)
    ax2.set_ylabel("val mean IoU (%)" if keys == ["miou"] else "val")
    ax2.set_xlabel("iteration")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(plt, fig, path)


def _save(plt, fig, path):
    """Lay ``fig`` out, write it to ``path`` atomically, close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix, class_names, path, title=None):
    """Row-normalised confusion matrix (ground truth on rows) as an image,
    with the percentages written in the cells when there are at most 25
    classes."""
    plt = _pyplot()
    m = np.asarray(matrix, np.float64)
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(rows > 0, m / rows, 0.0)
    k = m.shape[0]
    size = max(4.5, min(14.0, 0.45 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of the row's pixels")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if m[i, j] > 0:
                    ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center",
                            va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return _save(plt, fig, path)
