"""`--budget`: the duration syntax, the plan's arithmetic and the schedule compression on known numbers
(milliseconds), the keeper on a simulated clock (slower, faster, drifting and noisy machines), then real budget runs:
planned from measured speed with the schedule ending at the last step, resumed after SIGKILL with the keeper's state,
and refused in one sentence when too short."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from resnet.config import load_config, parse_duration
from resnet.errors import UserError
from resnet.io import load_checkpoint
from resnet.train.budget import (EVAL_MARGIN, FINISH_SECONDS, FIT_SECONDS, MIN_STEPS, SAFETY, BudgetKeeper,
                                 BudgetPlan, Stretch, Timings, plan_budget, plan_run)
from resnet.train.timing import process_start
from resnet.train.optim import build_scheduler

# 512 Fashion-MNIST images in batches of 32: 16 steps per epoch; 1,000 test images.
TINY = ["--train-limit", "512", "--batch-size", "32", "--set", "threads=1", "--set", "data.val_split=0",
        "--set", "log_every=4", "--set", "schedule.name=cosine", "--set", "schedule.warmup_epochs=0", "--set", "schedule.warmup_iters=0",
        "--set", "optim.lr=0.05", "--set", "data.test_limit=1000", "--set", "test_tta=none"]


def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet", "train", "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, timeout=600)


def lrs(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in map(json.loads, (run_dir / "steps.jsonl").read_text().splitlines())}


def assert_schedule_ends_at_the_last_step(run_dir: Path, steps: int, length: int) -> None:
    """The final checkpoint is at step ``steps`` and its schedule, built for ``length`` steps, has reached its end
    there (read from the scheduler's position: the last log step may fall a few steps before the run's end)."""
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["run"]["step"] == steps and last["scheduler"]["length"] == length
    assert last["scheduler"]["position"] == pytest.approx(length)


# ----------------------------------------------------------------------------------------- arithmetic (milliseconds)


def test_durations():
    assert [parse_duration(t) for t in ("90s", "10m", "1h", "1h30m", "1.5h", "600", "2m30s", " 10M ")] == \
        [90, 600, 3600, 5400, 5400, 600, 150, 600]
    for bad in ("", "abc", "10x", "1h30", "0s", "-5m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def timings(steps_per_epoch: int, eval_every: int = 1, last_eval: bool = True, step_s: float = 0.1,
            eval_s: float = 4.0, test_s: float = 6.0) -> Timings:
    return Timings(steps_per_epoch, eval_every, last_eval, step_s, eval_s, test_s)


def test_steps_that_fit_count_evaluations_test_and_finish():
    # 100 steps per epoch, evaluated every 2 epochs: 0.1 s per step + 4 s / 200 steps = 0.12 s per step on average.
    t = timings(100, 2)
    assert t.per_step() == pytest.approx(0.12)
    # 1,200 steps: evaluations at steps 200, 400, ..., 1000 on the way, then the closing: the last evaluation (at
    # 1,200) and the test, each with its margin, and the finish
    room = 1200 * 0.1 + 5 * 4.0 + (4.0 + 6.0) * (1 + EVAL_MARGIN) + FINISH_SECONDS
    assert t.to_end(0, 1200) == pytest.approx(room)
    assert t.steps_that_fit(room) == 1200
    assert t.steps_that_fit(room - 0.01) == 1199
    # from step 1,000 (its evaluation done), 200 more steps take the closing's time and theirs only
    assert t.steps_that_fit(200 * 0.1 + (4.0 + 6.0) * (1 + EVAL_MARGIN) + FINISH_SECONDS, step=1000) == 200
    # when the last evaluation is the final test, only the test closes the run
    assert timings(100, last_eval=False).to_end(0, 50) == pytest.approx(5.0 + 6.0 * (1 + EVAL_MARGIN) + FINISH_SECONDS)
    # the finish is what it is said to be (the keeper scales it with the machine's speed)
    assert Timings(100, 1, False, 0.1, 4.0, 6.0, finish_s=6.0).to_end(0, 50) == pytest.approx(5.0 + 6.0 * 1.15 + 6.0)


def test_plan_holds_back_the_safety_share_and_the_start_up():
    plan = plan_budget(600.0, 20.0, timings(100), "10m")
    room = 600 * (1 - SAFETY) - 20
    assert plan.steps == timings(100).steps_that_fit(room)
    assert (plan.timings, plan.startup_seconds) == (timings(100), 20.0)


def test_too_short_a_budget_names_the_least_that_works():
    with pytest.raises(UserError) as err:
        plan_budget(20.0, 10.0, timings(469), "20s")
    message = str(err.value)
    assert message.startswith("a budget of 20s leaves room for ") and "\n" not in message
    least = int(message.split("use --budget ")[1].split("s or more")[0])
    assert plan_budget(least, 10.0, timings(469), f"{least}s").steps >= MIN_STEPS  # and that one works
    assert least - 10 < (10 + timings(469).closing() + MIN_STEPS * timings(469).per_step()) / (1 - SAFETY)


def test_a_budget_shorter_than_an_epoch_plans_the_steps_that_fit():
    plan = plan_budget(60.0, 10.0, timings(469), "60s")
    assert MIN_STEPS <= plan.steps < 469
    assert plan.steps == timings(469).steps_that_fit(60 * (1 - SAFETY) - 10)


def test_a_budget_of_training_alone_leaves_out_start_up_timing_and_the_final_test():
    started = time.perf_counter() - 30.0  # 30 s of start-up already spent
    pieces = lambda budget_s: (0.1, 4.0, 6.0)  # step, evaluation, final test: what the plan would time
    shape = Timings(100, 1, False, 0.0, 0.0, 0.0)
    whole = plan_run("60s", started, (0.1, "guessed"), pieces, shape, lambda v: v)
    alone = plan_run("60s", started, (0.1, "guessed"), pieces, shape, lambda v: v, training_only=True)
    assert whole.plan.steps == replace(shape, step_s=0.1, eval_s=4.0, test_s=6.0).steps_that_fit(
        60 * (1 - SAFETY) - whole.plan.startup_seconds)
    assert alone.plan.steps == replace(shape, step_s=0.1, eval_s=4.0, test_s=0.0, finish_s=0.0).steps_that_fit(
        60 * (1 - SAFETY))  # 421 steps, against 142 when the start-up and the test are paid for
    assert alone.plan.steps > 1.9 * whole.plan.steps
    assert whole.spent() >= 30 and alone.spent() < 1
    assert "start-up, the plan's timing and the final test are not counted" in alone.describe()
    assert BudgetPlan.from_dict(asdict(alone.plan), shape).training_only  # a resumed run keeps what its budget holds


# ------------------------------------------------------------------------- the keeper on a simulated clock (rule 2)


class Clock:
    """A clock the simulated run moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(step_s, eval_s: float = 4.0, test_s: float = 6.0, budget_s: float = 600.0, plan_step_s: float = 0.1,
             steps_per_epoch: int = 500, log_every: int = 50, planned_eval_s: float = 4.0, planned_test_s: float = 6.0,
             last_eval: bool = True):
    """A run planned at ``plan_step_s`` seconds per step (and the evaluation and test at their planned times) whose
    steps really take ``step_s(step)``, evaluated at every epoch end in ``eval_s`` and at its end unless
    ``last_eval`` is false (the final test is then its last evaluation), asked every ``fit_every`` steps and at every
    epoch end as the trainer does. Returns the keeper, the budget's seconds used to the end of the final test, and
    every end the keeper gave."""
    clock = Clock()
    plan = plan_budget(budget_s, 20.0, timings(steps_per_epoch, 1, last_eval, plan_step_s, planned_eval_s,
                                               planned_test_s), "budget")
    keeper, ends, step = BudgetKeeper(budget_s, plan, clock=clock), [], 0
    stretch = keeper.stretched(Stretch(torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lambda _: 1.0), plan.steps))
    assert stretch is keeper.stretch
    while step < keeper.end:
        step += 1
        clock.now += step_s(step)
        if step == keeper.end:
            if last_eval:
                clock.now += eval_s
                keeper.evaluated(eval_s)
        elif step % steps_per_epoch == 0:
            clock.now += eval_s
            keeper.evaluated(eval_s)
            ends.append(keeper.fit_end(step))
        elif step % keeper.fit_every(log_every) == 0:
            ends.append(keeper.fit_end(step))
    used = keeper.spent() + test_s + 1.8  # the final test, then the finish (1.8 s measured)
    return keeper, used, ends


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.0, 1.25, 2.0])
def test_a_run_at_another_speed_than_planned_ends_within_its_budget_and_uses_it(speed):
    keeper, used, _ = simulate(lambda step: 0.1 * speed)
    assert used <= 600.0 and used >= 0.95 * 600.0
    if speed != 1.0:
        assert (keeper.end > keeper.plan.steps) == (speed < 1.0)


