"""The 32-px family of paper Sec. 4.2: 6n+2 layers, three stages of n basic blocks, widths 16/32/64.

Shortcut A (parameter-free) by default as in the paper; errors are CIFAR-10 test error % (paper Table 6).
``resnet14`` (n=2, and its plain twin ``plain14``) is not in the paper: the same design one block per stage shorter,
about 1.4x the training speed of ResNet-20; the default 10-minute Fashion-MNIST recipe trains it.
"""

from __future__ import annotations

from .net import ResNet
from .registry import register

_INPUT = (3, 32, 32)
_PAPER_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def _add(name: str, depth: int, plain: bool) -> None:
    n = (depth - 2) // 6

    def build(shortcut: str | None = None, **kwargs) -> ResNet:
        if plain and shortcut not in (None, "none"):
            raise ValueError(f"{name} is the plain (shortcut-free) net; use resnet{depth} for shortcut {shortcut!r}")
        kind = "none" if plain else (shortcut or "A")
        return ResNet("basic", (n, n, n), (16, 32, 64), stem="cifar", shortcut=kind, **{"num_classes": 10, **kwargs})

    build.__name__ = name
    build.__doc__ = f"{name}: 6n+2 with n={n}, {'no shortcuts' if plain else 'shortcut A by default'}."
    register(name, build, family="cifar", depth=depth, input_size=_INPUT, default_classes=10,
             paper_error=None if plain else _PAPER_ERROR.get(depth), kwargs={"shortcut": "none" if plain else "A"})


for _depth in (14, 20, 32, 44, 56, 110, 1202):
    _add(f"resnet{_depth}", _depth, plain=False)
for _depth in (14, 20, 32, 44, 56, 110, 1202):  # plain-1202: the twin of the paper's 1202-layer net
    _add(f"plain{_depth}", _depth, plain=True)
