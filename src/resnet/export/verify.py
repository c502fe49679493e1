"""Checking an export against PyTorch on real images (random inputs hide preprocessing and range bugs), and
reading those images: the model's own data set through :func:`resnet.data.open_split`, or a folder given."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..backends import Backend, image_batches
from ..data import is_memory, open_split
from ..data.files import list_samples
from ..errors import UserError
from ..images import find_images
from ..weights import ModelCard


def in_memory(card: ModelCard, folder: str | Path | None = None) -> bool:
    """Whether real images come from the card's in-memory data set (no folder given, a set the registry reads)."""
    if folder is not None:
        return False
    try:
        return is_memory(card.dataset)
    except UserError:  # a data set this installation does not know: images must come from a folder
        return False


def _memory_split(card: ModelCard, split: str, root: str | None):
    data = open_split(card.dataset, split, root)
    if list(data.images.shape[1:]) != list(card.input_size):
        raise UserError(f"{card.dataset} images are {list(data.images.shape[1:])} but the model expects "
                        f"{card.input_size}; pass --images with images like those it was trained on")
    return data


def _folder_split(card: ModelCard, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(samples, classes) of the card's image-folder data set (``test`` is its val/ folder)."""
    try:
        opened = open_split(card.dataset, split)
    except UserError:
        raise UserError(f"checking a model trained on {card.dataset or 'image files'} needs real images: pass "
                        f"--images DIR with a few hundred images like those it was trained on") from None
    return opened.samples, opened.classes


def _normalise(images_u8: torch.Tensor, card: ModelCard) -> torch.Tensor:
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


def _spread(n_total: int, n: int, seed: int | None) -> list[int]:
    """``n`` indices of range(n_total): a seeded random sample, or evenly spaced when seed is None."""
    n = min(n, n_total)
    if seed is None:
        return torch.linspace(0, n_total - 1, n).long().tolist() if n else []
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()


def load_files(files: list[Path], card: ModelCard) -> torch.Tensor:
    """Image files preprocessed exactly as predict / eval do for ``card``; unreadable files are left out."""
    parts = [batch for _, batch in image_batches(files, card, 256, [{} for _ in files])]
    if not parts:
        raise UserError(f"none of the {len(files)} image files could be read; pass --images with readable images")
    return torch.cat(parts)


def real_images(card: ModelCard, n: int, split: str = "test", folder: str | Path | None = None,
                root: str | None = None, seed: int | None = None) -> torch.Tensor:
    """``n`` real images normalised as the card says: from the model's own data set (``split`` test or train), or
    from the image files under ``folder``."""
    if n < 1:
        raise UserError(f"the number of images must be positive, got {n}")
    if in_memory(card, folder):
        data = _memory_split(card, split, root)
        return _normalise(data.images[_spread(len(data), n, seed)], card)
    if folder is not None:
        files = find_images([folder])
        if not files:
            raise UserError(f"no image files found in {folder}; pass --images with a folder of images")
    else:
        files = [Path(p) for p, _ in _folder_split(card, split)[0]]
    return load_files([files[i] for i in _spread(len(files), n, seed)], card)


def labelled_test_set(card: ModelCard, folder: str | Path | None = None, root: str | None = None,
                      limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised images, labels) of the test split: the full official split of an in-memory set, else the
    labelled class folders of ``folder`` / the image-folder data set's ``val`` (``limit`` images, evenly spread)."""
    if in_memory(card, folder):
        data = _memory_split(card, "test", root)
        index = _spread(len(data), limit, None) if limit else list(range(len(data)))
        return _normalise(data.images[index], card), data.labels[index]
    samples, classes = list_samples(Path(folder)) if folder is not None else _folder_split(card, "test")
    if list(classes) != list(card.classes):
        raise UserError(f"the test folder's classes {list(classes)[:3]}... differ from the model's "
                        f"{list(card.classes)[:3]}...; pass --images with the model's class folders")
    samples = [samples[i] for i in _spread(len(samples), limit or len(samples), None)]
    images = load_files([Path(p) for p, _ in samples], card)  # an unreadable file would misalign the labels:
    if len(images) != len(samples):                          # refuse rather than guess
        raise UserError(f"some test images in {folder} could not be read; run `resnet predict` on them to find which")
    return images, torch.tensor([c for _, c in samples])


def batches(images: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), size):
        yield images[start:start + size]


@torch.no_grad()
def logits_of(backend: Backend | nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``images`` in batches, through a predict Backend or an eval-mode module."""
    return torch.cat([backend(b).float() for b in batches(images, batch_size)])


@dataclass
class Verification:
    """How closely an export's logits follow the fp32 PyTorch model's on real test images."""

    backend: str  # what ran the export, e.g. "onnxruntime" or "openvino int8"
    count: int
    max_abs_diff: float
    top1_agreement: float  # fraction in [0, 1]
    pytorch_top1: float | None = None  # test accuracy in %, when the images have labels
    export_top1: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        text = (f"{self.backend} vs PyTorch on {self.count} real images: max abs logit difference "
                f"{self.max_abs_diff:.2e}, top-1 agreement {100 * self.top1_agreement:.2f}%")
        if self.export_top1 is not None:
            text += f"; test top-1 PyTorch {self.pytorch_top1:.2f}%, export {self.export_top1:.2f}%"
        return text


@dataclass
class Reference:
    """Real test images with the fp32 PyTorch model's logits on them (and labels, when known): what every export of
    one model is checked against."""

    images: torch.Tensor
    labels: torch.Tensor | None
    logits: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, card: ModelCard, n: int, folder: str | Path | None = None,
           root: str | None = None) -> "Reference":
        """``n`` labelled test images (evenly spread over the split), or unlabelled ones from ``folder`` when it
        has no class folders."""
        try:
            images, labels = labelled_test_set(card, folder, root, limit=n)
        except UserError:  # --images without class folders: agreement on those images only, no accuracy
            images, labels = real_images(card, n, "test", folder, root), None
        if list(images.shape[1:]) != list(card.input_size):
            raise UserError(f"verification images are {list(images.shape[1:])} but the model expects "
                            f"{card.input_size}")
        return cls(images, labels, logits_of(copy.deepcopy(model).cpu().float().eval(), images))

    def accuracy(self, logits: torch.Tensor) -> float | None:
        if self.labels is None:
            return None
        return float(100 * (logits.argmax(1) == self.labels).float().mean())


def verify_export(backend: Backend, name: str, reference: Reference, batch_size: int = 256) -> Verification:
    """Run the reference images through ``backend``; report how closely it agrees with PyTorch."""
    ours = logits_of(backend, reference.images, batch_size)
    return Verification(name, len(ours), float((ours - reference.logits).abs().max()),
                        float((ours.argmax(1) == reference.logits.argmax(1)).float().mean()),
                        reference.accuracy(reference.logits), reference.accuracy(ours))
