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


class WeightEMA(AveragedModel):
    """torch's ``AveragedModel`` (same state dict: ``module.*`` and ``n_averaged``; same use as an eval model) with an
    update that never waits for the device. ``AveragedModel.update_parameters`` reads ``n_averaged`` on the host twice
    per call, which on a GPU stalls the training loop at every step until the device has caught up.

    Floating-point parameters and buffers are lerped towards the model by ``max(1 - decay, (1 + n) ** -power)``
    with warm-up, ``1 - decay`` without; the first update (n = 0) has weight 1, a copy, as in ``AveragedModel``.
    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied, where torch's EMA function would average and
    truncate them."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        super().__init__(model, use_buffers=True)
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        ours = [*self.module.parameters(), *self.module.buffers()]
        theirs = [t.detach() for t in (*model.parameters(), *model.buffers())]
        n = self.n_averaged.double()
        weight = ((1 + n) ** -WARMUP_POWER).clamp(min=1 - self.decay) if self.warmup else \
            torch.where(n == 0, 1.0, 1 - self.decay)
        by_dtype: dict[torch.dtype, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for mine, source in zip(ours, theirs, strict=True):
            group = by_dtype.setdefault(mine.dtype, ([], []))
            group[0].append(mine)
            group[1].append(source.to(mine.device))
        for dtype, (mine, source) in by_dtype.items():
            if dtype.is_floating_point:
                torch._foreach_lerp_(mine, source, [weight.to(dtype)] * len(mine))
            else:
                torch._foreach_copy_(mine, source)
        self.n_averaged += 1


def make_ema(model: nn.Module, decay: float, warmup: bool = True) -> WeightEMA:
    """An EMA copy of ``model`` (parameters and BatchNorm buffers), updated with ``update_parameters(model)``."""
    return WeightEMA(model, decay, warmup)
