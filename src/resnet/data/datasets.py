"""Finding and reading the data sets: Fashion-MNIST / MNIST (gzipped IDX), CIFAR-10/100 (python batches) and
ImageNet-style image folders. Small sets come back as one uint8 tensor; folders as torchvision ImageFolders."""

from __future__ import annotations

import gzip
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from ..errors import UserError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@dataclass
class MemoryDataset:
    """A whole split in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    files: list[str] | None = None  # each image's file, for a decoded image folder (the report names its mistakes)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "MemoryDataset":
        files = [self.files[i] for i in index.tolist()] if self.files is not None else None
        return MemoryDataset(self.images[index], self.labels[index], self.classes, files)

    def subset_first(self, n: int) -> "MemoryDataset":
        """The first ``n`` examples (views, no copy)."""
        return MemoryDataset(self.images[:n], self.labels[:n], self.classes,
                             self.files[:n] if self.files is not None else None)


def search_dirs(name: str, root: str | None) -> list[Path]:
    """Where a named set is looked for, in order: --data-root, $RESNET_DATA, ~/.cache/resnet, /usr/share/datasets."""
    bases = [Path(root)] if root else []
    if os.environ.get("RESNET_DATA"):
        bases.append(Path(os.environ["RESNET_DATA"]))
    bases += [Path.home() / ".cache" / "resnet", Path("/usr/share/datasets")]
    torchvision_dir = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}.get(name, "")
    dirs = []
    for base in bases:
        dirs += [base, base / name]
        if torchvision_dir:
            dirs.append(base / torchvision_dir / "raw")
    return dirs


# ------------------------------------------------------------------------------------------------------- IDX files


def read_idx(path: Path, limit: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or not): the MNIST format, magic 0x0000 08 ND, big-endian dims, then uint8 data.
    With ``limit``, only the first ``limit`` items are read (and decompressed)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise UserError(f"{path} is not an unsigned-byte IDX file; replace it with the original data file")
            ndim = head[3]
            dims_raw = f.read(4 * ndim)
            dims = [int.from_bytes(dims_raw[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            if limit is not None and ndim and limit < dims[0]:
                dims[0] = limit
            expected = int(np.prod(dims))
            raw = f.read(expected)
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {path} ({exc}); the file is damaged: download or reinstall it") from None
    if len(raw) != expected:
        raise UserError(f"{path} is truncated ({len(raw)} of {expected} bytes); download it again")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _find_idx(name: str, root: str | None, train: bool) -> tuple[Path, Path] | None:
    images, labels = IDX_FILES[train]
    for d in search_dirs(name, root):
        for suffix in (".gz", ""):
            pi, pl = d / (images + suffix), d / (labels + suffix)
            if pi.is_file() and pl.is_file():
                return pi, pl
    return None


def download_dataset(name: str) -> bool:
    """Fetch a named set through torchvision into ~/.cache/resnet; False when no network is reachable."""
    cls = {"fashion-mnist": datasets.FashionMNIST, "mnist": datasets.MNIST, "cifar10": datasets.CIFAR10,
           "cifar100": datasets.CIFAR100}[name]
    cache = Path.home() / ".cache" / "resnet"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        for train in (True, False):
            cls(str(cache), train=train, download=True)
    except Exception:  # any network failure means "not available here"; the caller explains what to do
        return False
    finally:
        socket.setdefaulttimeout(previous)
    return True


def load_idx_dataset(name: str, root: str | None, train: bool, limit: int | None = None,
                     download: bool = True) -> MemoryDataset:
    found = _find_idx(name, root, train)
    if found is None and download and download_dataset(name):
        found = _find_idx(name, root, train)
    if found is None:
        where = ", ".join(str(d) for d in search_dirs(name, root)[::3])
        how = ("`sudo apt-get install dataset-fashion-mnist`, or put" if name == "fashion-mnist" else "put")
        raise UserError(f"{name} not found in {where} and it could not be downloaded; install it with {how} the "
                        f"four IDX files ({IDX_FILES[True][0]}.gz, ...) in one of those folders or in --data-root")
    images, labels = read_idx(found[0], limit), read_idx(found[1], limit)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{found[0]} and {found[1]} do not match (images {images.shape}, labels {labels.shape})")
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return MemoryDataset(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                         classes)


# ----------------------------------------------------------------------------------------------------------- CIFAR


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles; allow only the numpy array constructors they need, nothing that runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise UserError(f"cannot read CIFAR batch {path} ({exc}); download the python version again") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def load_cifar_dataset(name: str, root: str | None, train: bool, limit: int | None = None,
                       download: bool = True) -> MemoryDataset:
    sub = CIFAR_DIRS[name]
    def find() -> Path | None:
        return next((d / sub for d in search_dirs(name, root) if (d / sub).is_dir()), None)

    folder = find()
    if folder is None and download and download_dataset(name):
        folder = find()
    if folder is None:
        where = ", ".join(str(d) for d in search_dirs(name, root)[::2])
        raise UserError(f"{name} not found: no {sub}/ folder in {where}; download the python version from "
                        f"https://www.cs.toronto.edu/~kriz/cifar.html and unpack it there or in --data-root")
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        meta, label_key, names_key = "batches.meta", "labels", "label_names"
    else:
        files = ["train"] if train else ["test"]
        meta, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    images, labels = [], []
    for fname in files:
        batch = _read_cifar_batch(folder / fname)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _read_cifar_batch(folder / meta)[names_key]]
    return MemoryDataset(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), classes)


def split_holdout(n: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of range(n) into (train, val); ``val_split`` < 1 is a fraction, >= 1 a count."""
    n_val = int(round(val_split * n)) if val_split < 1 else int(val_split)
    if not 0 < n_val < n:
        raise UserError(f"data.val_split={val_split:g} leaves {n - n_val} training and {n_val} validation examples "
                        f"out of {n}; choose a value between 0 and {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    return perm[n_val:].sort().values, perm[:n_val].sort().values
