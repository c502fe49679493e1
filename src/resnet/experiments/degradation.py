"""The paper's central experiment (Figures 1, 6 and 7): plain nets get worse as they get deeper (degradation),
while the same depths with identity shortcuts get better, and their layers respond more weakly.

For every depth, the plain net and its residual twin (shortcut A, identical parameters) train with the same recipe
and seeds. Each (net, seed) is a cell: its own run directory, trained by ``resnet train`` with the profile's recipe
and only the net, seed and directory set, so one cell reruns alone with e.g.
``resnet train --config degradation-fashion-mnist --model plain56 --seed 0``. A rerun of the study skips finished
cells and resumes unfinished ones. Each finished cell is then analysed once (cached in its ``analysis.json``): its
training error, its layer responses on the test set (Figure 7) and, at the gradient depths, the gradient norms of
its 3x3 layers at initialisation and after the first epoch. The study writes ``degradation.png``,
``responses.png``, ``gradients.png``, ``results.md`` and ``results.json``, with the verdicts of
:mod:`.verdicts` computed from its own numbers.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from ..config import Config, config_from_dict, load_config, read_recipe, to_dict
from ..data import PER_DATASET_FIELDS, MemoryLoader, is_memory, open_split
from ..errors import UserError
from ..io import write_json, write_text
from ..runs import latest_valid_checkpoint
from ..table import format_table
from ..train.log import format_duration, read_jsonl
from .profiles import PAPER_DEPTHS, PROFILES, SNAPSHOT_EPOCHS, Profile
from .verdicts import net_table, response_verdicts, verdict_lines, verdicts

GRADIENT_DEPTHS = (56, 110)  # depths whose gradient flow is measured (the paper's deep pair, and 110 when trained)
TRAIN_ERROR_IMAGES = 10_000  # the training error is measured on the first this many training images
GRADIENT_BATCHES = 8  # real training batches (of the recipe's batch size) the gradient norms are averaged over
ANALYSIS_VERSION = 2  # bump when what analysis.json holds changes, so cached analyses are redone


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
    # On another data set the recipe's data-size fields (the training subset) still hold: they are part of the
    # study's design, and its note names them.
    recipe_data = read_recipe(recipe).get("data") or {}
    for key in PER_DATASET_FIELDS:
        if key in recipe_data:
            overrides.setdefault(f"data.{key}", recipe_data[key])
    return {**overrides, "model.name": f"{kind}{depth}", "seed": seed, "out": str(run_dir),
            "data.name": data or profile.data}


def plan(profile: str, out: Path, data: str | None = None, depths: list[int] | None = None,
         seeds: int | None = None, extra: dict | None = None) -> list[RunSpec]:
    """Every (net, seed) run of the study, with its resolved config (validated before anything runs)."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    p = PROFILES[profile]
    seeds = p.seeds if seeds is None else seeds
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
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
    for spec in specs:
        if not is_memory(spec.cfg.data.name):
            raise UserError(f"the degradation study reads in-memory data sets (fashion-mnist, mnist, cifar10, "
                            f"cifar100), not {spec.cfg.data.name}")
    return specs


# ------------------------------------------------------------------------------------------------ one cell's analysis


def _loader(data, card, device, batch_size: int) -> MemoryLoader:
    """Unaugmented, normalised batches of ``data``, in file order."""
    return MemoryLoader(data, batch_size, device=device, mean=card.mean, std=card.std, train=False)


