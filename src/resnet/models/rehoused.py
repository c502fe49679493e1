"""A torchvision network re-housed in the families' interface, so every tool works on it as on a ResNet.

torchvision's classes keep their layers in ``features`` and ``classifier``; the project's tools read a ``conv1`` stem,
``stages()`` (fine-tuning freezes them, the summary prints them), a classifier ``fc`` and the
``forward_features`` / ``forward_head`` split (Grad-CAM). :class:`RehousedNet` takes the modules a torchvision
model built and holds them under those names, in forward order, without changing any of them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import StagedNet


class RehousedNet(StagedNet):
    """``conv1`` -> ``layer1`` ... ``layerN`` -> ``neck`` -> average pool -> ``pre_logits`` -> ``fc``.

    Args:
        stem: the modules before the first stage (torchvision's, or the small-input stem that replaced them).
        stages: one module per resolution, in forward order.
        neck: what runs after the last stage on the feature map (a final norm or 1x1 conv; ``nn.Identity()`` if none).
        pre_logits: what runs on the pooled ``(N, C, 1, 1)`` map before ``fc``, flattening included (dropout,
            ConvNeXt's LayerNorm, MobileNetV3's hidden layer).
        fc: the final ``nn.Linear``.
        stage_layout: ``"nchw"``, or ``"nhwc"`` where the stages carry channels last (Swin), for the summary.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], neck: nn.Module, pre_logits: nn.Module,
                 fc: nn.Linear, *, num_features: int, in_chans: int, stage_layout: str = "nchw"):
        super().__init__()
        self.conv1 = stem
        self.stage_names = []
        for i, stage in enumerate(stages, 1):
            self.add_module(f"layer{i}", stage)
            self.stage_names.append(f"layer{i}")
        self.neck = neck
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.pre_logits = pre_logits
        self.fc = fc
        self.num_features = num_features
        self.num_classes = fc.out_features
        self.in_chans = in_chans
        self.stage_layout = stage_layout

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> the last feature map (N, C, H, W), after the neck."""
        x = self.conv1(x)
        for stage in self.stages():
            x = stage(x)
        return self.neck(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits (or the features ``fc`` reads when ``pre_logits``)."""
        x = self.pre_logits(self.avgpool(x))
        return x if pre_logits else self.fc(x)
