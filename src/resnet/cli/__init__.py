"""resnet: Deep Residual Learning (He et al. 2015) on PyTorch. Train, evaluate, reproduce the paper, predict, export.

The command line only parses arguments, calls the library and prints; every command is a library function first.
Each command is a module beside this one (``resnet.cli.<name>``: ``add_arguments(parser)`` and ``run(args)``),
imported only when that command runs, so start-up (which a training budget counts) loads what one command needs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import TrainingStopped, UserError

COMMANDS = {  # name -> the line `resnet --help` shows for it
    "models": "table of every model: depth, parameters, MACs, reported error",
    "summary": "per-stage output sizes, parameters and MACs of one model",
    "train": "train a model with a recipe (default: ResNet-14 on Fashion-MNIST, 10 minutes)",
    "eval": "top-1/top-5, per-class accuracy and confusion matrix of a trained model",
    "predict": "class probabilities for image files or folders",
    "export": "export a trained model to ONNX or OpenVINO (verified, optionally int8), TorchScript or safetensors",
    "explain": "Grad-CAM heatmaps: where the model looks for its class, per image and as one contact sheet",
    "report": "write a run's report page again: curves, per-class accuracy, its most confident mistakes",
    "degradation": "the paper's experiment: plain vs residual nets of growing depth",
    "compare": "ResNet and its successors trained side by side with one budget: accuracy, MACs, speed",
    "recipes": "list the shipped training recipes",
}
DASH_VALUE_FLAGS = ("--budget",)  # options whose value may start with '-' (a user's mistake to explain, not a flag)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``resnet``'s parser: every command with its help line, and the arguments and handler of ``command`` (whose
    module this imports)."""
    parser = argparse.ArgumentParser(prog="resnet", description=__doc__.splitlines()[0],
                                     epilog="Run `resnet COMMAND --help` for a command's options and `resnet "
                                            "recipes` for the recipes; the README has the quick start.")
    parser.add_argument("--version", action="version", version=f"resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, line in COMMANDS.items():
        p = sub.add_parser(name, help=line)
        if name == command:
            module = importlib.import_module(f"{__name__}.{name}")
            module.add_arguments(p)
            p.set_defaults(func=module.run)
    return parser


def glue_dash_values(argv: list[str]) -> list[str]:
    """``--budget -5m`` -> ``--budget=-5m``: argparse takes a value that starts with '-' (and is no number) for an
    option and stops with its usage; glued, the value reaches the check that says in one sentence what is wrong."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in DASH_VALUE_FLAGS and arg.startswith("-") and not arg.startswith("--") and arg != "-h":
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's error ends with one sentence on stderr and its exit status, never a traceback."""
    argv = glue_dash_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
        args.argv = argv
        return args.func(args)
    except UserError as exc:
        print(f"resnet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingStopped as exc:
        print(f"resnet: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("resnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `resnet predict ... | head`: the reader has gone; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
