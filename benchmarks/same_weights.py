"""Do two revisions train the same weights, bit for bit? Deterministic CPU runs of the same recipes on the working
tree and on a git revision (default HEAD), compared tensor by tensor. For refactors that must change no result.

    python benchmarks/same_weights.py [--rev REV] [--iterations N]

Each case runs `resnet train ... --set deterministic=true` once per revision (the revision's code from `git archive`,
put first on PYTHONPATH) and prints one row per case: the sha256 of each run's tensors and whether they are equal.
(The files' own hashes are not compared: safetensors writes its metadata in no fixed order.) The cases: the default
recipe; a recipe with every per-step option on; a budget run (capped by ``max_epochs`` well inside its budget, so
that its length does not depend on the machine's speed, while its plan, keeper and stretched schedule all run); and a
resume from the checkpoint a third of the way in, whose final weights must also be those of the run it continues.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from resnet.table import format_table  # noqa: E402

COMMON = ["--train-limit", "3000", "--set", "deterministic=true", "--set", "log_every=7"]
CASES = {  # name -> (the run's length, what else it sets)
    "default recipe (auto precision, val split)": ("iterations", []),
    "fp32, EMA, label smoothing, MixUp/CutMix, erasing, step lr": ("iterations", [
        "--set", "ema=0.99", "--set", "label_smoothing=0.1", "--set", "data.mixup=0.2", "--set", "data.cutmix=1.0",
        "--set", "data.random_erasing=0.25", "--set", "schedule.name=step", "--set", "schedule.milestones=[0.5]",
        "--set", "precision=fp32", "--set", "data.val_split=0", "--set", "checkpoint_every=20"]),
    "budget 10m, ended by max_epochs=2": ("budget", ["--budget", "10m", "--set", "max_epochs=2"]),
    "resumed a third of the way in": ("resume", ["--set", "checkpoint_every=ITER/3", "--set", "keep_checkpoints=100"]),
}


def weights_hash(path: Path) -> str:
    state, h = load_file(str(path)), hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def resnet(src: Path, cwd: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "resnet", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)}, cwd=cwd)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def train(src: Path, out: Path, iterations: int, length: str, extra: list[str]) -> tuple[str, str]:
    """The hash of the run's final weights (and, for a resume, of the uninterrupted run it continues)."""
    extra = [arg.replace("ITER/3", str(iterations // 3)) for arg in extra]
    steps = [] if length == "budget" else ["--iterations", str(iterations)]
    resnet(src, out.parent, "train", *steps, "--out", str(out), *COMMON, *extra)
    whole = weights_hash(out / "model.safetensors")
    if length != "resume":
        return whole, ""
    resnet(src, out.parent, "train", "--resume", str(out / "checkpoints" / f"step-{iterations // 3:08d}.pt"))
    return weights_hash(out / "model.safetensors"), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to compare the working tree with")
    parser.add_argument("--iterations", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.rev, "src"], capture_output=True, check=True)
        (tmp / "rev.tar").write_bytes(archive.stdout)
        with tarfile.open(tmp / "rev.tar") as tar:
            tar.extractall(tmp / "rev", filter="data")
        rows = []
        for i, (name, (length, extra)) in enumerate(CASES.items()):
            ours, ours_whole = train(ROOT / "src", tmp / f"tree-{i}", args.iterations, length, extra)
            theirs, theirs_whole = train(tmp / "rev" / "src", tmp / f"rev-{i}", args.iterations, length, extra)
            same = ours == theirs and (not ours_whole or ours == ours_whole == theirs_whole)
            rows.append([name, ours, theirs, "yes" if same else "NO"])
    print(format_table(["case", "working tree", args.rev, "same weights"], rows, align="llll"))
    print("(a resume's row: the same weights on both revisions, and the same as its uninterrupted run's)")


if __name__ == "__main__":
    main()