def test_a_machine_that_slows_down_half_way_still_ends_within_the_budget():
    keeper, used, _ = simulate(lambda step: 0.1 if step < 2000 else 0.15)
    assert 0.95 * 600.0 <= used <= 600.0 and keeper.end < keeper.plan.steps


def test_the_end_does_not_jitter_with_noisy_steps():
    noise = torch.Generator().manual_seed(0)
    jitter = torch.empty(10_000).uniform_(0.97, 1.03, generator=noise).tolist()  # +-3% per step
    keeper, used, ends = simulate(lambda step: 0.1 * jitter[step])
    moves = sum(a != b for a, b in zip(ends, ends[1:]))
    assert moves <= 10 and len(ends) > 90 and 0.95 * 600.0 <= used <= 600.0


@pytest.mark.parametrize("plan_step_s, step_s", [(13.0, 7.0), (1.65, 1.85)])
def test_a_run_of_few_slow_steps_is_fitted_while_it_runs(plan_step_s, step_s):
    # A 5-minute run of a few seconds a step (a 2-core CPU, 234 steps an epoch) reaches no log step of 50 before its
    # end, or few: it is fitted every FIT_SECONDS, so it uses its budget when its steps are faster than planned (the
    # first timed step of a big net runs slow) and stays within it when they are slower.
    # (At least 90% of it rather than 95%: one step, 2-4% of this budget, is held back as the end's hysteresis.)
    keeper, used, ends = simulate(lambda step: step_s, budget_s=300.0, plan_step_s=plan_step_s, steps_per_epoch=234)
    assert keeper.fit_every(50) == max(1, round(FIT_SECONDS / plan_step_s)) < 50
    assert 0.9 * 300.0 <= used <= 300.0 and (keeper.end > keeper.plan.steps) == (step_s < plan_step_s)


