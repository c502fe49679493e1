"""Prediction backends, one table entry each (PyTorch, ONNX Runtime, OpenVINO): what runs a normalised image batch
for `resnet predict`, export verification and the benchmarks. Runtimes are imported only when used; ``auto``
picks the fastest this CPU and the files at hand allow (:mod:`.choice`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..weights import ModelCard, load_model_and_card
from .base import Backend, fixed_batch_runner, image_batches, image_files, preprocess, torch_backend
from .choice import SUFFIX_BACKEND, Choice, choose_backend
from .onnx_runtime import (CARD_KEY, QUANTIZATION_KEY, card_from_onnx, import_onnx, onnx_metadata, onnx_session,
                           onnxruntime_backend)
from .openvino_runtime import (CARD_RT_INFO, QUANTIZATION_RT_INFO, card_from_openvino, import_openvino,
                               openvino_backend, openvino_precision, read_openvino)


def _load_torch(path: str | Path, loaded=None) -> tuple[Backend, ModelCard]:
    if Path(path).suffix in SUFFIX_BACKEND:
        raise UserError(f"{path} is an exported model; run it with --backend {SUFFIX_BACKEND[Path(path).suffix]} "
                        f"(or auto)")
    model, card = load_model_and_card(path)
    return torch_backend(model), card


def _load_onnxruntime(path: str | Path, loaded=None) -> tuple[Backend, ModelCard]:
    return onnxruntime_backend(path), card_from_onnx(path, loaded)


def _load_openvino(path: str | Path, loaded=None) -> tuple[Backend, ModelCard]:
    model = read_openvino(path) if loaded is None else loaded
    # auto: bf16 where native, else fp32, for the float layers (all of a float IR, the rest of an int8 one): the
    # precision choose_backend reported
    return openvino_backend(model, "auto"), card_from_openvino(model)


# (path, what choosing already read of it or None) -> (Backend, card)
LOADERS: dict[str, Callable[..., tuple[Backend, ModelCard]]] = {
    "torch": _load_torch,  # a run directory, checkpoint, .safetensors or named pretrained weights
    "onnxruntime": _load_onnxruntime,  # an exported .onnx, or a run directory holding model.onnx
    "openvino": _load_openvino,  # an exported OpenVINO .xml, or a run directory holding model.xml
}
BACKENDS = ("auto", *LOADERS)


def load_predictor(path: str | Path, backend: str = "auto") -> tuple[Backend, ModelCard, Choice]:
    """(Backend, card, the choice made) of the model at ``path`` for `resnet predict --backend NAME`."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    choice = choose_backend(path, backend)
    run, card = LOADERS[choice.backend](choice.path, choice.loaded)
    return run, card, choice


__all__ = ["BACKENDS", "Backend", "CARD_KEY", "CARD_RT_INFO", "Choice", "LOADERS", "QUANTIZATION_KEY",
           "QUANTIZATION_RT_INFO", "card_from_onnx", "card_from_openvino", "choose_backend", "fixed_batch_runner",
           "image_batches", "image_files", "import_onnx", "import_openvino", "load_predictor", "onnx_metadata",
           "onnx_session", "onnxruntime_backend", "openvino_backend", "openvino_precision", "preprocess",
           "read_openvino", "torch_backend"]
