"""Training checkpoints: the step files of a run (``step-N.pt``, ``last.pt``) and the RNG states that make a resumed
run bit-identical to an uninterrupted one. Writing safely is :mod:`resnet.writes`' job, loading
:mod:`resnet.io`'s."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..writes import atomic_write, link_or_copy, make_dir, writing
from ..runs import step_checkpoints


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` of a checkpoint, atomically; a failure is a WriteError and the previous file is intact."""
    atomic_write(path, lambda f: torch.save(obj, f), "checkpoint")


def point_at(src: Path, dst: Path) -> None:
    """Make ``dst`` (last.pt, best.pt) hold ``src``'s content, atomically."""
    link_or_copy(src, dst, "checkpoint")


def rng_state() -> dict:
    """Every RNG a training step can touch: torch (CPU and CUDA), NumPy and Python's ``random``."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": _python_state_to_tensor(random.getstate()),
    }


def _python_state_to_tensor(state) -> dict:
    version, internal, gauss = state
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))


def save_step_checkpoint(ckpt_dir: Path, state: dict, step: int, keep: int) -> Path:
    """Write ``step-N.pt`` and point ``last.pt`` at it; keep the newest ``keep`` step files (at least the new one)."""
    make_dir(ckpt_dir, "checkpoint directory")
    path = ckpt_dir / f"step-{step:08d}.pt"
    atomic_save(state, path)
    point_at(path, ckpt_dir / "last.pt")
    for old in step_checkpoints(ckpt_dir)[:-max(keep, 1)]:
        with writing(old, "old checkpoint"):  # (removed once the new one is safe)
            old.unlink(missing_ok=True)
    return path
