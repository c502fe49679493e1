"""`resnet train` as a library call: :func:`train` runs a whole recipe and returns where the run was written.

Order of work: resolve everything that can fail on user input (config, data, model, checkpoint) before writing a
single file; then loop over epochs with checkpoints at epoch ends (and every ``checkpoint_every`` steps); then
measure the final model on the official test set and write the weights, the model card and the curves.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..data import DataBundle, build_data
from ..device import resolve_device, resolve_precision
from ..errors import TrainingStopped, UserError
from ..modelcard import ModelCard, load_into, read_weights, resolve_model_path, save_model
from ..models import create_model
from ..table import format_table
from . import distributed as dist
from .checkpoint import (atomic_write, latest_valid_checkpoint, link_or_copy, load_checkpoint, rng_state,
                         save_step_checkpoint, set_rng_state)
from .config import Config, config_from_dict, save_config, to_dict
from .log import RunLogger, format_duration, read_jsonl
from .loop import EvalResult, Meter, NonFiniteLoss, TrainContext, evaluate, train_one_epoch
from .optim import build_optimizer, build_scheduler, scaled_lr, total_steps_for

EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class RunResult:
    run_dir: Path
    test: EvalResult | None
    results: dict


# ---------------------------------------------------------------------------------------------------- set-up pieces


def default_run_dir(cfg: Config) -> Path:
    """runs/<recipe> (or runs/<model>-<data>), numbered -2, -3, ... when taken."""
    base = Path("runs") / (cfg.recipe or f"{cfg.model.name}-{cfg.data.name.replace(':', '-').replace('/', '-')}")
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def build_model(cfg: Config, data: DataBundle) -> nn.Module:
    """The recipe's model, with classes and input channels taken from the data (and checked against the recipe)."""
    kwargs = dict(cfg.model.kwargs)
    for key, actual in (("in_chans", data.in_chans), ("num_classes", len(data.classes))):
        if key in kwargs and kwargs[key] != actual:
            raise UserError(f"model.kwargs.{key}={kwargs[key]} does not match the data ({cfg.data.name} has "
                            f"{actual}); remove it or set it to {actual}")
        kwargs[key] = actual
    return create_model(cfg.model.name, **kwargs)


def make_mixer(cfg: Config, num_classes: int):
    """MixUp / CutMix from torchvision (one of them per batch when both are on), seeded per step."""
    from torchvision.transforms import v2

    from ..data.sampling import step_seed

    d = cfg.data
    choices = ([v2.MixUp(alpha=d.mixup, num_classes=num_classes)] if d.mixup else []) + \
              ([v2.CutMix(alpha=d.cutmix, num_classes=num_classes)] if d.cutmix else [])
    if not choices:
        return None
    mix = v2.RandomChoice(choices) if len(choices) > 1 else choices[0]

    def mixer(images: torch.Tensor, labels: torch.Tensor, step: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(cfg.seed, -1, step))
            return mix(images, labels)

    return mixer


def make_card(cfg: Config, model: nn.Module, data: DataBundle) -> ModelCard:
    kwargs = {**cfg.model.kwargs, "num_classes": len(data.classes), "in_chans": data.in_chans}
    return ModelCard(architecture=cfg.model.name, model_kwargs=kwargs, classes=list(data.classes),
                     input_size=[data.in_chans, *data.input_size], mean=list(data.mean), std=list(data.std),
                     resize=data.resize, crop=data.crop, dataset=cfg.data.name,
                     weights="ema" if cfg.ema else "final")


def configure_torch(cfg: Config, device: torch.device) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


# ------------------------------------------------------------------------------------------------------- the run


