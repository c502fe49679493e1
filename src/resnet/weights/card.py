"""The model card: what rebuilds a trained model (architecture and its arguments, classes, input size, evaluation
preprocessing), saved as ``model.json`` beside the weights in ``model.safetensors``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from ..errors import UserError
from ..io import save_safetensors
from ..writes import write_text
from ..models import create_model


@dataclass
class ModelCard:
    architecture: str
    model_kwargs: dict  # create_model(architecture, **model_kwargs) rebuilds it (num_classes, in_chans, ...)
    classes: list[str]
    input_size: list[int]  # [C, H, W] the model was trained at
    mean: list[float]
    std: list[float]
    resize: int | list[int]  # evaluation preprocessing: shorter side (int) or exact [H, W]
    crop: int | None = None  # then a centre crop of this size (file-based sets), or none
    dataset: str = ""
    weights: str = "final"  # final | ema
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def build(self) -> nn.Module:
        return create_model(self.architecture, **self.model_kwargs)


def save_model(model: nn.Module, card: ModelCard, directory: Path, stem: str = "model") -> Path:
    """Write ``stem.safetensors`` and ``stem.json`` into ``directory`` (atomically each)."""
    path = save_safetensors(model.state_dict(), Path(directory) / f"{stem}.safetensors",
                            metadata={"architecture": card.architecture, "format": "pt"})
    write_text(Path(directory) / f"{stem}.json", card.to_json(), "model card")
    return path


def card_beside(weights: Path) -> ModelCard:
    """The card saved beside a ``.safetensors`` file (same stem, ``.json``)."""
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        raise UserError(f"{weights} has no model card {card_path.name} beside it; copy it from the run directory")
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"model card {card_path} is damaged ({exc}); copy it again from the run directory") from None
