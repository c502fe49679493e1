"""The paper's central experiment (Figures 1 and 6): plain nets get worse as they get deeper (degradation),
while the same depths with identity shortcuts do not.

For every depth, the plain net and its residual twin (shortcut A, identical parameters) train with the same recipe
and seeds. Each (net, seed) is a cell: its own run directory, trained by ``resnet train`` with the profile's recipe
and only the net, seed and directory set, so one cell reruns alone with e.g.
``resnet train --config degradation-quick-fashion-mnist --model plain56 --seed 0``. A rerun of the study skips
finished cells and resumes unfinished ones. The study writes ``degradation.png`` (Figure 6 style), ``results.md`` and
``results.json`` with mean ± std over seeds and the two verdicts computed from the numbers (:func:`verdicts`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from ..config import Config, config_from_dict, load_config, read_recipe
from ..data import PER_DATASET_FIELDS, MemoryLoader, is_memory, open_split
from ..errors import UserError
from ..io import write_json, write_text
from ..runs import latest_valid_checkpoint
from ..table import format_table
from ..train.log import format_duration, read_jsonl

PAPER_DEPTHS = (20, 32, 44, 56, 110)  # the depths of the paper's plain/residual CIFAR pairs
TRAIN_ERROR_IMAGES = 10_000  # the training error is measured on the first this many training images


@dataclass(frozen=True)
class Profile:
    """One version of the study. Its training settings live in the recipe (a YAML file under ``configs/``); a cell
    of the study is that recipe with only ``model.name``, ``seed``, ``out`` (and ``data.name``) set."""

    recipe: str  # recipe of every cell; ``{depth}`` in it is replaced by the cell's depth
    data: str
    depths: tuple[int, ...]
    note: str = ""
    # What the study records (log / evaluation / checkpoint cadence) on top of recipes that are not the study's
    # own; never a training setting, which would belong in a recipe.
    overrides: dict = field(default_factory=dict)


PROFILES = {
    # configs/degradation-quick-fashion-mnist.yaml says why each setting is what it is.
    "quick": Profile(
        recipe="degradation-quick-fashion-mnist", data="fashion-mnist", depths=(20, 56),
        note="Fashion-MNIST (first 30k training images), 800 iterations of batch 128, SGD lr 0.1 with 200 linear "
             "warm-up iterations then cosine decay, pad-4 crop + flip"),
    # The paper's CIFAR-10 recipes (Sec. 4.2) as shipped: 64k iterations, /10 at 32k and 48k; the depth-110 recipe
    # carries the paper's warm-up, which plain-110 and ResNet-110 both get. The study records curves more often.
    "paper": Profile(
        recipe="cifar10-resnet{depth}-paper", data="cifar10", depths=PAPER_DEPTHS,
        note="CIFAR-10, the paper's schedule: 64k iterations, lr 0.1 /10 at 32k and 48k, batch 128",
        overrides={"log_every": 100, "eval_every": 1, "checkpoint_every": 2000, "test_tta": "none"}),
}


@dataclass
class RunSpec:
    kind: str  # "plain" or "resnet"
    depth: int
    seed: int
    run_dir: Path
    cfg: Config

    @property
    def name(self) -> str:
        return f"{self.kind}{self.depth}"


def cell_overrides(profile: Profile, recipe: str, kind: str, depth: int, seed: int, run_dir: Path,
                   data: str | None = None, extra: dict | None = None) -> dict:
    """The dotted overrides of one cell on top of its recipe: the net, seed, run directory and data set, after the
    profile's recording cadence and the command line's ``extra`` settings."""
    overrides = {**profile.overrides, **(extra or {})}
    # On another data set the recipe's data-size fields (the quick profile's 30k-image subset) still hold: they are
    # part of the study's design, and its note names them.
    recipe_data = read_recipe(recipe).get("data") or {}
    for key in PER_DATASET_FIELDS:
        if key in recipe_data:
            overrides.setdefault(f"data.{key}", recipe_data[key])
    return {**overrides, "model.name": f"{kind}{depth}", "seed": seed, "out": str(run_dir),
            "data.name": data or profile.data}


def plan(profile: str, out: Path, data: str | None = None, depths: list[int] | None = None, seeds: int = 1,
         extra: dict | None = None) -> list[RunSpec]:
    """Every (net, seed) run of the study, with its resolved config (validated before anything runs)."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    p = PROFILES[profile]
    depths = sorted(set(depths or p.depths))
    bad = [d for d in depths if d not in PAPER_DEPTHS]
    if bad or len(depths) < 2:
        raise UserError(f"--depths needs at least two of {' '.join(map(str, PAPER_DEPTHS))} (the paper's "
                        f"plain/residual pairs), got {' '.join(map(str, depths))}")
    specs = []
    for depth in depths:
        recipe = p.recipe.format(depth=depth)
        for kind in ("plain", "resnet"):
            for seed in range(seeds):
                run_dir = out / f"{kind}{depth}-seed{seed}"
                overrides = cell_overrides(p, recipe, kind, depth, seed, run_dir, data, extra)
                specs.append(RunSpec(kind, depth, seed, run_dir, load_config(recipe, overrides)))
    return specs


