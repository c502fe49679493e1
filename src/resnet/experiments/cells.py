"""A study's unit of work. A cell is one training run: a name for the log, its resolved config and its run
directory. A rerun of a study skips a finished cell (its results.json, the last file a run writes, is there),
resumes an interrupted one from its newest valid checkpoint, and restarts in place one that stopped before its first
checkpoint, so a study can be stopped at any moment and continued."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config
from ..runs import latest_valid_checkpoint
from ..train.trainer import train


@dataclass(frozen=True)
class Cell:
    name: str  # how the log names the cell, e.g. "plain56 seed 0"
    cfg: Config  # the run's resolved config (its ``out`` is ``run_dir``)
    run_dir: Path

    @property
    def done(self) -> bool:
        return (self.run_dir / "results.json").is_file()


def run_length(cfg: Config) -> str:
    """How long a cell trains, as its recipe says it: a budget ("5m"), iterations or epochs."""
    return cfg.budget or (f"{cfg.iterations} iterations" if cfg.iterations else f"{cfg.epochs} epochs")


def cell_state(cell: Cell) -> str:
    """``finished``, ``resuming`` (a valid checkpoint), ``restarting`` (a directory without one) or ``training``
    (nothing yet)."""
    if cell.done:
        return "finished"
    if not cell.run_dir.exists():
        return "training"
    return "resuming" if latest_valid_checkpoint(cell.run_dir) else "restarting"


def run_cell(cell: Cell, position: str, log: Callable) -> dict:
    """Train ``cell`` unless it is finished, saying so as ``[position] name: state``; returns its results.json."""
    state = cell_state(cell)
    if state == "finished":
        log(f"[{position}] {cell.name}: finished, skipped")
    else:
        cfg = cell.cfg
        log(f"[{position}] {cell.name}: {state} ({'a budget of ' if cfg.budget else ''}{run_length(cfg)})")
        train(cfg, resume=None if state == "training" else "auto", log=lambda *a, **k: None)
    return json.loads((cell.run_dir / "results.json").read_text())