def analyse_cell(run_dir: Path, gradients: bool) -> dict:
    """A finished cell's numbers beyond its results.json, cached in ``analysis.json``:

    - ``train_error``: error % of the final model on the first :data:`TRAIN_ERROR_IMAGES` images it trained on, in
      eval mode, without augmentation, at the run's precision: how well the net *fits* its data;
    - ``responses``: Figure 7, the std of each 3x3 layer's response over the test set (:mod:`.responses`);
    - with ``gradients``: the gradient norm of each 3x3 layer at initialisation and after the first epoch, on
      :data:`GRADIENT_BATCHES` real training batches (:mod:`.gradients`), from the run's snapshots."""
    cache = run_dir / "analysis.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("version") == ANALYSIS_VERSION and (cached.get("gradients") is not None or not gradients):
            return cached
    import torch

    from ..device import resolve_device, resolve_precision
    from ..evaluate import evaluate
    from ..io import load_safetensors
    from ..modelcard import load_into, load_model_and_card
    from .gradients import conv_grad_norms, first_last_ratio
    from .responses import layer_response_std, layers_3x3

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
    layers = layers_3x3(model)
    analysis = {"version": ANALYSIS_VERSION, "train_error": 100.0 - result.top1, "train_error_images": result.count,
                "layers": [bn for _, bn in layers],
                "responses": layer_response_std(model, (images for images, _ in test.epoch(0))),
                "response_images": test.size, "gradients": None}
    if gradients:
        batches = list(_loader(train_data.subset_first(gradient_images), card, device, cfg.batch_size).epoch(0))
        norms = {}
        for epoch in SNAPSHOT_EPOCHS:
            snapshot = run_dir / "snapshots" / f"epoch-{epoch}.safetensors"
            if not snapshot.is_file():
                raise UserError(f"{snapshot} is missing, so the gradient flow cannot be measured; train the cell "
                                f"again with snapshot_epochs: {SNAPSHOT_EPOCHS} (delete {run_dir})")
            load_into(model, load_safetensors(snapshot), str(snapshot))
            norms[f"epoch{epoch}"] = conv_grad_norms(model, batches)
        convs = [conv for conv, _ in layers]
        analysis["gradients"] = {"convs": convs, "stages": model.stage_names, "images": sum(len(labels) for _, labels in batches),
                                 "init": norms["epoch0"], "epoch1": norms["epoch1"],
                                 "ratio_init": first_last_ratio(norms["epoch0"], convs, model.stage_names),
                                 "ratio_epoch1": first_last_ratio(norms["epoch1"], convs, model.stage_names)}
    write_json(cache, analysis)
    return analysis


def _print(*args) -> None:
    print(*args, flush=True)


def run_study(specs: list[RunSpec], log: Callable = _print) -> list[dict]:
    """Train every run that is not finished (resuming interrupted ones), analyse it, and return one summary per
    run."""
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
        analysis = analyse_cell(spec.run_dir, gradients=spec.depth in GRADIENT_DEPTHS)
        summaries.append({"net": spec.name, "kind": spec.kind, "depth": spec.depth, "seed": spec.seed,
                          "run_dir": str(spec.run_dir), "test_error": results["test_error"],
                          "train_error": analysis["train_error"], "train_error_images": analysis["train_error_images"],
                          "minutes": results["train_minutes"], "precision": results["precision"],
                          "device": results["device"], "layers": analysis["layers"],
                          "responses": analysis["responses"], "response_images": analysis["response_images"],
                          "gradients": analysis["gradients"]})
        log(f"    train error {analysis['train_error']:.2f}%  test error {results['test_error']:.2f}%  "
            f"({format_duration(results['train_minutes'] * 60)})")
    return summaries


# -------------------------------------------------------------------------------------------- numbers and verdicts


def _pointwise_mean(runs: list[list[float]]) -> list[float]:
    return [statistics.fmean(values) for values in zip(*runs)]


def net_responses(summaries: list[dict]) -> dict[str, dict]:
    """Net -> its layer response stds averaged over seeds, and their mean over layers (Figure 7's numbers)."""
    nets: dict[str, dict] = {}
    for s in summaries:
        nets.setdefault(s["net"], {"kind": s["kind"], "depth": s["depth"], "runs": []})["runs"].append(s["responses"])
    for net in nets.values():
        net["std"] = _pointwise_mean(net.pop("runs"))
        net["mean_std"] = statistics.fmean(net["std"])
    return nets


def net_gradients(summaries: list[dict]) -> dict[str, dict]:
    """Net -> its per-layer gradient norms at initialisation and after the first epoch, averaged over seeds, and
    the first-stage / last-stage ratio of those means."""
    from .gradients import first_last_ratio

    nets: dict[str, dict] = {}
    for s in summaries:
        if s["gradients"] is not None:
            nets.setdefault(s["net"], {"kind": s["kind"], "depth": s["depth"], "runs": []})["runs"].append(
                s["gradients"])
    for net in nets.values():
        runs = net.pop("runs")
        for key in ("init", "epoch1"):
            net[key] = _pointwise_mean([r[key] for r in runs])
            net[f"ratio_{key}"] = first_last_ratio(net[key], runs[0]["convs"], runs[0]["stages"])
        net["seeds"] = len(runs)
    return nets


