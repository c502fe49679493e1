"""The test images a model got most confidently wrong, per true class: gathered while a test pass runs (the final test
of a run, or `resnet report`'s own pass), so that the report page can show them without a second pass. Only their
places in the test set are kept while the pass runs; the few images shown are read back from the loader after it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

PER_CLASS = 8  # mistakes kept per true class: the report shows 5-10 where a class has that many


@dataclass
class Mistake:
    index: int  # position in the test set (the order of its files, or of the data set's arrays)
    true: int
    predicted: int
    confidence: float  # the model's probability of the class it predicted
    image: torch.Tensor | None = None  # (C, H, W) float32 on the CPU, normalised: exactly what the model saw
    name: str | None = None  # its file (class folder/file name), where the test set is a folder


class MistakeCollector:
    """Called with each evaluated batch (``images``, ``labels``, softmax ``probs``) in the loader's order; keeps the
    ``per_class`` most confident wrong predictions of every true class. ``rank``/``world``: this process's share of
    the test set (every ``world``-th image from ``rank``), which gives each image's position in the whole set."""

    def __init__(self, num_classes: int, per_class: int = PER_CLASS, rank: int = 0, world: int = 1):
        self.per_class, self.rank, self.world = per_class, rank, world
        self.kept: list[list[Mistake]] = [[] for _ in range(num_classes)]
        self.seen = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor) -> None:
        confidence, predicted = probs.max(1)
        wrong = (predicted != labels).nonzero().flatten()
        start, self.seen = self.seen, self.seen + len(labels)
        if len(wrong) == 0:
            return
        rows = torch.stack([wrong, labels[wrong], predicted[wrong]], 1).tolist()
        for (i, true, guess), conf in zip(rows, confidence[wrong].tolist()):
            self.kept[true].append(Mistake(self.rank + self.world * (start + i), true, guess, conf))
            if len(self.kept[true]) > 2 * self.per_class:  # prune now and then, not at every image
                self.kept[true] = self._top(self.kept[true])

    def _top(self, mistakes: list[Mistake]) -> list[Mistake]:
        return sorted(mistakes, key=lambda m: (-m.confidence, m.index))[:self.per_class]

    def mistakes(self) -> list[list[Mistake]]:
        """The kept mistakes of every true class, most confident first; with several processes, of all of them
        (every process must call this, as it gathers)."""
        kept = self.kept
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, kept)
            kept = [[m for part in gathered for m in part[k]] for k in range(len(kept))]
        return [self._top(per_class) for per_class in kept]


def with_images(mistakes: list[list[Mistake]], loader) -> list[list[Mistake]]:
    """Give each mistake its image, read back from the test ``loader`` (``loader.example(index)``: preprocessed as
    in the test), and its file name where the test set is a folder (``loader.files``)."""
    files = getattr(loader, "files", None)
    for kept in mistakes:
        for m in kept:
            m.image = loader.example(m.index).float().cpu()
            if files:
                m.name = "/".join(Path(files[m.index]).parts[-2:])  # class folder/file name
    return mistakes
