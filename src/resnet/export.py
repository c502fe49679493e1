"""Shipping a trained model: BatchNorm folding, ONNX / TorchScript / safetensors export, verification against
PyTorch on real images, int8 static quantization, and an ONNX Runtime backend for `resnet predict`.

onnx, onnxruntime and onnxscript (the torch.onnx dynamo exporter's back end) are optional: they are imported inside
the functions that need them, and their absence is a :class:`UserError` saying how to install them.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .modelcard import ModelCard, load_model_and_card, resolve_model_path, save_model
from .predict import Backend, preprocess
from .train.checkpoint import atomic_replace

FORMATS = ("onnx", "torchscript", "safetensors")
QUANTIZE_MODES = ("int8",)
CARD_KEY = "resnet.card"  # ONNX metadata_props key holding the full ModelCard JSON
INPUT_NAME, OUTPUT_NAME = "input", "logits"
TORCHSCRIPT_CARD = "model.json"  # _extra_files entry of a TorchScript export
ONNX_HINT = "pip install 'resnet[onnx]'"


# --------------------------------------------------------------------------------------------- optional imports


def _import_onnx(exporter: bool = False):
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


# ------------------------------------------------------------------------------------------------ BatchNorm folding


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    return fuse_conv_bn_eval(conv, bn)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm2d folded into the Conv2d before it (fewer ops, same outputs)."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        # conv -> bn inside a Sequential: ResNet-D's deep stem, the projection shortcut (conv, bn) or (pool, conv, bn)
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = _fuse(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        # convN then bnN as attributes (the stem and every block compute bnN(convN(x)), torchvision's naming);
        # a Sequential convN (the deep stem) ends with the conv that bnN normalises.
        for k in (1, 2, 3):
            conv, bn = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            if isinstance(conv, nn.Conv2d):
                setattr(module, f"conv{k}", _fuse(conv, bn))
            elif isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
                conv[-1] = _fuse(conv[-1], bn)
            else:
                continue
            setattr(module, f"bn{k}", nn.Identity())
    left = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_batchnorm: {len(left)} BatchNorm layer(s) not preceded by a conv, e.g. {left[0]!r}")
    return model


# ---------------------------------------------------------------------------------------------------- paths, args


def run_directory(source: str | Path) -> Path:
    """The run directory of a run directory, checkpoint (run/checkpoints/x.pt) or weights file."""
    path = Path(source)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def default_export_path(source: str | Path, fmt: str) -> Path:
    """Where `resnet export` writes by default: model.onnx / model.torchscript.pt / model.safetensors inside the
    run directory (named after the checkpoint when a checkpoint other than the run's model was given)."""
    check_format(fmt)
    resolved = resolve_model_path(source)
    stem = "model" if Path(source).is_dir() or resolved.suffix == ".safetensors" else resolved.stem
    suffix = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}[fmt]
    return run_directory(source) / f"{stem}{suffix}"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def parse_batch(batch: str | int) -> str | int:
    """"dynamic" or a positive integer (the fixed batch size baked into the exported graph)."""
    if batch == "dynamic":
        return batch
    try:
        value = int(batch)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {batch!r}")
    return value


def _example(card: ModelCard, batch: str | int) -> torch.Tensor:
    # torch.export specialises a size-1 dimension, so a dynamic batch is traced with 2 examples.
    return torch.randn(2 if batch == "dynamic" else int(batch), *card.input_size)


# ------------------------------------------------------------------------------------------------------ exporters


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


