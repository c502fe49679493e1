"""The OpenVINO backend: an OpenVINO IR (model.xml + model.bin, card in its rt_info) compiled for the CPU in fp32 or
bf16 (int8 where the file was quantized); openvino is imported only when used."""

from __future__ import annotations

import json
from pathlib import Path

from ..device import cpu_has_native_bf16
from ..errors import UserError
from ..io import clip
from ..weights import ModelCard
from .base import Backend, fixed_batch_runner, import_runtime

CARD_RT_INFO = ["resnet", "card"]  # rt_info path of the full ModelCard JSON in an exported IR
QUANTIZATION_RT_INFO = ["resnet", "quantization"]  # how an int8 IR was quantized; absent in a float one
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}  # our names -> OpenVINO's INFERENCE_PRECISION_HINT values


def import_openvino(quantizer: bool = False):
    """The openvino module, imported lazily; ``quantizer`` also needs nncf (post-training int8 quantization)."""
    names = ("openvino", "nncf") if quantizer else ("openvino",)
    return import_runtime(names, "OpenVINO export and inference", "openvino")[0]


def openvino_precision(precision: str = "auto") -> str:
    """``auto`` -> bf16 on CPUs that run it natively (OpenVINO's own default there), else fp32."""
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in PRECISION_HINTS:
        raise UserError(f"OpenVINO runs in {' or '.join(PRECISION_HINTS)}, not {precision!r}")
    return precision


def read_openvino(path: str | Path):
    """The ov.Model of an IR file (``.xml``, its ``.bin`` beside it)."""
    ov = import_openvino()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; export one with `resnet export RUN --format openvino`")
    if path.suffix != ".xml":
        raise UserError(f"an OpenVINO model is an .xml file (with its .bin beside it), not {path.name}; export one "
                        f"with `resnet export RUN --format openvino`")
    try:
        return ov.Core().read_model(str(path))
    except RuntimeError as exc:
        reason = next((line for line in str(exc).splitlines() if "Unable" in line or "Error" in line), "unreadable")
        raise UserError(f"{path} is not a readable OpenVINO model ({clip(reason.strip(), 120)}); export it "
                        f"again") from None


def card_from_openvino(path_or_model) -> ModelCard:
    """The ModelCard an exported IR carries in its rt_info, so predict preprocesses exactly as in evaluation."""
    model = read_openvino(path_or_model) if isinstance(path_or_model, (str, Path)) else path_or_model
    if not model.has_rt_info(CARD_RT_INFO):
        raise UserError(f"{path_or_model} has no resnet model card; export it with `resnet export RUN --format "
                        f"openvino`")
    return ModelCard.from_dict(json.loads(model.get_rt_info(CARD_RT_INFO).astype(str)))


def openvino_backend(model, precision: str = "fp32", threads: int | None = None) -> Backend:
    """A Backend running an IR file (or an ov.Model) on the CPU plugin in ``precision`` (the layers an int8 model
    leaves in floating point run in it); a fixed-batch IR is fed in chunks of its batch size."""
    ov = import_openvino()
    model = read_openvino(model) if isinstance(model, (str, Path)) else model
    config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[openvino_precision(precision)]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    batch_dim = model.input(0).get_partial_shape()[0]
    fixed = batch_dim.get_length() if batch_dim.is_static else None
    return fixed_batch_runner(lambda x: request.infer({0: x})[output], fixed)
