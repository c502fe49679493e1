"""`resnet predict`: class probabilities for image files, preprocessed exactly as in evaluation (mode, resize,
crop, normalisation from the model card). A bad file gets an error entry; the others are still predicted."""

from __future__ import annotations

from pathlib import Path

import torch

from .backends import Backend, preprocess
from .errors import UserError
from .images import BadImageError, find_images, open_image
from .modelcard import ModelCard


def predict_files(backend: Backend, card: ModelCard, paths: list[str | Path], topk: int = 5,
                  batch_size: int = 32) -> list[dict]:
    """One result per file, in order: ``{"path", "top": [{"label", "prob"}, ...]}`` or ``{"path", "error"}``."""
    files = find_images(paths)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, paths))}")
    transform = preprocess(card)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    k = max(1, min(topk, len(card.classes)))
    results: list[dict] = [{} for _ in files]
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([t for _, t in pending])
        probs = backend(batch).float().softmax(1)
        top = probs.topk(k, 1)
        for (i, _), values, indices in zip(pending, top.values.tolist(), top.indices.tolist()):
            results[i]["top"] = [{"label": card.classes[j], "prob": p} for j, p in zip(indices, values)]
        pending.clear()

    for i, path in enumerate(files):
        results[i]["path"] = str(path)
        try:
            pending.append((i, transform(open_image(path, mode))))
        except BadImageError as exc:
            results[i]["error"] = exc.reason
        if len(pending) >= batch_size:
            flush()
    flush()
    return results
