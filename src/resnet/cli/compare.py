"""`resnet compare`: ResNet and its successors trained side by side on the same images (or the same training time),
and where the tables and the figure were written."""

from __future__ import annotations

import argparse

from ..config import parse_override
from ..experiments.comparison import DEFAULT_EPOCHS, DEFAULT_MODELS, DEFAULT_SEEDS, FAMILY_RECIPES, comparison

DESCRIPTION = ("Train every MODEL on the same data and the same number of training images (whole epochs; or the same "
               "training time with --budget: start-up and the final test not counted), each with its family's recipe "
               f"({', '.join(sorted(FAMILY_RECIPES))} have their own), each seed a cell that resumes after a kill and "
               "is skipped once finished; then write results.md, results.json and comparison.png with statements "
               "computed from the numbers, each with its conditions.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"registered models (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--epochs", type=int, help=f"epochs of every cell: equal images (default {DEFAULT_EPOCHS})")
    p.add_argument("--budget", help="training time of every cell instead of equal images, e.g. 5m (wall time of "
                                    "its training and evaluations; start-up and the final test come on top)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"runs per model (default {DEFAULT_SEEDS})")
    p.add_argument("--data", help="data set (default: fashion-mnist)")
    p.add_argument("--out", help="comparison directory (default: runs/compare-<data>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any training config field")


def run(args: argparse.Namespace) -> int:
    extra = dict(parse_override(text) for text in args.set or [])
    out = comparison(args.models, epochs=args.epochs, budget=args.budget, seeds=args.seeds, data=args.data,
                     out=args.out, extra=extra)["out"]
    print(f"figure: {out}/comparison.png   tables: {out}/results.md, {out}/results.json")
    return 0
