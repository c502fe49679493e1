"""A run's directory and what training writes in it as it goes: ``config.yaml`` (once, as the user asked),
``run.json`` (what the run decided, :mod:`.run_state`), step checkpoints and snapshots; and a checkpoint read back
into a resumed run. Callers write on rank 0 only."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from torch import nn

from ..config import Config, save_config, to_dict
from ..errors import UserError
from ..io import save_safetensors
from ..runs import latest_valid_checkpoint
from ..writes import WriteError, make_dir, writing
from ..weights import ModelCard, load_into
from .checkpoint import point_at, rng_state, save_step_checkpoint, set_rng_state
from .run_state import RunState
from .setup import default_run_dir

CHECKPOINT_VERSION = 2  # 2: the run's decisions and progress under "run"
CONTINUED = ("step", "epoch", "step_in_epoch", "best_top1", "train_seconds")  # a resume takes these from its checkpoint


def claim_run_dir(cfg: Config, restarted: bool) -> Path:
    """The new run's directory: ``--out`` if empty (or our own after a torchrun restart), else runs/<name>."""
    if not cfg.out:
        return default_run_dir(cfg)
    run_dir = Path(cfg.out)
    taken = run_dir.exists() and (not run_dir.is_dir() or any(not _empty_dir(p) for p in run_dir.iterdir()))
    if taken and not restarted:
        raise UserError(f"{run_dir} already holds a run; continue it with --resume auto, or choose another --out")
    return run_dir


def _empty_dir(path: Path) -> bool:
    """An empty folder (what a run leaves when it could not write its config.yaml): no run to protect."""
    return path.is_dir() and not any(path.iterdir())


@contextmanager
def ending_on_failed_write(run_dir: Path) -> Iterator[None]:
    """A failed write of a run's own files ends the run at once, saying how to continue it."""
    try:
        yield
    except WriteError as exc:
        if not (run_dir / "config.yaml").is_file():  # nothing of the run was written: it can start again
            raise exc.then("run the same command again") from None
        intact = latest_valid_checkpoint(run_dir)  # (what --resume auto will take)
        kept = f" from {intact}, which is intact" if intact else ""
        raise exc.then(f"continue with `resnet train --resume auto --out {run_dir}`{kept}") from None


def open_run_dir(run_dir: Path, cfg: Config) -> None:
    """Make the directory, keep the user's config as first asked (a resumed run keeps its file), and drop the
    temporary files of writes a kill cut short."""
    make_dir(run_dir / "checkpoints", "run directory")
    if not (run_dir / "config.yaml").is_file():
        save_config(cfg, run_dir / "config.yaml")
    for stale in (run_dir / "checkpoints").glob(".*.tmp-*"):
        with writing(stale, "unfinished checkpoint"):
            stale.unlink(missing_ok=True)


def checkpoint(model: nn.Module, optimizer, scheduler, scaler, ema, cfg: Config, card: ModelCard,
               run: RunState) -> dict:
    """Everything a resumed run needs, as tensors, numbers, strings, lists and dicts (loads with weights_only)."""
    return {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "rng": rng_state(),
        "config": to_dict(cfg),
        "card": asdict(card),
        "run": run.to_dict(),
    }


def write_checkpoint(run_dir: Path, state: dict, run: RunState, keep: int, best: bool) -> Path:
    """``step-N.pt`` (last.pt, and best.pt when ``best``, point at it) and run.json."""
    path = save_step_checkpoint(run_dir / "checkpoints", state, run.step, keep)
    if best:
        point_at(path, run_dir / "checkpoints" / "best.pt")
    run.save(run_dir)
    return path


def write_snapshot(run_dir: Path, model: nn.Module, epoch: int, step: int) -> None:
    """``snapshots/epoch-N.safetensors``: weights kept for good (never pruned like step checkpoints)."""
    save_safetensors(model.state_dict(), run_dir / "snapshots" / f"epoch-{epoch}.safetensors",
                     {"epoch": str(epoch), "step": str(step)}, "snapshot")


def saved_run_state(ckpt: dict) -> dict:
    """The run state of a checkpoint; a version-1 checkpoint kept its progress at the top level."""
    if "run" in ckpt:
        return ckpt["run"]
    return {"step": ckpt["step"], "epoch": ckpt["epoch"], "step_in_epoch": ckpt["step_in_epoch"],
            "best_top1": ckpt.get("best_top1"), "train_seconds": ckpt.get("train_seconds", 0.0),
            "global_batch": ckpt.get("global_batch"), "world_size": ckpt.get("world_size", 1)}


def restore(ckpt: dict, path: Path, run: RunState, model: nn.Module, optimizer, scheduler, scaler, ema) -> None:
    """Load a checkpoint's weights, optimizer, schedule, scaler, EMA, random state and the run's progress into a
    resumed run. One sentence when it cannot continue this run (another global batch, another recipe)."""
    saved = saved_run_state(ckpt)
    if saved.get("global_batch") != run.global_batch:
        old, world = saved.get("global_batch"), max(saved.get("world_size") or 1, 1)
        raise UserError(f"{path} was trained with a global batch of {old} ({world} x {(old or 0) // world}); resume "
                        f"with --batch-size so that batch x processes = {old}")
    load_into(model, ckpt["model"], str(path))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path} does not match this recipe's optimizer or schedule ({exc}); resume with the run's "
                        f"own config.yaml") from None
    set_rng_state(ckpt["rng"])
    for key in CONTINUED:
        setattr(run, key, saved.get(key, getattr(run, key)))
