"""An image folder decoded once into one uint8 tensor, so that it trains through the same in-memory, batched path as
Fashion-MNIST (:class:`.memory.MemoryLoader`) instead of a per-file decode-and-transform DataLoader.

Every image is brought to a square as the evaluation of a file-based run would see it (shorter side to ``resize``,
centre crop ``crop``), so a model card's ``resize``/``crop`` reproduce it on new files. Training images that are
cut by random-resized crops are kept :data:`CROP_MARGIN` larger than the crop, so that a crop of part of the image
still has pixels of its own to resample. Decoding runs in threads (PIL decodes without the GIL) and doubles as the
check that every file is an image.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..device import available_memory, usable_cores
from ..images import BadImageError, open_image
from .datasets import MemoryDataset

AUTO_MEMORY_SHARE = 0.25  # data.memory=auto holds a folder in memory only if it takes at most this share of free RAM
CROP_MARGIN = 1.15  # training images cut by random-resized crops are stored this much larger than the crop (FFCV
#                     stores ImageNet at 1.15-1.5x its 160-192 px crops)


def stored_size(crop: int, resized_crops: bool) -> int:
    """Side of a training image in memory: the crop itself for pad-and-crop, CROP_MARGIN x it for resized crops."""
    return round(CROP_MARGIN * crop) if resized_crops else crop


def decoded_bytes(images: int, channels: int, size: int) -> int:
    return images * channels * size * size


def use_memory(setting: str, nbytes: int) -> bool:
    """Whether a folder run decodes into memory: ``on``/``off`` as set; ``auto`` when its decoded images (``nbytes``)
    take at most AUTO_MEMORY_SHARE of the free memory."""
    if setting != "auto":
        return setting == "on"
    return nbytes <= AUTO_MEMORY_SHARE * available_memory()


def decode_folder(samples: list[tuple[str, int]], classes: list[str], mode: str, resize: int, crop: int
                  ) -> tuple[MemoryDataset, list[BadImageError]]:
    """The ``samples`` as one (N, C, crop, crop) uint8 tensor, and the files that did not decode (left out). Images
    already ``crop`` x ``crop`` (with ``resize == crop``) are copied as they are: most small folders hold one size."""
    fit = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop)])
    channels = 1 if mode == "L" else 3
    images = torch.empty(len(samples), channels, crop, crop, dtype=torch.uint8)

    def load(i: int) -> BadImageError | None:
        try:
            image = open_image(samples[i][0], mode)
        except BadImageError as exc:
            return exc
        if image.size == (crop, crop) and resize == crop:
            images[i] = torch.from_numpy(np.array(image)).view(crop, crop, channels).permute(2, 0, 1)
        else:
            images[i] = fit(F.pil_to_tensor(image))
        return None

    with ThreadPoolExecutor(usable_cores()) as pool:
        failed = list(pool.map(load, range(len(samples)), chunksize=256))
    bad = [f for f in failed if f is not None]
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    files = [str(path) for (path, _), f in zip(samples, failed) if f is None]
    if bad:
        keep = torch.tensor([f is None for f in failed])
        images, labels = images[keep], labels[keep]
    return MemoryDataset(images, labels, list(classes), files), bad
