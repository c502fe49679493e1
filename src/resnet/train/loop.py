"""The two loops: ``train_one_epoch`` (optimizer steps over one epoch) and ``evaluate`` (loss, top-1, top-5 and
the confusion matrix over a whole set, counted exactly once across processes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from ..device import autocast
from .distributed import all_reduce_sum


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        super().__init__(f"loss became {value} at step {step}")
        self.step, self.value = step, value


@dataclass
class TrainContext:
    """Everything one optimizer step touches."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    device: torch.device
    precision: str
    grad_clip: float = 0.0
    ema: torch.optim.swa_utils.AveragedModel | None = None
    ema_every: int = 1
    mixer: Callable | None = None  # (images, labels, step) -> (images, soft targets)
    step: int = 0  # optimizer steps done in the whole run


@dataclass
class Meter:
    """Running sums of loss and errors over examples (kept as tensors: no device sync per step)."""

    loss: float = 0.0
    errors: float = 0.0
    count: int = 0

    def add(self, loss: torch.Tensor, errors: torch.Tensor, n: int) -> None:
        self.loss += float(loss) * n
        self.errors += float(errors)
        self.count += n

    def reduced(self, device: torch.device) -> tuple[float, float, int]:
        """(mean loss, error %, examples) summed over every process."""
        t = all_reduce_sum(torch.tensor([self.loss, self.errors, float(self.count)], device=device, dtype=torch.float64))
        loss, errors, count = t.tolist()
        return loss / max(count, 1), 100.0 * errors / max(count, 1), int(count)


def train_one_epoch(ctx: TrainContext, batches: Iterable, on_step: Callable[[Meter, float], bool] | None = None,
                    max_steps: int | None = None, progress=None) -> Meter:
    """One pass over ``batches``. After every step ``on_step(meter, lr)`` runs (logging, checkpoints); when it
    returns True the epoch ends early (a stop signal). Stops after ``max_steps`` steps when given."""
    ctx.model.train()
    meter = Meter()
    done = 0
    for images, labels in batches:
        if max_steps is not None and done >= max_steps:
            break
        targets = labels
        if ctx.mixer is not None:
            images, targets = ctx.mixer(images, labels, ctx.step)
        lr = ctx.optimizer.param_groups[0]["lr"]
        with autocast(ctx.device, ctx.precision):
            logits = ctx.model(images)
            loss = ctx.criterion(logits, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(ctx.step + 1, float(loss.detach()))
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.scaler.scale(loss).backward()
        if ctx.grad_clip:
            ctx.scaler.unscale_(ctx.optimizer)
            nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
        ctx.scheduler.step()
        ctx.step += 1
        done += 1
        if ctx.ema is not None and ctx.step % ctx.ema_every == 0:
            ctx.ema.update_parameters(ctx.model)
        with torch.no_grad():
            errors = (logits.argmax(1) != labels).sum()
        meter.add(loss.detach(), errors, labels.shape[0])
        if progress is not None:
            progress.update(1)
        if on_step is not None and on_step(meter, lr):
            break
    return meter


@dataclass
class EvalResult:
    loss: float
    top1: float  # accuracy %, 0-100
    top5: float
    count: int
    confusion: torch.Tensor  # (K, K) counts, true class per row
    seconds: float = 0.0

    def per_class(self, classes: list[str]) -> list[dict]:
        totals = self.confusion.sum(1)
        correct = self.confusion.diag()
        return [{"class": c, "accuracy": 100.0 * float(correct[i]) / max(int(totals[i]), 1), "count": int(totals[i])}
                for i, c in enumerate(classes)]


def tta_views(x: torch.Tensor, mode: str, size: tuple[int, int]) -> list[torch.Tensor]:
    """Test-time views of a batch: ``none``; ``flip`` (image + mirror); ``10crop`` (corners + centre, and their
    mirrors, as in the paper). For 10-crop a batch already at ``size`` is first zero-padded by 1/8 of its size."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(3)]
    if tuple(x.shape[-2:]) == tuple(size):
        pad = max(1, round(size[0] / 8))
        x = F.pad(x, (pad, pad, pad, pad))
    views = TF.ten_crop(x, list(size))
    return [v.contiguous(memory_format=torch.channels_last) for v in views]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, device: torch.device, precision: str, num_classes: int,
             tta: str = "none", input_size: tuple[int, int] | None = None) -> EvalResult:
    """Mean loss, top-1 / top-5 accuracy (%) and confusion matrix; sums are reduced over processes, so with
    several processes every example is counted exactly once and all processes get the same numbers."""
    start = time.perf_counter()
    model.eval()
    k5 = min(5, num_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for images, labels in batches:
        size = input_size or tuple(images.shape[-2:])
        with autocast(device, precision):
            probs = sum(model(v).float().softmax(1) for v in tta_views(images, tta, size))
        probs = probs / probs.sum(1, keepdim=True)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
        top = probs.topk(k5, 1).indices
        hit = top == labels[:, None]
        sums += torch.stack([loss.double(), hit[:, 0].sum().double(), hit.any(1).sum().double(),
                             torch.tensor(labels.shape[0], device=device, dtype=torch.float64)])
        confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes * num_classes)
    all_reduce_sum(sums)
    all_reduce_sum(confusion)
    loss, c1, c5, n = sums.tolist()
    n = max(n, 1)
    return EvalResult(loss / n, 100.0 * c1 / n, 100.0 * c5 / n, int(n),
                      confusion.view(num_classes, num_classes).cpu(), time.perf_counter() - start)
