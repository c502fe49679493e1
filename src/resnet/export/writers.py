"""The export formats: one table entry per format (default file suffix, writer), read by `resnet export --format`
and its validation. TorchScript and safetensors are written here; ONNX, being larger, in :mod:`.onnx`."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..backends import Backend, onnxruntime_backend, openvino_backend
from ..errors import UserError
from ..writes import atomic_replace
from ..runs import run_dir_of
from ..weights import ModelCard, resolve_weights, save_model
from .fold import fold_batchnorm
from .onnx import export_onnx
from .openvino import export_openvino, ir_files, quantize_openvino
from .options import ExportOptions
from .quantize import quantize_onnx

TORCHSCRIPT_CARD = "model.json"  # _extra_files entry of a TorchScript export


def export_torchscript(model: nn.Module, card: ModelCard, path: str | Path,
                       options: ExportOptions = ExportOptions()) -> Path:
    """Write a traced TorchScript module of the BN-folded model, the card in its extra file ``model.json``."""
    folded = fold_batchnorm(model).cpu().float()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated for torch.export, but still the portable format
        traced = torch.jit.trace(folded, (options.example(card),))
        return atomic_replace(Path(path), lambda tmp: torch.jit.save(traced, str(tmp),
                                                                     _extra_files={TORCHSCRIPT_CARD: card.to_json()}),
                              "TorchScript export")


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, ModelCard]:
    """A TorchScript export and its card, as written by :func:`export_torchscript`."""
    extra = {TORCHSCRIPT_CARD: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), ModelCard.from_dict(json.loads(extra[TORCHSCRIPT_CARD]))


def export_safetensors(model: nn.Module, card: ModelCard, path: str | Path,
                       options: ExportOptions = ExportOptions()) -> Path:
    """Write ``X.safetensors`` (unfolded weights, loadable by every command) and ``X.json`` (the card) beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"a safetensors export is named *.safetensors, got {path.name!r}; change --out")
    return save_model(model, card, path.parent, stem=path.stem)


@dataclass(frozen=True)
class Writer:
    """One export format: how its default file is named, the function that writes it, and for runnable formats
    the backend that runs the file (to verify it against PyTorch) and the int8 quantizer."""

    suffix: str  # the default export is model<suffix> in the run directory
    write: Callable[[nn.Module, ModelCard, Path, ExportOptions], Path]
    run: Callable[[Path], Backend] | None = None  # fp32 runner of a written file, for verification
    quantize: Callable[[Path, Path, ModelCard, torch.Tensor], Path] | None = None  # (src, dst, card, calibration)
    files: Callable[[Path], list[Path]] = lambda path: [path]  # every file an export consists of

    def size(self, path: Path) -> int:
        return sum(p.stat().st_size for p in self.files(path))


WRITERS: dict[str, Writer] = {
    "onnx": Writer(".onnx", export_onnx, onnxruntime_backend, quantize_onnx),
    "openvino": Writer(".xml", export_openvino, lambda path: openvino_backend(path, "fp32"), quantize_openvino,
                       ir_files),
    "torchscript": Writer(".torchscript.pt", export_torchscript),
    "safetensors": Writer(".safetensors", export_safetensors),
}
FORMATS = tuple(WRITERS)


def quantized_path(path: Path, mode: str = "int8") -> Path:
    """Where the quantized twin of an export goes: model.onnx -> model.int8.onnx, model.xml -> model.int8.xml."""
    return path.with_suffix(f".{mode}{path.suffix}")


def writer_of(fmt: str) -> Writer:
    """The Writer of ``fmt``; an unknown name is a UserError listing the valid ones."""
    if fmt not in WRITERS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return WRITERS[fmt]


def default_export_path(source: str | Path, fmt: str) -> Path:
    """Where `resnet export` writes by default: model<suffix> in the run directory (named after the checkpoint
    when a checkpoint other than the run's model was given)."""
    suffix = writer_of(fmt).suffix
    resolved = resolve_weights(source)
    stem = "model" if Path(source).is_dir() or resolved.suffix == ".safetensors" else resolved.stem
    return run_dir_of(source) / f"{stem}{suffix}"
