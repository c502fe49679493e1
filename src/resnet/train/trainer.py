"""`resnet train` as a library call: :func:`train` runs a whole recipe and returns where the run was written.

Order of work: resolve everything that can fail on user input (config, data, model, checkpoint) before writing a
single file; then :meth:`Trainer._train` loops over the steps, deciding when to log, checkpoint, evaluate and stop;
then the final model is measured on the official test set and its weights, model card and curves are written.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..config import BudgetPlan, Config, parse_duration, save_config, to_dict
from ..data import build_data
from ..device import resolve_device, resolve_precision
from ..errors import TrainingStopped, UserError
from ..evaluate import EvalResult, black_level, evaluate
from ..io import load_checkpoint, save_safetensors, write_json
from ..modelcard import load_into, save_model
from ..pretrained import init_model
from ..runs import latest_valid_checkpoint, resume_checkpoint, resume_run_dir
from . import distributed as dist
from .budget import (EVAL_PROBE_SECONDS, MAX_PROBE_SECONDS, MIN_MEASURED_STEPS, PROBE_SHARE, Stretch, plan_budget,
                     refit_due, refitted, refuse_slow_step, retimed, shortened, time_evaluation, time_training_steps)
from .checkpoint import point_at, rng_state, save_step_checkpoint, set_rng_state
from .cuda_graph import GraphedStep, make_step, why_not_graphed
from .ema import make_ema
from .finetune import plan_finetuning
from .log import RunLogger, epoch_line, final_table, format_duration, read_jsonl, scores
from .loop import NonFiniteLoss, TrainContext, first_nonfinite, weights_finite
from .optim import build_optimizer, build_scheduler, scaled_lr, total_steps_for
from .probe import check_memory, probe_step
from .setup import build_model, configure_torch, default_run_dir, make_card, make_mixer

EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class RunResult:
    run_dir: Path
    test: EvalResult | None
    results: dict


class Trainer:
    """Holds the state of one run; :meth:`run` trains it to the end."""

    def __init__(self, cfg: Config, resume: str | Path | None = None, log=print, started: float | None = None):
        # A budget counts from ``started`` (a perf_counter() reading; the command line passes its process's start).
        self._budget_t0 = time.perf_counter() if started is None else started
        self.cfg = cfg
        self.env = dist.init_distributed(resolve_device(cfg.device))
        self.device = dist.device_for(self.env, resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        configure_torch(cfg, self.device)
        self._say = log if self.env.is_main else (lambda *a, **k: None)

        # Everything a user can get wrong is checked before the run directory is touched.
        ckpt_path = resume_checkpoint(resume, cfg.out) if resume is not None else None
        ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        torch.manual_seed(cfg.seed)
        self.data = build_data(cfg.data, cfg.batch_size, cfg.seed, self.device, self.env.rank, self.env.world,
                               cfg.channels_last, in_chans=int(cfg.model.kwargs.get("in_chans", 3)), log=self._say)
        self.model = build_model(cfg, self.data)
        # --pretrained / init_from (one loader: resnet.pretrained); a resumed run has its own weights.
        self.init_note = init_model(self.model, cfg.model.name, cfg.pretrained, cfg.init_from,
                                    cfg.reset_head) if ckpt is None else None
        self.card = make_card(cfg, self.data)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.env.enabled:
            self.model = dist.convert_sync_batchnorm(self.model, self.device)
        # Would one step fit in memory? Asked of a small batch before anything is written (and, for a budget, a
        # first word on the step's time).
        state = rng_state()
        self.probe = probe_step(self.model, *next(iter(self.data.train.epoch(0))), self.device, self.precision,
                                timed=cfg.budget is not None and cfg.budget_plan is None)
        set_rng_state(state)
        check_memory(self.probe, cfg.batch_size, self.data.input_size, self.device)

        self.steps_per_epoch = len(self.data.train)
        # Fine-tuning: layers frozen for good leave the optimizer; the head warm-up acts step by step in train_step.
        # A run from random weights has no pretrained layers to treat apart, whatever its recipe's finetune section.
        from_weights = bool(cfg.pretrained or cfg.init_from)
        self.finetune = plan_finetuning(self.model, cfg.finetune, self.steps_per_epoch) if from_weights else None
        self.backbone_lr = cfg.finetune.backbone_lr if from_weights else 1.0
        self.global_batch = cfg.batch_size * self.env.world
        self.lr = scaled_lr(cfg, self.env.world)
        self.budget_seconds = parse_duration(cfg.budget) if cfg.budget is not None else None
        if self.budget_seconds is not None and cfg.budget_plan is None:
            cfg.budget_plan = self._plan_budget()  # a fresh budget run; a resumed one follows its saved plan
        self.total_steps, self.epochs = total_steps_for(cfg, self.steps_per_epoch)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.lr, self.backbone_lr)
        if cfg.budget_plan is not None:  # built for the first plan; stretched or compressed when the plan changes
            length = cfg.budget_plan.schedule_steps
            self.scheduler = Stretch(build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, length),
                                     length)
        else:
            self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, self.total_steps)
        self.scaler = self._make_scaler()
        self.ema = self._make_ema(self.model)
        self.epoch, self.step_in_epoch, self.best_top1 = 0, 0, None
        self.partial = [0.0, 0.0, 0]  # (loss sum, errors, examples) of the current epoch before a resume
        self.started_seconds = 0.0  # training time spent before a resume
        self._eval_seconds: float | None = None  # the last evaluation's duration (a budget's checks follow it)
        self._test_result: EvalResult | None = None  # the final test, when the last epoch's evaluation was it
        train_model: nn.Module = self.model
        if self.env.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(  # head warm-up: the backbone is unused at first
                self.model, device_ids=ids, find_unused_parameters=bool(self.finetune and self.finetune.toggles))
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.ctx = self._context(train_model, self.optimizer, self.scheduler, self.scaler, self.ema,
                                 freeze=self.finetune.apply if self.finetune else None)
        self.step_fn = self._make_step(self.ctx)
        if resume is not None:
            self.run_dir = resume_run_dir(resume, cfg.out)
            if ckpt is not None:
                self._restore(ckpt, ckpt_path)
            else:
                self._say(f"{self.run_dir} has no valid checkpoint yet: starting the run again from step 0")
            self._reopen_run_dir()
        else:
            self.run_dir = self._new_run_dir()
        self.logger = RunLogger(self.run_dir, enabled=self.env.is_main)
        if resume is not None:
            self.logger.truncate_after(self.ctx.step)
        self.stop_signal: int | None = None
        self.last_checkpoint: Path | None = ckpt_path

    # ---------------------------------------------------------------------------------------------- run directory

    def _new_run_dir(self) -> Path:
        if self.cfg.out:
            run_dir = Path(self.cfg.out)
            taken = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
            if taken and not dist.elastic_restart():  # after a torchrun restart the directory is our own
                raise UserError(f"{run_dir} already holds a run; continue it with --resume auto, or choose another "
                                f"--out")
        else:
            run_dir = default_run_dir(self.cfg)
        self.cfg.out = str(run_dir)  # saved with the config, so `--resume auto` finds the run again
        dist.barrier()
        if self.env.is_main:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, run_dir / "config.yaml")
        dist.barrier()
        return run_dir

    def _reopen_run_dir(self) -> None:
        """A resumed run: save the config (it may extend the run, e.g. more iterations), drop torn writes."""
        if self.env.is_main:
            self.cfg.out = str(self.run_dir)
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            for stale in (self.run_dir / "checkpoints").glob(".*.tmp-*"):  # writes cut short by a kill
                stale.unlink(missing_ok=True)
        dist.barrier()

    def _context(self, model: nn.Module, optimizer, scheduler, scaler, ema, freeze=None) -> TrainContext:
        """What one step of this recipe touches (loss, precision, clipping, EMA, MixUp/CutMix) around ``model``."""
        cfg = self.cfg
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        return TrainContext(model, optimizer, scheduler, scaler, criterion, self.device, self.precision,
                            cfg.grad_clip, ema, cfg.ema_every, make_mixer(cfg, len(self.data.classes)), freeze=freeze)

    def _make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def _make_step(self, ctx: TrainContext):
        """The step function: forward and backward replayed from a CUDA graph where that applies (cuda_graph)."""
        return make_step(ctx, self.cfg.cuda_graph, distributed=self.env.enabled, compiled=self.cfg.compile,
                         log=self._say)

    def _make_ema(self, model: nn.Module) -> AveragedModel | None:
        cfg = self.cfg
        return make_ema(model, cfg.ema, cfg.ema_warmup) if cfg.ema else None

    # ------------------------------------------------------------------------------------------------------- budget

    def _plan_budget(self) -> BudgetPlan:
        """Time training steps, an evaluation and the final test on a throw-away copy of the model (the run's weights
        and random state are left as they were), then plan; every process follows rank 0's numbers."""
        cfg, state = self.cfg, rng_state()
        guess, spent = dist.broadcast_floats([self.probe.step_seconds(cfg.batch_size),
                                              time.perf_counter() - self._budget_t0], self.device)
        refuse_slow_step(self.budget_seconds, spent, guess, cfg.budget,
                         f"timed at batch {self.probe.batch} and scaled to {cfg.batch_size}")
        share, probe_start = PROBE_SHARE * self.budget_seconds, time.perf_counter()
        model = copy.deepcopy(self.model)
        optimizer = build_optimizer(model, cfg.optim, self.lr, self.backbone_lr)
        ctx = self._context(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
                            self._make_scaler(), self._make_ema(model))
        step = self._make_step(ctx)
        step_s = time_training_steps(step, self.data.train.epoch(0), self.device,
                                     untimed=step.setup_calls if isinstance(step, GraphedStep) else 1,
                                     max_seconds=min(MAX_PROBE_SECONDS, share / 2))

        target = min(EVAL_PROBE_SECONDS, share / 4)
        eval_s = time_evaluation(lambda batches: self._evaluate_batches(model, batches), self.data.eval_loader,
                                 self.device, target)
        test_s = time_evaluation(lambda batches: self._evaluate_batches(model, batches, cfg.test_tta),
                                 self.data.test, self.device, target)
        set_rng_state(state)
        now = time.perf_counter()
        numbers = dist.broadcast_floats([step_s, eval_s, test_s, now - self._budget_t0, now - probe_start],
                                        self.device)
        plan = plan_budget(self.budget_seconds, numbers[3], *numbers[:3], self.steps_per_epoch, cfg.eval_every,
                           cfg.budget, last_eval=self.data.val is not None)
        plan.probe_seconds = numbers[4]
        return plan

    def _budget_spent(self) -> float:
        """Seconds of the budget used so far: start-up, then training, evaluations and tests (across resumes)."""
        return self.cfg.budget_plan.startup_seconds + self._elapsed()

    def _check_budget(self, loop_seconds: float) -> None:
        """At a log step of a budget run, from the speed measured so far (``loop_seconds`` in training steps since
        this process started training): when each share of the plan (``REFIT_SHARES``) is timed, re-fit the plan
        to that speed, longer or shorter (not in the last planned epoch, whose length is already fixed); in between,
        end the run earlier when the rest of the plan would overrun. The schedule is stretched or compressed to end
        at the new last step; rank 0 decides for every process."""
        plan, steps = self.cfg.budget_plan, self.ctx.step - self._first_step
        if steps < MIN_MEASURED_STEPS:  # too few steps to tell a slowdown from noise
            return
        step_s = loop_seconds / steps
        refit = refit_due(plan, steps)
        if self.env.is_main:
            how = refitted if refit else shortened
            timing = retimed(plan, self._eval_seconds, step_s)
            new = how(timing, self.budget_seconds, self._budget_spent(), self.ctx.step, step_s, self.steps_per_epoch,
                      self.cfg.eval_every)
        else:
            new = None
        new = int(dist.broadcast_floats([float(new or -1)], self.device)[0])
        new = None if new < 0 else new
        plan.refits += refit
        if new is not None and new != self.total_steps:
            planned, plan.steps = plan.steps, new
            self.scheduler.end_at(self.ctx.step, new)
            self.total_steps, self.epochs = new, math.ceil(new / self.steps_per_epoch)
            longer = new > planned
            self._say(f"\n{'faster' if longer else 'slower'} than planned ({step_s:.3g} s per step, planned "
                      f"{plan.step_seconds:.3g}): the run now ends at step {new:,} to {'fill' if longer else 'keep'} "
                      f"its budget")
        elif not refit:
            return
        if self.env.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")

    # -------------------------------------------------------------------------------------------------- checkpoints

    def _state(self) -> dict:
        return {
            "version": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.ctx.step,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_batch": self.global_batch,
            "world_size": self.env.world,
            "best_top1": self.best_top1,
            "partial_epoch": list(self.partial),
            "train_seconds": self._elapsed(),
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "card": asdict(self.card),
        }

    def save_checkpoint(self) -> Path | None:
        """Write a step checkpoint (rank 0) and point last.pt at it; every process waits for it. Never writes
        non-finite weights: the run stops with :class:`NonFiniteLoss` instead."""
        if not weights_finite(self.model):
            raise NonFiniteLoss(self.ctx.step, float("nan"), what="weights")
        path = None
        if self.env.is_main:
            path = save_step_checkpoint(self.run_dir / "checkpoints", self._state(), self.ctx.step,
                                        self.cfg.keep_checkpoints)
            self.last_checkpoint = path
        dist.barrier()
        return path

    def _snapshot(self, epoch: int) -> None:
        """Keep the training weights at the end of ``epoch`` (0: before the first step) as
        ``snapshots/epoch-N.safetensors`` when the recipe asks for it (``snapshot_epochs``), e.g. for gradient-flow
        analysis after training; never pruned like step checkpoints."""
        if epoch in self.cfg.snapshot_epochs and self.env.is_main:
            save_safetensors(self.model.state_dict(), self.run_dir / "snapshots" / f"epoch-{epoch}.safetensors",
                             {"epoch": str(epoch), "step": str(self.ctx.step)})
        dist.barrier()

    def _restore(self, ckpt: dict, path: Path) -> None:
        if ckpt.get("global_batch") != self.global_batch:
            old = ckpt.get("global_batch")
            raise UserError(f"{path} was trained with a global batch of {old} ({ckpt.get('world_size')} x "
                            f"{old // max(ckpt.get('world_size', 1), 1)}); resume with --batch-size so that batch "
                            f"x processes = {old}")
        load_into(self.model, ckpt["model"], str(path))
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            if isinstance(self.scheduler, Stretch):  # the saved plan may be shorter than the checkpoint's schedule
                self.scheduler.end_at(ckpt["step"], self.total_steps)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UserError(f"{path} does not match this recipe's optimizer or schedule ({exc}); resume with the "
                            f"run's own config.yaml") from None
        self.ctx.step = ckpt["step"]
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.best_top1 = ckpt.get("best_top1")
        self.partial = list(ckpt.get("partial_epoch", [0.0, 0.0, 0]))
        self.started_seconds = ckpt.get("train_seconds", 0.0)
        set_rng_state(ckpt["rng"])
        self._say(f"resumed from {path} at step {self.ctx.step} (epoch {self.epoch + 1}, step "
                  f"{self.step_in_epoch} of {self.steps_per_epoch})")

    # --------------------------------------------------------------------------------------------------- signals

    def _install_signal_handlers(self):
        previous = {}

        def handler(signum, _frame):
            if self.stop_signal is not None:  # a second signal: stop now
                raise KeyboardInterrupt
            self.stop_signal = signum
            self._say(f"\n{signal.Signals(signum).name}: finishing this step, then writing a checkpoint ...")

        for sig in EXIT_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return previous

    def _stop_requested(self) -> bool:
        """A stop signal on any process (a collective with several processes: asked only at log steps)."""
        if self.env.enabled:
            return dist.broadcast_flag(self.stop_signal is not None, self.device)
        return self.stop_signal is not None

    def _stop(self) -> None:
        signum = self.stop_signal or signal.SIGTERM
        path = self.save_checkpoint()
        where = path or self.last_checkpoint
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {self.ctx.step}; checkpoint "
                              f"{where}. Resume with: resnet train --resume auto --out {self.run_dir}",
                              EXIT_SIGNALS.get(signum, 143))

    # ------------------------------------------------------------------------------------------------------- loop

    def _elapsed(self) -> float:
        return self.started_seconds + (time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0)

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, loader, tta: str = "none") -> EvalResult:
        return self._evaluate_batches(self._eval_model(), loader.epoch(0), tta)

    def _evaluate_batches(self, model: nn.Module, batches, tta: str = "none") -> EvalResult:
        """``evaluate`` with this run's device, precision, classes, input size and black level (the border of
        translated test-time views): the run's evaluations and the budget planner's timing of them."""
        return evaluate(model, batches, device=self.device, precision=self.precision,
                        num_classes=len(self.data.classes), tta=tta, input_size=self.data.input_size,
                        fill=black_level(self.data.mean, self.data.std))

    def _banner(self) -> None:
        cfg, d = self.cfg, self.data
        params = sum(p.numel() for p in self.model.parameters())
        self._say(f"run {self.run_dir}: {cfg.model.name} ({params:,} parameters) on {cfg.data.name} "
                  f"({d.train.size:,} training images, {len(d.classes)} classes, evaluated on the {d.eval_set} set of "
                  f"{d.eval_loader.size:,})")
        self._say(f"device {self.device} x {self.env.world} process(es), {self.precision}"
                  f"{', channels_last' if cfg.channels_last else ''}{self._graph_note()}; global batch "
                  f"{self.global_batch}, lr "
                  f"{self.lr:g} ({cfg.optim.name}, {cfg.schedule.name}); {self.total_steps:,} steps = "
                  f"{self.total_steps / self.steps_per_epoch:.4g} epochs of {self.steps_per_epoch}")
        if cfg.chosen:
            self._say(f"defaults chosen from the images of {cfg.data.name.partition(':')[2]}:\n  " +
                      "\n  ".join(cfg.chosen))
        if cfg.budget_plan is not None:
            p = cfg.budget_plan
            changed = ("" if p.steps == p.schedule_steps else
                       f" ({'shortened' if p.steps < p.schedule_steps else 'lengthened'} from {p.schedule_steps:,})")
            self._say(f"budget {format_duration(self.budget_seconds)}: {p.steps:,} steps{changed}, planned from "
                      f"{p.step_seconds:.3g} s per step, {p.eval_seconds:.3g} s per evaluation, {p.test_seconds:.3g} s "
                      f"for the final test and {p.startup_seconds:.3g} s of start-up ({p.probe_seconds:.2g} s of it "
                      f"timing) measured here; the lr schedule ends at the last step")
        if self.init_note:
            self._say(self.init_note)
        if self.finetune:
            self._say(self.finetune.describe())

    def _graph_note(self) -> str:
        """The banner's word on CUDA graphs: only on a CUDA device, where they are the default."""
        if self.device.type != "cuda":
            return ""
        if isinstance(self.step_fn, GraphedStep):
            return ", CUDA graph"
        why = why_not_graphed(self.ctx, self.env.enabled, self.cfg.compile) if self.cfg.cuda_graph else "cuda_graph off"
        return f", no CUDA graph ({why})"

    def run(self) -> RunResult:
        self._banner()
        previous = self._install_signal_handlers()
        self._t0 = time.perf_counter()
        if self.ctx.step == 0:
            self._snapshot(0)
        try:
            self._train()
        except NonFiniteLoss as exc:
            fix = "lower --lr or set grad_clip (e.g. --set grad_clip=1)"
            where = (f"the last good checkpoint is {self.last_checkpoint}: {fix} and start a new run from its "
                     f"weights with --set init_from={self.last_checkpoint}" if self.last_checkpoint
                     else f"no checkpoint was written yet: {fix} and start again")
            raise UserError(f"training stopped: the {exc.what} became {exc.value} at step {exc.step}; {where}") from None
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
        return self._finish()

    def _train(self) -> None:
        """The loop. Per-step numbers stay on the device; they are read, checked for non-finite values and written
        every ``log_every`` steps, before every checkpoint and at epoch ends."""
        cfg = self.cfg
        window: list[torch.Tensor] = []  # per-step (loss sum, errors, examples) since the last log
        # Seconds spent in training steps by this process, evaluations left out: a budget run's measured speed.
        self._loop_seconds, self._first_step = 0.0, self.ctx.step
        while self.ctx.step < self.total_steps:
            epoch, start = self.epoch, time.perf_counter()
            steps = min(self.steps_per_epoch - self.step_in_epoch, self.total_steps - self.ctx.step)
            # tqdm hides itself when stderr is not a terminal (disable=None); other processes never show one.
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                       dynamic_ncols=True, disable=None if self.env.is_main else True, mininterval=1.0)
            # The epoch's sums so far over all processes; a resumed epoch's earlier part is counted once (rank 0).
            epoch_sums = torch.tensor(self.partial if self.env.is_main else [0.0, 0.0, 0.0], dtype=torch.float64,
                                      device=self.device)
            self.partial, counted = [0.0, 0.0, 0], 0
            epoch_start = time.perf_counter()
            for images, labels in self.data.train.epoch(epoch, self.step_in_epoch):
                lr = self.optimizer.param_groups[0]["lr"]
                loss, errors = self.step_fn(images, labels)
                self.step_in_epoch, counted = self.step_in_epoch + 1, counted + labels.shape[0]
                stats = torch.stack([loss.double() * labels.shape[0], errors.double(),
                                     torch.full((), float(labels.shape[0]), dtype=torch.float64, device=self.device)])
                window.append(stats)
                epoch_sums += stats
                bar.update(1)
                if self.ctx.step % cfg.log_every == 0:
                    self._log_window(window, lr, epoch, bar)
                    if cfg.budget_plan is not None:
                        self._check_budget(self._loop_seconds + time.perf_counter() - epoch_start)
                if cfg.checkpoint_every and self.ctx.step % cfg.checkpoint_every == 0:
                    self._settle_epoch_sums(window, epoch_sums)
                    self.save_checkpoint()
                if (self.ctx.step % cfg.log_every == 0 or not self.env.enabled) and self._stop_requested():
                    self._settle_epoch_sums(window, epoch_sums)
                    self._stop()
                if self.step_in_epoch >= self.steps_per_epoch or self.ctx.step >= self.total_steps:
                    break  # (a budget's plan may have moved the last step since the epoch began)
            bar.close()
            self._loop_seconds += time.perf_counter() - epoch_start
            self._check_window(window)
            self._end_epoch(epoch, epoch_sums, counted, time.perf_counter() - start)

    def _check_window(self, window: list[torch.Tensor]) -> torch.Tensor | None:
        """Raise :class:`NonFiniteLoss` naming the first step of ``window`` whose loss was not finite; else return
        the window's per-step stats stacked (None when empty)."""
        if not window:
            return None
        stacked = torch.stack(window)
        bad = first_nonfinite(stacked[:, 0])
        if bad is not None:
            raise NonFiniteLoss(self.ctx.step - len(window) + bad + 1, float(stacked[bad, 0]))
        return stacked

    def _settle_epoch_sums(self, window: list[torch.Tensor], epoch_sums: torch.Tensor) -> None:
        """Before a checkpoint or a stop: no non-finite loss pending, and the epoch's sums so far summed over every
        process into ``self.partial`` (what a resumed run continues the epoch's averages from)."""
        self._check_window(window)
        self.partial = dist.all_reduce_sum(epoch_sums.clone()).tolist()

    def _log_window(self, window: list[torch.Tensor], lr: float, epoch: int, bar) -> None:
        loss, errors, count = dist.all_reduce_sum(self._check_window(window).sum(0)).tolist()
        window.clear()
        record = {"step": self.ctx.step, "epoch": epoch + self.step_in_epoch / self.steps_per_epoch,
                  "train_loss": loss / max(count, 1), "train_error": 100 * errors / max(count, 1), "lr": lr}
        self.logger.log_steps(record)
        budget = ({"budget_left": format_duration(max(self.budget_seconds - self._budget_spent(), 0))}
                  if self.budget_seconds else {})
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", err=f"{record['train_error']:.1f}%", lr=f"{lr:.3g}",
                        **budget, refresh=False)

    def _end_epoch(self, epoch: int, sums: torch.Tensor, counted: int, seconds: float) -> None:
        """Epoch record (training numbers over the whole epoch, evaluation when due), checkpoint, best.pt."""
        loss, errors, count = dist.all_reduce_sum(sums).tolist()
        epoch_done = self.step_in_epoch >= self.steps_per_epoch  # a run may also end mid-epoch (iterations)
        record = {"epoch": epoch + 1, "step": self.ctx.step, "train_loss": loss / max(count, 1),
                  "train_error": 100.0 * errors / max(count, 1), "val_loss": None, "val_top1": None,
                  "val_top5": None, "eval_set": self.data.eval_set, "lr": self.optimizer.param_groups[0]["lr"],
                  "img_per_s": counted * self.env.world / max(seconds, 1e-9), "seconds": seconds,
                  "eval_seconds": None}
        last = self.ctx.step >= self.total_steps
        result = None
        if last and self.data.val is None:  # the evaluation set is the test set: the final test is this evaluation
            self._test_result = result = self._evaluate(self.data.test, tta=self.cfg.test_tta)
            record["eval_tta"] = self.cfg.test_tta
        elif (epoch + 1) % self.cfg.eval_every == 0 or last:
            result = self._evaluate(self.data.eval_loader)
            self._eval_seconds = result.seconds  # the budget's later checks count the machine's speed of now
        if result is not None:
            record.update(val_loss=result.loss, val_top1=result.top1, val_top5=result.top5, eval_seconds=result.seconds)
        self.logger.log_epoch(record)
        self._say(epoch_line(record, self.epochs, self._elapsed(), self.ctx.step, self.total_steps))
        # A run that ends mid-epoch (iterations) keeps the epoch's sums: a longer run resumed from here continues them.
        self.partial = [0.0, 0.0, 0] if epoch_done else [loss, errors, count]
        if epoch_done:
            self.epoch, self.step_in_epoch = epoch + 1, 0
            self._snapshot(epoch + 1)
        path = self.save_checkpoint()
        if self.data.val is not None and record["val_top1"] is not None and path is not None and \
                (self.best_top1 is None or record["val_top1"] > self.best_top1):
            self.best_top1 = record["val_top1"]
            point_at(path, self.run_dir / "checkpoints" / "best.pt")

    # ------------------------------------------------------------------------------------------------------ finish

    def _finish(self) -> RunResult:
        cfg = self.cfg
        # Training time, evaluations included; the final test is not, even when the last epoch's evaluation was it.
        total_seconds = self._elapsed() - (self._test_result.seconds if self._test_result else 0.0)
        test = self._test_result or self._evaluate(self.data.test, tta=cfg.test_tta)
        params = sum(p.numel() for p in self.model.parameters())
        results = {
            "model": cfg.model.name, "data": cfg.data.name, "parameters": params,
            "weights": self.card.weights, "test_top1": test.top1, "test_top5": test.top5, "test_loss": test.loss,
            "test_error": 100 - test.top1, "test_count": test.count, "test_tta": cfg.test_tta,
            "steps": self.ctx.step, "epochs": self.ctx.step / self.steps_per_epoch,
            "train_minutes": total_seconds / 60, "device": str(self.device), "world_size": self.env.world,
            "precision": self.precision, "best_val_top1": self.best_top1, "test_seconds": test.seconds,
            "per_class": test.per_class(list(self.card.classes)),
        }
        if cfg.budget_plan is not None:  # everything the budget covers: start-up, training, evaluations, final test
            results["budget"] = {"seconds": self.budget_seconds, "planned_steps": cfg.budget_plan.schedule_steps,
                                 "steps": self.ctx.step, "seconds_used": self._budget_spent()}
        if self.env.is_main:
            save_model(self._eval_model(), self.card, self.run_dir)
            write_json(self.run_dir / "results.json", results)
            records = read_jsonl(self.run_dir / "metrics.jsonl")
            from ..plots import plot_confusion, plot_curves  # matplotlib only when a run finishes, not at import

            plot_curves(records, self.run_dir / "curves.png", title=f"{cfg.model.name} on {cfg.data.name}")
            plot_confusion(test.confusion.numpy(), list(self.card.classes), self.run_dir / "confusion.png",
                           title=f"{cfg.model.name} on {cfg.data.name}: top-1 {test.top1:.2f}%")
            self._say("\n" + final_table(records))
            self._say(f"\n{self.data.test_name} set ({test.count:,} images, {self.card.weights} weights"
                      f"{'' if cfg.test_tta == 'none' else f', {cfg.test_tta} TTA'}): "
                      f"{scores(test.top1, test.top5, test.loss)}   [{format_duration(total_seconds)} training]")
            self._say(f"run directory: {self.run_dir} (confusion matrix: confusion.png)")
        self.logger.close()
        dist.barrier()
        return RunResult(self.run_dir, test, results)


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


__all__ = ["RunResult", "Trainer", "TrainingStopped", "train"]