def train_set_error(run_dir: Path, limit: int = TRAIN_ERROR_IMAGES) -> tuple[float, int]:
    """(error %, images) of the final model on the first ``limit`` images it trained on, in eval mode, without
    augmentation and at the run's precision: how well the net *fits* its data, the quantity degradation is about.
    Cached in the run directory (``train_error.json``)."""
    cache = run_dir / "train_error.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        return cached["train_error"], cached["images"]
    import torch

    from ..device import resolve_device, resolve_precision
    from ..evaluate import evaluate
    from ..modelcard import load_model_and_card

    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    if not is_memory(cfg.data.name):
        raise UserError(f"the degradation study measures the training error on in-memory data sets, not "
                        f"{cfg.data.name}")
    device = resolve_device()
    model, card = load_model_and_card(run_dir, device)
    data = open_split(cfg.data.name, "train", cfg.data.root, limit=min(limit, cfg.data.train_limit or limit))
    loader = MemoryLoader(data, 500, device=device, mean=card.mean, std=card.std, train=False)
    result = evaluate(model.to(memory_format=torch.channels_last), loader.epoch(0), device=device,
                      precision=resolve_precision(cfg.precision, device), num_classes=len(card.classes))
    error = 100.0 - result.top1
    write_json(cache, {"train_error": error, "images": result.count})
    return error, result.count


def _print(*args) -> None:
    print(*args, flush=True)


def run_study(specs: list[RunSpec], log: Callable = _print) -> list[dict]:
    """Train every run that is not finished (resuming interrupted ones) and return one summary per run."""
    from ..train.trainer import train

    summaries = []
    for i, spec in enumerate(specs, 1):
        results_path = spec.run_dir / "results.json"
        if results_path.is_file():
            log(f"[{i}/{len(specs)}] {spec.name} seed {spec.seed}: finished, skipped")
        else:
            # A run directory without a valid checkpoint (stopped before its first one) restarts in place.
            started = spec.run_dir.exists()
            state = ("resuming" if latest_valid_checkpoint(spec.run_dir) else "restarting") if started else "training"
            log(f"[{i}/{len(specs)}] {spec.name} seed {spec.seed}: {state} "
                f"({spec.cfg.iterations or spec.cfg.epochs} {'iterations' if spec.cfg.iterations else 'epochs'})")
            train(spec.cfg, resume="auto" if started else None, log=lambda *a, **k: None)
        results = json.loads(results_path.read_text())
        train_error, images = train_set_error(spec.run_dir)
        summaries.append({"net": spec.name, "kind": spec.kind, "depth": spec.depth, "seed": spec.seed,
                          "run_dir": str(spec.run_dir), "test_error": results["test_error"],
                          "train_error": train_error, "train_error_images": images,
                          "minutes": results["train_minutes"]})
        log(f"    train error {train_error:.2f}%  test error {results['test_error']:.2f}%  "
            f"({format_duration(results['train_minutes'] * 60)})")
    return summaries


# -------------------------------------------------------------------------------------------- numbers and verdicts


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def net_table(summaries: list[dict]) -> list[dict]:
    """One row per net: mean ± std of the training and test error over its seeds; plain nets first, by depth."""
    nets: dict[str, dict] = {}
    for s in summaries:
        net = nets.setdefault(s["net"], {"net": s["net"], "kind": s["kind"], "depth": s["depth"], "runs": []})
        net["runs"].append(s)
    for net in nets.values():
        for key in ("train_error", "test_error"):
            net[key], net[f"{key}_std"] = mean_std([r[key] for r in net["runs"]])
        net["seeds"] = len(net["runs"])
        del net["runs"]
    return sorted(nets.values(), key=lambda n: (n["kind"] != "plain", n["depth"]))


def verdicts(table: list[dict]) -> dict:
    """The two findings, from the mean training errors of the shallowest and the deepest net of each kind: the
    deeper plain net trains worse (strictly higher error) and the deeper residual net trains better (strictly lower).
    A tie answers "no" to both."""

    def verdict(kind: str, deeper_is_worse: bool) -> dict:
        rows = sorted((n for n in table if n["kind"] == kind), key=lambda n: n["depth"])
        if len(rows) < 2:
            raise ValueError(f"a verdict needs two depths of {kind} nets, got {len(rows)}")
        shallow, deep = rows[0], rows[-1]
        holds = (deep["train_error"] > shallow["train_error"] if deeper_is_worse
                 else deep["train_error"] < shallow["train_error"])
        return {"answer": "yes" if holds else "no", "shallow": shallow["net"], "deep": deep["net"],
                "shallow_train_error": shallow["train_error"], "deep_train_error": deep["train_error"]}

    return {"deeper_plain_trains_worse": verdict("plain", True),
            "deeper_residual_trains_better": verdict("resnet", False)}


