"""Prediction backends, one table entry each (PyTorch, ONNX Runtime, OpenVINO): what runs a normalised image batch
for `resnet predict`, export verification and the benchmarks. Runtimes are imported only when used; ``auto``
picks the fastest this CPU and the files at hand allow (:mod:`.choice`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..modelcard import ModelCard, load_model_and_card
from .base import Backend, fixed_batch_runner, image_batches, image_files, preprocess, torch_backend
from .choice import Choice, choose_backend
from .onnx_runtime import (CARD_KEY, card_from_onnx, import_onnx, onnx_metadata, onnx_session,
                           onnxruntime_backend)
from .openvino_runtime import (CARD_RT_INFO, card_from_openvino, import_openvino,
                               openvino_backend, openvino_precision, read_openvino)


def _load_torch(path: str | Path, precision: str) -> tuple[Backend, ModelCard]:
    if Path(path).suffix in (".onnx", ".xml"):
        raise UserError(f"{path} is an exported model; run it with --backend "
                        f"{'onnxruntime' if Path(path).suffix == '.onnx' else 'openvino'} (or auto)")
    model, card = load_model_and_card(path)
    return torch_backend(model), card


def _load_onnxruntime(path: str | Path, precision: str) -> tuple[Backend, ModelCard]:
    return onnxruntime_backend(path), card_from_onnx(path)


def _load_openvino(path: str | Path, precision: str) -> tuple[Backend, ModelCard]:
    model = read_openvino(path)
    return openvino_backend(model, "auto" if precision == "int8" else precision), card_from_openvino(model)


LOADERS: dict[str, Callable[[str | Path, str], tuple[Backend, ModelCard]]] = {
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
    run, card = LOADERS[choice.backend](choice.path, choice.precision)
    return run, card, choice


__all__ = ["BACKENDS", "Backend", "CARD_KEY", "CARD_RT_INFO", "Choice", "LOADERS",
           "card_from_onnx", "card_from_openvino", "choose_backend", "fixed_batch_runner", "image_batches",
           "image_files", "import_onnx", "import_openvino", "load_predictor", "onnx_metadata", "onnx_session",
           "onnxruntime_backend", "openvino_backend", "openvino_precision", "preprocess", "read_openvino",
           "torch_backend"]
