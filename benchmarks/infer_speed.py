"""CPU inference speed and what each fast path costs in accuracy: torchvision's eager fp32 ResNet-50 (the baseline,
same weights, same run) against our model in PyTorch (eager, bf16 autocast, BN folded + channels_last), ONNX Runtime
(fp32; int8 with uint8 activations, the shipped quantizer; int8 with int8 activations, its default, for contrast)
and OpenVINO (fp32, bf16, NNCF int8), at batch 1 and 32; then the same for a Fashion-MNIST ResNet-20.

    .venv/bin/python benchmarks/infer_speed.py --run50 runs/resnet50-fashion-112 --run runs/demo-...   # measurement
    .venv/bin/python benchmarks/infer_speed.py --quick                                              # smoke run

--run50 RUN: a trained ResNet-50 (benchmarks/resnet50_fashion.py trains one on Fashion-MNIST at 112 px in ~11
minutes). Speed is always measured at 224 px (the goals' setting) with its weights, int8 calibrated on its real
training images resized to 224; agreement and accuracy are measured at the resolution it was trained at, on 2,000
real test images, through exports of the same model made the same way at that resolution. Without --run50 the
ResNet-50 has random weights and its agreement is on random inputs (which says nothing about accuracy).
--run RUN: a trained Fashion-MNIST ResNet-20 (default: random init with BN statistics from training images).

Prints a Markdown table: img/s, median latency per batch, speed-up over the baseline at the same batch size
(torchvision eager fp32 for ResNet-50; our eager fp32 for ResNet-20, which torchvision does not have), top-1
agreement with our fp32 PyTorch model and test accuracy; then the backend `resnet predict` picks on this CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from resnet.backends import Backend, onnxruntime_backend, openvino_backend
from resnet.backends.choice import FLOAT_FIRST, INT8_FIRST
from resnet.data import dataset_stats
from resnet.data.datasets import FASHION_CLASSES
from resnet.data.registry import IMAGENET_MEAN, IMAGENET_STD
from resnet.device import cpu_has_native_bf16, cpu_has_vnni, cpu_summary
from resnet.export import (Reference, export_onnx, export_openvino, fold_batchnorm, logits_of, quantize_onnx,
                           quantize_openvino, real_images, verify_export)
from resnet.models import create_model
from resnet.table import format_table
from resnet.weights import ModelCard, load_model_and_card


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


def torch_backends(model: nn.Module, tv: nn.Module | None) -> dict[str, Backend]:
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
    out["ours BN folded + channels_last fp32"] = folded_cl
    return out


def signed_int8_onnx(src: Path, dst: Path, calib: torch.Tensor) -> Path:
    """ONNX Runtime's default static quantization (int8 activations), the contrast for the shipped uint8 one."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([b.numpy() for b in calib.split(8)])

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"input": b}

    logging.disable(logging.WARNING)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    logging.disable(logging.NOTSET)
    return dst


def all_backends(model: nn.Module, card: ModelCard, tv: nn.Module | None, calib: torch.Tensor, workdir: Path,
                 threads: int, tag: str) -> dict[str, Backend]:
    """Every row's backend for ``model`` at the card's input size; exports and int8 files go to ``workdir``."""
    backends = torch_backends(model, tv)
    onnx_path = export_onnx(model, card, workdir / f"{tag}.onnx")
    backends["onnxruntime fp32"] = onnxruntime_backend(onnx_path, threads)
    backends["onnxruntime int8 (u8 activations; shipped)"] = onnxruntime_backend(
        quantize_onnx(onnx_path, workdir / f"{tag}.int8.onnx", card, calib), threads)
    backends["onnxruntime int8 (s8 activations; its default)"] = onnxruntime_backend(
        signed_int8_onnx(onnx_path, workdir / f"{tag}.s8.onnx", calib), threads)
    ir = export_openvino(model, card, workdir / f"{tag}.xml")
    backends["openvino fp32"] = openvino_backend(ir, "fp32", threads)
    if cpu_has_native_bf16():
        backends["openvino bf16"] = openvino_backend(ir, "bf16", threads)
    int8_ir = quantize_openvino(ir, workdir / f"{tag}.int8.xml", card, calib)
    backends["openvino int8 (NNCF)"] = openvino_backend(int8_ir, "auto", threads)
    return backends


def checked(backends: dict[str, Backend], reference: Reference) -> dict[str, tuple[float, float | None]]:
    """name -> (top-1 agreement with our fp32 PyTorch model, test accuracy %) on the reference images."""
    out = {}
    for name, fn in backends.items():
        v = verify_export(fn, name, reference, batch_size=32)
        out[name] = (v.top1_agreement, v.export_top1)
        print(f"  checked {name}: agreement {100 * v.top1_agreement:.2f}%", file=sys.stderr, flush=True)
    return out


def timing_rows(label: str, backends: dict[str, Backend], card: ModelCard, quality: dict, args) -> list[list]:
    rows = []
    g = torch.Generator().manual_seed(1)
    for i, batch in enumerate(args.batches):
        x = torch.randn(batch, *card.input_size, generator=g)
        warmup = args.warmup if i == 0 or not args.quick else 0  # --quick: warm up at the first batch size only
        base = None
        for name, fn in backends.items():
            sec = timed(fn, x, warmup, args.iters, args.budget)
            base = base or sec
            agree, acc = quality.get(name, (None, None))
            rows.append([label, name, batch, f"{batch / sec:,.1f}", f"{1000 * sec:.2f}", f"{base / sec:.2f}x",
                         "" if agree is None else f"{100 * agree:.2f}%", "" if acc is None else f"{acc:.2f}%"])
            print(f"  {label} batch {batch} {name}: {1000 * sec:.2f} ms", file=sys.stderr, flush=True)
    return rows


