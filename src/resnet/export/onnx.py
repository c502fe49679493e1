"""ONNX export: one self-contained .onnx file of the BN-folded model (dynamo exporter), with the model card in its
metadata so `resnet predict --backend onnxruntime` preprocesses exactly as evaluation did."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from ..backends import CARD_KEY, import_onnx
from ..errors import UserError
from ..writes import atomic_replace
from ..weights import ModelCard
from .fold import fold_batchnorm
from .options import ExportOptions

INPUT_NAME, OUTPUT_NAME = "input", "logits"


def card_metadata(card: ModelCard) -> dict[str, str]:
    """ONNX metadata_props: the whole card under ``resnet.card`` plus one readable key per preprocessing field."""
    meta = {CARD_KEY: card.to_json()}
    for key in ("architecture", "dataset"):
        meta[key] = str(getattr(card, key))
    for key in ("classes", "input_size", "mean", "std", "resize", "crop"):
        meta[key] = json.dumps(getattr(card, key))
    meta["preprocessing"] = (f"RGB/L image -> resize {json.dumps(card.resize)}"
                             + (f" -> centre crop {card.crop}" if card.crop else "")
                             + " -> float in [0, 1] -> (x - mean) / std, NCHW float32")
    meta["input"] = f"{INPUT_NAME}: float32 (N, {', '.join(map(str, card.input_size))}) normalised image batch"
    meta["output"] = f"{OUTPUT_NAME}: float32 (N, {len(card.classes)}) class logits (softmax for probabilities)"
    return meta


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace (or add) ``meta`` in an ONNX ModelProto's metadata_props."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def batchnorm_after_conv(proto) -> list[str]:
    """Names of the BatchNormalization nodes that read the output of a Conv nothing else reads: exactly what
    :func:`fold_batchnorm` folds, so an export must have none (a BN after a shared conv output stays)."""
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    readers = Counter(name for node in proto.graph.node for name in node.input)
    return [node.name for node in proto.graph.node if node.op_type == "BatchNormalization"
            and producer.get(node.input[0]) == "Conv" and readers[node.input[0]] == 1]


def export_onnx(model: nn.Module, card: ModelCard, path: str | Path,
                options: ExportOptions = ExportOptions()) -> Path:
    """Write ``path`` as one self-contained .onnx file: BN folded, batch axis dynamic (or fixed), card in metadata."""
    onnx, _ = import_onnx(exporter=True)
    folded = fold_batchnorm(model).cpu().float()
    example = options.example(card)
    dynamic = ({0: torch.export.Dim("batch")},) if options.batch == "dynamic" else None

    def write(tmp: Path) -> None:
        # The default (dynamo / torch.export) exporter: a clean graph (Conv, Relu, Add, ReduceMean, Gemm) without
        # the TorchScript exporter's shape-computation ops; external_data=False keeps the weights inside the file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(folded, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic,
                                  opset_version=options.opset)
            except Exception as exc:
                if options.opset is not None:
                    raise UserError(f"torch.onnx could not export at opset {options.opset} ({type(exc).__name__}); "
                                    f"try the default opset (drop --opset) or --opset 18 or newer") from None
                raise
        proto = onnx.load(str(tmp))
        unfolded = batchnorm_after_conv(proto)
        if unfolded:
            raise ValueError(f"the exported graph still holds {len(unfolded)} BatchNormalization node(s) that "
                             f"only a Conv feeds, e.g. {unfolded[0]!r}; fold_batchnorm missed them")
        set_metadata(proto, card_metadata(card))
        proto.producer_name = "resnet"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

    return atomic_replace(Path(path), write, "ONNX export")
