"""`resnet explain MODEL IMAGE...`: Grad-CAM pictures of where the model looks for its class, one per image and a
contact sheet of them all."""

from __future__ import annotations

import argparse

from ..explain import explain_files
from ..table import format_table
from ..weights import load_model_and_card
from .per_file import unreadable_status

DESCRIPTION = ("Write OUT/<image>.gradcam.png for every image (the image as the model saw it, and the Grad-CAM of the "
               "predicted or given class over it) and OUT/gradcam.png, a contact sheet of all of them. Needs captum: "
               "pip install 'resnet[explain]'.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.add_argument("model_path", metavar="RUN_OR_WEIGHTS", help="a run directory, checkpoint or .safetensors "
                   "file, or pretrained weights: torchvision:ARCH[:TAG] | timm:ARCH[:TAG]")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--class", dest="target", metavar="K", help="explain this class (index or name) instead of "
                                                               "the predicted one")
    p.add_argument("--out", default="gradcam", metavar="DIR", help="output folder (default: ./gradcam)")


def run(args: argparse.Namespace) -> int:
    model, card = load_model_and_card(args.model_path)
    results = explain_files(model, card, args.paths, args.out, target=args.target)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["path"], f"error: {r['error']}", "", ""])
            continue
        note = "" if r["predicted"] == r["class"] else f" (predicted {r['predicted']} {r['predicted_prob']:.3f})"
        rows.append([r["path"], r["class"] + note, f"{r['prob']:.4f}", r["output"]])
    print(format_table(["file", "class", "prob", "Grad-CAM"], rows, align="llrl"))
    sheet = next((r["sheet"] for r in results if "sheet" in r), None)
    if sheet:
        print(f"\ncontact sheet: {sheet}")
    return unreadable_status(results, "explained")
