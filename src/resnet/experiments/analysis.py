"""What a finished cell of the degradation study shows beyond its results.json, and the means over seeds.

A cell is analysed once (cached in its ``analysis.json``): its training error (how well the net *fits* its data),
its layer responses on the test set (Figure 7) and, at the gradient depths, the gradient norms of its 3x3 layers at
initialisation and after the first epoch. :func:`aggregate` turns the cells' :class:`CellResult` into the study's
numbers and the verdicts of :mod:`.verdicts`."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from ..config import config_from_dict
from ..data import MemoryLoader, open_split
from ..device import resolve_device, resolve_precision
from ..errors import UserError
from ..evaluate import evaluate
from ..io import load_safetensors
from ..weights import ModelCard, load_into, load_model_and_card
from ..writes import OptionalWrites, write_json
from .gradients import conv_grad_norms, first_last_ratio
from .grid import NetCell
from .profiles import SNAPSHOT_EPOCHS
from .responses import layer_response_std, layers_3x3
from .verdicts import net_table, response_verdicts, verdicts

GRADIENT_DEPTHS = (56, 110)  # depths whose gradient flow is measured (the paper's deep pair, and 110 when trained)
TRAIN_ERROR_IMAGES = 10_000  # the training error is measured on the first this many training images
GRADIENT_BATCHES = 8  # real training batches (of the recipe's batch size) the gradient norms are averaged over
ANALYSIS_VERSION = 2  # bump when what analysis.json holds changes, so cached analyses are redone


@dataclass
class CellResult:
    """One cell's numbers, as results.json lists them under ``runs`` (errors in %)."""

    net: str
    kind: str  # "plain" or "resnet"
    depth: int
    seed: int
    run_dir: str
    test_error: float
    train_error: float
    train_error_images: int = 0
    minutes: float = 0.0
    precision: str = ""
    device: str = ""
    layers: list[str] = field(default_factory=list)  # the 3x3 layers' BN names, in forward order
    responses: list[float] = field(default_factory=list)  # Figure 7: each layer's response std
    response_images: int = 0
    gradients: dict | None = None  # gradient norms at the gradient depths (see :func:`gradient_analysis`)


def analyse(cell: NetCell, results: dict) -> CellResult:
    """``cell``'s numbers: its results.json and its (cached) analysis."""
    analysis = cached_analysis(cell.run_dir, gradients=cell.depth in GRADIENT_DEPTHS)
    return CellResult(net=cell.net, kind=cell.kind, depth=cell.depth, seed=cell.seed, run_dir=str(cell.run_dir),
                      test_error=results["test_error"], train_error=analysis["train_error"],
                      train_error_images=analysis["train_error_images"], minutes=results["train_minutes"],
                      precision=results["precision"], device=results["device"], layers=analysis["layers"],
                      responses=analysis["responses"], response_images=analysis["response_images"],
                      gradients=analysis["gradients"])


def cached_analysis(run_dir: Path, gradients: bool) -> dict:
    """:func:`analyse_run` of ``run_dir``, read from its ``analysis.json`` when that holds this version's numbers."""
    cache = run_dir / "analysis.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("version") == ANALYSIS_VERSION and (cached.get("gradients") is not None or not gradients):
            return cached
    analysis = analyse_run(run_dir, gradients)
    OptionalWrites(lambda message: print(f"warning: {message}", file=sys.stderr))(write_json, cache, analysis,
                                                                                 "analysis cache")
    return analysis


def _loader(data, card: ModelCard, device: torch.device, batch_size: int) -> MemoryLoader:
    """Unaugmented, normalised batches of ``data``, in file order."""
    return MemoryLoader(data, batch_size, device=device, mean=card.mean, std=card.std, train=False)