def export_onnx(model: nn.Module, card: ModelCard, path: str | Path, batch: str | int = "dynamic",
                opset: int | None = None) -> Path:
    """Write ``path`` as one self-contained .onnx file: BN folded, batch axis dynamic (or fixed), card in metadata."""
    onnx, _ = _import_onnx(exporter=True)
    batch = parse_batch(batch)
    folded = fold_batchnorm(model).cpu().float()
    example = _example(card, batch)
    dynamic = ({0: torch.export.Dim("batch")},) if batch == "dynamic" else None

    def write(tmp: Path) -> None:
        # The default (dynamo / torch.export) exporter: a clean graph (Conv, Relu, Add, ReduceMean, Gemm) without
        # the TorchScript exporter's shape-computation ops; external_data=False keeps the weights inside the file.
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(folded, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                                  input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=dynamic,
                                  opset_version=opset)
            except Exception as exc:
                if opset is not None:
                    raise UserError(f"torch.onnx could not export at opset {opset} ({type(exc).__name__}); "
                                    f"try the default opset (drop --opset) or --opset 18 or newer") from None
                raise
        proto = onnx.load(str(tmp))
        ops = {node.op_type for node in proto.graph.node}
        if "BatchNormalization" in ops:
            raise ValueError("the exported graph still holds BatchNormalization nodes; fold_batchnorm missed a layer")
        set_metadata(proto, card_metadata(card))
        proto.producer_name = "resnet"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))

    return atomic_replace(Path(path), write)


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace (or add) ``meta`` in an ONNX ModelProto's metadata_props."""
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def export_torchscript(model: nn.Module, card: ModelCard, path: str | Path, batch: str | int = "dynamic") -> Path:
    """Write a traced TorchScript module of the BN-folded model, the card in its extra file ``model.json``."""
    batch = parse_batch(batch)
    folded = fold_batchnorm(model).cpu().float()
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated for torch.export, but still the portable format
        traced = torch.jit.trace(folded, (_example(card, batch),))
        return atomic_replace(Path(path), lambda tmp: torch.jit.save(traced, str(tmp),
                                                              _extra_files={TORCHSCRIPT_CARD: card.to_json()}))


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, ModelCard]:
    """A TorchScript export and its card, as written by :func:`export_torchscript`."""
    import warnings

    extra = {TORCHSCRIPT_CARD: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module.eval(), ModelCard.from_dict(json.loads(extra[TORCHSCRIPT_CARD]))


def export_safetensors(model: nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write ``X.safetensors`` (unfolded weights, loadable by every command) and ``X.json`` (the card) beside it."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"a safetensors export is named *.safetensors, got {path.name!r}; change --out")
    return save_model(model, card, path.parent, stem=path.stem)


# ------------------------------------------------------------------------------------------- ONNX Runtime backend


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU InferenceSession of ``path`` (all graph optimisations on)."""
    _, ort = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; export one with `resnet export RUN --format onnx`")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
        raise UserError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0][:120]}); export it "
                        f"again") from None


def onnx_backend(path: str | Path, threads: int | None = None) -> Backend:
    """A predict Backend running ``path`` (or an InferenceSession) in onnxruntime: normalised (N, C, H, W) float
    batch -> (N, K) logits; a fixed-batch export is fed in chunks, the last one zero-padded."""
    session = path if not isinstance(path, (str, Path)) else onnx_session(path, threads)
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None  # a fixed-batch export: chunk and pad

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
    onnx, _ = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; export one with `resnet export RUN --format onnx`")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UserError(f"{path} is not a readable ONNX model ({type(exc).__name__}); export it again") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY not in meta:
        raise UserError(f"{path} has no {CARD_KEY} metadata; export it with `resnet export RUN --format onnx`")
    return ModelCard.from_dict(json.loads(meta[CARD_KEY]))


def resolve_onnx_path(path: str | Path) -> Path:
    """A run directory -> its exported model.onnx; an .onnx file as given; anything else a UserError saying how."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "model.onnx"
        if candidate.is_file():
            return candidate
        raise UserError(f"{path} holds no exported model.onnx; create it with `resnet export {path} --format onnx`")
    if not path.exists():
        raise UserError(f"{path} does not exist; give an exported .onnx file or a run directory holding model.onnx")
    if path.suffix != ".onnx":
        raise UserError(f"--backend onnxruntime runs an exported .onnx model, not {path.name}; create one with "
                        f"`resnet export {path} --format onnx`")
    return path


def load_predictor(path: str | Path, backend: str = "torch") -> tuple[Backend, ModelCard]:
    """(Backend, card) for `resnet predict`: PyTorch from a run / checkpoint / weights, or onnxruntime from .onnx."""
    from .predict import torch_backend

    if backend == "onnxruntime":
        onnx_path = resolve_onnx_path(path)
        card = card_from_onnx(onnx_path)
        return onnx_backend(onnx_path), card
    if backend != "torch":
        raise UserError(f"unknown backend {backend!r}; choose torch or onnxruntime")
    if Path(path).suffix == ".onnx":
        raise UserError(f"{path} is an ONNX model; run it with --backend onnxruntime")
    model, card = load_model_and_card(path)
    return torch_backend(model), card


# ------------------------------------------------------------------------------------------------- real images


def _normalise(images_u8: torch.Tensor, card: ModelCard) -> torch.Tensor:
    mean = torch.tensor(card.mean).view(1, -1, 1, 1)
    std = torch.tensor(card.std).view(1, -1, 1, 1)
    return (images_u8.float() / 255.0 - mean) / std


def _memory_split(card: ModelCard, train: bool, root: str | None):
    from .data.datasets import MEMORY_SETS, load_memory_dataset

    if card.dataset not in MEMORY_SETS:
        return None
    data = load_memory_dataset(card.dataset, root, train=train)
    if list(data.images.shape[1:]) != list(card.input_size):
        raise UserError(f"{card.dataset} images are {list(data.images.shape[1:])} but the model expects "
                        f"{card.input_size}; pass --images with images like those it was trained on")
    return data


def _folder_for(card: ModelCard, split: str, folder: str | Path | None) -> Path:
    if folder is not None:
        return Path(folder)
    if card.dataset.startswith("imagefolder:"):
        candidate = Path(card.dataset.split(":", 1)[1]).expanduser() / split
        if candidate.is_dir():
            return candidate
    raise UserError(f"checking a model trained on {card.dataset or 'image files'} needs real images: pass --images "
                    f"DIR with a few hundred images like those it was trained on")


def _in_memory(card: ModelCard, folder) -> bool:
    from .data.datasets import MEMORY_SETS

    return folder is None and card.dataset in MEMORY_SETS


def _spread(n_total: int, n: int, seed: int | None) -> list[int]:
    """``n`` indices of range(n_total): a seeded random sample, or evenly spaced when seed is None."""
    n = min(n, n_total)
    if seed is None:
        return torch.linspace(0, n_total - 1, n).long().tolist() if n else []
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()


def _load_files(files: list[Path], card: ModelCard) -> torch.Tensor:
    from .images import BadImageError, open_image

    transform = preprocess(card)  # exactly the predict / eval preprocessing of the card
    mode = "L" if card.input_size[0] == 1 else "RGB"
    out = []
    for f in files:
        try:
            out.append(transform(open_image(f, mode)))
        except BadImageError:
            continue
    if not out:
        raise UserError(f"none of the {len(files)} image files could be read; pass --images with readable images")
    return torch.stack(out)


def real_images(card: ModelCard, n: int, split: str = "test", folder: str | Path | None = None,
                root: str | None = None, seed: int | None = None) -> torch.Tensor:
    """``n`` real images normalised as the card says: from the model's own in-memory data set (``split`` test or
    train), else from ``folder`` (or the image-folder data set's split folder)."""
    if n < 1:
        raise UserError(f"the number of images must be positive, got {n}")
    if folder is None:
        data = _memory_split(card, split == "train", root)
        if data is not None:
            return _normalise(data.images[_spread(len(data), n, seed)], card)
    from .images import find_images

    files = find_images([_folder_for(card, "val" if split == "test" else split, folder)])
    if not files:
        raise UserError(f"no image files found in {folder}; pass --images with a folder of images")
    return _load_files([files[i] for i in _spread(len(files), n, seed)], card)


def labelled_test_set(card: ModelCard, folder: str | Path | None = None, root: str | None = None,
             limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised images, labels) of the test split: the full official split of an in-memory set, else the
    labelled class folders of ``folder`` / the image-folder data set's ``val`` (``limit`` images, evenly spread)."""
    if folder is None:
        data = _memory_split(card, False, root)
        if data is not None:
            index = _spread(len(data), limit, None) if limit else list(range(len(data)))
            return _normalise(data.images[index], card), data.labels[index]
    from .data.files import list_samples

    samples, classes = list_samples(_folder_for(card, "val", folder))
    if list(classes) != list(card.classes):
        raise UserError(f"the test folder's classes {list(classes)[:3]}... differ from the model's "
                        f"{list(card.classes)[:3]}...; pass --images with the model's class folders")
    samples = [samples[i] for i in _spread(len(samples), limit or len(samples), None)]
    images = _load_files([Path(p) for p, _ in samples], card)  # an unreadable file would misalign the labels:
    if len(images) != len(samples):                          # refuse rather than guess
        raise UserError(f"some test images in {folder} could not be read; run `resnet predict` on them to find which")
    return images, torch.tensor([c for _, c in samples])


def _batches(images: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(images), size):
        yield images[start:start + size]


@torch.no_grad()
def logits_of(backend: Backend | nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``images`` in batches, through a predict Backend or an eval-mode module."""
    return torch.cat([backend(b).float() for b in _batches(images, batch_size)])


# ------------------------------------------------------------------------------------------ verify and quantize


@dataclass
class Verification:
    count: int
    max_abs_diff: float
    top1_agreement: float  # fraction in [0, 1]

    def __str__(self) -> str:
        return (f"onnxruntime vs PyTorch on {self.count} real images: max abs logit difference "
                f"{self.max_abs_diff:.2e}, top-1 agreement {100 * self.top1_agreement:.2f}%")


def verify_onnx(onnx_path: str | Path, model: nn.Module, card: ModelCard, images: torch.Tensor) -> Verification:
    """Run ``images`` through onnxruntime and the (unfolded, eval) PyTorch model; report how closely they agree."""
    if list(images.shape[1:]) != list(card.input_size):
        raise UserError(f"verification images are {list(images.shape[1:])} but the model expects {card.input_size}")
    ours = logits_of(onnx_backend(onnx_path), images)
    model = copy.deepcopy(model).cpu().float().eval()
    ref = logits_of(model, images)
    return Verification(len(images), float((ours - ref).abs().max()),
                        float((ours.argmax(1) == ref.argmax(1)).float().mean()))


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


def quantize_int8(onnx_path: str | Path, out_path: str | Path, card: ModelCard, calibration_images: torch.Tensor,
                  test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                  batch_size: int = 32) -> Quantization:
    """Static int8 quantization (QDQ, per-channel weights) calibrated on real training images; reports top-1
    agreement with the fp32 model and, given labels, the test accuracy of both."""
    onnx, _ = _import_onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if out_path.resolve() == onnx_path.resolve():
        raise UserError(f"the int8 model would overwrite {onnx_path}; choose another output name")
    session = onnx_session(onnx_path)
    inp = session.get_inputs()[0]
    size = inp.shape[0] if isinstance(inp.shape[0], int) else batch_size
    batches = [b.numpy() for b in _batches(calibration_images.float(), size) if len(b) == size] or None
    if batches is None:
        raise UserError(f"calibration needs at least {size} images (the export's batch size), got "
                        f"{len(calibration_images)}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

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
    fp32 = logits_of(onnx_backend(session), test_images).argmax(1)
    int8 = logits_of(onnx_backend(out_path), test_images).argmax(1)
    acc = (lambda pred: float(100 * (pred == test_labels).float().mean())) if test_labels is not None else None
    return Quantization(out_path, len(calibration_images), len(test_images), float((fp32 == int8).float().mean()),
                        acc(fp32) if acc else None, acc(int8) if acc else None, onnx_path.stat().st_size,
                        out_path.stat().st_size)


# ------------------------------------------------------------------------------------------- `resnet export`


@dataclass
class ExportReport:
    path: Path
    format: str
    verification: Verification | None = None
    quantization: Quantization | None = None


def export_model(source: str | Path, fmt: str = "onnx", out: str | Path | None = None, batch: str | int = "dynamic",
                 opset: int | None = None, quantize: str | None = None, verify_images: int = 500,
                 calib_images: int = 500, images: str | Path | None = None, data_root: str | None = None,
                 log=lambda msg: None) -> ExportReport:
    """`resnet export`: write ``fmt``; for ONNX verify against PyTorch on real images and optionally quantize."""
    check_format(fmt)
    batch = parse_batch(batch)
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise UserError(f"unknown --quantize {quantize!r}; choose {', '.join(QUANTIZE_MODES)}")
    if quantize and fmt != "onnx":
        raise UserError(f"--quantize {quantize} works on ONNX exports only; use --format onnx")
    if opset is not None and fmt != "onnx":
        raise UserError(f"--opset applies to ONNX exports only; drop it for --format {fmt}")
    model, card = load_model_and_card(source)
    path = Path(out) if out else default_export_path(source, fmt)
    if fmt == "safetensors":
        if path.resolve() == resolve_model_path(source).resolve():
            raise UserError(f"{path} already is the safetensors export; pass --out to write a copy elsewhere")
        return ExportReport(export_safetensors(model, card, path), fmt)
    if fmt == "torchscript":
        return ExportReport(export_torchscript(model, card, path, batch), fmt)
    if path.suffix != ".onnx":
        raise UserError(f"an ONNX export is named *.onnx, got {path.name!r}; change --out")
    log(f"exporting {card.architecture} to {path} ...")
    export_onnx(model, card, path, batch, opset)
    report = ExportReport(path, fmt)
    report.verification = verify_onnx(path, model, card, real_images(card, verify_images, "test", images, data_root))
    if quantize:
        log(f"quantizing to int8 (calibrating on {calib_images} training images) ...")
        calib = real_images(card, calib_images, "train", images, data_root, seed=0)
        try:
            test_x, test_y = labelled_test_set(card, images, data_root, limit=None if _in_memory(card, images) else
                                               5000)
        except UserError:  # --images without class folders: agreement on those images only, no accuracy
            test_x, test_y = real_images(card, verify_images, "test", images, data_root), None
        report.quantization = quantize_int8(path, path.with_suffix(f".{quantize}.onnx"), card, calib, test_x, test_y)
    return report
