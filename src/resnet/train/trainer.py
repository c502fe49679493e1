"""`resnet train` as a library call: :func:`train` runs a whole recipe and returns where the run was written.

Read top to bottom: :class:`Trainer` sets a run up in the phases of :mod:`.assembly` (everything a user can get wrong
is checked before a file is written), :meth:`Trainer._train` is the loop (step, log, ask the budget where to end,
checkpoint, stop, evaluate at epoch ends), and :meth:`Trainer._finish` tests the final model and writes the report.
What the run decides lives in ``self.state`` (:mod:`.run_state`), whose ``step`` is the run's one step counter; the
config is what the user asked for and is never written to.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ..config import Config, resume_changes
from ..device import synchronize
from ..errors import UserError
from ..evaluate import EvalResult
from ..mistakes import MistakeCollector
from ..runs import FoundCheckpoint, latest_valid_checkpoint, resume_checkpoint, resume_run_dir, saved_config_file
from . import distributed as dist
from .assembly import build_parts, build_stepping, new_state, place, plan_length
from .cuda_graph import graph_note
from .log import RunLogger, epoch_line, format_duration
from .loop import NonFiniteLoss, StepWindow, weights_finite
from .precise_bn import recompute_bn
from .report import RunResult, banner, results, write_final
from .run_files import (checkpoint, claim_run_dir, ending_on_failed_write, open_run_dir, restore, saved_run_state,
                        write_checkpoint, write_snapshot)
from .setup import mix_note
from .stop import StopFlag


class Trainer:
    """One run: set up in ``__init__``, trained to the end by :meth:`run`."""

    def __init__(self, cfg: Config, resume: str | Path | None = None, log=print, started: float | None = None):
        started = time.perf_counter() if started is None else started  # a budget counts from here
        self.cfg, self.where = cfg, place(cfg, log)
        self.env, self.device, self._say = self.where.env, self.where.device, self.where.say
        found = resume_checkpoint(resume, cfg.out) if resume is not None else None
        saved = saved_run_state(found.content) if found and found.content is not None else {}
        run_dir = (resume_run_dir(resume, cfg.out) if resume is not None else
                   claim_run_dir(cfg, restarted=dist.elastic_restart()))
        # 1. data and model; 2. timing and plan; 3. the run's state; 4. what a step touches
        self.parts = build_parts(cfg, self.where, fresh=not saved, run_dir=run_dir)
        self.data, self.model = self.parts.data, self.parts.model
        self.length = plan_length(cfg, self.where, self.parts, saved, started)
        self.keeper = self.length.keeper
        self.state = new_state(cfg, self.where, self.parts, self.length, run_dir, saved)
        self.stepping = build_stepping(cfg, self.where, self.parts, self.length, self.state)
        self.optimizer, self.ctx = self.stepping.optimizer, self.stepping.ctx
        self.run_dir, self.last_checkpoint = run_dir, found.path if found else None
        if resume is not None:
            self._continue(resume, found)
        self.logger, self.stop = self._open_run_dir(resumed=resume is not None), StopFlag(self._say)
        self._test: EvalResult | None = None  # the final test, once run (:meth:`final_test`)
        self._mistakes: MistakeCollector | None = None  # gathered by the final test, for the report page
        self._t0, self._before = time.perf_counter(), self.state.train_seconds  # training time: from run() on

    def _open_run_dir(self, resumed: bool) -> RunLogger:
        """The run's directory with its config.yaml and run.json, and its logs (a resumed run's cut back to its
        checkpoint's step)."""
        dist.barrier()
        with ending_on_failed_write(self.run_dir):
            if self.env.is_main:
                open_run_dir(self.run_dir, self.cfg)
                self.state.save(self.run_dir)
            logger = RunLogger(self.run_dir, enabled=self.env.is_main)
            if resumed:
                logger.truncate_after(self.state.step)
        dist.barrier()
        return logger

    def _continue(self, resume, found: FoundCheckpoint) -> None:
        """A resumed run: its checkpoint's state, and the config changes this resume asked for kept in run.json."""
        self.state.changes = resume_changes(saved_config_file(resume, self.cfg.out), self.cfg)
        if found.skipped:
            self._say(f"{found.skipped_note()} in {self.run_dir}")
        if found.content is None:
            self._say(f"{self.run_dir} has no valid checkpoint yet: starting the run again from step 0")
            return
        st = self.stepping
        restore(found.content, found.path, self.state, self.model, st.optimizer, st.scheduler, st.ctx.scaler,
                st.ctx.ema)
        if self.keeper:  # the end may have moved since the schedule's position was saved
            st.scheduler.finish_at(self.state.step, self.keeper.end)
        self._say(f"resumed from {found.path} at step {self.state.step} (epoch {self.state.epoch + 1}, step "
                  f"{self.state.step_in_epoch} of {self.state.steps_per_epoch})")

    # ------------------------------------------------------------------------------------------------ the loop

    def run(self) -> RunResult:
        cfg, parts = self.cfg, self.parts
        epochs = self.state.total_steps / self.state.steps_per_epoch
        notes = [parts.init_note, self.length.size_note, mix_note(cfg, epochs, self.state.mixing),
                 parts.finetune.describe() if parts.finetune else None,
                 f"precise BN: BatchNorm statistics re-estimated on {parts.bn_sample.size:,} training images (augmented"
                 f" as in training) before every evaluation" if parts.bn_sample else None]
        graphs = graph_note(self.stepping.step_fn, self.ctx, cfg.cuda_graph, self.env.enabled, cfg.compile)
        self._say("\n".join(banner(cfg, self.state, self.data, self.model, graphs, self.keeper, notes)))
        self._t0 = time.perf_counter()
        if self.keeper:
            self.keeper.mark(self.state.step)
        if self.state.step == 0:
            self._snapshot(0)
        try:
            with self.stop, ending_on_failed_write(self.run_dir):
                self._train()
        except NonFiniteLoss as exc:
            raise UserError(exc.advice(self.last_checkpoint)) from None
        with ending_on_failed_write(self.run_dir):
            return self._finish()

    def _train(self) -> None:
        """Per-step numbers stay on the device; they are read, checked for non-finite values and written every
        ``log_every`` steps, before every checkpoint and at epoch ends."""
        cfg, run = self.cfg, self.state
        window = StepWindow()
        fit_every = self.keeper.fit_every(cfg.log_every) if self.keeper else 0  # the plan's, fixed for the run
        while run.step < run.total_steps:
            epoch, start = run.epoch, time.perf_counter()
            steps = min(run.steps_per_epoch - run.step_in_epoch, run.total_steps - run.step)
            # tqdm hides itself when stderr is not a terminal (disable=None); other processes never show one.
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{run.epochs}", unit="step", leave=False,
                       dynamic_ncols=True, disable=None if self.env.is_main else True, mininterval=1.0)
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # this epoch's, from a resume point on
            for images, labels in self.data.train.epoch(epoch, run.step_in_epoch):
                lr = self.optimizer.param_groups[0]["lr"]
                loss, errors = self.stepping.step_fn(images, labels)  # (advances run.step)
                run.step_in_epoch, step = run.step_in_epoch + 1, run.step
                sums += window.add(loss, errors, labels.shape[0])
                bar.update(1)
                if step % cfg.log_every == 0:
                    self._log_window(window, lr, epoch, bar)
                if fit_every and step % fit_every == 0:
                    synchronize(self.device)  # the steps' time, not their launch: once a log window or ~10 s at most
                    run.set_total_steps(self.keeper.fit_end(step))
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    window.check(step)
                    self.save_checkpoint()
                if (step % cfg.log_every == 0 or not self.env.enabled) and self.stop.requested(self.env, self.device):
                    window.check(step)
                    raise self.stop.stopped(step, self.save_checkpoint() or self.last_checkpoint, self.run_dir)
                if run.step_in_epoch >= run.steps_per_epoch or step >= run.total_steps:
                    break  # (the budget keeper may have moved the last step since the epoch began)
            bar.close()
            window.check(run.step)
            self._end_epoch(epoch, sums, time.perf_counter() - start)

    def _log_window(self, window: StepWindow, lr: float, epoch: int, bar) -> None:
        loss, errors, count = dist.all_reduce_sum(window.take(self.state.step)).tolist()
        record = {"step": self.state.step, "epoch": epoch + self.state.step_in_epoch / self.state.steps_per_epoch,
                  "train_loss": loss / max(count, 1), "train_error": 100 * errors / max(count, 1), "lr": lr}
        self.logger.log_steps(record)
        budget = {"budget_left": format_duration(self.keeper.left())} if self.keeper else {}
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", err=f"{record['train_error']:.1f}%", lr=f"{lr:.3g}",
                        **budget, refresh=False)

    def _end_epoch(self, epoch: int, sums: torch.Tensor, seconds: float) -> None:
        """Epoch record (training numbers, evaluation when due), snapshot, checkpoint, best.pt."""
        cfg, run = self.cfg, self.state
        loss, errors, count = dist.all_reduce_sum(sums).tolist()
        record = {"epoch": epoch + 1, "step": run.step, "train_loss": loss / max(count, 1),
                  "train_error": 100.0 * errors / max(count, 1), "val_loss": None, "val_top1": None,
                  "val_top5": None, "eval_set": self.data.eval_set, "lr": self.optimizer.param_groups[0]["lr"],
                  "img_per_s": count / max(seconds, 1e-9), "seconds": seconds, "eval_seconds": None}
        last = run.step >= run.total_steps
        result = self._epoch_evaluation(epoch, last)
        if result is not None:
            record.update(val_loss=result.loss, val_top1=result.top1, val_top5=result.top5, eval_seconds=result.seconds)
        if result is not None and result is self._test:
            record["eval_tta"] = cfg.test_tta
        self.logger.log_epoch(record)
        self._say(epoch_line(record, run.epochs, self._elapsed(), run.step, run.total_steps))
        if run.step_in_epoch >= run.steps_per_epoch:  # (a run may also end mid-epoch)
            run.epoch, run.step_in_epoch = epoch + 1, 0
            self._snapshot(epoch + 1)
        if self.keeper and not last:  # an epoch end is a fit for the budget too
            run.set_total_steps(self.keeper.fit_end(run.step))
        best = self.data.val is not None and result is not None and result.top1 > (run.best_top1 or -1.0)
        run.best_top1 = result.top1 if best else run.best_top1
        self.save_checkpoint(best=best)

    # -------------------------------------------------------------------------------------------- files, finish

    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Write a step checkpoint and run.json (rank 0); every process waits for it. Never writes non-finite
        weights: the run stops with :class:`NonFiniteLoss` instead."""
        if not weights_finite(self.model):
            raise NonFiniteLoss(self.state.step, float("nan"), what="weights")
        self.state.train_seconds = self._elapsed()
        self.state.budget = self.keeper.state_dict() if self.keeper else None
        path = None
        if self.env.is_main:
            st = self.stepping
            ckpt = checkpoint(self.model, st.optimizer, st.scheduler, st.ctx.scaler, st.ctx.ema, self.cfg,
                              self.parts.card, self.state)
            path = write_checkpoint(self.run_dir, ckpt, self.state, self.cfg.keep_checkpoints, best)
            self.last_checkpoint = path
        dist.barrier()
        return path

    def _snapshot(self, epoch: int) -> None:
        """Keep the weights at the end of ``epoch`` (0: before the first step) when the recipe asks
        (``snapshot_epochs``), e.g. for the gradient-flow analysis after training."""
        if epoch in self.cfg.snapshot_epochs and self.env.is_main:
            write_snapshot(self.run_dir, self.model, epoch, self.state.step)
        dist.barrier()

    def _finish(self) -> RunResult:
        test = self.final_test()
        # Training time, evaluations included; the final test is not, even when the last epoch's evaluation was it.
        train_seconds = self._elapsed() - test.seconds
        mistakes = self._mistakes.mistakes()  # (all processes gather)
        bn_sample, card = self.parts.bn_sample, self.parts.card
        result = results(self.cfg, self.state, card, self.model, test, train_seconds, self.keeper,
                         bn_images=bn_sample.size if bn_sample else 0)
        if self.env.is_main:
            write_final(self.run_dir, self._eval_model(), card, result, test, self.data.test_name, mistakes,
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
        finetune, sample = self.parts.finetune, self.parts.bn_sample
        if sample is None:
            return 0.0
        keep = finetune.frozen_batchnorms(self.state.step) if finetune else frozenset()
        return recompute_bn(self._eval_model(), sample.epoch(0), self.device, self.where.precision, keep,
                            self.env.world)

    def _epoch_evaluation(self, epoch: int, last: bool) -> EvalResult | None:
        """The evaluation due at an epoch's end: every ``eval_every`` epochs and at the last. When the evaluation set
        is the test set, the last one is the final test itself."""
        if last and self.data.val is None:
            return self.final_test()
        if (epoch + 1) % self.cfg.eval_every and not last:
            return None
        result = self._evaluate(self.data.eval_loader)
        if self.keeper:
            self.keeper.evaluated(result.seconds)
        return result

    def final_test(self) -> EvalResult:
        """The test of the final model (run once), which also gathers its most confident mistakes for the report
        page."""
        if self._test is None:
            self._mistakes = MistakeCollector(len(self.data.classes), rank=self.env.rank, world=self.env.world)
            self._test = self._evaluate(self.data.test, tta=self.cfg.test_tta, observe=self._mistakes)
        return self._test

    def _evaluate(self, loader, **options) -> EvalResult:
        """An evaluation of the model as it is now, its BatchNorm statistics re-estimated first (in its seconds)."""
        bn_s = self._precise_bn()
        result = self.parts.evaluate(self._eval_model(), loader.epoch(0), **options)
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
