"""`resnet export` as one library call, :func:`export_model`: write a trained model in a format of the
:mod:`.writers` table; a runnable format (ONNX, OpenVINO) is verified against PyTorch on real images, optionally
quantized to int8, and its verification stored beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..writes import write_json
from ..weights import load_model_and_card, resolve_weights
from .fold import conv_bn_pairs, fold_batchnorm
from .onnx import batchnorm_after_conv, card_metadata, export_onnx
from .openvino import export_openvino, quantize_openvino
from .options import ExportOptions, parse_batch
from .quantize import QUANTIZE_MODES, Quantization, check_quantize, quantize_onnx
from .verify import (Reference, Verification, in_memory, labelled_test_set, load_files, logits_of, real_images,
                     verify_export)
from .writers import (FORMATS, WRITERS, Writer, default_export_path, export_safetensors, export_torchscript,
                      load_torchscript, quantized_path, writer_of)


@dataclass
class ExportReport:
    path: Path
    format: str
    bytes: int
    verification: Verification | None = None
    quantization: Quantization | None = None


def verification_path(path: Path) -> Path:
    """Where an export's verification is stored: model.onnx -> model.onnx.verification.json."""
    return path.with_name(f"{path.name}.verification.json")


def _store(path: Path, verification: Verification, quantization: Quantization | None = None) -> None:
    record = {"file": path.name, **verification.to_dict()}
    if quantization is not None:
        record["calibration_images"] = quantization.calibration_images
    write_json(verification_path(path), record, "export verification")


def _count(found: int, asked: int) -> str:
    """How many real images a step uses: the number found, saying so where fewer exist than were asked for."""
    return f"{found}" if found >= asked else f"all {found} (of {asked} asked for)"


def export_model(source: str | Path, fmt: str = "onnx", out: str | Path | None = None, batch: str | int = "dynamic",
                 opset: int | None = None, quantize: str | None = None, verify_images: int = 1000,
                 calib_images: int = 500, images: str | Path | None = None, data_root: str | None = None,
                 log=lambda msg: None) -> ExportReport:
    """`resnet export`: write ``fmt``; a runnable format is verified against PyTorch on real test images (stored
    beside it as X.verification.json) and, with ``quantize``, also written as int8 and verified the same way."""
    writer = writer_of(fmt)
    options = ExportOptions(batch, opset)
    if check_quantize(quantize) and writer.quantize is None:
        able = " or ".join(name for name, w in WRITERS.items() if w.quantize)
        raise UserError(f"--quantize {quantize} works on {able} exports only; use --format "
                        f"{able.split(' or ')[0]}")
    if opset is not None and fmt != "onnx":
        raise UserError(f"--opset applies to ONNX exports only; drop it for --format {fmt}")
    if verify_images < 1 or calib_images < 1:
        raise UserError("--verify-images and --calib-images must be positive")
    model, card = load_model_and_card(source)
    path = Path(out) if out else default_export_path(source, fmt)
    if writer.run is not None and path.suffix != writer.suffix:  # backends recognise runnable exports by suffix
        raise UserError(f"{fmt} exports are named *{writer.suffix}, got {path.name!r}; change --out")
    if fmt == "safetensors" and path.resolve() == resolve_weights(source).resolve():
        raise UserError(f"{path} already is the safetensors export; pass --out to write a copy elsewhere")
    log(f"exporting {card.architecture} to {path} ...")
    writer.write(model, card, path, options)
    report = ExportReport(path, fmt, writer.size(path))
    if writer.run is None:
        return report
    reference = Reference.of(model, card, verify_images, images, data_root)
    log(f"verifying against PyTorch on {_count(len(reference.images), verify_images)} real test images ...")
    report.verification = verify_export(writer.run(path), fmt, reference)
    _store(path, report.verification)
    if quantize:
        calibration = real_images(card, calib_images, "train", images, data_root, seed=0)
        log(f"quantizing to {quantize} (calibrating on {_count(len(calibration), calib_images)} real training "
            f"images) ...")
        qpath = writer.quantize(path, quantized_path(path, quantize), card, calibration)
        checked = verify_export(writer.run(qpath), f"{fmt} {quantize}", reference)
        report.quantization = Quantization(qpath, len(calibration), report.bytes, writer.size(qpath), checked)
        _store(qpath, checked, report.quantization)
    return report


__all__ = ["ExportOptions", "ExportReport", "FORMATS", "QUANTIZE_MODES", "Quantization", "Reference",
           "Verification", "WRITERS", "Writer", "batchnorm_after_conv", "card_metadata", "conv_bn_pairs",
           "default_export_path", "export_model", "export_onnx", "export_openvino", "export_safetensors",
           "export_torchscript", "fold_batchnorm", "in_memory", "labelled_test_set", "load_files",
           "load_torchscript", "logits_of", "parse_batch", "quantize_onnx",
           "quantize_openvino", "quantized_path", "real_images", "verification_path", "verify_export",
           "writer_of"]
