"""Accuracy per unit of time: a recipe trained with several seeds, each with `resnet train` in its own process, on
the official test set.

    python benchmarks/time_to_accuracy.py                                   # the default recipe, seeds 0 1 2
    python benchmarks/time_to_accuracy.py --budget 10m                      # the same, each run given 10 minutes
    python benchmarks/time_to_accuracy.py --config fashion-mnist-resnet20-long --seeds 0
    python benchmarks/time_to_accuracy.py --config fashion-mnist-resnet20   # the default recipe with ResNet-20
    python benchmarks/time_to_accuracy.py --set label_smoothing=0.1 --out runs/tta-ls   # an ablation, same seeds
    python benchmarks/time_to_accuracy.py --emulate-avx2 --out runs/tta-avx2   # as on a CPU without AVX-512

Prints a Markdown table: per seed, test top-1 (the final model, with the recipe's test-time augmentation), steps,
training minutes (the run's own clock: training and evaluations), wall minutes (the whole `resnet train` process,
start-up and final test included) and training img/s; then the mean ± std over seeds. The machine line names the CPU,
whether it runs bf16 natively, and the precision the runs used. Run it on a quiet machine: two trainings sharing two
cores run far slower than half speed each.

``--emulate-avx2`` runs each training as an AVX2-only CPU would: oneDNN, ATen's vector kernels and MKL are held to AVX2
(their own environment switches), so `auto` finds no native bf16 and trains in fp32 with AVX2 kernels, as it does on
such a machine. The speed is this CPU's cores at AVX2 width, not a particular AVX2 CPU's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from resnet.config import DEFAULT_RECIPE
from resnet.device import cpu_has_native_bf16, cpu_summary
from resnet.table import format_table


# Each library's own switch down to AVX2: oneDNN (convolutions; it then reports no native bf16, so `auto` picks fp32),
# ATen's vectorised CPU kernels, and MKL (matrix products).
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def run_seed(config: str, seed: int, out: Path, budget: str | None, overrides: list[str],
             env: dict[str, str] | None = None) -> dict:
    """One `resnet train` process (with ``env`` added to its environment); its results.json and the epoch records'
    mean img/s, plus its wall time."""
    cmd = [sys.executable, "-m", "resnet", "train", "--config", config, "--seed", str(seed), "--out", str(out)]
    if budget:
        cmd += ["--budget", budget]
    for text in overrides:
        cmd += ["--set", text]
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    img_s = statistics.fmean(r["img_per_s"] for r in epochs) if epochs else float("nan")
    return {**results, "seed": seed, "wall_minutes": wall / 60, "img_per_s": img_s}


def mean_std(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE, help="recipe name or YAML file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", help="give every run this wall-clock budget (e.g. 10m)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", default="runs/time-to-accuracy", help="one run directory per seed under this")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="hold oneDNN, ATen and MKL to AVX2, as on a CPU without AVX-512 (fp32 with `auto`)")
    args = parser.parse_args()

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} already holds runs; choose another --out")
    env = AVX2_ONLY if args.emulate_avx2 else None
    rows = [run_seed(args.config, seed, out / f"seed{seed}", args.budget, args.set, env) for seed in args.seeds]
    table = [[r["seed"], f"{r['test_top1']:.2f}", r["steps"], f"{r['train_minutes']:.2f}",
              f"{r['wall_minutes']:.2f}", f"{r['img_per_s']:.0f}"] for r in rows]
    table.append(["mean", mean_std([r["test_top1"] for r in rows]), "", mean_std([r["train_minutes"] for r in rows]),
                  mean_std([r["wall_minutes"] for r in rows]), f"{statistics.fmean(r['img_per_s'] for r in rows):.0f}"])
    budget = f", budget {args.budget}" if args.budget else ""
    print(f"\n`{args.config}`{budget}{''.join(f', --set {s}' for s in args.set)}; test top-1 of the final model on "
          f"{rows[0]['test_count']:,} images of the official test set ({rows[0]['test_tta']} TTA)")
    native = "no (emulating an AVX2-only CPU: " + ", ".join(f"{k}={v}" for k, v in AVX2_ONLY.items()) + ")" \
        if args.emulate_avx2 else ("yes" if cpu_has_native_bf16() else "no")
    print(f"machine: {cpu_summary()}; native bf16: {native}; runs in {rows[0]['precision']}; "
          f"PyTorch {torch.__version__}\n")
    print(format_table(["seed", "test top-1 %", "steps", "training min", "wall min", "img/s"], table,
                       align="rrrrrr"))


if __name__ == "__main__":
    main()
