"""`resnet compare`: ResNet and its successors trained side by side with one budget, and where the tables and the
figure were written."""

from __future__ import annotations

import argparse

from ..config import parse_override
from ..experiments.comparison import DEFAULT_BUDGET, DEFAULT_MODELS, DEFAULT_SEEDS, FAMILY_RECIPES, comparison

DESCRIPTION = ("Train every MODEL with the same recipe family, data and budget (the families designed with AdamW get "
               f"their own recipe: {', '.join(sorted(FAMILY_RECIPES))}), each seed a cell that resumes after a kill "
               "and is skipped once finished; then write results.md, results.json and comparison.png (test top-1 "
               "against MACs and against training images per second) with statements computed from the numbers.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"registered models (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--budget", default=DEFAULT_BUDGET, help=f"wall time of each cell (default {DEFAULT_BUDGET})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"runs per model (default {DEFAULT_SEEDS})")
    p.add_argument("--data", help="data set (default: fashion-mnist)")
    p.add_argument("--out", help="comparison directory (default: runs/compare-<data>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any training config field")


def run(args: argparse.Namespace) -> int:
    extra = dict(parse_override(text) for text in args.set or [])
    out = comparison(args.models, budget=args.budget, seeds=args.seeds, data=args.data, out=args.out,
                     extra=extra)["out"]
    print(f"figure: {out}/comparison.png   tables: {out}/results.md, {out}/results.json")
    return 0
