"""`resnet eval RUN`: a trained model's top-1/top-5, per-class accuracy and confusion matrix on a test set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluate import TTA_MODES, evaluate_model
from ..plots import plot_confusion
from ..table import format_table
from ..train.log import scores
from ..writes import OptionalWrites


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="RUN_OR_CHECKPOINT", help="a run directory, checkpoint or .safetensors file, or "
                   "pretrained weights: torchvision:ARCH[:TAG] | timm:ARCH[:TAG] (e.g. torchvision:resnet50)")
    p.add_argument("--data", help="data set (default: the one the model was trained on)")
    p.add_argument("--data-root")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the one the run's own final "
                                                    "test used, so eval and the run agree)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for confusion.png (default: the run directory)")
    p.add_argument("--json", action="store_true", help="print one JSON object (top1, top5, per_class, ...)")


def run(args: argparse.Namespace) -> int:
    ev = evaluate_model(args.path, data=args.data, data_root=args.data_root, tta=args.tta,
                        batch_size=args.batch_size, device=args.device)
    r = ev.result
    target = Path(args.path)
    out_dir = Path(args.out) if args.out else (target if target.is_dir() else target.parent)
    # The figure is a by-product: a place that cannot take it is a warning, and the numbers are printed anyway.
    optional = OptionalWrites(lambda message: print(f"resnet: warning: {message}", file=sys.stderr))
    optional(plot_confusion, r.confusion.numpy(), ev.card.classes, out_dir / "confusion.png",
             title=f"{ev.card.architecture} on {ev.data}: top-1 {r.top1:.2f}%")
    if args.json:
        print(json.dumps(ev.to_dict(), indent=2))
        return 0
    rows = [[c["class"], c["count"], f"{c['accuracy']:.2f}"] for c in ev.to_dict()["per_class"]]
    print(format_table(["class", "images", "accuracy %"], rows, align="lrr"))
    split = "val/ folder" if ev.data.startswith("imagefolder:") else "test set"
    print(f"\n{ev.card.architecture} on {ev.data} {split} ({r.count:,} images, tta {ev.tta}): "
          f"{scores(r.top1, r.top5, r.loss)}")
    if not optional.failed:
        print(f"confusion matrix: {out_dir / 'confusion.png'}")
    return 0
