"""A real (short) training run on Fashion-MNIST: what it writes, and that it learns."""

from __future__ import annotations

import json

import torch
import yaml

import resnet
from resnet.train.log import read_jsonl


def test_short_run_learns_and_writes_a_complete_run_directory(trained_run):
    run = trained_run.run_dir
    assert trained_run.results["test_top1"] > 80.0, trained_run.results  # 10k held-out test images
    for name in ("config.yaml", "metrics.jsonl", "steps.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "model.safetensors", "model.json", "curves.png", "confusion.png", "results.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key in ("epoch", "train_loss", "train_error", "val_loss", "val_top1", "val_top5", "lr", "img_per_s",
                "seconds", "eval_seconds"):
        assert key in records[-1]
    assert records[-1]["eval_seconds"] > 0  # the recipe evaluates every 3rd epoch: the 3rd has a duration
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["eval_set"] == "val"
    steps = read_jsonl(run / "steps.jsonl")
    assert [s["step"] for s in steps][:3] == [20, 40, 60]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["name"] == "resnet14" and cfg["epochs"] == 3 and cfg["out"] == str(run)
    state = json.loads((run / "run.json").read_text())  # what the run decided, apart from what was asked
    assert state["run_dir"] == str(run) and state["device"] == "cpu" and state["precision"] in ("bf16", "fp32")
    assert state["lr"] == 0.1 * 64 / cfg["optim"]["lr_batch_size"] and state["global_batch"] == 64
    assert state["total_steps"] == state["step"] == 3 * state["steps_per_epoch"] and state["epochs"] == 3
    results = json.loads((run / "results.json").read_text())
    assert results["test_count"] == 10_000 and results["test_seconds"] > 0
    per_class = results["per_class"]  # the final test's per-class accuracy, as `resnet eval` reports it
    assert [c["class"] for c in per_class][:2] == ["T-shirt/top", "Trouser"]
    assert sum(c["count"] for c in per_class) == 10_000
    correct = sum(c["accuracy"] * c["count"] / 100 for c in per_class)
    assert abs(100 * correct / 10_000 - results["test_top1"]) < 1e-6


def test_load_model_rebuilds_the_trained_model(trained_run):
    run = trained_run.run_dir
    model = resnet.load_model(run)
    assert not model.training
    card = json.loads((run / "model.json").read_text())
    assert card["classes"][0] == "T-shirt/top" and card["input_size"] == [1, 28, 28]
    from_ckpt = resnet.load_model(run / "checkpoints" / "last.pt")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), from_ckpt(x), atol=1e-5)


def test_error_curve_within_one_decade_still_has_numbers_on_its_log_axis():
    from resnet.plots import curves_figure

    records = [{"epoch": e, "train_loss": 1 / e, "train_error": 9.0 - e, "val_loss": 1 / e, "val_top1": 91.0 + e,
                "eval_set": "val"} for e in range(1, 6)]  # errors 3..8 %: no power of ten inside
    fig = curves_figure(records)
    fig.canvas.draw()
    ax = fig.axes[1]
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    assert ax.get_yscale() == "log" and len(labels) >= 2 and {"4", "6"} <= set(labels), labels
