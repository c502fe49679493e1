"""What a run will write, estimated before it starts, and the refusal when the disk under its directory cannot hold
it: a full disk is found before any training time is spent, not at the first checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..config import Config
from ..errors import UserError
from ..runs import step_checkpoints
from ..writes import free_bytes, human_bytes

OPTIMIZER_SLOTS = {"sgd": 1, "nesterov": 1, "adamw": 2, "rmsprop": 2}  # tensors of optimizer state per parameter tensor
EXTRA_BYTES = 5_000_000  # logs, run.json, figures, the report page with its thumbnails: a few MB at most


@dataclass(frozen=True)
class RunSize:
    """Bytes a run writes: one checkpoint, how many are on disk at once, the snapshots and the final files."""

    checkpoint: int
    checkpoints: int  # at once: the kept ones and the new one written before the oldest is pruned
    snapshots: int
    final: int

    @property
    def total(self) -> int:
        return self.checkpoint * self.checkpoints + self.snapshots + self.final


def run_size(cfg: Config, model: nn.Module) -> RunSize:
    """What ``cfg`` writes for ``model``: a checkpoint holds the weights, the optimizer's state (momentum: one copy,
    AdamW: two) and the EMA's copy; last.pt and best.pt are hard links to a step checkpoint."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    slots = OPTIMIZER_SLOTS.get(cfg.optim.name, 2) if cfg.optim.name != "sgd" or cfg.optim.momentum else 0
    checkpoint = weights + slots * params + (weights if cfg.ema > 0 else 0)
    return RunSize(checkpoint=checkpoint, checkpoints=max(cfg.keep_checkpoints, 1) + 1,
                   snapshots=len(cfg.snapshot_epochs) * weights, final=weights + EXTRA_BYTES)


def check_space(run_dir: Path, cfg: Config, model: nn.Module) -> RunSize:
    """Refuse the run, in one sentence, when the filesystem of ``run_dir`` has less free space than the run will
    write (a resumed run's step checkpoints already there count as written: new ones replace them)."""
    size = run_size(cfg, model)
    free = free_bytes(run_dir)
    there = step_checkpoints(run_dir / "checkpoints") if (run_dir / "checkpoints").is_dir() else []
    need = size.total - min(len(there), size.checkpoints - 1) * size.checkpoint
    if free is not None and free < need:
        n = len(cfg.snapshot_epochs)
        snapshots = f", {n} snapshot{'s' if n > 1 else ''}" if n else ""
        raise UserError(f"{run_dir} is on a disk with {human_bytes(free)} free, but this run writes about "
                        f"{human_bytes(need)} there ({size.checkpoints} checkpoints of {human_bytes(size.checkpoint)} "
                        f"at once{snapshots}, the final model and its report); free some space, choose another "
                        f"--out, or keep fewer checkpoints (--set keep_checkpoints=1)")
    return size
