"""Transfer learning on real data, offline: does a net pretrained on Fashion-MNIST learn handwritten digits from a
few images better than the same net from scratch, in the same budget?

    python benchmarks/transfer.py                          # about 30 minutes on 2 CPU cores
    python benchmarks/transfer.py --pretrained RUN_DIR     # reuse a finished Fashion-MNIST run (e.g. make demo's)
    python benchmarks/transfer.py --shots 5 --draws 0 --budget 30s   # a quick look

1. Pretrain: the default recipe (ResNet-14, 28 px, 1 channel) on all 60,000 Fashion-MNIST training images, in
   ``--pretrain-budget`` (or take ``--pretrained``).
2. The new task: scikit-learn's 1,797 handwritten digits (UCI; real scans, shipped with scikit-learn, so no download),
   written as a folder of 32x32 grayscale PNGs by make_folders.py (1,437 train, 360 val). For each number of images
   per class (``--shots``) and each draw, a seeded choice of that many training images per class.
3. On each draw: ``resnet train --data imagefolder:DRAW --pretrained PRETRAIN --budget B`` (the defaults a folder
   gets: the fine-tuning recipe, batch and crop from the images) against ``resnet train --data imagefolder:DRAW
   --budget B`` (from scratch: the default recipe, the same defaults from the images), the same budget for both.
4. Every model is measured on the same 360 validation digits.
Prints a Markdown table: val top-1 (mean ± std over the draws, and per draw), and the commands.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_folders import digits  # noqa: E402
from train_run import run_train  # noqa: E402

from resnet.device import cpu_summary  # noqa: E402
from resnet.table import format_table  # noqa: E402

TUNED, SCRATCH = "fine-tuned from Fashion-MNIST", "from scratch"


def draw(full: Path, out: Path, shots: int, seed: int) -> None:
    """``shots`` training images per class of ``full`` (seeded), and all of its val/, as a new folder."""
    g = torch.Generator().manual_seed(seed)
    for class_dir in sorted((full / "train").iterdir()):
        files = sorted(class_dir.iterdir())
        (out / "train" / class_dir.name).mkdir(parents=True)
        for i in torch.randperm(len(files), generator=g)[:shots].tolist():
            shutil.copy(files[i], out / "train" / class_dir.name / files[i].name)
    shutil.copytree(full / "val", out / "val")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", type=Path, default=None, help="a finished Fashion-MNIST run to start from")
    parser.add_argument("--pretrain-budget", default="5m", help="budget of the pretraining run")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 20, 100], help="training images per class")
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2], help="seeds of the draws (images, init)")
    parser.add_argument("--budget", default="60s", help="budget of every fine-tuning and from-scratch run")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="resnet-transfer-"))
    python = [sys.executable, "-m", "resnet", "train"]
    pre_cmd, pre_top1 = None, None
    if args.pretrained is None:
        args.pretrained = work / "pretrain"
        pre_cmd = [*python, "--budget", args.pretrain_budget, "--out", str(args.pretrained)]
        pre_top1 = run_train(pre_cmd, "pretrain")[0]["test_top1"]
    full = work / "digits"
    if not full.exists():
        digits(full)

    scores: dict[tuple[int, str], list[float]] = {}
    commands: dict[str, list[str]] = {}
    for shots in args.shots:
        for seed in args.draws:
            folder = work / f"digits-{shots}-{seed}"
            if not folder.exists():
                draw(full, folder, shots, seed)
            common = [*python, "--data", f"imagefolder:{folder}", "--budget", args.budget, "--seed", str(seed)]
            for name, extra in ((TUNED, ["--pretrained", str(args.pretrained)]), (SCRATCH, [])):
                tag = "tuned" if name == TUNED else "scratch"
                cmd = [*common, *extra, "--out", str(work / f"{tag}-{shots}-{seed}")]
                result, _, _ = run_train(cmd, f"{name}, {shots} per class, draw {seed}")
                scores.setdefault((shots, name), []).append(result["test_top1"])
                commands.setdefault(name, cmd)

    rows = []
    for (shots, name), values in scores.items():
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        rows.append([shots, name, f"{statistics.mean(values):.2f}{spread}", " ".join(f"{v:.2f}" for v in values)])
    print(f"\nmachine: {cpu_summary()}; torch {torch.__version__}; budget {args.budget} per run; draws "
          f"{' '.join(map(str, args.draws))}; work folder {work}")
    if pre_top1 is not None:
        print(f"pretraining: Fashion-MNIST test top-1 {pre_top1:.2f}% ({shlex.join(pre_cmd)})")
    print()
    print(format_table(["images per class", "run", "val top-1 % (360 digits, mean ± std)", "per draw"], rows,
                       align="rlrl"))
    for shots in args.shots:
        gain = [t - s for t, s in zip(scores[(shots, TUNED)], scores[(shots, SCRATCH)])]
        print(f"{shots} per class: fine-tuned minus from scratch {statistics.mean(gain):+.2f} points (per draw: "
              f"{' '.join(f'{g:+.2f}' for g in gain)})")
    print("\ncommands (first draw):")
    for cmd in commands.values():
        print(f"  {shlex.join(cmd)}")


if __name__ == "__main__":
    main()
