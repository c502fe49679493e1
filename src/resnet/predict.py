"""`resnet predict`: class probabilities for image files, preprocessed exactly as in evaluation (mode, resize,
crop, normalisation from the model card). A bad file gets an error entry; the others are still predicted."""

from __future__ import annotations

from pathlib import Path

from .backends import Backend, image_batches, image_files
from .weights import ModelCard


def predict_files(backend: Backend, card: ModelCard, paths: list[str | Path], topk: int = 5,
                  batch_size: int = 32) -> list[dict]:
    """One result per file, in order: ``{"path", "top": [{"label", "prob"}, ...]}`` or ``{"path", "error"}``."""
    files = image_files(paths)
    k = max(1, min(topk, len(card.classes)))
    results: list[dict] = [{"path": str(p)} for p in files]
    for indices, batch in image_batches(files, card, batch_size, results):
        top = backend(batch).float().softmax(1).topk(k, 1)
        for i, values, classes in zip(indices, top.values.tolist(), top.indices.tolist()):
            results[i]["top"] = [{"label": card.classes[j], "prob": p} for j, p in zip(classes, values)]
    return results
