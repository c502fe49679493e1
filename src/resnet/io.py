"""Weights files: saved through :mod:`resnet.writes` (atomic, a failure in one sentence) and loaded without ever
running code: every load is ``torch.load(weights_only=True)`` or safetensors, tensors and plain data only, never
pickled objects that could run code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UnreadableFile, UserError
from .writes import atomic_replace


# ------------------------------------------------------------------------------------------------------- weights


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None,
                     what: str = "weights") -> Path:
    """Write a state dict as ``path`` (.safetensors), atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return atomic_replace(path, lambda tmp: save_file(state, str(tmp), metadata=metadata), what)


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
    return UnreadableFile(f"{path} is not a {noun} at all (neither a torch zip, a pickle nor a safetensors file); "
                          f"{give}", "not a weights file")


def load_torch_file(path: str | Path, noun: str, empty: str, damaged: str, give: str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code. Each way it can fail is
    one sentence naming the file as ``noun`` ("checkpoint", "weights file"); ``empty`` and ``damaged`` end the
    sentences for an empty and a truncated or corrupt file, ``give`` the one for a file of another kind (what to
    give instead). The first bytes tell a file that is no weights file at all (text, an image) from a real pickle
    that torch refuses because it could run code."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise UnreadableFile(f"{noun} {path} is empty {empty}", "empty")
    kind = sniff(path)
    if kind is None:
        raise not_weights(path, noun, give)
    if kind == "safetensors":
        raise UnreadableFile(f"{path} is a safetensors file, not a {noun} torch.load reads; name it .safetensors "
                             f"(with its model.json beside it) or {give}", "a safetensors file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = first_line(exc) if str(exc).strip() else "disallowed content"
        raise UnreadableFile(f"refusing to load {path}: it holds objects other than tensors and plain data, which "
                             f"could run code when unpickled ({first}); only load files you trust with plain "
                             f"torch.load", "it holds objects other than tensors") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError) as exc:
        raise UnreadableFile(f"{noun} {path} is truncated or corrupt ({first_line(exc, 120)}); {damaged}",
                             f"truncated or corrupt: {first_line(exc, 60)}") from None


CHECKPOINT_HINT = "give a run directory or a checkpoint (.pt) written by `resnet train`"


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint of ``resnet train`` with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; {CHECKPOINT_HINT}")
    ckpt = load_torch_file(path, "checkpoint", "(an interrupted write?); resume from an earlier checkpoint",
                           "use an earlier checkpoint", CHECKPOINT_HINT)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UnreadableFile(f"{path} is not a resnet checkpoint (no 'model' entry); {CHECKPOINT_HINT}",
                             "not a resnet checkpoint")
    return ckpt
