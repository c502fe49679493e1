"""Data for training and evaluation: one registry of data sets (:mod:`.registry`), one way to open a split
(:func:`open_split`), and one entry point for a run's loaders (:func:`build_data`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Union

import torch

from ..errors import UserError
from .datasets import MemoryDataset, split_holdout
from .files import FileLoader, SeededImageDataset
from .folder_memory import decode_folder, decoded_bytes, stored_size, use_memory
from .memory import Augment, MemoryLoader
from .options import PER_DATASET_FIELDS, SMALL_IMAGE, DataConfig
from .registry import (FolderSplit, check_dataset_name, dataset_spec, dataset_stats, folder_root, is_memory,
                       list_datasets, open_split)
from .sampling import steps_per_epoch
from .scan_cache import scan_folder
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
    test_name: str = "test"  # what ``test`` is: a named set's test split, a folder's "val" folder or "held-out" part
    train_sample: Callable[[int], Loader] | None = None  # n -> a seeded sample of n training images, augmented as
    #                                                      training sees them (precise BatchNorm)

    @property
    def eval_loader(self) -> Loader:
        return self.val if self.val is not None else self.test

    @property
    def eval_set(self) -> str:
        return "val" if self.val is not None else self.test_name


def resized_crops(cfg: DataConfig) -> bool:
    """Whether training takes random-resized crops (else pad-and-crop): ``random_crop``, or for ``auto`` whether an
    image folder's images are evaluated at SMALL_IMAGE px or more (below that a crop would cut away too much of the
    object, and the named in-memory sets are all small)."""
    if cfg.random_crop != "auto":
        return cfg.random_crop == "resized"
    return not is_memory(cfg.name) and (cfg.eval_crop or cfg.image_size) >= SMALL_IMAGE


def augment_for(cfg: DataConfig) -> Augment:
    """The batched augmentation of an in-memory training set."""
    if resized_crops(cfg):
        return Augment(cfg.crop_padding, cfg.flip, cfg.random_erasing, min_scale=cfg.min_scale, size=cfg.image_size)
    return Augment(cfg.crop_padding, cfg.flip, cfg.random_erasing)


def sample_indices(n: int, k: int, seed: int) -> list[int]:
    """A seeded sample of ``k`` of ``n`` indices (all of them when k >= n), in order."""
    if k >= n:
        return list(range(n))
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist())


def sample_size(n: int, n_train: int, batch_size: int, world: int) -> int:
    """How many training images a sample of ``n`` takes: at least one whole global batch, at most the set."""
    return min(max(n, batch_size * world), n_train)


def memory_sample(train: MemoryDataset, seed: int, batch: int, augment: Augment, **common
                  ) -> Callable[[int], Loader]:
    """``n`` -> a loader of a seeded sample of ``n`` training images, batched and augmented as training is."""
    def sample(n: int) -> MemoryLoader:
        k = sample_size(n, len(train), batch, common.get("world", 1))
        part = train.subset(torch.tensor(sample_indices(len(train), k, seed)))
        return MemoryLoader(part, batch, train=True, augment=augment, seed=seed, **common)
    return sample


def _check_batch(n_train: int, batch_size: int, world: int) -> None:
    if steps_per_epoch(n_train, batch_size, world) == 0:
        raise UserError(f"batch size {batch_size}{f' x {world} processes' if world > 1 else ''} is larger than the "
                        f"{n_train} training examples; use a smaller --batch-size or more data")


def _memory_bundle(d: DataConfig, batch_size: int, seed: int, device, rank, world, channels_last) -> DataBundle:
    # Without a held-out split the first train_limit examples are all that is read (subset before decoding).
    train = open_split(d.name, "train", d.root, limit=None if d.val_split else d.train_limit)
    test = open_split(d.name, "test", d.root, limit=d.test_limit)
    val = None
    if d.val_split:
        keep, held = split_holdout(len(train), d.val_split, seed)
        train, val = train.subset(keep), train.subset(held)
    if d.train_limit:
        train = train.subset_first(min(d.train_limit, len(train)))
    _check_batch(len(train), batch_size, world)
    mean, std = dataset_stats(d.name)
    common = dict(device=device, mean=mean, std=std, rank=rank, world=world, channels_last=channels_last)
    eval_batch = max(batch_size, 256)
    c, h, w = train.images.shape[1:]
    augment = augment_for(d)
    return DataBundle(
        train=MemoryLoader(train, batch_size, train=True, augment=augment, seed=seed, **common),
        val=MemoryLoader(val, eval_batch, train=False, **common) if val is not None else None,
        test=MemoryLoader(test, eval_batch, train=False, **common),
        classes=train.classes, in_chans=c, input_size=(h, w), mean=mean, std=std, resize=[h, w], crop=None,
        train_sample=memory_sample(train, seed, batch_size, augment, **common))


def _folder_bundle(d: DataConfig, batch_size: int, seed: int, device, rank, world, channels_last, in_chans: int,
                   log=print) -> DataBundle:
    opened = open_split(d.name, "train")
    root, train_samples, classes = opened.root, opened.samples, opened.classes
    listed = [p for p, _ in opened.samples]  # every file of the folder: the scan cache forgets the others
    mode = "L" if in_chans == 1 else "RGB"
    test_name = "val" if (root / "val").is_dir() else "held-out"
    if (root / "val").is_dir():
        held_out = open_split(d.name, "test")
        test_samples, test_classes = held_out.samples, held_out.classes
        listed += [p for p, _ in test_samples]
        if test_classes != classes:
            raise UserError(f"{root}/val has classes {test_classes[:3]}... but {root}/train has {classes[:3]}...; "
                            f"both need the same class folders")
    else:
        keep, held = split_holdout(len(train_samples), 0.1, seed)
        test_samples = [train_samples[i] for i in held]
        train_samples = [train_samples[i] for i in keep]
        log(f"{root} has no val/ folder: holding out {len(test_samples)} training images (seeded) for evaluation")
    val_samples = None
    if d.val_split:
        keep, held = split_holdout(len(train_samples), d.val_split, seed)
        val_samples = [train_samples[i] for i in held]
        train_samples = [train_samples[i] for i in keep]
    if d.train_limit:
        train_samples = train_samples[:d.train_limit]
    if d.test_limit:
        test_samples = test_samples[:d.test_limit]
    splits = {"train": train_samples, "val": val_samples or [], "test": test_samples}
    eval_crop = d.eval_crop or d.image_size
    held = len(splits["val"]) + len(test_samples)
    side = stored_size(d.image_size, resized_crops(d))
    if use_memory(d.memory, decoded_bytes(len(train_samples), in_chans, side) +
                  decoded_bytes(held, in_chans, eval_crop)):
        return _folder_in_memory(d, splits, classes, batch_size, seed, device, rank, world, channels_last, in_chans,
                                 test_name, log)
    # Files of this run that do not decode: only new or changed ones are decoded under data.verify=cached.
    if d.verify == "off" and d.bad_images == "skip":
        log("warning: data.verify=off checks no file before training, so data.bad_images=skip cannot leave bad files "
            "out: a bad file stops the run when the loader reaches it")
    # Other processes of a multi-process run wait for rank 0's scan (a lock) and take its result from the cache.
    verify = "cached" if rank > 0 and d.verify == "full" else d.verify
    scan = scan_folder(root, [s for part in splits.values() for s in part], mode, verify, workers=None,
                       listed=listed, log=log)
    if scan.warning:
        log(f"warning: {scan.warning}")
    bad = scan.bad
    _leave_out_bad(bad, d.bad_images, log)
    if bad:
        skip = {e.path for e in bad}
        splits = {k: [s for s in v if s[0] not in skip] for k, v in splits.items()}
    _check_batch(len(splits["train"]), batch_size, world)
    mean, std = dataset_stats(d.name, in_chans)
    transforms = {True: train_transform(d, mean, std, resized_crops(d)),
                  False: eval_transform(d.eval_resize, eval_crop, mean, std)}
    common = dict(device=device, rank=rank, world=world, workers=d.workers, channels_last=channels_last)
    eval_batch = max(batch_size, 64)

    def loader(samples, train: bool, batch: int) -> FileLoader:
        ds = SeededImageDataset(samples, transforms[train], mode, seed)
        return FileLoader(ds, classes, batch, train=train, seed=seed, **common)

    def sample(n: int) -> FileLoader:
        part = splits["train"]
        k = sample_size(n, len(part), batch_size, world)
        return loader([part[i] for i in sample_indices(len(part), k, seed)], True, batch_size)

    return DataBundle(
        train=loader(splits["train"], True, batch_size),
        val=loader(splits["val"], False, eval_batch) if val_samples else None,
        test=loader(splits["test"], False, eval_batch),
        classes=classes, in_chans=in_chans, input_size=(eval_crop, eval_crop), mean=mean, std=std,
        resize=d.eval_resize, crop=eval_crop, test_name=test_name, train_sample=sample)


def _leave_out_bad(bad: list, policy: str, log) -> None:
    """A folder's undecodable files: one sentence listing them (``data.bad_images=error``) or a warning (``skip``)."""
    if not bad:
        return
    if policy == "error":
        listing = "; ".join(str(e) for e in bad[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise UserError(f"{len(bad)} bad image file(s) found: {listing}. Remove or fix them, or set "
                        f"data.bad_images=skip to leave them out")
    log(f"warning: leaving out {len(bad)} bad image file(s), e.g. {bad[0]}")


def _folder_in_memory(d: DataConfig, splits: dict, classes: list[str], batch_size: int, seed: int, device, rank,
                      world, channels_last, in_chans: int, test_name: str, log) -> DataBundle:
    """An image folder decoded once (:mod:`.folder_memory`) and trained like Fashion-MNIST: batched crops (pad-and-crop
    or random-resized) and flips on the training device."""
    mode = "L" if in_chans == 1 else "RGB"
    eval_crop = d.eval_crop or d.image_size
    train_side = stored_size(d.image_size, resized_crops(d))
    start = time.perf_counter()
    parts, bad = {}, []
    for name, samples in splits.items():
        size = (train_side, train_side) if name == "train" else (d.eval_resize, eval_crop)
        parts[name], failed = decode_folder(samples, classes, mode, *size) if samples else (None, [])
        bad += failed
    _leave_out_bad(bad, d.bad_images, log)
    held = [p for p in parts.values() if p is not None]
    log(f"decoded {sum(len(p) for p in held):,} images into memory ({sum(p.images.numel() for p in held) / 2**20:.1f} "
        f"MiB) in {time.perf_counter() - start:.1f} s")
    train = parts["train"]
    _check_batch(len(train), batch_size, world)
    mean, std = dataset_stats(d.name, in_chans)
    common = dict(device=device, mean=mean, std=std, rank=rank, world=world, channels_last=channels_last)
    eval_batch = max(batch_size, 256)
    augment = augment_for(d)
    return DataBundle(
        train=MemoryLoader(train, batch_size, train=True, augment=augment, seed=seed, **common),
        val=MemoryLoader(parts["val"], eval_batch, train=False, **common) if parts["val"] is not None else None,
        test=MemoryLoader(parts["test"], eval_batch, train=False, **common),
        classes=classes, in_chans=in_chans, input_size=(eval_crop, eval_crop), mean=mean, std=std,
        resize=d.eval_resize, crop=eval_crop, test_name=test_name,
        train_sample=memory_sample(train, seed, batch_size, augment, **common))


def build_data(data: DataConfig, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1,
               channels_last: bool = True, in_chans: int = 3, log=print) -> DataBundle:
    """Loaders of one run: ``batch_size`` per process, augmentation and order seeded by ``seed``; ``in_chans``
    matters for image folders only (their files are converted to it)."""
    if is_memory(data.name):
        return _memory_bundle(data, batch_size, seed, device, rank, world, channels_last)
    return _folder_bundle(data, batch_size, seed, device, rank, world, channels_last, in_chans, log)


__all__ = ["Augment", "DataBundle", "DataConfig", "FileLoader", "FolderSplit", "MemoryDataset", "MemoryLoader",
           "PER_DATASET_FIELDS", "SMALL_IMAGE", "SeededImageDataset", "build_data", "check_dataset_name", "dataset_spec",
           "dataset_stats", "eval_transform", "folder_root", "is_memory", "list_datasets", "open_split",
           "resized_crops", "sample_indices"]
