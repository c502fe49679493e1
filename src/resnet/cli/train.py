"""`resnet train`: a recipe, flags and ``--set`` overrides make one run; ``--resume`` continues one with the same
flags on top of its saved config; ``--nproc N`` runs it in N processes (DDP through torchrun)."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..data import list_datasets
from ..device import PRECISIONS
from ..train import distributed
from ..train.timing import process_start
from ..train.trainer import train

DESCRIPTION = "Train with a YAML recipe; every field can be overridden with --set key=value."
FLAGS = {  # command-line flag -> config key
    "model": "model.name", "data": "data.name", "data_root": "data.root", "epochs": "epochs",
    "iterations": "iterations", "batch_size": "batch_size", "lr": "optim.lr", "out": "out",
    "train_limit": "data.train_limit", "seed": "seed", "device": "device", "precision": "precision",
    "pretrained": "pretrained", "budget": "budget",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("--config", metavar="FILE|RECIPE", help="YAML file or shipped recipe name (see `resnet recipes`)")
    p.add_argument("--model", help="model name (see `resnet models`)")
    p.add_argument("--data", help=" | ".join(list_datasets()))
    p.add_argument("--data-root", help="folder holding the data set files")
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations", type=int, help="train for exactly this many steps (overrides --epochs)")
    p.add_argument("--budget", metavar="DURATION", help="train for as long as fits this wall-clock time, start-up, "
                   "evaluations and the final test included (e.g. 90s, 10m, 1h30m); the lr schedule ends there")
    p.add_argument("--batch-size", type=int, help="per process; the global batch is this x processes")
    p.add_argument("--lr", type=float, help="peak learning rate at the recipe's batch size (scaled linearly)")
    p.add_argument("--out", help="run directory (default: runs/<recipe>)")
    p.add_argument("--train-limit", type=int, metavar="N", help="train on the first N examples only")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", help=" | ".join(PRECISIONS))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field, e.g. "
                   "--set optim.weight_decay=5e-4 (repeatable)")
    p.add_argument("--resume", metavar="PATH|auto", help="continue from a checkpoint, a run directory, or the "
                   "newest valid checkpoint in --out (auto)")
    p.add_argument("--pretrained", metavar="SOURCE", help="start from these weights: torchvision[:TAG] or "
                   "timm[:TAG] (the --model's ImageNet weights, e.g. torchvision:IMAGENET1K_V1), a weights file "
                   "(.pth .pt .bin .safetensors) or a run directory / checkpoint; another class count gets a new "
                   "head, other input channels an adapted first conv")
    p.add_argument("--nproc", type=int, metavar="N", help="train in N processes on this machine (DDP through "
                   "torchrun; one GPU each on CUDA)")


def without_nproc(argv: list[str]) -> list[str]:
    """The same command line less ``--nproc``: what every worker process runs."""
    out, skip = [], False
    for arg in argv:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        out.append(arg)
    return out


def run(args: argparse.Namespace) -> int:
    if args.nproc and args.nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.launch(args.nproc, without_nproc(args.argv))
    overrides = {key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None}
    cfg = load_config(args.config, overrides, args.set, resume=args.resume)
    train(cfg, resume=args.resume, started=process_start())  # a --budget covers the whole command
    return 0
