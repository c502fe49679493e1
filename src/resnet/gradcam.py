"""Grad-CAM (Selvaraju et al. 2017) of a batch, computed with Captum at the model's last feature map: the output of
``forward_features``, which the pooling and the classifier read, so the gradients are exactly those of the logit.
`resnet explain` draws it for image files; the report page for a run's most confident mistakes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .weights import ModelCard

EXPLAIN_HINT = "pip install 'resnet[explain]'"


def import_captum():
    """captum.attr, imported lazily: the command names the extra that installs it."""
    try:
        from captum import attr
    except ImportError:
        raise UserError(f"Grad-CAM needs captum, which is not installed: {EXPLAIN_HINT}") from None
    return attr


class _Features(nn.Module):
    """``model.forward_features`` as a module of its own, so its output (the last feature map) can be hooked."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


class _Split(nn.Module):
    """The model as ``forward_head(features(x))``: the same logits, with the feature map at ``self.features``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model
        self.features = _Features(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.features(x))


def cam_layer(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(forward module, layer to explain) for ``model``: the output of ``forward_features`` where the model splits
    into features and head (every family here, timm models too), else the last stage's output."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        split = _Split(model)
        return split, split.features
    if hasattr(model, "stages"):
        return model, model.stages()[-1]
    raise UserError(f"{type(model).__name__} has neither forward_features/forward_head nor stages(); Grad-CAM needs "
                    f"a network of this package (or timm)")


def gradcam(model: nn.Module, batch: torch.Tensor, target: int | list[int]) -> torch.Tensor:
    """Grad-CAM of class ``target`` (one for all, or one per image) for a normalised batch (N, C, H, W): (N, H, W),
    ReLU'd, upsampled bilinearly to the input size and scaled to [0, 1] per image (all zero where nothing in the
    feature map speaks for the class)."""
    attr = import_captum()
    forward, layer = cam_layer(model)
    with torch.enable_grad():
        cams = attr.LayerGradCam(forward, layer).attribute(batch, target=target, relu_attributions=True)
    cams = attr.LayerAttribution.interpolate(cams.detach().float(), tuple(batch.shape[-2:]), "bilinear")[:, 0]
    cams = cams.clamp(min=0)  # bilinear interpolation keeps it non-negative; clamp rounding noise
    peak = cams.flatten(1).amax(1).clamp(min=1e-12)
    return cams / peak[:, None, None]


def seen_image(x: torch.Tensor, card: ModelCard) -> np.ndarray:
    """A normalised (C, H, W) input back to what the model saw, in [0, 1]: (H, W) gray or (H, W, 3) colour."""
    mean = torch.tensor(card.mean, dtype=x.dtype).view(-1, 1, 1)
    std = torch.tensor(card.std, dtype=x.dtype).view(-1, 1, 1)
    img = (x * std + mean).clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
