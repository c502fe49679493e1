"""What every network family shares: stages of blocks, then global average pooling and a fully connected layer,
with timm's ``forward_features`` / ``forward_head`` split and He initialisation (paper Sec. 3.4)."""

from __future__ import annotations

import torch
from torch import nn


def check_layout(layers, widths, num_classes: int, in_chans: int) -> None:
    """The arguments every family shares: one width per stage, positive class and channel counts."""
    if len(layers) != len(widths):
        raise ValueError(f"layers has {len(layers)} stages but widths has {len(widths)}")
    if num_classes < 1 or in_chans < 1:
        raise ValueError(f"num_classes and in_chans must be positive, got {num_classes} and {in_chans}")


class StagedNet(nn.Module):
    """Base of the family classes: subclasses build ``stage_names`` (layer1, layer2, ...), ``num_features``,
    ``avgpool`` and ``fc``, and define ``forward_features``."""

    stage_names: list[str]
    num_features: int
    num_classes: int
    fc: nn.Linear

    def init_weights(self, zero_init_residual: bool = False) -> None:
        """He (MSRA) init, fan_out, for convs; BN scale 1 and shift 0; fc keeps torch's default. With
        ``zero_init_residual`` every block that has ``zero_init_last()`` starts as its shortcut (Goyal et al. 2017)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits (or the pooled features when ``pre_logits``)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one (fine-tuning on a new label set)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, device=self.fc.weight.device, dtype=self.fc.weight.dtype)
