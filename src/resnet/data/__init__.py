"""Data for training and evaluation: one entry point, :func:`build_data`, for every supported set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from ..errors import UserError
from .datasets import MEMORY_SETS, dataset_stats, load_memory_dataset, split_holdout
from .files import FileLoader, SeededImageDataset, list_samples, scan_images
from .memory import Augment, MemoryLoader
from .sampling import steps_per_epoch
from .transforms import eval_transform, train_transform

Loader = Union[MemoryLoader, FileLoader]


@dataclass
class DataBundle:
    """Loaders of one run and what a model card needs to preprocess new images the same way."""

    train: Loader
    val: Loader | None  # a held-out part of the training set, when configured
    test: Loader  # the official evaluation set (test split, or val/ of an image folder)
    classes: list[str]
    in_chans: int
    input_size: tuple[int, int]  # (H, W) the model sees
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | list[int]
    crop: int | None

    @property
    def eval_loader(self) -> Loader:
        return self.val if self.val is not None else self.test

    @property
    def eval_set(self) -> str:
        return "val" if self.val is not None else "test"


def _check_batch(n_train: int, batch_size: int, world: int) -> None:
    if steps_per_epoch(n_train, batch_size, world) == 0:
        raise UserError(f"batch size {batch_size}{f' x {world} processes' if world > 1 else ''} is larger than the "
                        f"{n_train} training examples; use a smaller --batch-size or more data")


def _memory_bundle(cfg, device, rank, world, channels_last) -> DataBundle:
    d = cfg.data
    train = load_memory_dataset(d.name, d.root, train=True)
    test = load_memory_dataset(d.name, d.root, train=False)
    val = None
    if d.val_split:
        keep, held = split_holdout(len(train), d.val_split, cfg.seed)
        train, val = train.subset(keep), train.subset(held)
    if d.train_limit:
        train = train.subset(torch.arange(min(d.train_limit, len(train))))
    if d.test_limit:
        test = test.subset(torch.arange(min(d.test_limit, len(test))))
    _check_batch(len(train), cfg.batch_size, world)
    mean, std = dataset_stats(d.name)
    common = dict(device=device, mean=mean, std=std, rank=rank, world=world, channels_last=channels_last)
    aug = Augment(d.crop_padding, d.flip, d.random_erasing)
    eval_batch = max(cfg.batch_size, 256)
    c, h, w = train.images.shape[1:]
    return DataBundle(
        train=MemoryLoader(train, cfg.batch_size, train=True, augment=aug, seed=cfg.seed, **common),
        val=MemoryLoader(val, eval_batch, train=False, **common) if val is not None else None,
        test=MemoryLoader(test, eval_batch, train=False, **common),
        classes=train.classes, in_chans=c, input_size=(h, w), mean=mean, std=std, resize=[h, w], crop=None)


def _folder_bundle(cfg, device, rank, world, channels_last, in_chans: int, log=print) -> DataBundle:
    d = cfg.data
    root = Path(d.name.split(":", 1)[1]).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist; give imagefolder:PATH with PATH/train/<class>/*")
    train_samples, classes = list_samples(root / "train")
    mode = "L" if in_chans == 1 else "RGB"
    if (root / "val").is_dir():
        test_samples, test_classes = list_samples(root / "val")
        if test_classes != classes:
            raise UserError(f"{root}/val has classes {test_classes[:3]}... but {root}/train has {classes[:3]}...; "
                            f"both need the same class folders")
    else:
        keep, held = split_holdout(len(train_samples), 0.1, cfg.seed)
        test_samples = [train_samples[i] for i in held]
        train_samples = [train_samples[i] for i in keep]
        log(f"{root} has no val/ folder: holding out {len(test_samples)} training images (seeded) for evaluation")
    val_samples = None
    if d.val_split:
        keep, held = split_holdout(len(train_samples), d.val_split, cfg.seed)
        val_samples = [train_samples[i] for i in held]
        train_samples = [train_samples[i] for i in keep]
    if d.train_limit:
        train_samples = train_samples[:d.train_limit]
    if d.test_limit:
        test_samples = test_samples[:d.test_limit]
    splits = {"train": train_samples, "val": val_samples or [], "test": test_samples}
    bad = scan_images([s for part in splits.values() for s in part], mode, workers=max(d.workers, 2))
    if bad:
        if d.bad_images == "error":
            listing = "; ".join(str(e) for e in bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
            raise UserError(f"{len(bad)} bad image file(s) found: {listing}. Remove or fix them, or set "
                            f"data.bad_images=skip to leave them out")
        skip = {e.path for e in bad}
        splits = {k: [s for s in v if s[0] not in skip] for k, v in splits.items()}
        log(f"warning: leaving out {len(bad)} bad image file(s), e.g. {bad[0]}")
    _check_batch(len(splits["train"]), cfg.batch_size, world)
    mean, std = dataset_stats("imagefolder")
    if in_chans == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    eval_crop = d.eval_crop or d.image_size
    transforms = {True: train_transform(d, mean, std), False: eval_transform(d.eval_resize, eval_crop, mean, std)}
    common = dict(device=device, rank=rank, world=world, workers=d.workers, channels_last=channels_last)
    eval_batch = max(cfg.batch_size, 64)

    def loader(samples, train: bool, batch: int) -> FileLoader:
        ds = SeededImageDataset(samples, transforms[train], mode, cfg.seed)
        return FileLoader(ds, classes, batch, train=train, seed=cfg.seed, **common)

    return DataBundle(
        train=loader(splits["train"], True, cfg.batch_size),
        val=loader(splits["val"], False, eval_batch) if val_samples else None,
        test=loader(splits["test"], False, eval_batch),
        classes=classes, in_chans=in_chans, input_size=(eval_crop, eval_crop), mean=mean, std=std,
        resize=d.eval_resize, crop=eval_crop)


def build_data(cfg, device: torch.device, rank: int = 0, world: int = 1, channels_last: bool = True,
               in_chans: int = 3, log=print) -> DataBundle:
    """Loaders for ``cfg.data``; ``in_chans`` matters for image folders only (their files are converted to it)."""
    if cfg.data.name in MEMORY_SETS:
        return _memory_bundle(cfg, device, rank, world, channels_last)
    return _folder_bundle(cfg, device, rank, world, channels_last, in_chans, log)


__all__ = ["Augment", "DataBundle", "FileLoader", "MemoryLoader", "build_data"]
