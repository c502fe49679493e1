"""CPU inference speed: torchvision's eager fp32 ResNet-50 (the baseline, same weights, same run) against our model
eager fp32, channels_last + bf16 autocast, BN folded + channels_last fp32 under inference_mode, and ONNX Runtime
fp32 and int8 (static QDQ quantization), at batch 1 and 32; the same for a Fashion-MNIST ResNet-20.

    .venv/bin/python benchmarks/infer_speed.py --run runs/fashion-mnist-resnet20   # full measurement
    .venv/bin/python benchmarks/infer_speed.py --quick                               # smoke run, ~2 minutes

Options: --run RUN (a trained Fashion-MNIST run; default: a randomly initialised resnet20, in_chans=1, 28x28),
--threads N (torch and onnxruntime intra-op threads; default: all cores), --calib-dir DIR (real images for
ResNet-50's int8 calibration and agreement; default: 64 random-but-fixed images), --models, --batches, --quick.

Prints a Markdown table: img/s, median latency per batch, speed-up over the baseline at the same batch size
(torchvision eager fp32 for ResNet-50; our eager fp32 for ResNet-20, which torchvision does not have), and top-1
agreement with our fp32 PyTorch model on real images (Fashion-MNIST test images for ResNet-20; ResNet-50 has random
weights, so its agreement is on --calib-dir images, or on the random inputs when none are given).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from resnet.backends import onnxruntime_backend
from resnet.data import dataset_stats
from resnet.data.datasets import FASHION_CLASSES
from resnet.data.registry import IMAGENET_MEAN, IMAGENET_STD
from resnet.export import export_onnx, fold_batchnorm, load_files, logits_of, quantize_int8, real_images
from resnet.images import find_images
from resnet.modelcard import ModelCard, load_model_and_card
from resnet.models import create_model
from resnet.table import format_table


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def timed(fn, x: torch.Tensor, warmup: int, iters: int, budget_s: float) -> float:
    """Median seconds per call of ``fn(x)`` over up to ``iters`` calls (fewer when ``budget_s`` runs out)."""
    for _ in range(warmup):
        fn(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters and (not times or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def reestimate_bn(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Set a randomly initialised model's BN statistics from ``images`` (realistic activation scales for int8)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for batch in images.split(16):
        model(batch)
    return model.eval()


def torch_backends(model: nn.Module, tv: nn.Module | None):
    """name -> callable(batch) -> logits, the PyTorch variants in table order."""
    eager = copy.deepcopy(model).eval()
    cl = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)

    def no_grad(m):
        return torch.no_grad()(lambda x: m(x))

    def bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return cl(x.contiguous(memory_format=torch.channels_last)).float()

    def folded_cl(x):
        with torch.inference_mode():
            return folded(x.contiguous(memory_format=torch.channels_last))

    out = {}
    if tv is not None:
        out["torchvision eager fp32 (baseline)"] = no_grad(tv.eval())
    out["ours eager fp32"] = no_grad(eager)
    out["ours channels_last + bf16 autocast"] = bf16
    out["ours BN folded + channels_last fp32, inference_mode"] = folded_cl
    return out


def bench_model(label: str, model: nn.Module, card: ModelCard, tv: nn.Module | None, agree_x: torch.Tensor,
                agree_note: str, calib: torch.Tensor, args, workdir: Path) -> list[list]:
    backends = torch_backends(model, tv)
    onnx_path = export_onnx(model, card, workdir / f"{label}.onnx")
    int8_path = workdir / f"{label}.int8.onnx"
    quantize_int8(onnx_path, int8_path, card, calib, test_images=calib[:8])
    backends["onnxruntime fp32"] = onnxruntime_backend(onnx_path, args.threads)
    backends["onnxruntime int8 (static QDQ)"] = onnxruntime_backend(int8_path, args.threads)

    reference = logits_of(backends["ours eager fp32"], agree_x, 32).argmax(1)
    agreement = {name: float((logits_of(fn, agree_x, 32).argmax(1) == reference).float().mean())
                 for name, fn in backends.items()}
    baseline_name = next(iter(backends))
    rows = []
    g = torch.Generator().manual_seed(1)
    for i, batch in enumerate(args.batches):
        x = torch.randn(batch, *card.input_size, generator=g)
        warmup = args.warmup if i == 0 or not args.quick else 0  # --quick: warm up at the first batch size only
        base = None
        for name, fn in backends.items():
            sec = timed(fn, x, warmup, args.iters, args.budget)
            base = base or sec
            rows.append([label, name, batch, f"{batch / sec:,.1f}", f"{1000 * sec:.2f}", f"{base / sec:.2f}x",
                         f"{100 * agreement[name]:.1f}%"])
            print(f"  {label} batch {batch} {name}: {1000 * sec:.2f} ms", file=sys.stderr, flush=True)
    print(f"  {label}: speed-up vs {baseline_name}; agreement {agree_note}", file=sys.stderr)
    return rows


def resnet50_setup(args):
    card = ModelCard("resnet50", {}, [str(i) for i in range(1000)], [3, 224, 224], list(IMAGENET_MEAN),
                     list(IMAGENET_STD), 256, 224, "imagenet")
    n_calib, n_agree = (16, 8) if args.quick else (64, 64)
    if args.calib_dir:
        files = find_images([args.calib_dir])
        if not files:
            sys.exit(f"infer_speed: no images in {args.calib_dir}")
        calib = load_files(files[:n_calib], card)
        note = f"on {min(n_agree, len(calib))} real images from {args.calib_dir}"
    else:
        g = torch.Generator().manual_seed(0)  # random but fixed, in the normalised range of real images
        calib = torch.randn(n_calib, 3, 224, 224, generator=g).clamp(-2.2, 2.6)
        note = f"on {n_agree} random-but-fixed inputs (random weights; pass --calib-dir for real images)"
    torch.manual_seed(0)
    model = reestimate_bn(create_model("resnet50"), calib[:16])
    tv = torchvision.models.resnet50()
    tv.load_state_dict(model.state_dict())  # the same weights: module names equal torchvision's
    return model, card, tv.eval(), calib[:n_agree], note, calib


def resnet20_setup(args):
    if args.run:
        model, card = load_model_and_card(args.run)
        kind = f"trained ({args.run})"
    else:
        mean, std = dataset_stats("fashion-mnist")
        card = ModelCard("resnet20", {"in_chans": 1, "num_classes": 10}, list(FASHION_CLASSES), [1, 28, 28],
                         list(mean), list(std), [28, 28], None, "fashion-mnist")
        torch.manual_seed(0)
        model = reestimate_bn(card.build(), real_images(card, 256, "train", seed=1))
        kind = "random init, BN statistics from 256 training images"
    agree_x = real_images(card, 500 if args.quick else 2000)
    calib = real_images(card, 256 if args.quick else 500, "train", seed=0)
    return model.eval(), card, None, agree_x, f"on {len(agree_x)} Fashion-MNIST test images, {kind}", calib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained Fashion-MNIST run directory (default: random resnet20)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    p.add_argument("--calib-dir", help="real images for ResNet-50's int8 calibration and agreement")
    p.add_argument("--models", nargs="+", default=["resnet50", "resnet20"], choices=["resnet50", "resnet20"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--quick", action="store_true", help="few iterations: a smoke run, not a measurement")
    args = p.parse_args()
    args.warmup, args.iters, args.budget = (1, 3, 2.0) if args.quick else (3, 30, 20.0)
    torch.set_num_threads(args.threads)

    import onnxruntime

    print(f"CPU: {cpu_name()}, {args.threads} threads; native bf16: {'yes' if native_bf16() else 'no (emulated)'}; "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnxruntime {onnxruntime.__version__}"
          f"{'; --quick (few iterations, not a measurement)' if args.quick else ''}\n")
    rows, notes = [], []
    setups = {"resnet50": ("ResNet-50 224px", resnet50_setup), "resnet20": ("ResNet-20 FMNIST 28px", resnet20_setup)}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            label, setup = setups[key]
            print(f"{label}: setting up (export, int8 calibration) ...", file=sys.stderr, flush=True)
            model, card, tv, agree_x, note, calib = setup(args)
            rows += bench_model(label, model, card, tv, agree_x, note, calib, args, Path(tmp))
            baseline = "torchvision eager fp32" if tv is not None else "our eager fp32 (torchvision has no ResNet-20)"
            notes.append(f"- {label}: speed-up vs {baseline} at the same batch; top-1 agreement with our fp32 "
                         f"PyTorch model {note}.")
    print(format_table(["model", "backend", "batch", "img/s", "latency ms (median)", "speed-up",
                        "top-1 agreement"], rows, align="llrrrrr"))
    print("\n" + "\n".join(notes))
    print(f"- latency is the median wall time of one call on a batch; img/s = batch / latency. "
          f"{args.iters} timed calls after {args.warmup} warm-up (at most {args.budget:.0f} s each).")


if __name__ == "__main__":
    main()
