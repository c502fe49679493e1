"""The paper's central experiment (Figures 1 and 6): plain nets get worse as they get deeper (degradation),
while the same depths with identity shortcuts do not.

For every depth, the plain net and its residual twin (shortcut A, identical parameters) train with the same recipe
and seeds. Each (net, seed) is its own run directory, so a rerun skips finished runs and resumes unfinished ones.
The study writes ``degradation.png`` (Figure 6 style), ``results.md`` and ``results.json`` with mean ± std over
seeds and the two verdicts computed from the numbers.
"""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..train.checkpoint import atomic_write, latest_valid_checkpoint
from ..train.config import Config, load_config
from ..train.log import format_duration, read_jsonl


@dataclass(frozen=True)
class Profile:
    """A recipe for the whole study. ``overrides`` apply on top of ``recipe`` (dotted keys)."""

    recipe: str
    data: str
    depths: tuple[int, ...]
    overrides: dict = field(default_factory=dict)
    note: str = ""


PROFILES = {
    # ~30 minutes on 2 CPU cores. Warm-up, then cosine decay over ~3.4 epochs of a 30k-image subset (so the test
    # error is measured at several points): without warm-up, a short run at lr 0.1 lets the shallow residual net
    # pull ahead early, and the comparison of residual depths would measure only that.
    "quick": Profile(
        recipe="fashion-mnist-resnet20", data="fashion-mnist", depths=(20, 56),
        overrides={"iterations": 800, "epochs": None, "batch_size": 128, "data.val_split": 0,
                   "data.train_limit": 30_000, "data.crop_padding": 4, "test_tta": "none",
                   "optim.name": "sgd", "optim.lr": 0.1, "optim.lr_batch_size": 128, "optim.weight_decay": 1e-4,
                   "optim.no_decay_bn_bias": False, "label_smoothing": 0.0, "schedule.name": "cosine",
                   "schedule.warmup_iters": 200, "schedule.warmup_epochs": 0, "schedule.warmup_mode": "linear",
                   "schedule.warmup_factor": 0.1, "log_every": 10, "eval_every": 1, "checkpoint_every": 100},
        note="Fashion-MNIST (first 30k training images), 800 iterations of batch 128, SGD lr 0.1 with 200 linear "
             "warm-up iterations then cosine decay, pad-4 crop + flip"),
    # The paper's CIFAR-10 schedule (Sec. 4.2): 64k iterations, /10 at 32k and 48k; plain-110 and ResNet-110 warm up.
    "paper": Profile(
        recipe="cifar10-resnet20-paper", data="cifar10", depths=(20, 32, 44, 56, 110),
        overrides={"log_every": 100, "eval_every": 1, "checkpoint_every": 2000, "test_tta": "none"},
        note="CIFAR-10, the paper's schedule: 64k iterations, lr 0.1 /10 at 32k and 48k, batch 128"),
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


def plan(profile: str, out: Path, data: str | None = None, depths: list[int] | None = None, seeds: int = 1,
         extra: dict | None = None) -> list[RunSpec]:
    """Every (net, seed) run of the study, with its resolved config (validated before anything runs)."""
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    p = PROFILES[profile]
    depths = sorted(set(depths or p.depths))
    bad = [d for d in depths if d not in (20, 32, 44, 56, 110)]
    if bad or len(depths) < 2:
        raise UserError(f"--depths needs at least two of 20, 32, 44, 56, 110 (the paper's plain/residual pairs), "
                        f"got {' '.join(map(str, depths))}")
    specs = []
    for depth in depths:
        for kind in ("plain", "resnet"):
            for seed in range(seeds):
                run_dir = out / f"{kind}{depth}-seed{seed}"
                overrides = {**p.overrides, **(extra or {}), "model.name": f"{kind}{depth}", "seed": seed,
                             "out": str(run_dir), "data.name": data or p.data}
                recipe = p.recipe
                if profile == "paper" and depth in (32, 44, 56, 110):
                    recipe = f"cifar10-resnet{depth}-paper"  # ResNet-110's recipe carries the paper's warm-up
                specs.append(RunSpec(kind, depth, seed, run_dir, load_config(recipe, overrides)))
    return specs


def train_set_error(run_dir: Path, limit: int = 10_000) -> float:
    """Error % of the final model on the first ``limit`` images it trained on, in eval mode and without
    augmentation: how well the net *fits* its data, the quantity degradation is about."""
    cache = run_dir / "train_error.json"
    if cache.is_file():
        return json.loads(cache.read_text())["train_error"]
    from ..data.datasets import MEMORY_SETS, load_memory_dataset
    from ..data.memory import MemoryLoader
    from ..device import resolve_device, resolve_precision
    from ..modelcard import load_model_and_card
    from ..train.loop import evaluate

    device = resolve_device()
    model, card = load_model_and_card(run_dir, device)
    if card.dataset not in MEMORY_SETS:
        raise UserError(f"the degradation study reads in-memory data sets ({', '.join(MEMORY_SETS)}), "
                        f"not {card.dataset}")
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    data = load_memory_dataset(card.dataset, cfg["data"]["root"], train=True)
    limit = min(limit, cfg["data"]["train_limit"] or limit, len(data))
    data = data.subset(torch.arange(limit))
    loader = MemoryLoader(data, 500, device=device, mean=card.mean, std=card.std, train=False)
    result = evaluate(model.to(memory_format=torch.channels_last), loader.epoch(0), device=device,
                      precision=resolve_precision("auto", device), num_classes=len(card.classes))
    error = 100.0 - result.top1
    atomic_write(cache, lambda f: f.write(json.dumps({"train_error": error, "images": result.count}).encode()))
    return error


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
            resume = "auto" if spec.run_dir.exists() and latest_valid_checkpoint(spec.run_dir) else None
            if spec.run_dir.exists() and resume is None:  # started, but stopped before its first checkpoint
                shutil.rmtree(spec.run_dir)
            log(f"[{i}/{len(specs)}] {spec.name} seed {spec.seed}: {'resuming' if resume else 'training'} "
                f"({spec.cfg.iterations or spec.cfg.epochs} {'iterations' if spec.cfg.iterations else 'epochs'})")
            train(spec.cfg, resume=resume, log=lambda *a, **k: None)
        results = json.loads(results_path.read_text())
        summaries.append({"net": spec.name, "kind": spec.kind, "depth": spec.depth, "seed": spec.seed,
                          "run_dir": str(spec.run_dir), "test_error": results["test_error"],
                          "train_error": train_set_error(spec.run_dir), "minutes": results["train_minutes"]})
        log(f"    train error {summaries[-1]['train_error']:.2f}%  test error {results['test_error']:.2f}%  "
            f"({format_duration(results['train_minutes'] * 60)})")
    return summaries


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(summaries: list[dict]) -> dict:
    """Mean ± std per net over seeds, and the verdicts (deepest vs shallowest depth) computed from them."""
    nets: dict[str, dict] = {}
    for s in summaries:
        net = nets.setdefault(s["net"], {"net": s["net"], "kind": s["kind"], "depth": s["depth"], "runs": []})
        net["runs"].append(s)
    for net in nets.values():
        for key in ("train_error", "test_error"):
            net[key], net[f"{key}_std"] = _mean_std([r[key] for r in net["runs"]])
        net["seeds"] = len(net["runs"])
        del net["runs"]
    table = sorted(nets.values(), key=lambda n: (n["kind"] != "plain", n["depth"]))

    def verdict(kind: str, deeper_is_worse: bool) -> dict:
        rows = [n for n in table if n["kind"] == kind]
        shallow, deep = rows[0], rows[-1]
        holds = deep["train_error"] > shallow["train_error"] if deeper_is_worse else \
            deep["train_error"] < shallow["train_error"]
        return {"answer": "yes" if holds else "no", "shallow": shallow["net"], "deep": deep["net"],
                "shallow_train_error": shallow["train_error"], "deep_train_error": deep["train_error"]}

    return {"nets": table, "deeper_plain_trains_worse": verdict("plain", True),
            "deeper_residual_trains_better": verdict("resnet", False)}


def curves(run_dir: Path) -> tuple[list[int], list[float], list[int], list[float]]:
    """(iterations, running training error %) from steps.jsonl and (iterations, test error %) per epoch."""
    steps = read_jsonl(run_dir / "steps.jsonl")
    epochs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("val_top1") is not None]
    return ([r["step"] for r in steps], [r["train_error"] for r in steps],
            [r["step"] for r in epochs], [100.0 - r["val_top1"] for r in epochs])


