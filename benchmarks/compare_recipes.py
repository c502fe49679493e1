"""Check each family's comparison recipe against ResNet's on a hold-out split of the training set, before the
comparison trains with it: the test set is never read for the choice.

    python benchmarks/compare_recipes.py --models mnasnet0_5_cifar densenet_bc40 --epochs 1 --seeds 0 1
    python benchmarks/compare_recipes.py --table                  # the results so far

Each (model, recipe, seed) is one `resnet train --config RECIPE --model MODEL --epochs E --seed S` with 5,000 of
Fashion-MNIST's training images held out (``data.val_split=5000``, the last evaluation on them); RECIPE is the
model's own (``resnet.experiments.comparison.recipe_for``) and ResNet's (``DEFAULT_RECIPE``). Results accumulate in
``results.jsonl`` under --work, so an interrupted check runs only what is missing. The table gives each recipe's
mean hold-out top-1 and the family recipe's difference from ResNet's, paired on the same seeds, with the standard
error of that difference: a family recipe that loses by more than about two standard errors trains the model worse
than ResNet's on this data, and the comparison should say so or use ResNet's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_run import run_train  # noqa: E402

from resnet.device import cpu_summary  # noqa: E402
from resnet.experiments.comparison import DEFAULT_RECIPE, SMALL_SUCCESSORS, recipe_for  # noqa: E402
from resnet.table import format_table  # noqa: E402
from resnet.train.log import read_jsonl  # noqa: E402
from resnet.writes import append_line  # noqa: E402

HOLD_OUT = 5000  # training images held out: Fashion-MNIST's 60,000 minus these train


def holdout_top1(run_dir: Path) -> float:
    """The run's last evaluation on its held-out images (top-1 %)."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return [r["val_top1"] for r in rows if r.get("val_top1") is not None and r.get("eval_set") == "val"][-1]


def table(records: list[dict]) -> str:
    """One row per model: each recipe's mean hold-out top-1 and the paired difference (family - ResNet's)."""
    rows = []
    for model in dict.fromkeys(r["model"] for r in records):
        mine = {r["seed"]: r["top1"] for r in records if r["model"] == model and r["recipe"] != DEFAULT_RECIPE}
        base = {r["seed"]: r["top1"] for r in records if r["model"] == model and r["recipe"] == DEFAULT_RECIPE}
        paired = [mine[s] - base[s] for s in sorted(mine.keys() & base.keys())]
        se = f" ± {statistics.stdev(paired) / len(paired) ** 0.5:.2f}" if len(paired) > 1 else ""
        fmt = lambda values: f"{statistics.fmean(values):.2f} ({len(values)})" if values else ""
        diff = f"{statistics.fmean(paired):+.2f}{se}" if paired else ""
        rows.append([model, recipe_for(model), fmt(list(mine.values())), fmt(list(base.values())), diff])
    return format_table(("model", "its recipe", "hold-out top-1 % (runs)", f"with {DEFAULT_RECIPE} (runs)",
                         "difference (paired, ± s.e.)"), rows, align="llrrr")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=[m for m in SMALL_SUCCESSORS if recipe_for(m) != DEFAULT_RECIPE])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-limit", type=int, help="train on this many images (a quick check of the script)")
    p.add_argument("--work", type=Path, default=Path("runs/compare-recipes"))
    p.add_argument("--table", action="store_true", help="print the table of the results so far and stop")
    args = p.parse_args()
    log = args.work / "results.jsonl"
    records = read_jsonl(log)  # a line torn by a kill is dropped: its run is continued
    if not args.table:
        args.work.mkdir(parents=True, exist_ok=True)
        done = {(r["model"], r["recipe"], r["seed"], r["epochs"], r.get("train_limit")) for r in records}
        for seed in args.seeds:
            for model in args.models:
                for recipe in dict.fromkeys((recipe_for(model), DEFAULT_RECIPE)):  # alternating within a seed
                    if (model, recipe, seed, args.epochs, args.train_limit) in done:
                        continue
                    limit = f"-n{args.train_limit}" if args.train_limit else ""
                    out = args.work / "runs" / f"{model}-{recipe}-e{args.epochs}{limit}-s{seed}"
                    cmd = [sys.executable, "-m", "resnet", "train", "--out", str(out)]
                    if (out / "checkpoints" / "last.pt").exists():  # cut short last time: continue it
                        cmd += ["--resume", "auto"]
                    else:
                        shutil.rmtree(out, ignore_errors=True)  # nothing of it worth keeping
                        cmd += ["--config", recipe, "--model", model, "--epochs", str(args.epochs), "--seed",
                                str(seed), "--set", f"data.val_split={HOLD_OUT}"]
                        cmd += ["--train-limit", str(args.train_limit)] if args.train_limit else []
                    results, run_dir, wall = run_train(cmd, label=f"{model} {recipe} seed {seed}")
                    record = {"model": model, "recipe": recipe, "seed": seed, "epochs": args.epochs,
                              "train_limit": args.train_limit, "top1": holdout_top1(run_dir), "wall": wall,
                              "machine": cpu_summary(), "precision": results.get("precision")}
                    records.append(record)
                    append_line(log, json.dumps(record), "results")  # a kill leaves whole lines only
    print(table([r for r in records if (r["epochs"], r.get("train_limit")) == (args.epochs, args.train_limit)]))


if __name__ == "__main__":
    main()
