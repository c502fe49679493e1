"""The choices every writer receives besides model, card and path (batch axis, ONNX opset), checked once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserError
from ..weights import ModelCard


def parse_batch(batch: str | int) -> str | int:
    """"dynamic" or a positive integer (the fixed batch size baked into the exported graph)."""
    if batch == "dynamic":
        return batch
    try:
        value = int(batch)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {batch!r}")
    return value


@dataclass(frozen=True)
class ExportOptions:
    """A writer reads the fields its format supports and ignores the rest."""

    batch: str | int = "dynamic"  # "dynamic" or the fixed batch size of a traced graph (ONNX, TorchScript)
    opset: int | None = None  # ONNX opset; None: the exporter's default

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch", parse_batch(self.batch))

    def example(self, card: ModelCard) -> torch.Tensor:
        """A random input batch to trace with; torch.export specialises a size-1 dimension, so a dynamic batch is
        traced with 2 examples."""
        return torch.randn(2 if self.batch == "dynamic" else self.batch, *card.input_size)
