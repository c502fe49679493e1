"""Exponential moving average of the weights, with a warm-up of its decay so that early evaluations mean something.

A fixed decay of 0.999 averages over the last ~1,000 updates, which early in a run are mostly the random initial
weights: the EMA model scores near chance for the first epochs. With warm-up the decay of update ``n`` is
``min(decay, 1 - (1 + n) ** -power)`` (timm's ModelEmaV3 with gamma 1): 0.75 at update 7, 0.95 at 88, 0.99 at 1,000,
reaching 0.999 at 31,600 updates with the default power 2/3, so the average follows the model closely at first and
smooths more and more. The weight of each update is computed on the device from ``AveragedModel.n_averaged``: no host
synchronisation, and a resumed run continues the same sequence because ``n_averaged`` is in the state dict.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

WARMUP_POWER = 2 / 3  # timm's default for long runs (1 - (1 + n) ** -power)


def ema_decay(decay: float, updates: int, warmup: bool = True) -> float:
    """The decay applied at update number ``updates`` (0-based, as ``n_averaged`` counts): for tables and tests."""
    return min(decay, 1 - (1 + updates) ** -WARMUP_POWER) if warmup else decay


def ema_multi_avg_fn(decay: float, warmup: bool = True):
    """``AveragedModel`` multi-tensor update: lerp the floating-point tensors towards the model by
    ``max(1 - decay, (1 + n) ** -power)`` with warm-up, ``1 - decay`` without; integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied, where torch's own EMA function would average and truncate them."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], model_params: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if not torch.is_floating_point(ema_params[0]):
            torch._foreach_copy_(ema_params, model_params)
            return
        if warmup:
            weight = torch.clamp((1 + n_averaged.double()) ** -WARMUP_POWER, min=1 - decay).to(ema_params[0].dtype)
            torch._foreach_lerp_(ema_params, model_params, [weight] * len(ema_params))
        else:
            torch._foreach_lerp_(ema_params, model_params, 1 - decay)

    return update


def make_ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An EMA copy of ``model`` (parameters and BatchNorm buffers), updated with ``update_parameters(model)``."""
    return AveragedModel(model, multi_avg_fn=ema_multi_avg_fn(decay, warmup), use_buffers=True)