class Trainer:
    """Holds the state of one run; :meth:`run` trains it to the end."""

    def __init__(self, cfg: Config, resume: str | Path | None = None, log=print):
        self.cfg = cfg
        self.env = dist.init_distributed(resolve_device(cfg.device))
        self.device = dist.device_for(self.env, resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        configure_torch(cfg, self.device)
        self._say = log if self.env.is_main else (lambda *a, **k: None)

        # Everything a user can get wrong is checked before the run directory is touched.
        ckpt, ckpt_path = None, None
        if resume is not None:
            ckpt_path = self._resolve_resume(resume)
            ckpt = load_checkpoint(ckpt_path)
        torch.manual_seed(cfg.seed)
        self.data = build_data(cfg, self.device, self.env.rank, self.env.world, cfg.channels_last,
                               in_chans=int(cfg.model.kwargs.get("in_chans", 3)), log=self._say)
        self.model = build_model(cfg, self.data)
        if cfg.init_from and ckpt is None:
            load_into(self.model, read_weights(resolve_model_path(cfg.init_from)), cfg.init_from,
                      reset_head=cfg.reset_head)
        self.card = make_card(cfg, self.model, self.data)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.env.enabled:
            self.model = dist.convert_sync_batchnorm(self.model, self.device)

        self.steps_per_epoch = len(self.data.train)
        self.total_steps, self.epochs = total_steps_for(cfg, self.steps_per_epoch)
        self.global_batch = cfg.batch_size * self.env.world
        self.lr = scaled_lr(cfg, self.env.world)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.lr)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
                    if cfg.ema else None)
        self.epoch, self.step_in_epoch, self.best_top1 = 0, 0, None
        self.partial = Meter()  # the current epoch's sums before a resume
        self.started_seconds = 0.0  # training time spent before a resume
        train_model: nn.Module = self.model
        if self.env.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.ctx = TrainContext(train_model, self.optimizer, self.scheduler, self.scaler,
                                nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), self.device,
                                self.precision, cfg.grad_clip, self.ema, cfg.ema_every,
                                make_mixer(cfg, len(self.data.classes)))
        if ckpt is not None:
            self._restore(ckpt, ckpt_path)
            self.run_dir = ckpt_path.parent.parent
            if self.env.is_main:  # the resolved config may extend the run (e.g. more iterations)
                self.cfg.out = str(self.run_dir)
                save_config(self.cfg, self.run_dir / "config.yaml")
                for stale in (self.run_dir / "checkpoints").glob(".*.tmp-*"):  # writes cut short by a kill
                    stale.unlink(missing_ok=True)
        else:
            self.run_dir = self._new_run_dir()
        self.logger = RunLogger(self.run_dir, enabled=self.env.is_main)
        if ckpt is not None:
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

    def _resolve_resume(self, resume: str | Path) -> Path:
        if str(resume) == "auto":
            if not self.cfg.out:
                raise UserError("--resume auto needs the run directory: pass --out DIR (or give the checkpoint path)")
            found = latest_valid_checkpoint(Path(self.cfg.out))
            if found is None:
                raise UserError(f"no valid checkpoint in {self.cfg.out}/checkpoints; start a new run without --resume")
            return found
        path = Path(resume)
        if path.is_dir():
            found = latest_valid_checkpoint(path)
            if found is None:
                raise UserError(f"no valid checkpoint in {path}/checkpoints; start a new run without --resume")
            return found
        return path

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
            "partial_epoch": [self.partial.loss, self.partial.errors, self.partial.count],
            "train_seconds": self.started_seconds + (time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0),
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "card": asdict(self.card),
        }

    def save_checkpoint(self) -> Path | None:
        """Write a step checkpoint (rank 0) and point last.pt at it; every process waits for it."""
        path = None
        if self.env.is_main:
            path = save_step_checkpoint(self.run_dir / "checkpoints", self._state(), self.ctx.step,
                                        self.cfg.keep_checkpoints)
            self.last_checkpoint = path
        dist.barrier()
        return path

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
        except (ValueError, KeyError, RuntimeError) as exc:
            raise UserError(f"{path} does not match this recipe's optimizer or schedule ({exc}); resume with the "
                            f"run's own config.yaml") from None
        self.ctx.step = ckpt["step"]
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.best_top1 = ckpt.get("best_top1")
        self.partial.loss, self.partial.errors, self.partial.count = ckpt.get("partial_epoch", [0.0, 0.0, 0])
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

    # ------------------------------------------------------------------------------------------------------- loop

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, loader, tta: str = "none") -> EvalResult:
        return evaluate(self._eval_model(), loader.epoch(0), device=self.device, precision=self.precision,
                        num_classes=len(self.data.classes), tta=tta, input_size=self.data.input_size)

    def _banner(self) -> None:
        cfg, d = self.cfg, self.data
        params = sum(p.numel() for p in self.model.parameters())
        self._say(f"run {self.run_dir}: {cfg.model.name} ({params:,} parameters) on {cfg.data.name} "
                  f"({d.train.size:,} training images, {len(d.classes)} classes, evaluated on the {d.eval_set} set of "
                  f"{d.eval_loader.size:,})")
        self._say(f"device {self.device} x {self.env.world} process(es), {self.precision}"
                  f"{', channels_last' if cfg.channels_last else ''}; global batch {self.global_batch}, lr "
                  f"{self.lr:g} ({cfg.optim.name}, {cfg.schedule.name}); {self.total_steps:,} steps = "
                  f"{self.total_steps / self.steps_per_epoch:.4g} epochs of {self.steps_per_epoch}")

    def run(self) -> RunResult:
        cfg = self.cfg
        self._banner()
        previous = self._install_signal_handlers()
        self._t0 = time.perf_counter()
        try:
            self._train_epochs()
        except NonFiniteLoss as exc:
            fix = "lower --lr or set grad_clip (e.g. --set grad_clip=1)"
            where = (f"the last good checkpoint is {self.last_checkpoint}: {fix} and start a new run from its "
                     f"weights with --set init_from={self.last_checkpoint}" if self.last_checkpoint
                     else f"no checkpoint was written yet: {fix} and start again")
            raise UserError(f"training stopped: the loss became {exc.value} at step {exc.step}; {where}") from None
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
        return self._finish()

    def _train_epochs(self) -> None:
        cfg = self.cfg
        window = {"loss": 0.0, "errors": 0.0, "count": 0, "last_logged": self.ctx.step}
        while self.ctx.step < self.total_steps:
            epoch = self.epoch
            start = time.perf_counter()
            done_before = self.step_in_epoch
            steps = min(self.steps_per_epoch - done_before, self.total_steps - self.ctx.step)
            # tqdm hides itself when stderr is not a terminal (disable=None); other processes never show one.
            bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False,
                       dynamic_ncols=True, disable=None if self.env.is_main else True, mininterval=1.0)
            seen = {"loss": 0.0, "errors": 0.0, "count": 0}

            def on_step(meter: Meter, lr: float) -> bool:
                self.step_in_epoch += 1
                new = {"loss": meter.loss - seen["loss"], "errors": meter.errors - seen["errors"],
                       "count": meter.count - seen["count"]}
                seen.update(loss=meter.loss, errors=meter.errors, count=meter.count)
                for k in ("loss", "errors", "count"):
                    window[k] += new[k]
                if self.ctx.step % cfg.log_every == 0:
                    self._log_window(window, lr, epoch)
                if self.step_in_epoch % 10 == 0:
                    rate = meter.count * self.env.world / max(time.perf_counter() - start, 1e-9)
                    bar.set_postfix(loss=f"{meter.loss / max(meter.count, 1):.3f}", lr=f"{lr:.3g}",
                                    img_s=f"{rate:.0f}", refresh=False)
                if cfg.checkpoint_every and self.ctx.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                stop = dist.broadcast_flag(self.stop_signal is not None, self.device) if self.env.enabled \
                    else self.stop_signal is not None
                if stop:
                    self._stop()
                return False

            meter = train_one_epoch(self.ctx, self.data.train.epoch(epoch, done_before), on_step, max_steps=steps,
                                    progress=bar)
            bar.close()
            seconds = time.perf_counter() - start
            img_per_s = meter.count * self.env.world / max(seconds, 1e-9)
            meter.loss += self.partial.loss
            meter.errors += self.partial.errors
            meter.count += self.partial.count
            self.partial = Meter()
            train_loss, train_error, count = meter.reduced(self.device)
            epoch_done = self.step_in_epoch >= self.steps_per_epoch  # a run may also end mid-epoch (iterations)
            record = {"epoch": epoch + 1, "step": self.ctx.step, "train_loss": train_loss, "train_error": train_error,
                      "val_loss": None, "val_top1": None, "val_top5": None, "eval_set": self.data.eval_set,
                      "lr": self.optimizer.param_groups[0]["lr"],
                      "img_per_s": img_per_s,
                      "seconds": seconds}
            last = self.ctx.step >= self.total_steps
            if (epoch + 1) % cfg.eval_every == 0 or last:
                result = self._evaluate(self.data.eval_loader)
                record.update(val_loss=result.loss, val_top1=result.top1, val_top5=result.top5)
            self.logger.log_epoch(record)
            self._say(self._epoch_line(record, self.total_steps))
            if epoch_done:
                self.epoch, self.step_in_epoch = epoch + 1, 0
            path = self.save_checkpoint()
            if self.data.val is not None and record["val_top1"] is not None and path is not None and \
                    (self.best_top1 is None or record["val_top1"] > self.best_top1):
                self.best_top1 = record["val_top1"]
                link_or_copy(path, self.run_dir / "checkpoints" / "best.pt")

    def _log_window(self, window: dict, lr: float, epoch: int) -> None:
        t = dist.all_reduce_sum(torch.tensor([window["loss"], window["errors"], float(window["count"])],
                                             dtype=torch.float64, device=self.device))
        loss, errors, count = t.tolist()
        self.logger.log_steps({"step": self.ctx.step, "epoch": epoch + self.step_in_epoch / self.steps_per_epoch,
                               "train_loss": loss / max(count, 1), "train_error": 100 * errors / max(count, 1),
                               "lr": lr})
        window.update(loss=0.0, errors=0.0, count=0)

    def _epoch_line(self, r: dict, total_steps: int) -> str:
        elapsed = self.started_seconds + time.perf_counter() - self._t0
        remaining = elapsed / max(self.ctx.step, 1) * (total_steps - self.ctx.step)
        val = (f" | {r['eval_set']} loss {r['val_loss']:.4f} top-1 {r['val_top1']:.2f}% top-5 {r['val_top5']:.2f}%"
               if r["val_top1"] is not None else "")
        return (f"epoch {r['epoch']:>3}/{self.epochs} | train loss {r['train_loss']:.4f} error "
                f"{r['train_error']:.2f}%{val} | lr {r['lr']:.4g} | {r['img_per_s']:.0f} img/s | "
                f"{format_duration(elapsed)} elapsed, ~{format_duration(remaining)} left")

    def _stop(self) -> None:
        signum = self.stop_signal or signal.SIGTERM
        path = self.save_checkpoint()
        where = path or self.last_checkpoint
        raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {self.ctx.step}; checkpoint "
                              f"{where}. Resume with: resnet train --resume auto --out {self.run_dir}",
                              EXIT_SIGNALS.get(signum, 143))

    # ------------------------------------------------------------------------------------------------------ finish

    def _finish(self) -> RunResult:
        cfg = self.cfg
        total_seconds = self.started_seconds + time.perf_counter() - self._t0
        test = self._evaluate(self.data.test, tta=cfg.test_tta)
        params = sum(p.numel() for p in self.model.parameters())
        results = {
            "model": cfg.model.name, "data": cfg.data.name, "parameters": params,
            "weights": self.card.weights, "test_top1": test.top1, "test_top5": test.top5, "test_loss": test.loss,
            "test_error": 100 - test.top1, "test_count": test.count, "test_tta": cfg.test_tta,
            "steps": self.ctx.step, "epochs": self.ctx.step / self.steps_per_epoch,
            "train_minutes": total_seconds / 60, "device": str(self.device), "world_size": self.env.world,
            "precision": self.precision, "best_val_top1": self.best_top1,
        }
        if self.env.is_main:
            save_model(self._eval_model(), self.card, self.run_dir)
            atomic_write(self.run_dir / "results.json", lambda f: f.write(json.dumps(results, indent=2).encode()))
            records = read_jsonl(self.run_dir / "metrics.jsonl")
            from ..plots import plot_curves

            plot_curves(records, self.run_dir / "curves.png", title=f"{cfg.model.name} on {cfg.data.name}")
            self._say("\n" + self._final_table(records))
            self._say(f"\ntest set ({test.count:,} images, {self.card.weights} weights"
                      f"{', flip TTA' if cfg.test_tta == 'flip' else ''}): top-1 {test.top1:.2f}%  top-5 "
                      f"{test.top5:.2f}%  loss {test.loss:.4f}   [{format_duration(total_seconds)} training]")
            self._say(f"run directory: {self.run_dir}")
        self.logger.close()
        dist.barrier()
        return RunResult(self.run_dir, test, results)

    @staticmethod
    def _final_table(records: list[dict]) -> str:
        rows = [[r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_error']:.2f}",
                 "" if r["val_top1"] is None else f"{r['val_loss']:.4f}",
                 "" if r["val_top1"] is None else f"{r['val_top1']:.2f}",
                 "" if r["val_top5"] is None else f"{r['val_top5']:.2f}", f"{r['lr']:.4g}", f"{r['img_per_s']:.0f}",
                 format_duration(r["seconds"])] for r in records]
        eval_set = records[-1]["eval_set"] if records else "val"
        return format_table(["epoch", "train loss", "train err %", f"{eval_set} loss", f"{eval_set} top-1 %",
                             f"{eval_set} top-5 %", "lr", "img/s", "time"], rows, align="rrrrrrrrr")


