"""Figures: training curves of a run, the confusion matrix of an evaluation, the degradation study's Figures 6 and 7
and its gradient flow, and the comparison of ResNet and its successors (matplotlib, no display needed). Every function
takes plain data (lists, arrays), never a run directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .writes import save_figure  # noqa: E402


def _save(fig, path: Path, dpi: int) -> None:
    """Write ``fig`` as the PNG ``path`` (atomically; a failure is a WriteError) and release it either way."""
    try:
        save_figure(fig, path, dpi)
    finally:
        plt.close(fig)


def curves_figure(records: list[dict], title: str = "") -> plt.Figure:
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
    _label_log_axis(ax_err.yaxis, *ax_err.get_ylim())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _label_log_axis(axis, low: float, high: float) -> None:
    """Plain numbers on a log axis from ``low`` to ``high``: at every integer (less than a decade), at 1, 2 and 5
    (a few decades) or at the powers of ten: whatever the span, at least two numbers, and they do not crowd."""
    decades = np.log10(high / low)
    subs = np.arange(1.0, 10.0) if decades < 0.8 else (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    axis.set_minor_locator(matplotlib.ticker.LogLocator(subs="auto"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_curves(records: list[dict], path: Path, title: str = "") -> None:
    """:func:`curves_figure`, written to ``path``."""
    fig = curves_figure(records, title)
    _save(fig, path, 120)


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
    _save(fig, path, 120)


def _depth_colours(depths) -> dict[int, tuple]:
    return dict(zip(sorted(set(depths)), plt.get_cmap("tab10").colors))


def plot_degradation(curves_by_net: dict[str, dict], path: Path, title: str = "") -> None:
    """Figure 6 of the paper, written to ``path``: see :func:`degradation_figure`."""
    _save(degradation_figure(curves_by_net, title), path, 130)


def degradation_figure(curves_by_net: dict[str, dict], title: str = "") -> plt.Figure:
    """Figure 6 of the paper: plain nets left, residual nets right (one panel where only one kind was trained);
    thin = training error, bold = test error.

    ``curves_by_net`` maps a net name to a dict of plain data: ``kind`` ("plain" or "resnet"), ``depth``, ``steps``
    and ``train_error`` (the running training error %), ``test_steps`` and ``test_error`` (%), each the mean over
    seeds; optional ``train_low``/``train_high`` and ``test_low``/``test_high`` (the seeds' range) are drawn as a
    shaded band. One colour per depth. The error axis is zoomed to the second half of training (:func:`_late_range`),
    where the nets are told apart; the first iterations run off its top."""
    colours = _depth_colours(c["depth"] for c in curves_by_net.values())
    kinds = [k for k in ("plain", "resnet") if any(c["kind"] == k for c in curves_by_net.values())]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, kind in zip(axes, kinds):
        name = "plain" if kind == "plain" else "ResNet"
        for c in sorted((c for c in curves_by_net.values() if c["kind"] == kind), key=lambda c: c["depth"]):
            colour = colours[c["depth"]]
            if c["steps"]:
                ax.plot(c["steps"], c["train_error"], "-", color=colour, lw=0.8, alpha=0.8)
                if c.get("train_low"):
                    ax.fill_between(c["steps"], c["train_low"], c["train_high"], color=colour, alpha=0.12, lw=0)
            if c["test_steps"]:
                ax.plot(c["test_steps"], c["test_error"], "o-", color=colour, lw=2.2, label=f"{name}-{c['depth']}")
                if c.get("test_low"):
                    ax.fill_between(c["test_steps"], c["test_low"], c["test_high"], color=colour, alpha=0.2, lw=0)
        ax.set_title(f"{'plain' if kind == 'plain' else 'residual'} networks")
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="bold: test, thin: train")
    axes[0].set_ylabel("error (%)")
    zoom = _late_range(curves_by_net.values())
    if zoom:
        axes[0].set_ylim(*zoom)
        axes[0].set_ylabel("error (%), zoomed to the second half of training")
    else:  # a net that does not train (plain-110) is shown whole, from chance down
        axes[0].set_ylim(0.0, 100.0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _late_range(curves) -> tuple[float, float] | None:
    """The error axis's limits for Figure 6: every value drawn in the second half of training (bands included),
    with a margin of a tenth of their span (at least half a point), so that a gap of tenths of a point between
    nets that end near each other can be seen. None (no zoom) when a net ends above 50% or nothing is drawn."""
    late, ends = [], []
    for c in curves:
        for steps_key, keys in (("steps", ("train_error", "train_low", "train_high")),
                                ("test_steps", ("test_error", "test_low", "test_high"))):
            steps = c.get(steps_key) or []
            if not steps:
                continue
            half = steps[-1] / 2
            for key in keys:
                values = c.get(key) or []
                late += [v for s, v in zip(steps, values) if s >= half]
            if c.get(keys[0]):
                ends.append(c[keys[0]][-1])
    if not late or max(ends) > 50:
        return None
    low, high = min(late), max(late)
    pad = max(0.1 * (high - low), 0.5)
    return max(0.0, low - pad), min(100.0, high + pad)


def _net_style(net: dict) -> dict:
    """Plain nets dashed, residual nets solid, one colour per depth (as the paper's Figure 7)."""
    return {"ls": "--" if net["kind"] == "plain" else "-",
            "label": f"{'plain' if net['kind'] == 'plain' else 'ResNet'}-{net['depth']}"}


def plot_responses(nets: dict[str, dict], path: Path, title: str = "") -> None:
    """Figure 7 of the paper: the std of each 3x3 layer's response, in layer order (top) and sorted by magnitude
    (bottom). ``nets`` maps a net name to ``kind``, ``depth`` and ``std`` (one value per layer)."""
    colours = _depth_colours(n["depth"] for n in nets.values())
    fig, axes = plt.subplots(2, 1, figsize=(9, 7))
    ordered = sorted(nets.values(), key=lambda n: (n["kind"] != "plain", n["depth"]))
    values = [v for n in nets.values() for v in n["std"] if v > 0]
    # One net's responses can be 1,000x another's (an untrained plain-110): a log axis keeps every curve readable.
    logarithmic = bool(values) and max(values) / min(values) > 30
    for ax, sort in zip(axes, (False, True)):
        for net in ordered:
            std = sorted(net["std"], reverse=True) if sort else net["std"]
            ax.plot(range(1, len(std) + 1), std, color=colours[net["depth"]], lw=1.4, **_net_style(net))
        ax.set_xlabel("layer index (sorted by magnitude)" if sort else "layer index (original)")
        ax.set_ylabel("std (log scale)" if logarithmic else "std")
        if logarithmic:
            ax.set_yscale("log")
            _label_log_axis(ax.yaxis, min(values), max(values))
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=2, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, 130)


def plot_gradients(nets: dict[str, dict], path: Path, title: str = "") -> None:
    """Gradient flow: the gradient norm of each 3x3 layer's weights (log scale) at initialisation (left) and after
    the first epoch (right). ``nets`` maps a net name to ``kind``, ``depth``, ``init`` and ``epoch1`` (per layer)."""
    colours = _depth_colours(n["depth"] for n in nets.values())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (key, label) in zip(axes, (("init", "at initialisation"), ("epoch1", "after the first epoch"))):
        for net in sorted(nets.values(), key=lambda n: (n["kind"] != "plain", n["depth"])):
            ax.plot(range(1, len(net[key]) + 1), net[key], color=colours[net["depth"]], lw=1.4, **_net_style(net))
        ax.set_yscale("log")
        ax.set_title(label)
        ax.set_xlabel("3x3 layer (input side first)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("|dL/dW|")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, 130)


def plot_very_deep(nets: list[dict], path: Path, title: str = "", classes: int = 10) -> None:
    """Very deep nets: training loss over the first steps (left; a running mean over 10 steps, chance marked: the
    loss of a uniform guess among ``classes``, ln ``classes``) and each stage's gradient norm at initialisation
    (right, log scale). ``nets``: ``net``, ``loss`` (per step), ``stage_norms``."""
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(12, 4.5))
    chance = float(np.log(classes))
    ax_loss.axhline(chance, color="grey", ls=":", lw=1.2, label=f"chance: ln {classes} = {chance:.2f}")
    for net in nets:
        plain = net["net"].startswith("plain")
        style = {"ls": "--" if plain else "-", "color": "tab:red" if plain else "tab:blue", "label": net["net"]}
        loss = np.asarray(net["loss"])
        if len(loss):  # (none where the loss was not finite from the first step)
            window = min(10, len(loss))
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax_loss.plot(range(window, len(loss) + 1), smooth, lw=1.6, **style)
        stages = list(net["stage_norms"])
        ax_grad.plot(stages, [net["stage_norms"][s] for s in stages], marker="o", lw=1.6, **style)
        broken = [s for s in stages if not np.isfinite(net["stage_norms"][s])]
        notes = ([f"gradient not finite at init in {', '.join(broken)}"] if broken else []) + (
            [f"loss not finite at step {net['diverged_at']}: stopped"] if net.get("diverged_at") else [])
        if notes:  # a net whose numbers cannot be drawn is named in words, so the figure does not hide it
            text = textwrap.fill(f"{net['net']}: " + "; ".join(notes), 34)
            for ax, y, va in ((ax_loss, 0.72, "top"), (ax_grad, 0.04, "bottom")):
                ax.text(0.4, y, text, transform=ax.transAxes, color=style["color"], fontsize=8.5, va=va)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (running mean of 10 steps)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_grad.set_yscale("log")
    ax_grad.set_xlabel("stage (input side first)")
    ax_grad.set_ylabel("mean |dL/dW| of its 3x3 layers at initialisation")
    ax_grad.grid(alpha=0.3, which="both")
    ax_grad.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, 130)


