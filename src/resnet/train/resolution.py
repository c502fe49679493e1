"""The training resolution a budget allows: when few epochs of a folder fit at its full size, a budget run trains on
smaller random-resized crops and still evaluates at the full size (FFCV's and fastai's low-resolution training; the
train/test resolution discrepancy of Touvron et al. 2019 says a net trained on crops that zoom in is best tested a
little larger). A crop of side r costs about (r / full)^2 of a full one, so a smaller one buys epochs.

The rule (:func:`train_size_for`): keep the full size when at least :data:`MIN_EPOCHS` epochs fit; otherwise the
side whose epochs reach MIN_EPOCHS, never below :data:`MIN_SHARE` of the full side, in steps of :data:`STEP` px. It
applies to budget runs that cut random-resized crops from images held in memory (``data.fit_resolution``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .budget import BudgetKeeper

MIN_EPOCHS = 16.0  # epochs a budget must hold at the full size to train there
MIN_SHARE = 0.5  # the smallest training side, as a share of the full one
STEP = 8  # training sides are multiples of this many pixels


def train_size_for(full: int, epochs_at_full: float, min_epochs: float = MIN_EPOCHS) -> int:
    """The side of the training crops for a budget that holds ``epochs_at_full`` epochs at ``full`` px."""
    if epochs_at_full >= min_epochs:
        return full
    side = max(full * math.sqrt(max(epochs_at_full, 0.0) / min_epochs), MIN_SHARE * full)
    return min(full, max(STEP, int(side // STEP) * STEP))


def fit_resolution(plan: Callable[[], BudgetKeeper], set_size: Callable[[int], None],
                   full: int) -> tuple[BudgetKeeper, int, str | None]:
    """Plan the budget at the full size; when too few epochs fit, set the training crops to the size of
    :func:`train_size_for` and plan again (timed at that size). Returns the keeper, the size and the banner's line
    (None when the full size was kept)."""
    keeper = plan()
    if keeper.plan.max_steps and keeper.plan.steps >= keeper.plan.max_steps:
        return keeper, full, None  # max_epochs ends the run, not the budget: a smaller crop would buy nothing
    epochs = keeper.plan.epochs
    size = train_size_for(full, epochs)
    if size == full:
        return keeper, full, None
    set_size(size)
    keeper = plan()
    note = (f"training crops of {size} px, evaluation at {full} px: at {full} px the budget holds {epochs:.3g} "
            f"epochs, fewer than {MIN_EPOCHS:g}; at {size} px {keeper.plan.epochs:.3g} "
            f"(data.fit_resolution=false keeps {full} px)")
    return keeper, size, note
