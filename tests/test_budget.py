"""`--budget`: the duration syntax, the plan's arithmetic and the schedule compression on known numbers
(milliseconds), then real budget runs: planned from measured speed, shortened when slower than planned, resumed
bit-identically after SIGKILL, and refused in one sentence when too short."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from resnet.config import BudgetPlan, load_config, parse_duration
from resnet.errors import UserError
from resnet.io import load_checkpoint
from resnet.train.budget import (EVAL_MARGIN, FINISH_SECONDS, MIN_STEPS, REFIT_SHARES, SAFETY, Stretch,
                                 closing_seconds, plan_budget, process_start, refit_due, refitted, retimed,
                                 seconds_per_step, shortened, steps_that_fit)
from resnet.train.optim import build_scheduler

# 512 Fashion-MNIST images in batches of 32: 16 steps per epoch; 1,000 test images.
TINY = ["--train-limit", "512", "--batch-size", "32", "--set", "threads=1", "--set", "data.val_split=0",
        "--set", "log_every=4", "--set", "schedule.name=cosine", "--set", "schedule.warmup_epochs=0", "--set", "schedule.warmup_iters=0",
        "--set", "optim.lr=0.05", "--set", "data.test_limit=1000", "--set", "test_tta=none"]


def train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet", "train", "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, timeout=600)


def plan_override(**values) -> str:
    plan = {"steps": 32, "schedule_steps": 32, "step_seconds": 0.05, "eval_seconds": 0.1, "test_seconds": 0.2,
            "startup_seconds": 1.0, **values}
    return "budget_plan=" + json.dumps(plan)


def lrs(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in map(json.loads, (run_dir / "steps.jsonl").read_text().splitlines())}


def assert_schedule_ends_at_the_last_step(run_dir: Path, steps: int, length: int) -> None:
    """The final checkpoint is at step ``steps`` and its schedule, built for ``length`` steps, has reached its end
    there (read from the scheduler's position: the last log step may fall a few steps before the run's end)."""
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == steps and last["scheduler"]["length"] == length
    assert last["scheduler"]["position"] == pytest.approx(length)


# ----------------------------------------------------------------------------------------- arithmetic (milliseconds)


def test_early_refits_come_at_their_shares_of_the_plan_and_then_stop():
    plan = BudgetPlan(steps=1000, schedule_steps=1000, step_seconds=0.1, eval_seconds=1.0, test_seconds=1.0,
                      startup_seconds=1.0)
    due = []
    for step in range(1, 1001):
        if refit_due(plan, step):
            due.append(step)
            plan.refits += 1
    assert due == [round(share * 1000) for share in REFIT_SHARES] and plan.refits == len(REFIT_SHARES)


def test_durations():
    assert [parse_duration(t) for t in ("90s", "10m", "1h", "1h30m", "1.5h", "600", "2m30s", " 10M ")] == \
        [90, 600, 3600, 5400, 5400, 600, 150, 600]
    for bad in ("", "abc", "10x", "1h30", "0s", "-5m"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_steps_that_fit_count_evaluations_test_and_finish():
    # 100 steps per epoch, evaluated every 2 epochs: 0.1 s per step + 4 s / 200 steps = 0.12 s per step.
    assert seconds_per_step(0.1, 4.0, 100, 2) == pytest.approx(0.12)
    # one more evaluation and the test (each with its margin), the finish, 1,200 steps
    room = (4.0 + 6.0) * (1 + EVAL_MARGIN) + FINISH_SECONDS + 1200 * 0.12
    assert steps_that_fit(room, 0.1, 4.0, 6.0, 100, 2) == 1200
    assert steps_that_fit(room - 0.01, 0.1, 4.0, 6.0, 100, 2) == 1199


def test_plan_holds_back_the_safety_share_and_the_start_up():
    plan = plan_budget(600.0, 20.0, 0.1, 4.0, 6.0, 100, 1, "10m")
    room = 600 * (1 - SAFETY) - 20
    assert plan.steps == steps_that_fit(room, 0.1, 4.0, 6.0, 100, 1) == plan.schedule_steps
    assert (plan.step_seconds, plan.eval_seconds, plan.test_seconds, plan.startup_seconds) == (0.1, 4.0, 6.0, 20.0)


def test_too_short_a_budget_names_the_least_that_works():
    with pytest.raises(UserError) as err:
        plan_budget(20.0, 10.0, 0.1, 4.0, 6.0, 469, 1, "20s")
    message = str(err.value)
    assert message.startswith("a budget of 20s leaves room for ") and "\n" not in message
    least = int(message.split("use --budget ")[1].split("s or more")[0])
    assert plan_budget(least, 10.0, 0.1, 4.0, 6.0, 469, 1, f"{least}s").steps >= MIN_STEPS  # and that one works
    assert least - 10 < (10 + closing_seconds(4.0, 6.0) + MIN_STEPS * seconds_per_step(0.1, 4.0, 469, 1)) / (1 - SAFETY)


def test_a_budget_shorter_than_an_epoch_plans_the_steps_that_fit():
    plan = plan_budget(60.0, 10.0, 0.1, 4.0, 6.0, 469, 1, "60s")
    assert MIN_STEPS <= plan.steps < 469
    assert plan.steps == steps_that_fit(60 * (1 - SAFETY) - 10, 0.1, 4.0, 6.0, 469, 1)


def test_a_plan_is_shortened_only_when_the_rest_would_overrun():
    plan = BudgetPlan(steps=1000, schedule_steps=1000, step_seconds=0.1, eval_seconds=1.0, test_seconds=2.0,
                      startup_seconds=5.0)
    # at step 500 after 60 s: 500 more steps at 0.1 s (+ evaluations) fit in 200 s
    assert shortened(plan, 200.0, 60.0, 500, 0.1, 100, 1) is None
    # twice slower: the rest would take ~100 s + 5 evaluations; it ends where the budget does
    new = shortened(plan, 120.0, 60.0, 500, 0.2, 100, 1)
    assert new == 500 + steps_that_fit(120 * (1 - SAFETY) - 60, 0.2, 1.0, 2.0, 100, 1) and 500 < new < 1000
    # never longer than the plan, and at least one more step even when the budget is gone
    assert shortened(plan, 60.0, 60.0, 500, 5.0, 100, 1) == 501


def test_an_evaluation_timed_during_the_run_rescales_the_final_test_and_can_shorten_the_plan():
    plan = BudgetPlan(steps=1000, schedule_steps=1000, step_seconds=0.1, eval_seconds=1.0, test_seconds=2.0,
                      startup_seconds=5.0)
    # at step 900 after 100 s of a 120 s budget: 100 steps (11 s with their evaluations), an evaluation, the test
    # and the finish fit, 119 s in all
    assert shortened(plan, 120.0, 100.0, 900, 0.1, 100, 1) is None
    now = retimed(plan, 2.0, 0.1)  # the machine now evaluates twice as slowly: so will the final test
    assert now.eval_seconds == 2.0 and now.test_seconds == pytest.approx(4.0) and now.steps == plan.steps
    assert plan.eval_seconds == 1.0 and plan.test_seconds == 2.0  # the saved plan keeps what it was made from
    assert 900 < shortened(now, 120.0, 100.0, 900, 0.1, 100, 1) < 1000


def test_before_the_first_evaluation_the_final_test_follows_the_training_speed():
    # An AVX2 run of the default recipe (2026-12-02): planned while the machine was slow (0.84 s per step, a 60 s
    # test), trained at 0.68 s per step, tested in 41 s; with about 3 epochs no evaluation came before the end.
    plan = BudgetPlan(steps=575, schedule_steps=575, step_seconds=0.84, eval_seconds=9.8, test_seconds=60.0,
                      startup_seconds=14.0)
    now = retimed(plan, None, 0.68)
    assert now.test_seconds == pytest.approx(60.0 * 0.68 / 0.84)
    assert now.eval_seconds == pytest.approx(9.8 * 0.68 / 0.84)
    # the re-fit at 25% of the plan gives the steps the faster test leaves room for, and the budget still holds
    at, spent = 144, 14.0 + 144 * 0.68
    longer = refitted(now, 600.0, spent, at, 0.68, 234, 3)
    assert longer > refitted(plan, 600.0, spent, at, 0.68, 234, 3)
    assert spent + (longer - at) * seconds_per_step(0.68, now.eval_seconds, 234, 3) + \
        closing_seconds(now.eval_seconds, now.test_seconds) <= 600.0 * (1 - SAFETY)
    assert retimed(plan, None, 0.84) == plan  # at the planned speed, the plan as made


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
    stretched.end_at(4, 7)  # the rest of the schedule (positions 4..10) in 3 steps: 2 positions per step
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
    proc = train(out, "--budget", "25s", "--set", "schedule.name=linear")
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    plan = saved["budget_plan"]
    assert plan["steps"] >= 16 and plan["step_seconds"] > 0 and plan["test_seconds"] > 0
    assert plan["startup_seconds"] > 0
    assert f"budget 0:25: {plan['schedule_steps']:,} steps" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == plan["steps"] and results["budget"]["seconds"] == 25
    # the first plan's own arithmetic fits the budget (the re-fit then uses the run's measured speed), and the lr
    # schedule ends at the last step
    spent = plan["startup_seconds"] + plan["schedule_steps"] * seconds_per_step(plan["step_seconds"], plan["eval_seconds"],
                                                                       16, saved["eval_every"])
    # (no evaluation besides the final test at the end: last_eval is false)
    assert spent + closing_seconds(plan["eval_seconds"], plan["test_seconds"], plan["last_eval"]) <= \
        25 * (1 - SAFETY) + 1e-9
    # Linear decay to 0 at the planned step: the lr logged at step s is the one step s used, peak x (1 - (s-1)/T).
    lr, total = lrs(out), plan["schedule_steps"]
    if plan["steps"] == total:  # (else re-fitted to the measured speed, or shortened: stretched or compressed)
        peak = lr[4] / (1 - 3 / total)
        assert lr[max(lr)] == pytest.approx(peak * (1 - (max(lr) - 1) / total), rel=1e-6)
        assert max(lr) > total - 4
    else:  # stretched or compressed to end at the new last step
        assert_schedule_ends_at_the_last_step(out, results["steps"], total)


def test_slower_than_planned_shortens_the_run_and_compresses_its_schedule(tmp_path):
    out = tmp_path / "run"
    # A plan made for a machine 100x faster than this one: 2,000 steps in a 12 s budget.
    proc = train(out, "--budget", "12s", "--set", plan_override(steps=2000, schedule_steps=2000, step_seconds=0.0004,
                                                                startup_seconds=0.5))
    assert proc.returncode == 0, proc.stderr
    assert "slower than planned" in proc.stdout and "the run now ends at step" in proc.stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())["budget_plan"]
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == saved["steps"] < 2000 and saved["schedule_steps"] == 2000
    assert_schedule_ends_at_the_last_step(out, results["steps"], 2000)  # compressed


def test_faster_than_planned_lengthens_the_run_and_stretches_its_schedule(tmp_path):
    out = tmp_path / "run"
    # A plan made for a machine 10x slower than this one: 20 steps (2 epochs) of 0.5 s in a 25 s budget.
    proc = train(out, "--budget", "25s", "--set", plan_override(steps=20, schedule_steps=20, step_seconds=0.5))
    assert proc.returncode == 0, proc.stderr
    assert "faster than planned" in proc.stdout and "to fill its budget" in proc.stdout
    saved = yaml.safe_load((out / "config.yaml").read_text())["budget_plan"]
    results = json.loads((out / "results.json").read_text())
    assert saved["refits"] >= 1 and results["steps"] == saved["steps"] > 20 and saved["schedule_steps"] == 20
    assert results["budget"]["seconds_used"] > 0.5 * 25  # the budget is used, not the 20 steps' few seconds
    assert_schedule_ends_at_the_last_step(out, results["steps"], 20)  # stretched


def test_sigkill_then_resume_follows_the_saved_plan_bit_identically(tmp_path):
    # A fixed plan, already re-fitted, in a generous budget: neither lengthened nor shortened, killed or not.
    plan = plan_override(steps=40, schedule_steps=40, refits=len(REFIT_SHARES))
    common = ["--budget", "10m", "--set", plan, "--set", "deterministic=true", "--set", "checkpoint_every=4",
              "--set", "log_every=1"]
    reference = train(tmp_path / "ref", *common)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "resnet", "train", "--out", str(out), *TINY, *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (out / "steps.jsonl").exists() or len((out / "steps.jsonl").read_text().splitlines()) < 23:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "budget 10:00: 40 steps" in resumed.stdout
    final, ref = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "ref" / "model.safetensors"))
    assert all(torch.equal(final[k], ref[k]) for k in ref)
    assert lrs(out) == lrs(tmp_path / "ref")


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
    code = ("import time; time.sleep(1.0); from resnet.train.budget import process_start; "
            "print(time.perf_counter() - process_start())")
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 1.0 <= age < 60
    assert process_start(max_age_s=0.0) == pytest.approx(time.perf_counter(), abs=0.5)  # too old: counts from now
