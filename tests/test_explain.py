"""`resnet explain`: Grad-CAM pictures per file and a contact sheet, for both families, gray and colour inputs; the map
follows the evidence and the chosen class; bad files are reported while the others are explained."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from resnet.cli import main
from resnet.explain import SHEET, explain_files
from resnet.gradcam import cam_layer
from resnet.models import create_model
from resnet.weights import ModelCard, save_model

from .conftest import require_module


@pytest.fixture(autouse=True)
def _captum():
    require_module("captum")


def gray_card(size: int = 28, classes: int = 10, arch: str = "resnet20") -> ModelCard:
    return ModelCard(arch, {"num_classes": classes, "in_chans": 1}, [f"c{i}" for i in range(classes)], [1, size, size],
                     [0.5], [0.5], [size, size], dataset="fashion-mnist")


def write_images(folder, n: int, size=(28, 28), mode: str = "L", seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        paths.append(path)
    return paths


class Detectors(nn.Module):
    """A hand-built net with a ResNet's shape: class 0 ("bright") is the mean of relu(x), class 1 ("dark") the mean of
    relu(-x), measured on a 4x-downsampled feature map; nothing else carries any signal."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.pool = nn.AvgPool2d(4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.eye(2))

    def forward_features(self, x):
        return self.pool(torch.relu(self.conv(x)))

    def forward_head(self, x):
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_the_map_peaks_where_the_evidence_is_and_follows_class(tmp_path):
    # mid-gray (normalises to 0) with a white square top right (bright evidence) and a smaller black one bottom left
    img = np.full((32, 32), 128, np.uint8)
    img[2:12, 18:30] = 255  # rows 2-11, columns 18-29
    img[22:28, 4:10] = 0
    Image.fromarray(img, "L").save(tmp_path / "two.png")
    card = ModelCard("hand", {}, ["bright", "dark"], [1, 32, 32], [128 / 255], [0.5], [32, 32])
    model = Detectors()
    bright_region = np.zeros((32, 32), bool)
    bright_region[2:12, 18:30] = True
    dark_region = np.zeros((32, 32), bool)
    dark_region[22:28, 4:10] = True

    (pred,) = explain_files(model, card, [tmp_path / "two.png"], tmp_path / "a")
    assert pred["class"] == pred["predicted"] == "bright" and pred["cam"].shape == (32, 32)
    peak = np.unravel_index(pred["cam"].argmax(), pred["cam"].shape)
    assert bright_region[peak], f"peak at {peak}, not in the bright square"
    assert pred["cam"][bright_region].sum() > 0.6 * pred["cam"].sum()

    (dark,) = explain_files(model, card, [tmp_path / "two.png"], tmp_path / "b", target="dark")
    assert dark["class"] == "dark" and dark["predicted"] == "bright" and dark["prob"] < 0.5
    peak = np.unravel_index(dark["cam"].argmax(), dark["cam"].shape)
    assert dark_region[peak], f"peak at {peak}, not in the dark square"
    assert dark["cam"][bright_region].max() < 0.2


@pytest.mark.parametrize("arch", ["resnet20", "preact_resnet20"])
def test_the_map_is_taken_on_the_feature_map_the_head_reads(arch):
    torch.manual_seed(0)
    model = create_model(arch, num_classes=10).eval()
    forward, layer = cam_layer(model)
    seen = []
    handle = layer.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = forward(x)
        assert torch.equal(logits, model(x))
        assert torch.equal(seen[0], model.forward_features(x))  # preact: after the final BN -> ReLU
        if arch == "resnet20":
            assert torch.equal(seen[0], model.layer3(model.layer2(model.layer1(model.stem(x)))))
    handle.remove()


def test_cli_writes_pictures_and_sheet_reports_bad_files(tmp_path, capsys):
    torch.manual_seed(0)
    card = gray_card()
    save_model(create_model("resnet20", **card.model_kwargs), card, tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    good = write_images(images, 3)
    Image.fromarray(np.zeros((30, 41, 3), np.uint8) + 90, "RGB").save(images / "big.png")  # resized, made gray
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"

    assert main(["explain", str(tmp_path / "model.safetensors"), str(images), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert "broken.png" in captured.out and "1 of 5 file(s)" in captured.err
    for name in ["big", *(p.stem for p in good)]:
        assert (out / f"{name}.gradcam.png").stat().st_size > 1000
    assert (out / SHEET).stat().st_size > 1000
    assert not (out / "broken.gradcam.png").exists()


def test_class_option_changes_the_map_of_a_real_net(tmp_path):
    torch.manual_seed(0)
    card = gray_card()
    model = create_model("resnet20", **card.model_kwargs)
    paths = write_images(tmp_path, 2, seed=1)
    first = explain_files(model, card, paths, tmp_path / "a", target=0)
    second = explain_files(model, card, paths, tmp_path / "b", target="c7")
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        assert a["cam"].shape == b["cam"].shape == (28, 28)
        assert (a["index"], b["index"]) == (0, 7)
        assert np.isfinite(a["cam"]).all() and a["cam"].min() >= 0 and a["cam"].max() <= 1
        assert not np.allclose(a["cam"], b["cam"])
    with pytest.raises(Exception, match="neither a class index"):
        explain_files(model, card, paths, tmp_path / "c", target="c10")


def test_preact_colour_model_is_explained(tmp_path):
    torch.manual_seed(0)
    card = ModelCard("preact_resnet20", {"num_classes": 10}, [str(i) for i in range(10)], [3, 32, 32],
                     [0.5] * 3, [0.25] * 3, [32, 32], dataset="cifar10")
    model = card.build()
    paths = write_images(tmp_path, 2, size=(40, 36), mode="RGB")
    results = explain_files(model, card, paths, tmp_path / "out")
    assert len(results) == 2
    for r in results:
        assert r["cam"].shape == (32, 32) and r["image"].shape == (32, 32, 3)
        assert r["class"] == r["predicted"] and 0 < r["prob"] <= 1
        assert (tmp_path / "out" / f"{Path(r['path']).stem}.gradcam.png").is_file()
    assert (tmp_path / "out" / SHEET).is_file() and model.training  # the caller's mode is given back


def test_without_captum_the_command_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    card = gray_card()
    save_model(create_model("resnet20", **card.model_kwargs), card, tmp_path)
    (path,) = write_images(tmp_path, 1)
    monkeypatch.setitem(sys.modules, "captum", None)
    assert main(["explain", str(tmp_path), str(path), "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'resnet[explain]'" in capsys.readouterr().err
