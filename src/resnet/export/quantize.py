"""int8 static quantization of an ONNX export (QDQ, per-channel weights), calibrated on real training images and
checked against the fp32 model, so a smaller, faster file ships only with its measured cost in accuracy."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backends import import_onnx, onnx_session, onnxruntime_backend
from ..errors import UserError
from ..io import atomic_replace
from ..modelcard import ModelCard
from .onnx import card_metadata, set_metadata
from .verify import batches, logits_of

QUANTIZE_MODES = ("int8",)


@dataclass
class Quantization:
    path: Path
    calibration_images: int
    test_images: int
    top1_agreement: float  # int8 vs fp32 ONNX, fraction
    fp32_top1: float | None  # test accuracy %, when labels were given
    int8_top1: float | None
    fp32_bytes: int
    int8_bytes: int

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def check_quantize(mode: str | None) -> str | None:
    if mode is not None and mode not in QUANTIZE_MODES:
        raise UserError(f"unknown --quantize {mode!r}; choose {', '.join(QUANTIZE_MODES)}")
    return mode


def quantize_int8(onnx_path: str | Path, out_path: str | Path, card: ModelCard, calibration_images: torch.Tensor,
                  test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                  batch_size: int = 32) -> Quantization:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on real training images; reports top-1
    agreement with the fp32 model and, given labels, the test accuracy of both."""
    onnx, _ = import_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if out_path.resolve() == onnx_path.resolve():
        raise UserError(f"the int8 model would overwrite {onnx_path}; choose another output name")
    session = onnx_session(onnx_path)
    inp = session.get_inputs()[0]
    size = inp.shape[0] if isinstance(inp.shape[0], int) else batch_size
    calibration = [b.numpy() for b in batches(calibration_images.float(), size) if len(b) == size]
    if not calibration:
        raise UserError(f"calibration needs at least {size} images (the export's batch size), got "
                        f"{len(calibration_images)}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {inp.name: batch}

    def write(tmp: Path) -> None:
        logging.disable(logging.WARNING)  # silence its root-logger advice to run quant_pre_process (no gain here)
        try:
            quantize_static(str(onnx_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        proto = onnx.load(str(tmp))
        set_metadata(proto, {**card_metadata(card), "quantization": f"int8 static, QDQ, per-channel weights, "
                                                                    f"min-max calibrated on {len(calibration_images)} "
                                                                    f"training images"})
        onnx.save(proto, str(tmp))

    atomic_replace(out_path, write)
    if test_images is None:
        test_images = calibration_images
    fp32 = logits_of(onnxruntime_backend(session), test_images).argmax(1)
    int8 = logits_of(onnxruntime_backend(out_path), test_images).argmax(1)
    acc = (lambda pred: float(100 * (pred == test_labels).float().mean())) if test_labels is not None else None
    return Quantization(out_path, len(calibration_images), len(test_images), float((fp32 == int8).float().mean()),
                        acc(fp32) if acc else None, acc(int8) if acc else None, onnx_path.stat().st_size,
                        out_path.stat().st_size)
