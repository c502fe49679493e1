"""The ONNX Runtime backend: an exported .onnx file (BN folded, card in its metadata) on the CPU execution
provider; onnx / onnxruntime are imported only when used."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..io import first_line
from ..weights import ModelCard
from .base import Backend, fixed_batch_runner, import_runtime

CARD_KEY = "resnet.card"  # ONNX metadata_props key holding the full ModelCard JSON
QUANTIZATION_KEY = "quantization"  # metadata_props key saying how an int8 export was quantized


def import_onnx(exporter: bool = False):
    """(onnx, onnxruntime), imported lazily; ``exporter`` also needs onnxscript (torch.onnx's dynamo back end)."""
    names = ("onnx", "onnxruntime", "onnxscript") if exporter else ("onnx", "onnxruntime")
    return import_runtime(names, "ONNX export and inference", "onnx")[:2]


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path} does not exist; export one with `resnet export RUN --format onnx`")


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU InferenceSession of ``path`` (all graph optimisations on)."""
    _, ort = import_onnx()
    path = Path(path)
    _require_file(path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise UserError(f"{path} is not a readable ONNX model ({first_line(exc, 120)}); export it "
                        f"again") from None


def onnxruntime_backend(model, threads: int | None = None) -> Backend:
    """A Backend running an .onnx file (or an InferenceSession) in onnxruntime; a fixed-batch export is fed in
    chunks of its batch size."""
    session = onnx_session(model, threads) if isinstance(model, (str, Path)) else model
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    return fixed_batch_runner(lambda x: session.run(None, {inp.name: x})[0], fixed)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an .onnx file, read without its weights."""
    onnx, _ = import_onnx()
    path = Path(path)
    _require_file(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export it again") from None
    return {p.key: p.value for p in proto.metadata_props}


def card_from_onnx(path: str | Path, meta: dict[str, str] | None = None) -> ModelCard:
    """The ModelCard stored in an exported model's metadata (``meta`` when already read), so predict preprocesses
    exactly as in evaluation."""
    meta = onnx_metadata(path) if meta is None else meta
    if CARD_KEY not in meta:
        raise UserError(f"{path} has no {CARD_KEY} metadata; export it with `resnet export RUN --format onnx`")
    return ModelCard.from_dict(json.loads(meta[CARD_KEY]))
