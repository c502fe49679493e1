"""The training resolution a budget allows: the rule on its own, the planning around it, and a budget run on a
simulated clock (its timings replaced by numbers proportional to the crop's area) that trains smaller crops, says so
and evaluates at the full size."""

from __future__ import annotations

import json

import pytest

from resnet.config import load_config
from resnet.train import train
from resnet.train import assembly as assembly_module
from resnet.train.budget import BudgetKeeper, BudgetPlan, Timings
from resnet.train.resolution import MIN_EPOCHS, MIN_SHARE, fit_resolution, train_size_for

from .test_folder_defaults import write_rgb_photos


@pytest.mark.parametrize("epochs, size", [(40.0, 128), (MIN_EPOCHS, 128), (12.0, 104), (4.0, 64), (0.5, 64)])
def test_the_full_size_while_enough_epochs_fit_then_the_size_that_fits_them(epochs, size):
    assert train_size_for(128, epochs) == size
    assert train_size_for(128, epochs) >= MIN_SHARE * 128 and train_size_for(128, epochs) % 8 == 0


def planner(sizes: list[int], steps_at: dict[int, int], max_steps: int | None = None):
    """A plan() whose steps depend on the current size (the last one set), as timing at that size would give."""
    def plan() -> BudgetKeeper:
        steps = min(steps_at[sizes[-1]], max_steps or 10**9)
        return BudgetKeeper(60.0, BudgetPlan(steps, Timings(10, 1, True, 0.1, 0.1, 0.1), 1.0, max_steps=max_steps))
    return plan


def test_planning_again_at_the_chosen_size_and_saying_why():
    sizes = [128]
    keeper, size, note = fit_resolution(planner(sizes, {128: 40, 64: 300}), sizes.append, 128)
    assert (size, sizes, keeper.plan.steps) == (64, [128, 64], 300)
    assert note.startswith("training crops of 64 px, evaluation at 128 px: at 128 px the budget holds 4 epochs")
    sizes = [128]
    assert fit_resolution(planner(sizes, {128: 400}), sizes.append, 128)[1:] == (128, None)
    sizes = [128]  # max_epochs ends the run before the budget does: nothing to buy
    assert fit_resolution(planner(sizes, {128: 400}, max_steps=50), sizes.append, 128)[1:] == (128, None)


def test_a_budget_that_holds_few_epochs_trains_smaller_crops_and_evaluates_at_the_full_size(tmp_path, monkeypatch):
    root = write_rgb_photos(tmp_path / "photos", per_class=40, size=(80, 64))  # 72 training images, batch 16
    timed = []

    def simulated(step, untimed, batches, evaluate_pass, eval_loader, test_pass, test_loader, device, budget_s):
        side = next(iter(batches))[0].shape[-1]
        timed.append(side)
        return 1.0 * (side / 64) ** 2, 0.2, 0.2  # 1 s a step at 64 px: a 20-s budget holds about 3 epochs

    monkeypatch.setattr(assembly_module, "time_the_run", simulated)
    out = tmp_path / "run"
    cfg = load_config(None, {"data.name": f"imagefolder:{root}", "out": str(out), "budget": "20s"},
                      ["threads=1", "data.memory=on", "batch_size=16", "data.fit_resolution=true"])
    lines = []
    result = train(cfg, log=lines.append)
    assert timed == [64, 32]  # planned at the full size, then again at the size that fits the epochs
    assert "\ntraining crops of 32 px, evaluation at 64 px: at 64 px the budget holds" in "\n".join(lines)
    assert json.loads((out / "run.json").read_text())["train_size"] == 32
    assert json.loads((out / "model.json").read_text())["input_size"] == [3, 64, 64]
    assert result.results["test_count"] == 8
