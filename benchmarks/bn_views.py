"""Which training images precise BatchNorm should take: the saved weights of finished folder runs (e.g. those of
benchmarks/holdout.py), their BatchNorm statistics re-estimated two ways, each scored on the run's own test set.

    python benchmarks/bn_views.py runs/holdout/runs/w3_AdamW_2e-3_wd_0.05-icons-*

- unaugmented: the training images as evaluation sees them (the whole image at the evaluation size);
- augmented: training batches as training makes them (random-resized crops from 25% of the image, flips), three
  passes over the set.
No training: only the statistics differ between the columns, the weights are the run's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from resnet.data import MemoryLoader, open_split
from resnet.data.folder_memory import decode_folder, stored_size
from resnet.data.memory import Augment
from resnet.device import cpu_summary, resolve_precision
from resnet.evaluate import black_level, evaluate
from resnet.table import format_table
from resnet.train.precise_bn import recompute_bn
from resnet.weights import load_model_and_card

MIN_SCALE = 0.25  # the colour-folder recipe's random-resized crops
PASSES = 3  # augmented passes over the training set


def scores(run: Path, device: torch.device, precision: str) -> tuple[float, float]:
    """Test top-1 of ``run``'s weights with statistics from unaugmented and from augmented training images."""
    model, card = load_model_and_card(run, device)
    model = model.to(memory_format=torch.channels_last)
    mode = "L" if card.input_size[0] == 1 else "RGB"
    train, test = open_split(card.dataset, "train"), open_split(card.dataset, "test")
    size, stored = card.crop, stored_size(card.crop, True)
    train_set, _ = decode_folder(train.samples, train.classes, mode, stored, stored)
    test_set, _ = decode_folder(test.samples, train.classes, mode, card.resize, size)
    common = dict(device=device, mean=card.mean, std=card.std)
    test_loader = MemoryLoader(test_set, 256, train=False, **common)

    def top1() -> float:
        return evaluate(model, test_loader.epoch(0), device=device, precision=precision,
                        num_classes=len(card.classes), fill=black_level(card.mean, card.std)).top1

    plain = MemoryLoader(train_set, 128, train=False, resize=size, **common)
    recompute_bn(model, plain.epoch(0), device, precision)
    unaugmented = top1()
    augmented = MemoryLoader(train_set, 128, train=True, augment=Augment(0, True, 0.0, min_scale=MIN_SCALE, size=size),
                             **common)
    recompute_bn(model, (batch for e in range(PASSES) for batch in augmented.epoch(e)), device, precision)
    return unaugmented, top1()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", help="run directories of image-folder runs")
    args = p.parse_args()
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    rows, diffs = [], []
    for run in args.runs:
        plain, augmented = scores(run, device, precision)
        diffs.append(augmented - plain)
        rows.append([run.name, f"{plain:.2f}", f"{augmented:.2f}", f"{augmented - plain:+.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    print(f"\nmachine: {cpu_summary()}; mean difference {sum(diffs) / len(diffs):+.2f}\n")
    print(format_table(["run", "unaugmented top-1 %", "augmented top-1 %", "difference"], rows, align="lrrr"))


if __name__ == "__main__":
    main()
