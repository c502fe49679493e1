"""`resnet degradation`: the verdicts and the mean ± std on known numbers (milliseconds), the quick profile as a
recipe, and a tiny study end to end (two depths, a few dozen steps, a data subset) whose numbers are recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet.config import RECIPE_DIR, load_config, to_dict
from resnet.experiments.degradation import PROFILES, aggregate, plan, verdicts

TRAIN_LIMIT = 768
# fp32: on CPUs with native bf16 `auto` picks bf16, which measured 2x slower than fp32 for these 28x28 nets.
TINY = ["--depths", "20", "32", "--iterations", "24", "--train-limit", str(TRAIN_LIMIT), "--set", "data.test_limit=200",
        "--set", "log_every=4", "--set", "checkpoint_every=8", "--set", "threads=2", "--set", "precision=fp32",
        "--set", "batch_size=32"]
NETS = ["plain20", "plain32", "resnet20", "resnet32"]


def row(net: str, train_error: float) -> dict:
    kind, depth = net.rstrip("0123456789"), int(net.lstrip("plainresnet"))
    return {"net": net, "kind": kind, "depth": depth, "train_error": train_error}


# ------------------------------------------------------------------------------------------ numbers (milliseconds)


def test_verdicts_yes_when_deeper_plain_is_worse_and_deeper_residual_better():
    # Shallowest vs deepest, in any row order; the middle depth does not count.
    table = [row("resnet56", 9.0), row("plain56", 24.0), row("plain20", 11.0), row("plain32", 30.0),
             row("resnet32", 12.0), row("resnet20", 10.0)]
    v = verdicts(table)
    assert v["deeper_plain_trains_worse"] == {"answer": "yes", "shallow": "plain20", "deep": "plain56",
                                              "shallow_train_error": 11.0, "deep_train_error": 24.0}
    assert v["deeper_residual_trains_better"] == {"answer": "yes", "shallow": "resnet20", "deep": "resnet56",
                                                  "shallow_train_error": 10.0, "deep_train_error": 9.0}


def test_verdicts_no_when_reversed():
    v = verdicts([row("plain20", 24.0), row("plain56", 11.0), row("resnet20", 9.0), row("resnet56", 10.0)])
    assert v["deeper_plain_trains_worse"]["answer"] == "no"
    assert v["deeper_residual_trains_better"]["answer"] == "no"


def test_verdicts_no_on_ties():
    v = verdicts([row("plain20", 12.5), row("plain56", 12.5), row("resnet20", 10.0), row("resnet56", 10.0)])
    assert v["deeper_plain_trains_worse"]["answer"] == "no"
    assert v["deeper_residual_trains_better"]["answer"] == "no"


def test_aggregate_mean_and_std_over_seeds():
    def run(net, seed, train_error, test_error):
        return {**row(net, train_error), "seed": seed, "test_error": test_error}

    summaries = [run("resnet20", 0, 10.0, 11.0), run("plain20", 0, 10.0, 20.0), run("plain20", 1, 12.0, 22.0),
                 run("plain20", 2, 14.0, 27.0), run("plain56", 0, 30.0, 31.0), run("resnet56", 0, 8.0, 9.0)]
    result = aggregate(summaries)
    table = result["nets"]
    assert [n["net"] for n in table] == ["plain20", "plain56", "resnet20", "resnet56"]  # plain first, by depth
    plain20 = table[0]
    assert plain20["seeds"] == 3
    assert plain20["train_error"] == pytest.approx(12.0) and plain20["train_error_std"] == pytest.approx(2.0)
    assert plain20["test_error"] == pytest.approx(23.0)
    assert plain20["test_error_std"] == pytest.approx(((9 + 1 + 16) / 2) ** 0.5)  # sample std of 20, 22, 27
    assert table[1]["seeds"] == 1 and table[1]["train_error_std"] == 0.0 and table[1]["test_error_std"] == 0.0
    assert result["deeper_plain_trains_worse"]["answer"] == "yes"  # 30 > mean 12
    assert result["deeper_residual_trains_better"]["answer"] == "yes"  # 8 < 10


# ------------------------------------------------------------------------------------------- profiles as recipes


def test_quick_profile_cell_is_its_recipe_with_net_seed_and_out_only(tmp_path):
    """One cell of the quick study is `resnet train --config degradation-quick-fashion-mnist --model plain56
    --seed 1 --out DIR`: the same config, with no training setting added by the study."""
    profile = PROFILES["quick"]
    assert profile.overrides == {}
    text = (RECIPE_DIR / f"{profile.recipe}.yaml").read_text()
    assert text.startswith("# ") and len(text.splitlines()[0]) > 20  # the title `resnet recipes` shows
    specs = plan("quick", tmp_path, seeds=2)
    assert [(s.name, s.seed) for s in specs][:4] == [("plain20", 0), ("plain20", 1), ("resnet20", 0), ("resnet20", 1)]
    for spec in specs:
        alone = load_config(profile.recipe, {"model.name": spec.name, "seed": spec.seed, "out": str(spec.run_dir)})
        assert to_dict(spec.cfg) == to_dict(alone)
    assert specs[0].cfg.recipe == "degradation-quick-fashion-mnist" and specs[0].cfg.iterations == 800


def test_paper_profile_uses_the_paper_recipe_of_each_depth(tmp_path):
    specs = {s.name: s.cfg for s in plan("paper", tmp_path, depths=[20, 110])}
    assert specs["plain20"].recipe == "cifar10-resnet20-paper" and specs["plain20"].schedule.warmup_iters == 0
    assert specs["plain110"].recipe == specs["resnet110"].recipe == "cifar10-resnet110-paper"
    assert specs["plain110"].schedule.warmup_iters == 400  # the paper's ResNet-110 warm-up, for plain-110 too
    assert specs["resnet110"].optim == load_config("cifar10-resnet110-paper").optim


# ---------------------------------------------------------------------------------------------- tiny study, e2e


def recomputed_train_error(run_dir: Path, n: int) -> float:
    """100 - top-1 of the run's model.safetensors on the first ``n`` training images, evaluated here at the run's
    precision."""
    import torch
    import yaml

    from resnet.data import MemoryLoader, open_split
    from resnet.device import resolve_device, resolve_precision
    from resnet.evaluate import evaluate
    from resnet.modelcard import load_model_and_card

    precision = yaml.safe_load((run_dir / "config.yaml").read_text())["precision"]
    assert precision == "fp32"
    device = resolve_device()
    model, card = load_model_and_card(run_dir / "model.safetensors", device)
    data = open_split(card.dataset, "train", limit=n)
    assert len(data) == n
    loader = MemoryLoader(data, 256, device=device, mean=card.mean, std=card.std, train=False)
    result = evaluate(model.to(memory_format=torch.channels_last), loader.epoch(0), device=device,
                      precision=resolve_precision(precision, device), num_classes=len(card.classes))
    assert result.count == n
    return 100.0 - result.top1


def markdown_rows(text: str) -> dict[str, list[str]]:
    """Net -> its cells in the results table of results.md."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["net", "seeds", "training error %", "test error %"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {r[0]: r[1:] for r in rows}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from resnet.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tiny_study_numbers_figure_tables_and_reruns(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["degradation", "--out", str(out), *TINY]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert stdout.count(": training (24 iterations)") == 4
    assert (out / "degradation.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in results["nets"]] == NETS
    assert results["recipes"] == ["degradation-quick-fashion-mnist"] and results["train_error_images"] == TRAIN_LIMIT

    for net in results["nets"]:
        run_dir = out / f"{net['net']}-seed0"
        assert net["seeds"] == 1 and net["train_error_std"] == 0.0
        assert net["train_error"] == pytest.approx(recomputed_train_error(run_dir, TRAIN_LIMIT), abs=1e-9)
        assert net["test_error"] == json.loads((run_dir / "results.json").read_text())["test_error"]
        steps = (run_dir / "steps.jsonl").read_text().splitlines()
        assert len(steps) == 6  # training error every 4 iterations
    # the verdicts, worked out here from the recomputed errors rather than by the function that wrote them
    error = {net["net"]: net["train_error"] for net in results["nets"]}
    assert results["deeper_plain_trains_worse"]["answer"] == ("yes" if error["plain32"] > error["plain20"] else "no")
    assert results["deeper_residual_trains_better"]["answer"] == (
        "yes" if error["resnet32"] < error["resnet20"] else "no")
    assert results["deeper_plain_trains_worse"]["deep_train_error"] == error["plain32"]

    text = (out / "results.md").read_text()
    assert markdown_rows(text) == {n["net"]: ["1", f"{n['train_error']:.2f} ± 0.00", f"{n['test_error']:.2f} ± 0.00"]
                                   for n in results["nets"]}
    for key, line in (("deeper_plain_trains_worse", "Deeper plain net trains worse"),
                      ("deeper_residual_trains_better", "Deeper residual net trains better")):
        v = results[key]
        assert f"- {line}: **{v['answer']}** ({v['deep']} {v['deep_train_error']:.2f}% vs" in text
    assert f"first {TRAIN_LIMIT:,} training images" in text
    stamp = (out / "plain32-seed0" / "results.json").stat().st_mtime_ns

    # An interrupted run (resnet32: results removed, checkpoints kept) resumes; a run that stopped before its first
    # checkpoint (plain20: nothing but its config and logs) restarts in place; finished ones are skipped.
    (out / "resnet32-seed0" / "results.json").unlink()
    (out / "resnet32-seed0" / "model.safetensors").unlink()
    plain20 = out / "plain20-seed0"
    for path in [*(plain20 / "checkpoints").iterdir(), plain20 / "results.json", plain20 / "model.safetensors",
                 plain20 / "train_error.json"]:
        path.unlink()
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert stdout.count("finished, skipped") == 2
    assert "resnet32 seed 0: resuming" in stdout and "plain20 seed 0: restarting" in stdout
    assert (out / "plain32-seed0" / "results.json").stat().st_mtime_ns == stamp
    assert len((plain20 / "steps.jsonl").read_text().splitlines()) == 6  # from step 0 again, not appended
    again = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in again["nets"]] == NETS
    by_net = {n["net"]: n for n in again["nets"]}
    assert by_net["plain20"]["train_error"] == pytest.approx(recomputed_train_error(plain20, TRAIN_LIMIT), abs=1e-9)
    assert by_net["plain32"] == results["nets"][1]  # from the cached train_error.json and the untouched run


def test_bad_depths_are_refused(tmp_path, capsys):
    code, _, stderr = run_cli(["degradation", "--depths", "20", "21", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--depths" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x").exists()
