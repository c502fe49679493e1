"""The phases a run is set up in, in order, each returning what the next needs: where it runs (:func:`place`), its
data and model (:func:`build_parts`), its length (:func:`plan_length`: timing and the budget's plan), its state
(:func:`new_state`, created once with real values) and what a training step touches (:func:`build_stepping`).
:class:`~.trainer.Trainer` calls them in this order; nothing here writes a file."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import Config, parse_duration
from ..data import DataBundle, build_data
from ..device import resolve_device, resolve_precision
from ..evaluate import black_level, evaluate
from ..weights import ModelCard
from . import distributed as dist
from .budget import BudgetKeeper, Timings, plan_run, time_the_run
from .checkpoint import rng_state, set_rng_state
from .cuda_graph import make_step, untimed_calls
from .finetune import FineTuning, plan_finetuning
from .loop import TrainContext
from .optim import build_optimizer, build_scheduler, scaled_lr, total_steps_for
from .precise_bn import batchnorms
from .probe import probe_run
from .resolution import fit_resolution
from .run_state import RunState
from .setup import configure_torch, make_card, make_context, mixes, model_for, wrap_for_training
from .space import check_space


@dataclass
class Placement:
    """Where a run runs: its processes, device and precision, how it speaks (rank 0 only) and how its processes
    agree on rank 0's numbers."""

    env: dist.DistEnv
    device: torch.device
    precision: str
    say: Callable[..., None]
    agree: Callable[[list[float]], list[float]]


def place(cfg: Config, log: Callable[..., None]) -> Placement:
    env = dist.init_distributed(resolve_device(cfg.device))
    device = dist.device_for(env, resolve_device(cfg.device))
    configure_torch(cfg, device)
    return Placement(env, device, resolve_precision(cfg.precision, device),
                     log if env.is_main else (lambda *a, **k: None), partial(dist.broadcast_floats, device=device))


@dataclass
class Parts:
    """A run's data and model, and what follows from them alone."""

    data: DataBundle
    model: nn.Module
    card: ModelCard
    init_note: str | None  # where the weights came from, for the banner
    finetune: FineTuning | None  # the schedule of a run from pretrained weights
    backbone_lr: float  # the pretrained layers' share of the lr
    lr: float  # the peak lr, scaled to the global batch
    evaluate: Callable  # (model, batches, tta=..., observe=...) -> EvalResult on this run's device and classes
    bn_sample: object | None  # training images to re-estimate BatchNorm statistics on (``precise_bn``)

    def set_train_size(self, size: int) -> None:
        """Train (and re-estimate BatchNorm statistics) on random-resized crops of ``size`` px from now on."""
        for loader in (self.data.train, self.bn_sample):
            if loader is not None:
                loader.set_crop_size(size)


def build_parts(cfg: Config, where: Placement, fresh: bool, run_dir: Path) -> Parts:
    """The data and the model (from ``--pretrained``/``init_from`` weights when ``fresh``; a resumed run loads its
    checkpoint's later); a disk under ``run_dir`` too small for the run is refused now, before any time is spent."""
    env, device = where.env, where.device
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.data, cfg.batch_size, cfg.seed, device, env.rank, env.world, cfg.channels_last,
                      in_chans=int(cfg.model.kwargs.get("in_chans", 3)), log=where.say)
    model, note = model_for(cfg, data, device, env, fresh=fresh)
    if env.is_main:
        check_space(run_dir, cfg, model)
    # A run from random weights has no pretrained layers to treat apart, whatever its recipe's finetune section.
    from_weights = bool(cfg.pretrained or cfg.init_from)
    finetune = plan_finetuning(model, cfg.finetune, len(data.train)) if from_weights else None
    evaluate_here = partial(evaluate, device=device, precision=where.precision, num_classes=len(data.classes),
                            input_size=data.input_size, fill=black_level(data.mean, data.std))
    bn_sample = (data.train_sample(cfg.precise_bn) if cfg.precise_bn and data.train_sample and batchnorms(model)
                 else None)
    return Parts(data, model, make_card(cfg, data), note, finetune, cfg.finetune.backbone_lr if from_weights else 1.0,
                 scaled_lr(cfg, env.world), evaluate_here, bn_sample)


@dataclass
class Length:
    """How long a run trains: its last step, the budget keeper that may move it, and the training resolution."""

    total_steps: int
    keeper: BudgetKeeper | None
    train_size: int | None = None  # side of the training crops when a budget chose it below data.image_size
    size_note: str | None = None  # the banner's line on that choice


