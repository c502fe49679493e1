"""A folder of colour images trains with the colour-folder recipe from its first step: no step's training loss rises
above the first step's (the recipe it replaced jumped to 8-11 on a 6-class folder, chance being ln 6 = 1.8)."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from PIL import Image

from resnet.config import FOLDER_PHOTO_RECIPE, load_config
from resnet.data import open_split
from resnet.train import train

HUES = ((230, 80, 40), (40, 170, 90), (60, 90, 230), (200, 180, 40))


def write_colour_folder(root, per_class=48, size=64, classes=4):
    """Real Fashion-MNIST pictures (one garment class per folder) scaled to ``size`` px and painted in colour on a
    background of random colour: RGB PNG files in root/train/<class>/ and root/val/<class>/."""
    data = open_split("fashion-mnist", "test", limit=3000)
    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        index = (data.labels == c).nonzero().flatten()[:per_class].tolist()
        for j, i in enumerate(index):
            split = "val" if j % 6 == 0 else "train"
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
            shape = F.interpolate(data.images[i:i + 1].float() / 255, size=(size, size), mode="bilinear")[0]
            colour = torch.tensor(HUES[c], dtype=torch.float32).view(3, 1, 1)
            background = torch.randint(0, 256, (3, 1, 1), generator=g).float()
            pixels = shape * colour + (1 - shape) * background
            Image.fromarray(pixels.round().byte().permute(1, 2, 0).numpy(), mode="RGB").save(
                root / split / f"c{c}" / f"{i}.png")
    return root


def test_a_colour_folder_trains_without_a_loss_spike(tmp_path):
    root = write_colour_folder(tmp_path / "colour")
    out = tmp_path / "run"
    cfg = load_config(None, {"data.name": f"imagefolder:{root}", "out": str(out), "iterations": 60},
                      ["threads=1", "log_every=1", "eval_every=100", "precise_bn=64"])
    assert cfg.recipe == FOLDER_PHOTO_RECIPE and cfg.model.name == "resnet18"
    train(cfg, log=lambda *a, **k: None)
    losses = [json.loads(line)["train_loss"] for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(losses) == 60
    assert max(losses) <= losses[0], f"step {losses.index(max(losses)) + 1} spiked to {max(losses):.2f} " \
                                     f"from {losses[0]:.2f}"
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0]  # and it learns


def test_mixup_and_cutmix_only_in_a_run_long_enough_for_them(tmp_path):
    """data.mix_from_epochs: MixUp/CutMix train a run of at least that many epochs and not a shorter one; the banner
    says which and why."""
    from resnet.train.setup import mix_note, mixes
    from resnet.train.trainer import Trainer

    root = write_colour_folder(tmp_path / "colour", per_class=12)
    asked = {"data.name": f"imagefolder:{root}", "data.mixup": 0.2, "data.cutmix": 1.0, "data.mix_from_epochs": 10}
    for epochs, on in ((9, False), (10, True)):
        cfg = load_config(None, {**asked, "epochs": epochs, "out": str(tmp_path / f"run{epochs}")}, ["threads=1"])
        trainer = Trainer(cfg, log=lambda *a, **k: None)
        assert trainer.state.mixing is on and (trainer.ctx.mixer is not None) is on
        assert mixes(cfg, epochs) is on
        assert mix_note(cfg, epochs, on) == (f"MixUp/CutMix {'on' if on else 'off'}: the run holds {epochs} epochs, "
                                             f"{'at least' if on else 'fewer than'} data.mix_from_epochs=10")
    assert load_config(None, {"data.name": f"imagefolder:{root}"}).data.mix_from_epochs == 100  # the recipe's
    plain = load_config(None, {"data.name": f"imagefolder:{root}", "data.mix_from_epochs": None})
    assert mixes(plain, 1) and mix_note(plain, 1, True) is None  # no threshold: whenever set, and no note
