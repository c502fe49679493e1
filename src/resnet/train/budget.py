"""Time-budgeted training (``--budget 10m``): as many steps as fit a wall-clock budget that covers everything, from
the command's start to the end of the final test (or, with ``budget_scope: training``, the training steps and their
evaluations alone: start-up, the plan's timing and the final test are not counted). The rules:

1. Plan: a few training steps, an evaluation pass and the final test are timed on a copy of the model in at most
   PROBE_SHARE of the budget; the run gets the steps that fit in (1 - SAFETY) of what start-up left, with the periodic
   evaluations, the closing (the last evaluation and the final test held EVAL_MARGIN longer than timed, then
   FINISH_SECONDS) and fewer than an epoch if that is all that fits; fewer than MIN_STEPS is refused in one sentence.
2. Keep: every FIT_SECONDS of planned training (every log step at most) and at every epoch end the end is fitted
   again the same way, from the step time measured so far (smoothed over SMOOTHING_SECONDS), evaluations and the test
   scaled by the last evaluation measured (before one, by the step time when it is slower than planned, never when
   faster: the timed steps may have been warming up), the finish by the step time; the end moves only when the fit
   differs from it by more than HYSTERESIS of the steps left.
3. The learning-rate schedule, built for the first plan, is stretched or compressed to end at the end, with no jump.
4. A checkpoint keeps the keeper's state: a resumed run continues its end and the time it has already spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from ..config import parse_duration
from ..errors import UserError
from .log import format_duration
from .timing import EVAL_PROBE_SECONDS, MAX_PROBE_SECONDS, time_evaluation, time_training_steps

SAFETY = 0.03  # share of the budget held back for timing noise
EVAL_MARGIN = 0.15  # a whole test pass took 11-16% longer than its first batch, timed, foretold: held this much longer
FINISH_SECONDS = 3.0  # after the final test: the model, results and figures written, and the interpreter's exit
PROBE_SHARE = 0.05  # the most of the budget the plan's timing may take: training steps half, evaluation and test
MIN_STEPS = 5  # a budget that fits fewer training steps than this is refused: too few to train anything
SMOOTHING_SECONDS = 30.0  # time constant of the measured step time: follows a drifting machine, not one slow window
HYSTERESIS = 0.02  # the end moves when the fit differs by more than this share of the steps left (at least a step)
FIT_SECONDS = 10.0  # the end is fitted at least this often in planned time, so that a run of a few slow steps is
#                     fitted while it runs, not only at log steps it may never reach


@dataclass(frozen=True)
class Timings:
    """A budget run's facts that its end is fitted from: the run's shape (fixed for the run) and the seconds of each
    piece (timed for the plan; measured and scaled while the run goes, by :meth:`BudgetKeeper.timings_now`)."""

    steps_per_epoch: int
    eval_every: int  # epochs between evaluations
    last_eval: bool  # the run's last evaluation is a pass of its own (False: it is the final test itself)
    step_s: float  # seconds per training step
    eval_s: float  # seconds per evaluation pass
    test_s: float  # seconds of the final test, its test-time augmentation included
    finish_s: float = FINISH_SECONDS  # after the final test: the model, results and figures written, the exit

    def per_step(self) -> float:
        """Training time per step with the periodic evaluations spread over the steps between them."""
        return self.step_s + self.eval_s / (self.steps_per_epoch * self.eval_every)

    def closing(self) -> float:
        """The run's end: its last evaluation (unless that is the final test itself), the final test (both held
        EVAL_MARGIN longer than timed) and the finish."""
        return (self.eval_s * self.last_eval + self.test_s) * (1 + EVAL_MARGIN) + self.finish_s

    def to_end(self, step: int, end: int) -> float:
        """Seconds from just after ``step`` to the end of a run ending at ``end``: the steps, the evaluations at the
        epoch ends due on the way (every ``eval_every`` epochs) and the closing (its evaluation is the one at
        ``end``)."""
        period = self.steps_per_epoch * self.eval_every
        on_the_way = (end - 1) // period - step // period
        return (end - step) * self.step_s + max(on_the_way, 0) * self.eval_s + self.closing()

    def steps_that_fit(self, room_s: float, step: int = 0) -> int:
        """How many more steps after ``step`` fit in ``room_s`` seconds with their evaluations and the closing; may
        be <= 0."""
        n = math.floor((room_s - self.closing()) / self.per_step())  # evaluations spread: a first guess
        if n < 1:
            return n
        while n > 0 and self.to_end(step, step + n) > room_s:
            n -= 1
        while self.to_end(step, step + n + 1) <= room_s:
            n += 1
        return n


@dataclass
class BudgetPlan:
    """What a budget run planned before its first step, from the times measured then."""

    steps: int  # the run's last step
    timings: Timings  # as timed for the plan
    startup_seconds: float  # seconds from the command's start to the plan: data, model, timing
    probe_seconds: float = 0.0  # seconds the timing took (at most PROBE_SHARE of the budget)
    max_steps: int | None = None  # the run ends here even when more would fit (``max_epochs``)
    training_only: bool = False  # the budget holds the training and its evaluations alone (budget_scope: training)

    @property
    def epochs(self) -> float:
        return self.steps / self.timings.steps_per_epoch

    @classmethod
    def from_dict(cls, saved: dict, shape: Timings) -> BudgetPlan:
        """A saved plan, its run's shape taken from ``shape`` (a resume may change the evaluation cadence). Plans
        saved before the timings were grouped kept them at the top level."""
        t = saved.get("timings") or {"step_s": saved["step_seconds"], "eval_s": saved["eval_seconds"],
                                     "test_s": saved["test_seconds"], "finish_s": FINISH_SECONDS}
        timings = replace(shape, step_s=t["step_s"], eval_s=t["eval_s"], test_s=t["test_s"], finish_s=t["finish_s"])
        return cls(saved["steps"], timings, saved["startup_seconds"], saved.get("probe_seconds", 0.0),
                   saved.get("max_steps"), saved.get("training_only", False))


def least_budget(spent_s: float, timings: Timings) -> int:
    """Seconds of the shortest budget that fits :data:`MIN_STEPS` steps, an evaluation and the final test, rounded up
    to 10 s."""
    need = spent_s + timings.closing() + MIN_STEPS * timings.per_step()
    return math.ceil(need / (1 - SAFETY) / 10) * 10


def refuse_slow_step(budget_s: float, spent_s: float, step_s: float, budget_text: str, how: str) -> None:
    """One sentence, before any full step is timed, when start-up (``spent_s``) leaves no room, or one step of
    ``step_s`` seconds (a guess, ``how`` it was found: scaled up from a small batch, it runs high) would not fit; the
    timed steps of the plan decide the rest."""
    room = budget_s * (1 - SAFETY) - spent_s
    least = least_budget(spent_s, Timings(1, 1, False, step_s=step_s, eval_s=0.0, test_s=0.0))
    if room <= 0:
        raise UserError(f"a budget of {budget_text} is spent before training starts ({spent_s:.3g} s of start-up "
                        f"here: interpreter, imports, data, model); use --budget {least}s or more")
    if step_s > room:
        raise UserError(f"a budget of {budget_text} is shorter than one training step here: one takes about "
                        f"{step_s:.3g} s ({how}); use --budget {least}s or more, or a smaller data.image_size, "
                        f"--batch-size or --model")


def plan_budget(budget_s: float, spent_s: float, timings: Timings, budget_text: str,
                max_steps: int | None = None) -> BudgetPlan:
    """The plan of a fresh run (at most ``max_steps``), or one sentence with the least budget that works when fewer
    than :data:`MIN_STEPS` steps fit."""
    steps = timings.steps_that_fit(budget_s * (1 - SAFETY) - spent_s)
    if steps < MIN_STEPS:
        least = least_budget(spent_s, timings)
        raise UserError(f"a budget of {budget_text} leaves room for {max(steps, 0):,} training steps here "
                        f"({timings.step_s:.3g} s each, {timings.eval_s + timings.test_s:.3g} s to evaluate and test), "
                        f"fewer than {MIN_STEPS}; the least budget that works is about {format_duration(least)}: use "
                        f"--budget {least}s or more")
    return BudgetPlan(steps=min(steps, max_steps or steps), timings=timings, startup_seconds=spent_s,
                      max_steps=max_steps)


def time_the_run(step: Callable, untimed: int, train_batches, evaluate_pass: Callable, eval_loader, test_pass: Callable,
                 test_loader, device: torch.device, budget_s: float) -> tuple[float, float, float]:
    """Seconds of a training step, an evaluation pass and the final test (rule 1), within PROBE_SHARE of the budget:
    half for the steps, a quarter each for the passes (timed on slices of a batch, scaled per image)."""
    share = PROBE_SHARE * budget_s
    step_s = time_training_steps(step, train_batches, device, untimed=untimed,
                                 max_seconds=min(MAX_PROBE_SECONDS, share / 2))
    target = min(EVAL_PROBE_SECONDS, share / 4)
    return (step_s, time_evaluation(evaluate_pass, eval_loader, device, target),
            time_evaluation(test_pass, test_loader, device, target))


def plan_run(budget_text: str, started: float, guess: tuple[float, str], time_pieces: Callable, shape: Timings,
             agree: Callable[[list[float]], list[float]], max_steps: int | None = None,
             training_only: bool = False) -> BudgetKeeper:
    """Rule 1 for a fresh run of ``shape`` (its times are not read): refused at once when start-up (from the
    ``time.perf_counter()`` reading ``started``) or a first ``guess`` of the step time (seconds, how it was found)
    leaves no room; else ``time_pieces(budget_s)`` gives the step, evaluation and test times to plan from. Every
    process follows rank 0's numbers (``agree``). The run never goes past ``max_steps``. ``training_only``: the
    budget holds the training and its evaluations alone, so start-up, the timing, the final test and the finish are
    planned as taking no time of it."""
    budget_s = parse_duration(budget_text)
    guess_s, spent = agree([guess[0], time.perf_counter() - started])
    if training_only:
        spent = 0.0
    refuse_slow_step(budget_s, spent, guess_s, budget_text, guess[1])
    probe_start = time.perf_counter()
    times = time_pieces(budget_s)
    now = time.perf_counter()
    step_s, eval_s, test_s, spent, probe_s = agree([*times, now - started, now - probe_start])
    timings = replace(shape, step_s=step_s, eval_s=eval_s, test_s=test_s)
    if training_only:
        spent, timings = 0.0, replace(timings, test_s=0.0, finish_s=0.0)
    plan = plan_budget(budget_s, spent, timings, budget_text, max_steps)
    plan.probe_seconds, plan.training_only = probe_s, training_only
    return BudgetKeeper(budget_s, plan, agree)


class BudgetKeeper:
    """Owns a budget run's end: asked every :meth:`fit_every` steps and at every epoch end to fit it again (rule 2),
    told of every evaluation's time, and saved in checkpoints. ``agree`` gives every process rank 0's numbers
    (identity on one)."""

    def __init__(self, budget_s: float, plan: BudgetPlan, agree: Callable[[list[float]], list[float]] = lambda v: v,
                 clock=time.perf_counter):
        self.budget_s, self.plan, self.agree, self.clock = budget_s, plan, agree, clock
        self.end = plan.steps
        self.step_seconds = plan.timings.step_s  # smoothed measured seconds per training step
        self.eval_seconds: float | None = None  # the last evaluation measured in the run
        self.spent_before = plan.startup_seconds  # seconds of the budget used before this process started training
        self.stretch: Stretch | None = None
        self._t0 = self.clock()  # this process's share of the budget counts from here
        self.mark(0)

    def mark(self, step: int) -> None:
        """Training (re)starts at ``step`` now: the next measured window begins here."""
        self._mark_t, self._mark_step = self.clock(), step

    def spent(self) -> float:
        """Seconds of the budget used so far: start-up (unless the budget holds training alone), then training,
        evaluations and tests, across resumes."""
        return self.spent_before + self.clock() - self._t0

    def left(self) -> float:
        return max(self.budget_s - self.spent(), 0.0)

    def fit_every(self, log_every: int) -> int:
        """Steps between fits of the end: those of FIT_SECONDS at the planned step time, at most ``log_every``. The
        plan is every process's, so all fit (and agree) at the same steps."""
        return max(1, min(log_every, round(FIT_SECONDS / self.plan.timings.step_s)))

    def fit_end(self, step: int) -> int:
        """Every :meth:`fit_every` steps or at an epoch end: measure the steps since the last call, fit the run's
        last step again (rule 2) and return it."""
        now = self.clock()
        if step > self._mark_step:
            window = now - self._mark_t
            weight = 1 - math.exp(-window / SMOOTHING_SECONDS)
            self.step_seconds += weight * (window / (step - self._mark_step) - self.step_seconds)
        self._mark_t, self._mark_step = now, step
        fit = max(step + 1, step + self.timings_now().steps_that_fit(self.budget_s * (1 - SAFETY) - self.spent(),
                                                                     step))
        fit = min(fit, max(self.plan.max_steps or fit, step + 1))
        end = fit if abs(fit - self.end) > max(1.0, HYSTERESIS * (self.end - step)) else self.end
        end = int(self.agree([float(end)])[0])
        if end != self.end:
            self.move_end(step, end)
        return self.end

    def timings_now(self) -> Timings:
        """The plan's timings scaled to the machine as measured so far: the one place they are scaled. Until an
        evaluation is measured, a slower machine is slower at everything; faster steps may only be the timed steps'
        warm-up, which the evaluation and test, timed apart, did not have: they keep their plan."""
        planned = self.plan.timings
        speed = self.step_seconds / planned.step_s
        ratio = self.eval_seconds / planned.eval_s if self.eval_seconds else max(speed, 1.0)
        return replace(planned, step_s=self.step_seconds, eval_s=planned.eval_s * ratio,
                       test_s=planned.test_s * ratio, finish_s=planned.finish_s * speed)

    def stretched(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> Stretch:
        """The run's schedule, built for the plan's steps, made to end wherever the keeper ends the run (rule 3)."""
        self.stretch = Stretch(scheduler, self.plan.steps)
        return self.stretch

    def move_end(self, step: int, end: int) -> None:
        self.end = end
        if self.stretch is not None:
            self.stretch.finish_at(step, end)

    def evaluated(self, seconds: float) -> None:
        """An evaluation took ``seconds``: later fits count evaluations at that speed, and not as training time."""
        self.eval_seconds = seconds
        self._mark_t += seconds

    def state_dict(self) -> dict:
        return {"budget_seconds": self.budget_s, "plan": asdict(self.plan), "end": self.end,
                "step_seconds": self.step_seconds, "eval_seconds": self.eval_seconds, "spent": self.spent()}

    @classmethod
    def from_state(cls, state: dict, budget_s: float, shape: Timings, step: int, agree=lambda values: values,
                   clock=time.perf_counter) -> BudgetKeeper:
        """A resumed run's keeper, of the run's ``shape`` now; a different ``budget_s`` than the saved one moves the
        end at the next fit."""
        keeper = cls(budget_s, BudgetPlan.from_dict(state["plan"], shape), agree, clock)
        keeper.end, keeper.step_seconds = state["end"], state["step_seconds"]
        keeper.eval_seconds, keeper.spent_before = state["eval_seconds"], state["spent"]
        keeper.mark(step)
        return keeper

    def describe(self) -> str:
        p, t = self.plan, self.plan.timings
        changed = "" if self.end == p.steps else f" (now {self.end:,})"
        capped = f" (max_epochs: at most {p.max_steps:,})" if p.max_steps else ""
        counted = (f", {t.test_s:.3g} s for the final test and {p.startup_seconds:.3g} s of start-up "
                   f"({p.probe_seconds:.2g} s of it timing) measured here" if not p.training_only else
                   " measured here; the budget holds the training and its evaluations alone (start-up, the plan's "
                   "timing and the final test are not counted)")
        return (f"budget {format_duration(self.budget_s)}: {p.steps:,} steps{changed}{capped}, planned from "
                f"{t.step_s:.3g} s per step, {t.eval_s:.3g} s per evaluation{counted}; the lr schedule ends at the "
                f"last step")


class Stretch:
    """Steps an LR scheduler built for ``length`` steps so that it ends at the run's last optimizer step: one
    scheduler step per optimizer step until the end moves, then proportionally more (an earlier end: the rest of the
    schedule compressed) or fewer (a later one: stretched), with no jump in the learning rate."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler, length: int):
        self.scheduler, self.length = scheduler, length
        self.position, self.rate = 0.0, 1.0

    def step(self) -> None:
        self.position = min(self.position + self.rate, float(self.length))
        while self.scheduler.last_epoch < math.floor(self.position + 1e-9):
            self.scheduler.step()

    def finish_at(self, step: int, end: int) -> None:
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