def test_steps_faster_than_planned_say_nothing_of_a_test_not_yet_measured():
    # A big net on two cores whose first timed step ran twice as slow as the rest (warm-up) and whose final test,
    # timed apart, takes what was planned: the fits must not shrink the test with the steps. (90%: a step is 2% of
    # this budget, the test's margin 3%.)
    keeper, used, _ = simulate(lambda step: 5.6, eval_s=51.0, test_s=51.0, budget_s=300.0, plan_step_s=11.8,
                               planned_eval_s=52.0, planned_test_s=56.0, steps_per_epoch=234, last_eval=False)
    assert keeper.end > keeper.plan.steps and 0.9 * 300.0 <= used <= 300.0


def test_a_slower_evaluation_than_planned_moves_the_end_earlier():
    keeper, used, _ = simulate(lambda step: 0.1, eval_s=12.0, test_s=18.0)
    assert used <= 600.0 and keeper.end < simulate(lambda step: 0.1)[0].end


def test_the_keeper_state_round_trips_and_a_new_budget_moves_the_end():
    clock = Clock()
    plan = plan_budget(600.0, 20.0, timings(500), "10m")
    keeper = BudgetKeeper(600.0, plan, clock=clock)
    clock.now = 100.0
    keeper.fit_end(800)
    state = json.loads(json.dumps(keeper.state_dict()))  # what a checkpoint and run.json keep
    later = Clock()
    shape = timings(500, step_s=0.0, eval_s=0.0, test_s=0.0)  # a resume's timings come from its checkpoint
    again = BudgetKeeper.from_state(state, 600.0, shape, step=800, clock=later)
    assert (again.end, again.step_seconds, again.spent()) == (keeper.end, keeper.step_seconds, keeper.spent())
    assert again.plan == keeper.plan
    longer = BudgetKeeper.from_state(state, 1200.0, shape, step=800, clock=later)
    later.now = 80.0
    assert longer.fit_end(1600) > keeper.end


