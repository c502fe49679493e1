"""What each choice of the default recipe gives: the recipe with one choice changed at a time, same seeds, same budget.

    python benchmarks/recipe_ablation.py                      # every variant, seed 0, 3-minute budget each
    python benchmarks/recipe_ablation.py --budget 10m --seeds 0 1 2
    python benchmarks/recipe_ablation.py --config fashion-mnist-resnet20   # the same choices with ResNet-20
    python benchmarks/recipe_ablation.py --only "shipped recipe" "no TTA at test"

Every variant is `resnet train` with the recipe (`--config`, default: the default recipe) and a few `--set` overrides,
one process per seed (see time_to_accuracy.py). Prints a Markdown table: test top-1 of the final model (mean over
seeds, with the recipe's test-time augmentation), the difference to the shipped recipe, steps and img/s. A budget
shorter than the recipe's 10 minutes makes the ablation affordable; say which budget a table came from, as effects can
change with the length of the run. Choices that leave training untouched (the EMA, the test-time augmentation) are
measured more precisely on the same runs: benchmarks/ema_vs_final.py, `resnet eval RUN --tta ...`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from resnet.config import DEFAULT_RECIPE
from resnet.device import cpu_has_native_bf16, cpu_summary
from resnet.table import format_table
from time_to_accuracy import mean_std, run_seed

# Variant name -> `--set` overrides of the recipe (--config, default: the default recipe).
VARIANTS: dict[str, list[str]] = {
    "shipped recipe": [],
    "no label smoothing": ["label_smoothing=0"],
    "EMA of the weights, 0.999 (decay warmed up)": ["ema=0.999"],
    "EMA of the weights, 0.999, no decay warm-up": ["ema=0.999", "ema_warmup=false"],
    "flip TTA only at test": ["test_tta=flip"],
    "no TTA at test": ["test_tta=none"],
    "zero-init last BN of each block": ["model.kwargs.zero_init_residual=true"],
    "batch 128, lr 0.1": ["batch_size=128"],  # the recipe's lr 0.2 is for its batch of 256: scaled linearly
    "linear decay to zero (Li et al. 2020)": ["schedule.name=linear"],
    "crop padding 4": ["data.crop_padding=4"],
    "5,000 held out for validation, evaluated every epoch": ["data.val_split=5000", "eval_every=1"],
    "before issue 12 (no LS, batch 128)": ["label_smoothing=0", "batch_size=128"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE, help="recipe name or YAML file")
    parser.add_argument("--budget", default="3m", help="wall-clock budget of every run (default 3m)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT", help="run only these")
    parser.add_argument("--out", default="runs/recipe-ablation", help="one run directory per variant and seed")
    args = parser.parse_args()

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} already holds runs; choose another --out")
    names = args.only or list(VARIANTS)
    results = {}
    for i, name in enumerate(names):
        results[name] = [run_seed(args.config, seed, out / f"variant{i}-seed{seed}", args.budget,
                                  VARIANTS[name]) for seed in args.seeds]
    reference = names[0]
    base = statistics.fmean(r["test_top1"] for r in results[reference])
    rows = []
    for name in names:
        runs = results[name]
        top1 = [r["test_top1"] for r in runs]
        rows.append([name, " ".join(VARIANTS[name]) or "-", mean_std(top1), f"{statistics.fmean(top1) - base:+.2f}",
                     f"{statistics.fmean(r['steps'] for r in runs):.0f}",
                     f"{statistics.fmean(r['img_per_s'] for r in runs):.0f}"])
    print(f"\n`{args.config}`, budget {args.budget} per run, seeds {' '.join(map(str, args.seeds))}; test top-1 of the "
          f"final model on {results[reference][0]['test_count']:,} test images; difference to '{reference}'")
    print(f"machine: {cpu_summary()}; native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; PyTorch "
          f"{torch.__version__}\n")
    print(format_table(["variant", "--set", "test top-1 %", "vs first", "steps", "img/s"], rows, align="llrrrr"))


if __name__ == "__main__":
    main()
