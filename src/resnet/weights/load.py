"""Weights from any source into a model: a run (directory, checkpoint or model.safetensors with its card) rebuilt
for eval, predict and export; a SOURCE (weights file, run or named weights) to start training from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..io import load_checkpoint
from ..models import create_model
from .adapt import HEAD_PREFIX, load_into
from .card import ModelCard, card_beside
from .files import checkpoint_weights, read_state_file, read_weights, resolve_weights
from .named import is_named, is_timm_resnetv2, resolve_named, timm_resnetv2_keys


@dataclass
class Weights:
    """A state dict (in our key names) and what is known about it."""

    state: dict[str, torch.Tensor]
    label: str  # how messages name it: "torchvision IMAGENET1K_V2", "timm resnet50d.ra2_in1k", a path
    card: ModelCard | None = None  # classes, preprocessing (named weights)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        head = self.state.get(HEAD_PREFIX + "weight")
        return int(head.shape[0]) if head is not None else None


def load_weights(source: str | Path, arch: str | None = None) -> Weights:
    """The weights of ``source`` in our key names: named weights (``arch``: the run's --model, unless the source
    names one) with their card, or a weights file or run directory."""
    if is_named(source):
        path, card = resolve_named(str(source), arch)
        hub = card.extra["source"].split(":")  # torchvision:resnet50:IMAGENET1K_V2
        label = f"{hub[0]} {card.extra.get('timm') or hub[-1]}"
    else:
        path, card, label = resolve_weights(source) if Path(source).is_dir() else Path(source), None, str(source)
    state = read_state_file(path)
    if is_timm_resnetv2(state):
        state = timm_resnetv2_keys(state)  # timm's resnetv2_* (named, or a state dict saved from timm)
    return Weights(state, label, card, {"file": str(path)})


def init_model(model: nn.Module, arch: str, pretrained: str | None = None, init_from: str | None = None,
               reset_head: bool = False) -> str | None:
    """`resnet train`: start ``model`` from ``pretrained`` (a new head when the class count differs) or
    ``init_from`` (a local file whose head is kept unless ``reset_head``). Returns the banner line, or None."""
    if pretrained and init_from:
        raise UserError("set pretrained or init_from, not both; both start a run from weights (init_from keeps the "
                        "head unless reset_head=true)")
    source = pretrained or init_from
    if not source:
        return None
    if init_from and is_named(init_from):
        raise UserError(f"init_from takes a local weights file or run; use --pretrained {init_from} for named "
                        f"weights")
    weights = load_weights(source, arch)
    head = "reset" if reset_head else ("auto" if pretrained else "keep")
    note = load_into(model, weights.state, weights.label, head, adapt_input=True, arch=arch)
    return f"{'pretrained' if pretrained else 'init_from'}: {note}"


def load_named_model(source: str) -> tuple[nn.Module, ModelCard]:
    """``torchvision:ARCH[:TAG]`` / ``timm:ARCH[:TAG]`` as a ready model (eval mode) and its ImageNet card."""
    weights = load_weights(source)
    card = weights.card
    assert card is not None
    card.model_kwargs["num_classes"] = weights.num_classes or card.model_kwargs["num_classes"]
    model = create_model(card.architecture, **card.model_kwargs)
    load_into(model, weights.state, weights.label, arch=card.architecture)
    if len(card.classes) != card.model_kwargs["num_classes"]:
        card.classes = [f"class_{i}" for i in range(card.model_kwargs["num_classes"])]
    return model.eval(), card


def load_model_and_card(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild a trained model (eval mode) and its card from a run directory, checkpoint or safetensors file, or
    named weights (``torchvision:resnet50``, ``timm:resnet50d:TAG``)."""
    if is_named(path):
        model, card = load_named_model(str(path))
        return model.to(device).eval(), card
    path = resolve_weights(path)
    if path.suffix == ".safetensors":
        card = card_beside(path)
        state = read_weights(path)
    else:
        ckpt = load_checkpoint(path)
        if "card" not in ckpt:
            raise UserError(f"{path} has no model card; give the run directory or a checkpoint of `resnet train`")
        card = ModelCard.from_dict(ckpt["card"])
        state = checkpoint_weights(ckpt, card.weights)
    model = card.build()
    load_into(model, state, str(path), arch=card.architecture)
    return model.to(device).eval(), card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run directory, checkpoint or .safetensors file, in eval mode."""
    return load_model_and_card(path, device)[0]