def schedule(steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    cfg = load_config("fashion-mnist-resnet20", {"schedule.name": "linear", "schedule.warmup_epochs": 0,
                                                 "schedule.warmup_iters": 0}).schedule
    return build_scheduler(optimizer, cfg, 10, steps)


@pytest.mark.filterwarnings("ignore:Detected call of")  # no optimizer steps here
def test_stretch_follows_the_schedule_then_compresses_it_without_a_jump():
    plain, stretched = schedule(10), Stretch(schedule(10), 10)
    for _ in range(4):
        plain.step()
        stretched.step()
        assert stretched.get_last_lr() == plain.get_last_lr()
    assert stretched.get_last_lr() == [pytest.approx(0.6)]  # linear: 1 - 4/10
    stretched.finish_at(4, 7)  # the rest of the schedule (positions 4..10) in 3 steps: 2 positions per step
    seen = []
    for _ in range(3):
        stretched.step()
        seen.append(stretched.get_last_lr()[0])
    assert seen == [pytest.approx(0.4), pytest.approx(0.2), pytest.approx(0.0)]  # ends at 0 at step 7
    again = Stretch(schedule(10), 10)
    again.load_state_dict(stretched.state_dict())
    assert (again.position, again.rate, again.get_last_lr()) == (10.0, 2.0, stretched.get_last_lr())


def test_budget_config_errors():
    with pytest.raises(UserError, match="either budget or iterations"):
        load_config("fashion-mnist-resnet20", {"budget": "10m", "iterations": 100})
    with pytest.raises(UserError, match="not step"):
        load_config("fashion-mnist-resnet20", {"budget": "10m", "schedule.name": "step"})
    with pytest.raises(UserError, match="budget '10 minutes' is not a duration"):
        load_config("fashion-mnist-resnet20", {"budget": "10 minutes"})


# --------------------------------------------------------------------------------------------------- real runs


def test_a_budget_run_plans_from_measured_speed_and_ends_its_schedule_there(tmp_path):
    out = tmp_path / "run"
    proc = train(out, "--budget", "15s", "--set", "schedule.name=linear")
    assert proc.returncode == 0, proc.stderr
    assert "budget_plan" not in (out / "config.yaml").read_text()  # the config is what the user asked for
    keeper = json.loads((out / "run.json").read_text())["budget"]
    plan = keeper["plan"]
    t = Timings(**plan["timings"])
    assert plan["steps"] >= 16 and t.step_s > 0 and t.test_s > 0
    assert plan["startup_seconds"] > 0 and 0 < plan["probe_seconds"] <= 0.05 * 15 + 3
    assert f"budget 0:15: {plan['steps']:,} steps" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == keeper["end"] and results["budget"]["seconds"] == 15
    assert results["budget"]["seconds_used"] <= 15 + 2  # the whole command is timed in the benchmark, not here
    # the first plan's own arithmetic fits the budget (the last evaluation is the final test: last_eval is false)
    assert (t.steps_per_epoch, t.eval_every, t.last_eval) == (16, load_config(None, resume=out).eval_every, False)
    assert plan["startup_seconds"] + t.to_end(0, plan["steps"]) <= 15 * (1 - SAFETY)
    # the lr schedule, built for the plan, was stretched or compressed to end at the run's last step
    assert_schedule_ends_at_the_last_step(out, results["steps"], plan["steps"])


def test_sigkill_then_resume_continues_the_keepers_end_and_time(tmp_path):
    out = tmp_path / "run"
    common = ["--budget", "20s", "--set", "checkpoint_every=4", "--set", "log_every=2"]
    proc = subprocess.Popen([sys.executable, "-m", "resnet", "train", "--out", str(out), *TINY, *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "step-00000008.pt").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["run"]
    assert saved["budget"]["spent"] > saved["budget"]["plan"]["startup_seconds"]
    resumed = subprocess.run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {out / 'checkpoints' / 'last.pt'} at step {saved['step']}" in resumed.stdout
    assert f"budget 0:20: {saved['budget']['plan']['steps']:,} steps" in resumed.stdout  # the saved plan, not a new one
    results = json.loads((out / "results.json").read_text())
    # the resumed process counts on from the killed one's time, not from a whole budget of its own
    assert saved["budget"]["spent"] <= results["budget"]["seconds_used"] <= 20 + 2
    assert_schedule_ends_at_the_last_step(out, results["steps"], saved["budget"]["plan"]["steps"])


def test_too_short_a_budget_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    proc = train(out, "--budget", "2s")
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("resnet: error: a budget of 2s ") and "use --budget" in message
    assert not out.exists()


def test_a_command_line_budget_counts_from_the_start_of_its_process():
    """The interpreter's start and the imports (seconds on a cold machine) are part of what a budget covers."""
    code = ("import time; time.sleep(1.0); from resnet.train.timing import process_start; "
            "print(time.perf_counter() - process_start())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.0 <= age < 60
    assert process_start(max_age_s=0.0) == pytest.approx(time.perf_counter(), abs=0.5)  # too old: counts from now
