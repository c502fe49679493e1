"""Recipes and overrides: every shipped recipe loads, unknown keys get a suggestion, bad values one sentence."""

from __future__ import annotations

import pytest
import yaml

from resnet.config import (DEFAULT_RECIPE, FOLDER_FINETUNE_RECIPE, FOLDER_PHOTO_RECIPE, LOAD_STEPS, Request,
                           apply_overrides, apply_sets, config_from_dict, drop_other_datasets_fields,
                           evaluate_at_the_asked_size, follow_the_folder, length_asked_first, list_recipes,
                           load_config, pin_lr_batch_size, read_base, read_recipe, save_config, to_dict)
from resnet.errors import UserError

from .test_folder_defaults import write_rgb_photos, write_small_gray

RECIPES = ["fashion-mnist-resnet14", "fashion-mnist-resnet20", "fashion-mnist-resnet20-long",
           "cifar10-resnet20-paper", "cifar10-resnet32-paper", "cifar10-resnet44-paper", "cifar10-resnet56-paper",
           "cifar10-resnet110-paper", "imagenet-resnet50-paper", "imagenet-resnet50-modern"]


def test_every_recipe_is_shipped_and_loads():
    assert set(RECIPES) <= set(list_recipes())
    for name in list_recipes():
        cfg = load_config(name)
        assert cfg.recipe == name


def test_default_recipe_is_the_10_minute_recipe_with_resnet14_and_the_long_one_keeps_resnet20():
    cfg, base, long = load_config(), load_config("fashion-mnist-resnet20"), load_config("fashion-mnist-resnet20-long")
    assert (cfg.recipe, cfg.model.name, cfg.data.name, cfg.budget) == ("fashion-mnist-resnet14", "resnet14",
                                                                       "fashion-mnist", "10m")
    # only the net differs from the ResNet-20 recipe it builds on
    assert to_dict(cfg) == to_dict(base) | {"recipe": cfg.recipe, "model": to_dict(cfg)["model"]}
    assert (base.model.name, long.model.name) == ("resnet20", "resnet20")


def test_paper_cifar_recipe_is_the_paper_schedule():
    cfg = load_config("cifar10-resnet110-paper")
    assert cfg.model.name == "resnet110"
    assert (cfg.batch_size, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (128, 0.1, 0.9, 1e-4)
    assert cfg.iterations == 64000 and cfg.schedule.milestone_iters == [32000, 48000]
    assert (cfg.data.crop_padding, cfg.data.flip) == (4, True)
    assert (cfg.schedule.warmup_iters, cfg.schedule.warmup_mode, cfg.schedule.warmup_factor) == (400, "constant", 0.1)
    assert load_config("cifar10-resnet56-paper").schedule.warmup_iters == 0


def test_imagenet_paper_recipe():
    cfg = load_config("imagenet-resnet50-paper")
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.schedule.milestones) == (90, 256, 0.1, [30, 60])
    assert (cfg.data.image_size, cfg.data.eval_resize) == (224, 256)


def test_overrides_and_set():
    cfg = load_config("fashion-mnist-resnet20", {"optim.lr": 0.05, "batch_size": 64},
                      ["schedule.name=cosine", "data.flip=false", "model.kwargs.shortcut=B", "schedule.milestones=[1, 2]"])
    assert cfg.optim.lr == 0.05 and cfg.batch_size == 64 and cfg.schedule.name == "cosine"
    assert cfg.data.flip is False and cfg.model.kwargs == {"shortcut": "B"}
    assert cfg.schedule.milestones == [1.0, 2.0]


@pytest.mark.parametrize("sets,match", [
    (["optim.lrr=0.1"], "did you mean optim.lr"),
    (["epoch=3"], "did you mean epochs"),
    (["optim.lr=-1"], "optim.lr must be positive"),
    (["batch_size=0"], "batch_size must be at least 1"),
    (["epochs=0"], "epochs must be at least 1"),
    (["batch_size=abc"], "batch_size must be a whole number"),
    (["data.flip=3"], "data.flip must be true or false"),
    (["precision=fp8"], "precision must be"),
    (["model.name=resnet51"], "unknown model .resnet51.; did you mean .*resnet50"),
    (["data.name=fashionmnist"], "did you mean fashion-mnist"),
    (["schedule.name=cyclic"], "schedule.name must be"),
])
def test_bad_values_are_one_sentence(sets, match):
    with pytest.raises(UserError, match=match) as info:
        load_config(None, None, sets)
    assert "\n" not in str(info.value)


