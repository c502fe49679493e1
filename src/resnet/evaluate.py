"""Evaluation: loss, top-1 / top-5 and the confusion matrix over a whole set, with test-time augmentation.

:func:`evaluate` is the loop (used by training, `resnet eval`, export checks and the experiments); with several
processes every example is counted exactly once. :func:`evaluate_model` is `resnet eval`: it rebuilds a trained
model from its run directory, checkpoint or weights file and measures it on the official test split.
"""

from __future__ import annotations

import json
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .config import TTAMode
from .data import FileLoader, MemoryLoader, SeededImageDataset, eval_transform, is_memory, open_split
from .device import autocast, resolve_device, resolve_precision
from .errors import UserError
from .runs import run_dir_of
from .weights import ModelCard, load_model_and_card

TTA_MODES: tuple[str, ...] = typing.get_args(TTAMode)


@dataclass
class EvalResult:
    loss: float
    top1: float  # accuracy %, 0-100
    top5: float | None  # None with 5 classes or fewer, where every label is in the top 5
    count: int
    confusion: torch.Tensor  # (K, K) counts, true class per row
    seconds: float = 0.0

    def per_class(self, classes: list[str]) -> list[dict]:
        totals = self.confusion.sum(1)
        correct = self.confusion.diag()
        return [{"class": c, "accuracy": 100.0 * float(correct[i]) / max(int(totals[i]), 1), "count": int(totals[i])}
                for i, c in enumerate(classes)]


