"""Does the EMA of the weights help? A paired comparison on runs already trained with `ema` on: the EMA weights and the
final weights of each run's last checkpoint, evaluated on the same test set with the run's own test-time augmentation.

    python benchmarks/ema_vs_final.py runs/time-to-accuracy/seed0 runs/time-to-accuracy/seed1 ...

The EMA is a passive copy (it never feeds back into training), so both numbers come from the same training run: the
difference is the EMA's alone, free of the seed-to-seed and machine-speed noise that separates two runs. Prints a
Markdown table per run (test top-1 with and without the TTA, in the run's precision) and the mean difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from resnet.device import cpu_summary
from resnet.evaluate import evaluate_on_test_set, run_test_tta
from resnet.table import format_table
from resnet.weights import checkpoint_weights, load_into, load_model_and_card


def compare(run: Path) -> tuple[list[str], float]:
    """The table row of ``run`` (precision, TTA, EMA and final top-1 without / with the TTA) and final - EMA with it."""
    checkpoint = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    if not checkpoint.get("ema"):
        sys.exit(f"{run} was trained without an EMA (ema: 0); pick runs trained with one")
    precision = json.loads((run / "results.json").read_text())["precision"]
    tta = run_test_tta(run)
    model, card = load_model_and_card(run)
    scores = {}
    for which in ("ema", "final"):
        load_into(model, checkpoint_weights(checkpoint, which), str(run))
        scores[which] = [evaluate_on_test_set(model, card, str(run), data=None, data_root=None, tta=t, batch_size=256,
                                              device=torch.device("cpu"), precision=precision).result.top1
                         for t in dict.fromkeys(["none", tta])]
    row = [str(run), precision, tta, *(f"{s:.2f}" for s in (*scores["ema"], *scores["final"]))]
    return row, scores["final"][-1] - scores["ema"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories trained with an EMA")
    args = parser.parse_args()
    compared = [compare(run) for run in args.runs]
    rows = [[*row, f"{gain:+.2f}"] for row, gain in compared]
    gains = [gain for _, gain in compared]
    print(f"machine: {cpu_summary()}; PyTorch {torch.__version__}; mean final - EMA (with TTA) over {len(gains)} "
          f"run(s): {statistics.fmean(gains):+.3f}; final >= EMA in {sum(g >= 0 for g in gains)} of {len(gains)}\n")
    print(format_table(["run", "precision", "TTA", "EMA, no TTA", "EMA, TTA", "final, no TTA", "final, TTA",
                        "final - EMA"], rows, align="lllrrrrr"))


if __name__ == "__main__":
    main()
