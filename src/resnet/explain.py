"""`resnet explain`: Grad-CAM (Selvaraju et al. 2017) pictures of where a model looks, computed with Captum.

The map is taken at the model's last feature map, the output of ``forward_features``: the last stage for the
post-activation ResNet, the final BN -> ReLU after it for the pre-activation family (the layer the pooling and the
classifier read, so the gradients are exactly those of the logit). Images are preprocessed exactly as in prediction
and evaluation (the model card's resize, crop and normalisation), and the heatmap is drawn over the image as the model
saw it. A bad file gets an error entry; the others are still explained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backends import image_batches, image_files
from .errors import UserError
from .gradcam import gradcam, import_captum, seen_image
from .weights import ModelCard
from .writes import make_dir, save_figure

COLORMAP = "turbo"
ALPHA = 0.5  # heatmap opacity over the image
SHEET = "gradcam.png"  # the contact sheet's file name in the output folder


def resolve_class(card: ModelCard, value: int | str | None) -> int | None:
    """A class index from an index or a class name (``--class 3`` or ``--class Sneaker``); None stays None."""
    if value is None:
        return None
    text = str(value)
    if text in card.classes:
        return card.classes.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(card.classes):
        return int(text)
    raise UserError(f"--class {text} is neither a class index 0..{len(card.classes) - 1} nor a class name of this "
                    f"model (e.g. {card.classes[0]!r})")


# -------------------------------------------------------------------------------------------------------- drawing


def _short(name: str, width: int = 26) -> str:
    return name if len(name) <= width else name[:width - 3] + "..."


def _overlay(ax, image: np.ndarray, cam: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.imshow(cam, cmap=COLORMAP, alpha=ALPHA, vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _caption(r: dict) -> str:
    return f"{_short(Path(r['path']).name)}\n{r['class']} {r['prob']:.2f}"


def draw_explanation(r: dict, path: Path) -> None:
    """One file's picture: the image as the model saw it, and the same with its Grad-CAM over it."""
    from matplotlib.figure import Figure  # the object API needs no pyplot and no display

    fig = Figure(figsize=(5.2, 2.9), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.imshow(r["image"], cmap="gray" if r["image"].ndim == 2 else None, vmin=0, vmax=1)
    left.set_title(_short(Path(r["path"]).name, 40), fontsize=8)
    left.set_axis_off()
    predicted = "" if r["predicted"] == r["class"] else f"\n(predicted {r['predicted']} {r['predicted_prob']:.2f})"
    _overlay(right, r["image"], r["cam"], f"Grad-CAM: {r['class']} {r['prob']:.2f}{predicted}")
    save_figure(fig, path, 100, "Grad-CAM picture")


def draw_sheet(results: list[dict], path: Path, columns: int | None = None, title: str = "") -> None:
    """A contact sheet: every explained image with its heatmap, titled with file name, class and probability."""
    from matplotlib.figure import Figure

    shown = [r for r in results if "cam" in r]
    cols = columns or min(len(shown), 4 if len(shown) <= 8 else 6)
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(2.1 * cols, 2.4 * rows + (0.3 if title else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, r in zip(axes, shown):
        _overlay(ax, r["image"], r["cam"], _caption(r))
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, 100, "Grad-CAM picture")


def _output_name(path: Path, used: set[str]) -> str:
    name, n = f"{path.stem}.gradcam.png", 2
    while name in used or name == SHEET:
        name, n = f"{path.stem}-{n}.gradcam.png", n + 1
    used.add(name)
    return name


# ----------------------------------------------------------------------------------------------------- the library


def explain_files(model: nn.Module, card: ModelCard, paths: list[str | Path], out_dir: str | Path,
                  target: int | str | None = None, batch_size: int = 16) -> list[dict]:
    """Grad-CAM of every image file (folders are searched) for its predicted class, or for ``target`` (index or
    name); writes ``OUT/<name>.gradcam.png`` per file and the contact sheet ``OUT/gradcam.png``.

    One result per file, in order: ``{"path", "class", "index", "prob", "predicted", "predicted_prob", "output",
    "cam", "image"}`` (``cam``: (H, W) in [0, 1] at the model's input size; ``image``: what the model saw) or
    ``{"path", "error"}``. The sheet's path is ``results[i]["sheet"]`` of every explained file (absent if none)."""
    import_captum()
    files = image_files(paths)
    index = resolve_class(card, target)
    out = Path(out_dir)
    make_dir(out, "output directory")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[dict] = [{"path": str(p)} for p in files]
    used: set[str] = set()
    try:
        for indices, batch in image_batches(files, card, batch_size, results):
            batch = batch.to(device)
            with torch.no_grad():
                probs = model(batch).float().softmax(1).cpu()
            predicted = probs.argmax(1).tolist()
            targets = predicted if index is None else [index] * len(indices)
            cams = gradcam(model, batch, targets).cpu()
            for i, x, t, p, cam, row in zip(indices, batch.cpu(), targets, predicted, cams, probs):
                r = results[i]
                r.update({"class": card.classes[t], "index": t, "prob": row[t].item(), "predicted": card.classes[p],
                          "predicted_prob": row[p].item(), "cam": cam.numpy(), "image": seen_image(x, card)})
                r["output"] = str(out / _output_name(files[i], used))
                draw_explanation(r, Path(r["output"]))
    finally:
        model.train(was_training)
    if any("cam" in r for r in results):
        sheet = out / SHEET
        draw_sheet(results, sheet, title=f"Grad-CAM of {card.architecture}"
                                         f"{'' if index is None else f' for class {card.classes[index]}'}")
        for r in results:
            if "cam" in r:
                r["sheet"] = str(sheet)
    return results