def analyse_run(run_dir: Path, gradients: bool) -> dict:
    """A finished run's numbers:

    - ``train_error``: error % of the final model on the first :data:`TRAIN_ERROR_IMAGES` images it trained on, in
      eval mode, without augmentation, at the run's precision;
    - ``responses``: Figure 7, the std of each 3x3 layer's response over the test set (:mod:`.responses`);
    - with ``gradients``: :func:`gradient_analysis`."""
    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    device = resolve_device(cfg.device)
    model, card = load_model_and_card(run_dir, device)
    limit = min(TRAIN_ERROR_IMAGES, cfg.data.train_limit or TRAIN_ERROR_IMAGES)
    gradient_images = GRADIENT_BATCHES * cfg.batch_size if gradients else 0
    train_data = open_split(cfg.data.name, "train", cfg.data.root, limit=max(limit, gradient_images))
    train = _loader(train_data.subset_first(limit), card, device, 500)
    result = evaluate(model.to(memory_format=torch.channels_last), train.epoch(0), device=device,
                      precision=resolve_precision(cfg.precision, device), num_classes=len(card.classes))
    test = _loader(open_split(cfg.data.name, "test", cfg.data.root, limit=cfg.data.test_limit), card, device, 500)
    analysis = {"version": ANALYSIS_VERSION, "train_error": 100.0 - result.top1, "train_error_images": result.count,
                "layers": [bn for _, bn in layers_3x3(model)],
                "responses": layer_response_std(model, (images for images, _ in test.epoch(0))),
                "response_images": test.size, "gradients": None}
    if gradients:
        batches = list(_loader(train_data.subset_first(gradient_images), card, device, cfg.batch_size).epoch(0))
        analysis["gradients"] = gradient_analysis(model, batches, run_dir)
    return analysis


def gradient_analysis(model: torch.nn.Module, batches: list, run_dir: Path) -> dict:
    """The gradient norm of each 3x3 conv at initialisation and after the first epoch (the run's snapshots), on
    :data:`GRADIENT_BATCHES` real training batches (:mod:`.gradients`), and the first / last stage ratios."""
    norms = {}
    for epoch in SNAPSHOT_EPOCHS:
        snapshot = run_dir / "snapshots" / f"epoch-{epoch}.safetensors"
        if not snapshot.is_file():
            raise UserError(f"{snapshot} is missing, so the gradient flow cannot be measured; train the cell "
                            f"again with snapshot_epochs: {SNAPSHOT_EPOCHS} (delete {run_dir})")
        load_into(model, load_safetensors(snapshot), str(snapshot))
        norms[f"epoch{epoch}"] = conv_grad_norms(model, batches)
    convs, stages = [conv for conv, _ in layers_3x3(model)], model.stage_names
    return {"convs": convs, "stages": stages, "images": sum(len(labels) for _, labels in batches),
            "init": norms["epoch0"], "epoch1": norms["epoch1"],
            "ratio_init": first_last_ratio(norms["epoch0"], convs, stages),
            "ratio_epoch1": first_last_ratio(norms["epoch1"], convs, stages)}


# ------------------------------------------------------------------------------------------------ means over seeds


def _pointwise_mean(runs: list[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*runs)]


def net_responses(cells: list[CellResult]) -> dict[str, dict]:
    """Net -> its layer response stds averaged over seeds, their mean over layers (Figure 7's numbers), and that mean
    seed by seed (``seed_means``: the spread a verdict is tested against)."""
    nets: dict[str, dict] = {}
    for c in cells:
        nets.setdefault(c.net, {"kind": c.kind, "depth": c.depth, "runs": []})["runs"].append(c.responses)
    for net in nets.values():
        runs = net.pop("runs")
        net["std"] = _pointwise_mean(runs)
        net["mean_std"] = statistics.fmean(net["std"])
        net["seed_means"] = [statistics.fmean(r) for r in runs]
    return nets


def net_gradients(cells: list[CellResult]) -> dict[str, dict]:
    """Net -> its per-layer gradient norms at initialisation and after the first epoch, averaged over seeds, and
    the first-stage / last-stage ratio of those means."""
    nets: dict[str, dict] = {}
    for c in cells:
        if c.gradients is not None:
            nets.setdefault(c.net, {"kind": c.kind, "depth": c.depth, "runs": []})["runs"].append(c.gradients)
    for net in nets.values():
        runs = net.pop("runs")
        for key in ("init", "epoch1"):
            net[key] = _pointwise_mean([r[key] for r in runs])
            net[f"ratio_{key}"] = first_last_ratio(net[key], runs[0]["convs"], runs[0]["stages"])
        net["seeds"] = len(runs)
    return nets


def aggregate(cells: list[CellResult], iterations: int | None = None) -> dict:
    """Mean ± std per net over seeds and the Figure 6 verdicts (``iterations``: each cell's training length, which
    a residual ordering not found is reported with); Figure 7's responses and their verdicts; the gradient-flow
    table."""
    table = net_table(cells)
    out = {"nets": table, "verdicts": verdicts(table, iterations)}
    if all(c.responses for c in cells):
        responses = net_responses(cells)
        out.update(responses=responses, response_verdicts=response_verdicts(responses))
    out["gradients"] = net_gradients(cells) if any(c.gradients for c in cells) else {}
    return out
