"""A study's unit of work. A cell is one training run: a name for the log, its resolved config and its run
directory. A rerun of a study skips a finished cell (its results.json, the last file a run writes, is there),
resumes an interrupted one from its newest valid checkpoint, and restarts in place one that stopped before its first
checkpoint, so a study can be stopped at any moment and continued. A cell whose directory holds a run of another
config is refused before anything trains, so that a changed recipe never mixes old cells with new ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config, changes, saved_config, to_dict
from ..errors import UserError
from ..runs import latest_valid_checkpoint
from ..train.trainer import train
from ..writes import WriteError


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
    if cfg.budget:
        return cfg.budget
    count, unit = (cfg.iterations, "iteration") if cfg.iterations else (cfg.epochs, "epoch")
    return f"{count} {unit}{'' if count == 1 else 's'}"


def cell_state(cell: Cell) -> str:
    """``finished``, ``resuming`` (a valid checkpoint), ``restarting`` (a directory without one) or ``training``
    (nothing yet)."""
    if cell.done:
        return "finished"
    if not cell.run_dir.exists():
        return "training"
    return "resuming" if latest_valid_checkpoint(cell.run_dir) else "restarting"


def config_differences(cell: Cell) -> dict[str, tuple]:
    """Where the run already in ``cell.run_dir`` (its config.yaml with its resumes' changes) differs from the cell's
    config: dotted key -> (there, here). ``out`` only locates the run; a directory without a config is no run yet."""
    if not (cell.run_dir / "config.yaml").is_file():
        return {}
    there = {k: v for k, v in saved_config(cell.run_dir, None).items() if k != "out"}
    here = {k: v for k, v in to_dict(cell.cfg).items() if k != "out"}
    return {key: (_dotted(there, key), value) for key, value in sorted(changes(there, here).items())}


def _dotted(data: dict, key: str):
    """The value at a dotted key of a nested config dict (None where it has none)."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def check_reusable(cells: list[Cell]) -> None:
    """Refuse, before anything trains, a study whose output directory holds a cell run with another config."""
    for cell in cells:
        found = config_differences(cell)
        if found:
            shown = ", ".join(f"{key} {there!r} there, {here!r} now" for key, (there, here) in list(found.items())[:3])
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            raise UserError(f"{cell.run_dir} holds a run of another config ({shown}{more}); move it aside or choose "
                            f"another --out, so that old and new cells do not mix")


def run_cell(cell: Cell, position: str, log: Callable) -> dict:
    """Train ``cell`` unless it is finished, saying so as ``[position] name: state``; returns its results.json."""
    state = cell_state(cell)
    if state == "finished":
        log(f"[{position}] {cell.name}: finished, skipped")
    else:
        cfg = cell.cfg
        log(f"[{position}] {cell.name}: {state} ({'a budget of ' if cfg.budget else ''}{run_length(cfg)})")
        try:
            train(cfg, resume=None if state == "training" else "auto", log=lambda *a, **k: None)
        except WriteError as exc:
            raise exc.then("run the same command again: finished cells are kept and this one continues from its "
                           "last checkpoint") from None
    return json.loads((cell.run_dir / "results.json").read_text())
