"""`resnet degradation`: the verdicts on known numbers (milliseconds), the response hooks and gradient norms on small
nets whose answer is worked out here, the profiles as recipes, and a tiny study end to end (two depths, one epoch, a
data subset) whose numbers are recomputed."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet.config import RECIPE_DIR, load_config, to_dict
from resnet.experiments.analysis import CellResult, aggregate
from resnet.experiments.gradients import conv_grad_norms, first_last_ratio, stage_of
from resnet.experiments.grid import plan
from resnet.experiments.planning import cell_seconds
from resnet.experiments.profiles import PROFILES
from resnet.experiments.responses import layer_response_std, layers_3x3
from resnet.experiments.verdicts import (cure_verdict, margin_verdict, order_verdict, response_verdicts, verdict_lines,
                                        verdicts)
from resnet.models import create_model

from .conftest import kill_at_first_checkpoint, main_cli

TRAIN_LIMIT = 384
BATCH = 32  # TRAIN_LIMIT / BATCH = 12 steps: the tiny study trains exactly one epoch
TINY = ["--depths", "20", "56", "--iterations", "12", "--train-limit", str(TRAIN_LIMIT), "--set", "data.test_limit=200",
        "--set", "log_every=4", "--set", "checkpoint_every=4", "--set", "threads=1", "--set", "precision=fp32",
        "--set", f"batch_size={BATCH}", "--seeds", "1"]
NETS = ["plain20", "plain56", "resnet20", "resnet56"]


def row(net: str, train_error: float, std: float = 0.0, seeds: int = 3) -> dict:
    kind, depth = net.rstrip("0123456789"), int(net.lstrip("plainresnet"))
    return {"net": net, "kind": kind, "depth": depth, "train_error": train_error, "train_error_std": std,
            "seeds": seeds}


# ------------------------------------------------------------------------------------------ verdicts (milliseconds)


def test_order_verdicts_need_every_depth_in_order():
    table = [row("resnet56", 9.0), row("plain56", 24.0), row("plain20", 11.0), row("plain32", 13.0),
             row("plain44", 20.0), row("resnet32", 9.8), row("resnet20", 10.0), row("resnet44", 9.5)]
    v = verdicts(table)
    assert v["plain_order"]["answer"] == "yes" and v["residual_order"]["answer"] == "yes"
    assert v["plain_order"]["nets"] == ["plain20", "plain32", "plain44", "plain56"]
    assert v["plain_order"]["evidence"] == "plain20 11.00 < plain32 13.00 < plain44 20.00 < plain56 24.00"
    assert v["residual_order"]["evidence"] == "resnet20 10.00 > resnet32 9.80 > resnet44 9.50 > resnet56 9.00"
    # A middle depth out of order is a "no", although the shallowest and the deepest are in order.
    swapped = [r if r["net"] != "resnet44" else row("resnet44", 9.9) for r in table]
    assert verdicts(swapped)["residual_order"]["answer"] == "no"
    # the evidence says which way each step really goes
    assert verdicts(swapped)["residual_order"]["evidence"] == \
        "resnet20 10.00 > resnet32 9.80 < resnet44 9.90 > resnet56 9.00"
    assert verdicts(swapped)["plain_order"]["answer"] == "yes"


def test_order_verdicts_no_when_reversed_or_tied():
    reversed_ = [row("plain20", 24.0), row("plain56", 11.0), row("resnet20", 9.0), row("resnet56", 10.0)]
    assert order_verdict(reversed_, "plain", rising=True)["answer"] == "no"
    assert order_verdict(reversed_, "resnet", rising=False)["answer"] == "no"
    tied = [row("plain20", 12.5), row("plain32", 12.5), row("plain56", 14.0)]
    assert order_verdict(tied, "plain", rising=True)["answer"] == "no"


def test_margin_verdict_against_twice_the_larger_std():
    table = [row("plain20", 10.0, std=0.5), row("plain56", 12.1, std=1.0), row("resnet20", 5.0, std=0.2),
             row("resnet56", 4.0, std=0.4)]
    plain = margin_verdict(table, "plain", rising=True)
    assert plain["answer"] == "yes" and plain["gap"] == pytest.approx(2.1) and plain["larger_std"] == 1.0
    residual = margin_verdict(table, "resnet", rising=False)
    assert residual["answer"] == "yes" and residual["gap"] == pytest.approx(1.0)  # 1.0 > 2 x 0.4
    inside = [row("resnet20", 5.0, std=0.2), row("resnet56", 4.3, std=0.4)]  # 0.7 < 0.8: inside the spread
    assert margin_verdict(inside, "resnet", rising=False)["answer"] == "not shown"
    wrong_way = [row("resnet20", 4.0, std=0.1), row("resnet56", 5.0, std=0.1)]  # a gap the wrong way is never a margin
    assert margin_verdict(wrong_way, "resnet", rising=False)["answer"] == "no"
    one_seed = [row("plain20", 10.0, seeds=1), row("plain56", 30.0, seeds=1)]
    assert margin_verdict(one_seed, "plain", rising=True)["answer"] == "n/a"


def test_cure_verdict_needs_every_gap_beyond_the_spread_and_no_residual_net_worse_than_the_shallowest():
    table = [row("plain20", 11.5, 0.5), row("plain56", 24.2, 2.0), row("resnet20", 11.0, 0.4),
             row("resnet56", 11.1, 1.1), row("plain32", 15.4, 0.9), row("resnet32", 10.9, 0.3)]
    cure = cure_verdict(table)
    assert cure["answer"] == "yes"
    assert cure["evidence"] == ("plain32 - resnet32 = 4.50 > 2 x 0.90; plain56 - resnet56 = 13.10 > 2 x 2.00; "
                                "resnet32 - resnet20 = -0.10 <= 2 x 0.40; resnet56 - resnet20 = 0.10 <= 2 x 0.40")
    # a spread wider than the gap: the residual net is better on average, but not beyond its seeds' spread
    wide = [r if r["net"] != "plain56" else row("plain56", 14.0, 1.5) for r in table]
    assert cure_verdict(wide)["answer"] == "not shown" and "plain56 - resnet56 = 2.90 <= 2 x 1.50" in cure_verdict(
        wide)["evidence"]
    # the deep profile's numbers: ResNet-110 is 4.6 points worse than ResNet-20 on average, inside its own seeds'
    # spread of 5.76 but far outside ResNet-20's: a cure not shown, rather than a "yes" the spread allows
    deep = [row("plain20", 11.31, 0.37), row("plain110", 89.66, 0.16), row("resnet20", 10.77, 0.0),
            row("resnet110", 15.38, 5.76)]
    s = cure_verdict(deep)
    assert s["answer"] == "not shown"
    assert "resnet110 - resnet20 = 4.61 > 2 x 0.00 (resnet20's spread) but <= 2 x 5.76 (resnet110's)" in s["evidence"]
    # a deep residual net worse than ResNet-20 by more than twice the spread is no cure, whatever its plain twin
    worse = [r if r["net"] != "resnet56" else row("resnet56", 13.0, 0.3) for r in table]
    assert cure_verdict(worse)["answer"] == "no" and "resnet56 - resnet20 = 2.00 > 2 x 0.40" in cure_verdict(worse)[
        "evidence"]
    one_seed = [row(n, e, seeds=1) for n, e in (("plain20", 11), ("plain110", 60), ("resnet20", 11),
                                                  ("resnet110", 9))]
    assert cure_verdict(one_seed)["answer"] == "n/a"


def test_a_residual_ordering_not_found_says_the_budget_it_was_tested_at():
    table = [row("plain20", 11.5, 0.5), row("plain56", 24.2, 2.0), row("resnet20", 11.0, 0.4),
             row("resnet56", 11.1, 1.1)]
    found = verdicts(table, iterations=700)
    assert found["residual_order"]["answer"] == "no"
    assert found["residual_order"]["budget"] == ("tested at 700 iterations per cell; the paper's ordering comes from "
                                                 "64,000")
    assert "budget" not in found["plain_order"]  # a "yes" needs no budget
    line = verdict_lines({"residual_order": found["residual_order"]})[0]
    assert line.endswith("(resnet20 11.00 < resnet56 11.10); tested at 700 iterations per cell; the paper's ordering "
                         "comes from 64,000")


def test_response_verdicts_on_known_numbers():
    def net(kind, depth, *seed_means):
        return {"kind": kind, "depth": depth, "mean_std": sum(seed_means) / len(seed_means),
                "seed_means": list(seed_means)}

    found = response_verdicts({"plain20": net("plain", 20, 0.89, 0.91), "plain56": net("plain", 56, 0.79, 0.81),
                               "resnet20": net("resnet", 20, 0.59, 0.61), "resnet56": net("resnet", 56, 0.49, 0.51)})
    assert found["residual_weaker_than_plain"]["answer"] == "yes"
    assert found["deeper_residual_weaker"]["answer"] == "yes"
    assert found["deeper_residual_weaker"]["evidence"] == ("resnet20 0.600 > resnet56 0.500; seed spread (std) up "
                                                          "to 0.014")
    found = response_verdicts({"plain20": net("plain", 20, 0.49, 0.51), "plain56": net("plain", 56, 0.79, 0.81),
                               "resnet20": net("resnet", 20, 0.59, 0.61), "resnet56": net("resnet", 56, 0.59, 0.61)})
    assert found["residual_weaker_than_plain"]["answer"] == "no"  # at depth 20: 0.6 > 0.5, beyond the spread
    assert found["deeper_residual_weaker"]["answer"] == "not shown"  # a tie: inside the spread
    assert found["residual_weaker_than_plain"]["evidence"].startswith("20: 0.600 vs 0.500, 56: 0.600 vs 0.800")
    # the deep profile's numbers: plain-110's mean is far above, but its seeds spread wider still
    wide = response_verdicts({"plain110": net("plain", 110, 10.0, 353.7), "resnet110": net("resnet", 110, 1.2, 1.3)})
    assert wide["residual_weaker_than_plain"]["answer"] == "not shown"
    one_seed = response_verdicts({"plain20": net("plain", 20, 0.9), "resnet20": net("resnet", 20, 0.6)})
    assert one_seed["residual_weaker_than_plain"]["answer"] == "not shown"
    assert one_seed["residual_weaker_than_plain"]["evidence"].endswith("one seed: no spread to test the differences "
                                                                       "against")
    alone = response_verdicts({"resnet20": net("resnet", 20, 0.6), "resnet56": net("resnet", 56, 0.5)})
    assert alone["residual_weaker_than_plain"] == {
        "answer": "n/a", "evidence": "no plain net in this study",
        "claim": "residual nets respond more weakly than plain nets of the same depth (mean layer std)"}


def test_aggregate_mean_and_std_over_seeds():
    def run(net, seed, train_error, test_error):
        kind, depth = net.rstrip("0123456789"), int(net.lstrip("plainresnet"))
        return CellResult(net, kind, depth, seed, run_dir="", test_error=test_error, train_error=train_error)

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
    assert result["verdicts"]["plain_order"]["answer"] == "yes"  # 30 > mean 12
    assert result["verdicts"]["residual_order"]["answer"] == "yes"  # 8 < 10
    assert result["verdicts"]["plain_margin"]["answer"] == "n/a"  # plain56 has one seed


# ------------------------------------------------------------------------------- responses and gradients on small nets


def scaled_net(gain: list[float], gamma: list[float], beta: list[float]) -> nn.Sequential:
    """A 3x3 conv whose channel k is gain[k] x the input (centre tap only), a BN in eval mode with running stats
    (0, 1) and affine (gamma, beta), a ReLU; then a 1x1 conv + BN that is not a 3x3 layer."""
    conv = nn.Conv2d(1, len(gain), 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(len(gain), eps=0.0)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1, 1] = torch.tensor(gain)
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    tail = nn.Sequential(nn.Conv2d(len(gain), 2, 1, bias=False), nn.BatchNorm2d(2))
    return nn.Sequential(conv, bn, nn.ReLU(inplace=True), tail)


def test_response_std_is_per_channel_std_after_bn_averaged_over_channels():
    net = scaled_net(gain=[2.0, -0.5], gamma=[1.5, 4.0], beta=[3.0, -1.0])
    assert layers_3x3(net) == [("0", "1")]  # the 1x1 conv + BN is not a 3x3 layer
    g = torch.Generator().manual_seed(0)
    images = torch.randn(64, 1, 6, 6, generator=g) * 0.7 + 0.2
    std = float(images.double().std(unbiased=False))
    # Channel k's response is gamma_k * gain_k * x + beta_k: its std is |gamma_k gain_k| std(x), whatever beta_k;
    # read before the in-place ReLU changes it.
    expected = (abs(1.5 * 2.0) + abs(4.0 * -0.5)) / 2 * std
    assert net.training
    got = layer_response_std(net, [images[:40], images[40:]])  # measured in eval mode (BN on running stats)
    assert got == [pytest.approx(expected, rel=1e-6)]  # batches reduced in fp32
    assert net.training and not net[1]._forward_hooks  # training mode restored, hooks removed


def test_resnet20_has_the_papers_19_three_by_three_layers_in_forward_order():
    layers = layers_3x3(create_model("resnet20", num_classes=10, in_chans=1))
    assert len(layers) == 19  # the stem and 2 x 9 blocks; shortcut A has no layers
    assert layers[:3] == [("conv1", "bn1"), ("layer1.0.conv1", "layer1.0.bn1"), ("layer1.0.conv2", "layer1.0.bn2")]
    assert layers[-1] == ("layer3.2.conv2", "layer3.2.bn2")
    assert len(layers_3x3(create_model("plain56", num_classes=10, in_chans=1))) == 55


def test_gradient_norms_match_autograd_by_hand_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(8, 1, 12, 12), torch.randint(0, 10, (8,))) for _ in range(2)]
    norms = conv_grad_norms(model, batches)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BN running stats untouched
    assert all(p.grad is None for p in model.parameters())

    by_hand = []
    for images, labels in batches:
        copy = create_model("resnet20", num_classes=10, in_chans=1)
        copy.load_state_dict(before)
        copy.train()
        nn.functional.cross_entropy(copy(images), labels).backward()
        by_hand.append([float(copy.get_submodule(conv).weight.grad.norm()) for conv, _ in layers_3x3(copy)])
    assert norms == pytest.approx([(a + b) / 2 for a, b in zip(*by_hand)], rel=1e-5)


def test_first_last_ratio_by_stage():
    convs = ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer3.0.conv1", "layer3.0.conv2"]
    stages = ["layer1", "layer2", "layer3"]
    assert [stage_of(c, stages) for c in convs] == ["stem", "layer1", "layer1", "layer2", "layer3", "layer3"]
    ratio = first_last_ratio([100.0, 1.0, 3.0, 7.0, 4.0, 12.0], convs, stages)  # the stem does not count
    assert ratio == {"first_stage": 2.0, "last_stage": 8.0, "ratio": 0.25}


def test_planned_cell_seconds():
    cfg = load_config("degradation-fashion-mnist", {"iterations": 100, "eval_every": 2, "batch_size": 50})
    # 100 steps of 1 s; 500 training images = 10 steps per epoch, 10 epochs, evaluated every 2 (5 times) plus the
    # final test and the two analysis passes: 8 passes over 1,000 test images in 20 batches of 0.1 s.
    assert cell_seconds(cfg, train_size=500, test_size=1000, train_s=1.0, eval_s=0.1) == pytest.approx(100 + 16)


# ------------------------------------------------------------------------------------------- profiles as recipes


def test_profile_cells_are_their_recipe_with_net_seed_and_out_only(tmp_path):
    """One cell of the study is `resnet train --config degradation-fashion-mnist --model plain56 --seed 1 --out
    DIR`: the same config, with no training setting added by the study."""
    for name in ("default", "quick"):
        profile = PROFILES[name]
        assert profile.overrides == {} and profile.recipe == "degradation-fashion-mnist"
    assert PROFILES["default"].depths == (20, 32, 44, 56) and PROFILES["default"].seeds == 3
    assert PROFILES["quick"].depths == (20, 56) and PROFILES["quick"].seeds == 1
    text = (RECIPE_DIR / "degradation-fashion-mnist.yaml").read_text()
    assert text.startswith("# ") and len(text.splitlines()[0]) > 20  # the title `resnet recipes` shows
    specs = plan("default", tmp_path)
    assert [(s.net, s.seed) for s in specs][:4] == [("plain20", 0), ("plain20", 1), ("plain20", 2), ("resnet20", 0)]
    assert len(specs) == 24
    for spec in specs:
        alone = load_config(PROFILES["default"].recipe,
                            {"model.name": spec.net, "seed": spec.seed, "out": str(spec.run_dir)})
        assert to_dict(spec.cfg) == to_dict(alone)
    cfg = specs[0].cfg
    assert cfg.snapshot_epochs == [0, 1] and cfg.schedule.warmup_iters > 0 and cfg.data.flip is True
    assert [s.seed for s in plan("quick", tmp_path)] == [0, 0, 0, 0]


def test_depth_profile_is_the_study_recipe_longer_on_residual_nets_only(tmp_path):
    """Claim 4's profile: ResNet-20 and -56, three seeds, the study's recipe with only its length changed."""
    specs = plan("depth", tmp_path)
    assert [(s.net, s.seed) for s in specs] == [(f"resnet{d}", seed) for d in (20, 56) for seed in range(3)]
    long, study = to_dict(specs[0].cfg), to_dict(plan("default", tmp_path)[3].cfg)  # both resnet20 seed 0
    assert long.pop("iterations") == 2500 and study.pop("iterations") == 700
    assert long.pop("recipe") == "degradation-fashion-mnist-long" and study.pop("recipe") == "degradation-fashion-mnist"
    assert long == study


def test_a_study_of_residual_nets_alone_gets_the_residual_verdicts():
    table = [row("resnet20", 6.5, 0.3), row("resnet56", 5.0, 0.2)]
    v = verdicts(table, iterations=2500)
    assert list(v) == ["residual_order", "residual_margin"]
    assert v["residual_order"]["answer"] == v["residual_margin"]["answer"] == "yes"  # 1.5 > 2 x 0.3
    wide = verdicts([row("resnet20", 6.5, 0.8), row("resnet56", 5.0, 0.2)], iterations=2500)
    assert wide["residual_order"]["answer"] == "yes" and wide["residual_margin"]["answer"] == "not shown"
    assert wide["residual_margin"]["budget"].startswith("tested at 2,500 iterations per cell")
    assert "budget" not in wide["residual_order"]


def test_figure_6_of_residual_nets_alone_has_one_panel(tmp_path):
    from PIL import Image

    from resnet.plots import plot_degradation

    curves = {f"resnet{d}": {"kind": "resnet", "depth": d, "steps": [10, 20], "train_error": [50.0, 20.0 - d / 10],
                             "test_steps": [20], "test_error": [25.0]} for d in (20, 56)}
    plot_degradation(curves, tmp_path / "one.png")
    plot_degradation({**curves, "plain20": {**curves["resnet20"], "kind": "plain"}}, tmp_path / "two.png")
    one, two = Image.open(tmp_path / "one.png").size, Image.open(tmp_path / "two.png").size
    assert one[0] < two[0] * 0.6 and one[1] == two[1]


def test_figure_6_zooms_to_the_second_half_of_training_unless_a_net_does_not_train():
    import matplotlib.pyplot as plt

    from resnet.plots import degradation_figure

    def net(depth, kind, end):  # starts near chance, ends at ``end``; the test error a point above
        steps = list(range(100, 2600, 100))
        train = [90.0 * (end / 90.0) ** (i / 24) for i in range(25)]
        return {"kind": kind, "depth": depth, "steps": steps, "train_error": train,
                "test_steps": steps[4::5], "test_error": [t + 1.0 for t in train[4::5]]}

    close = {"resnet20": net(20, "resnet", 6.8), "resnet56": net(56, "resnet", 6.5)}  # a 0.3-point result
    fig = degradation_figure(close)
    try:
        low, high = fig.axes[0].get_ylim()
        late = [v for c in close.values() for v in c["train_error"][12:] + c["test_error"][2:]]
        assert low <= min(late) and high >= max(late)  # every value of the second half is on the axis
        assert high - low < 30 and high < 40  # ... and the axis is theirs, not 0-60 with the first iterations
        assert "zoomed" in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)
    stuck = {**close, "plain110": net(110, "plain", 89.9)}  # a net that does not train is shown whole
    fig = degradation_figure(stuck)
    try:
        assert fig.axes[0].get_ylim() == (0.0, 100.0) and "zoomed" not in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)


def test_figure_7_turns_logarithmic_when_one_net_responds_far_more_than_another(tmp_path, monkeypatch):
    """An untrained plain-110's responses reach thousands while the others stay near 1: on a linear axis the others
    would lie flat at 0, so the axis is logarithmic (and stays linear for responses of one order of magnitude)."""
    from resnet import plots

    scales = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: scales.append([ax.get_yscale() for ax in fig.axes]))
    near = {"resnet20": {"kind": "resnet", "depth": 20, "std": [1.0, 0.9, 1.1]},
            "plain20": {"kind": "plain", "depth": 20, "std": [1.2, 1.0, 0.8]}}
    plots.plot_responses(near, tmp_path / "near.png")
    plots.plot_responses({**near, "plain110": {"kind": "plain", "depth": 110, "std": [4000.0, 90.0, 1.3]}},
                         tmp_path / "far.png")
    assert scales == [["linear", "linear"], ["log", "log"]]


def test_paper_profile_uses_the_paper_recipe_of_each_depth(tmp_path):
    specs = {s.net: s.cfg for s in plan("paper", tmp_path, depths=[20, 110])}
    assert specs["plain20"].recipe == "cifar10-resnet20-paper" and specs["plain20"].schedule.warmup_iters == 0
    assert specs["plain110"].recipe == specs["resnet110"].recipe == "cifar10-resnet110-paper"
    assert specs["plain110"].schedule.warmup_iters == 400  # the paper's ResNet-110 warm-up, for plain-110 too
    assert specs["resnet110"].optim == load_config("cifar10-resnet110-paper").optim
    assert specs["resnet110"].iterations == 64_000 and specs["resnet110"].snapshot_epochs == [0, 1]


# ---------------------------------------------------------------------------------------------- tiny study, e2e


def recomputed_train_error(run_dir: Path, n: int) -> float:
    """100 - top-1 of the run's model.safetensors on the first ``n`` training images, evaluated here at the run's
    precision."""
    import yaml

    from resnet.data import MemoryLoader, open_split
    from resnet.device import resolve_device, resolve_precision
    from resnet.evaluate import evaluate
    from resnet.weights import load_model_and_card

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
    """Net -> its cells in the first table of results.md (the per-net means)."""
    lines = [line for line in text.split("\n\n## Figure 7")[0].splitlines() if line.startswith("|")]
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["net", "seeds", "training error %", "test error %"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {r[0]: r[1:] for r in rows}


def test_tiny_study_numbers_figures_tables_and_reruns(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["degradation", "--out", str(out), *TINY]
    code, stdout, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert stdout.startswith("planned: 4 cells, about ")
    assert stdout.count(": training (12 iterations)") == 4
    for figure in ("degradation.png", "responses.png", "gradients.png"):
        assert (out / figure).stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in results["nets"]] == NETS
    assert results["recipes"] == ["degradation-fashion-mnist"] and results["train_error_images"] == TRAIN_LIMIT
    assert results["precision"] == "fp32" and "cpus" in results["machine"] and results["wall_minutes"] > 0
    assert results["invocations"] == 1
    assert len(results["runs"]) == 4 and results["config"]["batch_size"] == BATCH

    for net in results["nets"]:
        run_dir = out / f"{net['net']}-seed0"
        assert net["seeds"] == 1 and net["train_error_std"] == 0.0
        assert net["train_error"] == pytest.approx(recomputed_train_error(run_dir, TRAIN_LIMIT), abs=1e-9)
        assert net["test_error"] == json.loads((run_dir / "results.json").read_text())["test_error"]
        steps = (run_dir / "steps.jsonl").read_text().splitlines()
        assert len(steps) == 3  # training error every 4 iterations
        # The snapshots: the initial weights and those at the end of the only epoch (step 12).
        from safetensors import safe_open

        for epoch, step in ((0, 0), (1, 12)):
            with safe_open(str(run_dir / "snapshots" / f"epoch-{epoch}.safetensors"), "pt") as f:
                assert f.metadata() == {"epoch": str(epoch), "step": str(step)}
    # the verdicts, worked out here from the recomputed errors rather than by the function that wrote them
    error = {net["net"]: net["train_error"] for net in results["nets"]}
    v = results["verdicts"]
    assert v["plain_order"]["answer"] == ("yes" if error["plain56"] > error["plain20"] else "no")
    assert v["residual_order"]["answer"] == ("yes" if error["resnet56"] < error["resnet20"] else "no")
    assert v["plain_margin"]["answer"] == v["residual_margin"]["answer"] == "n/a"  # one seed

    # Figure 7: 19 and 55 layers; responses of a run match the hooks run here on its model and 200 test images.
    responses = results["responses"]
    assert [len(responses[n]["std"]) for n in NETS] == [19, 55, 19, 55]
    from resnet.data import MemoryLoader, open_split
    from resnet.weights import load_model_and_card

    model, card = load_model_and_card(out / "resnet20-seed0", torch.device("cpu"))
    test = MemoryLoader(open_split("fashion-mnist", "test", limit=200), 64, device=torch.device("cpu"),
                        mean=card.mean, std=card.std, train=False)
    assert layer_response_std(model, (x for x, _ in test.epoch(0))) == pytest.approx(responses["resnet20"]["std"],
                                                                                     rel=1e-6)
    assert all(responses[n]["seed_means"] == [pytest.approx(responses[n]["mean_std"])] for n in NETS)
    assert results["response_verdicts"]["residual_weaker_than_plain"]["answer"] == "not shown"  # one seed: no spread

    # Gradient flow at depth 56 only, 55 layers at both moments, finite and positive; the table's ratio is the mean
    # of the first stage's norms over the last stage's.
    grads = results["gradients"]
    assert sorted(grads) == ["plain56", "resnet56"]
    for g in grads.values():
        assert len(g["init"]) == len(g["epoch1"]) == 55 and all(0 < x < math.inf for x in g["init"] + g["epoch1"])
        assert g["ratio_init"]["ratio"] == pytest.approx(sum(g["init"][1:19]) / sum(g["init"][37:]))
    assert g["init"] != g["epoch1"]

    text = (out / "results.md").read_text()
    assert markdown_rows(text) == {n["net"]: ["1", f"{n['train_error']:.2f} ± 0.00", f"{n['test_error']:.2f} ± 0.00"]
                                   for n in results["nets"]}
    for found in (*v.values(), *results["response_verdicts"].values()):
        assert f": **{found['answer']}** ({found['evidence']})" in text
    assert f"first {TRAIN_LIMIT:,} training images" in text and "200 test images" in text
    assert "## Gradient flow" in text and "![Figure 7](responses.png)" in text
    stamp = (out / "plain56-seed0" / "results.json").stat().st_mtime_ns

    # An interrupted run (resnet56: results removed, checkpoints kept) resumes; a run that stopped before its first
    # checkpoint (plain20: nothing but its config and logs) restarts in place; finished ones are skipped.
    (out / "resnet56-seed0" / "results.json").unlink()
    (out / "resnet56-seed0" / "model.safetensors").unlink()
    (out / "resnet56-seed0" / "analysis.json").unlink()
    plain20 = out / "plain20-seed0"
    for path in [*(plain20 / "checkpoints").iterdir(), plain20 / "results.json", plain20 / "model.safetensors",
                 plain20 / "analysis.json"]:
        path.unlink()
    code, stdout, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert stdout.startswith("planned: 2 of 4 cells left, about ")
    assert stdout.count("finished, skipped") == 2
    assert "resnet56 seed 0: resuming" in stdout and "plain20 seed 0: restarting" in stdout
    assert (out / "plain56-seed0" / "results.json").stat().st_mtime_ns == stamp
    assert len((plain20 / "steps.jsonl").read_text().splitlines()) == 3  # from step 0 again, not appended
    again = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in again["nets"]] == NETS
    by_net = {n["net"]: n for n in again["nets"]}
    assert by_net["plain20"]["train_error"] == pytest.approx(recomputed_train_error(plain20, TRAIN_LIMIT), abs=1e-9)
    assert by_net["plain56"] == results["nets"][1]  # from the cached analysis.json and the untouched run
    assert again["gradients"]["plain56"] == grads["plain56"]
    assert again["invocations"] == 2 and again["wall_minutes"] > results["wall_minutes"]  # sittings add up

    # --tables-only: the means and verdicts again from results.json's cached numbers alone (no run directory needed)
    text = (out / "results.md").read_text()
    for run_dir in out.glob("*-seed0"):
        shutil.rmtree(run_dir)
    code, stdout, stderr = main_cli(["degradation", "--out", str(out), "--tables-only"], capsys)
    assert code == 0, stderr[-3000:]
    assert (out / "results.md").read_text() == text and json.loads((out / "results.json").read_text()) == again


def test_a_study_over_cells_of_another_recipe_is_refused_before_anything_trains(tmp_path, capsys):
    """The study's output directory holds a cell of the default profile's recipe; the tiny study asked for now would
    mix its cells with that one, so it refuses in one sentence and leaves the old cell as it was."""
    from resnet.config import save_config

    out = tmp_path / "study"
    old = plan("default", out)[0]
    old.run_dir.mkdir(parents=True)
    save_config(old.cfg, old.run_dir / "config.yaml")
    before = (old.run_dir / "config.yaml").read_bytes()
    code, stdout, stderr = main_cli(["degradation", "--out", str(out), *TINY], capsys)
    assert code == 2 and "Traceback" not in stderr
    assert f"{old.run_dir} holds a run of another config (" in stderr
    assert "move it aside or choose another --out" in stderr
    assert (old.run_dir / "config.yaml").read_bytes() == before and sorted(out.iterdir()) == [old.run_dir]

def test_very_deep_nets_first_steps_on_the_same_batches(tmp_path, capsys):
    """The very-deep experiment end to end on the shallowest pair (the same code trains plain-1202 and ResNet-1202):
    both nets see the same batches, every stage has a gradient norm, and the tables say what was measured."""
    out = tmp_path / "deep"
    code, stdout, stderr = main_cli(["degradation", "--very-deep", "20", "--steps", "12", "--batch-size", "8",
                                     "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    plain, residual = results["nets"]
    assert (plain["net"], residual["net"]) == ("plain20", "resnet20") and results["lr"] == pytest.approx(0.1 / 16)
    assert len(plain["loss"]) == len(residual["loss"]) == 12 and plain["parameters"] == residual["parameters"]
    assert list(plain["stage_norms"]) == ["layer1", "layer2", "layer3"]
    assert all(0 < v < math.inf for n in (plain, residual) for v in n["stage_norms"].values())
    assert results["learns_where_plain_does_not"] == ("yes" if residual["learns"] and not plain["learns"] else "no")
    assert (out / "very_deep.png").stat().st_size > 10_000
    assert "| plain20  |" in (out / "results.md").read_text() and "figure: " in stdout


def test_a_killed_study_resumes_where_it_stopped(tmp_path, capsys):
    """SIGKILL in the middle of the third cell (after its first checkpoint): the rerun skips the two finished
    cells, resumes the third from its checkpoint (its step log continues, it does not start again) and finishes.
    Depths 20 and 32: no gradient analysis, so the kill comes sooner."""
    out = tmp_path / "study"
    argv = ["degradation", "--out", str(out), *TINY, "--depths", "20", "32"]
    kill_at_first_checkpoint(argv, out / "plain32-seed0" / "checkpoints")
    assert not (out / "plain32-seed0" / "results.json").exists()

    code, stdout, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert stdout.count("finished, skipped") == 2 and "plain32 seed 0: resuming" in stdout
    steps = [json.loads(line)["step"] for line in (out / "plain32-seed0" / "steps.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12]  # continued from the checkpoint: no step logged twice, none missing
    results = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in results["nets"]] == ["plain20", "plain32", "resnet20", "resnet32"]
    assert len(results["runs"]) == 4 and results["gradients"] == {}


def test_bad_depths_are_refused(tmp_path, capsys):
    code, _, stderr = main_cli(["degradation", "--depths", "20", "21", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--depths" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x").exists()
