"""Transfer learning on real data, offline: does fine-tuning a pretrained net beat training from scratch on 100 images?

    python benchmarks/transfer.py                  # about 5 minutes on 2 CPU cores
    python benchmarks/transfer.py --seeds 0 1 2 3 4 --no-ablations   # more few-shot draws, two short runs each

The pretrained net and the new task come from Fashion-MNIST, split by class so that the fine-tuning task is new:
1. pretrain ResNet-20 (28 px, 1 channel) with `resnet train` on classes 0-4 (T-shirt/top, Trouser, Pullover, Dress,
   Coat), written as an image folder of the real training images;
2. fine-tune it with the `finetune-imagefolder-small` recipe on classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot),
   20 training images per class, the recipe's settings unchanged but for the net, the input size and where the
   weights come from (`pretrained: RUN_DIR`, the pretraining run, with `reset_head`: a new 5-class head);
3. train the same net from scratch on the same 100 images with the same recipe (minus the fine-tuning options,
   which mean nothing without pretrained weights: nothing is frozen, one lr for every layer);
4. measure every model on the 5,000 test images of classes 5-9 (the folder's val/).
On the first draw, ablations of the recipe's fine-tuning choices: the backbone frozen (pretrained features, and
random ones for comparison), backbone_lr 0.1, a 5x lower lr.

Both tasks go through image folders (PNG files holding the real pixels), so the pretraining and the fine-tuning read
their images the same way (same normalisation, same augmentation code) as a user's own folders would be.
Prints a Markdown table: test top-1 (mean ± std over the draws, and per draw), seconds per run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from resnet.data import open_split
from resnet.device import cpu_summary
from resnet.table import format_table

PRETRAIN_CLASSES, NEW_CLASSES = range(0, 5), range(5, 10)
TUNED, SCRATCH = "fine-tuned from the pretraining run", "from scratch, same recipe"
# What the shipped 64-px recipe needs changed for 28-px, 1-channel Fashion-MNIST and a small net.
SMALL_NET = ["--model", "resnet20", "--set", "model.kwargs.in_chans=1", "--set", "data.image_size=28",
             "--set", "data.eval_resize=28", "--set", "data.workers=1", "--set", "eval_every=1000"]


def write_folder(root: Path, split: str, images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                 keep: range, per_class: int | None, seed: int = 0) -> int:
    """Write ``per_class`` images (all when None, a seeded draw otherwise) of each class in ``keep`` as PNG files
    under root/split/<k>-<class>/ ; returns how many were written."""
    g = torch.Generator().manual_seed(seed)
    written = 0
    for k in keep:
        index = (labels == k).nonzero().flatten()
        if per_class is not None:
            index = index[torch.randperm(len(index), generator=g)[:per_class]]
        folder = root / split / f"{k}-{classes[k].replace('/', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in index.tolist():
            Image.fromarray(images[i, 0].numpy(), mode="L").save(folder / f"{i:05d}.png")
        written += len(index)
    return written


def run(cmd: list[str], label: str) -> tuple[dict, float]:
    """Run one `resnet train` command; its results.json and wall time."""
    print(f"[{label}] {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{label} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = Path(cmd[cmd.index("--out") + 1])
    return json.loads((out / "results.json").read_text()), seconds


def cpu_kind(threads: int | None) -> str:
    return f"{cpu_summary()}, {threads or torch.get_num_threads()} thread(s) per run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-per-class", type=int, default=2000, help="training images per pretraining class")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--shots", type=int, default=20, help="training images per new class")
    parser.add_argument("--test-per-class", type=int, default=None, help="test images per new class (all 1,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="few-shot draws (images and init)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation runs (first seed only)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="resnet-transfer-"))
    train, test = open_split("fashion-mnist", "train"), open_split("fashion-mnist", "test")
    python = [sys.executable, "-m", "resnet", "train"]
    threads = ["--set", f"threads={args.threads}"] if args.threads else []

    pre = work / "pretrain-data"
    n_pre = write_folder(pre, "train", train.images, train.labels, train.classes, PRETRAIN_CLASSES,
                         args.pretrain_per_class)
    n_pre_test = write_folder(pre, "val", test.images, test.labels, test.classes, PRETRAIN_CLASSES, 200)
    # The default recipe (ResNet-20, SGD + Nesterov, cosine) on the folder; batch 64 gives a short run more steps.
    pretrain = [*python, "--data", f"imagefolder:{pre}", "--out", str(work / "pretrain"), *SMALL_NET, *threads,
                "--epochs", str(args.pretrain_epochs), "--batch-size", "64", "--set", "data.min_scale=0.35",
                "--set", "test_tta=none"]
    pre_result, pre_seconds = run(pretrain, "pretrain")

    no_finetune = ["--set", "finetune.freeze_stages=0", "--set", "finetune.backbone_lr=1", "--set",
                   "finetune.head_warmup_epochs=0"]
    # 5 classes before and after: reset_head asks for a new head (the same count would keep the old one).
    pretrained = ["--set", f"pretrained={work / 'pretrain'}", "--set", "reset_head=true"]
    variants = {  # name: (run directory, extra flags, every seed or the first only)
        TUNED: ("tuned", pretrained, True),
        SCRATCH: ("scratch", ["--set", "pretrained=null", *no_finetune], True),
        "fine-tuned, backbone frozen (freeze_stages=-1)": ("probe", [*pretrained, "--set", "finetune.freeze_stages=-1"],
                                                            False),
        "from scratch, backbone frozen (random features)": ("random-probe", ["--set", "pretrained=null", "--set",
                                                             "finetune.freeze_stages=-1", *no_finetune[2:]], False),
        "fine-tuned, backbone_lr=0.1": ("backbone-0.1", [*pretrained, "--set", "finetune.backbone_lr=0.1"], False),
        "fine-tuned, lr 0.01 (5x lower)": ("lr-0.01", [*pretrained, "--lr", "0.01"], False),
    }
    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    commands = {}
    n_test = 0
    for i, seed in enumerate(args.seeds):
        new = work / f"new-data-{seed}"
        write_folder(new, "train", train.images, train.labels, train.classes, NEW_CLASSES, args.shots, seed)
        n_test = write_folder(new, "val", test.images, test.labels, test.classes, NEW_CLASSES, args.test_per_class)
        common = [*python, "--config", "finetune-imagefolder-small", "--data", f"imagefolder:{new}", *SMALL_NET,
                  *threads, "--seed", str(seed)]
        for name, (folder, extra, every_seed) in variants.items():
            if not every_seed and (i > 0 or args.no_ablations):
                continue
            cmd = [*common, "--out", str(work / f"{folder}-{seed}"), *extra]
            result, took = run(cmd, f"{name}, seed {seed}")
            scores.setdefault(name, []).append(result["test_top1"])
            seconds.setdefault(name, []).append(took)
            commands.setdefault(name, cmd)

    rows = [["pretraining: classes 0-4, default recipe", f"{n_pre:,}", f"{n_pre_test:,}",
             f"{pre_result['test_top1']:.2f}", "", f"{pre_seconds:.0f}"]]
    for name, values in scores.items():
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        rows.append([name, args.shots * len(NEW_CLASSES), f"{n_test:,}", f"{statistics.mean(values):.2f}{spread}",
                     " ".join(f"{v:.2f}" for v in values), f"{statistics.mean(seconds[name]):.0f}"])
    gain = [t - s for t, s in zip(scores[TUNED], scores[SCRATCH])]

    print(f"\nmachine: {cpu_kind(args.threads)}; torch {torch.__version__}; seeds {' '.join(map(str, args.seeds))}; "
          f"work folder {work}\n")
    print(format_table(["run (classes 5-9: 20 training images each)", "train images", "test images",
                        "test top-1 % (mean ± std)", "per seed", "seconds"], rows, align="lrrrlr"))
    print(f"\nfine-tuned minus from scratch (same recipe): {statistics.mean(gain):+.2f} points (per seed: "
          f"{' '.join(f'{g:+.2f}' for g in gain)})")
    print(f"\ncommands (seed {args.seeds[0]}):")
    print(f"  {shlex.join(pretrain)}")
    for cmd in commands.values():
        print(f"  {shlex.join(cmd)}")


if __name__ == "__main__":
    main()
