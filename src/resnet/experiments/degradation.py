"""The paper's central experiment (Figures 1, 6 and 7): plain nets get worse as they get deeper (degradation),
while the same depths with identity shortcuts get better, and their layers respond more weakly.

For every depth, the plain net and its residual twin (shortcut A, identical parameters) train with the same recipe
and seeds (:mod:`.grid`). Each (net, seed) is a cell with its own run directory (:mod:`.cells`): a rerun of the
study skips finished cells and resumes unfinished ones. Each finished cell is analysed once (:mod:`.analysis`),
and the study writes its figures, ``results.md`` and ``results.json`` (:mod:`.report`), with the verdicts of
:mod:`.verdicts` computed from its own numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from ..config import to_dict
from ..device import cpu_summary
from ..errors import UserError
from ..models import create_model
from ..train.log import format_duration
from ..writes import make_dir
from .analysis import CellResult, aggregate, analyse
from .cells import check_reusable, run_cell
from .grid import NetCell, plan
from .planning import describe_plan
from .profiles import PROFILES
from .report import draw_figures, write_results


def _print(*args) -> None:
    print(*args, flush=True)


def run_study(cells: list[NetCell], log: Callable = _print) -> list[CellResult]:
    """Train every cell that is not finished (resuming interrupted ones) and analyse it."""
    found = []
    for i, cell in enumerate(cells, 1):
        results = run_cell(cell, f"{i}/{len(cells)}", log)
        found.append(analyse(cell, results))
        log(f"    train error {found[-1].train_error:.2f}%  test error {results['test_error']:.2f}%  "
            f"({format_duration(results['train_minutes'] * 60)})")
    return found


def study_meta(profile: str, out: Path, cells: list[NetCell], found: list[CellResult]) -> dict:
    """What results.json says about the study as a whole: its profile, data, grid, machine and the config every
    cell shares (less the net, seed and directory)."""
    shared = to_dict(cells[0].cfg)
    for key in ("seed", "out"):
        shared.pop(key, None)
    shared["model"].pop("name", None)
    devices = sorted({c.device for c in found})
    return {"profile": profile, "recipes": sorted({c.cfg.recipe for c in cells}), "out": str(out),
            "data": cells[0].cfg.data.name, "depths": sorted({c.depth for c in cells}),
            "seeds": len({c.seed for c in cells}), "note": PROFILES[profile].note,
            "machine": cpu_summary() if devices == ["cpu"] else ", ".join(devices),
            "precision": ", ".join(sorted({c.precision for c in found})),
            "minutes": sum(c.minutes for c in found), "iterations": cells[0].cfg.iterations,
            "train_error_images": min(c.train_error_images for c in found),
            "response_images": min(c.response_images for c in found), "config": shared}


def sittings(out: Path, started: float) -> dict:
    """Wall time and invocations summed over the study's sittings (a rerun that only draws adds seconds)."""
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return {"wall_minutes": previous.get("wall_minutes", 0.0) + (time.perf_counter() - started) / 60,
            "invocations": previous.get("invocations", 0) + 1}


def degradation(profile: str = "default", data: str | None = None, depths: list[int] | None = None,
                seeds: int | None = None, out: str | Path | None = None, extra: dict | None = None,
                log: Callable = _print) -> dict:
    """Run (or continue) the whole study and write the figures and tables into ``out``; returns results.json."""
    started = time.perf_counter()
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    out = Path(out or f"runs/degradation-{profile}-{data or PROFILES[profile].data}")
    cells = plan(profile, out, data, depths, seeds, extra)
    check_reusable(cells)
    log(describe_plan(cells))
    make_dir(out, "output directory")
    found = run_study(cells, log)
    summary = aggregate(found, cells[0].cfg.iterations)
    meta = study_meta(profile, out, cells, found)
    draw_figures(out, cells, summary, meta["data"])
    meta.update(sittings(out, started))
    write_results(out, found, summary, meta)
    log((out / "results.md").read_text())
    return {**meta, **summary}


def rewrite_results(out: str | Path, log: Callable = _print) -> dict:
    """Recompute the means and verdicts of the study in ``out`` from the cells' numbers cached in its results.json
    and write results.md and results.json again: no training, no analysis, the figures as they are (a new verdict
    applied to a committed study)."""
    out = Path(out)
    try:
        saved = json.loads((out / "results.json").read_text())
        found = [CellResult(**run) for run in saved["runs"]]
        for cell in found:  # studies of an earlier version cached the gradient norms without the stage names
            if cell.gradients and "stages" not in cell.gradients:
                cell.gradients["stages"] = create_model(cell.net).stage_names
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{out} has no readable results.json of a degradation study ({exc}); run the study there "
                        f"first") from None
    summary = aggregate(found, saved.get("iterations"))
    meta = {k: v for k, v in saved.items() if k not in summary and k not in ("runs", "verdicts")}
    write_results(out, found, summary, meta)
    log((out / "results.md").read_text())
    return {**meta, **summary}
