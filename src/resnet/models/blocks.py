"""Residual blocks and shortcut connections (paper Sec. 3.3 and Fig. 5).

A block computes ``relu(F(x) + shortcut(x))``; a plain block (shortcut kind ``"none"``) computes ``relu(F(x))``.
Module names follow torchvision (``conv1``, ``bn1``, ..., ``downsample``) so that its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUT_KINDS = ("A", "B", "C", "none")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: parameter-free identity; subsample spatially by striding and zero-pad the new channels.

    The subsampling is a 1x1 average pool with the block's stride: the same values as slicing ``x[..., ::s, ::s]``,
    but its backward keeps a channels_last gradient channels_last. A slice's backward returns a contiguous (NCHW)
    gradient, and the ops it then meets in channels_last (the gradient sum and the ReLU's backward) take a slow
    mixed-layout path: on a 2-core bf16 CPU that cost ResNet-20 about 9% of its training step.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"shortcut A cannot reduce channels ({in_ch} -> {out_ch}); use shortcut B or C")
        self.extra_channels = out_ch - in_ch
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, 1, self.stride)
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def make_shortcut(kind: str, in_ch: int, out_ch: int, stride: int, avg_down: bool = False) -> nn.Module | None:
    """Build the shortcut path of one block, or None where the block adds its input unchanged (or not at all).

    ``avg_down`` is ResNet-D's projection: a 2x2 average pool does the subsampling so the 1x1 conv sees every pixel.
    """
    if kind not in SHORTCUT_KINDS:
        raise ValueError(f"unknown shortcut kind {kind!r}; choose one of {', '.join(SHORTCUT_KINDS)}")
    if kind == "none":
        return None
    shape_changes = stride != 1 or in_ch != out_ch
    if kind == "A":
        return ZeroPadShortcut(in_ch, out_ch, stride) if shape_changes else None
    if kind == "B" and not shape_changes:
        return None
    if avg_down:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, conv1x1(in_ch, out_ch), nn.BatchNorm2d(out_ch))
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class _Block(nn.Module):
    """Shared forward: the residual branch, then the optional add, then ReLU."""

    expansion = 1
    downsample: nn.Module | None
    last_bn: nn.BatchNorm2d

    def __init__(self, shortcut: str):
        super().__init__()
        self.has_shortcut = shortcut != "none"
        self.relu = nn.ReLU(inplace=True)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Zero the last BN's scale: the residual branch outputs 0 and the block starts as its shortcut."""
        nn.init.zeros_(self.last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class BasicBlock(_Block):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "B", groups: int = 1,
                 base_width: int = 64, avg_down: bool = False, stride_in_1x1: bool = False):
        super().__init__(shortcut)
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64 (use a bottleneck net for ResNeXt/wide)")
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = make_shortcut(shortcut, in_ch, planes, stride, avg_down)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Block):
    """1x1 reduce, 3x3, 1x1 expand (x4). Stride on the 3x3 ("v1.5") unless ``stride_in_1x1`` (paper v1)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "B", groups: int = 1,
                 base_width: int = 64, avg_down: bool = False, stride_in_1x1: bool = False):
        super().__init__(shortcut)
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, avg_down)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
