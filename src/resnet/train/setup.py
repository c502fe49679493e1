"""The pieces a run is assembled from: its directory, model, MixUp/CutMix, model card and torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import v2

from ..config import Config
from ..data import DataBundle
from ..data.sampling import step_seed
from ..errors import UserError
from ..models import create_model
from ..weights import ModelCard, init_model
from .distributed import DistEnv, convert_sync_batchnorm
from .ema import make_ema
from .loop import Progress, StepCount, TrainContext


def default_run_dir(cfg: Config) -> Path:
    """runs/<recipe> (runs/<model>-<folder name> on an image folder), numbered -2, -3, ... when taken."""
    folder = Path(cfg.data.name.partition(":")[2]).name if ":" in cfg.data.name else ""
    base = Path("runs") / (f"{cfg.model.name}-{folder}" if folder else cfg.recipe or cfg.model.name)
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def planned_run_dir(cfg: Config) -> Path:
    """Where a new run of ``cfg`` will write: ``--out``, else the :func:`default_run_dir` free now."""
    return Path(cfg.out) if cfg.out else default_run_dir(cfg)


def build_model(cfg: Config, data: DataBundle) -> nn.Module:
    """The recipe's model, with classes and input channels taken from the data (and checked against the recipe)."""
    kwargs = dict(cfg.model.kwargs)
    for key, actual in (("in_chans", data.in_chans), ("num_classes", len(data.classes))):
        if key in kwargs and kwargs[key] != actual:
            raise UserError(f"model.kwargs.{key}={kwargs[key]} does not match the data ({cfg.data.name} has "
                            f"{actual}); remove it or set it to {actual}")
        kwargs[key] = actual
    return create_model(cfg.model.name, **kwargs)


def model_for(cfg: Config, data: DataBundle, device: torch.device, env: DistEnv,
              fresh: bool) -> tuple[nn.Module, str | None]:
    """The recipe's model on ``device``; a ``fresh`` run starts from --pretrained / init_from weights when asked (a
    resumed one loads its checkpoint's), and the note on them is returned for the banner."""
    model = build_model(cfg, data)
    note = init_model(model, cfg.model.name, cfg.pretrained, cfg.init_from, cfg.reset_head) if fresh else None
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and env.enabled:
        model = convert_sync_batchnorm(model, device)
    return model, note


def mixes(cfg: Config, epochs: float) -> bool:
    """Does a run of ``epochs`` epochs train on MixUp/CutMix? When the recipe sets them, and, with
    ``data.mix_from_epochs``, only when the run is that long: mixing regularises a long run of a small folder and
    slows a short one down."""
    d = cfg.data
    return bool(d.mixup or d.cutmix) and (d.mix_from_epochs is None or epochs >= d.mix_from_epochs)


def mix_note(cfg: Config, epochs: float, mixing: bool) -> str | None:
    """The banner's line on a length-dependent MixUp/CutMix (None when the recipe does not make it so)."""
    d = cfg.data
    if d.mix_from_epochs is None or not (d.mixup or d.cutmix):
        return None
    return (f"MixUp/CutMix {'on' if mixing else 'off'}: the run holds {epochs:.3g} epochs, "
            f"{'at least' if mixing else 'fewer than'} data.mix_from_epochs={d.mix_from_epochs:g}")


def make_mixer(cfg: Config, num_classes: int):
    """MixUp / CutMix from torchvision (one of them per batch when both are on), seeded per step."""
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


def make_context(cfg: Config, model: nn.Module, optimizer, scheduler, device: torch.device, precision: str,
                 num_classes: int, ema_of: nn.Module | None = None, freeze=None,
                 progress: Progress | None = None, mixing: bool = True) -> TrainContext:
    """What one step of this recipe touches around ``model`` (loss, precision, clipping, EMA of ``ema_of``, by
    default ``model`` itself, and MixUp/CutMix unless ``mixing`` is false); its steps advance ``progress`` (a run's
    state), or a counter of their own."""
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    ema = make_ema(ema_of or model, cfg.ema, cfg.ema_warmup) if cfg.ema else None
    return TrainContext(model, optimizer, scheduler, scaler, criterion, device, precision, cfg.grad_clip, ema,
                        cfg.ema_every, make_mixer(cfg, num_classes) if mixing else None, freeze=freeze,
                        progress=progress if progress is not None else StepCount())


def wrap_for_training(model: nn.Module, cfg: Config, env, device: torch.device, unused_parameters: bool) -> nn.Module:
    """The model the steps run: DDP across processes (``unused_parameters``: a head warm-up leaves the backbone
    out at first), torch.compile when asked."""
    if env.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_parameters)
    return torch.compile(model) if cfg.compile else model


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
