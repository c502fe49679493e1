"""Files that survive a crash and loads that never run code.

Every write goes to a temporary file beside its target, is fsynced, then renamed over it: a kill at any moment
leaves either the old file or the new one, never a torn one. Every load is ``torch.load(weights_only=True)`` or
safetensors: tensors and plain data only, never pickled objects that could run code.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UserError


def fsync_dir(path: Path) -> None:
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


def atomic_replace(path: str | Path, write_to: Callable[[Path], None]) -> Path:
    """Call ``write_to(tmp)`` with a temporary path beside ``path``, fsync the file, then rename it over ``path``.
    On any failure the temporary file is removed and ``path`` keeps its previous content. For writers that take a
    path (exporters, quantizers, safetensors); :func:`atomic_write` is the same for writers of an open file."""
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
    fsync_dir(path.parent)
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_replace(path, to_file)


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2))


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
        atomic_write(dst, lambda f: f.write(data))


# ------------------------------------------------------------------------------------------------------- weights


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as ``path`` (.safetensors), atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_replace(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    kind = sniff(path) if Path(path).stat().st_size else "safetensors"  # empty: safetensors names it truncated
    if kind is None:
        raise not_weights(Path(path), "weights file", "give the model.safetensors of a run, or export it again")
    if kind != "safetensors":
        raise UserError(f"{path} is a torch.save file, not a safetensors file; name it .pt or .pth")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"weights file {path} is truncated or corrupt ({exc}); export it again") from None


def clip(text: str, limit: int = 160) -> str:
    """``text`` shortened to at most ``limit`` characters at a word boundary, "..." marking the cut: a quoted reason
    never ends mid-word."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:(")
    return f"{cut}..."


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters and cut at
    a word: the reason a one-sentence error quotes."""
    text = str(exc).strip().splitlines()
    return clip(text[0] if text else type(exc).__name__, limit)


def sniff(path: str | Path) -> str | None:
    """What a weights file is, by its first bytes: "zip" (torch.save's format), "pickle" (its legacy format),
    "safetensors" (an 8-byte little-endian header length, then the JSON header), or None: no weights file at all."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head[8:9] == b"{":
        return "safetensors"
    return None


def not_weights(path: Path, noun: str, give: str) -> UserError:
    return UserError(f"{path} is not a {noun} at all (neither a torch zip, a pickle nor a safetensors file); {give}")


def load_torch_file(path: str | Path, noun: str, empty: str, damaged: str, give: str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code. Each way it can fail is
    one sentence naming the file as ``noun`` ("checkpoint", "weights file"); ``empty`` and ``damaged`` end the
    sentences for an empty and a truncated or corrupt file, ``give`` the one for a file of another kind (what to
    give instead). The first bytes tell a file that is no weights file at all (text, an image) from a real pickle
    that torch refuses because it could run code."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise UserError(f"{noun} {path} is empty {empty}")
    kind = sniff(path)
    if kind is None:
        raise not_weights(path, noun, give)
    if kind == "safetensors":
        raise UserError(f"{path} is a safetensors file, not a {noun} torch.load reads; name it .safetensors (with "
                        f"its model.json beside it) or {give}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc) if str(exc).strip() else "disallowed content"
        raise UserError(f"refusing to load {path}: it holds objects other than tensors and plain data, which could "
                        f"run code when unpickled ({first}); only load files you trust with plain torch.load") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError) as exc:
        raise UserError(f"{noun} {path} is truncated or corrupt ({first_line(exc, 120)}); {damaged}") from None


CHECKPOINT_HINT = "give a run directory or a checkpoint (.pt) written by `resnet train`"


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint of ``resnet train`` with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; {CHECKPOINT_HINT}")
    ckpt = load_torch_file(path, "checkpoint", "(an interrupted write?); resume from an earlier checkpoint",
                           "use an earlier checkpoint", CHECKPOINT_HINT)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path} is not a resnet checkpoint (no 'model' entry); {CHECKPOINT_HINT}")
    return ckpt
