"""The pieces a run is assembled from: its directory, model, MixUp/CutMix, model card and torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..data import DataBundle
from ..data.sampling import step_seed
from ..errors import UserError
from ..modelcard import ModelCard
from ..models import create_model


def default_run_dir(cfg: Config) -> Path:
    """runs/<recipe> (runs/<model>-<folder name> on an image folder), numbered -2, -3, ... when taken."""
    folder = Path(cfg.data.name.partition(":")[2]).name if ":" in cfg.data.name else ""
    base = Path("runs") / (f"{cfg.model.name}-{folder}" if folder else cfg.recipe or cfg.model.name)
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def build_model(cfg: Config, data: DataBundle) -> nn.Module:
    """The recipe's model, with classes and input channels taken from the data (and checked against the recipe)."""
    kwargs = dict(cfg.model.kwargs)
    for key, actual in (("in_chans", data.in_chans), ("num_classes", len(data.classes))):
        if key in kwargs and kwargs[key] != actual:
            raise UserError(f"model.kwargs.{key}={kwargs[key]} does not match the data ({cfg.data.name} has "
                            f"{actual}); remove it or set it to {actual}")
        kwargs[key] = actual
    return create_model(cfg.model.name, **kwargs)


def make_mixer(cfg: Config, num_classes: int):
    """MixUp / CutMix from torchvision (one of them per batch when both are on), seeded per step."""
    from torchvision.transforms import v2

    d = cfg.data
    choices = ([v2.MixUp(alpha=d.mixup, num_classes=num_classes)] if d.mixup else []) + \
              ([v2.CutMix(alpha=d.cutmix, num_classes=num_classes)] if d.cutmix else [])
    if not choices:
        return None
    mix = v2.RandomChoice(choices) if len(choices) > 1 else choices[0]

    def mixer(images: torch.Tensor, labels: torch.Tensor, step: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(cfg.seed, -1, step))
            return mix(images, labels)

    return mixer


def make_card(cfg: Config, data: DataBundle) -> ModelCard:
    kwargs = {**cfg.model.kwargs, "num_classes": len(data.classes), "in_chans": data.in_chans}
    return ModelCard(architecture=cfg.model.name, model_kwargs=kwargs, classes=list(data.classes),
                     input_size=[data.in_chans, *data.input_size], mean=list(data.mean), std=list(data.std),
                     resize=data.resize, crop=data.crop, dataset=cfg.data.name,
                     weights="ema" if cfg.ema else "final")


def configure_torch(cfg: Config, device: torch.device) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
