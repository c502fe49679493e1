"""`resnet <command>`: parses arguments, calls the library, prints. No work is done here."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import UserError
from .table import format_table, human


def cmd_models(args: argparse.Namespace) -> int:
    from .models import list_models, model_info
    from .models.summary import summarize

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
    print("\nErrors are top-1 %: the paper's 10-crop ImageNet (Tables 2-3) or CIFAR-10 test error (Table 6); "
          "torchvision's V1 weights, 1-crop.")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .models.summary import summarize

    kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
    s = summarize(args.name, tuple(args.input_size) if args.input_size else None, **kwargs)
    rows = [[r.name, "x".join(map(str, r.output)), r.layers] for r in s.rows]
    print(f"{s.name} at {'x'.join(map(str, s.input_size))} (C x H x W)\n")
    print(format_table(["stage", "output (H x W x C)", "layers"], rows, align="lrl"))
    print(f"\nparameters: {s.params:,}\nMACs:       {s.macs:,} ({human(s.macs)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("models", help="table of every model: depth, parameters, MACs, reported error")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'resnet1*' or 'plain'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="per-stage output sizes, parameters and MACs of one model")
    p.add_argument("name")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"))
    p.add_argument("--num-classes", type=int)
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"resnet: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
