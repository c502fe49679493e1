"""What an image folder holds, read cheaply before a run is configured: how many training images and classes, the
typical image size, whether the images are grayscale. A run with no recipe of its own chooses its defaults from it
(:mod:`resnet.folder_defaults`)."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .files import list_samples

SAMPLE = 400  # files whose headers are read: the median of a random sample of this size is the folder's
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True)
class FolderStats:
    root: Path
    train_images: int  # files in train/ (before any held-out part)
    classes: int
    has_val: bool  # PATH/val/ exists (else 10% of train/ is held out for evaluation)
    short_side: int  # median shorter side of the sampled images, in pixels (0: no header could be read)
    grayscale: bool  # every sampled image is single-channel

    @property
    def training_images(self) -> int:
        """Images the run trains on: train/ less the held-out 10% when there is no val/."""
        return self.train_images if self.has_val else self.train_images - max(1, round(0.1 * self.train_images))


def _header(path: str) -> tuple[int, int, str] | None:
    """(width, height, mode) from the file's header only (PIL decodes no pixels for this); None if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size[0], im.size[1], im.mode
    except Exception:  # a bad file is the scan's business, with its own message; here it is only left out
        return None


def inspect_folder(root: str | Path, sample: int = SAMPLE, seed: int = 0) -> FolderStats:
    """Count ``root``/train/ and read the headers of up to ``sample`` of its files (a seeded random choice)."""
    root = Path(root).expanduser()
    samples, classes = list_samples(root / "train")
    chosen = samples if len(samples) <= sample else random.Random(seed).sample(samples, sample)
    headers = [h for h in (_header(p) for p, _ in chosen) if h is not None]
    short = int(statistics.median(min(w, h) for w, h, _ in headers)) if headers else 0
    gray = bool(headers) and all(m in GRAY_MODES for _, _, m in headers)
    return FolderStats(root, len(samples), len(classes), (root / "val").is_dir(), short, gray)
