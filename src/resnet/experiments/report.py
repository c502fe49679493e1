"""The degradation study's report: its figures (``degradation.png``, ``responses.png``, ``gradients.png``, drawn by
:mod:`resnet.plots`), ``results.md`` (tables and verdicts) and ``results.json`` (the same numbers, every cell's
too)."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path

from ..writes import write_json, write_text
from ..plots import plot_degradation, plot_gradients, plot_responses
from ..table import format_table
from ..train.log import read_jsonl
from .analysis import CellResult
from .grid import NetCell
from .verdicts import verdict_lines

TABLE_HEADERS = ("net", "seeds", "training error %", "test error %")


def curves(run_dir: Path) -> dict:
    """One run's curves as plain lists: running training error % every few steps (steps.jsonl) and test error %
    at every evaluation (metrics.jsonl)."""
    steps = read_jsonl(run_dir / "steps.jsonl")
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("val_top1") is not None]
    return {"steps": [r["step"] for r in steps], "train_error": [r["train_error"] for r in steps],
            "test_steps": [r["step"] for r in evals], "test_error": [100.0 - r["val_top1"] for r in evals]}


def mean_curves(cells: list[NetCell]) -> dict[str, dict]:
    """Net name -> its kind, depth and curves averaged over seeds, with the seeds' range (low/high) where there is
    more than one (plain data for :func:`plots.plot_degradation`)."""
    by_net: dict[str, dict] = {}
    for cell in cells:
        by_net.setdefault(cell.net, {"kind": cell.kind, "depth": cell.depth, "runs": []})["runs"].append(
            curves(cell.run_dir))
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


def draw_figures(out: Path, cells: list[NetCell], summary: dict, data: str) -> None:
    """Figure 6 (training and test error curves), and Figure 7 and the gradient flow where they were measured."""
    kinds = {c.kind for c in cells}
    plot_degradation(mean_curves(cells), out / "degradation.png",
                     f"Degradation on {data}: plain vs residual nets" if kinds == {"plain", "resnet"}
                     else f"Training and test error on {data}: {'residual' if kinds == {'resnet'} else 'plain'} nets")
    if "responses" in summary:
        plot_responses(summary["responses"], out / "responses.png", f"Layer responses on {data} (paper Fig. 7)")
    if summary["gradients"]:
        plot_gradients(summary["gradients"], out / "gradients.png", f"Gradient flow on {data}")


# -------------------------------------------------------------------------------------------------------- tables


def results_table(summary: dict) -> str:
    """The per-net table of results.md: mean ± std, two decimals."""
    rows = [[n["net"], n["seeds"], f"{n['train_error']:.2f} ± {n['train_error_std']:.2f}",
             f"{n['test_error']:.2f} ± {n['test_error_std']:.2f}"] for n in summary["nets"]]
    return format_table(TABLE_HEADERS, rows, align="lrrr")


def seeds_table(cells: list[CellResult]) -> str:
    """Every cell's own numbers: the table behind the means."""
    rows = [[c.net, c.seed, f"{c.train_error:.2f}", f"{c.test_error:.2f}", f"{c.minutes:.1f}"]
            for c in sorted(cells, key=lambda c: (c.kind != "plain", c.depth, c.seed))]
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


# ---------------------------------------------------------------------------------------------------- results.md


def _figure6(summary: dict, meta: dict) -> list[str]:
    return [
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


def _figure7(summary: dict, meta: dict) -> list[str]:
    return [
        "## Figure 7: layer responses", "",
        f"The std of each 3x3 layer's output after BN (before the addition and ReLU), per channel over the "
        f"{meta['response_images']:,} test images and averaged over channels; mean over seeds.", "",
        responses_table(summary["responses"]), "", *verdict_lines(summary["response_verdicts"]), "",
        "![Figure 7](responses.png)", ""]


def _gradient_flow(summary: dict, images: int) -> list[str]:
    return [
        "## Gradient flow", "",
        f"The L2 norm of the loss gradient with respect to each 3x3 conv's weights, averaged over {images:,} real "
        "training images in batches of the recipe's size (train mode, fp32), at initialisation and after the "
        "first epoch; mean over seeds. First / last: the first stage's mean norm over the last stage's.", "",
        gradients_table(summary["gradients"]), "", "![gradient flow](gradients.png)", ""]


def write_results(out: Path, cells: list[CellResult], summary: dict, meta: dict) -> None:
    """``results.md`` (the sections measured) and ``results.json`` (``meta``, ``summary`` and every cell)."""
    lines = _figure6(summary, meta)
    if "responses" in summary:
        lines += _figure7(summary, meta)
    if summary["gradients"]:
        lines += _gradient_flow(summary, next(c.gradients["images"] for c in cells if c.gradients))
    lines += ["## Every run", "", seeds_table(cells), ""]
    write_text(out / "results.md", "\n".join(lines))
    write_json(out / "results.json", {**meta, **summary, "runs": [asdict(c) for c in cells]})
