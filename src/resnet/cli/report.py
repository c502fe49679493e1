"""`resnet report RUN`: write a finished run's report page again (also for runs made before report pages existed)."""

from __future__ import annotations

import argparse

from ..report_page import report_run

DESCRIPTION = ("Write RUN/report.html: one self-contained page with what was trained, the curves, test top-1/top-5, "
               "per-class accuracy, the confusion matrix and the test images the model got most confidently wrong "
               "(with Grad-CAM of some of them when captum is installed). The model is evaluated on its test set "
               "again to find them.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("run", metavar="RUN", help="a finished run's directory (or a checkpoint in it)")
    p.add_argument("--out", metavar="FILE", help="write the page here (default: RUN/report.html)")
    p.add_argument("--data-root", metavar="DIR", help="where the run's data set is, if not where it was")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")


def run(args: argparse.Namespace) -> int:
    path = report_run(args.run, out=args.out, data_root=args.data_root, device=args.device,
                      batch_size=args.batch_size)
    print(f"report page: {path}")
    return 0
