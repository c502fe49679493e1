"""Choose a folder recipe without looking at the folder's val/: variants of `resnet train` run on hold-out splits
carved from the folders' own train/, several splits each, and compared pairwise on the same splits.

    python benchmarks/holdout.py --folders DIR... --variants shipped "min scale 0.5" --budget 3m --splits 0 1 2
    python benchmarks/holdout.py --folders DIR... --list            # the variants and their flags

Split k of a folder is a seeded, class-stratified 80/20 cut of its train/ (``holdout/<folder>-<k>/``, links to the
files); its val/ is never read. Each (variant, folder, split) is one `resnet train --data imagefolder:SPLIT --budget B
--seed k` with the variant's flags; results accumulate in ``results.jsonl`` under --work, so an interrupted or
extended comparison runs only what is missing. The table gives each variant's mean hold-out top-1 per folder and
its mean difference from the first variant named, paired on the same splits, with the standard error of that
difference (a difference within about two standard errors is not shown to be one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_run import run_train  # noqa: E402

from resnet.data.folder_stats import inspect_folder  # noqa: E402
from resnet.device import cpu_summary  # noqa: E402
from resnet.images import IMAGE_SUFFIXES  # noqa: E402
from resnet.table import format_table  # noqa: E402

# Variant name -> flags added to `resnet train --data imagefolder:SPLIT --budget B --seed K` (on top of the defaults a
# folder gets); ``{expression}`` in a flag is evaluated with ``size``, the folder's median shorter side, e.g.
# ``--set data.image_size={size * 3 // 4}``. "before" runs the code of --before (a checkout of the project as it was).
VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "before": [],
}


def split_folder(folder: Path, k: int, root: Path, share: float = 0.2) -> Path:
    """Split k of ``folder``'s train/: per class, a seeded ``share`` of the files as val/, the rest as train/ (links,
    written once)."""
    out = root / f"{folder.name}-{k}"
    if (out / "done").is_file():
        return out
    rng = random.Random(k)
    for cls in sorted(p for p in (folder / "train").iterdir() if p.is_dir()):
        files = sorted(p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        rng.shuffle(files)
        n_val = max(1, round(share * len(files)))
        for split, part in (("val", files[:n_val]), ("train", files[n_val:])):
            (out / split / cls.name).mkdir(parents=True, exist_ok=True)
            for f in part:
                link = out / split / cls.name / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    (out / "done").write_text("")
    return out


def expand(flags: list[str], size: int) -> list[str]:
    """The flags with every ``{expression}`` replaced by its value for a folder of ``size``-px images."""
    return [re.sub(r"\{([^}]*)\}", lambda m: str(eval(m.group(1), {"size": size})), flag) for flag in flags]


def run_one(cmd: list[str], out: Path, env: dict | None = None) -> dict:
    results, _, wall = run_train(cmd, env=env)
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["img_per_s"] for r in epochs if r.get("img_per_s")]
    return {"top1": results["test_top1"], "wall": wall, "epochs": results["epochs"],
            "img_per_s": statistics.median(speeds) if speeds else None}


def table(records: list[dict], names: list[str], folders: list[str]) -> str:
    by = {(r["variant"], r["folder"], r["split"]): r for r in records}
    ref = names[0]
    rows = []
    for name in names:
        cells, diffs = [], []
        for folder in folders:
            got = [r["top1"] for (v, f, _), r in by.items() if v == name and f == folder]
            cells.append(f"{statistics.mean(got):.2f} ({len(got)})" if got else "")
        for (v, f, k), r in by.items():
            if v == name and (ref, f, k) in by:
                diffs.append(r["top1"] - by[(ref, f, k)]["top1"])
        speed = [r["img_per_s"] for (v, _, _), r in by.items() if v == name and r.get("img_per_s")]
        diff = ""
        if name != ref and len(diffs) > 1:
            diff = f"{statistics.mean(diffs):+.2f} ± {statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}"
        rows.append([name, *cells, diff, f"{statistics.median(speed):.0f}" if speed else ""])
    return format_table(["variant", *[f"{f} (runs)" for f in folders], f"vs {ref} (paired, ± s.e.)", "img/s"],
                        rows, align="l" + "r" * (len(folders) + 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folders", type=Path, nargs="+", required=True)
    p.add_argument("--variants", nargs="+", default=["shipped"])
    p.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", default="3m")
    p.add_argument("--work", type=Path, default=Path("runs/holdout"))
    p.add_argument("--before", type=Path, help="a checkout of the project as it was, for the variant 'before'")
    p.add_argument("--list", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="NAME=FLAGS",
                   help="define a variant on the command line: 'NAME=--set a=1 --set b=2'")
    args = p.parse_args()
    for spec in args.set:
        name, _, flags = spec.partition("=")
        VARIANTS[name] = shlex.split(flags)
    if args.list:
        for name, flags in VARIANTS.items():
            print(f"{name}: {shlex.join(flags)}")
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; --list shows them")
    log = args.work / "results.jsonl"
    args.work.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done = {(r["variant"], r["folder"], r["split"], r["budget"]) for r in records}
    for k in args.splits:  # split by split, variants alternating, so a drift of the machine hits all alike
        for folder in args.folders:
            split = split_folder(folder, k, args.work / "holdout")
            size = inspect_folder(folder).short_side
            for name in args.variants:
                if (name, folder.name, k, args.budget) in done:
                    continue
                out = args.work / "runs" / f"{name.replace(' ', '_')}-{folder.name}-{k}-{args.budget}"
                env = None
                if name == "before":
                    env = {**os.environ, "PYTHONPATH": str(args.before / "src")}
                cmd = [sys.executable, "-m", "resnet", "train", "--data", f"imagefolder:{split}", "--budget",
                       args.budget, "--seed", str(k), "--out", str(out), *expand(VARIANTS[name], size)]
                record = {"variant": name, "folder": folder.name, "split": k, "budget": args.budget,
                          **run_one(cmd, out, env)}
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                records.append(record)
    mine = [r for r in records if r["budget"] == args.budget and r["variant"] in args.variants
            and r["split"] in args.splits]
    print(f"\nmachine: {cpu_summary()}; budget {args.budget}; hold-out splits {args.splits}\n")
    print(table(mine, args.variants, [f.name for f in args.folders]))


if __name__ == "__main__":
    main()
