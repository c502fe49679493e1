"""A look at one training step before a run commits to it: a forward and backward pass at a small batch on a copy of
the model, scaled to the run's batch, tells how much memory a full step needs and roughly how long it takes.

A run whose first step would not fit in memory is refused in one sentence before it starts, instead of growing to
the machine's limit; a budget too short for a handful of steps is refused without timing a whole step first.
Activation memory is what autograd saves for the backward pass (counted with ``saved_tensors_hooks``), which grows
with the batch; weights, gradients and optimizer state do not.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..device import autocast, available_memory, synchronize
from ..errors import UserError
from .checkpoint import rng_state, set_rng_state

PROBE_BATCH = 4  # images in the probe's batch: enough to be per-image, few enough to cost little at any size
HEADROOM = 0.9  # share of the free memory a run may plan to use


@dataclass(frozen=True)
class StepProbe:
    batch: int  # the probe's batch
    seconds: float | None  # one forward and backward at that batch (after a warm-up pass); None when not timed
    activation_bytes: float  # saved for backward at that batch
    state_bytes: int  # weights + gradients + two optimizer buffers (momentum or Adam's moments)

    def step_bytes(self, batch: int) -> float:
        return self.activation_bytes / self.batch * batch + self.state_bytes

    def step_seconds(self, batch: int) -> float:
        """Seconds of a step at ``batch``, scaled per image: an over-estimate, as larger batches run more efficiently."""
        if self.seconds is None:
            raise ValueError("this probe was not timed: probe_step(..., timed=True)")
        return self.seconds / self.batch * batch


def probe_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
               precision: str, timed: bool = False) -> StepProbe:
    """Measure one forward and backward of a copy of ``model`` (its weights and BN statistics are not touched) on the
    first :data:`PROBE_BATCH` of ``images``: its memory, and with ``timed`` (a budget run) its time, from a second
    pass that the first has warmed up."""
    probe = copy.deepcopy(model).train()
    x, y = images[:PROBE_BATCH], labels[:PROBE_BATCH]
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    def one_pass() -> None:
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(probe(x).float(), y)
        loss.backward()
        probe.zero_grad(set_to_none=True)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        one_pass()
    activation, seconds = saved[0], None
    if timed:
        synchronize(device)
        start = time.perf_counter()
        one_pass()
        synchronize(device)
        seconds = time.perf_counter() - start
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return StepProbe(len(y), seconds, activation, 4 * params)


def free_bytes(device: torch.device) -> int:
    """Memory a step can use on ``device`` now: free GPU memory, or the system's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def probe_run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, input_size,
              device: torch.device, precision: str, timed: bool) -> StepProbe:
    """Would a step of ``batch_size`` fit in memory? Measured on a copy at a small batch, the random state left as
    it was (and, when ``timed``, a first word on the step's time); refused in one sentence when it would not."""
    rng = rng_state()
    probe = probe_step(model, images, labels, device, precision, timed=timed)
    set_rng_state(rng)
    check_memory(probe, batch_size, input_size, device)
    return probe


def check_memory(probe: StepProbe, batch: int, image_size: tuple[int, int], device: torch.device,
                 free: int | None = None) -> None:
    """One sentence, before the run starts, when a step at ``batch`` needs more memory than ``device`` has free."""
    need = probe.step_bytes(batch)
    free = free_bytes(device) if free is None else free
    if need > HEADROOM * free:
        h, w = image_size
        raise UserError(f"one training step at batch {batch} on {h}x{w} images needs about {need / 2**30:.1f} GiB, "
                        f"more than the {free / 2**30:.1f} GiB free on {device}; lower --batch-size or "
                        f"data.image_size")
