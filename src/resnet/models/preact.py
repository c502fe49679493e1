"""Pre-activation ResNets (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual Networks").

A block computes ``x + F(x)`` with ``F = (BN -> ReLU -> conv) x 2 (x 3 for a bottleneck)`` and no ReLU after the
addition, so the identity path runs clean from the stem to the final BN -> ReLU (attribute ``norm``, as in timm)
before pooling. Where the shape changes, the shortcut is a bare 1x1 conv (no BN) on the pre-activated input, as in
the paper's code (KaimingHe/resnet-1k-layers) and timm's PreActBasic/PreActBottleneck. Unlike that code, the
bottleneck strides on its 3x3 (as timm and torchvision's v1.5): same parameters, more MACs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import StagedNet, check_layout
from .blocks import conv1x1, conv3x3
from .net import _make_stem
from .registry import register


class _PreActBlock(nn.Module):
    """Shared forward: pre-activate once, feed the branch and (if any) the projection, add, no ReLU."""

    expansion = 1
    downsample: nn.Conv2d | None

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv1x1(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    @property
    def last_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def branch(self, preact: torch.Tensor) -> torch.Tensor:
        """The residual function after the first BN -> ReLU."""
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Zero the last conv (the branch ends in a conv, not a BN): the block starts as its shortcut."""
        nn.init.zeros_(self.last_conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        return self.branch(preact) + shortcut


class PreActBasicBlock(_PreActBlock):
    """BN-ReLU-3x3, BN-ReLU-3x3 (pre-act ResNet-18/34 and CIFAR 20/56/110)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__(in_ch, planes, stride)
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def branch(self, preact: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn2(self.conv1(preact))))


class PreActBottleneck(_PreActBlock):
    """BN-ReLU-1x1 (reduce), BN-ReLU-3x3 (stride here), BN-ReLU-1x1 (expand x4)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__(in_ch, planes * self.expansion, stride)
        self.conv1 = conv1x1(in_ch, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.conv3

    def branch(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn2(self.conv1(preact)))
        return self.conv3(self.relu(self.bn3(self.conv2(out))))


PREACT_BLOCKS = {"basic": PreActBasicBlock, "bottleneck": PreActBottleneck}


class PreActResNet(StagedNet):
    """A pre-activation residual network: stem conv (no BN/ReLU) -> stages -> ``norm`` BN -> ReLU -> pool -> fc.

    Args:
        block: ``"basic"`` or ``"bottleneck"`` (outputs 4x the stage width).
        layers: blocks per stage, e.g. (3, 4, 6, 3) or (18, 18, 18) for pre-act ResNet-164.
        widths: base width of each stage.
        stem: ``"imagenet"`` (7x7/2 + max-pool), ``"deep"`` (three 3x3 + max-pool) or ``"cifar"`` (3x3, no pool).
        zero_init_residual: zero every block's last conv (its branch ends in a conv, not a BN), so each block
            starts as its shortcut (timm's ``zero_init_last``).
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        stem: str = "imagenet",
        stem_width: int = 32,
        num_classes: int = 1000,
        in_chans: int = 3,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if block not in PREACT_BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {', '.join(PREACT_BLOCKS)}")
        check_layout(layers, widths, num_classes, in_chans)
        block_cls = PREACT_BLOCKS[block]
        self.num_classes = num_classes
        self.in_chans = in_chans

        in_ch = widths[0]
        self.conv1, maxpool = _make_stem(stem, in_chans, in_ch, stem_width)
        if maxpool is not None:
            self.maxpool = maxpool
        in_ch = self.add_stages(layers, widths, in_ch, block_cls)
        self.norm = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.add_head(num_classes)
        self.init_weights(zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch -> last feature map after the final BN -> ReLU (as timm's ResNetV2)."""
        x = self.conv1(x)
        if hasattr(self, "maxpool"):
            x = self.maxpool(x)
        for stage in self.stages():
            x = stage(x)
        return self.relu(self.norm(x))


# CIFAR-10 test error %, median of 5 runs (preact paper Tables 2-3); None where the paper gives none.
_PAPER_ERROR = {110: 6.37, 164: 5.46, 1001: 4.92}


def _add(name: str, family: str, depth: int, block: str, layers: tuple[int, ...], widths: tuple[int, ...]) -> None:
    cifar = family == "cifar"
    defaults = {"stem": "cifar" if cifar else "imagenet", "num_classes": 10 if cifar else 1000}

    def build(**kwargs) -> PreActResNet:
        return PreActResNet(block, layers, widths, **{**defaults, **kwargs})

    build.__name__ = name
    build.__doc__ = f"{name}: pre-activation {block} blocks {layers}, {depth} layers."
    register(name, build, family=family, depth=depth, input_size=(3, 32, 32) if cifar else (3, 224, 224),
             default_classes=defaults["num_classes"], paper_error=_PAPER_ERROR.get(depth) if cifar else None,
             kwargs={"stem": defaults["stem"]}, model_class=PreActResNet)


for _depth, _block, _layers in [(18, "basic", (2, 2, 2, 2)), (34, "basic", (3, 4, 6, 3)),
                                (50, "bottleneck", (3, 4, 6, 3)), (101, "bottleneck", (3, 4, 23, 3)),
                                (152, "bottleneck", (3, 8, 36, 3))]:
    _add(f"preact_resnet{_depth}", "imagenet", _depth, _block, _layers, (64, 128, 256, 512))
for _depth in (20, 56, 110):  # 6n+2, basic blocks
    _add(f"preact_resnet{_depth}", "cifar", _depth, "basic", ((_depth - 2) // 6,) * 3, (16, 32, 64))
for _depth in (164, 1001):  # 9n+2, bottlenecks with outputs 64/128/256
    _add(f"preact_resnet{_depth}", "cifar", _depth, "bottleneck", ((_depth - 2) // 9,) * 3, (16, 32, 64))