def aggregate(summaries: list[dict]) -> dict:
    """Mean ± std per net over seeds and the Figure 6 verdicts; Figure 7's responses and their verdicts; the
    gradient-flow table."""
    table = net_table(summaries)
    out = {"nets": table, "verdicts": verdicts(table)}
    if all(s.get("responses") for s in summaries):
        responses = net_responses(summaries)
        out.update(responses=responses, response_verdicts=response_verdicts(responses))
    out["gradients"] = net_gradients(summaries) if any(s.get("gradients") for s in summaries) else {}
    return out


# ---------------------------------------------------------------------------------------------- figure and tables


def curves(run_dir: Path) -> dict:
    """One run's curves as plain lists: running training error % every few steps (steps.jsonl) and test error %
    at every evaluation (metrics.jsonl)."""
    steps = read_jsonl(run_dir / "steps.jsonl")
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("val_top1") is not None]
    return {"steps": [r["step"] for r in steps], "train_error": [r["train_error"] for r in steps],
            "test_steps": [r["step"] for r in evals], "test_error": [100.0 - r["val_top1"] for r in evals]}


def mean_curves(specs: list[RunSpec]) -> dict[str, dict]:
    """Net name -> its kind, depth and curves averaged over seeds, with the seeds' range (low/high) where there is
    more than one (plain data for :func:`plots.plot_degradation`)."""
    by_net: dict[str, dict] = {}
    for spec in specs:
        by_net.setdefault(spec.name, {"kind": spec.kind, "depth": spec.depth, "runs": []})["runs"].append(
            curves(spec.run_dir))
    out = {}
    for name, net in by_net.items():
        runs = net.pop("runs")
        entry = dict(net)
        for key, x in (("train_error", "steps"), ("test_error", "test_steps")):
            points = list(zip(*(r[key] for r in runs)))  # as long as the shortest run
            entry[key] = [statistics.fmean(p) for p in points]
            entry[x] = runs[0][x][:len(points)]
            if len(runs) > 1:
                prefix = key.split("_")[0]
                entry[f"{prefix}_low"], entry[f"{prefix}_high"] = [min(p) for p in points], [max(p) for p in points]
        out[name] = entry
    return out


TABLE_HEADERS = ("net", "seeds", "training error %", "test error %")


def results_table(summary: dict) -> str:
    """The per-net table of results.md: mean ± std, two decimals."""
    rows = [[n["net"], n["seeds"], f"{n['train_error']:.2f} ± {n['train_error_std']:.2f}",
             f"{n['test_error']:.2f} ± {n['test_error_std']:.2f}"] for n in summary["nets"]]
    return format_table(TABLE_HEADERS, rows, align="lrrr")


def seeds_table(summaries: list[dict]) -> str:
    """Every cell's own numbers: the table behind the means."""
    rows = [[s["net"], s["seed"], f"{s['train_error']:.2f}", f"{s['test_error']:.2f}", f"{s['minutes']:.1f}"]
            for s in sorted(summaries, key=lambda s: (s["kind"] != "plain", s["depth"], s["seed"]))]
    return format_table(("net", "seed", "training error %", "test error %", "minutes"), rows, align="lrrrr")


def responses_table(responses: dict[str, dict]) -> str:
    rows = [[name, len(r["std"]), f"{r['mean_std']:.3f}", f"{max(r['std']):.3f}", f"{min(r['std']):.3f}"]
            for name, r in sorted(responses.items(), key=lambda kv: (kv[1]["kind"] != "plain", kv[1]["depth"]))]
    return format_table(("net", "3x3 layers", "mean std", "largest", "smallest"), rows, align="lrrrr")


def gradients_table(gradients: dict[str, dict]) -> str:
    rows = []
    for name, g in sorted(gradients.items(), key=lambda kv: (kv[1]["depth"], kv[1]["kind"] != "plain")):
        for key, moment in (("init", "initialisation"), ("epoch1", "after epoch 1")):
            r = g[f"ratio_{key}"]
            rows.append([name, moment, f"{r['first_stage']:.4f}", f"{r['last_stage']:.4f}", f"{r['ratio']:.2f}"])
    return format_table(("net", "weights", "first stage", "last stage", "first / last"), rows, align="llrrr")


