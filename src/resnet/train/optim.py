"""Optimizers, parameter groups and learning-rate schedules: two registries over torch.optim and its schedulers.

The names are the ``Literal`` types of :mod:`resnet.config` (what recipes may say); each registry must cover its
type exactly, checked at import, so a name can never validate and then silently build something else. Adding an
optimizer or a schedule: its name in the Literal, its builder here.

Every schedule steps once per iteration, so milestones given in epochs and in iterations (the paper's CIFAR recipe:
/10 at 32k and 48k) mean the same thing, and a resume mid-epoch continues the curve exactly.
"""

from __future__ import annotations

import math
import typing
from typing import Callable

import torch
from torch import nn
from torch.optim import lr_scheduler

from ..config import Config, OptimConfig, OptimizerName, ScheduleConfig, ScheduleName
from .finetune import split_head_backbone


def scaled_lr(cfg: Config, world_size: int = 1) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr x global batch / the batch the recipe's lr was set for."""
    reference = cfg.optim.lr_batch_size or cfg.batch_size
    return cfg.optim.lr * cfg.batch_size * world_size / reference


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool) -> list[dict]:
    """One group, or two when BN parameters and biases (every parameter of fewer than 2 dims) skip weight decay."""
    if not no_decay_bn_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------------------------------ optimizers

# RMSprop as the MobileNetV3, MnasNet and EfficientNet recipes use it (TensorFlow's RMSProp with decay 0.9 and
# epsilon 1e-3), in torch's form as torchvision's reference scripts give it: alpha 0.9, and epsilon sqrt(1e-3), since
# TensorFlow adds epsilon inside the square root and torch outside.
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 0.0316

OptimizerBuilder = Callable[[list[dict], OptimConfig, float], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerBuilder] = {
    "sgd": lambda groups, cfg, lr: torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=False),
    "nesterov": lambda groups, cfg, lr: torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True),
    "adamw": lambda groups, cfg, lr: torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas)),
    "rmsprop": lambda groups, cfg, lr: torch.optim.RMSprop(groups, lr=lr, momentum=cfg.momentum, alpha=RMSPROP_ALPHA,
                                                           eps=RMSPROP_EPS),
}


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float, backbone_lr: float = 1.0) -> torch.optim.Optimizer:
    """The named optimizer over the parameters that need gradients; with ``backbone_lr`` != 1 (fine-tuning) every
    group is split into the head's part (lr) and the backbone's (lr x backbone_lr)."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_bn_bias)
    if backbone_lr != 1.0:
        groups = split_head_backbone(model, groups, lr, backbone_lr)
    return OPTIMIZERS[cfg.name](groups, cfg, lr)


# ------------------------------------------------------------------------------------------------------- schedules

# (optimizer, schedule config, steps per epoch, warm-up steps, steps after the warm-up) -> the main schedule
ScheduleBuilder = Callable[[torch.optim.Optimizer, ScheduleConfig, int, int, int], lr_scheduler.LRScheduler]


def _step(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, warmup: int, main_steps: int):
    """Multiply by ``gamma`` at each milestone (epochs and iterations both count from the start of the run)."""
    milestones = sorted({int(round(m * steps_per_epoch)) for m in cfg.milestones} | set(cfg.milestone_iters))
    return lr_scheduler.MultiStepLR(optimizer, [m - warmup for m in milestones if m > warmup], gamma=cfg.gamma)


def _cosine(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, warmup: int, main_steps: int):
    base = optimizer.param_groups[0]["lr"]
    if cfg.min_lr_factor and len({g["lr"] for g in optimizer.param_groups}) > 1:
        # Groups of different peaks (fine-tuning's backbone_lr): eta_min is one absolute number, so use the closed
        # form as a factor of each group's own peak instead.
        floor = cfg.min_lr_factor
        return lr_scheduler.LambdaLR(
            optimizer, lambda t: floor + (1 - floor) * (1 + math.cos(math.pi * min(t, main_steps) / main_steps)) / 2)
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=base * cfg.min_lr_factor)


def _linear(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, warmup: int, main_steps: int):
    """Straight down to ``min_lr_factor`` of the peak at the last step: the budget-aware schedule of Li et al. 2020
    ("Budgeted Training"), which found it the best of the common shapes when the run's length is set by a budget."""
    floor = cfg.min_lr_factor
    return lr_scheduler.LambdaLR(optimizer, lambda t: floor + (1 - floor) * (1 - min(t, main_steps) / main_steps))


def _onecycle(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, warmup: int, main_steps: int):
    return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                   total_steps=main_steps + 1, pct_start=cfg.pct_start, cycle_momentum=False)


def _constant(optimizer, cfg: ScheduleConfig, steps_per_epoch: int, warmup: int, main_steps: int):
    return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


SCHEDULES: dict[str, ScheduleBuilder] = {"step": _step, "cosine": _cosine, "linear": _linear,
                                         "onecycle": _onecycle, "constant": _constant}


def warmup_steps(cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in steps (epochs and iterations add up), cut to at most half the run, so that a run shorter
    than its recipe's warm-up (a budget of less than an epoch) still spends most of its steps decaying."""
    return min(int(round(cfg.warmup_epochs * steps_per_epoch)) + cfg.warmup_iters, total_steps // 2)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                    total_steps: int) -> lr_scheduler.LRScheduler:
    """Warm-up (linear or constant, in epochs and/or iterations) followed by the named schedule."""
    warmup = warmup_steps(cfg, steps_per_epoch, total_steps)
    main = SCHEDULES[cfg.name](optimizer, cfg, steps_per_epoch, warmup, max(total_steps - warmup, 1))
    if warmup == 0:
        return main
    if cfg.warmup_mode == "linear":
        first = lr_scheduler.LinearLR(optimizer, start_factor=cfg.warmup_factor, end_factor=1.0, total_iters=warmup)
    else:
        first = lr_scheduler.ConstantLR(optimizer, factor=cfg.warmup_factor, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [first, main], milestones=[warmup])


def total_steps_for(cfg: Config, steps_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps, epochs) of a run without a budget: ``iterations`` when set, else ``epochs`` full epochs."""
    if cfg.iterations is not None:
        return cfg.iterations, math.ceil(cfg.iterations / steps_per_epoch)
    return cfg.epochs * steps_per_epoch, cfg.epochs


def _check_covers(registry: dict, names) -> None:
    missing, extra = set(typing.get_args(names)) - set(registry), set(registry) - set(typing.get_args(names))
    if missing or extra:
        raise ImportError(f"registry and config disagree: no builder for {sorted(missing)}, no name for {sorted(extra)}")


_check_covers(OPTIMIZERS, OptimizerName)
_check_covers(SCHEDULES, ScheduleName)
