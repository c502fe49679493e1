"""Time-budgeted training (``--budget 10m``): as many steps as fit a wall-clock budget, all included (start-up from the
command's own start, training, the evaluations the recipe asks for, the final test), and keeping to it.

Before the run starts, a few real training steps and evaluation images are timed on a throw-away copy of the model,
in at most :data:`PROBE_SHARE` of the budget; the number of steps follows (fewer than an epoch if that is what
fits), and the recipe's schedule is built to end exactly there (budget-aware decay to zero, after Li et al. 2020, "Budgeted Training: Rethinking Deep Neural Network Training Under Resource Constraints"). As
training goes the plan is re-checked against the run's own speed: five times (at 2%, 10%, 25%, 50% and 75% of the
plan) it is re-fitted to that speed, longer or shorter (a probe of a few steps is noisy: 10-15% either way was seen
on a 2-core CPU, and a shared machine's speed drifts either way: a run that was slow in its first quarter, re-fitted
last at 25%, used 537 s of a 10-minute budget when the machine sped up after it); in between it is only shortened,
when the machine slows down. The times of the evaluation and of the final test follow the run's own evaluations
(before the first, its training speed). Either way the schedule is stretched or compressed to end at the new last
step, with no jump in the learning rate (:class:`Stretch`). The plan is saved in config.yaml and the checkpoints, so
a resumed run follows it rather than planning again."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from itertools import chain, islice

import torch

from ..config import BudgetPlan
from ..errors import UserError
from .log import format_duration

SAFETY = 0.03  # share of the budget held back for timing noise
EVAL_MARGIN = 0.15  # the final test and last evaluation are held this much longer than timed: timed on a slice of
#                     one batch, a 10,000-image test with TTA took up to 16% longer than planned on a 2-core EPYC
FINISH_SECONDS = 3.0  # after the final test: saving the model, the results, the curves and confusion figures, and
#                        the process's exit (1.8 s measured with matplotlib's first import on a 2-core EPYC)
PROBE_SHARE = 0.05  # the most of the budget the plan's timing may take: training steps half, evaluation and test
MAX_PROBE_STEPS = 8  # timed training steps of the plan (fewer when they are slow) ...
MAX_PROBE_SECONDS = 3.0  # ... stopping once this much time has gone into them (or the probe's share, if less)
EVAL_PROBE_SECONDS = 0.3  # an evaluation is timed on ever larger slices of a batch until one takes this long (or
#                           a quarter of the probe's share, if less)
MIN_STEPS = 5  # a budget that fits fewer training steps than this is refused: too few to train anything
MIN_MEASURED_STEPS = 10  # steps of the run itself before its speed is trusted over the plan's
REFIT_SHARES = (0.02, 0.1, 0.25, 0.5, 0.75)  # the plan is re-fitted, longer or shorter, once each share is timed


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


def refit_due(plan: BudgetPlan, steps_timed: int) -> bool:
    """Whether the next of the re-fits (:data:`REFIT_SHARES`) is due after ``steps_timed`` steps."""
    return plan.refits < len(REFIT_SHARES) and steps_timed >= REFIT_SHARES[plan.refits] * plan.steps


def seconds_per_step(step_s: float, eval_s: float, steps_per_epoch: int, eval_every: int) -> float:
    """Training time per step with the periodic evaluations spread over the steps between them."""
    return step_s + eval_s / (steps_per_epoch * eval_every)


def closing_seconds(eval_s: float, test_s: float, last_eval: bool = True) -> float:
    """The run's end: its last evaluation (when it is not the final test itself), the final test and the finishing
    writes, the evaluations held :data:`EVAL_MARGIN` longer than timed."""
    return (eval_s * last_eval + test_s) * (1 + EVAL_MARGIN) + FINISH_SECONDS


def steps_that_fit(room_s: float, step_s: float, eval_s: float, test_s: float, steps_per_epoch: int,
                   eval_every: int, last_eval: bool = True) -> int:
    """How many more steps fit in ``room_s`` seconds with their evaluations, one evaluation more if ``last_eval`` (a
    last, partial epoch is evaluated too, unless that evaluation is the final test), the final test and the finishing
    writes; may be <= 0."""
    return math.floor((room_s - closing_seconds(eval_s, test_s, last_eval)) /
                      seconds_per_step(step_s, eval_s, steps_per_epoch, eval_every))


def least_budget(spent_s: float, per_step_s: float, eval_s: float, test_s: float) -> int:
    """Seconds of the shortest budget that fits :data:`MIN_STEPS` steps of ``per_step_s`` (evaluations spread in), an
    evaluation and the final test, rounded up to 10 s."""
    need = spent_s + closing_seconds(eval_s, test_s) + MIN_STEPS * per_step_s
    return math.ceil(need / (1 - SAFETY) / 10) * 10


def refuse_slow_step(budget_s: float, spent_s: float, step_s: float, budget_text: str, how: str) -> None:
    """One sentence, before any full step is timed, when the start-up so far (``spent_s``) or a step of ``step_s``
    seconds (``how`` it was found) leaves no room for :data:`MIN_STEPS` steps."""
    room = budget_s * (1 - SAFETY) - spent_s
    if room <= 0:
        least = least_budget(spent_s, step_s, 0.0, 0.0)
        raise UserError(f"a budget of {budget_text} is spent before training starts ({spent_s:.3g} s of start-up "
                        f"here: interpreter, imports, data, model); use --budget {least}s or more")
    if MIN_STEPS * step_s > room:
        least = least_budget(spent_s, step_s, 0.0, 0.0)
        raise UserError(f"a budget of {budget_text} fits fewer than {MIN_STEPS} training steps here: one takes about "
                        f"{step_s:.3g} s ({how}); use --budget {least}s or more, or a smaller data.image_size, "
                        f"--batch-size or --model")


def plan_budget(budget_s: float, spent_s: float, step_s: float, eval_s: float, test_s: float,
                steps_per_epoch: int, eval_every: int, budget_text: str, last_eval: bool = True) -> BudgetPlan:
    """The plan of a fresh run (less than an epoch if that is what fits), or one sentence with the least budget that
    works when fewer than :data:`MIN_STEPS` steps fit. ``last_eval``: see :func:`steps_that_fit`."""
    steps = steps_that_fit(budget_s * (1 - SAFETY) - spent_s, step_s, eval_s, test_s, steps_per_epoch, eval_every,
                           last_eval)
    if steps < MIN_STEPS:
        least = least_budget(spent_s, seconds_per_step(step_s, eval_s, steps_per_epoch, eval_every), eval_s, test_s)
        raise UserError(f"a budget of {budget_text} leaves room for {max(steps, 0):,} training steps here ({step_s:.3g} "
                        f"s each, {eval_s + test_s:.3g} s to evaluate and test), fewer than {MIN_STEPS}; the least "
                        f"budget that works is about {format_duration(least)}: use --budget {least}s or more")
    return BudgetPlan(steps=steps, schedule_steps=steps, step_seconds=step_s, eval_seconds=eval_s,
                      test_seconds=test_s, startup_seconds=spent_s, last_eval=last_eval)


def shortened(plan: BudgetPlan, budget_s: float, spent_s: float, step: int, step_s: float, steps_per_epoch: int,
              eval_every: int) -> int | None:
    """The new last step when the rest of the plan at the speed measured now (``step_s``) would overrun the
    budget; None while it fits. Never lengthens a plan, and leaves at least one more step."""
    left = (plan.steps - step) * seconds_per_step(step_s, plan.eval_seconds, steps_per_epoch, eval_every)
    if spent_s + left + closing_seconds(plan.eval_seconds, plan.test_seconds, plan.last_eval) <= budget_s:
        return None
    return min(plan.steps, refitted(plan, budget_s, spent_s, step, step_s, steps_per_epoch, eval_every))


def retimed(plan: BudgetPlan, eval_s: float | None, step_s: float) -> BudgetPlan:
    """The plan as the machine runs now, for the re-fits and the shortening checks: the evaluation and the final test
    scaled by ``eval_s`` (an evaluation pass just timed during the run) over the planned one, or, before the run has
    evaluated, by ``step_s`` (its training steps' speed) over the planned step. The planner times them once, in the
    first seconds; a machine whose speed changes after that changes them too: an AVX2 run whose planner timed a 33 s
    test took 44 s for it and overran a 10-minute budget by 3.6 s, and one whose planner timed 60 s while the machine
    was slow took 41 s and left 76 s unused (its training steps ran 0.80 times the planned time; the test, 0.68). The
    saved plan keeps what it was made from."""
    ratio = eval_s / max(plan.eval_seconds, 1e-9) if eval_s else step_s / max(plan.step_seconds, 1e-9)
    return replace(plan, eval_seconds=plan.eval_seconds * ratio, test_seconds=plan.test_seconds * ratio)


def refitted(plan: BudgetPlan, budget_s: float, spent_s: float, step: int, step_s: float, steps_per_epoch: int,
             eval_every: int) -> int:
    """The last step that fits the budget at the speed measured now, longer or shorter than the plan; at least one
    more step."""
    more = steps_that_fit(budget_s * (1 - SAFETY) - spent_s, step_s, plan.eval_seconds, plan.test_seconds,
                          steps_per_epoch, eval_every, plan.last_eval)
    return step + max(more, 1)


# ------------------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    _sync(device)
    timed = islice(it, MAX_PROBE_STEPS)
    following = next(timed, None)
    start, done = time.perf_counter(), 0
    for images, labels in chain([following], timed) if following is not None else [first]:
        step(images, labels)
        done += 1
        _sync(device)
        if time.perf_counter() - start > max_seconds:
            break
    return (time.perf_counter() - start) / done


def time_evaluation(evaluate_batches: Callable[[Iterable], object], loader, device: torch.device,
                    target_seconds: float = EVAL_PROBE_SECONDS) -> float:
    """Seconds of one whole pass of ``loader`` through ``evaluate_batches``, from slices of its first batch timed
    (after an untimed pass over two images), each sized from the last to take ``target_seconds``, until one does or is
    the whole batch; scaled per image to the images this process evaluates. A pass is never timed whole, however
    slow."""
    images, labels = next(iter(loader.epoch(0)))
    evaluate_batches([(images[:2], labels[:2])])
    n = min(8, len(labels))
    while True:
        _sync(device)
        start = time.perf_counter()
        evaluate_batches([(images[:n], labels[:n])])
        _sync(device)
        seconds = time.perf_counter() - start
        if seconds >= target_seconds or n == len(labels):
            break
        n = min(max(2 * n, math.ceil(1.2 * n * target_seconds / max(seconds, 1e-6))), len(labels))
    return seconds / n * math.ceil(loader.size / loader.world)


class Stretch:
    """Steps an LR scheduler built for ``length`` steps so that it ends at the run's last optimizer step: one
    scheduler step per optimizer step until the plan changes, then proportionally more (a shortened plan: the rest
    of the schedule compressed) or fewer (a lengthened one: stretched), with no jump in the learning rate.
    Checkpoints keep its position."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler, length: int):
        self.scheduler, self.length = scheduler, length
        self.position, self.rate = 0.0, 1.0

    def step(self) -> None:
        self.position = min(self.position + self.rate, float(self.length))
        while self.scheduler.last_epoch < math.floor(self.position + 1e-9):
            self.scheduler.step()

    def end_at(self, step: int, end: int) -> None:
        """From optimizer step ``step`` on, reach the end of the schedule at optimizer step ``end``."""
        self.rate = (self.length - self.position) / max(end - step, 1)

    def get_last_lr(self) -> list[float]:
        return self.scheduler.get_last_lr()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "position": self.position, "rate": self.rate,
                "length": self.length}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.position, self.rate, self.length = state["position"], state["rate"], state["length"]
