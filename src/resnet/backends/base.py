"""What every prediction backend shares: the Backend signature, the card's preprocessing, image files in batches,
and the PyTorch backend itself."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..data import eval_transform
from ..errors import UserError
from ..images import BadImageError, find_images, open_image
from ..weights import ModelCard

Backend = Callable[[torch.Tensor], torch.Tensor]  # normalised batch (N, C, H, W) -> logits (N, K)


def preprocess(card: ModelCard):
    """The evaluation transform of ``card``: PIL image -> normalised float tensor (C, H, W)."""
    return eval_transform(card.resize, card.crop, card.mean, card.std)


def image_files(paths: list[str | Path]) -> list[Path]:
    """The image files of ``paths`` (folders searched); none at all is a UserError."""
    files = find_images(paths)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, paths))}")
    return files


def image_batches(files: list[Path], card: ModelCard, batch_size: int,
                  results: list[dict]) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``files`` decoded and preprocessed as ``card`` says, in batches of (file indices, tensor); a file that cannot
    be read gets ``results[i]["error"]`` and is left out, the others go on (predict and explain)."""
    transform = preprocess(card)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    pending: list[tuple[int, torch.Tensor]] = []
    for i, path in enumerate(files):
        try:
            pending.append((i, transform(open_image(path, mode))))
        except BadImageError as exc:
            results[i]["error"] = exc.reason
        if len(pending) == batch_size or (i == len(files) - 1 and pending):
            yield [j for j, _ in pending], torch.stack([x for _, x in pending])
            pending = []


def import_runtime(names: tuple[str, ...], purpose: str, extra: str) -> tuple:
    """The modules ``names``, imported lazily (through ``__import__``, so tests can hide them); a missing one is a
    UserError naming the extra that installs it."""
    try:
        return tuple(__import__(name) for name in names)
    except ImportError as exc:
        raise UserError(f"{purpose} needs the {extra} extra ({exc.name or 'a module'} is not installed): "
                        f"pip install 'resnet[{extra}]'") from None


def torch_backend(model: torch.nn.Module, device: torch.device | str = "cpu") -> Backend:
    """A Backend running ``model`` in eval mode on ``device``; logits come back on the CPU."""
    model = model.eval().to(device)

    @torch.no_grad()
    def run(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(device)).cpu()

    return run


def fixed_batch_runner(run_array: Callable, fixed: int | None) -> Backend:
    """A Backend over ``run_array`` (float32 NCHW numpy array -> logits array); an export with a fixed batch size is
    fed in chunks of that size, the last one zero-padded, and the padding's logits dropped."""
    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().float().contiguous().numpy()
        if fixed is None:
            return torch.from_numpy(np.array(run_array(x)))
        outs = []
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            pad = fixed - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(np.array(run_array(chunk))[:fixed - pad])
        return torch.from_numpy(np.concatenate(outs))

    return run
