"""`resnet compare`: ResNet and its successors trained side by side on one data set, every model on the same number
of training images (a whole number of epochs; or, asked for, the same training time), so that the paper's "later
evolutions" are measured rather than told.

Each (model, seed) is a cell (:mod:`.cells`): its own run directory under the comparison's, resumed after a kill
and skipped once finished. Every cell trains its family's recipe (:data:`FAMILY_RECIPES` and :data:`MODEL_RECIPES`,
the one place a family gets its own) with only the model, seed, data, length and directory set. The comparison then reads each run back,
counts the model's parameters and MACs at the data's image size, and writes ``results.md``, ``results.json`` and
``comparison.png`` with the statements of :mod:`.statements` computed from its own numbers.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import load_config, parse_duration
from ..device import cpu_summary
from ..errors import UserError
from ..train.log import format_duration, read_jsonl
from ..writes import WriteError, make_dir, write_json, write_text
from ..models import model_info
from ..models.successors import SMALL_SUCCESSORS, SUCCESSORS
from ..models.summary import summarize
from ..plots import COMPARISON_CAPTION, plot_comparison
from ..runs import RUN_FILE
from ..table import format_table, human
from ..weights.card import card_beside
from .cells import Cell, check_reusable, run_cell, run_length
from .statements import statement_lines, statements

DEFAULT_RECIPE = "compare-fashion-mnist"  # ResNet's own (and that of any family not named below)
# Each family trains with its own paper's or torchvision's optimizer, lr per image and weight decay (the recipes cite
# their sources); the length, schedule shape, augmentation and test are the comparison's, the same for every model.
FAMILY_RECIPES = {
    "densenet": "compare-fashion-mnist-densenet",
    "mobilenet": "compare-fashion-mnist-mobilenet-v2",
    "shufflenet": "compare-fashion-mnist-shufflenet",
    "regnet": "compare-fashion-mnist-regnet",
    "mnasnet": "compare-fashion-mnist-rmsprop",
    "efficientnet": "compare-fashion-mnist-rmsprop",
    "convnext": "compare-fashion-mnist-adamw",
    "transformer": "compare-fashion-mnist-adamw",
}
# Models whose recipe is not their family's: MobileNetV3 was trained with RMSprop (torchvision's recipe), V2 with SGD.
MODEL_RECIPES = {"mobilenet_v3": "compare-fashion-mnist-rmsprop"}
# The committed comparison: the paper's CIFAR nets around the default (ResNet-14/20/56, plain-20) and every successor,
# at its paper's size and small.
DEFAULT_MODELS = ("resnet14", "resnet20", "resnet56", "plain20", *SUCCESSORS, *SMALL_SUCCESSORS)
# Equal images by default: one epoch of the training set for every model. At the training speeds measured on a 2-core
# AVX512-BF16 CPU in bf16 (docs/comparison/bf16: 38 img/s for DenseNet-BC-100 to 1,537 for ResNet-14), one epoch of
# Fashion-MNIST's 55,000 training images is about 73 minutes for the twelve full-size models and about 25 for the
# small ones, so 2 seeds of each take about 3.3 hours of training: the most whole epochs that fit in about 4.
DEFAULT_EPOCHS = 1
DEFAULT_SEEDS = 2
LENGTH_KEYS = ("iterations", "epochs")  # a length in ``extra`` replaces the comparison's own


@dataclass(frozen=True)
class ModelCell(Cell):
    model: str
    seed: int


def recipe_for(model: str) -> str:
    """The recipe ``model`` trains with in a comparison: its own (:data:`MODEL_RECIPES`, by name prefix), its
    family's, or the default."""
    own = next((recipe for prefix, recipe in MODEL_RECIPES.items() if model.startswith(prefix)), None)
    return own or FAMILY_RECIPES.get(model_info(model).lineage, DEFAULT_RECIPE)


