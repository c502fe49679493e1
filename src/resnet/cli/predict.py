"""`resnet predict MODEL PATH...`: the top classes of every image, as a table, JSON or CSV, with the backend chosen
for this machine (or the one asked for)."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from ..backends import BACKENDS, load_predictor
from ..predict import predict_files
from ..table import format_table
from .per_file import unreadable_status


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_path", metavar="RUN_OR_CHECKPOINT", help="a run directory, checkpoint or .safetensors "
                   "file, or pretrained ImageNet weights: torchvision:ARCH[:TAG] | timm:ARCH[:TAG] (e.g. "
                   "torchvision:resnet50)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto (default): the fastest for this CPU among the run's exports (int8 OpenVINO or ONNX "
                        "first on CPUs with VNNI, then OpenVINO, ONNX Runtime, PyTorch); onnxruntime / openvino run "
                        "an export (MODEL may be the .onnx / .xml file or a run directory holding model.onnx / "
                        "model.xml); torch runs the weights")


def print_csv(results: list[dict]) -> None:
    """One row per (file, rank), or one row with the error of a file that could not be read."""
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "rank", "label", "prob", "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["path"], "", "", "", r["error"]])
        for rank, t in enumerate(r.get("top", []), 1):
            writer.writerow([r["path"], rank, t["label"], f"{t['prob']:.6f}", ""])


def print_table(results: list[dict]) -> None:
    """One row per file: the best class and its probability, then the next ones."""
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["path"], f"error: {r['error']}", "", ""])
            continue
        best, *rest = r["top"]
        rows.append([r["path"], best["label"], f"{best['prob']:.4f}",
                     ", ".join(f"{t['label']} {t['prob']:.3f}" for t in rest)])
    print(format_table(["file", "prediction", "prob", "next"], rows, align="llrl"))


def run(args: argparse.Namespace) -> int:
    backend, card, choice = load_predictor(args.model_path, args.backend)
    print(choice, file=sys.stdout if args.format == "table" else sys.stderr, flush=True)
    results = predict_files(backend, card, args.paths, topk=args.topk)
    if args.format == "json":
        print(json.dumps(results, indent=2))
    elif args.format == "csv":
        print_csv(results)
    else:
        print_table(results)
    return unreadable_status(results, "predicted")
