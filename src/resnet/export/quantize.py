"""int8 quantization of exports, calibrated on real training images: ONNX Runtime static quantization here (the
OpenVINO/NNCF one lives in :mod:`.openvino`), and the record of what a quantized file costs in accuracy.

Why uint8 activations: ONNX Runtime's CPU kernels fuse a QDQ graph into integer ops (QLinearConv, QLinearAdd,
NHWC max-pool) only for uint8 activations x int8 weights, the pair the x86 dot-product instructions take. With int8
activations (its default) the 16 residual additions of a ResNet-50 and the 20 convolutions feeding them stay in
fp32 between Dequantize/Quantize pairs, with 34 layout transposes around them: measured no faster than fp32.

Why moving-average ranges: plain min-max lets the one most extreme calibration image set each activation's range, and
on a briefly trained ResNet-50 (Fashion-MNIST at 112 px) that left most values in a few int8 steps: 61% top-1
agreement with fp32. The mean over batches of 8 images of each batch's min and max (PyTorch's
MovingAverageMinMaxObserver, ONNX Runtime's CalibMovingAverage) gave 98.8% there and 99.44% (from 99.24%) on a
ResNet-20; percentile ranges (99.9 / 99.99) gave 96.6% / 83.6% and keep every activation in memory.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..backends.onnx_runtime import QUANTIZATION_KEY, import_onnx, onnx_session
from ..device import cpu_has_vnni
from ..errors import UserError
from ..writes import atomic_replace
from ..weights import ModelCard
from .onnx import card_metadata, set_metadata
from .verify import Verification, batches

QUANTIZE_MODES = ("int8",)


@dataclass
class Quantization:
    path: Path
    calibration_images: int
    fp32_bytes: int  # all files of the fp32 export
    int8_bytes: int
    verification: Verification  # the int8 file against the fp32 PyTorch model, on real test images

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path), "verification": self.verification.to_dict()}


def check_quantize(mode: str | None) -> str | None:
    if mode is not None and mode not in QUANTIZE_MODES:
        raise UserError(f"unknown --quantize {mode!r}; choose {', '.join(QUANTIZE_MODES)}")
    return mode


def quantize_onnx(src: str | Path, dst: str | Path, card: ModelCard, calibration: torch.Tensor,
                  batch_size: int = 8) -> Path:
    """Static int8 quantization of the .onnx at ``src``: QDQ format, uint8 activations, per-channel int8 weights,
    activation ranges the mean of per-batch min and max over ``calibration`` (real normalised training images) in
    batches of ``batch_size`` (a fixed-batch export's own size). On CPUs without VNNI the weights use 7 bits
    (``reduce_range``), as ONNX Runtime advises, so the u8 x s8 products cannot saturate AVX2's 16-bit sums."""
    onnx, _ = import_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise UserError(f"the int8 model would overwrite {src}; choose another output name")
    inp = onnx_session(src).get_inputs()[0]
    size = inp.shape[0] if isinstance(inp.shape[0], int) else batch_size
    calibration_batches = [b.numpy() for b in batches(calibration.float(), size) if len(b) == size]
    if not calibration_batches:
        raise UserError(f"calibration needs at least {size} images (the export's batch size), got "
                        f"{len(calibration)}")
    reduce_range = not cpu_has_vnni()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration_batches)

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {inp.name: batch}

    def write(tmp: Path) -> None:
        logging.disable(logging.WARNING)  # silence its root-logger advice to run quant_pre_process (no gain here)
        try:
            quantize_static(str(src), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=reduce_range, extra_options={"CalibMovingAverage": True})
        finally:
            logging.disable(logging.NOTSET)
        proto = onnx.load(str(tmp))
        weights = "7-bit (reduce_range: no VNNI on the exporting CPU)" if reduce_range else "8-bit"
        how = (f"int8 static, QDQ, uint8 activations, per-channel {weights} int8 weights, moving-average min-max "
               f"ranges over batches of {size} of {len(calibration)} training images")
        set_metadata(proto, {**card_metadata(card), QUANTIZATION_KEY: how})
        onnx.save(proto, str(tmp))

    return atomic_replace(dst, write, "int8 ONNX export")
