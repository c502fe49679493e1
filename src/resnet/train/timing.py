"""Timing a run's pieces without disturbing it: the process's own start, training steps and evaluation passes.
The budget keeper plans from these numbers; the degradation study estimates its cells' time with them."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from itertools import chain, islice

import torch

from ..device import synchronize
from ..errors import UserError

MAX_PROBE_STEPS = 8  # timed training steps (fewer when they are slow) ...
MAX_PROBE_SECONDS = 3.0  # ... stopping once this much time has gone into them (or the caller's limit, if less)
EVAL_PROBE_SECONDS = 1.0  # an evaluation is timed on ever larger slices of a batch until one takes at least half of
#                           this: on a whole batch, as evaluations run, wherever the budget's share allows it


def process_start(max_age_s: float = 120.0) -> float:
    """The ``time.perf_counter()`` reading of this process's start (Linux: /proc/self/stat), so that a command-line
    budget also covers the interpreter's start and the imports (seconds on a cold machine). Elsewhere, or when the
    process is older than ``max_age_s`` (not a fresh command: a notebook, a test runner), it is now."""
    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime
    except (OSError, AttributeError, IndexError, ValueError):
        return time.perf_counter()
    return time.perf_counter() - (age if 0.0 <= age <= max_age_s else 0.0)


def time_training_steps(step: Callable[[torch.Tensor, torch.Tensor], object], batches: Iterable,
                        device: torch.device, untimed: int = 1, max_seconds: float = MAX_PROBE_SECONDS) -> float:
    """Seconds per call of ``step(images, labels)``: ``untimed`` warm-up calls (a CUDA-graph step needs its eager
    steps and its capture), then up to :data:`MAX_PROBE_STEPS` timed ones, stopping once ``max_seconds`` have gone by
    (at least one; an epoch of a single batch is timed again from its start)."""
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise UserError("the training set is too small to time a training step (no full batch); lower "
                        "batch_size or train without --budget")
    for images, labels in chain([first], islice(it, max(untimed - 1, 0))):
        step(images, labels)
    synchronize(device)
    timed = islice(it, MAX_PROBE_STEPS)
    following = next(timed, None)
    start, done = time.perf_counter(), 0
    for images, labels in chain([following], timed) if following is not None else [first]:
        step(images, labels)
        done += 1
        synchronize(device)
        if time.perf_counter() - start > max_seconds:
            break
    return (time.perf_counter() - start) / done


def time_evaluation(evaluate_batches: Callable[[Iterable], object], loader, device: torch.device,
                    target_seconds: float = EVAL_PROBE_SECONDS) -> float:
    """Seconds of one whole pass of ``loader`` through ``evaluate_batches``, from slices of its first batch timed
    (after an untimed pass over two images), each sized from the last to take ``target_seconds``, until one takes at
    least half of that (a slice sized to the target that comes in a little short is timed well enough; timing it
    again would double the cost) or is the whole batch; scaled per image to the images this process evaluates. A
    pass is never timed whole, however slow."""
    images, labels = next(iter(loader.epoch(0)))
    evaluate_batches([(images[:2], labels[:2])])
    n = min(8, len(labels))
    while True:
        synchronize(device)
        start = time.perf_counter()
        evaluate_batches([(images[:n], labels[:n])])
        synchronize(device)
        seconds = time.perf_counter() - start
        if seconds >= target_seconds / 2 or n == len(labels):
            break
        n = min(max(2 * n, math.ceil(1.2 * n * target_seconds / max(seconds, 1e-6))), len(labels))
    return seconds / n * math.ceil(loader.size / loader.world)
