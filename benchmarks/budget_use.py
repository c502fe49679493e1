"""How well `--budget` keeps to its time: whole-process wall time (``/usr/bin/time -v``: interpreter start, imports,
data, planning, training, evaluations, final test and the writes) against the budget, for short and long budgets on
Fashion-MNIST and on a folder of small images.

    python benchmarks/budget_use.py --folder DIGITS_DIR        # 60s and 10m on Fashion-MNIST, 3m on the folder
    python benchmarks/budget_use.py --runs 10m 10m 10m 2m 60s --folder ""   # the budget keeper's table

Goal: never over the budget, at least 95% of it used. Prints a table; each run's directory is under --work.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from resnet.device import cpu_summary
from resnet.table import format_table
from resnet.train.log import format_duration

WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")
RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak resident MiB, stdout) of ``cmd`` under /usr/bin/time -v."""
    print(shlex.join(cmd), flush=True)
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    h, m, s = WALL.search(proc.stderr).groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(RSS.search(proc.stderr).group(1)) / 1024, proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["60s", "10m"], help="budgets of the Fashion-MNIST runs")
    p.add_argument("--folder", default="", help="a folder of small images (benchmarks/make_folders.py digits DIR)")
    p.add_argument("--folder-budget", default="3m")
    p.add_argument("--work", type=Path, default=Path("runs/budget-use"))
    args = p.parse_args()
    jobs = [(budget, []) for budget in args.runs]
    if args.folder:
        jobs.append((args.folder_budget, ["--data", f"imagefolder:{args.folder}"]))
    rows = []
    for i, (budget, extra) in enumerate(jobs):
        out = args.work / f"{i}-{budget}{'-folder' if extra else ''}"
        cmd = [sys.executable, "-m", "resnet", "train", "--budget", budget, *extra, "--out", str(out)]
        wall, rss, _ = timed(cmd)
        r = json.loads((out / "results.json").read_text())
        seconds = r["budget"]["seconds"]
        rows.append([f"resnet train --budget {budget}{' ' + ' '.join(extra) if extra else ''}",
                     format_duration(seconds), f"{wall:.1f}", f"{100 * wall / seconds:.1f}",
                     "yes" if wall > seconds else "no", f"{r['budget']['planned_steps']:,}", f"{r['steps']:,}",
                     f"{r['epochs']:.2f}",
                     f"{r['test_top1']:.2f}", f"{rss:.0f}"])
    print(f"\nmachine: {cpu_summary()}; torch {torch.__version__}\n")
    print(format_table(["command", "budget", "wall s", "used %", "over", "planned steps", "steps", "epochs", "top-1 %",
                        "max RSS MiB"], rows, align="lrrrlrrrrr"))


if __name__ == "__main__":
    main()
