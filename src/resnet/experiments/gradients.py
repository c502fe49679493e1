"""Gradient flow: the norm of the loss gradient with respect to each 3x3 convolution's weights, layer by layer, on
real batches. Vanishing gradients would show as early layers getting far smaller gradients than late ones; the
ratio of the first stage's mean norm to the last stage's sums that up in one number."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .responses import layers_3x3


@torch.enable_grad()
def conv_grad_norms(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Per 3x3 layer (forward order), the L2 norm of d(cross-entropy)/d(weight), averaged over ``batches`` of
    (images, labels). Train mode (BN on batch statistics, as in a training step), fp32, on a copy: ``model`` and its
    BN running statistics are left as they were."""
    model = copy.deepcopy(model).float().train()
    modules = dict(model.named_modules())
    weights = [modules[conv].weight for conv, _ in layers_3x3(model)]
    sums, count = [0.0] * len(weights), 0
    for images, labels in batches:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images.float()), labels).backward()
        sums = [s + float(w.grad.norm()) for s, w in zip(sums, weights)]
        count += 1
    if not count:
        raise ValueError("conv_grad_norms needs at least one batch")
    return [s / count for s in sums]


def stage_of(conv: str, stage_names: list[str]) -> str:
    """The stage a layer belongs to (``layer1.0.conv2`` -> ``layer1``); ``stem`` for layers before the stages."""
    head = conv.split(".", 1)[0]
    return head if head in stage_names else "stem"


def first_last_ratio(norms: list[float], convs: list[str], stage_names: list[str]) -> dict:
    """Mean gradient norm of the first stage's layers, of the last stage's, and their ratio (first / last)."""
    by_stage = {name: [n for n, c in zip(norms, convs) if stage_of(c, stage_names) == name] for name in stage_names}
    first, last = statistics.fmean(by_stage[stage_names[0]]), statistics.fmean(by_stage[stage_names[-1]])
    return {"first_stage": first, "last_stage": last, "ratio": first / last if last else float("inf")}
