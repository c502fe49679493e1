"""What every network family shares: stages of blocks, then global average pooling and a fully connected layer,
with timm's ``forward_features`` / ``forward_head`` split and He initialisation (paper Sec. 3.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GLOBAL_POOLS = ("avg", "catavgmax")  # timm's names: average pooling, or average and max pooling side by side


def check_layout(layers, widths, num_classes: int, in_chans: int) -> None:
    """The arguments every family shares: one width per stage, positive class and channel counts."""
    if len(layers) != len(widths):
        raise ValueError(f"layers has {len(layers)} stages but widths has {len(widths)}")
    if num_classes < 1 or in_chans < 1:
        raise ValueError(f"num_classes and in_chans must be positive, got {num_classes} and {in_chans}")


class StagedNet(nn.Module):
    """Base of the family classes: subclasses build their stem, call :meth:`add_stages` and :meth:`add_head`, and
    define ``forward_features``."""

    stage_names: list[str]
    num_features: int
    num_classes: int
    fc: nn.Linear
    global_pool: str = "avg"
    drop_rate: float = 0.0

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

    def add_stages(self, layers, widths, in_ch: int, make_block) -> int:
        """Add ``layer1``, ``layer2``, ... of ``make_block(in_ch, planes, stride)`` blocks (stride 2 at the first
        block of every stage but the first), set ``stage_names`` and ``num_features``; return the output width."""
        self.stage_names = []
        for i, (n_blocks, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n_blocks):
                blocks.append(make_block(in_ch, planes, 2 if i > 0 and j == 0 else 1))
                in_ch = planes * blocks[-1].expansion
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        self.num_features = in_ch
        return in_ch

    def add_head(self, num_classes: int, global_pool: str = "avg", drop_rate: float = 0.0) -> None:
        """Global pooling and the fully connected classifier on ``num_features`` channels (timm's arguments):
        ``global_pool`` ``avg`` (the paper's) or ``catavgmax`` (average and max pooled features side by side, twice
        the classifier's inputs: fastai's head pools so), and dropout of ``drop_rate`` before the classifier."""
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"unknown global_pool {global_pool!r}; choose one of {', '.join(GLOBAL_POOLS)}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.global_pool, self.drop_rate = global_pool, drop_rate
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features * (2 if global_pool == "catavgmax" else 1), num_classes)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> logits (or the pooled features when ``pre_logits``)."""
        pooled = torch.flatten(self.avgpool(x), 1)
        if self.global_pool == "catavgmax":
            pooled = torch.cat([pooled, x.amax((2, 3))], 1)
        if self.drop_rate:
            pooled = F.dropout(pooled, self.drop_rate, self.training)
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one (fine-tuning on a new label set)."""
        self.num_classes = num_classes
        fc = self.fc
        self.fc = nn.Linear(fc.in_features, num_classes, device=fc.weight.device, dtype=fc.weight.dtype)
