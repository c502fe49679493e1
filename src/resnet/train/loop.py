"""One optimizer step: :func:`train_step` returns device tensors, so the loop that calls it decides when to read
them (every ``log_every`` steps), and a step costs no host sync."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from ..device import autocast


class NonFiniteLoss(RuntimeError):
    """The loss (or, found before a checkpoint, the weights) stopped being finite at ``step``."""

    def __init__(self, step: int, value: float, what: str = "loss"):
        super().__init__(f"{what} became {value} at step {step}")
        self.step, self.value, self.what = step, value, what

    def advice(self, last_checkpoint) -> str:
        """The one sentence a user reads: what became non-finite, and how to go on."""
        fix = "lower --lr or set grad_clip (e.g. --set grad_clip=1)"
        where = (f"the last good checkpoint is {last_checkpoint}: {fix} and start a new run from its weights with "
                 f"--set init_from={last_checkpoint}" if last_checkpoint else
                 f"no checkpoint was written yet: {fix} and start again")
        return f"training stopped: the {self.what} became {self.value} at step {self.step}; {where}"


class Progress(Protocol):
    """What counts a run's optimizer steps: its RunState (train/run_state.py), or a :class:`StepCount` of its own."""

    step: int


@dataclass
class StepCount:
    """The step counter of steps that are no run's (timing copies, benchmarks)."""

    step: int = 0


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
    freeze: Callable[[int], None] | None = None  # (step) -> fine-tuning: freeze what does not train at this step
    progress: Progress = field(default_factory=StepCount)  # its ``step``: optimizer steps done in the whole run


def train_step(ctx: TrainContext, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, optimizer, schedule and EMA for one batch. Returns (mean loss, misclassified count) as
    device tensors; nothing here waits for the device."""
    ctx.model.train()
    if ctx.freeze is not None:
        ctx.freeze(ctx.progress.step)  # after train(): frozen BatchNorm layers go back to eval mode
    targets = labels
    if ctx.mixer is not None:
        images, targets = ctx.mixer(images, labels, ctx.progress.step)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss, errors = forward_backward(ctx, images, targets, labels)
    apply_update(ctx)
    return loss, errors


def forward_backward(ctx: TrainContext, images: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor,
                     autocast_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of one batch (into ``.grad``), and its (mean loss, misclassified count) as device tensors: the
    part of a step that a CUDA graph can replay (:mod:`.cuda_graph`)."""
    with autocast(ctx.device, ctx.precision, cache=autocast_cache):
        logits = ctx.model(images)
        loss = ctx.criterion(logits, targets)
    ctx.scaler.scale(loss).backward()
    with torch.no_grad():
        errors = (logits.argmax(1) != labels).sum()
    return loss.detach(), errors


def apply_update(ctx: TrainContext) -> None:
    """After the backward pass: clipping, the optimizer and loss-scaler steps, the schedule and the EMA."""
    if ctx.grad_clip:
        ctx.scaler.unscale_(ctx.optimizer)
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    ctx.scheduler.step()
    ctx.progress.step += 1
    if ctx.ema is not None and ctx.progress.step % ctx.ema_every == 0:
        ctx.ema.update_parameters(ctx.model)


class StepWindow:
    """Per-step (loss sum, errors, examples) of the steps since the last read, kept on the device: read every
    ``log_every`` steps, before every checkpoint and at epoch ends, so that a step costs no host sync."""

    def __init__(self):
        self.stats: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, errors: torch.Tensor, examples: int) -> torch.Tensor:
        stats = torch.stack([loss.double() * examples, errors.double(),
                             torch.full((), float(examples), dtype=torch.float64, device=loss.device)])
        self.stats.append(stats)
        return stats

    def check(self, step: int) -> torch.Tensor | None:
        """Raise :class:`NonFiniteLoss` naming the first step whose loss was not finite (``step``: the last one);
        else the window's stats stacked (None when empty)."""
        if not self.stats:
            return None
        stacked = torch.stack(self.stats)
        bad = first_nonfinite(stacked[:, 0])
        if bad is not None:
            raise NonFiniteLoss(step - len(self.stats) + bad + 1, float(stacked[bad, 0]))
        return stacked

    def take(self, step: int) -> torch.Tensor:
        """The window's (loss sum, errors, examples) summed, checked; the window starts again empty."""
        total = self.check(step).sum(0)
        self.stats.clear()
        return total


def first_nonfinite(losses: torch.Tensor) -> int | None:
    """Index of the first non-finite value of a 1-D tensor of per-step losses, or None (one host sync)."""
    bad = (~torch.isfinite(losses)).nonzero()
    return int(bad[0, 0]) if len(bad) else None


def weights_finite(model: nn.Module) -> bool:
    """True when every parameter and buffer is finite (checked before any checkpoint is written)."""
    flags = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True
