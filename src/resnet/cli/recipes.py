"""`resnet recipes`: the shipped training recipes, each with the source its first line names."""

from __future__ import annotations

import argparse

from ..config import RECIPE_DIR, list_recipes
from ..table import format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in list_recipes():
        first = (RECIPE_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ").strip()
        rows.append([name, first])
    print(format_table(["recipe", "source"], rows, align="ll"))
    return 0
