"""The same folder and the same minutes, side by side: resnet's defaults against what a user would pick instead,
fastai and Ultralytics, each from scratch on the folder's train/ and measured on its val/.

    pip install -e '.[bench]'                     # fastai and ultralytics (nothing else needs them)
    python benchmarks/make_folders.py icons-64 folders/icons-64     # and the other folders, see there
    python benchmarks/peers.py --folders folders/* --budgets 3m 10m --seeds 0 1 2

Each run is one command, and its budget covers the whole command, start-up included:
- resnet: `resnet train --data imagefolder:DIR --budget B --seed S` (the defaults chosen from the folder's images);
- fastai: benchmarks/peer_fastai.py, fastai's documented from-scratch script (``vision_learner(dls, resnet18,
  pretrained=False)``, ``Resize(size)``, ``aug_transforms(size=size, min_scale=0.75)``, batch 64,
  ``fit_one_cycle(n)``) with n fitted to the budget from timed training batches, as fastai has no budget;
- Ultralytics: `yolo classify train data=DIR model=yolo11n-cls.yaml pretrained=False imgsz=size time=H epochs=1000
  seed=S device=cpu plots=False`, its own ``time=`` budget (in hours, training only) short by what its start-up and
  final validation take, so that the command as a whole keeps to the budget.
``size`` is the folder's median shorter side (what resnet chooses too). Ultralytics reports its best epoch on val/
(best.pt, picked by (top-1 + top-5) / 2); resnet and fastai report their final weights. Runs alternate tools within
each seed and accumulate in ``--work``/results.jsonl, so an interrupted comparison runs only what is missing. The
table gives val/ top-1 (median of the seeds, and their range), the command's wall time and the training images per
second (images trained / seconds from the first step to the last, the evaluations on the way included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_run import run_command, run_train  # noqa: E402

from resnet.config import parse_duration  # noqa: E402
from resnet.data.folder_stats import inspect_folder  # noqa: E402
from resnet.device import cpu_summary  # noqa: E402
from resnet.table import format_table  # noqa: E402

HERE = Path(__file__).resolve().parent
TOOLS = ("resnet", "fastai", "ultralytics")
ULTRALYTICS_OUTSIDE_S = 8.0  # seconds of an Ultralytics command outside its time= budget: start-up, final validation


def run_resnet(folder: Path, size: int, budget_s: float, seed: int, out: Path) -> dict:
    results, _, wall = run_train([sys.executable, "-m", "resnet", "train", "--data", f"imagefolder:{folder}",
                                  "--budget", f"{budget_s:g}s", "--seed", str(seed), "--out", str(out)])
    state = json.loads((out / "run.json").read_text())
    images = results["steps"] * state["global_batch"]
    return {"top1": results["test_top1"], "wall": wall, "epochs": results["epochs"],
            "img_per_s": images / (results["train_minutes"] * 60)}


def run_fastai(folder: Path, size: int, budget_s: float, seed: int, out: Path) -> dict:
    proc, wall = run_command([sys.executable, str(HERE / "peer_fastai.py"), str(folder), str(size), str(budget_s),
                              str(seed), "--started", repr(time.time())], "fastai")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"top1": got["top1"], "wall": wall, "epochs": got["epochs"], "img_per_s": got["img_per_s"]}


def run_ultralytics(folder: Path, size: int, budget_s: float, seed: int, out: Path) -> dict:
    hours = (budget_s - ULTRALYTICS_OUTSIDE_S) / 3600
    yolo = Path(sys.executable).with_name("yolo")
    proc, wall = run_command([str(yolo), "classify", "train", f"data={folder}", "model=yolo11n-cls.yaml",
                              "pretrained=False", f"imgsz={size}", f"time={hours:.6f}", "epochs=1000", f"seed={seed}",
                              "device=cpu", "plots=False", f"project={out.parent}", f"name={out.name}",
                              "exist_ok=True"], "ultralytics", env={**os.environ, "YOLO_OFFLINE": "1"})
    text = proc.stdout + proc.stderr
    final = re.findall(r"^\s+all\s+([\d.]+)\s+([\d.]+)\s*$", text.split("Validating")[-1], re.M)
    rows = (out / "results.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    train_images = sum(1 for _ in (folder / "train").rglob("*") if _.is_file())
    epochs = int(float(last["epoch"]))
    return {"top1": 100 * float(final[-1][0]), "wall": wall, "epochs": epochs,
            "img_per_s": epochs * train_images / float(last["time"])}


RUNNERS = {"resnet": run_resnet, "fastai": run_fastai, "ultralytics": run_ultralytics}


def summary(records: list[dict], folders: list[str], budgets: list[str], tools: list[str]) -> str:
    rows = []
    for folder in folders:
        for budget in budgets:
            medians = {}
            for tool in tools:
                got = [r for r in records if (r["folder"], r["budget"], r["tool"]) == (folder, budget, tool)]
                if not got:
                    continue
                top1 = sorted(r["top1"] for r in got)
                medians[tool] = statistics.median(top1)
                rows.append([folder, budget, tool, f"{medians[tool]:.1f}",
                             f"{top1[0]:.1f}-{top1[-1]:.1f}" if len(top1) > 1 else "", len(top1),
                             f"{statistics.median(r['wall'] for r in got):.0f}",
                             f"{statistics.median(r['img_per_s'] for r in got):.0f}",
                             f"{statistics.median(r['epochs'] for r in got):.1f}"])
            peers = [m for t, m in medians.items() if t != "resnet"]
            if "resnet" in medians and peers:
                lead = round(medians["resnet"] - max(peers), 1) + 0.0  # fastai's float32 accuracy: no "-0.0"
                rows[-len(medians)][2] += f" ({lead:+.1f} vs the best peer)"
    return format_table(["folder", "budget", "tool", "val top-1 % (median)", "range", "seeds", "wall s", "img/s",
                         "epochs"], rows, align="lllrrrrrr")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folders", type=Path, nargs="+", required=True, help="folders with train/ and val/")
    p.add_argument("--budgets", nargs="+", default=["3m", "10m"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    p.add_argument("--work", type=Path, default=Path("runs/peers"))
    p.add_argument("--table", action="store_true", help="print the table of the results so far and stop")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "results.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done = {(r["folder"], r["budget"], r["tool"], r["seed"]) for r in records}
    for budget in [] if args.table else args.budgets:
        for seed in args.seeds:
            for folder in args.folders:
                size = inspect_folder(folder).short_side
                for tool in args.tools:
                    if (folder.name, budget, tool, seed) in done:
                        continue
                    out = (args.work / "runs" / f"{folder.name}-{budget}-{tool}-{seed}").resolve()
                    record = {"folder": folder.name, "budget": budget, "tool": tool, "seed": seed, "size": size,
                              **RUNNERS[tool](folder.resolve(), size, parse_duration(budget), seed, out)}
                    with log.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    records.append(record)
    print(f"\nmachine: {cpu_summary()}\n")
    print(summary(records, [f.name for f in args.folders], args.budgets, args.tools))


if __name__ == "__main__":
    main()
