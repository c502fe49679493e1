"""Figure 7 of the paper: how strongly each 3x3 layer responds. The response of a layer is its output after
BatchNorm and before the addition or ReLU that follows; its size is the standard deviation over a data set, taken
per channel (over images and positions) and averaged over the channels, so a channel's constant offset (BN's beta)
does not count as response. Read with forward hooks on a trained model in eval mode; nothing is retrained."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..export.fold import conv_bn_pairs


def layers_3x3(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names of every 3x3 convolution followed by a BatchNorm, in forward order: the layers of
    Figure 7 (the stem and both convolutions of every basic block; 1x1 projections are not 3x3 layers)."""
    modules = dict(model.named_modules())
    return [(conv, bn) for conv, bn in conv_bn_pairs(model) if tuple(modules[conv].kernel_size) == (3, 3)]


class _ChannelMoments:
    """Per-channel count, mean and sum of squared deviations of a module's output, read by a forward hook: each batch
    reduced on its device in fp32, batches merged in fp64 (Chan et al.'s pairwise update), so no activation is kept
    or copied."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def __call__(self, module, inputs, output: torch.Tensor) -> None:
        x = output.detach().float()
        var, mean = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1], correction=0)
        n = x.numel() // x.shape[1]
        mean, m2 = mean.double(), var.double() * n
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.n = total

    def std(self) -> float:
        return float((self.m2 / self.n).sqrt().mean())


@torch.no_grad()
def layer_response_std(model: nn.Module, batches: Iterable[torch.Tensor]) -> list[float]:
    """Per 3x3 layer (forward order), the std of its response over ``batches`` of images, in eval mode and fp32.
    The hooks read each BN output as it is produced, before an in-place ReLU can change it."""
    modules = dict(model.named_modules())
    layers = layers_3x3(model)
    moments = [_ChannelMoments() for _ in layers]
    handles = [modules[bn].register_forward_hook(m) for (_, bn), m in zip(layers, moments)]
    was_training = model.training
    model.eval()
    try:
        for images in batches:
            model(images.float())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [m.std() for m in moments]
