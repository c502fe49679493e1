"""Model registry: name -> builder, plus what the paper and torchvision report for that name (FACTS.md)."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import UserError
from .net import ResNet


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of one registered model."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # input layout: "imagenet" (224 px) or "cifar" (32 px)
    depth: int
    input_size: tuple[int, int, int]  # native (C, H, W)
    default_classes: int
    paper_error: float | None = None  # top-1 error %, ImageNet 10-crop (Tables 2-3) or CIFAR-10 test (Table 6;
    #                                    pre-act nets: Tables 2-3 of the pre-activation paper)
    torchvision_error: float | None = None  # top-1 error % of torchvision's V1 weights (1-crop)
    kwargs: dict = field(default_factory=dict)
    model_class: type[nn.Module] | None = None  # the class the builder returns (None: ResNet)
    lineage: str = "resnet"  # the architecture it belongs to: resnet, densenet, mobilenet, ..., transformer


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, builder: Callable[..., nn.Module], **info) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelInfo(name=name, builder=builder, **info)


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, in registration order, optionally filtered by a shell-style pattern (``"resnet1*"``)."""
    names = list(_REGISTRY)
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatchcase(n, pat)]
    return names


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run `resnet models` to list them."
        raise UserError(f"unknown model {name!r}; {hint}") from None


def model_arguments(name: str | None = None) -> list[str]:
    """Keyword arguments model ``name`` accepts: the keyword-only ones of its builder where it declares them (the
    successors), else of its class (of :class:`ResNet` without a name), so create_model checks each model's
    overrides against the function that will receive them."""
    own = _keyword_only(model_info(name).builder) if name else []
    return own or _keyword_only((model_info(name).model_class if name else None) or ResNet)


def _keyword_only(function: Callable) -> list[str]:
    target = function.__init__ if isinstance(function, type) else function
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; keyword arguments (num_classes, in_chans, shortcut, ...) override its defaults."""
    info = model_info(name)
    valid = model_arguments(name)
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid ones: {', '.join(valid)}."
            raise UserError(f"unknown model argument {key!r} for {name}; {hint}")
    try:
        return info.builder(**kwargs)
    except ValueError as exc:
        raise UserError(f"cannot build {name}: {exc}") from None
