"""`resnet eval`: top-1 / top-5, per-class accuracy and the confusion matrix of a trained model on a test set,
rebuilt from the run directory or checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data.datasets import MEMORY_SETS, check_dataset_name, load_memory_dataset
from .data.files import FileLoader, SeededImageDataset, list_samples
from .data.memory import MemoryLoader
from .data.transforms import eval_transform
from .device import resolve_device, resolve_precision
from .errors import UserError
from .modelcard import ModelCard, load_model_and_card
from .train.loop import EvalResult, evaluate

TTA_MODES = ("none", "flip", "10crop")


@dataclass
class Evaluation:
    result: EvalResult
    card: ModelCard
    data: str
    tta: str

    def to_dict(self) -> dict:
        r = self.result
        return {"data": self.data, "tta": self.tta, "count": r.count, "top1": r.top1, "top5": r.top5,
                "loss": r.loss, "per_class": r.per_class(self.card.classes)}


def test_loader(card: ModelCard, data: str, root: str | None, device: torch.device, batch_size: int = 256,
                tta: str = "none", workers: int = 2):
    """The official test split of ``data``, preprocessed as the model card says (10-crop: uncropped, resized)."""
    check_dataset_name(data)
    if data in MEMORY_SETS:
        test = load_memory_dataset(data, root, train=False)
        if test.images.shape[1] != card.input_size[0]:
            raise UserError(f"{data} has {test.images.shape[1]} channel(s) but the model expects "
                            f"{card.input_size[0]}; evaluate on a data set like the one it was trained on")
        return MemoryLoader(test, batch_size, device=device, mean=card.mean, std=card.std, train=False), test.classes
    folder = Path(data.split(":", 1)[1]).expanduser() / "val"
    samples, classes = list_samples(folder)
    crop = card.crop if tta != "10crop" else (card.resize if isinstance(card.resize, int) else None)
    transform = eval_transform(card.resize, crop, card.mean, card.std)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    ds = SeededImageDataset(samples, transform, mode, seed=0)
    return FileLoader(ds, classes, batch_size, device=device, train=False, workers=workers), classes


def evaluate_model(path: str | Path, data: str | None = None, data_root: str | None = None, tta: str = "none",
                   batch_size: int = 256, device: str = "auto", precision: str = "auto") -> Evaluation:
    """Evaluate the model of a run directory / checkpoint / weights file on the test split of ``data``
    (default: the data set it was trained on)."""
    if tta not in TTA_MODES:
        raise UserError(f"unknown --tta {tta!r}; choose one of {', '.join(TTA_MODES)}")
    dev = resolve_device(device)
    model, card = load_model_and_card(path, dev)
    data = data or card.dataset
    if not data:
        raise UserError(f"{path} does not say which data set it was trained on; pass --data")
    loader, classes = test_loader(card, data, data_root, dev, batch_size, tta)
    if list(classes) != list(card.classes):
        raise UserError(f"{data} has classes {list(classes)[:3]}... but the model was trained on "
                        f"{list(card.classes)[:3]}...; evaluate on the matching data set")
    model = model.to(memory_format=torch.channels_last)
    result = evaluate(model, loader.epoch(0), device=dev, precision=resolve_precision(precision, dev),
                      num_classes=len(card.classes), tta=tta, input_size=tuple(card.input_size[1:]))
    return Evaluation(result, card, data, tta)
