"""Figures: training curves of a run, the confusion matrix of an evaluation and the degradation study's Figure 6
(matplotlib, no display needed). Every function takes plain data (lists, arrays), never a run directory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(records: list[dict], path: Path, title: str = "") -> None:
    """Loss and error (%) against epoch, training and evaluation set, from metrics.jsonl records."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_err, "error", "error (%)")):
        train = [r[f"train_{key}"] for r in records]
        ax.plot(epochs, train, "-", label="train")
        evaluated = [(r["epoch"], r[f"val_{key}"] if key == "loss" else 100 - r["val_top1"])
                     for r in records if r.get("val_top1") is not None]
        if evaluated:
            ax.plot(*zip(*evaluated), "o-", label=records[-1].get("eval_set", "val"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_err.set_yscale("log")
    ax_err.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_err.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (true class per row), with counts in the cells when there are few classes."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    k = len(classes)
    size = max(5.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_degradation(curves_by_net: dict[str, dict], path: Path, title: str = "") -> None:
    """Figure 6 of the paper: plain nets left, residual nets right; thin = training error, bold = test error.

    ``curves_by_net`` maps a net name to a dict of plain data: ``kind`` ("plain" or "resnet"), ``depth``, ``steps``
    and ``train_error`` (the running training error %), ``test_steps`` and ``test_error`` (%); one colour per depth."""
    depths = sorted({c["depth"] for c in curves_by_net.values()})
    colours = dict(zip(depths, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind in zip(axes, ("plain", "resnet")):
        name = "plain" if kind == "plain" else "ResNet"
        for c in sorted((c for c in curves_by_net.values() if c["kind"] == kind), key=lambda c: c["depth"]):
            colour = colours[c["depth"]]
            if c["steps"]:
                ax.plot(c["steps"], c["train_error"], "-", color=colour, lw=0.8, alpha=0.8)
            if c["test_steps"]:
                ax.plot(c["test_steps"], c["test_error"], "o-", color=colour, lw=2.2, label=f"{name}-{c['depth']}")
        ax.set_title(f"{'plain' if kind == 'plain' else 'residual'} networks")
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="bold: test, thin: train")
    axes[0].set_ylabel("error (%)")
    top = max(ax.get_ylim()[1] for ax in axes)
    axes[0].set_ylim(0, min(top, 60))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
