"""torchvision transform presets for file-based data: the paper's / torchvision's train and eval pipelines."""

from __future__ import annotations

import typing

import torch
from torchvision.transforms import v2

from .options import AutoAugment, DataConfig

# One torchvision policy per name of the AutoAugment Literal (checked below, so the two cannot drift apart).
AUTO_AUGMENT = {"trivialaugment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment, "autoaugment": v2.AutoAugment}
if set(AUTO_AUGMENT) != set(typing.get_args(AutoAugment)):
    raise ImportError("data.transforms.AUTO_AUGMENT and data.options.AutoAugment name different policies")


def _to_tensor(mean, std) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(cfg: DataConfig, mean, std, resized: bool = True) -> v2.Compose:
    """Random-resized crop (paper Sec. 3.4 / torchvision) or, for small images, the image at its size padded and
    cropped (the paper's CIFAR augmentation); flip, optional auto-augment and random erasing."""
    if resized:
        ops: list = [v2.RandomResizedCrop(cfg.image_size, scale=(cfg.min_scale, 1.0), antialias=True)]
    else:
        ops = [v2.Resize(cfg.image_size, antialias=True), v2.CenterCrop(cfg.image_size),
               v2.RandomCrop(cfg.image_size, padding=cfg.crop_padding)]
    if cfg.flip:
        ops.append(v2.RandomHorizontalFlip())
    if cfg.auto_augment:
        ops.append(AUTO_AUGMENT[cfg.auto_augment]())
    ops += _to_tensor(mean, std)
    if cfg.random_erasing:
        ops.append(v2.RandomErasing(p=cfg.random_erasing))
    return v2.Compose(ops)


def eval_transform(resize: int | list[int], crop: int | None, mean, std) -> v2.Compose:
    """Resize (shorter side to ``resize``, or exactly to [H, W]), then centre-crop ``crop`` (if any), normalise."""
    size = list(resize) if isinstance(resize, (list, tuple)) else resize
    ops: list = [v2.ToImage(), v2.Resize(size, antialias=True)]
    if crop:
        ops.append(v2.CenterCrop(crop))
    return v2.Compose(ops + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
