"""`resnet degradation`: the paper's central experiment (plain vs residual nets of growing depth), run or continued
with a profile, and where its figures and tables were written."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import parse_override
from ..experiments.degradation import degradation, rewrite_results
from ..experiments.profiles import PROFILES
from ..experiments.very_deep import BATCH_SIZE, STEPS, very_deep

DESCRIPTION = ("Train plain-N and ResNet-N for every depth with the same recipe and seeds, then measure their layer "
               "responses (Fig. 7) and gradient flow; write degradation.png, responses.png, gradients.png, results.md "
               "and results.json. Prints its planned time first; rerunning skips finished runs and resumes unfinished "
               "ones.")
FIGURES = ("degradation.png", "responses.png", "gradients.png")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("--profile", default="default", choices=list(PROFILES),
                   help="default: Fashion-MNIST, depths 20/32/44/56 x 3 seeds; quick: depths 20 and 56, one seed; "
                        "deep: depths 20 and 110, two seeds; depth: ResNet-20 and -56 only, 3 seeds, 2,500 "
                        "iterations; paper: the paper's 64k-iteration CIFAR-10 schedule (needs CIFAR-10)")
    p.add_argument("--data", help="data set (default: the profile's)")
    p.add_argument("--depths", type=int, nargs="+", metavar="N", help="depths from 20 32 44 56 110")
    p.add_argument("--seeds", type=int, help="runs per net, mean ± std (default: the profile's)")
    p.add_argument("--out", help="study directory (default: runs/degradation-<profile>-<data>)")
    p.add_argument("--iterations", type=int, help="override the profile's training length")
    p.add_argument("--train-limit", type=int, metavar="N", help="train on the first N examples only")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any training config field")
    p.add_argument("--very-deep", type=int, metavar="DEPTH",
                   help="instead of the study: plain-DEPTH and ResNet-DEPTH (e.g. 1202) for their first --steps "
                        "steps on the same batches: training loss and each stage's gradient norm at initialisation")
    p.add_argument("--steps", type=int, default=STEPS, help=f"with --very-deep (default {STEPS})")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"with --very-deep (default {BATCH_SIZE})")
    p.add_argument("--tables-only", action="store_true",
                   help="recompute the means and verdicts of the study in --out from the numbers in its "
                        "results.json and write results.md and results.json again (no training)")


def run(args: argparse.Namespace) -> int:
    if args.very_deep:
        out = args.out or f"runs/very-deep-{args.very_deep}"
        very_deep(args.very_deep, steps=args.steps, batch_size=args.batch_size, data=args.data or "fashion-mnist",
                  out=out)
        print(f"figure: {out}/very_deep.png   tables: {out}/results.md, {out}/results.json")
        return 0
    if args.tables_only:
        out = args.out or f"runs/degradation-{args.profile}-{args.data or PROFILES[args.profile].data}"
        rewrite_results(out)
        print(f"tables: {out}/results.md, {out}/results.json")
        return 0
    extra = dict(parse_override(text) for text in args.set or [])
    if args.iterations:
        extra["iterations"] = args.iterations
    if args.train_limit:
        extra["data.train_limit"] = args.train_limit
    result = degradation(args.profile, data=args.data, depths=args.depths, seeds=args.seeds, out=args.out,
                         extra=extra)
    out = result["out"]
    figures = [name for name in FIGURES if (Path(out) / name).is_file()]
    print(f"figures: {', '.join(f'{out}/{name}' for name in figures)}   tables: {out}/results.md, "
          f"{out}/results.json")
    return 0
