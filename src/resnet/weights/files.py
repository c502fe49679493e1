"""Weights on disk: a run directory, checkpoint, weights file or named source -> the file a command needs, and a
state dict read from any supported file (.safetensors, or a torch file read with ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..io import load_checkpoint, load_safetensors, load_torch_file, sniff
from .named import is_named, named_weights_file

WEIGHTS_HINT = "give a .pth/.pt/.bin/.safetensors file, a run directory, torchvision[:TAG] or timm[:TAG]"
REDOWNLOAD = "delete it and download or copy it again"


def resolve_weights(source: str | Path) -> Path:
    """A run directory -> its model.safetensors (or, before training finished, checkpoints/last.pt); files as given;
    named weights (``torchvision:resnet50``) -> their file in the download cache."""
    if is_named(source):
        return named_weights_file(str(source))
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "model.safetensors", path / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{path} holds no model.safetensors or checkpoints/last.pt; give a run directory of "
                        f"`resnet train` or a weights file")
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a run directory, a checkpoint (.pt) or weights (.safetensors)")
    return path


def resolve_export(source: str | Path, suffix: str, fmt: str) -> Path:
    """A run directory -> its exported ``model<suffix>``; a ``*<suffix>`` file as given; else one sentence saying how
    to export it."""
    path = Path(source)
    if path.is_dir():
        candidate = path / f"model{suffix}"
        if candidate.is_file():
            return candidate
        raise UserError(f"{path} holds no exported model{suffix}; create it with `resnet export {path} --format {fmt}`")
    if not path.exists():
        raise UserError(f"{path} does not exist; give an exported {suffix} file or a run directory holding "
                        f"model{suffix}")
    if not path.name.endswith(suffix):
        raise UserError(f"this backend runs an exported {suffix} model, not {path.name}; create one with "
                        f"`resnet export {path} --format {fmt}`")
    return path


def checkpoint_weights(ckpt: dict, which: str = "final") -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint: the EMA copy (an AveragedModel's ``module.*``) when ``which`` is "ema"."""
    if which == "ema" and ckpt.get("ema"):
        return {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    return ckpt["model"]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a run's file: its .safetensors, or a checkpoint of ours (the copy its card names)."""
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    ckpt = load_checkpoint(path)
    return checkpoint_weights(ckpt, ckpt.get("card", {}).get("weights", "final"))


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from any weights file: .safetensors, or a torch file plain, wrapped (``state_dict``,
    ``model``), DDP-prefixed (``module.``) or a checkpoint of ours (its EMA weights when its card says so)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; {WEIGHTS_HINT}")
    if path.suffix == ".safetensors" or sniff(path) == "safetensors":
        if path.stat().st_size == 0:
            raise UserError(f"weights file {path} is empty (an interrupted download or copy?); {REDOWNLOAD}")
        return load_safetensors(path)
    obj = load_torch_file(path, "weights file", f"(an interrupted download or copy?); {REDOWNLOAD}", REDOWNLOAD,
                          WEIGHTS_HINT)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and ("card" in obj or "optimizer" in obj):
        obj = checkpoint_weights(obj, (obj.get("card") or {}).get("weights", "final"))  # a checkpoint of ours
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state dict of tensors; give model weights as torchvision or timm save them "
                        f"(torch.save(model.state_dict(), ...)) or as .safetensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)