def check_tta(mode: str) -> str:
    if mode not in TTA_MODES:
        raise UserError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def black_level(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The normalised value of a black pixel, per channel: what the zero border of a training crop becomes."""
    return tuple(-m / s for m, s in zip(mean, std, strict=True))


def translate(x: torch.Tensor, dy: int, dx: int, fill: float | Sequence[float] = 0.0) -> torch.Tensor:
    """A batch moved ``dy`` pixels down and ``dx`` right, the uncovered border set to ``fill`` (per channel): the
    view a training crop of a zero-padded image gives."""
    n, c, h, w = x.shape
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    canvas = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    canvas = canvas.expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    canvas[..., pad:pad + h, pad:pad + w] = x
    return canvas[..., pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def tta_views(x: torch.Tensor, mode: str, size: tuple[int, int],
              fill: float | Sequence[float] = 0.0) -> list[tuple[float, torch.Tensor]]:
    """Weighted test-time views of a batch, whose softmax outputs are averaged: ``none``; ``flip`` (image + mirror);
    ``flip-translate`` (airbench's: image and mirror with weight 1/2, the same moved 1 pixel up-left and 1 pixel
    down-right, border ``fill``, 1/4 each); ``10crop`` (corners + centre, and their mirrors, as in the paper; a batch
    already at ``size`` is first zero-padded by 1/8 of its size)."""
    check_tta(mode)
    if mode == "none":
        return [(1.0, x)]
    if mode == "flip":
        return [(0.5, x), (0.5, x.flip(3))]
    if mode == "flip-translate":
        shifted = [translate(x, d, d, fill) for d in (-1, 1)]
        return [(0.25, x), (0.25, x.flip(3))] + [(0.125, v) for s in shifted for v in (s, s.flip(3))]
    if tuple(x.shape[-2:]) == tuple(size):
        pad = max(1, round(size[0] / 8))
        x = F.pad(x, (pad, pad, pad, pad))
    views = TF.ten_crop(x, list(size))
    return [(0.1, v.contiguous(memory_format=torch.channels_last)) for v in views]


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, device: torch.device, precision: str, num_classes: int,
             tta: str = "none", input_size: tuple[int, int] | None = None,
             fill: float | Sequence[float] = 0.0, observe: Callable | None = None) -> EvalResult:
    """Mean loss, top-1 / top-5 accuracy (%) and confusion matrix; top-5 is None with 5 classes or fewer, where it
    would always be 100. Sums are reduced over processes, so with several processes every example is counted exactly
    once and all processes get the same numbers. ``fill``: the normalised black of the batches (:func:`black_level`),
    the border of translated test-time views. ``observe(images, labels, probs)`` sees every batch (the report's
    :class:`~resnet.mistakes.MistakeCollector`)."""
    start = time.perf_counter()
    model.eval()
    k5 = min(5, num_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in batches:
        size = input_size or tuple(images.shape[-2:])
        with autocast(device, precision):
            probs = sum(w * model(v).float().softmax(1) for w, v in tta_views(images, tta, size, fill))
        if observe is not None:
            observe(images, labels, probs)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
        top = probs.topk(k5, 1).indices
        hit = top == labels[:, None]
        sums += torch.stack([loss.double(), hit[:, 0].sum().double(), hit.any(1).sum().double(),
                             torch.tensor(labels.shape[0], device=device, dtype=torch.float64)])
        confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes * num_classes)
    _all_reduce_sum(sums)
    _all_reduce_sum(confusion)
    loss, c1, c5, n = sums.tolist()
    n = max(n, 1)
    return EvalResult(loss / n, 100.0 * c1 / n, 100.0 * c5 / n if num_classes > 5 else None, int(n),
                      confusion.view(num_classes, num_classes).cpu(), time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------- `resnet eval`


@dataclass
class Evaluation:
    result: EvalResult
    card: ModelCard
    data: str
    tta: str
    loader: object = None  # the test set's loader: its examples and files (see resnet.mistakes.with_images)

    def to_dict(self) -> dict:
        r = self.result
        return {"data": self.data, "tta": self.tta, "count": r.count, "top1": r.top1, "top5": r.top5,
                "loss": r.loss, "per_class": r.per_class(self.card.classes)}


def test_loader(card: ModelCard, data: str, root: str | None, device: torch.device, batch_size: int = 256,
                tta: str = "none", workers: int = 2):
    """The official test split of ``data``, preprocessed as the model card says (10-crop: uncropped, resized)."""
    split = open_split(data, "test", root)
    if is_memory(data):
        if split.images.shape[1] != card.input_size[0]:
            raise UserError(f"{data} has {split.images.shape[1]} channel(s) but the model expects "
                            f"{card.input_size[0]}; evaluate on a data set like the one it was trained on")
        loader = MemoryLoader(split, batch_size, device=device, mean=card.mean, std=card.std, train=False)
        return loader, split.classes
    crop = card.crop if tta != "10crop" else (card.resize if isinstance(card.resize, int) else None)
    transform = eval_transform(card.resize, crop, card.mean, card.std)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    ds = SeededImageDataset(split.samples, transform, mode, seed=0)
    return FileLoader(ds, split.classes, batch_size, device=device, train=False, workers=workers), split.classes


def run_test_tta(source: str | Path) -> str:
    """The TTA a run's own final test used (results.json), so `resnet eval RUN` reports the same number."""
    results = run_dir_of(source) / "results.json"
    try:
        return check_tta(json.loads(results.read_text()).get("test_tta") or "none")
    except (OSError, ValueError, AttributeError, UserError):
        return "none"


def evaluate_model(path: str | Path, data: str | None = None, data_root: str | None = None, tta: str | None = None,
                   batch_size: int = 256, device: str = "auto", precision: str = "auto") -> Evaluation:
    """Evaluate the model of a run directory / checkpoint / weights file on the test split of ``data`` (default:
    the data set it was trained on) with ``tta`` (default: the TTA of the run's own final test)."""
    tta = check_tta(tta) if tta is not None else run_test_tta(path)
    dev = resolve_device(device)
    model, card = load_model_and_card(path, dev)
    return evaluate_on_test_set(model, card, str(path), data, data_root, tta, batch_size, dev,
                                resolve_precision(precision, dev))


def evaluate_on_test_set(model: nn.Module, card: ModelCard, source: str, data: str | None, data_root: str | None,
                         tta: str, batch_size: int, device: torch.device, precision: str,
                         observe: Callable | None = None) -> Evaluation:
    """A loaded ``model`` (described by ``card``, read from ``source``) on the test split of ``data`` (default: the
    data set it was trained on), preprocessed as its card says, in a resolved ``precision``; ``observe`` sees every
    batch (see :func:`evaluate`)."""
    data = data or card.dataset
    if not data:
        raise UserError(f"{source} does not say which data set it was trained on; pass --data")
    loader, classes = test_loader(card, data, data_root, device, batch_size, tta)
    if list(classes) != list(card.classes):
        raise UserError(f"{data} has classes {list(classes)[:3]}... but the model was trained on "
                        f"{list(card.classes)[:3]}...; evaluate on the matching data set")
    model = model.to(memory_format=torch.channels_last)
    result = evaluate(model, loader.epoch(0), device=device, precision=precision, num_classes=len(card.classes),
                      tta=tta, input_size=tuple(card.input_size[1:]), fill=black_level(card.mean, card.std),
                      observe=observe)
    return Evaluation(result, card, data, tta, loader)
