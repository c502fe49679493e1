"""Pure functions of training, in milliseconds: schedules, linear lr scaling, parameter groups, MixUp/CutMix."""

from __future__ import annotations

import math
import typing

import pytest
import torch
from torch import nn

from resnet.config import OptimizerName, ScheduleName, load_config
from resnet.models import create_model
from resnet.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler, param_groups, scaled_lr


def lr_curve(cfg, steps_per_epoch: int, total: int, at: list[int]) -> dict[int, float]:
    """The lr used by step ``s`` (1-based) for each ``s`` in ``at``, from the real optimizer and scheduler."""
    opt = build_optimizer(nn.Linear(2, 2), cfg.optim, scaled_lr(cfg))
    sched = build_scheduler(opt, cfg.schedule, steps_per_epoch, total)
    wanted, out = set(at), {}
    for step in range(1, total + 1):
        if step in wanted:
            out[step] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    return out


def test_paper_cifar_schedule_with_resnet110_warmup():
    """Paper Sec. 4.2: lr 0.01 for the first 400 iterations (ResNet-110), then 0.1, /10 at 32k and 48k, 64k steps."""
    cfg = load_config("cifar10-resnet110-paper")
    lr = lr_curve(cfg, 390, cfg.iterations, [1, 400, 401, 32000, 32001, 48000, 48001, 64000])
    assert lr == pytest.approx({1: 0.01, 400: 0.01, 401: 0.1, 32000: 0.1, 32001: 0.01, 48000: 0.01, 48001: 0.001,
                                64000: 0.001})


def test_cosine_with_linear_warmup():
    cfg = load_config(None, None, ["schedule.name=cosine", "schedule.warmup_epochs=1", "schedule.warmup_factor=0.1",
                                   "optim.lr=0.1", "schedule.min_lr_factor=0"])
    lr = lr_curve(cfg, 10, 110, [1, 6, 11, 61, 110])
    assert lr[1] == pytest.approx(0.01)  # warmup_factor x peak
    assert lr[6] == pytest.approx(0.01 + 0.09 * 5 / 10)  # linear in between
    assert lr[11] == pytest.approx(0.1)  # the peak when the warm-up ends
    assert lr[61] == pytest.approx(0.05, rel=1e-6)  # half-way through the cosine
    assert lr[110] == pytest.approx(0.1 * (1 + math.cos(99 / 100 * math.pi)) / 2, rel=1e-3)  # the last step


def test_step_milestones_in_epochs_and_iterations_agree():
    by_epoch = load_config(None, None, ["epochs=4", "schedule.name=step", "schedule.milestones=[2, 3]",
                                        "schedule.warmup_epochs=0"])
    by_iter = load_config(None, None, ["epochs=4", "schedule.name=step", "schedule.milestone_iters=[20, 30]",
                                       "schedule.warmup_epochs=0"])
    steps = [1, 20, 21, 30, 31, 40]
    assert lr_curve(by_epoch, 10, 40, steps) == pytest.approx(lr_curve(by_iter, 10, 40, steps))


def test_linear_lr_scaling():
    cfg = load_config(None, {"batch_size": 256, "optim.lr": 0.1, "optim.lr_batch_size": 128})
    assert scaled_lr(cfg) == pytest.approx(0.2)
    assert scaled_lr(cfg, world_size=4) == pytest.approx(0.8)
    # --batch-size on the command line keeps the recipe's reference batch: lr follows the batch
    recipe = load_config()
    assert scaled_lr(load_config(None, {"batch_size": 64})) == pytest.approx(recipe.optim.lr * 64 / recipe.batch_size)


def test_no_weight_decay_on_bn_and_bias():
    model = create_model("resnet20")
    decay, no_decay = param_groups(model, 5e-4, no_decay_bn_bias=True)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 4 for p in decay["params"][:-1]) and decay["params"][-1].shape == (10, 64)  # convs, fc
    n_bn = sum(2 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(no_decay["params"]) == n_bn + 1  # every BN weight and bias, and the fc bias
    (only,) = param_groups(model, 1e-4, no_decay_bn_bias=False)
    assert len(only["params"]) == len(list(model.parameters()))


def test_registries_cover_the_config_names_exactly():
    assert set(OPTIMIZERS) == set(typing.get_args(OptimizerName))
    assert set(SCHEDULES) == set(typing.get_args(ScheduleName))
    for name in OPTIMIZERS:  # each name builds what it says
        opt = build_optimizer(nn.Linear(2, 2), load_config(None, {"optim.name": name}).optim, 0.1)
        assert type(opt).__name__.lower() == ("sgd" if name in ("sgd", "nesterov") else name)
        assert opt.defaults.get("nesterov", False) == (name == "nesterov")
    rmsprop = build_optimizer(nn.Linear(2, 2), load_config(None, {"optim.name": "rmsprop"}).optim, 0.1).defaults
    assert (rmsprop["alpha"], rmsprop["eps"], rmsprop["momentum"]) == (0.9, 0.0316, 0.9)  # torchvision's TF-like form


def test_mixup_cutmix_is_a_function_of_seed_and_step():
    from resnet.train.setup import make_mixer

    cfg = load_config(None, None, ["data.mixup=0.2", "data.cutmix=1.0"])
    mixer = make_mixer(cfg, 10)
    images = torch.rand(8, 1, 28, 28)
    labels = torch.arange(8) % 10
    a, ta = mixer(images, labels, 5)
    torch.manual_seed(123)  # the global RNG does not matter ...
    b, tb = mixer(images, labels, 5)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    c, _ = mixer(images, labels, 6)  # ... the step does
    assert not torch.equal(a, c)
    assert ta.shape == (8, 10) and torch.allclose(ta.sum(1), torch.ones(8))
    state = torch.get_rng_state()
    mixer(images, labels, 7)
    assert torch.equal(state, torch.get_rng_state())  # and the training RNG stream is left untouched
    assert make_mixer(load_config(), 10) is None
