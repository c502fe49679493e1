"""Precise BatchNorm: the running statistics are re-estimated before an evaluation from training images only
(augmented as training sees them), frozen layers of a fine-tune keep theirs, and a run says it did it."""

from __future__ import annotations

import json

import torch
from torch import nn

from resnet.config import load_config
from resnet.data import build_data
from resnet.train import train
from resnet.train.precise_bn import recompute_bn
from .test_folder_defaults import QUIET, write_rgb_photos, write_small_gray


def test_the_statistics_become_those_of_the_images_and_kept_layers_keep_theirs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    for bn in (model[1], model[4]):
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(100.0)
    batches = [(torch.randn(8, 1, 10, 10) * 3 + 1, torch.zeros(8)) for _ in range(4)]
    model.eval()
    seconds = recompute_bn(model, batches, torch.device("cpu"), "fp32", keep=frozenset({"4"}))
    assert seconds > 0
    with torch.no_grad():
        features = torch.cat([model[0](x) for x, _ in batches])  # equal batches: the mean of the batch means
    assert torch.allclose(model[1].running_mean, features.mean((0, 2, 3)), atol=1e-5)
    assert torch.equal(model[4].running_mean, torch.full((4,), 100.0))  # kept (a frozen layer of a fine-tune)
    assert not model.training  # update_bn leaves the mode it found
    assert recompute_bn(nn.Linear(2, 2), batches, torch.device("cpu"), "fp32") == 0.0  # no BatchNorm, no pass


def _files(loader) -> set[str]:
    return set(loader.files)


def test_the_sample_holds_training_images_only_in_memory_and_from_files(tmp_path):
    for root, memory in ((write_small_gray(tmp_path / "small"), "auto"), (write_rgb_photos(tmp_path / "p1"), "on"),
                         (write_rgb_photos(tmp_path / "p2"), "off")):
        cfg = load_config(None, {"data.name": f"imagefolder:{root}"}, [f"data.memory={memory}"])
        data = build_data(cfg.data, cfg.batch_size, 0, torch.device("cpu"), in_chans=cfg.model.kwargs["in_chans"],
                          **QUIET)
        batch = cfg.batch_size
        sample = data.train_sample(batch + 5)
        assert sample.size == batch + 5 and _files(sample) <= _files(data.train)
        assert not _files(sample) & _files(data.test)
        assert data.train_sample(1).size == batch  # at least one whole batch
        x, _ = next(iter(sample.epoch(0)))
        t, _ = next(iter(data.train.epoch(0)))
        assert x.shape == t.shape  # training's batches and crops, not the evaluation's view
        again, _ = next(iter(data.train_sample(batch + 5).epoch(0)))
        assert torch.equal(x, again)  # seeded: every evaluation of a run sees the same sample
        assert _files(data.train_sample(1000)) == _files(data.train)  # at most every training image


def test_a_short_run_re_estimates_before_its_evaluations_and_says_so(tmp_path):
    out = tmp_path / "run"
    cfg = load_config(None, {"out": str(out), "epochs": 1, "data.train_limit": 600, "data.test_limit": 200,
                             "batch_size": 64}, ["threads=1", "test_tta=none", "precise_bn=256"])
    lines = []
    result = train(cfg, log=lines.append)
    assert any("precise BN" in line and "256 training images" in line for line in lines)
    assert json.loads((out / "results.json").read_text())["precise_bn_images"] == 256
    off = load_config(None, {"out": str(tmp_path / "off"), "epochs": 1, "data.train_limit": 600,
                             "data.test_limit": 200, "batch_size": 64}, ["threads=1", "test_tta=none", "precise_bn=0"])
    stale = train(off, **QUIET)
    assert stale.results["precise_bn_images"] == 0
    # The same weights (same seed, same steps): only the statistics differ, and the final test saw the new ones.
    assert result.results["steps"] == stale.results["steps"]