def write_results(out: Path, summaries: list[dict], summary: dict, meta: dict) -> None:
    lines = [
        f"# Degradation study ({meta['profile']} profile, {meta['data']})", "",
        f"{meta['note']}; {meta['seeds']} seed(s) per net. Machine: {meta['machine']}, {meta['precision']}. "
        f"Training time {meta['minutes']:.1f} min summed over the cells; wall time {meta['wall_minutes']:.1f} min "
        f"over {meta['invocations']} invocation(s) of the study (training, analysis and drawing).", "",
        "## Figure 6: training and test error", "",
        f"Training error: the final model on the first {meta['train_error_images']:,} training images (the images it "
        "trained on), eval mode, no augmentation. Test error: the final model on the official test set. Mean ± std "
        "over seeds; in the figure, the band is the seeds' range.", "",
        results_table(summary), "", *verdict_lines(summary["verdicts"]), "",
        "![Figure 6](degradation.png)", ""]
    if "responses" in summary:
        lines += [
            "## Figure 7: layer responses", "",
            f"The std of each 3x3 layer's output after BN (before the addition and ReLU), per channel over the "
            f"{meta['response_images']:,} test images and averaged over channels; mean over seeds.", "",
            responses_table(summary["responses"]), "", *verdict_lines(summary["response_verdicts"]), "",
            "![Figure 7](responses.png)", ""]
    if summary["gradients"]:
        images = next(s["gradients"]["images"] for s in summaries if s["gradients"])
        lines += [
            "## Gradient flow", "",
            f"The L2 norm of the loss gradient with respect to each 3x3 conv's weights, averaged over {images:,} real "
            "training images in batches of the recipe's size (train mode, fp32), at initialisation and after the "
            "first epoch; mean over seeds. First / last: the first stage's mean norm over the last stage's.", "",
            gradients_table(summary["gradients"]), "", "![gradient flow](gradients.png)", ""]
    lines += ["## Every run", "", seeds_table(summaries), ""]
    write_text(out / "results.md", "\n".join(lines))
    write_json(out / "results.json", {**meta, **summary, "runs": summaries})


def degradation(profile: str = "default", data: str | None = None, depths: list[int] | None = None,
                seeds: int | None = None, out: str | Path | None = None, extra: dict | None = None,
                log: Callable = _print) -> dict:
    """Run (or continue) the whole study and write the figures and tables into ``out``; returns results.json."""
    from ..device import cpu_summary
    from ..plots import plot_degradation, plot_gradients, plot_responses
    from .planning import describe_plan

    started = time.perf_counter()
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = Path(out or f"runs/degradation-{profile}-{data or PROFILES[profile].data}")
    specs = plan(profile, out, data, depths, seeds, extra)
    log(describe_plan(specs))
    out.mkdir(parents=True, exist_ok=True)
    summaries = run_study(specs, log)
    summary = aggregate(summaries)
    cell = to_dict(specs[0].cfg)
    for key in ("seed", "out"):
        cell.pop(key, None)
    cell["model"].pop("name", None)
    devices = sorted({s["device"] for s in summaries})
    meta = {"profile": profile, "recipes": sorted({s.cfg.recipe for s in specs}), "out": str(out),
            "data": specs[0].cfg.data.name, "depths": sorted({s.depth for s in specs}),
            "seeds": len({s.seed for s in specs}), "note": PROFILES[profile].note,
            "machine": cpu_summary() if devices == ["cpu"] else ", ".join(devices),
            "precision": ", ".join(sorted({s["precision"] for s in summaries})),
            "minutes": sum(s["minutes"] for s in summaries), "iterations": specs[0].cfg.iterations,
            "train_error_images": min(s["train_error_images"] for s in summaries),
            "response_images": min(s["response_images"] for s in summaries), "config": cell}
    plot_degradation(mean_curves(specs), out / "degradation.png",
                     f"Degradation on {meta['data']}: plain vs residual nets")
    if "responses" in summary:
        plot_responses(summary["responses"], out / "responses.png",
                       f"Layer responses on {meta['data']} (paper Fig. 7)")
    if summary["gradients"]:
        plot_gradients(summary["gradients"], out / "gradients.png", f"Gradient flow on {meta['data']}")
    # Wall time adds up over the invocations (a study may span several sittings; a rerun that only draws adds seconds).
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    meta["wall_minutes"] = previous.get("wall_minutes", 0.0) + (time.perf_counter() - started) / 60
    meta["invocations"] = previous.get("invocations", 0) + 1
    write_results(out, summaries, summary, meta)
    log((out / "results.md").read_text())
    return {**meta, **summary}
