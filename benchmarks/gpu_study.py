"""The degradation study at the paper's length on one GPU: the `paper` profile (the paper's CIFAR-10 recipes: 64k
iterations of batch 128, lr 0.1 divided by 10 at 32k and 48k) on Fashion-MNIST, with several cells training at once
as separate processes on the same GPU, then the study's own analysis, figures, tables and verdicts. Sized for about
10 minutes on one H100/H200 with the defaults (depths 20 and 56, one seed: 4 cells at once); the cells resume, so a
run cut short continues where it stopped.

    python benchmarks/gpu_study.py --pack runs/fashion-mnist      # here: copy the data set (30 MB) to carry along
    RESNET_DATA=runs/fashion-mnist python benchmarks/gpu_study.py  # there: the study, on the GPU
    python benchmarks/gpu_study.py --device cpu --quick            # the same code paths, tiny: the suite's smoke test

Installs nothing: it needs torch, torchvision and this package, and Fashion-MNIST on disk (--data-root,
RESNET_DATA, or Debian's dataset-fashion-mnist). Writes the study into --out (results.md, results.json, figures).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from resnet.data.datasets import IDX_FILES, search_dirs
from resnet.experiments.cells import run_cell
from resnet.experiments.degradation import degradation
from resnet.experiments.grid import plan

FILES = [f"{name}.gz" for split in (True, False) for name in IDX_FILES[split]]  # as Debian ships them
QUICK = {"iterations": 24, "data.train_limit": 512, "data.test_limit": 256, "eval_every": 1, "log_every": 4,
         "batch_size": 32, "schedule.milestone_iters": [12, 18], "checkpoint_every": 12}


def pack(folder: Path) -> None:
    """Copy Fashion-MNIST's four files where they are found into ``folder`` (to carry to a machine without them)."""
    for base in search_dirs("fashion-mnist", None):
        if all((base / name).is_file() for name in FILES):
            folder.mkdir(parents=True, exist_ok=True)
            for name in FILES:
                shutil.copy2(base / name, folder / name)
            print(f"copied Fashion-MNIST from {base} to {folder}: RESNET_DATA={folder} on the other machine")
            return
    sys.exit("Fashion-MNIST not found: install Debian's dataset-fashion-mnist or set RESNET_DATA")


def train_cell(cell, position: str) -> str:
    """One cell in its own process (the GPU is shared by time-slicing; each process has its own CUDA context)."""
    started = time.perf_counter()
    run_cell(cell, position, lambda *a, **k: print(*a, **k, flush=True))
    return f"{cell.name}: {(time.perf_counter() - started) / 60:.1f} min"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", type=Path, metavar="DIR", help="only copy Fashion-MNIST into DIR, then stop")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, help="cells training at once (default: all of them)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", type=Path, default=Path("runs/degradation-paper-fashion-mnist-gpu"))
    p.add_argument("--quick", action="store_true", help="a few iterations on a few images: a smoke test")
    args = p.parse_args()
    if args.pack:
        pack(args.pack)
        return 0
    extra = {"device": args.device, **(QUICK if args.quick else {})}
    cells = plan("paper", args.out, data="fashion-mnist", depths=args.depths, seeds=args.seeds, extra=extra)
    jobs = args.jobs or len(cells)
    print(f"{len(cells)} cells of {cells[0].cfg.iterations:,} iterations, {jobs} at once on {args.device}",
          flush=True)
    started = time.perf_counter()
    todo = [(cell, f"{i}/{len(cells)}") for i, cell in enumerate(cells, 1) if not cell.done]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(train_cell, *zip(*todo)) if todo else []:
            print(line, flush=True)
    print(f"training: {(time.perf_counter() - started) / 60:.1f} min for {len(todo)} cell(s)", flush=True)
    # The study itself: every cell is finished now, so it analyses them and writes the figures and tables.
    degradation("paper", data="fashion-mnist", depths=args.depths, seeds=args.seeds, out=args.out, extra=extra)
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min; study: {args.out}/results.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
