"""`resnet export` as one library call, :func:`export_model`: write a trained model in a format of the
:mod:`.writers` table and, for ONNX, verify it against PyTorch on real images and optionally quantize it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..modelcard import ModelCard, load_model_and_card
from ..runs import resolve_weights
from .fold import conv_bn_pairs, fold_batchnorm
from .onnx import batchnorm_after_conv, card_metadata, export_onnx
from .options import ExportOptions, parse_batch
from .quantize import QUANTIZE_MODES, Quantization, check_quantize, quantize_int8
from .verify import Verification, in_memory, labelled_test_set, load_files, logits_of, real_images, verify_onnx
from .writers import (FORMATS, WRITERS, Writer, default_export_path, export_safetensors, export_torchscript,
                      list_formats, load_torchscript, writer_of)


@dataclass
class ExportReport:
    path: Path
    format: str
    verification: Verification | None = None
    quantization: Quantization | None = None


def _quantize(path: Path, card: ModelCard, mode: str, calib_images: int, verify_images: int, images, data_root,
              log) -> Quantization:
    """Quantize the ONNX export at ``path``; test on the labelled test set, else on unlabelled --images."""
    log(f"quantizing to int8 (calibrating on {calib_images} training images) ...")
    calib = real_images(card, calib_images, "train", images, data_root, seed=0)
    try:
        test_x, test_y = labelled_test_set(card, images, data_root, limit=None if in_memory(card, images) else 5000)
    except UserError:  # --images without class folders: agreement on those images only, no accuracy
        test_x, test_y = real_images(card, verify_images, "test", images, data_root), None
    return quantize_int8(path, path.with_suffix(f".{mode}.onnx"), card, calib, test_x, test_y)


def export_model(source: str | Path, fmt: str = "onnx", out: str | Path | None = None, batch: str | int = "dynamic",
                 opset: int | None = None, quantize: str | None = None, verify_images: int = 500,
                 calib_images: int = 500, images: str | Path | None = None, data_root: str | None = None,
                 log=lambda msg: None) -> ExportReport:
    """`resnet export`: write ``fmt``; for ONNX verify against PyTorch on real images and optionally quantize."""
    writer = writer_of(fmt)
    options = ExportOptions(batch, opset)
    if check_quantize(quantize) and fmt != "onnx":
        raise UserError(f"--quantize {quantize} works on ONNX exports only; use --format onnx")
    if opset is not None and fmt != "onnx":
        raise UserError(f"--opset applies to ONNX exports only; drop it for --format {fmt}")
    model, card = load_model_and_card(source)
    path = Path(out) if out else default_export_path(source, fmt)
    if fmt == "safetensors" and path.resolve() == resolve_weights(source).resolve():
        raise UserError(f"{path} already is the safetensors export; pass --out to write a copy elsewhere")
    if fmt != "onnx":
        return ExportReport(writer.write(model, card, path, options), fmt)
    if path.suffix != ".onnx":
        raise UserError(f"an ONNX export is named *.onnx, got {path.name!r}; change --out")
    log(f"exporting {card.architecture} to {path} ...")
    writer.write(model, card, path, options)
    checked = verify_onnx(path, model, card, real_images(card, verify_images, "test", images, data_root))
    report = ExportReport(path, fmt, verification=checked)
    if quantize:
        report.quantization = _quantize(path, card, quantize, calib_images, verify_images, images, data_root, log)
    return report


__all__ = ["ExportOptions", "ExportReport", "FORMATS", "QUANTIZE_MODES", "Quantization", "Verification", "WRITERS",
           "Writer", "batchnorm_after_conv", "card_metadata", "conv_bn_pairs", "default_export_path", "export_model",
           "export_onnx", "export_safetensors", "export_torchscript", "fold_batchnorm", "in_memory",
           "labelled_test_set", "list_formats", "load_files", "load_torchscript", "logits_of", "parse_batch",
           "quantize_int8", "real_images", "verify_onnx", "writer_of"]
