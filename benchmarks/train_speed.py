"""Training throughput: our training step (the real loop: in-memory batches cut and augmented on the device,
auto precision, channels_last) against a naive loop (torchvision-style per-sample transforms in a DataLoader, fp32,
NCHW, eager) over the same model and batch size, measured in the same run.

    python benchmarks/train_speed.py                 # CPU: resnet20 at 28x28 and resnet50 at 224
    python benchmarks/train_speed.py --device cuda   # the same on a GPU

Prints a Markdown table: img/s, speed-up over the naive loop, and MFU: model FLOP/s (training FLOPs = 3 x forward
MACs x 2 per image) over the peak matmul FLOP/s of this machine in the row's precision, measured in the same run
(the best of a few large matrix products), so the figure needs no datasheet and holds for any CPU or GPU.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

import resnet
from resnet.data import MemoryDataset, dataset_stats, open_split
from resnet.data.memory import Augment, MemoryLoader
from resnet.device import resolve_precision, synchronize
from resnet.table import format_table
from resnet.train.loop import TrainContext, train_step

MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_peak_tflops(device: torch.device, precision: str, seconds: float = 1.0) -> float:
    """The machine's practical peak: the best TFLOP/s of square matrix products in ``precision`` (fp32 matmuls may
    use TF32 on GPUs, as training does when it is allowed), timed for about ``seconds`` after a warm-up."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=MATMUL_DTYPES[precision]) for _ in range(2))
    for _ in range(2):
        torch.mm(a, b)
    synchronize(device)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * n**3 / best / 1e12


class PerSampleDataset(Dataset):
    """What a first PyTorch tutorial does: one uint8 image at a time through torchvision transforms."""

    def __init__(self, data: MemoryDataset, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(self.data.images[i]), self.data.labels[i]


def synthetic(n: int, channels: int, size: int, classes: int) -> MemoryDataset:
    g = torch.Generator().manual_seed(0)
    return MemoryDataset(torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8),
                         torch.randint(0, classes, (n,), generator=g), [str(i) for i in range(classes)])


def naive_loop(model, data, batch, steps, device, padding) -> float:
    """fp32, NCHW, eager; per-sample pad-crop + flip + normalise in a DataLoader (default: no workers)."""
    mean, std = data_stats(data)
    h = data.images.shape[-1]
    transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.RandomCrop(h, padding=padding),
                            v2.RandomHorizontalFlip(), v2.Normalize(mean, std)])
    loader = DataLoader(PerSampleDataset(data, transform), batch_size=batch, shuffle=True, drop_last=True)
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    crit = torch.nn.CrossEntropyLoss()

    def step(x, y):
        x, y = x.to(device), y.to(device)
        loss = crit(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(loader, step, steps, batch, device)


def data_stats(data: MemoryDataset):
    c = data.images.shape[1]
    return dataset_stats("fashion-mnist" if c == 1 else "imagefolder:.")


def our_loop(model, data, batch, steps, device, padding, precision) -> float:
    """The training step `resnet train` runs: MemoryLoader batches, channels_last, autocast as resolved."""
    mean, std = data_stats(data)
    loader = MemoryLoader(data, batch, device=device, mean=mean, std=std, train=True,
                          augment=Augment(padding, True, 0.0))
    model.to(device).to(memory_format=torch.channels_last).train()
    ctx = sgd_context(model, model, device, precision, lr=0.01, weight_decay=1e-4)
    def run(epoch: int, n: int) -> None:
        for _, (images, labels) in zip(range(n), loader.epoch(epoch)):
            train_step(ctx, images, labels)
        synchronize(device)

    run(0, 3)  # warm-up
    start = time.perf_counter()
    run(1, steps)
    return steps * batch / (time.perf_counter() - start)


def sgd_context(model: torch.nn.Module, run_model: torch.nn.Module, device: torch.device, precision: str, lr: float,
                weight_decay: float = 0.0) -> TrainContext:
    """What `train_step` needs for plain SGD (momentum 0.9) at a constant ``lr`` on ``model``'s parameters, running
    ``run_model`` (the model itself, or its torch.compile wrapper)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    return TrainContext(run_model, opt, torch.optim.lr_scheduler.ConstantLR(opt, 1.0, 0),
                        torch.amp.GradScaler(device.type, enabled=precision == "fp16"), torch.nn.CrossEntropyLoss(),
                        device, precision)


def timed(loader, step, steps, batch, device, warm=3) -> float:
    it = iter(loader)
    for _ in range(warm):
        step(*next(it))
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(it))
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per loop (default: 30 CPU, 100 CUDA)")
    parser.add_argument("--only", choices=["resnet20", "resnet50"], help="measure one model only")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    precision = resolve_precision("auto", device)
    steps = args.steps or (100 if cuda else 30)
    rows = []
    peaks = {p: matmul_peak_tflops(device, p) for p in dict.fromkeys(["fp32", precision])}

    cases = []
    if args.only in (None, "resnet20"):
        try:
            fmnist = open_split("fashion-mnist", "train", download=False)
        except resnet.UserError:
            fmnist = synthetic(60_000, 1, 28, 10)
        cases.append(("resnet20", 28, fmnist, 128, 4, lambda: resnet.create_model("resnet20", in_chans=1), None))
    if args.only in (None, "resnet50"):
        batch50 = 256 if cuda else 32
        data50 = synthetic(batch50 * (steps + 8), 3, 224, 1000)
        cases.append(("resnet50", 224, data50, batch50, 0, lambda: resnet.create_model("resnet50"),
                      lambda: torchvision.models.resnet50()))

    for name, size, data, batch, padding, ours, tv in cases:
        macs = resnet.count_macs(ours(), (data.images.shape[1], size, size))
        train_flops = 3 * 2 * macs

        def row(label, ips, prec, base):
            mfu = f"{100 * ips * train_flops / (peaks[prec] * 1e12):.1f}%"
            rate = f"{ips:,.1f}" if ips < 100 else f"{ips:,.0f}"  # ResNet-50 on a CPU runs at a few img/s
            rows.append([name, f"{size}x{size}", batch, label, prec, rate, f"{ips / base:.2f}x" if base else "1.00x",
                         mfu])

        torch.manual_seed(0)
        base = naive_loop(ours(), data, batch, steps, device, padding)
        row("naive loop, ours", base, "fp32", None)
        if tv is not None:
            torch.manual_seed(0)
            row("naive loop, torchvision", naive_loop(tv(), data, batch, steps, device, padding), "fp32", base)
        torch.manual_seed(0)
        row("resnet train loop", our_loop(ours(), data, batch, steps, device, padding, precision), precision, base)
        if precision != "fp32":
            torch.manual_seed(0)
            row("resnet train loop", our_loop(ours(), data, batch, steps, device, padding, "fp32"), "fp32", base)

    where = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()}, " \
                                                            f"{torch.get_num_threads()} threads"
    measured = ", ".join(f"{p} {t:,.2f} TFLOP/s" for p, t in peaks.items())
    print(f"device: {where}; torch {torch.__version__}; timed steps per loop: {steps}; measured matmul peak: "
          f"{measured}\n")
    print(format_table(["model", "input", "batch", "loop", "precision", "img/s", "vs naive", "MFU"], rows,
                       align="llrllrrr"))


if __name__ == "__main__":
    main()
