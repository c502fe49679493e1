"""What a run records: ``metrics.jsonl`` (one object per epoch), ``steps.jsonl`` (training error every few
iterations), TensorBoard events when tensorboard is installed, and the lines a user reads in the terminal."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (a crash mid-write) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


class RunLogger:
    """Appends metrics of one run; a no-op on every process but rank 0."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = run_dir, enabled
        self.metrics_path, self.steps_path = run_dir / "metrics.jsonl", run_dir / "steps.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional: `pip install resnet[tensorboard]`
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """Drop records written after ``step`` (the checkpoint a resumed run restarts from)."""
        if not self.enabled:
            return
        for path in (self.metrics_path, self.steps_path):
            kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def _append(self, path: Path, record: dict) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def log_steps(self, record: dict) -> None:
        if not self.enabled:
            return
        self._append(self.steps_path, record)
        if self.tb is not None:
            for key in ("train_loss", "train_error", "lr"):
                self.tb.add_scalar(f"step/{key}", record[key], record["step"])

    def log_epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        self._append(self.metrics_path, record)
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step") and math.isfinite(value):
                    self.tb.add_scalar(f"epoch/{key}", value, record["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def print(self, *args) -> None:
        if self.enabled:
            print(*args, flush=True)

    def warn(self, message: str) -> None:
        if self.enabled:
            print(f"warning: {message}", file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
