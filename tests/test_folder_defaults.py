"""A user's own folder: the defaults follow its images (crop, net, channels, batch, evaluation, augmentation, memory),
flags and recipes win, a step that cannot fit in memory and a budget too short for one slow step are refused in one
sentence before anything is written, the planner's timing stays within its share, and a budget shorter than an epoch
trains the steps that fit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet.config import load_config, to_dict
from resnet.data import FileLoader, MemoryLoader, build_data, open_split
from resnet.data.folder_stats import inspect_folder
from resnet.errors import UserError
from resnet.io import load_checkpoint
from resnet.train import train
from resnet.train.timing import time_evaluation, time_training_steps

QUIET = dict(log=lambda *a, **k: None)


def write_small_gray(root, per_class=12, classes=3):
    """Real Fashion-MNIST pixels (28 px, grey) as PNG files: root/train/<c>/ and root/val/<c>/."""
    data = open_split("fashion-mnist", "test", limit=2000)
    for split, offset in (("train", 0), ("val", per_class)):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            index = (data.labels == c).nonzero().flatten()[offset:offset + per_class]
            for i in index.tolist():
                Image.fromarray(data.images[i, 0].numpy(), mode="L").save(root / split / f"c{c}" / f"{i}.png")
    return root


def write_rgb_photos(root, per_class=6, size=(120, 96)):
    """Colour photos of 120x96 px (JPEG): smooth gradients of a different hue per class, with noise."""
    g = torch.Generator().manual_seed(0)
    for c, hue in enumerate(((220, 60, 40), (40, 160, 220))):
        (root / "train" / f"k{c}").mkdir(parents=True)
        for i in range(per_class):
            ramp = torch.linspace(0, 1, size[0]).view(1, 1, -1).expand(3, size[1], size[0])
            pixels = torch.tensor(hue).view(3, 1, 1) * ramp + 30 * torch.rand(3, size[1], size[0], generator=g)
            image = Image.fromarray(pixels.clamp(0, 255).byte().permute(1, 2, 0).numpy(), mode="RGB")
            image.save(root / "train" / f"k{c}" / f"{i}.jpg", quality=90)
    return root


# ------------------------------------------------------------------------------------------------------- defaults


def test_a_folder_of_small_grey_images_gets_a_small_net_at_their_size_in_memory(tmp_path):
    root = write_small_gray(tmp_path / "small")
    stats = inspect_folder(root)
    assert (stats.train_images, stats.classes, stats.short_side, stats.grayscale) == (36, 3, 28, True)
    cfg = load_config(None, {"data.name": f"imagefolder:{root}"})
    assert cfg.model.name == "resnet14" and cfg.model.kwargs == {"in_chans": 1}
    assert (cfg.data.image_size, cfg.data.eval_resize) == (28, 28)
    assert cfg.batch_size == 8  # the largest power of two up to a quarter of 36
    assert cfg.optim.lr_batch_size == 256  # the recipe's lr is quoted for its batch: scaled down with it
    assert any("grayscale" in line for line in cfg.chosen) and any("pad-and-crop" in line for line in cfg.chosen)
    data = build_data(cfg.data, cfg.batch_size, 0, torch.device("cpu"), in_chans=1, **QUIET)
    assert isinstance(data.train, MemoryLoader) and data.test_name == "val" and data.eval_set == "val"
    images, _ = next(iter(data.train.epoch(0)))
    assert images.shape == (8, 1, 28, 28)
    test_images, _ = next(iter(data.test.epoch(0)))
    reference = open_split("fashion-mnist", "test", limit=2000).images  # the files hold these very pixels
    pixels = (test_images * data.std[0] + data.mean[0]) * 255
    assert any(torch.allclose(pixels[0].round(), reference[i].float()) for i in range(len(reference)))


def test_a_folder_of_colour_photos_gets_the_photo_recipe_in_memory_and_whole_image_evaluation(tmp_path):
    root = write_rgb_photos(tmp_path / "photos")
    cfg = load_config(None, {"data.name": f"imagefolder:{root}"})
    assert cfg.recipe == "imagefolder-photos" and cfg.optim.name == "adamw"
    assert cfg.model.name == "resnet18" and cfg.model.kwargs == {"in_chans": 3}
    assert (cfg.data.image_size, cfg.data.eval_resize, cfg.data.min_scale) == (96, 96, 0.25)  # no border cut off
    assert cfg.batch_size == 2  # 12 images, 10% held out: 10, a quarter is 2
    data = build_data(cfg.data, cfg.batch_size, 0, torch.device("cpu"), in_chans=3, **QUIET)
    assert isinstance(data.train, MemoryLoader) and data.test_name == "held-out"
    assert data.train.crop_size == 96  # random-resized crops, cut on the device from the decoded images
    assert next(iter(data.train.epoch(0)))[0].shape == (2, 3, 96, 96)


def test_flags_and_a_recipe_win_over_the_images(tmp_path):
    root = write_small_gray(tmp_path / "small")
    asked = load_config(None, {"data.name": f"imagefolder:{root}", "model.name": "resnet20", "batch_size": 4},
                        ["data.image_size=32", "model.kwargs.in_chans=3"])
    assert (asked.model.name, asked.batch_size, asked.data.image_size, asked.model.kwargs["in_chans"]) == \
        ("resnet20", 4, 32, 3)
    assert asked.data.eval_resize == 32  # follows the asked training size
    recipe = load_config("finetune-imagefolder-small", {"data.name": f"imagefolder:{root}"})
    assert (recipe.model.name, recipe.data.image_size, recipe.data.eval_resize) == ("resnet18", 64, 73)
    assert recipe.model.kwargs == {"in_chans": 1}  # the recipe leaves the channels to the images


def test_a_training_size_alone_moves_the_evaluation_resize_with_it():
    cfg = load_config("finetune-imagefolder", {"data.name": "imagefolder:photos"}, ["data.image_size=32"])
    assert (cfg.data.image_size, cfg.data.eval_resize) == (32, 32)
    cfg = load_config("finetune-imagefolder", {"data.name": "imagefolder:photos"}, ["data.image_size=112"])
    assert cfg.data.eval_resize == 128


def test_a_folder_of_one_class_is_refused(tmp_path):
    root = write_small_gray(tmp_path / "one", classes=1)
    with pytest.raises(UserError, match="holds 1 class folder .* needs at least two"):
        load_config(None, {"data.name": f"imagefolder:{root}"})


# ------------------------------------------------------------------------------------------- memory and budget


def tiny(out, **extra):
    return load_config(None, {"out": str(out), "data.train_limit": 2048, "data.test_limit": 500, "batch_size": 64,
                              **extra}, ["threads=1", "test_tta=none", "log_every=10"])


def test_a_step_that_cannot_fit_in_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr("resnet.train.probe.free_bytes", lambda device: 8 << 20)  # 8 MiB free
    out = tmp_path / "run"
    with pytest.raises(UserError) as err:
        train(tiny(out, epochs=1), **QUIET)
    message = str(err.value)
    assert message.startswith("one training step at batch 64 on 28x28 images needs about ") and "\n" not in message
    assert "lower --batch-size or data.image_size" in message and not out.exists()


def test_a_budget_too_short_for_a_slow_step_is_refused_from_the_probe(tmp_path, monkeypatch):
    monkeypatch.setattr("resnet.train.probe.StepProbe.step_seconds", lambda self, batch: 100.0)
    out = tmp_path / "run"
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"a budget of 60s is shorter than one training step here: one takes about "
                                        r"100 s"):
        train(tiny(out, budget="60s"), **QUIET)
    assert time.perf_counter() - start < 30 and not out.exists()


def test_timing_a_slow_step_and_a_slow_evaluation_stays_within_the_share():
    steps = []

    def slow_step(images, labels):
        steps.append(1)
        time.sleep(0.2)

    step_s = time_training_steps(slow_step, [(None, None)] * 20, torch.device("cpu"), untimed=1, max_seconds=0.3)
    assert step_s == pytest.approx(0.2, rel=0.5) and len(steps) <= 3  # 1 untimed, then timed until 0.3 s went by

    class Loader:  # 4,000 images in batches of 500
        size, world = 4000, 1

        def epoch(self, epoch):
            for _ in range(8):
                yield torch.zeros(500, 1, 4, 4), torch.zeros(500, dtype=torch.long)

    evaluated = []

    def slow_evaluation(batches):
        for images, _ in batches:
            evaluated.append(len(images))
            time.sleep(0.002 * len(images))  # 2 ms an image: a whole pass would take 8 s

    eval_s = time_evaluation(slow_evaluation, Loader(), torch.device("cpu"))
    assert eval_s == pytest.approx(8.0, rel=0.3)
    # 2 untimed, 8, then slices sized to take the probe's second until one takes half of it (250 images here), at
    # most the whole batch: never the whole pass
    assert evaluated[:2] == [2, 8] and all(n < 250 for n in evaluated[:-1]) and evaluated[-1] <= 500


def test_a_budget_shorter_than_an_epoch_trains_the_steps_that_fit(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(None, {"out": str(out), "data.train_limit": 30000, "data.test_limit": 500, "batch_size": 64,
                             "budget": "20s"}, ["threads=1", "test_tta=none", "log_every=5", "eval_every=1"])
    asked = to_dict(cfg)
    result = train(cfg, **QUIET)
    assert to_dict(cfg) == asked  # the run's decisions (its plan, its directory) live in run.json, not the config
    steps_per_epoch = 30000 // 64
    assert 5 <= result.results["steps"] < steps_per_epoch
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["run"]["step"] == result.results["steps"]
    assert last["scheduler"]["position"] == pytest.approx(last["scheduler"]["length"])  # the schedule has ended


@pytest.mark.parametrize("kind", ["small grey", "colour photos"])
def test_eval_and_predict_of_an_in_memory_folder_run_see_what_its_final_test_saw(tmp_path, kind):
    """The run trains and tests from memory (pad-and-crop for small images, random-resized crops of images stored
    larger for photos); `resnet eval` and `resnet predict` read the files again through the model card's resize and
    crop: the same pixels, so the same top-1 and the same predictions."""
    from resnet.backends import load_predictor
    from resnet.evaluate import evaluate_model
    from resnet.predict import predict_files

    if kind == "small grey":
        root, count, size = write_small_gray(tmp_path / "small"), 36, [1, 28, 28]
    else:
        root, size = write_rgb_photos(tmp_path / "photos", per_class=20), [3, 96, 96]
        for c in ("k0", "k1"):  # a val/ folder of its own: files evaluation reads again
            (root / "val" / c).mkdir(parents=True)
            for f in sorted((root / "train" / c).iterdir())[:6]:
                f.rename(root / "val" / c / f.name)
        count = 12
    cfg = load_config(None, {"data.name": f"imagefolder:{root}", "out": str(tmp_path / "run"), "epochs": 2},
                      ["threads=1", "test_tta=none"])
    result = train(cfg, **QUIET)
    data = build_data(cfg.data, cfg.batch_size, 0, torch.device("cpu"), in_chans=size[0], **QUIET)
    assert isinstance(data.train, MemoryLoader)
    ev = evaluate_model(tmp_path / "run", tta="none")
    assert ev.result.top1 == result.results["test_top1"] and ev.result.count == count
    assert (ev.card.resize, ev.card.crop, ev.card.input_size) == (size[1], size[1], size)
    backend, card, _ = load_predictor(tmp_path / "run", "torch")
    files = sorted(f for f in (root / "val").rglob("*") if f.is_file())
    predicted = predict_files(backend, card, files, topk=1)
    right = sum(p["top"][0]["label"] == Path(p["path"]).parent.name for p in predicted)
    assert 100 * right / len(files) == pytest.approx(ev.result.top1)


def test_fine_tuning_a_bare_state_dict_on_small_images_picks_a_small_net(tmp_path):
    """--pretrained FILE.pth with no card and no --model: the fine-tuning recipe's ResNet-50 is not what 28-px images
    get; the folder's small net is (the weights must then fit it, or the run says which model they were made for)."""
    root = write_small_gray(tmp_path / "small")
    cfg = load_config(None, {"data.name": f"imagefolder:{root}", "pretrained": str(tmp_path / "w.pth")})
    assert cfg.recipe == "finetune-imagefolder" and cfg.model.name == "resnet14" and cfg.data.image_size == 28
