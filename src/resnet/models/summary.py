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


def _describe_conv(conv: nn.Conv2d) -> str:
    k = conv.kernel_size[0]
    return f"{k}x{k}, {conv.out_channels}" + (f", /{conv.groups}" if conv.groups > 1 else "")


def _describe_stem(stem: nn.Module) -> str:
    """One conv as "7x7, 64, stride 2"; several (ResNet-D's deep stem) as "3x3 x3 (32, 32, 64), stride 2"."""
    convs = [m for m in stem.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) == 1:
        return f"{_describe_conv(convs[0])}, stride {convs[0].stride[0]}"
    return f"3x3 x{len(convs)} ({', '.join(str(c.out_channels) for c in convs)}), stride {convs[0].stride[0]}"


def _is_container(module: nn.Module) -> bool:
    """A plain Sequential/ModuleDict, or a subclass holding blocks of one kind (torchvision's dense blocks and RegNet
    stages), as opposed to a block that happens to be a Sequential (a transition, conv-norm-activation)."""
    if type(module) in (nn.Sequential, nn.ModuleDict):
        return True
    return isinstance(module, (nn.Sequential, nn.ModuleDict)) and len({type(c) for c in module.children()}) == 1


def _blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks a stage is made of: its containers opened, its layers and blocks kept whole."""
    if _is_container(module):
        return [b for child in module.children() for b in _blocks(child)]
    return [module]


def _describe_stage(stage: nn.Module) -> str:
    """A ResNet stage by its first block's own convolutions (not the projection shortcut), e.g.
    "[3x3, 16; 3x3, 16] x 3"; a successor's stage by its torchvision blocks, e.g. "PatchMerging, SwinTransformerBlock
    x 2"."""
    first = stage[0]
    shortcut = getattr(first, "downsample", None)
    convs = [m for m in first.children() if isinstance(m, nn.Conv2d) and m is not shortcut]
    if convs and not isinstance(first, (nn.Sequential, nn.ModuleDict)):
        return f"[{'; '.join(_describe_conv(c) for c in convs)}] x {len(stage)}"
    groups: list[list] = []  # [name, count] of each run of blocks of one kind
    for block in _blocks(stage):
        name = (f"{_describe_conv(block)}, stride {block.stride[0]}" if isinstance(block, nn.Conv2d)
                else type(block).__name__.lstrip("_"))
        if groups and groups[-1][0] == name:
            groups[-1][1] += 1
        else:
            groups.append([name, 1])
    return ", ".join(name if count == 1 else f"{name} x {count}" for name, count in groups)


def trace(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[StageRow], int]:
    """Run one image through ``model``: the output size after the stem, pool, every stage and fc, and the MACs."""
    watched: list[tuple[str, nn.Module, str]] = [("conv1", model.conv1, _describe_stem(model.conv1))]
    if hasattr(model, "maxpool"):
        watched.append(("pool", model.maxpool, "3x3 max pool, stride 2"))
    for i, stage in enumerate(model.stages()):
        watched.append((f"conv{i + 2}_x", stage, _describe_stage(stage)))
    watched.append(("fc", model.fc, "average pool, fc"))
    channels_last = getattr(model, "stage_layout", "nchw") == "nhwc"  # Swin's stages: (H, W, C) already

    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, module, _ in watched:
        def hook(_m, _inp, out, name=name):
            s = tuple(out.shape[1:])
            shapes[name] = s if len(s) != 3 or (channels_last and name != "fc") else (s[1], s[2], s[0])
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
