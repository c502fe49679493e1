"""resnet: Deep Residual Learning (He et al. 2015) on PyTorch. Train, evaluate, reproduce the paper, predict, export.

This module only parses arguments, calls the library and prints; every command is a library function first.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .errors import TrainingStopped, UserError
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
    print("\nErrors are top-1 %: the paper's 10-crop ImageNet (Tables 2-3) or CIFAR-10 test error (Table 6); for "
          "preact_* nets the CIFAR-10 error of He et al. 2016 (Identity Mappings); torchvision's V1 weights, 1-crop.")
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


TRAIN_FLAGS = {  # command-line flag -> config key
    "model": "model.name", "data": "data.name", "data_root": "data.root", "epochs": "epochs",
    "iterations": "iterations", "batch_size": "batch_size", "lr": "optim.lr", "out": "out",
    "train_limit": "data.train_limit", "seed": "seed", "device": "device", "precision": "precision",
    "pretrained": "pretrained", "budget": "budget",
}


DASH_VALUE_FLAGS = ("--budget",)  # options whose value may start with '-' (a user's mistake to explain, not a flag)


def cmd_train(args: argparse.Namespace) -> int:
    from .config import Config, build, load_config, parse_override, prefer_asked_length, set_dotted, validate
    from .runs import saved_config
    from .train import distributed
    from .train.budget import process_start
    from .train.trainer import train

    if args.nproc and args.nproc > 1 and not distributed.launched_by_torchrun():
        argv, skip = [], False
        for arg in args.argv:  # the same command line, less --nproc, for every worker
            if skip or arg == "--nproc" or arg.startswith("--nproc="):
                skip = arg == "--nproc"
                continue
            argv.append(arg)
        return distributed.launch(args.nproc, argv)

    overrides = {key: getattr(args, flag) for flag, key in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    if args.resume:
        if args.config:
            raise UserError("--resume continues a run with its own config.yaml; drop --config")
        data = saved_config(args.resume, args.out)
        sets = [parse_override(text) for text in args.set or []]
        prefer_asked_length(data, {**overrides, **dict(sets)})
        for key, value in [*overrides.items(), *sets]:
            set_dotted(data, key, value)
        cfg = validate(build(Config, data))
    else:
        cfg = load_config(args.config, overrides, args.set)
    train(cfg, resume=args.resume, started=process_start())  # a --budget covers the whole command
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .config import RECIPE_DIR, list_recipes

    rows = []
    for name in list_recipes():
        first = (RECIPE_DIR / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ").strip()
        rows.append([name, first])
    print(format_table(["recipe", "source"], rows, align="ll"))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .evaluate import evaluate_model
    from .plots import plot_confusion
    from .train.log import scores

    ev = evaluate_model(args.path, data=args.data, data_root=args.data_root, tta=args.tta,
                        batch_size=args.batch_size, device=args.device)
    r = ev.result
    target = Path(args.path)
    out_dir = Path(args.out) if args.out else (target if target.is_dir() else target.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(r.confusion.numpy(), ev.card.classes, out_dir / "confusion.png",
                   title=f"{ev.card.architecture} on {ev.data}: top-1 {r.top1:.2f}%")
    if args.json:
        print(json.dumps(ev.to_dict(), indent=2))
        return 0
    rows = [[c["class"], c["count"], f"{c['accuracy']:.2f}"] for c in ev.to_dict()["per_class"]]
    print(format_table(["class", "images", "accuracy %"], rows, align="lrr"))
    split = "val/ folder" if ev.data.startswith("imagefolder:") else "test set"
    print(f"\n{ev.card.architecture} on {ev.data} {split} ({r.count:,} images, tta {ev.tta}): "
          f"{scores(r.top1, r.top5, r.loss)}")
    print(f"confusion matrix: {out_dir / 'confusion.png'}")
    return 0


def unreadable_status(results: list[dict], done: str) -> int:
    """Exit status of a per-file command: 2, with one sentence, when some files could not be read as images."""
    failed = sum("error" in r for r in results)
    if failed:
        print(f"resnet: error: {failed} of {len(results)} file(s) could not be read as images (see above); the "
              f"others were {done}", file=sys.stderr)
        return 2
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import json

    from .backends import load_predictor
    from .predict import predict_files

    backend, card, choice = load_predictor(args.model_path, args.backend)
    print(choice, file=sys.stdout if args.format == "table" else sys.stderr, flush=True)
    results = predict_files(backend, card, args.paths, topk=args.topk)
    if args.format == "json":
        print(json.dumps(results, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "rank", "label", "prob", "error"])
        for r in results:
            if "error" in r:
                writer.writerow([r["path"], "", "", "", r["error"]])
            for rank, t in enumerate(r.get("top", []), 1):
                writer.writerow([r["path"], rank, t["label"], f"{t['prob']:.6f}", ""])
    else:
        rows = []
        for r in results:
            if "error" in r:
                rows.append([r["path"], f"error: {r['error']}", "", ""])
                continue
            best, *rest = r["top"]
            rows.append([r["path"], best["label"], f"{best['prob']:.4f}",
                         ", ".join(f"{t['label']} {t['prob']:.3f}" for t in rest)])
        print(format_table(["file", "prediction", "prob", "next"], rows, align="llrl"))
    return unreadable_status(results, "predicted")


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_files
    from .modelcard import load_model_and_card

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


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    report = export_model(args.path, args.format, out=args.out, batch=args.batch, opset=args.opset,
                          quantize=args.quantize, verify_images=args.verify_images, calib_images=args.calib_images,
                          images=args.images, data_root=args.data_root, log=lambda msg: print(msg, flush=True))
    print(f"wrote {report.path} ({report.bytes / 1e6:.1f} MB, {report.format})")
    if report.verification:
        print(report.verification)
    q = report.quantization
    if q:
        print(f"wrote {q.path} ({q.int8_bytes / 1e6:.1f} MB, int8; fp32 {q.fp32_bytes / 1e6:.1f} MB)")
        print(q.verification)
        if q.verification.export_top1 is None:
            print("test accuracy not measured: --images has no class folders")
    return 0


def cmd_degradation(args: argparse.Namespace) -> int:
    from .experiments.degradation import degradation
    from .config import parse_override

    extra = dict(parse_override(text) for text in args.set or [])
    if args.iterations:
        extra["iterations"] = args.iterations
    if args.train_limit:
        extra["data.train_limit"] = args.train_limit
    result = degradation(args.profile, data=args.data, depths=args.depths, seeds=args.seeds, out=args.out,
                         extra=extra)
    out = result["out"]
    figures = [name for name in ("degradation.png", "responses.png", "gradients.png") if os.path.isfile(f"{out}/{name}")]
    print(f"figures: {', '.join(f'{out}/{name}' for name in figures)}   tables: {out}/results.md, "
          f"{out}/results.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKENDS
    from .data import list_datasets
    from .device import PRECISIONS
    from .evaluate import TTA_MODES
    from .experiments.profiles import PROFILES as DEGRADATION_PROFILES
    from .export import FORMATS

    parser = argparse.ArgumentParser(prog="resnet", description=__doc__.splitlines()[0] if __doc__ else None,
                                     epilog="Run `resnet COMMAND --help` for a command's options; the README has "
                                            "the quick start and every recipe.")
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

    p = sub.add_parser("train", help="train a model with a recipe (default: ResNet-14 on Fashion-MNIST, 10 minutes)",
                       description="Train with a YAML recipe; every field can be overridden with --set key=value.")
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1/top-5, per-class accuracy and confusion matrix of a trained model")
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
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="class probabilities for image files or folders")
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
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a trained model to ONNX or OpenVINO (verified, optionally int8), "
                                      "TorchScript or safetensors")
    p.add_argument("path", metavar="RUN_OR_CHECKPOINT", help="a run directory, checkpoint or .safetensors file, or "
                   "pretrained weights: torchvision:ARCH[:TAG] | timm:ARCH[:TAG] (written to the current folder "
                   "unless --out)")
    p.add_argument("--format", default="onnx", help=f"{' | '.join(FORMATS)} (default: onnx)")
    p.add_argument("--out", help="output file (default: model.onnx / model.xml (+ .bin) / model.torchscript.pt / "
                                 "model.safetensors in the run directory)")
    p.add_argument("--batch", default="dynamic", help="dynamic (default) or a fixed batch size N")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--quantize", metavar="int8", help="also write an int8 model (X.int8.onnx by ONNX Runtime, "
                   "X.int8.xml by NNCF), calibrated on real training images, and report its agreement and test "
                   "accuracy")
    p.add_argument("--verify-images", type=int, default=1000, metavar="N",
                   help="real test images for the export vs PyTorch check, stored as X.verification.json "
                        "(default: 1000)")
    p.add_argument("--calib-images", type=int, default=500, metavar="N",
                   help="real training images to calibrate --quantize on (default: 500)")
    p.add_argument("--images", "--calib-dir", dest="images", metavar="DIR",
                   help="real images for verification and calibration (needed for models trained on image folders "
                        "that are not on this machine)")
    p.add_argument("--data-root", help="folder holding the data set files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("explain", help="Grad-CAM heatmaps: where the model looks for its class, per image and as "
                                       "one contact sheet",
                       description="Write OUT/<image>.gradcam.png for every image (the image as the model saw it, "
                                   "and the Grad-CAM of the predicted or given class over it) and OUT/gradcam.png, a "
                                   "contact sheet of all of them. Needs captum: pip install 'resnet[explain]'.")
    p.add_argument("model_path", metavar="RUN_OR_WEIGHTS", help="a run directory, checkpoint or .safetensors "
                   "file, or pretrained weights: torchvision:ARCH[:TAG] | timm:ARCH[:TAG]")
    p.add_argument("paths", nargs="+", metavar="IMAGE", help="image files or folders")
    p.add_argument("--class", dest="target", metavar="K", help="explain this class (index or name) instead of "
                                                               "the predicted one")
    p.add_argument("--out", default="gradcam", metavar="DIR", help="output folder (default: ./gradcam)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("degradation", help="the paper's experiment: plain vs residual nets of growing depth",
                       description="Train plain-N and ResNet-N for every depth with the same recipe and seeds, then "
                                   "measure their layer responses (Fig. 7) and gradient flow; write degradation.png, "
                                   "responses.png, gradients.png, results.md and results.json. Prints its planned "
                                   "time first; rerunning skips finished runs and resumes unfinished ones.")
    p.add_argument("--profile", default="default", choices=list(DEGRADATION_PROFILES),
                   help="default: Fashion-MNIST, depths 20/32/44/56 x 3 seeds; quick: depths 20 and 56, one seed; "
                        "paper: the paper's 64k-iteration CIFAR-10 schedule (needs CIFAR-10)")
    p.add_argument("--data", help="data set (default: the profile's)")
    p.add_argument("--depths", type=int, nargs="+", metavar="N", help="depths from 20 32 44 56 110")
    p.add_argument("--seeds", type=int, help="runs per net, mean ± std (default: the profile's)")
    p.add_argument("--out", help="study directory (default: runs/degradation-<profile>-<data>)")
    p.add_argument("--iterations", type=int, help="override the profile's training length")
    p.add_argument("--train-limit", type=int, metavar="N", help="train on the first N examples only")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any training config field")
    p.set_defaults(func=cmd_degradation)

    p = sub.add_parser("recipes", help="list the shipped training recipes")
    p.set_defaults(func=cmd_recipes)
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
    argv = glue_dash_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
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


if __name__ == "__main__":
    sys.exit(main())