def test_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("cifar10-resnet110-paper")
    save_config(cfg, tmp_path / "config.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert to_dict(again) == to_dict(cfg)


def test_recipe_base_inheritance_and_user_file(tmp_path):
    assert read_recipe("cifar10-resnet56-paper")["iterations"] == 64000
    f = tmp_path / "mine.yaml"
    f.write_text("base: fashion-mnist-resnet20\nepochs: 2\noptim:\n  lr: 0.3\n")
    cfg = load_config(str(f))
    assert cfg.epochs == 2 and cfg.optim.lr == 0.3 and cfg.optim.name == load_config().optim.name
    with pytest.raises(UserError, match="unknown recipe"):
        load_config("cifar10-resnet57-paper")


def test_a_directory_named_as_a_recipe_does_not_hide_it(tmp_path, monkeypatch):
    """`resnet compare` run from runs/ writes runs/compare-fashion-mnist: the recipe of that name still loads there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare-fashion-mnist").mkdir()
    assert load_config("compare-fashion-mnist").recipe == "compare-fashion-mnist"
    with pytest.raises(UserError, match="config file missing.yaml does not exist"):
        load_config("missing.yaml")


def test_dataset_specific_fields_do_not_leak_into_another_data_set(tmp_path):
    """A recipe that holds out 5,000 Fashion-MNIST images; a run of it on a folder of 180 photos must not."""
    recipe = tmp_path / "held-out.yaml"
    recipe.write_text("base: fashion-mnist-resnet20\ndata:\n  val_split: 5000\n  train_limit: 20000\n")
    assert load_config(str(recipe)).data.val_split == 5000
    moved = load_config(str(recipe), {"data.name": "imagefolder:photos", "model.name": "resnet18"})
    assert moved.data.val_split == 0 and moved.data.train_limit is None and moved.data.name == "imagefolder:photos"
    asked = load_config(str(recipe), {"data.name": "imagefolder:photos"}, ["data.val_split=0.1"])
    assert asked.data.val_split == 0.1  # given again on the command line: kept
    assert load_config(str(recipe), {"data.name": "fashion-mnist"}).data.val_split == 5000  # the same set: kept


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UserError, match="optim.name must be one of sgd, nesterov, adamw, rmsprop, not 'lamb'"):
        load_config(None, None, ["optim.name=lamb"])
    with pytest.raises(UserError, match="test_tta must be one of none, flip, flip-translate, 10crop"):
        load_config(None, None, ["test_tta=5crop"])
    with pytest.raises(UserError, match="choose one of fashion-mnist, mnist, cifar10, cifar100, imagefolder:PATH"):
        load_config(None, None, ["data.name=svhn"])


def test_a_run_length_asked_for_replaces_the_recipes(tmp_path):
    default = load_config()
    assert (default.budget, default.iterations) == ("10m", None)  # the default recipe fills 10 minutes
    assert (load_config(None, {"iterations": 300}).budget, load_config(None, {"iterations": 300}).iterations) == \
        (None, 300)
    by_epochs = load_config(None, None, ["epochs=2"])
    assert (by_epochs.budget, by_epochs.iterations, by_epochs.epochs) == (None, None, 2)
    paper = load_config("cifar10-resnet20-paper", {"budget": "1h", "schedule.name": "cosine"})
    assert (paper.budget, paper.iterations) == ("1h", None)
    (tmp_path / "epochs.yaml").write_text("base: fashion-mnist-resnet20\nepochs: 50\n")
    by_recipe = load_config(str(tmp_path / "epochs.yaml"))  # a recipe's own epochs replace its base's budget
    assert (by_recipe.budget, by_recipe.iterations, by_recipe.epochs) == (None, None, 50)
    long = load_config("fashion-mnist-resnet20-long")  # its own budget replaces its base's
    assert (long.budget, long.iterations) == ("1h", None)
    with pytest.raises(UserError, match="either budget or iterations"):
        load_config(None, {"budget": "10m", "iterations": 100})


def test_a_validated_config_is_frozen():
    """What the user asked for is never written to: the run's decisions live in its run state (run.json)."""
    import dataclasses

    cfg = load_config()
    for obj, key in ((cfg, "epochs"), (cfg, "out"), (cfg.optim, "lr"), (cfg.data, "image_size"),
                     (cfg.schedule, "name"), (cfg.model, "name"), (cfg.finetune, "backbone_lr")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, key, None)


def test_changes_name_the_dotted_keys_that_differ():
    from resnet.config import changes

    first = to_dict(load_config())
    now = to_dict(load_config(None, {"iterations": 300, "optim.lr": 0.05}, ["model.kwargs.shortcut=B"]))
    assert changes(first, now) == {"iterations": 300, "budget": None, "optim.lr": 0.05,
                                   "model.kwargs": {"shortcut": "B"}}
    assert changes(first, first) == {}


# ------------------------------------------------------------------------ load_config's steps, one at a time


def request(data: dict | None = None, recipe=None, overrides=None, sets=(), resume=None, recipe_data=None):
    return Request(recipe, dict(overrides or {}), list(sets), resume, data=data or {}, recipe_data=recipe_data or {})


def test_load_steps_are_the_documented_order():
    assert [step.__name__ for step in LOAD_STEPS] == [
        "read_base", "pin_lr_batch_size", "apply_overrides", "length_asked_first", "apply_sets",
        "drop_other_datasets_fields", "follow_the_folder", "evaluate_at_the_asked_size"]


def test_read_base_takes_the_recipe_asked_or_the_default_and_keeps_its_data_section():
    r = request(recipe="fashion-mnist-resnet20")
    read_base(r)
    assert r.data["model"]["name"] == "resnet20" and r.recipe_data == r.data["data"]
    r = request()
    read_base(r)
    assert r.data == read_recipe(DEFAULT_RECIPE)
    with pytest.raises(UserError, match="drop --config"):
        read_base(request(recipe="fashion-mnist-resnet20", resume="somewhere"))


def test_read_base_picks_the_folder_recipes_by_weights_and_image_size(tmp_path):
    write_rgb_photos(tmp_path / "photos")
    r = request(overrides={"data.name": f"imagefolder:{tmp_path / 'photos'}"})
    read_base(r)
    assert r.data == read_recipe(FOLDER_PHOTO_RECIPE)
    r = request(overrides={"data.name": f"imagefolder:{tmp_path / 'photos'}", "pretrained": "w.safetensors"})
    read_base(r)
    assert r.data == read_recipe(FOLDER_FINETUNE_RECIPE)


def test_pin_lr_batch_size_keeps_the_recipes_batch_unless_set():
    r = request({"batch_size": 64, "optim": {"lr": 0.1}})
    pin_lr_batch_size(r)
    assert r.data["optim"]["lr_batch_size"] == 64
    r = request({"optim": {"lr": 0.1, "lr_batch_size": 256}})
    pin_lr_batch_size(r)
    assert r.data["optim"]["lr_batch_size"] == 256


def test_overrides_then_sets_and_sets_win():
    r = request({"optim": {"lr": 0.1}}, overrides={"optim.lr": 0.2, "seed": 3}, sets=[("optim.lr", 0.3)])
    apply_overrides(r)
    assert (r.data["optim"]["lr"], r.data["seed"]) == (0.2, 3)
    apply_sets(r)
    assert r.data["optim"]["lr"] == 0.3 and r.asked == {"optim.lr": 0.3, "seed": 3}


def test_a_length_asked_for_clears_the_recipes_own():
    r = request({"budget": "10m", "max_epochs": 30, "epochs": 5}, overrides={"iterations": 100})
    length_asked_first(r)
    assert (r.data["budget"], r.data["max_epochs"], r.data["epochs"]) == (None, None, 5)
    r = request({"budget": "10m", "max_epochs": 30}, overrides={"seed": 1})
    length_asked_first(r)
    assert (r.data["budget"], r.data["max_epochs"]) == ("10m", 30)


def test_another_data_set_drops_the_recipes_per_data_set_fields_unless_given():
    own = {"name": "fashion-mnist", "val_split": 5000, "image_size": 28}
    r = request({"data": {**own, "name": "cifar10"}}, recipe_data=own)
    drop_other_datasets_fields(r)
    assert "val_split" not in r.data["data"] and r.data["data"]["name"] == "cifar10"
    r = request({"data": {**own, "name": "cifar10", "val_split": 100}}, sets=[("data.val_split", 100)],
                recipe_data=own)
    drop_other_datasets_fields(r)
    assert r.data["data"]["val_split"] == 100
    r = request({"data": dict(own)}, recipe_data=own)  # the recipe's own data set: nothing dropped
    drop_other_datasets_fields(r)
    assert r.data["data"] == own


def test_follow_the_folder_fills_what_no_one_set_and_says_why(tmp_path):
    write_small_gray(tmp_path / "grey")
    name = f"imagefolder:{tmp_path / 'grey'}"
    r = request(overrides={"data.name": name, "seed": 1})
    read_base(r)
    apply_overrides(r)
    follow_the_folder(r)
    assert r.chosen and r.data["chosen"] and all(key != "seed" for key in r.chosen)
    r = request(read_recipe(DEFAULT_RECIPE))  # a named data set: nothing to follow
    follow_the_folder(r)
    assert r.chosen == {} and "chosen" not in r.data


def test_an_image_size_asked_for_moves_the_evaluation_resize():
    own = {"image_size": 224, "eval_resize": 256}
    r = request({"data": {"image_size": 128, "eval_resize": 256}}, overrides={"data.image_size": 128}, recipe_data=own)
    evaluate_at_the_asked_size(r)
    assert r.data["data"]["eval_resize"] == round(128 * 256 / 224)  # a photo: the recipe's proportion
    r = request({"data": {"image_size": 32, "eval_resize": 256}}, overrides={"data.image_size": 32}, recipe_data=own)
    evaluate_at_the_asked_size(r)
    assert r.data["data"]["eval_resize"] == 32  # small images: whole, at the size trained
    r = request({"data": {"image_size": 128, "eval_resize": 300}},
                overrides={"data.image_size": 128, "data.eval_resize": 300}, recipe_data=own)
    evaluate_at_the_asked_size(r)
    assert r.data["data"]["eval_resize"] == 300  # asked for too: kept
