"""ImageNet-style folders (``PATH/train/<class>/*``, ``PATH/val/<class>/*``) through torchvision's ImageFolder
layout and a DataLoader with workers. Each sample's random transform is seeded by (seed, epoch, index), so data
order and augmentation survive a resume and do not depend on the number of workers or processes."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import find_classes, make_dataset

from ..device import usable_cores
from ..errors import UserError
from ..images import IMAGE_SUFFIXES, BadImageError, open_image
from .sampling import epoch_permutation, eval_indices, step_seed, steps_per_epoch, train_indices


def list_samples(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, class index) pairs and class names of one split folder; empty class folders are an error."""
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; expected PATH/train/<class>/<image> "
                        f"(and optionally PATH/val/<class>/<image>)")
    try:
        classes, class_to_idx = find_classes(str(folder))
    except FileNotFoundError:
        raise UserError(f"{folder} holds no class folders; put each class's images in {folder}/<class>/") from None
    # Empty classes are found from the listing itself: no second walk of every folder.
    samples = make_dataset(str(folder), class_to_idx, extensions=IMAGE_SUFFIXES, allow_empty=True)
    present = {label for _, label in samples}
    empty = [c for c in classes if class_to_idx[c] not in present]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise UserError(f"class folder {folder / empty[0]} is empty{more} (no {', '.join(IMAGE_SUFFIXES[:4])}, ... "
                        f"files); add images or remove the folder")
    if len(classes) < 2:
        raise UserError(f"{folder} holds {len(classes)} class folder ({classes[0]}); a classifier needs at least two: "
                        f"put each class's images in its own folder under {folder}")
    return samples, classes


def scan_images(samples: list[tuple[str, int]], mode: str, workers: int | None = 4) -> list[BadImageError]:
    """Decode every file once (in ``workers`` threads, default one per core: PIL decodes without the GIL); return
    the ones that fail, in order. :func:`resnet.data.scan_cache.scan_folder` remembers the results."""
    if not samples:
        return []
    if workers is None:
        workers = usable_cores()

    def check(sample):
        try:
            open_image(sample[0], mode)
            return None
        except BadImageError as exc:
            return exc

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [e for e in pool.map(check, samples, chunksize=64) if e is not None]


class SeededImageDataset(Dataset):
    """Samples addressed by (epoch, index); the transform's randomness is seeded from them."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable, mode: str, seed: int):
        self.samples, self.transform, self.mode, self.seed = samples, transform, mode, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        path, label = self.samples[index]
        try:
            image = open_image(path, self.mode)
        except BadImageError as exc:
            raise UserError(f"bad image during training: {exc}; fix or remove it, or leave such files out with "
                            f"data.bad_images=skip (files are checked before training unless data.verify=off)"
                            ) from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, epoch, index))
            return self.transform(image), label


class _KeySampler(Sampler):
    """Yields this process's (epoch, index) keys for the epoch and start step set by the loader."""

    def __init__(self, n: int, batch_size: int, train: bool, seed: int, rank: int, world: int):
        self.n, self.batch_size, self.train = n, batch_size, train
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.start_step = 0, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if not self.train:
            yield from ((0, int(i)) for i in eval_indices(self.n, self.rank, self.world))
            return
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for step in range(self.start_step, steps_per_epoch(self.n, self.batch_size, self.world)):
            for i in train_indices(perm, step, self.batch_size, self.rank, self.world):
                yield self.epoch, int(i)

    def __len__(self) -> int:
        if not self.train:
            return len(eval_indices(self.n, self.rank, self.world))
        return (steps_per_epoch(self.n, self.batch_size, self.world) - self.start_step) * self.batch_size


class FileLoader:
    """The file-based twin of :class:`MemoryLoader`: ``epoch(e, start_step)`` yields device batches."""

    def __init__(self, dataset: SeededImageDataset, classes: list[str], batch_size: int, *, device: torch.device,
                 train: bool, seed: int = 0, rank: int = 0, world: int = 1, workers: int = 2,
                 channels_last: bool = True):
        self.classes, self.batch_size, self.device, self.train = classes, batch_size, device, train
        self.world, self.channels_last = world, channels_last
        self.files = [str(path) for path, _ in dataset.samples]  # in index order: the report names its mistakes
        self.sampler = _KeySampler(len(dataset), batch_size, train, seed, rank, world)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=device.type == "cuda", drop_last=train,
                                 persistent_workers=workers > 0)

    @property
    def size(self) -> int:
        """Examples in the whole set (all processes together)."""
        return len(self.loader.dataset)

    def __len__(self) -> int:
        if self.train:
            return steps_per_epoch(len(self.loader.dataset), self.batch_size, self.world)
        return math.ceil(len(self.sampler) / self.batch_size)

    def example(self, index: int) -> torch.Tensor:
        """Example ``index`` of the set through the loader's transform (of epoch 0): what evaluation sees."""
        try:
            return self.loader.dataset[(0, index)][0]
        except UserError as exc:
            raise _unwrapped(exc) from None

    def epoch(self, epoch: int = 0, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.epoch, self.sampler.start_step = epoch, start_step
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        try:
            for x, y in self.loader:
                yield (x.to(self.device, non_blocking=True, memory_format=fmt), y.to(self.device, non_blocking=True))
        except UserError as exc:
            raise _unwrapped(exc) from None


def _unwrapped(exc: UserError) -> UserError:
    """The one sentence of a UserError raised in a DataLoader worker, which torch re-raises wrapped in the worker's
    traceback ("Caught UserError in DataLoader worker process 0. Original Traceback ... UserError: <sentence>")."""
    text = str(exc)
    if "Original Traceback" in text:
        text = text.rstrip().splitlines()[-1].partition("UserError: ")[2] or text
    return UserError(text)
