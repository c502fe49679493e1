"""A trained model on disk: ``model.safetensors`` (weights) + ``model.json`` (the card: architecture, classes, input
size, preprocessing). Everything that rebuilds a model from a run (eval, predict, export) goes through here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .io import load_checkpoint, load_safetensors, save_safetensors, write_text
from .models import create_model
from .runs import resolve_weights


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
    write_text(Path(directory) / f"{stem}.json", card.to_json())
    return path


def _card_beside(weights: Path) -> ModelCard:
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        raise UserError(f"{weights} has no model card {card_path.name} beside it; copy it from the run directory")
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"model card {card_path} is damaged ({exc}); copy it again from the run directory") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """State dict from a .safetensors file or a checkpoint (.pt, read with weights_only=True)."""
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    ckpt = load_checkpoint(path)
    return checkpoint_weights(ckpt, ckpt.get("card", {}).get("weights", "final"))


def checkpoint_weights(ckpt: dict, which: str = "final") -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint: the EMA copy (an AveragedModel's ``module.*``) when ``which`` is "ema"."""
    if which == "ema" and ckpt.get("ema"):
        return {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    return ckpt["model"]


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, reset_head: bool = False) -> None:
    """Load ``state`` strictly, explaining an architecture or class-count mismatch in one sentence.
    ``reset_head`` keeps the model's own classifier (fine-tuning on a new label set)."""
    if reset_head:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = [k for k in own if k not in state and not (reset_head and k.startswith("fc."))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise UserError(f"{source} holds weights for a different architecture ({len(missing)} missing keys, e.g. "
                        f"{(missing or unexpected)[0]!r}); pick the model it was trained as")
    for key, value in state.items():
        if own[key].shape != value.shape:
            if key == "fc.weight":
                raise UserError(f"{source} has {value.shape[0]} classes but the model has {own[key].shape[0]}; use "
                                f"--num-classes {value.shape[0]}, or fine-tune with a new head (--set reset_head=true)")
            if key == "conv1.weight" or key.startswith("conv1.0."):
                raise UserError(f"{source} expects {value.shape[1]} input channels but the model has "
                                f"{own[key].shape[1]}; set model.kwargs.in_chans={value.shape[1]} to match")
            raise UserError(f"{source} holds weights for a different architecture ({key}: {tuple(value.shape)} vs "
                            f"{tuple(own[key].shape)}); pick the model it was trained as")
    model.load_state_dict(state, strict=not reset_head)


def load_model_and_card(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a trained model (eval mode) and its card from a run directory, checkpoint or safetensors file, or
    named pretrained weights (``torchvision:resnet50``, ``timm:resnet50d:TAG``: resnet.pretrained)."""
    from .pretrained import is_named, load_named_model  # same layer; pretrained imports this module

    if is_named(path):
        model, card = load_named_model(str(path))
        return model.to(device).eval(), card
    path = resolve_weights(path)
    if path.suffix == ".safetensors":
        card = _card_beside(path)
        state = read_weights(path)
    else:
        ckpt = load_checkpoint(path)
        if "card" not in ckpt:
            raise UserError(f"{path} has no model card; give the run directory or a checkpoint of `resnet train`")
        card = ModelCard.from_dict(ckpt["card"])
        state = checkpoint_weights(ckpt, card.weights)
    model = card.build()
    load_into(model, state, str(path))
    return model.to(device).eval(), card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run directory, checkpoint or .safetensors file, in eval mode."""
    return load_model_and_card(path, device)[0]