def plan(models: list[str], out: Path, seeds: int = DEFAULT_SEEDS, epochs: int | None = None,
         budget: str | None = None, data: str | None = None, extra: dict | None = None) -> list[ModelCell]:
    """Every (model, seed) cell, its config resolved and validated before anything trains: ``epochs`` whole epochs
    each (default DEFAULT_EPOCHS: equal images), or a ``budget`` of training time each when one is given (start-up,
    the plan's timing and the final test are not charged to it: a slow model's test would otherwise eat its
    training). ``extra``: dotted settings for every cell; one that sets ``iterations`` or ``epochs`` replaces both."""
    if not models:
        raise UserError("name at least one model to compare, e.g. `resnet compare resnet20 densenet_bc100`")
    if len(set(models)) != len(models):
        raise UserError(f"a model is named twice in {' '.join(models)}; name each once")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    if epochs is not None and (epochs < 1 or budget):
        raise UserError(f"--epochs must be a whole number of at least 1, without --budget; got {epochs}"
                        + (f" with --budget {budget}" if budget else ""))
    extra = dict(extra or {})
    if not any(extra.get(key) is not None for key in LENGTH_KEYS):
        extra.update({"budget": budget, "budget_scope": "training"} if budget else
                     {"epochs": epochs or DEFAULT_EPOCHS})
    if data:
        extra["data.name"] = data
    cells = []
    for model in models:
        recipe = recipe_for(model)  # (an unknown name stops here, with the nearest names)
        for seed in range(seeds):
            run_dir = out / f"{model}-seed{seed}"
            cfg = load_config(recipe, {**extra, "model.name": model, "seed": seed, "out": str(run_dir)})
            cells.append(ModelCell(f"{model} seed {seed}", cfg, run_dir, model, seed))
    return cells


