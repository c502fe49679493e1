"""`resnet summary NAME`: one model's output size, layers, parameters and MACs stage by stage."""

from __future__ import annotations

import argparse

from ..models.summary import summarize
from ..table import format_table, human


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    parser.add_argument("--num-classes", type=int)


def run(args: argparse.Namespace) -> int:
    kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
    s = summarize(args.name, tuple(args.input_size) if args.input_size else None, **kwargs)
    rows = [[r.name, "x".join(map(str, r.output)), r.layers] for r in s.rows]
    print(f"{s.name} at {'x'.join(map(str, s.input_size))} (C x H x W)\n")
    print(format_table(["stage", "output (H x W x C)", "layers"], rows, align="lrl"))
    print(f"\nparameters: {s.params:,}\nMACs:       {s.macs:,} ({human(s.macs)})")
    return 0
