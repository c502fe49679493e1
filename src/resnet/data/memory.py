"""Data sets held on the training device as one uint8 tensor. Batches are cut and augmented with batched tensor ops
(pad-and-crop or random-resized crops, flip, random erasing): no per-sample Python in the training loop (airbench's
approach, and FFCV's for photos)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .datasets import MemoryDataset
from .sampling import epoch_permutation, eval_indices, step_seed, steps_per_epoch, train_indices


RATIO = (3 / 4, 4 / 3)  # aspect ratios of random-resized crops: torchvision's RandomResizedCrop default


@dataclass
class Augment:
    crop_padding: int = 4  # pad-and-crop by up to this many pixels (small images) ...
    flip: bool = True
    random_erasing: float = 0.0
    min_scale: float | None = None  # ... or, when set, random-resized crops of this share of the image and more
    size: int | None = None  # side of the random-resized crops (default: the stored images')


def resized_crop_boxes(n: int, side: int, min_scale: float, gen: torch.Generator) -> torch.Tensor:
    """(N, 4) boxes x1, y1, x2, y2 of random-resized crops of a ``side`` x ``side`` image, torchvision's
    distribution: area uniform in [min_scale, 1] of the image, aspect ratio log-uniform in :data:`RATIO`, position
    uniform; a box that would leave the image is clamped to it (torchvision redraws, then falls back to a centre
    crop)."""
    u = torch.rand(4, n, generator=gen, device=gen.device)
    area = (min_scale + (1 - min_scale) * u[0]) * side * side
    aspect = torch.exp(math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * u[1])
    w = torch.sqrt(area * aspect).clamp(max=side)
    h = torch.sqrt(area / aspect).clamp(max=side)
    x0, y0 = u[2] * (side - w), u[3] * (side - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def resized_crop_flip(images: torch.Tensor, boxes: torch.Tensor, size: int, flips: torch.Tensor) -> torch.Tensor:
    """Each image's ``box`` resampled to ``size`` x ``size`` (bilinear, averaging ceil(box / size) samples per
    output pixel when it shrinks: torchvision's roi_align) and mirrored where ``flips``; float, 0-255."""
    n = images.shape[0]
    rois = torch.cat([torch.arange(n, device=images.device, dtype=boxes.dtype)[:, None], boxes], 1)
    out = roi_align(images.float(), rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return torch.where(flips[:, None, None, None], out.flip(3), out)


def crop_flip(images: torch.Tensor, padding: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Translate a uint8 batch by ``offsets`` (2, N) within a zero border of ``padding`` pixels and mirror the images
    where ``flips``; one gather does both."""
    n, c, h, w = images.shape
    dev = images.device
    if padding:
        images = torch.nn.functional.pad(images, (padding,) * 4)
    rows = offsets[0, :, None] + torch.arange(h, device=dev)
    cols_fwd = torch.arange(w, device=dev)
    cols = offsets[1, :, None] + torch.where(flips[:, None], w - 1 - cols_fwd, cols_fwd)
    out = images[torch.arange(n, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # N, H, W, C
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: already channels_last


def erase_boxes(n: int, h: int, w: int, p: float, gen: torch.Generator, scale=(0.02, 0.33),
                ratio=(0.3, 3.3)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): for each image, with probability ``p``, one box of area ``scale`` x image
    and aspect ``ratio``. Returns (N, 5) int rows: apply, top, left, height, width."""
    dev = gen.device
    u = torch.rand(5, n, generator=gen, device=dev)
    area = (scale[0] + (scale[1] - scale[0]) * u[1]) * h * w
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[2])
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (u[3] * (h - eh + 1)).floor()
    left = (u[4] * (w - ew + 1)).floor()
    return torch.stack([(u[0] < p).float(), top, left, eh, ew], 1).long()


def apply_erase(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Set the ``boxes`` of a normalised batch to 0, i.e. to the data mean (torchvision's RandomErasing value=0)."""
    _, _, h, w = x.shape
    apply, top, left, eh, ew = (b[:, None, None] for b in boxes.unbind(1))
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    box = (r >= top) & (r < top + eh) & (c >= left) & (c < left + ew) & apply.bool()
    return x.masked_fill(box[:, None], 0.0)


class MemoryLoader:
    """Iterates (images, labels) batches of a :class:`MemoryDataset` on ``device``, normalised, channels_last.

    Training: a seeded permutation per epoch, each step one slice of the global batch (see ``sampling``), augmented
    with a generator seeded by (seed, epoch, step), so a resumed run sees exactly the batches it would have seen.
    Evaluation: this process's stride of the set, in order, every example once; with ``resize``, each image scaled
    (antialiased) to ``resize`` x ``resize`` first (a training set stored larger than evaluation sees it).
    """

    def __init__(self, data: MemoryDataset, batch_size: int, *, device: torch.device, mean, std, train: bool,
                 augment: Augment | None = None, seed: int = 0, rank: int = 0, world: int = 1,
                 channels_last: bool = True, resize: int | None = None):
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.classes, self.files = data.classes, data.files  # files: see MemoryDataset
        self.batch_size, self.device, self.train = batch_size, device, train
        self.augment = augment if train else None
        self.seed, self.rank, self.world = seed, rank, world
        self.channels_last, self.resize = channels_last, resize
        c = self.images.shape[1]
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t

    @property
    def size(self) -> int:
        """Examples in the whole set (all processes together)."""
        return len(self.labels)

    @property
    def crop_size(self) -> int | None:
        """The side of its random-resized crops (None: it does not cut such crops)."""
        aug = self.augment
        return (aug.size or self.images.shape[-1]) if aug is not None and aug.min_scale is not None else None

    def set_crop_size(self, size: int) -> None:
        """Cut random-resized crops of ``size`` px from now on (a budget's lower training resolution)."""
        self.augment = replace(self.augment, size=size)

    def __len__(self) -> int:
        if self.train:
            return steps_per_epoch(len(self.labels), self.batch_size, self.world)
        return math.ceil(len(eval_indices(len(self.labels), self.rank, self.world)) / self.batch_size)

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0-255) images to the normalised float batch the model sees."""
        x = images.float() * self.scale - self.shift
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def _sized(self, images: torch.Tensor) -> torch.Tensor:
        if self.resize is None or images.shape[-1] == self.resize:
            return images
        return F.interpolate(images.float(), size=(self.resize, self.resize), mode="bilinear", antialias=True,
                             align_corners=False).clamp_(0, 255)

    def example(self, index: int) -> torch.Tensor:
        """Example ``index`` of the set as evaluation sees it: normalised (C, H, W), on the loader's device."""
        return self._normalize(self._sized(self.images[index:index + 1]))[0]

    def epoch(self, epoch: int = 0, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.train:
            index = eval_indices(len(self.labels), self.rank, self.world).to(self.device)
            for i in range(0, len(index), self.batch_size):
                j = index[i:i + self.batch_size]
                yield self._normalize(self._sized(self.images[j])), self.labels[j]
            return
        perm = epoch_permutation(len(self.labels), self.seed, epoch).to(self.device)
        n_global = self.batch_size * self.world
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        side = self.images.shape[-1]
        for step in range(start_step, len(self)):
            j = train_indices(perm, step, self.batch_size, self.rank, self.world)
            images, labels = self.images[j], self.labels[j]
            aug = self.augment
            if aug is None:
                yield self._normalize(images), labels
                continue
            # Random numbers are drawn for the whole global batch and sliced, so the augmentation of an example
            # does not depend on how many processes share the batch.
            gen = torch.Generator(self.device).manual_seed(step_seed(self.seed, epoch, step))
            if aug.min_scale is not None:
                boxes = resized_crop_boxes(n_global, side, aug.min_scale, gen)
                flips = torch.rand(n_global, generator=gen, device=self.device) < (0.5 if aug.flip else 0.0)
                images = resized_crop_flip(images, boxes[mine], aug.size or side, flips[mine])
            else:
                offsets = torch.randint(0, 2 * aug.crop_padding + 1, (2, n_global), generator=gen, device=self.device)
                flips = torch.rand(n_global, generator=gen, device=self.device) < (0.5 if aug.flip else 0.0)
                if aug.crop_padding or aug.flip:
                    images = crop_flip(images, aug.crop_padding, offsets[:, mine], flips[mine])
            x = self._normalize(images)
            if aug.random_erasing:
                x = apply_erase(x, erase_boxes(n_global, *x.shape[-2:], aug.random_erasing, gen)[mine])
            yield x, labels
