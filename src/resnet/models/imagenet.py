"""The 224-px family (paper Table 1): ResNet-18..152, plain-18/34, ResNeXt, wide ResNet, ResNet-D.

Errors are top-1 %: the paper's 10-crop numbers (Tables 2 and 3) and torchvision's V1 weights (FACTS.md).
"""

from __future__ import annotations

from .net import ResNet
from .registry import register

_INPUT = (3, 224, 224)


def _add(name: str, block: str, layers: tuple[int, ...], depth: int, paper: float | None = None,
         tv: float | None = None, locked: dict | None = None, **defaults) -> None:
    """Register ``name``; ``defaults`` may be overridden by the caller, ``locked`` may not (plain nets stay plain)."""
    locked = locked or {}

    def build(**kwargs) -> ResNet:
        for key, value in locked.items():
            if kwargs.get(key, value) != value:
                raise ValueError(f"{name} is defined by {key}={value!r}; pick another model instead of overriding it")
        return ResNet(block, layers, **{"num_classes": 1000, **defaults, **kwargs, **locked})

    build.__name__ = name
    build.__doc__ = f"{name}: {block} blocks {layers}, {depth} layers."
    register(name, build, family="imagenet", depth=depth, input_size=_INPUT, default_classes=1000,
             paper_error=paper, torchvision_error=tv, kwargs={**defaults, **locked})


_add("resnet18", "basic", (2, 2, 2, 2), 18, paper=27.88, tv=30.242)
_add("resnet34", "basic", (3, 4, 6, 3), 34, paper=25.03, tv=26.686)
_add("resnet50", "bottleneck", (3, 4, 6, 3), 50, paper=22.85, tv=23.870)
_add("resnet101", "bottleneck", (3, 4, 23, 3), 101, paper=21.75, tv=22.626)
_add("resnet152", "bottleneck", (3, 8, 36, 3), 152, paper=21.43, tv=21.688)
_add("plain18", "basic", (2, 2, 2, 2), 18, paper=27.94, locked={"shortcut": "none"})
_add("plain34", "basic", (3, 4, 6, 3), 34, paper=28.54, locked={"shortcut": "none"})
_add("resnext50_32x4d", "bottleneck", (3, 4, 6, 3), 50, groups=32, width_per_group=4)
_add("resnext101_32x8d", "bottleneck", (3, 4, 23, 3), 101, groups=32, width_per_group=8)
_add("resnext101_64x4d", "bottleneck", (3, 4, 23, 3), 101, groups=64, width_per_group=4)
_add("wide_resnet50_2", "bottleneck", (3, 4, 6, 3), 50, width_per_group=128)
_add("wide_resnet101_2", "bottleneck", (3, 4, 23, 3), 101, width_per_group=128)
_add("resnet50d", "bottleneck", (3, 4, 6, 3), 50, stem="deep", stem_width=32, avg_down=True)
