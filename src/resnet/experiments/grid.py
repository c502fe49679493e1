"""The degradation study's cells: for every depth, the plain net and its residual twin, each trained with every
seed. A cell is the profile's recipe with only the net, seed, run directory and data set set, so one cell reruns
alone with e.g. ``resnet train --config degradation-fashion-mnist --model plain56 --seed 0``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import load_config, read_recipe
from ..data import PER_DATASET_FIELDS, is_memory
from ..errors import UserError
from .cells import Cell
from .profiles import PAPER_DEPTHS, PROFILES, Profile


@dataclass(frozen=True)
class NetCell(Cell):
    kind: str  # "plain" or "resnet"
    depth: int
    seed: int

    @property
    def net(self) -> str:
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


def check_grid(profile: str, depths: list[int] | None, seeds: int | None) -> tuple[Profile, list[int], int]:
    """The profile, depths and seed count asked for, or a :class:`UserError` naming what is wrong."""
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
    return p, depths, seeds


def plan(profile: str, out: Path, data: str | None = None, depths: list[int] | None = None,
         seeds: int | None = None, extra: dict | None = None) -> list[NetCell]:
    """Every (net, seed) cell of the study, with its resolved config (validated before anything runs)."""
    p, depths, seeds = check_grid(profile, depths, seeds)
    cells = []
    for depth in depths:
        recipe = p.recipe.format(depth=depth)
        for kind in p.kinds:
            for seed in range(seeds):
                run_dir = out / f"{kind}{depth}-seed{seed}"
                cfg = load_config(recipe, cell_overrides(p, recipe, kind, depth, seed, run_dir, data, extra))
                cells.append(NetCell(f"{kind}{depth} seed {seed}", cfg, run_dir, kind, depth, seed))
    for cell in cells:
        if not is_memory(cell.cfg.data.name):
            raise UserError(f"the degradation study reads in-memory data sets (fashion-mnist, mnist, cifar10, "
                            f"cifar100), not {cell.cfg.data.name}")
    return cells
