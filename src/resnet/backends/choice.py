"""Which backend and precision `resnet predict` runs a model in: the one asked for, or (``auto``) the fastest this
CPU and the files at hand allow, by the order infer_speed.py measured (docs/speed.md, "Inference speed on a CPU")."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..device import cpu_has_native_bf16, cpu_has_vnni
from ..weights import resolve_export
from .onnx_runtime import QUANTIZATION_KEY, onnx_metadata
from .openvino_runtime import QUANTIZATION_RT_INFO, read_openvino

# Exports in a run directory, fastest first, as measured for ResNet-50 and ResNet-20 on a 2-core AVX512-VNNI CPU
# (benchmarks/infer_speed.py). int8 leads only on CPUs with VNNI: without it int8 kernels saturate or emulate the dot
# product, and this project has not measured them faster there.
INT8_FIRST = (("openvino", "model.int8.xml"), ("onnxruntime", "model.int8.onnx"),
              ("openvino", "model.xml"), ("onnxruntime", "model.onnx"))
FLOAT_FIRST = (("openvino", "model.xml"), ("onnxruntime", "model.onnx"))
SUFFIX_BACKEND = {".xml": "openvino", ".onnx": "onnxruntime"}


@dataclass(frozen=True)
class Choice:
    backend: str  # a name of BACKENDS
    path: str  # what that backend loads
    precision: str  # fp32 | bf16 | int8
    why: str
    # what choosing read of the export (its ONNX metadata, or the ov.Model), handed to the loader so nothing is read
    # twice
    loaded: object = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"backend: {self.backend} {self.precision} ({self.path}): {self.why}"


def installed(runtime: str) -> bool:
    """Whether the runtime's module (openvino, onnxruntime: named as the backend) can be imported."""
    return importlib.util.find_spec(runtime) is not None


def runtime_precision(backend: str, path: Path) -> tuple[str, object]:
    """(precision, what was read to tell): int8 for an export `resnet export --quantize int8` wrote (its metadata
    says so); bf16 for OpenVINO on a CPU with native bf16 (its own default there); else fp32."""
    if backend == "onnxruntime":
        meta = onnx_metadata(path)
        return ("int8" if QUANTIZATION_KEY in meta else "fp32"), meta
    model = read_openvino(path)
    if model.has_rt_info(QUANTIZATION_RT_INFO):
        return "int8", model
    return ("bf16" if cpu_has_native_bf16() else "fp32"), model


def export_choice(backend: str, path: Path, why: str) -> Choice:
    """The Choice of running the export at ``path`` in ``backend``, with what telling its precision read of it."""
    precision, loaded = runtime_precision(backend, path)
    return Choice(backend, str(path), precision, why, loaded)


def choose_backend(source: str | Path, backend: str = "auto") -> Choice:
    """The backend, file and precision to run ``source`` (a run directory, an export, weights or a named
    pretrained source) in; ``backend`` other than auto is obeyed (its file resolved from a run directory)."""
    if backend == "torch":
        return Choice("torch", str(source), "fp32", "as asked (--backend torch)")
    if backend in ("onnxruntime", "openvino"):
        suffix = ".onnx" if backend == "onnxruntime" else ".xml"
        path = resolve_export(source, suffix, "onnx" if backend == "onnxruntime" else "openvino")
        return export_choice(backend, path, f"as asked (--backend {backend})")
    path = Path(source)
    if path.is_file() and path.suffix in SUFFIX_BACKEND:
        name = SUFFIX_BACKEND[path.suffix]
        return export_choice(name, path, f"the runtime of {path.suffix} files")
    if not path.is_dir():
        return Choice("torch", str(source), "fp32", "weights run in PyTorch (export them for a faster backend)")
    vnni = cpu_has_vnni()
    for name, file in INT8_FIRST if vnni else FLOAT_FIRST:
        if (path / file).is_file() and installed(name):
            cpu = "this CPU has VNNI" if vnni else "this CPU has no VNNI, so int8 exports are not preferred"
            return export_choice(name, path / file, f"the fastest export in the run directory ({cpu})")
    return Choice("torch", str(path), "fp32", "no export in the run directory; `resnet export RUN --format "
                                              "openvino --quantize int8` runs several times faster")
