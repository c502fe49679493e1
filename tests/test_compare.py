"""`resnet compare`: the statements on known numbers (milliseconds), the recipe each family trains with, the plan's
checks, a tiny comparison through the command line, killed in its second cell and run again, and the refusal of
an old cell of another config."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from resnet.config import load_config
from resnet.errors import UserError
from resnet.experiments.comparison import DEFAULT_EPOCHS, DEFAULT_MODELS, model_table, plan, recipe_for
from resnet.experiments.statements import (beats, cheaper_successors_reaching, densenet_beats_resnet, reaches,
                                           statement_lines, statements, transformer_reaches_cnns)

from .conftest import kill_at_first_checkpoint, main_cli

TINY = ["--seeds", "1", "--set", "iterations=8", "--set", "data.train_limit=256", "--set", "data.test_limit=200",
        "--set", "batch_size=32", "--set", "threads=1", "--set", "precision=fp32", "--set", "test_tta=none",
        "--set", "checkpoint_every=2"]


def row(model: str, lineage: str, top1: float, std: float = 0.0, macs: float = 50e6, params: int = 1_000_000,
        seeds: int = 2) -> dict:
    return {"model": model, "lineage": lineage, "top1": top1, "top1_std": std, "macs": macs, "params": params,
            "seeds": seeds}


# ------------------------------------------------------------------------------------------------------ statements


def test_reaching_and_beating_allow_for_the_spread():
    a, b = row("a", "x", 90.0, 0.5), row("b", "y", 91.0, 0.2)
    assert reaches(a, b) and not beats(b, a)  # 1.0 below, margin 2 x 0.5
    assert not reaches(row("a", "x", 89.9, 0.2), row("b", "y", 91.0, 0.3))  # 1.1 below, margin 0.6
    assert beats(row("a", "x", 92.0, 0.1), row("b", "y", 91.0, 0.4))  # 1.0 above, margin 0.8


def test_successors_that_reach_resnet20_with_fewer_macs():
    table = [row("resnet20", "resnet", 92.0, 0.2, macs=30e6), row("resnet56", "resnet", 93.0, 0.2, macs=96e6),
             row("shufflenet_v2_cifar", "shufflenet", 91.7, 0.1, macs=20e6),  # cheaper, within 2 x 0.2
             row("mobilenet_v3_cifar", "mobilenet", 90.0, 0.3, macs=25e6),  # cheaper, too far below
             row("densenet_bc100", "densenet", 94.0, 0.1, macs=200e6)]  # better, not cheaper
    s = cheaper_successors_reaching(table)
    assert s["answer"] == "yes" and s["models"] == ["shufflenet_v2_cifar"]
    assert "shufflenet_v2_cifar 91.70 ± 0.10 at 20.0 M (reaches)" in s["evidence"]
    assert "mobilenet_v3_cifar 90.00 ± 0.30 at 25.0 M (does not reach)" in s["evidence"]
    assert "densenet" not in s["evidence"]
    assert cheaper_successors_reaching(table[:2] + table[3:])["answer"] == "no"  # 2.0 below, margin 0.6, 2 seeds
    one_seed = [{**r, "seeds": 1, "top1_std": 0.0} for r in table[:2] + table[3:]]
    assert cheaper_successors_reaching(one_seed)["answer"] == "not shown"  # no spread measured: never "no"
    assert cheaper_successors_reaching(table[1:])["answer"] == "n/a"  # no resnet20
    s = cheaper_successors_reaching([table[0], table[4]])
    assert s["answer"] == "n/a" and "no successor in the comparison has fewer MACs" in s["evidence"]
    # the same question of parameters: mobilenet has fewer and does not reach; shufflenet has more
    by_params = [table[0], {**table[2], "params": 2_000_000}, {**table[3], "params": 500_000}]
    s = cheaper_successors_reaching(by_params, cost="params")
    assert s["answer"] == "no" and s["claim"].endswith("with fewer parameters") and "shufflenet" not in s["evidence"]


def test_densenet_against_the_resnet_of_nearest_parameters():
    table = [row("resnet20", "resnet", 91.0, 0.2, params=270_000), row("plain56", "resnet", 80.0, params=850_000),
             row("resnet56", "resnet", 92.0, 0.2, params=853_000),
             row("densenet_bc100", "densenet", 93.0, 0.3, params=769_000)]
    s = densenet_beats_resnet(table)
    assert s["answer"] == "yes" and s["pairs"] == [["densenet_bc100", "resnet56"]]  # nearest, and not the plain net
    assert "beats resnet56 92.00 ± 0.20" in s["evidence"]
    assert statement_lines({"d": s})[0].startswith("- DenseNet (densenet_bc100) beats the ResNet of about its "
                                                 "parameters (resnet56): **yes** (densenet_bc100 93.00 ± 0.30")
    # A spread wider than the gap: not a win, and not a loss either.
    wide = [r if r["model"] != "densenet_bc100" else row("densenet_bc100", "densenet", 93.0, 0.6, params=769_000)
            for r in table]
    s = densenet_beats_resnet(wide)
    assert s["answer"] == "not shown" and "is within the spread of resnet56" in s["evidence"]
    lost = [r if r["model"] != "densenet_bc100" else row("densenet_bc100", "densenet", 90.0, 0.1, params=769_000)
            for r in table]
    s = densenet_beats_resnet(lost)
    assert s["answer"] == "no" and "is beaten by resnet56" in s["evidence"]
    assert densenet_beats_resnet(table[:3])["answer"] == "n/a"
    # Every DenseNet is paired, smallest first, whatever the table's order: yes only when each beats its ResNet.
    both = [row("densenet_bc40", "densenet", 91.8, 0.1, params=176_000)] + table
    s = densenet_beats_resnet(both)
    assert s["answer"] == "yes" and s["pairs"] == [["densenet_bc40", "resnet20"], ["densenet_bc100", "resnet56"]]
    assert s["claim"] == "DenseNet (densenet_bc40, densenet_bc100) beats the ResNet of about its parameters " \
                         "(resnet20, resnet56)"
    mixed = [row("densenet_bc40", "densenet", 91.1, 0.1, params=176_000)] + table  # 0.1 above, margin 0.4
    s = densenet_beats_resnet(mixed)
    assert s["answer"] == "not shown" and "densenet_bc40 91.10 ± 0.10 (176,000 parameters) is within the spread " \
                                          "of resnet20" in s["evidence"] and "beats resnet56" in s["evidence"]


def test_the_transformer_against_the_cnns():
    table = [row("resnet20", "resnet", 91.0, 0.2), row("resnet56", "resnet", 92.0, 0.2),
             row("swin_cifar", "transformer", 88.0, 0.5), row("convnext_cifar", "convnext", 89.0, 0.4)]
    s = transformer_reaches_cnns(table)
    assert s["answer"] == "no" and "3 of 3 CNNs score higher; a transformer lacks" in s["evidence"]
    close = [r if r["model"] != "swin_cifar" else row("swin_cifar", "transformer", 90.2, 0.5) for r in table]
    assert transformer_reaches_cnns(close)["answer"] == "yes"  # 0.8 below, margin 1.0
    one_seed = [{**r, "seeds": 1, "top1_std": 0.0} for r in close]
    s = transformer_reaches_cnns(one_seed)
    assert s["answer"] == "not shown" and "one seed" in s["evidence"]
    assert transformer_reaches_cnns(table[:2])["answer"] == "n/a"
    # With several transformers the most accurate answers, wherever it stands in the table.
    two = [row("swin_w24_cifar", "transformer", 80.0, 0.5)] + close
    s = transformer_reaches_cnns(two)
    assert s["answer"] == "yes" and s["transformer"] == "swin_cifar" and "(the best of 2 transformers)" in s["evidence"]
    lines = statement_lines(statements(table, "after 2 epochs of 55,000 images, 2 seeds"))
    assert len(lines) == 4 and lines[3].startswith("- The transformer reaches the CNNs (resnet20's accuracy), after "
                                                   "2 epochs of 55,000 images, 2 seeds: **no**")


def test_model_table_means_over_seeds_in_order():
    runs = [{"model": m, "lineage": "resnet", "recipe": "r", "params": 1, "macs": 2, "test_top1": t,
             "img_per_s": s, "epochs": 3.0, "train_minutes": s / 100}
            for m, t, s in (("b", 90.0, 100.0), ("a", 80.0, 50.0), ("b", 92.0, 300.0))]
    table = model_table(runs)
    assert [r["model"] for r in table] == ["b", "a"]
    assert table[0]["top1"] == 91.0 and table[0]["top1_std"] == pytest.approx(2 ** 0.5)
    assert table[0]["img_per_s"] == 200.0 and table[0]["top1_seeds"] == [90.0, 92.0] and table[1]["seeds"] == 1
    assert table[0]["train_minutes"] == 2.0 and table[1]["train_minutes"] == 0.5


# ------------------------------------------------------------------------------------------------- recipes, plan


def test_each_family_trains_its_recipe_and_the_plan_checks_first(tmp_path):
    assert recipe_for("swin_cifar") == recipe_for("convnext_cifar") == "compare-fashion-mnist-adamw"
    by_recipe: dict[str, set[str]] = {}
    for m in DEFAULT_MODELS:
        by_recipe.setdefault(recipe_for(m), set()).add(m)
    assert by_recipe == {
        "compare-fashion-mnist": {"resnet14", "resnet20", "resnet56", "plain20"},
        "compare-fashion-mnist-adamw": {"convnext_cifar", "swin_cifar", "swin_w24_cifar"},
        "compare-fashion-mnist-densenet": {"densenet_bc100", "densenet_bc40"},
        "compare-fashion-mnist-mobilenet-v2": {"mobilenet_v2_cifar", "mobilenet_v2_050_cifar",
                                               "mobilenet_v2_035_cifar"},
        "compare-fashion-mnist-shufflenet": {"shufflenet_v2_cifar", "shufflenet_v2_x0_5_cifar"},
        "compare-fashion-mnist-regnet": {"regnet_x_400mf_cifar", "regnet_x_200mf_cifar"},
        "compare-fashion-mnist-rmsprop": {"mobilenet_v3_cifar", "mnasnet0_5_cifar", "efficientnet_b0_cifar",
                                          "efficientnet_b0_050_cifar"},
    }
    base = load_config("compare-fashion-mnist")
    for recipe in by_recipe:  # each family's recipe changes the optimizer only: the comparison's length and test stay
        assert replace(load_config(recipe), optim=base.optim, recipe=base.recipe) == base, recipe
    assert len(DEFAULT_MODELS) == 20
    cells = plan(["resnet20", "swin_cifar"], tmp_path, seeds=2)
    assert [c.name for c in cells] == ["resnet20 seed 0", "resnet20 seed 1", "swin_cifar seed 0", "swin_cifar seed 1"]
    assert all(c.cfg.epochs == DEFAULT_EPOCHS and c.cfg.budget is None and c.cfg.iterations is None for c in cells)
    assert plan(["resnet20"], tmp_path, epochs=3)[0].cfg.epochs == 3  # equal images: whole epochs for every model
    budgeted = plan(["resnet20"], tmp_path, budget="5m")[0].cfg
    assert budgeted.budget == "5m" and budgeted.iterations is None and budgeted.budget_scope == "training"
    assert cells[2].cfg.optim.name == "adamw" and cells[0].cfg.optim.name == "nesterov"
    assert cells[3].run_dir == tmp_path / "swin_cifar-seed1" and cells[3].cfg.seed == 1
    assert plan(["resnet20"], tmp_path, extra={"iterations": 5})[0].cfg.budget is None  # a length replaces the budget
    for models, seeds, message in ((["resnet20", "resnet20"], 1, "named twice"), ([], 1, "at least one model"),
                                   (["resnet20"], 0, "--seeds must be at least 1"), (["densenet"], 1, "unknown model")):
        with pytest.raises(UserError, match=message):
            plan(models, tmp_path, seeds=seeds)
    for epochs, budget in ((0, None), (2, "5m")):
        with pytest.raises(UserError, match="--epochs must be a whole number of at least 1, without --budget"):
            plan(["resnet20"], tmp_path, epochs=epochs, budget=budget)


# --------------------------------------------------------------------------------------------------- end to end


def test_a_tiny_comparison_killed_and_run_again(tmp_path, capsys):
    """Two models through the command line; SIGKILL once the second cell has its first checkpoint; the rerun skips
    the finished cell, resumes the other, and writes the tables, the figure and the statements."""
    out = tmp_path / "compare"
    argv = ["compare", "resnet14", "shufflenet_v2_cifar", "--out", str(out), *TINY]
    kill_at_first_checkpoint(argv, out / "shufflenet_v2_cifar-seed0" / "checkpoints")
    first = (out / "resnet14-seed0" / "results.json").read_bytes()
    assert not (out / "shufflenet_v2_cifar-seed0" / "results.json").exists()

    code, stdout, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert "resnet14 seed 0: finished, skipped" in stdout and "shufflenet_v2_cifar seed 0: resuming" in stdout
    assert "shufflenet_v2_cifar      compare-fashion-mnist" in stdout
    assert (out / "resnet14-seed0" / "results.json").read_bytes() == first
    results = json.loads((out / "results.json").read_text())
    assert [m["model"] for m in results["models"]] == ["resnet14", "shufflenet_v2_cifar"]
    assert results["invocations"] == 1 and results["precision"] == "fp32"  # (the killed one wrote nothing)
    assert results["input_size"] == [1, 28, 28]
    for run in results["runs"]:
        own = json.loads((out / f"{run['model']}-seed0" / "results.json").read_text())
        assert run["test_top1"] == own["test_top1"] and run["steps"] == own["steps"] == 8
        assert run["img_per_s"] == pytest.approx(8 * 32 / (own["train_minutes"] * 60))
    assert [m["train_minutes"] for m in results["models"]] == [r["train_minutes"] for r in results["runs"]]
    assert results["models"][0]["params"] == 172_218 and results["models"][1]["params"] == 1_263_422
    assert set(results["statements"]) == {"cheaper_successors", "smaller_successors", "densenet_vs_resnet",
                                          "transformer_vs_cnns"}
    assert (out / "comparison.png").stat().st_size > 10_000
    text = (out / "results.md").read_text()
    assert "| resnet14 " in text and "## Statements" in text and "(comparison.png)" in text


def test_a_refused_cell_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    """A cell its budget cannot hold (DenseNet-BC-100 in 5 minutes on two cores) is refused with its sentence; the
    comparison trains and reports the rest, and lists the refused cell; all refused is one sentence of its own."""
    from resnet.experiments import comparison as cmp

    def fake_run_cell(cell, position, log):
        if cell.model == "densenet_bc100":
            raise UserError("a budget of 5m leaves room for 0 training steps here")
        return {"test_top1": 90.0 + cell.seed}

    def fake_numbers(cell, results):
        return {"model": cell.model, "lineage": "resnet", "recipe": cell.cfg.recipe, "seed": cell.seed,
                "test_top1": results["test_top1"], "params": 1, "macs": 2, "input_size": [1, 28, 28],
                "img_per_s": 100.0, "train_minutes": 1.0, "epochs": 1.0, "precision": "bf16", "device": "cpu",
                "machine": "cpu"}

    monkeypatch.setattr(cmp, "run_cell", fake_run_cell)
    monkeypatch.setattr(cmp, "cell_numbers", fake_numbers)
    logged = []
    result = cmp.comparison(["resnet20", "densenet_bc100"], seeds=2, out=tmp_path / "c", log=logged.append)
    assert [m["model"] for m in result["models"]] == ["resnet20"] and result["models"][0]["top1"] == 90.5
    assert result["refused"] == [{"model": "densenet_bc100", "seed": s,
                                  "reason": "a budget of 5m leaves room for 0 training steps here"} for s in (0, 1)]
    assert "    refused: a budget of 5m leaves room for 0 training steps here" in logged
    assert "Refused (not in the table): densenet_bc100 seed 0: a budget" in (tmp_path / "c" / "results.md").read_text()
    with pytest.raises(UserError, match="every cell of the comparison was refused, e.g. densenet_bc100"):
        cmp.comparison(["densenet_bc100"], seeds=1, out=tmp_path / "d", log=logged.append)


def test_a_cell_of_another_config_is_refused_before_anything_trains(tmp_path, capsys):
    """A finished cell is reused only when its run's config is the cell's: after a recipe change (here the final
    test's views) the rerun refuses in one sentence before training and leaves the old cell as it was. ``out`` only
    locates a run, and a change a resume recorded in run.json counts as the run's config."""
    import dataclasses

    from resnet.config import parse_override, save_config
    from resnet.experiments.cells import config_differences

    out = tmp_path / "compare"
    settings = dict(parse_override(text) for text in TINY[3::2])
    old = plan(["resnet14"], out, 1, extra={**settings, "test_tta": "flip-translate"})[0]
    old.run_dir.mkdir(parents=True)
    save_config(old.cfg, old.run_dir / "config.yaml")
    (old.run_dir / "results.json").write_text("{}")
    before = (old.run_dir / "config.yaml").read_bytes()

    code, stdout, stderr = main_cli(["compare", "resnet14", "shufflenet_v2_cifar", "--out", str(out), *TINY], capsys)
    assert code == 2 and "Traceback" not in stderr
    assert f"{old.run_dir} holds a run of another config (test_tta 'flip-translate' there, 'none' now)" in stderr
    assert (old.run_dir / "config.yaml").read_bytes() == before and (old.run_dir / "results.json").read_text() == "{}"
    assert not (out / "shufflenet_v2_cifar-seed0").exists()

    elsewhere = plan(["resnet14"], tmp_path / "moved", 1, extra={**settings, "test_tta": "flip-translate"})[0]
    assert config_differences(dataclasses.replace(elsewhere, run_dir=old.run_dir)) == {}
    new = plan(["resnet14"], out, 1, extra=settings)[0]
    assert config_differences(new) == {"test_tta": ("flip-translate", "none")}
    (old.run_dir / "run.json").write_text(json.dumps({"changes": {"test_tta": "none"}}))
    assert config_differences(new) == {}
    assert config_differences(dataclasses.replace(new, run_dir=tmp_path / "empty")) == {}


def test_names_of_points_at_one_place_do_not_overlap():
    """ResNet-20 and plain-20 have the same MACs and about the same accuracy: their names go to different sides."""
    import matplotlib.pyplot as plt

    from resnet.plots import name_points

    fig, ax = plt.subplots()
    ax.plot([30, 30, 300], [92.4, 92.4, 40.0], "o")
    ax.set_xscale("log")
    sides = name_points(ax, [(30, 92.4, "resnet20"), (30, 92.4, "plain20"), (300, 40.0, "densenet_bc100")])
    plt.close(fig)
    assert sides[0] != sides[1] and sides[2] == sides[0]


def test_the_figure_draws_every_model_it_was_given():
    """Four panels; every model a curve and a named test point on top, a named point with its error bar in each
    accuracy panel, whose axis is zoomed to the points."""
    import matplotlib.pyplot as plt

    from resnet.plots import comparison_figure

    models = [{**row(f"net{i}", ("resnet", "mobilenet", "densenet")[i % 3], 85.0 + i, 0.1 * i, macs=(i + 1) * 1e7,
                     params=(i + 1) * 100_000), "epochs": 1.0} for i in range(7)]
    curves = {m["model"]: {"images": [128, 256, 512], "seconds": [1.0, 2.0, 4.0], "train_error": [60.0, 30.0, 20.0],
                           "test_error": 100 - m["top1"]} for m in models[:-1]}  # the last without its steps
    fig = comparison_figure(models, curves, "title\nmachine, bf16")
    try:
        (curve_images, curve_time), (by_macs, by_params) = fig.axes[0:2], fig.axes[2:4]
        names = [m["model"] for m in models]
        for ax in (curve_images, curve_time):
            assert len(ax.lines) == 2 * len(curves)  # a curve and an end point each
            assert sorted(t.get_text() for t in ax.texts) == sorted(curves)
        for ax in (by_macs, by_params):
            assert len(ax.containers) == len(models)  # one error bar each
            assert sorted(t.get_text() for t in ax.texts) == sorted(names)
            low, high = ax.get_ylim()
            assert 84.0 < low < 85.0 and 91.6 < high < 92.5  # zoomed: 85-91.6 with a margin, not 0-100
        assert fig._suptitle.get_text() == "title\nmachine, bf16"
        assert any("standard deviation of the seeds" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)
