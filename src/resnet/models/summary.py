"""Model inspection: parameter counts, MACs (counted by torch's FLOP counter, not hard-coded) and the
per-stage table of paper Table 1. Models are built on the ``meta`` device, so even ResNet-1202 costs no memory.

Works on any net with the families' interface: a ``conv1`` stem, an optional ``maxpool``, ``stages()`` and ``fc``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model, model_info


@dataclass
class StageRow:
    name: str  # paper naming: conv1, pool, conv2_x, ..., fc
    layers: str  # e.g. "[3x3, 64; 3x3, 64] x 2"
    output: tuple[int, ...]  # (H, W, C) or (K,) for the classifier


@dataclass
class Summary:
    name: str
    input_size: tuple[int, int, int]
    rows: list[StageRow]
    params: int
    macs: int


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and the fc layer, as torchvision counts)."""
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() // 2


def _describe_block(block: nn.Module, count: int) -> str:
    """The block's own convolutions in definition order (not the projection shortcut), e.g. "[3x3, 16; 3x3, 16] x 3"."""
    shortcut = getattr(block, "downsample", None)
    convs = [m for m in block.children() if isinstance(m, nn.Conv2d) and m is not shortcut]
    parts = []
    for conv in convs:
        k = conv.kernel_size[0]
        parts.append(f"{k}x{k}, {conv.out_channels}" + (f", /{conv.groups}" if conv.groups > 1 else ""))
    return f"[{'; '.join(parts)}] x {count}"


def trace(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[StageRow], int]:
    """Run one image through ``model``: the output size after the stem, pool, every stage and fc, and the MACs."""
    watched: list[tuple[str, nn.Module, str]] = []
    stem = model.conv1
    if isinstance(stem, nn.Sequential):
        convs = [m for m in stem if isinstance(m, nn.Conv2d)]
        stem_desc = f"3x3 x{len(convs)} ({', '.join(str(c.out_channels) for c in convs)}), stride 2"
    else:
        k = stem.kernel_size[0]
        stem_desc = f"{k}x{k}, {stem.out_channels}, stride {stem.stride[0]}"
    watched.append(("conv1", stem, stem_desc))
    if hasattr(model, "maxpool"):
        watched.append(("pool", model.maxpool, "3x3 max pool, stride 2"))
    for i, stage in enumerate(model.stages()):
        watched.append((f"conv{i + 2}_x", stage, _describe_block(stage[0], len(stage))))
    watched.append(("fc", model.fc, "average pool, fc"))

    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module, _ in watched:
        def hook(_m, _inp, out, name=name):
            s = tuple(out.shape[1:])
            shapes[name] = (s[1], s[2], s[0]) if len(s) == 3 else s
        hooks.append(module.register_forward_hook(hook))
    try:
        macs = count_macs(model, input_size)
    finally:
        for h in hooks:
            h.remove()
    return [StageRow(name, desc, shapes[name]) for name, _, desc in watched], macs


def summarize(name: str, input_size: tuple[int, int, int] | None = None, **model_kwargs) -> Summary:
    """Build ``name`` on the meta device and return its stage table, parameters and MACs at ``input_size``."""
    info = model_info(name)
    if input_size is None:
        in_chans = model_kwargs.get("in_chans", info.input_size[0])
        input_size = (in_chans, *info.input_size[1:])
    model_kwargs.setdefault("in_chans", input_size[0])
    with torch.device("meta"):
        model = create_model(name, **model_kwargs)
    rows, macs = trace(model, input_size)
    return Summary(name, tuple(input_size), rows, count_parameters(model), macs)