LABEL_SIDES = ((5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"),  # offsets in points
               (5, 14, "left"), (5, -21, "left"), (-5, 14, "right"), (-5, -21, "right"))


def name_points(ax, points: list[tuple[float, float, str]], fontsize: float = 7.5) -> list[tuple]:
    """Name each (x, y, name) point beside it, on the first side (right or left, above or below, near then farther)
    whose text overlaps no point and no name already placed (else the side least covered), so that nets of equal
    cost (ResNet-20 and plain-20) stay readable; returns each name's (dx, dy, ha). Call after the axes' scales and
    margins are set."""
    ax.autoscale_view()
    scale = ax.figure.dpi / 72  # display pixels per point
    marker = 4 * scale  # the points themselves are in the way too
    placed = [(px - marker, py - marker, px + marker, py + marker)
              for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)]
    sides = []
    for x, y, text in sorted(points, key=lambda p: -p[1]):
        px, py = ax.transData.transform((x, y))
        width, height = 0.6 * fontsize * len(text) * scale, 1.2 * fontsize * scale  # an estimate of the text's box
        options = []
        for dx, dy, ha in LABEL_SIDES:
            left = px + dx * scale - (width if ha == "right" else 0)
            box = (left, py + dy * scale, left + width, py + dy * scale + height)
            options.append((sum(_overlap(box, other) for other in placed), (dx, dy, ha), box))
            if options[-1][0] == 0:
                break
        _, (dx, dy, ha), box = min(options, key=lambda o: o[0])  # the first free side, else the least covered
        placed.append(box)
        sides.append((dx, dy, ha))
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize, ha=ha)
    return sides