def train(cfg: Config, resume: str | Path | None = None, log=print) -> RunResult:
    """Train ``cfg`` to the end (or continue the run of checkpoint ``resume``; ``"auto"`` = newest in cfg.out)."""
    if resume is None and dist.elastic_restart() and cfg.out and latest_valid_checkpoint(Path(cfg.out)):
        resume = "auto"  # torchrun restarted the group after a failure: continue from the last checkpoint
    trainer = Trainer(cfg, resume=resume, log=log)
    try:
        return trainer.run()
    finally:
        dist.shutdown()


def config_for_resume(resume: str | Path, out: str | None) -> Config:
    """The saved config of the run that ``resume`` (a checkpoint, a run directory, or "auto" with ``out``) belongs to."""
    if str(resume) == "auto":
        if not out:
            raise UserError("--resume auto needs the run directory: pass --out DIR (or give the checkpoint path)")
        run_dir = Path(out)
    else:
        path = Path(resume)
        run_dir = path if path.is_dir() else path.parent.parent
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        import yaml

        return config_from_dict(yaml.safe_load(config_path.read_text()))
    if str(resume) != "auto" and Path(resume).is_file():
        return config_from_dict(load_checkpoint(resume)["config"])
    raise UserError(f"{run_dir} has no config.yaml; give the checkpoint file itself to --resume")


__all__ = ["RunResult", "Trainer", "TrainingStopped", "config_for_resume", "train"]
