"""Prediction backends, one table entry each (PyTorch, ONNX Runtime): what runs a normalised image batch for
`resnet predict`, export verification and the benchmarks; onnx / onnxruntime are imported only when used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .data import eval_transform
from .errors import UserError
from .images import BadImageError, find_images, open_image
from .modelcard import ModelCard, load_model_and_card
from .runs import resolve_export

Backend = Callable[[torch.Tensor], torch.Tensor]  # normalised batch (N, C, H, W) -> logits (N, K)
CARD_KEY = "resnet.card"  # ONNX metadata_props key holding the full ModelCard JSON
ONNX_HINT = "pip install 'resnet[onnx]'"


def preprocess(card: ModelCard):
    """The evaluation transform of ``card``: PIL image -> normalised float tensor (C, H, W)."""
    return eval_transform(card.resize, card.crop, card.mean, card.std)


def image_files(paths: list[str | Path]) -> list[Path]:
    """The image files of ``paths`` (folders searched); none at all is a UserError."""
    files = find_images(paths)
    if not files:
        raise UserError(f"no image files found in {', '.join(map(str, paths))}")
    return files


def image_batches(files: list[Path], card: ModelCard, batch_size: int,
                  results: list[dict]) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``files`` decoded and preprocessed as ``card`` says, in batches of (file indices, tensor); a file that cannot
    be read gets ``results[i]["error"]`` and is left out, the others go on (predict and explain)."""
    transform = preprocess(card)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    pending: list[tuple[int, torch.Tensor]] = []
    for i, path in enumerate(files):
        try:
            pending.append((i, transform(open_image(path, mode))))
        except BadImageError as exc:
            results[i]["error"] = exc.reason
        if len(pending) == batch_size or (i == len(files) - 1 and pending):
            yield [j for j, _ in pending], torch.stack([x for _, x in pending])
            pending = []


def import_onnx(exporter: bool = False):
    """(onnx, onnxruntime), imported lazily; ``exporter`` also needs onnxscript (torch.onnx's dynamo back end)."""
    try:
        import onnx
        import onnxruntime

        if exporter:
            import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ONNX export and inference needs onnx and onnxruntime ({exc.name or 'a module'} is not "
                        f"installed): {ONNX_HINT}") from None
    return onnx, onnxruntime


# ------------------------------------------------------------------------------------------------------- PyTorch


def torch_backend(model: torch.nn.Module, device: torch.device | str = "cpu") -> Backend:
    """A Backend running ``model`` in eval mode on ``device``; logits come back on the CPU."""
    model = model.eval().to(device)

    @torch.no_grad()
    def run(batch: torch.Tensor) -> torch.Tensor:
        return model(batch.to(device)).cpu()

    return run


# -------------------------------------------------------------------------------------------------- ONNX Runtime


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
        raise UserError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:120]}); export it "
                        f"again") from None


def onnxruntime_backend(model, threads: int | None = None) -> Backend:
    """A Backend running an .onnx file (or an InferenceSession) in onnxruntime; a fixed-batch export is fed in
    chunks of its batch size, the last one zero-padded."""
    session = onnx_session(model, threads) if isinstance(model, (str, Path)) else model
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().float().contiguous().numpy()
        if fixed is None:
            return torch.from_numpy(session.run(None, {inp.name: x})[0])
        outs = []
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            pad = fixed - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(session.run(None, {inp.name: chunk})[0][:fixed - pad])
        return torch.from_numpy(np.concatenate(outs))

    return run


def card_from_onnx(path: str | Path) -> ModelCard:
    """The ModelCard stored in an exported model's metadata, so predict preprocesses exactly as in evaluation."""
    onnx, _ = import_onnx()
    path = Path(path)
    _require_file(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export it again") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY not in meta:
        raise UserError(f"{path} has no {CARD_KEY} metadata; export it with `resnet export RUN --format onnx`")
    return ModelCard.from_dict(json.loads(meta[CARD_KEY]))


# ------------------------------------------------------------------------------------------------------ the table


def _load_torch(path: str | Path) -> tuple[Backend, ModelCard]:
    if Path(path).suffix == ".onnx":
        raise UserError(f"{path} is an ONNX model; run it with --backend onnxruntime")
    model, card = load_model_and_card(path)
    return torch_backend(model), card


def _load_onnxruntime(path: str | Path) -> tuple[Backend, ModelCard]:
    onnx_path = resolve_export(path, ".onnx", "onnx")
    card = card_from_onnx(onnx_path)
    return onnxruntime_backend(onnx_path), card


LOADERS: dict[str, Callable[[str | Path], tuple[Backend, ModelCard]]] = {
    "torch": _load_torch,  # a run directory, checkpoint or .safetensors
    "onnxruntime": _load_onnxruntime,  # an exported .onnx, or a run directory holding model.onnx
}
BACKENDS = tuple(LOADERS)


def load_predictor(path: str | Path, backend: str = "torch") -> tuple[Backend, ModelCard]:
    """(Backend, card) of the model at ``path`` for `resnet predict --backend NAME`."""
    if backend not in LOADERS:
        raise UserError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    return LOADERS[backend](path)
