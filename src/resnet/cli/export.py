"""`resnet export RUN`: the trained model as ONNX, OpenVINO, TorchScript or safetensors, checked against PyTorch on
real images and optionally quantized to int8."""

from __future__ import annotations

import argparse

from ..export import FORMATS, export_model


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
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