def aggregate(summaries: list[dict]) -> dict:
    """Mean ± std per net over seeds, and the verdicts computed from them."""
    table = net_table(summaries)
    return {"nets": table, **verdicts(table)}


# ---------------------------------------------------------------------------------------------- figure and tables


def curves(run_dir: Path) -> dict:
    """One run's curves as plain lists: running training error % every few steps (steps.jsonl) and test error %
    at every evaluation (metrics.jsonl)."""
    steps = read_jsonl(run_dir / "steps.jsonl")
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("val_top1") is not None]
    return {"steps": [r["step"] for r in steps], "train_error": [r["train_error"] for r in steps],
            "test_steps": [r["step"] for r in evals], "test_error": [100.0 - r["val_top1"] for r in evals]}


def _mean_curve(runs: list[list[float]]) -> list[float]:
    """Point-wise mean over seeds, as long as the shortest run."""
    return [statistics.fmean(points) for points in zip(*runs)]


def mean_curves(specs: list[RunSpec]) -> dict[str, dict]:
    """Net name -> its kind, depth and curves averaged over seeds (plain data for :func:`plots.plot_degradation`)."""
    by_net: dict[str, dict] = {}
    for spec in specs:
        by_net.setdefault(spec.name, {"kind": spec.kind, "depth": spec.depth, "runs": []})["runs"].append(
            curves(spec.run_dir))
    out = {}
    for name, net in by_net.items():
        runs = net.pop("runs")
        train = _mean_curve([r["train_error"] for r in runs])
        test = _mean_curve([r["test_error"] for r in runs])
        out[name] = {**net, "steps": runs[0]["steps"][:len(train)], "train_error": train,
                     "test_steps": runs[0]["test_steps"][:len(test)], "test_error": test}
    return out


TABLE_HEADERS = ("net", "seeds", "training error %", "test error %")


def results_table(summary: dict) -> str:
    """The per-net table of results.md: mean ± std, two decimals."""
    rows = [[n["net"], n["seeds"], f"{n['train_error']:.2f} ± {n['train_error_std']:.2f}",
             f"{n['test_error']:.2f} ± {n['test_error_std']:.2f}"] for n in summary["nets"]]
    return format_table(TABLE_HEADERS, rows, align="lrrr")


def write_results(out: Path, summary: dict, meta: dict) -> None:
    p, r = summary["deeper_plain_trains_worse"], summary["deeper_residual_trains_better"]
    text = "\n".join([
        f"# Degradation study ({meta['profile']} profile, {meta['data']})", "",
        meta["note"] + f"; seeds: {meta['seeds']}; total training time {meta['minutes']:.1f} min.", "",
        f"Training error: the final model on the first {meta['train_error_images']:,} training images, eval mode, "
        "no augmentation. Test error: the final model on the official test set. Mean ± std over seeds.", "",
        results_table(summary), "",
        f"- Deeper plain net trains worse: **{p['answer']}** ({p['deep']} {p['deep_train_error']:.2f}% vs "
        f"{p['shallow']} {p['shallow_train_error']:.2f}% training error)",
        f"- Deeper residual net trains better: **{r['answer']}** ({r['deep']} {r['deep_train_error']:.2f}% vs "
        f"{r['shallow']} {r['shallow_train_error']:.2f}% training error)", ""])
    write_text(out / "results.md", text)
    write_json(out / "results.json", {**meta, **summary})


def degradation(profile: str = "quick", data: str | None = None, depths: list[int] | None = None, seeds: int = 1,
                out: str | Path | None = None, extra: dict | None = None, log: Callable = _print) -> dict:
    """Run (or continue) the whole study and write the figure and tables into ``out``; returns results.json."""
    from ..plots import plot_degradation

    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = Path(out or f"runs/degradation-{profile}-{data or PROFILES[profile].data}")
    specs = plan(profile, out, data, depths, seeds, extra)
    out.mkdir(parents=True, exist_ok=True)
    summaries = run_study(specs, log)
    summary = aggregate(summaries)
    meta = {"profile": profile, "recipes": sorted({s.cfg.recipe for s in specs}), "out": str(out),
            "data": specs[0].cfg.data.name, "depths": sorted({s.depth for s in specs}), "seeds": seeds,
            "note": PROFILES[profile].note, "minutes": sum(s["minutes"] for s in summaries),
            "iterations": specs[0].cfg.iterations,
            "train_error_images": min(s["train_error_images"] for s in summaries)}
    plot_degradation(mean_curves(specs), out / "degradation.png",
                     f"Degradation on {meta['data']}: plain vs residual nets")
    write_results(out, summary, meta)
    log((out / "results.md").read_text())
    return {**meta, **summary}
