"""Checkpoints: atomic writes (temporary file, fsync, rename), safe reads (``weights_only=True``), and the RNG
states that make a resumed run bit-identical to an uninterrupted one."""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from ..errors import UserError

STEP_FILE = re.compile(r"step-(\d+)\.pt$")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written; the previous one is intact."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(path: Path, write_to: Callable[[Path], None]) -> Path:
    """Call ``write_to(tmp)`` with a temporary path beside ``path``, fsync the file, then rename it over ``path``.
    On any failure the temporary file is removed and ``path`` keeps its previous content. For writers that take a
    path (exporters, quantizers); :func:`atomic_write` is the same for writers of an open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_to(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.
    On any failure the temporary file is removed and ``path`` keeps its previous content."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_replace(path, to_file)


def atomic_save(obj: Any, path: Path) -> None:
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except OSError as exc:
        raise CheckpointWriteError(f"could not write checkpoint {path} ({exc.strerror or exc}); the previous "
                                   f"checkpoint is intact: free disk space and resume from it") from None


def link_or_copy(src: Path, dst: Path) -> None:
    """Point ``dst`` at ``src``'s content atomically (hard link when possible; a copy otherwise)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        data = src.read_bytes()
        try:
            atomic_write(dst, lambda f: f.write(data))
        except OSError as exc:
            raise CheckpointWriteError(f"could not write {dst} ({exc.strerror or exc}); {src} is intact") from None


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


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers only; never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give a run directory or a .pt file")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (an interrupted write?); resume from an earlier checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "disallowed content"
        raise UserError(f"refusing to load {path}: it holds objects other than tensors and plain data, which could "
                        f"run code when unpickled ({first[:160]}); only load files you trust with plain torch.load") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path} is truncated or corrupt ({str(exc).splitlines()[0][:120]}); "
                        f"use an earlier checkpoint") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not a resnet checkpoint (no 'model' entry); give a checkpoint written by "
                        f"`resnet train`")
    return ckpt


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Step checkpoints, oldest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def save_step_checkpoint(ckpt_dir: Path, state: dict, step: int, keep: int) -> Path:
    """Write ``step-N.pt`` and point ``last.pt`` at it; keep the newest ``keep`` step files (at least the new one)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step-{step:08d}.pt"
    atomic_save(state, path)
    link_or_copy(path, ckpt_dir / "last.pt")
    for old in step_checkpoints(ckpt_dir)[:-max(keep, 1)]:
        old.unlink(missing_ok=True)
    return path


def latest_valid_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint in ``run_dir`` that loads; damaged newer files are passed over."""
    ckpt_dir = run_dir / "checkpoints"
    candidates = sorted(step_checkpoints(ckpt_dir), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    if (ckpt_dir / "last.pt").is_file():
        candidates.insert(0, ckpt_dir / "last.pt")
    for path in candidates:
        try:
            load_checkpoint(path)
            return path
        except UserError:
            continue
    return None
