"""What a run records: ``metrics.jsonl`` (one object per epoch), ``steps.jsonl`` (training error every few
iterations), TensorBoard events when tensorboard is installed, and the lines a user reads in the terminal."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..writes import OptionalWrites, append_line, writing, write_text
from ..table import format_table


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
        self.optional = OptionalWrites(self.warn)  # TensorBoard's events: a run goes on without them
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: `pip install resnet[tensorboard]`
                return
            self.tb = self.optional(self._guarded, SummaryWriter, str(run_dir / "tensorboard"))

    def _guarded(self, call, *args):
        with writing(self.run_dir / "tensorboard", "TensorBoard events"):
            return call(*args)

    def _tensorboard(self, method: str, *args) -> None:
        """``SummaryWriter.method(*args)``; the first failure to write is a warning and ends the events."""
        if self.tb is not None:
            self.optional(self._guarded, getattr(self.tb, method), *args)
            if self.optional.failed:
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """Drop records written after ``step`` (the checkpoint a resumed run restarts from)."""
        if not self.enabled:
            return
        for path in (self.metrics_path, self.steps_path):
            kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
            write_text(path, "".join(json.dumps(r) + "\n" for r in kept), "training log")

    def _append(self, path: Path, record: dict) -> None:
        append_line(path, json.dumps(record), "training log")

    def log_steps(self, record: dict) -> None:
        if not self.enabled:
            return
        self._append(self.steps_path, record)
        for key in ("train_loss", "train_error", "lr"):
            self._tensorboard("add_scalar", f"step/{key}", record[key], record["step"])

    def log_epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        self._append(self.metrics_path, record)
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step") and math.isfinite(value):
                self._tensorboard("add_scalar", f"epoch/{key}", value, record["epoch"])
        self._tensorboard("flush")

    def close(self) -> None:
        self._tensorboard("close")

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


def scores(top1: float, top5: float | None, loss: float) -> str:
    """``top-1 94.20%  top-5 99.80%  loss 0.1234``; top-5 left out where it is None (5 classes or fewer)."""
    return f"top-1 {top1:.2f}%  {'' if top5 is None else f'top-5 {top5:.2f}%  '}loss {loss:.4f}"


def epoch_line(r: dict, epochs: int, elapsed: float, step: int, total_steps: int) -> str:
    """The terminal line of one epoch record, with the time spent and an estimate of the time left."""
    remaining = elapsed / max(step, 1) * (total_steps - step)
    top5 = "" if r.get("val_top5") is None else f" top-5 {r['val_top5']:.2f}%"
    val = (f" | {r['eval_set']} loss {r['val_loss']:.4f} top-1 {r['val_top1']:.2f}%{top5}"
           if r["val_top1"] is not None else "")
    return (f"epoch {r['epoch']:>3}/{epochs} | train loss {r['train_loss']:.4f} error "
            f"{r['train_error']:.2f}%{val} | lr {r['lr']:.4g} | {r['img_per_s']:.0f} img/s | "
            f"{format_duration(elapsed)} elapsed, ~{format_duration(remaining)} left")


def final_table(records: list[dict]) -> str:
    """All epoch records of a run as one table (printed when the run ends); no top-5 column when no evaluation
    had one (5 classes or fewer)."""
    top5 = any(r.get("val_top5") is not None for r in records)
    rows = [[r["epoch"], f"{r['train_loss']:.4f}", f"{r['train_error']:.2f}",
             "" if r["val_top1"] is None else f"{r['val_loss']:.4f}",
             "" if r["val_top1"] is None else f"{r['val_top1']:.2f}",
             *(["" if r.get("val_top5") is None else f"{r['val_top5']:.2f}"] if top5 else []), f"{r['lr']:.4g}",
             f"{r['img_per_s']:.0f}", format_duration(r["seconds"])] for r in records]
    eval_set = records[-1]["eval_set"] if records else "val"
    head = ["epoch", "train loss", "train err %", f"{eval_set} loss", f"{eval_set} top-1 %",
            *([f"{eval_set} top-5 %"] if top5 else []), "lr", "img/s", "time"]
    return format_table(head, rows, align="r" * len(head))
