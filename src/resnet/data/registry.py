"""The one registry of data sets: for each name, how to find and read it, its classes, channels and mean/std.

Small sets (MNIST-like, CIFAR) are ``memory`` sets: read whole into one uint8 tensor. ``imagefolder:PATH`` is the
``folder`` set: ImageNet-style class folders decoded by workers. :func:`open_split` opens one split of any of them;
train, eval, export calibration and the experiments all go through it. Adding a data set is one :func:`register`
call with its reader.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Union

from ..errors import UserError
from .datasets import FASHION_CLASSES, MemoryDataset, load_cifar_dataset, load_idx_dataset
from .files import list_samples

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
Split = Literal["train", "test"]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: Literal["memory", "folder"]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels: int | None = None  # None: the files are converted to the model's input channels
    classes: tuple[str, ...] | None = None  # None: read from the data (class folders, CIFAR meta)
    read: Callable[..., MemoryDataset] | None = None  # memory sets: read(name, root, train, limit) -> MemoryDataset
    install_hint: str = ""


@dataclass
class FolderSplit:
    """One split of an image folder: (path, class index) samples and the class names."""

    root: Path
    samples: list[tuple[str, int]]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.samples)


_DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> None:
    if spec.name in _DATASETS:
        raise ValueError(f"data set {spec.name!r} is registered twice")
    _DATASETS[spec.name] = spec


register(DatasetSpec("fashion-mnist", "memory", (0.2860,), (0.3530,), 1, tuple(FASHION_CLASSES), load_idx_dataset,
                     "sudo apt-get install dataset-fashion-mnist"))
register(DatasetSpec("mnist", "memory", (0.1307,), (0.3081,), 1, tuple(str(i) for i in range(10)), load_idx_dataset))
register(DatasetSpec("cifar10", "memory", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 3, None,
                     load_cifar_dataset))
register(DatasetSpec("cifar100", "memory", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 3, None,
                     load_cifar_dataset))
register(DatasetSpec("imagefolder", "folder", IMAGENET_MEAN, IMAGENET_STD))


def list_datasets() -> list[str]:
    """Names a recipe's ``data.name`` may take (``imagefolder`` as ``imagefolder:PATH``)."""
    return [f"{n}:PATH" if s.kind == "folder" else n for n, s in _DATASETS.items()]


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name`` (``imagefolder:PATH`` -> the imagefolder spec); one sentence for an unknown name."""
    key, _, arg = name.partition(":")
    spec = _DATASETS.get(key)
    if spec is not None and (spec.kind == "folder") == bool(arg):
        return spec
    if spec is not None and spec.kind == "folder":
        raise UserError(f"data set {name!r} needs a path: give {key}:PATH with PATH/train/<class>/<image>")
    close = difflib.get_close_matches(name, list(_DATASETS), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UserError(f"unknown data set {name!r}; choose one of {', '.join(list_datasets())}{hint}")


def check_dataset_name(name: str) -> str:
    dataset_spec(name)
    return name


def is_memory(name: str) -> bool:
    return dataset_spec(name).kind == "memory"


def folder_root(name: str) -> Path:
    """PATH of ``imagefolder:PATH``."""
    return Path(name.partition(":")[2]).expanduser()


def dataset_stats(name: str, channels: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) used to normalise ``name``; for a folder read as grayscale, the mean of the RGB statistics."""
    spec = dataset_spec(name)
    mean, std = spec.mean, spec.std
    if channels == 1 and len(mean) == 3:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return mean, std


def open_split(name: str, split: Split, root: str | None = None, limit: int | None = None, download: bool = True
               ) -> Union[MemoryDataset, FolderSplit]:
    """One split of a data set: the whole ``train`` or ``test`` set in memory, or a folder's file list
    (``test`` of an image folder is its ``val/`` folder). ``limit`` reads only the first N examples where the
    format allows (IDX files stop decompressing there). ``download`` lets a missing named set be fetched through
    torchvision when a network is there."""
    spec = dataset_spec(name)
    if spec.kind == "memory":
        data = spec.read(spec.name, root, train=split == "train", limit=limit, download=download)
        return data.subset_first(limit) if limit else data
    base = folder_root(name)
    if not base.is_dir():
        raise UserError(f"image folder {base} does not exist; give imagefolder:PATH with PATH/train/<class>/*")
    samples, classes = list_samples(base / ("train" if split == "train" else "val"))
    return FolderSplit(base, samples[:limit] if limit else samples, classes)


__all__ = ["DatasetSpec", "FolderSplit", "IMAGENET_MEAN", "IMAGENET_STD", "check_dataset_name", "dataset_spec",
           "dataset_stats", "folder_root", "is_memory", "list_datasets", "open_split", "register"]
