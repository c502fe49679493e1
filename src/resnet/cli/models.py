"""`resnet models [PATTERN]`: every model with its depth, size, cost and the error reported for it."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..models import list_models, model_info
from ..models.summary import summarize
from ..table import format_table, human

NOTE = ("\nErrors are top-1 %: the paper's 10-crop ImageNet (Tables 2-3) or CIFAR-10 test error (Table 6); for "
        "preact_* nets the CIFAR-10 error of He et al. 2016 (Identity Mappings), for densenet_bc100 that of Huang et "
        "al. 2017 (augmented CIFAR-10); torchvision's V1 weights, 1-crop.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet1*' or 'plain'")


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no model matches {args.pattern!r}; run `resnet models` to list them all")
    rows = []
    for name in names:
        info, s = model_info(name), summarize(name)
        rows.append([name, info.family, info.depth, f"{s.params:,}", human(s.macs), "x".join(map(str, s.input_size)),
                     info.paper_error, info.torchvision_error])
    print(format_table(["model", "family", "depth", "params", "MACs", "input", "paper err %", "torchvision err %"],
                       rows, align="llrrrrrr"))
    print(NOTE)
    return 0