def at_224(card: ModelCard) -> ModelCard:
    return dataclasses.replace(card, input_size=[card.input_size[0], 224, 224], resize=256, crop=224)


def resnet50(args, workdir: Path) -> tuple[list[list], str]:
    if args.run50:
        model, card = load_model_and_card(args.run50)
        model = model.float().eval()
        timing_card = at_224(card)
        # the 224-px files are only timed (ranges do not change the work), so they calibrate on fewer images
        calib = real_images(timing_card, 64, "train", seed=0)
        tv = torchvision.models.resnet50(num_classes=len(card.classes))
        tv.load_state_dict(model.state_dict())  # the same weights: module names equal torchvision's
        print(f"ResNet-50: agreement exports at {card.input_size[1]} px ...", file=sys.stderr, flush=True)
        own_calib = real_images(card, args.calib, "train", seed=0)
        at_own_size = all_backends(model, card, tv, own_calib, workdir, args.threads, "r50-own")
        reference = Reference.of(model, card, args.agree_images)
        quality = checked(at_own_size, reference)
        del at_own_size
        note = (f"trained {args.run50} ({card.dataset}, {card.input_size[1]} px): agreement and accuracy on "
                f"{len(reference.images)} real test images at {card.input_size[1]} px, int8 calibrated on "
                f"{args.calib} real training images; speed at 224 px with the same weights (its int8 files calibrated "
                f"on 64 training images resized to 224)")
    else:
        card = ModelCard("resnet50", {}, [str(i) for i in range(1000)], [3, 224, 224], list(IMAGENET_MEAN),
                         list(IMAGENET_STD), 256, 224, "imagenet")
        timing_card = card
        g = torch.Generator().manual_seed(0)  # random but fixed, in the normalised range of real images
        calib = torch.randn(args.calib, 3, 224, 224, generator=g).clamp(-2.2, 2.6)
        torch.manual_seed(0)
        model = reestimate_bn(create_model("resnet50"), calib[:16])
        tv = torchvision.models.resnet50()
        tv.load_state_dict(model.state_dict())
        quality = None
        note = "random weights: agreement on random-but-fixed inputs (pass --run50 for real images)"
    print("ResNet-50: exports at 224 px ...", file=sys.stderr, flush=True)
    backends = all_backends(model, timing_card, tv, calib, workdir, args.threads, "r50")
    if quality is None:
        reference = Reference(calib[:args.agree_images], None, logits_of(copy.deepcopy(model).eval(),
                                                                         calib[:args.agree_images]))
        quality = checked(backends, reference)
    return timing_rows("ResNet-50 224px", backends, timing_card, quality, args), note


def resnet20(args, workdir: Path) -> tuple[list[list], str]:
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
    model = model.float().eval()
    calib = real_images(card, 500, "train", seed=0)
    backends = all_backends(model, card, None, calib, workdir, args.threads, "r20")
    reference = Reference.of(model, card, args.agree_images if args.quick else 10000)
    quality = checked(backends, reference)
    note = f"{kind}: agreement and accuracy on {len(reference.images)} Fashion-MNIST test images (no TTA)"
    return timing_rows("ResNet-20 FMNIST 28px", backends, card, quality, args), note


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run50", help="a trained ResNet-50 run (real-image agreement; default: random weights)")
    p.add_argument("--run", help="a trained Fashion-MNIST ResNet-20 run directory (default: random resnet20)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count())
    p.add_argument("--models", nargs="+", default=["resnet50", "resnet20"], choices=["resnet50", "resnet20"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--quick", action="store_true", help="few iterations and images: a smoke run, not a measurement")
    args = p.parse_args()
    args.warmup, args.iters, args.budget = (1, 3, 2.0) if args.quick else (3, 30, 20.0)
    args.calib, args.agree_images = (32, 64) if args.quick else (300, 2000)
    torch.set_num_threads(args.threads)

    import onnxruntime
    import openvino

    print(f"CPU: {cpu_summary()}, {args.threads} threads; native bf16: "
          f"{'yes' if cpu_has_native_bf16() else 'no'}, VNNI: {'yes' if cpu_has_vnni() else 'no'}; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}"
          f"{'; --quick (few iterations, not a measurement)' if args.quick else ''}\n")
    rows, notes = [], []
    runs = {"resnet50": resnet50, "resnet20": resnet20}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models:
            table_rows, note = runs[key](args, Path(tmp))
            rows += table_rows
            notes.append(f"- {table_rows[0][0]}: {note}.")
    print(format_table(["model", "backend", "batch", "img/s", "latency ms (median)", "speed-up", "top-1 agreement",
                        "test top-1"], rows, align="llrrrrrr"))
    print("\n" + "\n".join(notes))
    print(f"- speed-up: over the first row of each model at the same batch. Latency is the median wall time of one "
          f"call on a batch; img/s = batch / latency; {args.iters} timed calls after {args.warmup} warm-up (at most "
          f"{args.budget:.0f} s each). Agreement: top-1 of each row vs our fp32 PyTorch model.")
    order = INT8_FIRST if cpu_has_vnni() else FLOAT_FIRST
    print(f"- `resnet predict RUN` (--backend auto) on this CPU takes the first of these the run directory holds: "
          f"{', '.join(f'{file} ({backend})' for backend, file in order)}, else the weights in PyTorch.")


if __name__ == "__main__":
    main()
