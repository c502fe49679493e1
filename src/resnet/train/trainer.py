"""`resnet train` as a library call: :func:`train` runs a whole recipe and returns where the run was written.

Read top to bottom: :class:`Trainer` sets a run up (everything a user can get wrong is checked before a file is
written), :meth:`Trainer._train` is the loop (step, log, ask the budget where to end, checkpoint, stop, evaluate at
epoch ends), and :meth:`Trainer._finish` tests the final model and writes the report. What the run decides lives in
``self.state`` (:mod:`.run_state`); the config is what the user asked for and is never written to.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..config import Config, parse_duration, resume_changes
from ..data import build_data
from ..device import resolve_device, resolve_precision, synchronize
from ..errors import UserError
from ..writes import WriteError
from ..evaluate import EvalResult, black_level, evaluate
from ..mistakes import MistakeCollector
from ..runs import FoundCheckpoint, latest_valid_checkpoint, resume_checkpoint, resume_run_dir, saved_config_file
from . import distributed as dist
from .budget import BudgetKeeper, plan_run, time_the_run
from .checkpoint import rng_state, set_rng_state
from .cuda_graph import graph_note, make_step, untimed_calls
from .finetune import plan_finetuning
from .log import RunLogger, epoch_line, format_duration
from .loop import NonFiniteLoss, StepWindow, weights_finite
from .optim import build_optimizer, build_scheduler, scaled_lr, total_steps_for
from .precise_bn import batchnorms, recompute_bn
from .probe import probe_run
from .resolution import fit_resolution
from .report import RunResult, banner, results, write_final
from .run_files import (checkpoint, claim_run_dir, open_run_dir, restore, saved_run_state, write_checkpoint,
                        write_snapshot)
from .run_state import RunState
from .setup import configure_torch, make_card, make_context, model_for, planned_run_dir, wrap_for_training
from .space import check_space
from .stop import StopFlag


class Trainer:
    """One run: set up in ``__init__``, trained to the end by :meth:`run`."""

    def __init__(self, cfg: Config, resume: str | Path | None = None, log=print, started: float | None = None):
        started = time.perf_counter() if started is None else started  # a budget counts from here
        self.cfg = cfg
        self.env = dist.init_distributed(resolve_device(cfg.device))
        self.device = dist.device_for(self.env, resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        configure_torch(cfg, self.device)
        self._say = log if self.env.is_main else (lambda *a, **k: None)
        self._agree = partial(dist.broadcast_floats, device=self.device)  # rank 0's numbers, on every process

        found = resume_checkpoint(resume, cfg.out) if resume is not None else None
        ckpt_path, ckpt = (found.path, found.content) if found else (None, None)
        saved = saved_run_state(ckpt) if ckpt is not None else {}
        torch.manual_seed(cfg.seed)
        self.data = build_data(cfg.data, cfg.batch_size, cfg.seed, self.device, self.env.rank, self.env.world,
                               cfg.channels_last, in_chans=int(cfg.model.kwargs.get("in_chans", 3)), log=self._say)
        self.model, self.init_note = model_for(cfg, self.data, self.device, self.env, fresh=ckpt is None)
        self.card = make_card(cfg, self.data)
        if self.env.is_main:  # a disk too small for the run is found now, before any time is spent on it
            check_space(resume_run_dir(resume, cfg.out) if resume is not None else planned_run_dir(cfg), cfg,
                        self.model)
        self.probe = probe_run(self.model, *next(iter(self.data.train.epoch(0))), cfg.batch_size,
                               self.data.input_size, self.device, self.precision,
                               timed=cfg.budget is not None and not saved.get("budget"))

        # A run from random weights has no pretrained layers to treat apart, whatever its recipe's finetune section.
        from_weights = bool(cfg.pretrained or cfg.init_from)
        spe = len(self.data.train)
        self.finetune = plan_finetuning(self.model, cfg.finetune, spe) if from_weights else None
        self.backbone_lr = cfg.finetune.backbone_lr if from_weights else 1.0
        w = self.env.world
        self.state = RunState(run_dir="", device=str(self.device), precision=self.precision, world_size=w,
                              global_batch=cfg.batch_size * w, lr=scaled_lr(cfg, w), steps_per_epoch=spe,
                              total_steps=0, epochs=0)
        self.evaluate = partial(evaluate, device=self.device, precision=self.precision, num_classes=len(
            self.data.classes), input_size=self.data.input_size, fill=black_level(self.data.mean, self.data.std))
        self.bn_sample = (self.data.train_sample(cfg.precise_bn) if cfg.precise_bn and self.data.train_sample
                          and batchnorms(self.model) else None)
        self.keeper, self.size_note = None, None
        if saved.get("train_size"):  # the resolution the run's budget chose when it started
            self.state.train_size = saved["train_size"]
            self._set_train_size(saved["train_size"])
        if cfg.budget is not None and saved.get("budget"):
            self.keeper = BudgetKeeper.from_state(saved["budget"], parse_duration(cfg.budget), spe, cfg.eval_every,
                                                  saved["step"], self._agree)
        elif cfg.budget is not None:
            self.keeper = self._plan_budget(started, spe)
        self.state.end_at(self.keeper.end if self.keeper else total_steps_for(cfg, spe)[0])
        self.optimizer = build_optimizer(self.model, cfg.optim, self.state.lr, self.backbone_lr)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, spe,
                                         self.keeper.plan.steps if self.keeper else self.state.total_steps)
        if self.keeper:  # built for the first plan, stretched or compressed when the keeper moves the end
            self.scheduler = self.keeper.stretched(self.scheduler)
        train_model = wrap_for_training(self.model, cfg, self.env, self.device,
                                        unused_parameters=bool(self.finetune and self.finetune.toggles))
        self.ctx = make_context(cfg, train_model, self.optimizer, self.scheduler, self.device, self.precision,
                                len(self.data.classes), ema_of=self.model,
                                freeze=self.finetune.apply if self.finetune else None)
        self.step_fn = make_step(self.ctx, cfg.cuda_graph, distributed=self.env.enabled, compiled=cfg.compile,
                                 log=self._say)

        if resume is not None:
            self.state.run_dir = str(resume_run_dir(resume, cfg.out))
            self._continue(resume, found)
        else:
            self.state.run_dir = str(claim_run_dir(cfg, restarted=dist.elastic_restart()))
        self.run_dir = Path(self.state.run_dir)
        self.last_checkpoint: Path | None = ckpt_path
        dist.barrier()
        with self._run_files():
            if self.env.is_main:
                open_run_dir(self.run_dir, cfg)
                self.state.save(self.run_dir)
            self.logger = RunLogger(self.run_dir, enabled=self.env.is_main)
            if resume is not None:
                self.logger.truncate_after(self.ctx.step)
        dist.barrier()
        self.stop = StopFlag(self._say)
        self._test_result: EvalResult | None = None  # the final test, when the last epoch's evaluation was it
        self._mistakes: MistakeCollector | None = None  # gathered by the final test, for the report page
        self._t0, self._before = time.perf_counter(), self.state.train_seconds  # training time: from run() on

    def _plan_budget(self, started: float, spe: int) -> BudgetKeeper:
        """The budget's plan (train/budget.py), at a lower training resolution when the full one fits too few epochs
        of a folder cut by random-resized crops in memory (train/resolution.py)."""
        cfg = self.cfg
        guess = (self.probe.step_seconds(cfg.batch_size),
                 f"timed at batch {self.probe.batch} and scaled to {cfg.batch_size}")
        plan = partial(plan_run, cfg.budget, started, guess, self._time_pieces, spe, cfg.eval_every,
                       last_eval=self.data.val is not None, agree=self._agree,
                       max_steps=cfg.max_epochs * spe if cfg.max_epochs else None)
        full = getattr(self.data.train, "crop_size", None)
        if not (cfg.data.fit_resolution and full):
            return plan()
        keeper, size, self.size_note = fit_resolution(plan, self._set_train_size, full, spe)
        self.state.train_size = size if size != full else None
        return keeper

    def _set_train_size(self, size: int) -> None:
        """Train (and re-estimate BatchNorm statistics) on random-resized crops of ``size`` px from now on."""
        for loader in (self.data.train, self.bn_sample):
            if loader is not None:
                loader.set_crop_size(size)

    def _time_pieces(self, budget_s: float) -> tuple[float, float, float]:
        """A training step, an evaluation pass and the final test timed for the budget's plan, on a copy of the
        model: the run's weights and random state are left as they were."""
        cfg, rng, model = self.cfg, rng_state(), copy.deepcopy(self.model)
        optimizer = build_optimizer(model, cfg.optim, self.state.lr, self.backbone_lr)
        ctx = make_context(cfg, model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                           self.device, self.precision, len(self.data.classes))
        step = make_step(ctx, cfg.cuda_graph, distributed=self.env.enabled, compiled=cfg.compile, log=self._say)
        step_s, eval_s, test_s = time_the_run(step, untimed_calls(step), self.data.train.epoch(0),
                                              partial(self.evaluate, model), self.data.eval_loader,
                                              partial(self.evaluate, model, tta=cfg.test_tta), self.data.test,
                                              self.device, budget_s)
        set_rng_state(rng)
        # Precise BN before each evaluation: a forward pass over its images, at the evaluation's pace per image.
        bn_s = eval_s * self.bn_sample.size / self.data.eval_loader.size if self.bn_sample else 0.0
        return step_s, eval_s + bn_s, test_s + bn_s

    def _continue(self, resume, found: FoundCheckpoint) -> None:
        """A resumed run: its checkpoint's state, and the config changes this resume asked for kept in run.json."""
        self.state.changes = resume_changes(saved_config_file(resume, self.cfg.out), self.cfg)
        if found.skipped:
            self._say(f"{found.skipped_note()} in {self.state.run_dir}")
        path, ckpt = found.path, found.content
        if ckpt is None:
            self._say(f"{self.state.run_dir} has no valid checkpoint yet: starting the run again from step 0")
            return
        restore(ckpt, path, self.state, self.model, self.optimizer, self.scheduler, self.ctx.scaler, self.ctx.ema)
        self.ctx.step = self.state.step
        if self.keeper:  # the end may have moved since the schedule's position was saved
            self.scheduler.end_at(self.state.step, self.keeper.end)
        self._say(f"resumed from {path} at step {self.state.step} (epoch {self.state.epoch + 1}, step "
                  f"{self.state.step_in_epoch} of {self.state.steps_per_epoch})")

    # ------------------------------------------------------------------------------------------------ the loop

    def run(self) -> RunResult:
        cfg = self.cfg
        notes = [self.init_note, self.size_note, self.finetune.describe() if self.finetune else None,
                 f"precise BN: BatchNorm statistics re-estimated on {self.bn_sample.size:,} training images (augmented "
                 f"as in training) before every evaluation" if self.bn_sample else None]
        graphs = graph_note(self.step_fn, self.ctx, cfg.cuda_graph, self.env.enabled, cfg.compile)
        self._say("\n".join(banner(cfg, self.state, self.data, self.model, graphs, self.keeper, notes)))
        self._t0 = time.perf_counter()
        if self.keeper:
            self.keeper.mark(self.ctx.step)
        if self.ctx.step == 0:
            self._snapshot(0)
        try:
            with self.stop, self._run_files():
                self._train()
        except NonFiniteLoss as exc:
            raise UserError(exc.advice(self.last_checkpoint)) from None
        with self._run_files():
            return self._finish()

    @contextmanager
    def _run_files(self) -> Iterator[None]:
        """A failed write of the run's own files ends the run at once, saying how to continue it."""
        try:
            yield
        except WriteError as exc:
            if not (self.run_dir / "config.yaml").is_file():  # nothing of the run was written: it can start again
                raise exc.then("run the same command again") from None
            intact = latest_valid_checkpoint(self.run_dir)  # (what --resume auto will take)
            kept = f" from {intact}, which is intact" if intact else ""
            raise exc.then(f"continue with `resnet train --resume auto --out {self.run_dir}`{kept}") from None

    def _train(self) -> None:
        """Per-step numbers stay on the device; they are read, checked for non-finite values and written every
        ``log_every`` steps, before every checkpoint and at epoch ends."""
        cfg, run = self.cfg, self.state
        window = StepWindow()
        fit_every = self.keeper.fit_every(cfg.log_every) if self.keeper else 0  # the plan's, fixed for the run
        while self.ctx.step < run.total_steps:
            epoch, start = run.epoch, time.perf_counter()
            steps = min(run.steps_per_epoch - run.step_in_epoch, run.total_steps - self.ctx.step)
            # tqdm hides itself when stderr is not a terminal (disable=None); other processes never show one.
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{run.epochs}", unit="step", leave=False,
                       dynamic_ncols=True, disable=None if self.env.is_main else True, mininterval=1.0)
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # this epoch's, from a resume point on
            for images, labels in self.data.train.epoch(epoch, run.step_in_epoch):
                lr = self.optimizer.param_groups[0]["lr"]
                loss, errors = self.step_fn(images, labels)
                run.step_in_epoch, step = run.step_in_epoch + 1, self.ctx.step
                sums += window.add(loss, errors, labels.shape[0])
                bar.update(1)
                if step % cfg.log_every == 0:
                    self._log_window(window, lr, epoch, bar)
                if fit_every and step % fit_every == 0:
                    synchronize(self.device)  # the steps' time, not their launch: once a log window or ~10 s at most
                    run.end_at(self.keeper.end_at(step))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    window.check(step)
                    self.save_checkpoint()
                if (step % cfg.log_every == 0 or not self.env.enabled) and self.stop.requested(self.env, self.device):
                    window.check(step)
                    raise self.stop.stopped(step, self.save_checkpoint() or self.last_checkpoint, self.run_dir)
                if run.step_in_epoch >= run.steps_per_epoch or step >= run.total_steps:
                    break  # (the budget keeper may have moved the last step since the epoch began)
            bar.close()
            window.check(self.ctx.step)
            self._end_epoch(epoch, sums, time.perf_counter() - start)

    def _log_window(self, window: StepWindow, lr: float, epoch: int, bar) -> None:
        loss, errors, count = dist.all_reduce_sum(window.take(self.ctx.step)).tolist()
        record = {"step": self.ctx.step, "epoch": epoch + self.state.step_in_epoch / self.state.steps_per_epoch,
                  "train_loss": loss / max(count, 1), "train_error": 100 * errors / max(count, 1), "lr": lr}
        self.logger.log_steps(record)
        budget = {"budget_left": format_duration(self.keeper.left())} if self.keeper else {}
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", err=f"{record['train_error']:.1f}%", lr=f"{lr:.3g}",
                        **budget, refresh=False)

    def _end_epoch(self, epoch: int, sums: torch.Tensor, seconds: float) -> None:
        """Epoch record (training numbers, evaluation when due), snapshot, checkpoint, best.pt."""
        cfg, run = self.cfg, self.state
        loss, errors, count = dist.all_reduce_sum(sums).tolist()
        record = {"epoch": epoch + 1, "step": self.ctx.step, "train_loss": loss / max(count, 1),
                  "train_error": 100.0 * errors / max(count, 1), "val_loss": None, "val_top1": None,
                  "val_top5": None, "eval_set": self.data.eval_set, "lr": self.optimizer.param_groups[0]["lr"],
                  "img_per_s": count / max(seconds, 1e-9), "seconds": seconds, "eval_seconds": None}
        last, result = self.ctx.step >= run.total_steps, None
        if last and self.data.val is None:  # the evaluation set is the test set: the final test is this evaluation
            self._test_result = result = self._final_test()
            record["eval_tta"] = cfg.test_tta
        elif (epoch + 1) % cfg.eval_every == 0 or last:
            result = self._evaluate(self.data.eval_loader)
            if self.keeper:
                self.keeper.evaluated(result.seconds)
        if result is not None:
            record.update(val_loss=result.loss, val_top1=result.top1, val_top5=result.top5, eval_seconds=result.seconds)
        self.logger.log_epoch(record)
        self._say(epoch_line(record, run.epochs, self._elapsed(), self.ctx.step, run.total_steps))
        if run.step_in_epoch >= run.steps_per_epoch:  # (a run may also end mid-epoch)
            run.epoch, run.step_in_epoch = epoch + 1, 0
            self._snapshot(epoch + 1)
        if self.keeper and not last:  # an epoch end is a fit for the budget too
            run.end_at(self.keeper.end_at(self.ctx.step))
        best = self.data.val is not None and result is not None and result.top1 > (run.best_top1 or -1.0)
        run.best_top1 = result.top1 if best else run.best_top1
        self.save_checkpoint(best=best)

    # -------------------------------------------------------------------------------------------- files, finish

    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Write a step checkpoint and run.json (rank 0); every process waits for it. Never writes non-finite
        weights: the run stops with :class:`NonFiniteLoss` instead."""
        if not weights_finite(self.model):
            raise NonFiniteLoss(self.ctx.step, float("nan"), what="weights")
        self.state.step, self.state.train_seconds = self.ctx.step, self._elapsed()
        self.state.budget = self.keeper.state_dict() if self.keeper else None
        path = None
        if self.env.is_main:
            ckpt = checkpoint(self.model, self.optimizer, self.scheduler, self.ctx.scaler, self.ctx.ema, self.cfg,
                              self.card, self.state)
            path = write_checkpoint(self.run_dir, ckpt, self.state, self.cfg.keep_checkpoints, best)
            self.last_checkpoint = path
        dist.barrier()
        return path

    def _snapshot(self, epoch: int) -> None:
        """Keep the weights at the end of ``epoch`` (0: before the first step) when the recipe asks
        (``snapshot_epochs``), e.g. for the gradient-flow analysis after training."""
        if epoch in self.cfg.snapshot_epochs and self.env.is_main:
            write_snapshot(self.run_dir, self.model, epoch, self.ctx.step)
        dist.barrier()

    def _finish(self) -> RunResult:
        # Training time, evaluations included; the final test is not, even when the last epoch's evaluation was it.
        train_seconds = self._elapsed() - (self._test_result.seconds if self._test_result else 0.0)
        test = self._test_result or self._final_test()
        mistakes = self._mistakes.mistakes()  # (all processes gather)
        self.state.step = self.ctx.step
        result = results(self.cfg, self.state, self.card, self.model, test, train_seconds, self.keeper,
                         bn_images=self.bn_sample.size if self.bn_sample else 0)
        if self.env.is_main:
            write_final(self.run_dir, self._eval_model(), self.card, result, test, self.data.test_name, mistakes,
                        self.data.test, self._say, self.logger.warn)
            self.state.save(self.run_dir)
        self.logger.close()
        dist.barrier()
        return RunResult(self.run_dir, test, result)

    def _elapsed(self) -> float:
        """Training time so far, across resumes."""
        return self._before + time.perf_counter() - self._t0

    def _eval_model(self) -> nn.Module:
        return self.ctx.ema.module if self.ctx.ema is not None else self.model

    def _precise_bn(self) -> float:
        """Re-estimate the evaluation model's BatchNorm statistics on training images (``precise_bn``); seconds."""
        if self.bn_sample is None:
            return 0.0
        keep = self.finetune.frozen_batchnorms(self.ctx.step) if self.finetune else frozenset()
        return recompute_bn(self._eval_model(), self.bn_sample.epoch(0), self.device, self.precision, keep,
                            self.env.world)

    def _evaluate(self, loader, tta: str = "none") -> EvalResult:
        """An evaluation of the model as it is now, its BatchNorm statistics re-estimated first (in its seconds)."""
        bn_s = self._precise_bn()
        result = self.evaluate(self._eval_model(), loader.epoch(0), tta=tta)
        result.seconds += bn_s
        return result

    def _final_test(self) -> EvalResult:
        """The test of the final model, which also gathers its most confident mistakes for the report page."""
        bn_s = self._precise_bn()
        self._mistakes = MistakeCollector(len(self.data.classes), rank=self.env.rank, world=self.env.world)
        result = self.evaluate(self._eval_model(), self.data.test.epoch(0), tta=self.cfg.test_tta,
                               observe=self._mistakes)
        result.seconds += bn_s
        return result


def train(cfg: Config, resume: str | Path | None = None, log=print, started: float | None = None) -> RunResult:
    """Train ``cfg`` to the end (or continue the run of checkpoint ``resume``; ``"auto"`` = newest in cfg.out).
    A budget counts from ``started`` (a ``time.perf_counter()`` reading), by default from this call."""
    if resume is None and dist.elastic_restart() and cfg.out and latest_valid_checkpoint(Path(cfg.out)):
        resume = "auto"  # torchrun restarted the group after a failure: continue from the last checkpoint
    trainer = Trainer(cfg, resume=resume, log=log, started=started)
    try:
        return trainer.run()
    finally:
        dist.shutdown()
