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
    """Running per-channel sums of x and x^2 (float64) of a module's output, updated by a forward hook."""

    def __init__(self):
        self.n, self.s1, self.s2 = 0, None, None

    def __call__(self, module, inputs, output: torch.Tensor) -> None:
        x = output.detach().double().transpose(0, 1).flatten(1)  # (channels, images x positions)
        s1, s2 = x.sum(1), (x * x).sum(1)
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += x.shape[1]

    def std(self) -> float:
        mean = self.s1 / self.n
        return float((self.s2 / self.n - mean * mean).clamp_min(0).sqrt().mean())


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