def describe_plan(cells: list[ModelCell]) -> str:
    """What will train, with which recipe, and for how long (a budget is training time: each cell's start-up and
    final test come on top of it)."""
    models = list(dict.fromkeys(c.model for c in cells))
    todo = [c for c in cells if not c.done]
    lines = [f"{len(models)} models x {len(cells) // len(models)} seed(s), {run_length(cells[0].cfg)} each; "
             f"{len(todo)} of {len(cells)} cells to train"]
    if cells[0].cfg.budget and todo:
        lines[0] += (f" (about {format_duration(len(todo) * parse_duration(cells[0].cfg.budget))} of training, "
                     f"each cell's start-up and final test besides)")
    for model in models:
        lines.append(f"  {model:24s} {next(c.cfg.recipe for c in cells if c.model == model)}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- the numbers


@functools.lru_cache(maxsize=None)
def model_size(model: str, input_size: tuple[int, int, int], classes: int) -> tuple[int, int]:
    """(parameters, MACs) of ``model`` at ``input_size`` with ``classes`` outputs: counted once per model, not per
    seed."""
    size = summarize(model, input_size, num_classes=classes)
    return size.params, size.macs


def cell_numbers(cell: ModelCell, results: dict) -> dict:
    """One finished cell's numbers: accuracy, training speed, and the model's size and cost at the data's image
    size (from the run's model card)."""
    card = card_beside(cell.run_dir / "model.safetensors")
    input_size = tuple(card.input_size)
    params, macs = model_size(cell.model, input_size, len(card.classes))
    run = json.loads((cell.run_dir / RUN_FILE).read_text())
    seconds = results["train_minutes"] * 60
    images = results["steps"] * run["global_batch"]
    return {"model": cell.model, "lineage": model_info(cell.model).lineage, "recipe": cell.cfg.recipe,
            "seed": cell.seed, "run_dir": str(cell.run_dir), "test_top1": results["test_top1"],
            "test_top5": results.get("test_top5"), "params": params, "macs": macs,
            "input_size": list(input_size), "img_per_s": images / seconds if seconds else 0.0,
            "train_minutes": results["train_minutes"], "steps": results["steps"], "epochs": results.get("epochs"),
            "precision": results.get("precision", ""), "device": results.get("device", ""),
            "machine": results.get("machine", ""), "lr": run["lr"], "images_per_step": run["global_batch"]}


def model_table(runs: list[dict]) -> list[dict]:
    """One row per model, in the order first met: mean ± std of top-1 over its seeds, the mean training speed, its
    size and cost."""
    rows: dict[str, dict] = {}
    for r in runs:
        rows.setdefault(r["model"], {k: r[k] for k in ("model", "lineage", "recipe", "params", "macs")}
                        ).setdefault("runs", []).append(r)
    for row in rows.values():
        top1 = [r["test_top1"] for r in row["runs"]]
        row["top1"] = statistics.fmean(top1)
        row["top1_std"] = statistics.stdev(top1) if len(top1) > 1 else 0.0
        row["top1_seeds"] = top1
        row["img_per_s"] = statistics.fmean(r["img_per_s"] for r in row["runs"])
        row["epochs"] = statistics.fmean(r["epochs"] or 0.0 for r in row["runs"])
        row["train_minutes"] = statistics.fmean(r["train_minutes"] for r in row["runs"])
        row["seeds"] = len(top1)
        del row["runs"]
    return list(rows.values())


# ------------------------------------------------------------------------------------------------------- report


def results_markdown(table: list[dict], found: dict, meta: dict) -> str:
    """results.md: how the comparison ran, one row per model, the recipes, the statements and the figure."""
    rows = [[r["model"], r["lineage"], r["recipe"], f"{r['params']:,}", human(r["macs"]), f"{r['img_per_s']:,.0f}",
             f"{r['train_minutes']:.1f}", f"{r['epochs']:.1f}", f"{r['top1']:.2f} ± {r['top1_std']:.2f}",
             ", ".join(f"{v:.2f}" for v in r["top1_seeds"])] for r in table]
    table_md = format_table(("model", "architecture", "recipe", "params", "MACs", "train img/s", "train min",
                             "epochs", "test top-1 %", "per seed"), rows, align="lllrrrrrrl")
    size = "x".join(map(str, meta["input_size"]))
    return "\n".join([
        f"# ResNet and its successors on {meta['data']}", "",
        f"Every model trained for {meta['length']} per seed on {meta['machine']} ({meta['precision']}); "
        f"{meta['seeds']} seed(s) each, mean ± std over seeds. Parameters and MACs at the data's images "
        f"({size}); training images per second: the images a cell trained on over its training time (its "
        f"final test excluded), on this machine; train min: the minutes spent training (checkpoints included; "
        f"a budget holds the training alone, not the start-up, the planning or the final test); epochs: the "
        f"images trained on, in passes over the training set. Training time {meta['minutes']:.1f} min summed "
        f"over the cells; wall time {meta['wall_minutes']:.1f} min over {meta['invocations']} invocation(s) that "
        f"reached the end.",
        "",
        table_md, "",
        "Recipes: " + "; ".join(f"`{name}` ({', '.join(models)})" for name, models in meta["recipes"].items())
        + " (configs/, each saying what it is and why).", "",
        *(["Refused (not in the table): " + "; ".join(f"{r['model']} seed {r['seed']}: {r['reason']}"
                                                       for r in meta["refused"]), ""] if meta["refused"] else []),
        "## Statements", "",
        "Each with its conditions; \"reaches\" allows twice the larger seed spread below, \"beats\" needs more "
        "than that above, and a gap inside the spread (or a single seed) is \"not shown\", never \"no\".", "",
        *statement_lines(found), "",
        "![training error against images and time; test top-1 against MACs and parameters](comparison.png)", "",
        COMPARISON_CAPTION, "",
    ])


def comparison(models: list[str] | None = None, epochs: int | None = None, budget: str | None = None,
               seeds: int = DEFAULT_SEEDS, data: str | None = None, out: str | Path | None = None,
               extra: dict | None = None, log: Callable = print) -> dict:
    """Train (or continue) every cell, then write the comparison's tables, figure and statements into ``out``;
    returns results.json."""
    started = time.perf_counter()
    models = list(models or DEFAULT_MODELS)
    out = Path(out or f"runs/compare-{data or 'fashion-mnist'}")
    cells = plan(models, out, seeds, epochs, budget, data, extra)
    check_reusable(cells)
    log(describe_plan(cells))
    make_dir(out, "output directory")
    runs, refused = [], []
    for i, cell in enumerate(cells, 1):
        try:  # a cell its budget cannot hold is refused with one sentence: the others still train
            results = run_cell(cell, f"{i}/{len(cells)}", log)
        except WriteError:  # a full or failing disk fails every cell after it: the study stops here
            raise
        except UserError as exc:
            refused.append({"model": cell.model, "seed": cell.seed, "reason": str(exc)})
            log(f"    refused: {exc}")
            continue
        runs.append(cell_numbers(cell, results))
        log(f"    test top-1 {runs[-1]['test_top1']:.2f}%  {runs[-1]['img_per_s']:,.0f} img/s  "
            f"({format_duration(runs[-1]['train_minutes'] * 60)})")
    if not runs:
        raise UserError(f"every cell of the comparison was refused, e.g. {refused[0]['model']}: "
                        f"{refused[0]['reason']}")
    return write_comparison(out, runs, cells[0], started, log, refused)


def training_curves(runs: list[dict]) -> dict[str, dict]:
    """Each model's training error against the images it has seen and its training time (at its mean speed), from
    its first seed's steps.jsonl, and that seed's final test error: the figure's top panels."""
    curves = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        steps_file = Path(r.get("run_dir", "")) / "steps.jsonl"
        if r["model"] in curves or not r.get("run_dir") or not steps_file.is_file():
            continue
        records = read_jsonl(steps_file)
        per_step = r["train_minutes"] * 60 / max(r["steps"], 1)
        curves[r["model"]] = {"images": [x["step"] * r["images_per_step"] for x in records],
                              "seconds": [x["step"] * per_step for x in records],
                              "train_error": [max(x["train_error"], 0.01) for x in records],  # (a log axis)
                              "test_error": max(100.0 - r["test_top1"], 0.01)}
    return curves


def conditions(cfg, runs: list[dict], meta: dict) -> str:
    """What every statement of the comparison holds under: the data, the length (the images each model trained on,
    or its budget of training time), the seeds, the machine and the precision."""
    where = f"{meta['seeds']} seed(s) each, on {meta['machine']} ({meta['precision']})"
    if cfg.budget:
        return (f"on {meta['data']} in {cfg.budget} of training per model (wall time; start-up, planning and the "
                f"final test not counted), {where}")
    images = sorted({round(r["steps"] * r["images_per_step"]) for r in runs if r.get("images_per_step")})
    seen = f"{images[0]:,} training images" if len(images) == 1 else "the same epochs"
    return f"on {meta['data']} at equal images ({seen}, {run_length(cfg)}, per model), {where}"


def write_comparison(out: Path, runs: list[dict], first: ModelCell, started: float, log: Callable = print,
                     refused: list[dict] | None = None) -> dict:
    """The comparison's table, statements, figure, results.md and results.json from every cell's numbers; the wall
    time and invocations add up over the comparison's sittings."""
    table = model_table(runs)
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    cfg = first.cfg
    recipes: dict[str, list[str]] = {}
    for row in table:
        recipes.setdefault(row["recipe"], []).append(row["model"])
    devices = sorted({r["device"] for r in runs})
    meta = {"out": str(out), "data": cfg.data.name, "input_size": runs[0]["input_size"],
            "seeds": max(r["seeds"] for r in table), "length": run_length(cfg), "budget": cfg.budget,
            "recipes": recipes,
            "machine": cpu_summary() if devices == ["cpu"] else ", ".join(sorted({r["machine"] for r in runs})),
            "precision": ", ".join(sorted({r["precision"] for r in runs})),
            "minutes": sum(r["train_minutes"] for r in runs),
            "wall_minutes": previous.get("wall_minutes", 0.0) + (time.perf_counter() - started) / 60,
            "invocations": previous.get("invocations", 0) + 1, "date": time.strftime("%Y-%m-%d"),
            "refused": refused or []}
    meta["conditions"] = conditions(cfg, runs, meta)
    found = statements(table, meta["conditions"])
    title = (f"ResNet and its successors on {meta['data']}, {meta['length']} each, {meta['seeds']} seed(s)\n"
             f"{meta['machine']}, {meta['precision']}")
    plot_comparison(table, training_curves(runs), out / "comparison.png", title)
    write_text(out / "results.md", results_markdown(table, found, meta))
    result = {**meta, "models": table, "statements": found, "runs": runs}
    write_json(out / "results.json", result)
    log((out / "results.md").read_text())
    return result
