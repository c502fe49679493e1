"""One configurable ResNet: every net of the family is this class with other numbers (timm's approach).

Layout (paper Table 1): stem -> stages of blocks (stride 2 at the first block of every stage but the first)
-> global average pool -> fully connected. Module names equal torchvision's so checkpoints load with strict=True.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import StagedNet, check_layout
from .blocks import BLOCKS, SHORTCUT_KINDS

STEMS = ("imagenet", "deep", "cifar")


def _make_stem(kind: str, in_chans: int, out_ch: int, stem_width: int) -> tuple[nn.Module, nn.Module | None]:
    """Return (conv1, maxpool). ``imagenet``: 7x7/2 + 3x3/2 max-pool; ``deep``: ResNet-D's three 3x3 convs
    (stem_width, stem_width, out_ch) + max-pool; ``cifar``: one 3x3 conv, no pool (paper Sec. 4.2)."""
    if kind == "imagenet":
        return nn.Conv2d(in_chans, out_ch, 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, stride=2, padding=1)
    if kind == "deep":
        conv1 = nn.Sequential(
            nn.Conv2d(in_chans, stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, out_ch, 3, padding=1, bias=False),
        )
        return conv1, nn.MaxPool2d(3, stride=2, padding=1)
    if kind == "cifar":
        return nn.Conv2d(in_chans, out_ch, 3, padding=1, bias=False), None
    raise ValueError(f"unknown stem {kind!r}; choose one of {', '.join(STEMS)}")


class ResNet(StagedNet):
    """A residual (or plain) network.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50 or (3, 3, 3) for ResNet-20.
        widths: base width of each stage (bottleneck outputs are 4x this).
        stem: ``"imagenet"`` (7x7 + max-pool), ``"deep"`` (ResNet-D 3x3 x3 + max-pool) or ``"cifar"`` (3x3, no pool).
        shortcut: ``"A"`` zero-pad identity, ``"B"`` projection where the shape changes, ``"C"`` projection
            everywhere, ``"none"`` for the plain (shortcut-free) twin.
        groups, width_per_group: ResNeXt cardinality and width (wide ResNets: width_per_group=128).
        avg_down: ResNet-D shortcut (average pool, then 1x1 projection).
        stride_in_1x1: paper-exact v1 bottleneck (stride on the first 1x1 rather than the 3x3).
        zero_init_residual: start every block as identity by zeroing its last BN scale (Goyal et al. 2017).
        global_pool, drop_rate: the head (timm's arguments): ``avg`` or ``catavgmax`` pooling, dropout before ``fc``.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        stem: str = "imagenet",
        stem_width: int = 32,
        shortcut: str = "B",
        groups: int = 1,
        width_per_group: int = 64,
        avg_down: bool = False,
        stride_in_1x1: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
        if shortcut not in SHORTCUT_KINDS:
            raise ValueError(f"unknown shortcut kind {shortcut!r}; choose one of {', '.join(SHORTCUT_KINDS)}")
        check_layout(layers, widths, num_classes, in_chans)
        if zero_init_residual and shortcut == "none":
            raise ValueError("zero_init_residual needs shortcuts: a plain net with zeroed blocks outputs only zeros")
        block_cls = BLOCKS[block]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.shortcut = shortcut

        in_ch = widths[0]
        self.conv1, maxpool = _make_stem(stem, in_chans, in_ch, stem_width)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        if maxpool is not None:
            self.maxpool = maxpool
        self.add_stages(layers, widths, in_ch, lambda cin, planes, stride: block_cls(
            cin, planes, stride, shortcut, groups, width_per_group, avg_down, stride_in_1x1))
        self.add_head(num_classes, global_pool, drop_rate)
        self.init_weights(zero_init_residual)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x) if hasattr(self, "maxpool") else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch (N, C, H, W) -> last feature map (N, num_features, H/32, W/32 for the 224-px family)."""
        x = self.stem(x)
        for stage in self.stages():
            x = stage(x)
        return x
