"""Fine-tuning: frozen stages (no gradient, no optimizer slot, BN in eval mode, weights bit-identical), the backbone's
lr multiplier within the no-decay split, the head warm-up decided by the step (so a resume does the same), the
shipped recipes, and fine-tuning a Fashion-MNIST net on a new folder in one command (benchmarks/transfer.py
measures what it gives)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from torch import nn

from resnet.config import FinetuneConfig, OptimConfig, load_config
from resnet.errors import UserError
from resnet.models import create_model
from resnet.train import train
from resnet.train.finetune import FineTuning, frozen_modules, plan_finetuning
from resnet.train.loop import TrainContext, train_step
from resnet.train.optim import build_optimizer, build_scheduler

QUIET = dict(log=lambda *a, **k: None)


def plan(model, freeze_stages=0, backbone_lr=1.0, head_warmup_epochs=0.0, steps_per_epoch=4):
    return FineTuning(model, FinetuneConfig(freeze_stages, backbone_lr, head_warmup_epochs), steps_per_epoch)


def names_needing_grad(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def context(model, ft: FineTuning | None, backbone_lr=1.0, no_decay=True) -> TrainContext:
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=0.1, weight_decay=1e-2, no_decay_bn_bias=no_decay), 0.1,
                          backbone_lr)
    sched = torch.optim.lr_scheduler.ConstantLR(opt, 1.0, 0)
    return TrainContext(model, opt, sched, torch.amp.GradScaler("cpu", enabled=False), nn.CrossEntropyLoss(),
                        torch.device("cpu"), "fp32", freeze=ft.apply if ft else None)


def batch(seed: int, n=8, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------------- freezing


def test_freeze_stages_picks_the_stem_and_the_first_stages():
    model = create_model("resnet20")  # stem (conv1, bn1), layer1-3, fc
    plan(model, freeze_stages=1)
    assert {n.split(".")[0] for n in names_needing_grad(model)} == {"layer2", "layer3", "fc"}
    model = create_model("resnet20")
    plan(model, freeze_stages=-1)
    assert names_needing_grad(model) == {"fc.weight", "fc.bias"}
    model = create_model("resnet18")  # 4 stages
    plan(model, freeze_stages=3)
    assert {n.split(".")[0] for n in names_needing_grad(model)} == {"layer4", "fc"}
    # pre-activation nets: the final BN after the last stage is backbone, not stem
    model = create_model("preact_resnet20")
    assert [type(m).__name__ for m in frozen_modules(model, 3)][-1] == "Sequential"
    plan(model, freeze_stages=3)
    assert {n.split(".")[0] for n in names_needing_grad(model)} == {"norm", "fc"}
    with pytest.raises(UserError, match="freeze_stages=4 but ResNet has 3 stages"):
        plan(create_model("resnet20"), freeze_stages=4)
    assert plan_finetuning(create_model("resnet20"), FinetuneConfig(), 10) is None  # the default: nothing to do


@pytest.mark.parametrize("freeze_stages", [1, -1])
def test_frozen_layers_stay_bit_identical_with_bn_in_eval_mode(freeze_stages):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10)
    ft = plan(model, freeze_stages=freeze_stages)
    ctx = context(model, ft)
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    in_optimizer = {id(p) for g in ctx.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for n, p in model.named_parameters() if n in frozen_names)

    seen = {}  # BN name -> training flag during the forward of a training step
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and name in ("bn1", "layer1.0.bn1", "layer4.1.bn2"):
            m.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, mod.training))
    before = snapshot(model)
    for step in range(3):
        train_step(ctx, *batch(step))
    after = snapshot(model)
    frozen_prefixes = ("conv1", "bn1", "layer1") if freeze_stages == 1 else ("conv1", "bn1", "layer")
    frozen_keys = [k for k in before if k.startswith(frozen_prefixes)]
    assert frozen_keys and all(torch.equal(before[k], after[k]) for k in frozen_keys)  # weights and BN statistics
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert seen["bn1"] is False and seen["layer1.0.bn1"] is False
    assert seen["layer4.1.bn2"] is (freeze_stages == 1)  # a trained stage's BN trains
    if freeze_stages == 1:
        assert not torch.equal(before["layer4.1.bn2.running_mean"], after["layer4.1.bn2.running_mean"])
        assert not torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])


# ---------------------------------------------------------------------------------------------------- backbone lr


def test_backbone_lr_splits_every_group_and_keeps_the_no_decay_split():
    model = create_model("resnet20")
    opt = build_optimizer(model, OptimConfig(lr=0.1, weight_decay=5e-4, no_decay_bn_bias=True), 0.2, 0.1)
    head = {id(p) for p in model.fc.parameters()}
    got = [(g["lr"], g["weight_decay"], {id(p) in head for p in g["params"]}, {p.ndim > 1 for p in g["params"]})
           for g in opt.param_groups]
    assert got == [(0.2, 5e-4, {True}, {True}), (0.2, 0.0, {True}, {False}),  # head first: the logged lr is its lr
                   (pytest.approx(0.02), 5e-4, {False}, {True}), (pytest.approx(0.02), 0.0, {False}, {False})]
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter once
    # frozen layers leave the optimizer; the others keep the multiplier
    model = create_model("resnet20")
    plan(model, freeze_stages=-1, backbone_lr=0.1)
    opt = build_optimizer(model, OptimConfig(lr=0.1, no_decay_bn_bias=True), 0.1, 0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]  # fc.weight, fc.bias
    # without the multiplier nothing changes: the groups of every existing recipe
    assert len(build_optimizer(create_model("resnet20"), OptimConfig(no_decay_bn_bias=False), 0.1).param_groups) == 1


@pytest.mark.parametrize("schedule", ["cosine", "step", "onecycle"])
def test_every_schedule_keeps_the_backbone_at_its_fraction(schedule):
    cfg = load_config(None, None, ["epochs=5", f"schedule.name={schedule}", "schedule.warmup_epochs=1",
                                   "schedule.milestones=[5]", "schedule.min_lr_factor=0.05"])
    opt = build_optimizer(create_model("resnet20"), cfg.optim, 0.1, 0.25)
    sched = build_scheduler(opt, cfg.schedule, 4, 20)
    for _ in range(20):
        head, backbone = opt.param_groups[0]["lr"], opt.param_groups[-1]["lr"]
        assert backbone == pytest.approx(0.25 * head, rel=1e-6)
        opt.step()
        sched.step()
    if schedule == "cosine":  # each group ends at its own floor, not at the head's
        assert opt.param_groups[-1]["lr"] == pytest.approx(0.25 * 0.1 * 0.05, rel=1e-3)


# --------------------------------------------------------------------------------------------------- head warm-up


def test_head_warmup_is_decided_by_the_step():
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10)
    ft = plan(model, freeze_stages=1, head_warmup_epochs=1.5, steps_per_epoch=2)  # 3 steps of the head alone
    ctx = context(model, ft, backbone_lr=0.1)
    start = snapshot(model)
    for step in range(3):
        train_step(ctx, *batch(step))
        assert names_needing_grad(model) == {"fc.weight", "fc.bias"}
    after_warmup = snapshot(model)
    assert all(torch.equal(start[k], after_warmup[k]) for k in start if not k.startswith("fc."))
    train_step(ctx, *batch(3))  # step 4: the backbone joins, less the stem and layer1
    assert {n.split(".")[0] for n in names_needing_grad(model)} == {"layer2", "layer3", "layer4", "fc"}
    joined = snapshot(model)
    assert not torch.equal(after_warmup["layer2.0.conv1.weight"], joined["layer2.0.conv1.weight"])
    assert torch.equal(after_warmup["layer1.0.conv1.weight"], joined["layer1.0.conv1.weight"])
    # A fresh plan (a resumed run) does what the step says, whatever state the model was left in.
    for step, warm in ((5, False), (1, True), (3, False)):
        fresh = plan(model, freeze_stages=1, head_warmup_epochs=1.5, steps_per_epoch=2)
        model.train()
        fresh.apply(step)
        assert ("layer3.0.conv1.weight" in names_needing_grad(model)) is not warm
        assert model.layer3[0].bn1.training is not warm and model.layer1[0].bn1.training is False


def _tiny(out, **overrides) -> object:
    base = {"out": str(out), "batch_size": 32, "data.train_limit": 256, "data.val_split": 0, "data.test_limit": 200,
            "data.random_erasing": 0.5, "deterministic": True, "log_every": 1, "schedule.name": "constant",
            "schedule.warmup_epochs": 0, "finetune.freeze_stages": 1, "finetune.backbone_lr": 0.1,
            "finetune.head_warmup_epochs": 1, "test_tta": "none", "epochs": None, "iterations": 12}
    return load_config(None, {**base, **overrides})


def test_resume_inside_the_head_warmup_is_bit_identical(tmp_path):
    """8 steps per epoch, the head alone for the first 8: stop at step 5, resume, and end where a run that never
    stopped ends (the warm-up state comes from the step, not from memory)."""
    whole = train(_tiny(tmp_path / "whole"), **QUIET)
    train(_tiny(tmp_path / "cut", iterations=5), **QUIET)
    resumed = train(_tiny(tmp_path / "cut"), resume=tmp_path / "cut", **QUIET)
    from safetensors.torch import load_file
    a, b = load_file(str(whole.run_dir / "model.safetensors")), load_file(str(resumed.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results["steps"] == 12


# ---------------------------------------------------------------------------------------------------- config, recipes


@pytest.mark.parametrize("setting,message", [
    ("finetune.freeze_stages=-2", "finetune.freeze_stages must be -1"),
    ("finetune.backbone_lr=0", "finetune.backbone_lr must be positive"),
    ("finetune.head_warmup_epochs=-1", "finetune.head_warmup_epochs must be >= 0"),
])
def test_bad_values_get_one_sentence(setting, message):
    with pytest.raises(UserError, match=message):
        load_config(None, None, [setting])


def test_recipes_are_fine_tuning_recipes():
    for name, size in (("finetune-imagefolder", 224), ("finetune-imagefolder-small", 64)):
        cfg = load_config(name, {"data.name": "imagefolder:photos"})
        assert cfg.pretrained == "torchvision" and cfg.data.image_size == size and cfg.label_smoothing == 0.1
        assert cfg.schedule.name == "cosine" and 0 < cfg.schedule.warmup_epochs <= 1 and cfg.epochs <= 30
        assert cfg.finetune.backbone_lr < 1 and cfg.optim.lr < 0.1 and cfg.data.val_split == 0


def write_fashion_folder(root, split, data, keep, per_class, seed=0, rgb=False) -> int:
    """Real Fashion-MNIST pixels as PNG files under root/split/<k>-<class>/ (grey, or grey in RGB files)."""
    g = torch.Generator().manual_seed(seed)
    for k in keep:
        index = (data.labels == k).nonzero().flatten()
        index = index[torch.randperm(len(index), generator=g)[:per_class]]
        folder = root / split / f"{k}-{data.classes[k].replace('/', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in index.tolist():
            image = Image.fromarray(data.images[i, 0].numpy(), mode="L")
            (image.convert("RGB") if rgb else image).save(folder / f"{i:05d}.png")
    return len(keep) * per_class


def test_default_recipe_on_an_image_folder_drops_the_fashion_mnist_fields(tmp_path):
    """`resnet train --model resnet18 --data imagefolder:PATH` and nothing else: the recipe's 5,000-image hold-out
    does not carry over, and the folder's images, read from their files, are the training batches' pixels."""
    from resnet.data import build_data, open_split

    write_fashion_folder(tmp_path / "f", "train", open_split("fashion-mnist", "test"), range(2), 8)
    cfg = load_config(None, {"model.name": "resnet18", "data.name": f"imagefolder:{tmp_path / 'f'}"})
    assert cfg.data.val_split == 0 and cfg.data.train_limit is None and cfg.model.kwargs == {"in_chans": 1}
    data_cfg = dataclasses.replace(cfg.data, crop_padding=0, flip=False, image_size=28, eval_resize=28)
    data = build_data(data_cfg, 4, 0, torch.device("cpu"), in_chans=1, **QUIET)
    images, labels = next(iter(data.train.epoch(0)))
    pixels = images * torch.tensor(data.std).view(1, -1, 1, 1) + torch.tensor(data.mean).view(1, -1, 1, 1)
    assert data.train.size == 16 - 2 and pixels.shape == (4, 1, 28, 28)  # 10% held out: no val/ folder
    assert 0 <= pixels.min() < 0.01 and pixels.max() > 0.5


# ------------------------------------------------------------------------------------------------------- transfer


def test_fine_tuning_a_fashion_mnist_net_on_a_new_folder_beats_chance(tmp_path, trained_run):
    """benchmarks/transfer.py measures what transfer gives; here the path must work: the suite's Fashion-MNIST run
    (ResNet-14, 1 channel) fine-tuned in one command, with no batch or size flag, on 20 RGB images of each of 5
    classes (real Fashion-MNIST pixels, a new 5-class head) learns them well above chance (20%)."""
    from resnet.data import open_split

    train_set, test_set = open_split("fashion-mnist", "train"), open_split("fashion-mnist", "test")
    folder = tmp_path / "new"
    write_fashion_folder(folder, "train", train_set, range(5), 20, rgb=True)
    write_fashion_folder(folder, "val", test_set, range(5), 40, rgb=True)
    cfg = load_config(None, {"data.name": f"imagefolder:{folder}", "pretrained": str(trained_run.run_dir),
                             "out": str(tmp_path / "tuned"), "epochs": 6}, ["test_tta=none", "threads=1"])
    assert cfg.model.name == "resnet14" and cfg.model.kwargs["in_chans"] == 3 and cfg.batch_size <= 25
    lines = []
    result = train(cfg, log=lines.append)
    assert any("first conv repeated from 1 to 3 input channels" in line and "new 5-class head" in line
               for line in lines), lines
    assert result.results["test_top1"] > 40
