"""What a run tells its user: the banner at the start, and at the end the final model, ``results.json``, the
curves and confusion figures and the final table. Writes happen on rank 0 only (the caller decides)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..data import DataBundle
from ..device import cpu_summary
from ..evaluate import EvalResult
from ..writes import OptionalWrites, write_json
from ..mistakes import Mistake
from ..plots import plot_confusion, plot_curves  # (at start-up, which a budget measures, rather than in its finish)
from ..report_page import write_report
from ..weights import ModelCard, save_model
from .budget import BudgetKeeper
from .log import final_table, format_duration, read_jsonl, scores
from .run_state import RunState


@dataclass
class RunResult:
    """What :func:`resnet.train.train` returns: where the run was written, its final test and results.json."""

    run_dir: Path
    test: EvalResult | None
    results: dict


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def banner(cfg: Config, run: RunState, data: DataBundle, model: nn.Module, graph_note: str,
           keeper: BudgetKeeper | None, notes: list[str | None]) -> list[str]:
    """The lines printed before the first step: what is trained on what, where, how long (and ``notes``: where the
    weights came from, what fine-tuning freezes)."""
    lines = [f"run {run.run_dir}: {cfg.model.name} ({parameters(model):,} parameters) on {cfg.data.name} "
             f"({data.train.size:,} training images, {len(data.classes)} classes, evaluated on the {data.eval_set} set of "
             f"{data.eval_loader.size:,})",
             f"device {run.device} x {run.world_size} process(es), {run.precision}"
             f"{', channels_last' if cfg.channels_last else ''}{graph_note}; global batch {run.global_batch}, lr "
             f"{run.lr:g} ({cfg.optim.name}, {cfg.schedule.name}); {run.total_steps:,} steps = "
             f"{run.total_steps / run.steps_per_epoch:.4g} epochs of {run.steps_per_epoch}"]
    if cfg.chosen:
        lines.append(f"defaults chosen from the images of {cfg.data.name.partition(':')[2]}:\n  " +
                     "\n  ".join(cfg.chosen))
    if keeper is not None:
        lines.append(keeper.describe())
    return lines + [note for note in notes if note]


def results(cfg: Config, run: RunState, card: ModelCard, model: nn.Module, test: EvalResult, train_seconds: float,
            keeper: BudgetKeeper | None, bn_images: int = 0) -> dict:
    """``results.json``: the final test and how the run got there (``bn_images``: the training images the BatchNorm
    statistics were re-estimated on before it; 0 when they were not)."""
    out = {
        "model": cfg.model.name, "data": cfg.data.name, "parameters": parameters(model),
        "weights": card.weights, "test_top1": test.top1, "test_top5": test.top5, "test_loss": test.loss,
        "test_error": 100 - test.top1, "test_count": test.count, "test_tta": cfg.test_tta,
        "steps": run.step, "epochs": run.step / run.steps_per_epoch,
        "train_minutes": train_seconds / 60, "device": run.device, "world_size": run.world_size,
        "precision": run.precision, "best_val_top1": run.best_top1, "test_seconds": test.seconds,
        "per_class": test.per_class(list(card.classes)), "precise_bn_images": bn_images,
        "recipe": cfg.recipe, "machine": machine(run.device),
    }
    if keeper is not None:  # everything the budget covers: start-up, training, evaluations, final test
        out["budget"] = {"seconds": keeper.budget_s, "planned_steps": keeper.plan.steps, "steps": run.step,
                         "seconds_used": keeper.spent()}
    return out


def machine(device: str) -> str:
    """The machine a run trained on, for its results: the GPU's name, or the CPU's with its instruction sets."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (CPU: {cpu_summary()})"
    return cpu_summary()


def write_final(run_dir: Path, model: nn.Module, card: ModelCard, result: dict, test: EvalResult, test_name: str,
                mistakes: list[list[Mistake]], test_loader, say=print, warn=print) -> None:
    """The run's final files (model, model card, results.json, curves.png, confusion.png, report.html with the
    final test's ``mistakes``, read back from ``test_loader``) and its last lines; ``warn`` tells of a figure or
    page that could not be written (the run's numbers and weights are written first, and must be)."""
    save_model(model, card, run_dir)
    write_json(run_dir / "results.json", result, "results")
    records = read_jsonl(run_dir / "metrics.jsonl")
    title = f"{result['model']} on {result['data']}"
    optional = OptionalWrites(warn)
    optional(plot_curves, records, run_dir / "curves.png", title=title)
    optional(plot_confusion, test.confusion.numpy(), list(card.classes), run_dir / "confusion.png",
             title=f"{title}: top-1 {test.top1:.2f}%")
    say("\n" + final_table(records))
    tta = result["test_tta"]
    say(f"\n{test_name} set ({test.count:,} images, {card.weights} weights{'' if tta == 'none' else f', {tta} TTA'}): "
        f"{scores(test.top1, test.top5, test.loss)}   [{format_duration(result['train_minutes'] * 60)} training]")
    if "budget" in result:
        b = result["budget"]
        say(f"budget {format_duration(b['seconds'])}: {b['steps']:,} steps (planned {b['planned_steps']:,}), "
            f"{format_duration(b['seconds_used'])} used to the end of the final test")
    page = optional(write_report, run_dir, mistakes, test_loader, model, card)
    say(f"run directory: {run_dir}" + (f"\nreport page: {page}" if page else ""))