def plot(specs: list[RunSpec], path: Path, title: str) -> None:
    """Figure 6 of the paper: left plain nets, right ResNets; thin = training error, bold = test error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    depths = sorted({s.depth for s in specs})
    colours = dict(zip(depths, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kind in zip(axes, ("plain", "resnet")):
        for depth in depths:
            runs = [curves(s.run_dir) for s in specs if s.kind == kind and s.depth == depth]
            if not runs or not runs[0][0]:
                continue
            n_steps = min(len(r[0]) for r in runs)
            n_epochs = min(len(r[2]) for r in runs)
            train = np.mean([r[1][:n_steps] for r in runs], axis=0)
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
            ax.plot(runs[0][0][:n_steps], train, "-", color=colours[depth], lw=0.8, alpha=0.8)
            if n_epochs:
                test = np.mean([r[3][:n_epochs] for r in runs], axis=0)
                ax.plot(runs[0][2][:n_epochs], test, "o-", color=colours[depth], lw=2.2, label=label)
        ax.set_title(f"{'plain' if kind == 'plain' else 'residual'} networks")
        ax.set_xlabel("iterations")
        ax.grid(alpha=0.3)
        ax.legend(title="bold: test, thin: train")
    axes[0].set_ylabel("error (%)")
    top = max(ax.get_ylim()[1] for ax in axes)
    axes[0].set_ylim(0, min(top, 60))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_results(out: Path, summary: dict, meta: dict) -> None:
    rows = ["| net | seeds | training error % | test error % |", "|---|---:|---:|---:|"]
    for n in summary["nets"]:
        rows.append(f"| {n['net']} | {n['seeds']} | {n['train_error']:.2f} ± {n['train_error_std']:.2f} | "
                    f"{n['test_error']:.2f} ± {n['test_error_std']:.2f} |")
    p, r = summary["deeper_plain_trains_worse"], summary["deeper_residual_trains_better"]
    text = "\n".join([
        f"# Degradation study ({meta['profile']} profile, {meta['data']})", "",
        meta["note"] + f"; seeds: {meta['seeds']}; total training time {meta['minutes']:.1f} min.", "",
        "Training error: the final model on the first 10,000 training images, eval mode, no augmentation. "
        "Test error: the final model on the official test set. Mean ± std over seeds.", "",
        *rows, "",
        f"- Deeper plain net trains worse: **{p['answer']}** ({p['deep']} {p['deep_train_error']:.2f}% vs "
        f"{p['shallow']} {p['shallow_train_error']:.2f}% training error)",
        f"- Deeper residual net trains better: **{r['answer']}** ({r['deep']} {r['deep_train_error']:.2f}% vs "
        f"{r['shallow']} {r['shallow_train_error']:.2f}% training error)", ""])
    atomic_write(out / "results.md", lambda f: f.write(text.encode()))
    atomic_write(out / "results.json", lambda f: f.write(json.dumps({**meta, **summary}, indent=2).encode()))


def degradation(profile: str = "quick", data: str | None = None, depths: list[int] | None = None, seeds: int = 1,
                out: str | Path | None = None, extra: dict | None = None, log: Callable = _print) -> dict:
    """Run (or continue) the whole study and write the figure and tables into ``out``; returns results.json."""
    out = Path(out or f"runs/degradation-{profile}-{data or PROFILES[profile].data}")
    specs = plan(profile, out, data, depths, seeds, extra)
    out.mkdir(parents=True, exist_ok=True)
    summaries = run_study(specs, log)
    summary = aggregate(summaries)
    meta = {"profile": profile, "out": str(out), "data": specs[0].cfg.data.name, "depths": sorted({s.depth for s in specs}),
            "seeds": seeds, "note": PROFILES[profile].note, "minutes": sum(s["minutes"] for s in summaries),
            "iterations": specs[0].cfg.iterations}
    plot(specs, out / "degradation.png", f"Degradation on {meta['data']}: plain vs residual nets")
    write_results(out, summary, meta)
    log((out / "results.md").read_text())
    return {**meta, **summary}
