"""Fashion-MNIST as a folder of PNG files against the built-in set: does a run on one's own images train as fast and
as well as the in-memory benchmark it mirrors?

    python benchmarks/folder_vs_builtin.py                       # 3 seeds x 2 runs of 3 minutes
    python benchmarks/folder_vs_builtin.py --budget 10m --seeds 0

The folder (60,000 + 10,000 PNG files, written once by make_folders.py) is trained with no flag but --data and
--budget, so it gets the defaults chosen from its images; the built-in run is the default recipe. Both are measured
on the same 10,000 test images. Prints test top-1 (mean ± std and per seed), the training speed (median images per
second over the epochs) and the whole process's wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_folders import fashion_mnist  # noqa: E402
from train_run import run_train  # noqa: E402

from resnet.device import cpu_summary  # noqa: E402
from resnet.table import format_table  # noqa: E402


def run(cmd: list[str]) -> tuple[dict, float, float]:
    """(results.json, median training images per second, wall seconds) of one `resnet train`."""
    results, out, wall = run_train(cmd)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return results, statistics.median(r["img_per_s"] for r in epochs if r.get("img_per_s")), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", default="3m")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", type=Path, default=Path("runs/folder-vs-builtin"))
    args = p.parse_args()
    folder = args.work / "fashion-mnist-png"
    if not (folder / "val").is_dir():
        fashion_mnist(folder)
    python = [sys.executable, "-m", "resnet", "train", "--budget", args.budget]
    kinds = {"built-in (in memory)": [], f"folder of PNGs ({folder})": ["--data", f"imagefolder:{folder}"]}
    got: dict[str, list[tuple[dict, float, float]]] = {k: [] for k in kinds}
    for seed in args.seeds:  # alternate the two kinds, so a drift of the machine's speed hits both alike
        for i, (kind, extra) in enumerate(kinds.items()):
            out = args.work / f"{'builtin' if i == 0 else 'folder'}-{args.budget}-seed{seed}"
            got[kind].append(run([*python, *extra, "--seed", str(seed), "--out", str(out)]))
    rows = []
    for kind, runs in got.items():
        top1 = [r["test_top1"] for r, _, _ in runs]
        spread = f" ± {statistics.stdev(top1):.2f}" if len(top1) > 1 else ""
        rows.append([kind, f"{statistics.mean(top1):.2f}{spread}", " ".join(f"{t:.2f}" for t in top1),
                     f"{statistics.mean(s for _, s, _ in runs):.0f}", f"{statistics.mean(r['steps'] for r, _, _ in runs):.0f}",
                     f"{statistics.mean(w for _, _, w in runs):.0f}"])
    ratio = statistics.mean(s for _, s, _ in got[list(kinds)[1]]) / statistics.mean(s for _, s, _ in got[list(kinds)[0]])
    print(f"\nmachine: {cpu_summary()}; torch {torch.__version__}; budget {args.budget}; seeds {args.seeds}\n")
    print(format_table(["data", "test top-1 % (mean ± std)", "per seed", "img/s", "steps", "wall s"], rows,
                       align="lrlrrr"))
    print(f"\nfolder speed / built-in speed: {ratio:.2f}")


if __name__ == "__main__":
    main()