def _overlap(a: tuple, b: tuple) -> float:
    """The area two (x0, y0, x1, y1) boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


COMPARISON_CAPTION = ("Top: each model's training error (its first seed, per log window) against the training "
                      "images it has seen and against its training time (at its mean speed), its final test error a "
                      "point at the end. Bottom: test top-1 against MACs and against parameters per image (log "
                      "axes), one point per model at the mean over its seeds; the error bar is one standard "
                      "deviation of the seeds, the marker's area grows with the epochs trained.")


def plot_comparison(models: list[dict], curves: dict[str, dict], path: Path, title: str = "") -> None:
    """:func:`comparison_figure` written to ``path``."""
    _save(comparison_figure(models, curves, title), path, 110)


def comparison_figure(models: list[dict], curves: dict[str, dict], title: str = "") -> plt.Figure:
    """ResNet and its successors in four panels (:data:`COMPARISON_CAPTION`), one colour per lineage, the accuracy
    axes zoomed to where the points are. ``models``: ``model``, ``lineage``, ``macs``, ``params``, ``epochs``,
    ``top1``, ``top1_std``; ``curves``: model -> ``images``, ``seconds``, ``train_error`` (lists) and ``test_error``."""
    lineages = list(dict.fromkeys(m["lineage"] for m in models))
    colours = dict(zip(lineages, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(2, 2, figsize=(14, 11))
    for ax, key, label in ((axes[0, 0], "images", "training images seen"),
                           (axes[0, 1], "seconds", "training time (s)")):
        ends = []
        for m in models:
            curve = curves.get(m["model"])
            if curve and curve[key]:
                colour = colours[m["lineage"]]
                ax.plot(curve[key], curve["train_error"], "-", color=colour, lw=1, alpha=0.8)
                ax.plot(curve[key][-1], curve["test_error"], "o", color=colour, ms=5)
                ends.append((curve[key][-1], curve["test_error"], m["model"]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.margins(x=0.12)  # room for the names of the last points
        name_points(ax, ends, fontsize=7)  # models that end level (the same images, similar errors) stay readable
        _label_log_axis(ax.yaxis, *ax.get_ylim())
        ax.set_xlabel(f"{label}, log scale")
        ax.set_ylabel("error (%): training, per log window; test, the point")
        ax.grid(alpha=0.3, which="both")
    most = max((m.get("epochs") or 0.0) for m in models) or 1.0
    for ax, key, label in ((axes[1, 0], "macs", "MACs per image (millions)"), (axes[1, 1], "params", "parameters")):
        points = []
        for m in models:
            x = m[key] / 1e6 if key == "macs" else m[key]
            size = 4 + 6 * ((m.get("epochs") or 0.0) / most) ** 0.5
            ax.errorbar(x, m["top1"], yerr=m["top1_std"], fmt="o", color=colours[m["lineage"]], capsize=3, ms=size)
            points.append((x, m["top1"], m["model"]))
        ax.set_xscale("log")
        low = min(m["top1"] - m["top1_std"] for m in models)
        high = max(m["top1"] + m["top1_std"] for m in models)
        pad = max(0.5, 0.08 * (high - low))
        ax.set_ylim(low - pad, min(100.0, high + pad))  # zoomed to the points, never past 100%
        ax.margins(x=0.12)  # room for the names of the outermost points
        name_points(ax, points)
        _label_log_axis(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel(f"{label}, log scale")
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[name], label=name) for name in lineages]
    axes[1, 1].legend(handles=handles, fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.text(0.5, 0.005, "\n".join(textwrap.wrap(COMPARISON_CAPTION, 190)), ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
