"""What a run decided, apart from what its user asked for (the :class:`~resnet.config.Config`, never written to):
its directory, device and precision, the scaled learning rate, its length, its progress and its budget keeper's
state. Saved in every checkpoint and as ``run.json`` in the run directory; ``--resume`` reads it back. Its ``step``
is the run's one step counter: the training step (:mod:`.loop`) advances it through the run's TrainContext."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..writes import write_json
from ..runs import RUN_FILE


@dataclass
class RunState:
    run_dir: str
    device: str  # the device and precision chosen for the run (auto resolved)
    precision: str
    world_size: int  # processes, and the global batch they share
    global_batch: int
    lr: float  # the peak learning rate, scaled to the global batch
    steps_per_epoch: int
    total_steps: int  # the run's last step (a budget run's keeper moves it)
    epochs: int = field(init=False)  # follows total_steps: a last epoch may be partial
    step: int = 0  # optimizer steps done in the whole run
    epoch: int = 0  # epochs done
    step_in_epoch: int = 0  # steps done in the epoch under way
    best_top1: float | None = None  # the best evaluation top-1 on a validation split (best.pt)
    train_seconds: float = 0.0  # training time so far (evaluations included), across resumes
    budget: dict | None = None  # the budget keeper's state (train/budget.py)
    train_size: int | None = None  # side of the training crops when a budget chose it below data.image_size
    mixing: bool = False  # MixUp/CutMix on (data.mix_from_epochs decides it from the planned length, once)
    changes: dict[str, Any] = field(default_factory=dict)  # config keys the resumes changed (dotted -> value)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def __post_init__(self):
        self.set_total_steps(self.total_steps)

    def set_total_steps(self, total_steps: int) -> None:
        """The run now ends after step ``total_steps`` (epochs follow: a last epoch may be partial)."""
        self.total_steps, self.epochs = total_steps, math.ceil(total_steps / self.steps_per_epoch)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, run_dir: Path) -> None:
        write_json(Path(run_dir) / RUN_FILE, self.to_dict(), "run state")