def plan_length(cfg: Config, where: Placement, parts: Parts, saved: dict, started: float) -> Length:
    """The run's length: its steps, or a budget's plan from timed pieces (a resumed budget run's keeper from its
    checkpoint, ``saved``); a step that would not fit in memory is refused first."""
    data, spe = parts.data, len(parts.data.train)
    probe = probe_run(parts.model, *next(iter(data.train.epoch(0))), cfg.batch_size, data.input_size, where.device,
                      where.precision, timed=cfg.budget is not None and not saved.get("budget"))
    size = saved.get("train_size")  # the resolution the run's budget chose when it started
    if size:
        parts.set_train_size(size)
    if cfg.budget is None:
        return Length(total_steps_for(cfg, spe)[0], None, size)
    shape = Timings(spe, cfg.eval_every, last_eval=data.val is not None, step_s=0.0, eval_s=0.0, test_s=0.0)
    if saved.get("budget"):
        keeper = BudgetKeeper.from_state(saved["budget"], parse_duration(cfg.budget), shape, saved["step"],
                                         where.agree)
        return Length(keeper.end, keeper, size)
    guess = (probe.step_seconds(cfg.batch_size), f"timed at batch {probe.batch} and scaled to {cfg.batch_size}")
    plan = partial(plan_run, cfg.budget, started, guess, partial(time_pieces, cfg, where, parts), shape,
                   where.agree, max_steps=cfg.max_epochs * spe if cfg.max_epochs else None,
                   training_only=cfg.budget_scope == "training")
    full = getattr(data.train, "crop_size", None)
    if not (cfg.data.fit_resolution and full):
        keeper = plan()
        return Length(keeper.end, keeper, size)
    # At a lower training resolution when the full one fits too few epochs of a folder cut by random-resized crops
    # in memory (train/resolution.py).
    keeper, size, note = fit_resolution(plan, parts.set_train_size, full)
    return Length(keeper.end, keeper, size if size != full else None, note)


def time_pieces(cfg: Config, where: Placement, parts: Parts, budget_s: float) -> tuple[float, float, float]:
    """A training step, an evaluation pass and the final test timed for the budget's plan, on a copy of the model:
    the run's weights and random state are left as they were."""
    rng, model, data = rng_state(), copy.deepcopy(parts.model), parts.data
    optimizer = build_optimizer(model, cfg.optim, parts.lr, parts.backbone_lr)
    ctx = make_context(cfg, model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                       where.device, where.precision, len(data.classes))
    step = make_step(ctx, cfg.cuda_graph, distributed=where.env.enabled, compiled=cfg.compile, log=where.say)
    step_s, eval_s, test_s = time_the_run(step, untimed_calls(step), data.train.epoch(0),
                                          partial(parts.evaluate, model), data.eval_loader,
                                          partial(parts.evaluate, model, tta=cfg.test_tta), data.test,
                                          where.device, budget_s)
    set_rng_state(rng)
    # Precise BN before each evaluation: a forward pass over its images, at the evaluation's pace per image.
    bn_s = eval_s * parts.bn_sample.size / data.eval_loader.size if parts.bn_sample else 0.0
    return step_s, eval_s + bn_s, test_s + bn_s


def new_state(cfg: Config, where: Placement, parts: Parts, length: Length, run_dir: Path, saved: dict) -> RunState:
    """The run's state at step 0 (a resumed run's checkpoint restores its progress into it later). A decision the
    steps are built from is taken from a resumed run's checkpoint (``saved``), as it was made when the run began."""
    world, spe = where.env.world, len(parts.data.train)
    return RunState(run_dir=str(run_dir), device=str(where.device), precision=where.precision, world_size=world,
                    global_batch=cfg.batch_size * world, lr=parts.lr, steps_per_epoch=spe,
                    total_steps=length.total_steps, train_size=length.train_size,
                    mixing=saved.get("mixing", mixes(cfg, length.total_steps / spe)))


@dataclass
class Stepping:
    """What a training step touches (``ctx``, whose steps advance the run's state) and the step itself."""

    optimizer: torch.optim.Optimizer
    scheduler: object  # an LR scheduler; a budget run's is stretched to end where its keeper ends the run
    ctx: TrainContext
    step_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # -> (loss, errors)


def build_stepping(cfg: Config, where: Placement, parts: Parts, length: Length, state: RunState) -> Stepping:
    model, keeper = parts.model, length.keeper
    optimizer = build_optimizer(model, cfg.optim, parts.lr, parts.backbone_lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, state.steps_per_epoch,
                                keeper.plan.steps if keeper else state.total_steps)
    if keeper:  # built for the first plan, stretched or compressed when the keeper moves the end
        scheduler = keeper.stretched(scheduler)
    finetune = parts.finetune
    train_model = wrap_for_training(model, cfg, where.env, where.device,
                                    unused_parameters=bool(finetune and finetune.toggles))
    ctx = make_context(cfg, train_model, optimizer, scheduler, where.device, where.precision, len(parts.data.classes),
                       ema_of=model, freeze=finetune.apply if finetune else None, progress=state,
                       mixing=state.mixing)
    return Stepping(optimizer, scheduler, ctx, make_step(ctx, cfg.cuda_graph, distributed=where.env.enabled,
                                                         compiled=cfg.compile, log=where.say))
