"""One `resnet train` command run from a benchmark: its results, its run directory and its wall time, or the end of
the benchmark with the command's output when it fails."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_train(cmd: list[str], label: str = "") -> tuple[dict, Path, float]:
    """(results.json, run directory (``--out``), wall seconds) of ``cmd``."""
    print(f"{f'[{label}] ' if label else ''}{shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{label or 'resnet train'} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = Path(cmd[cmd.index("--out") + 1])
    return json.loads((out / "results.json").read_text()), out, wall
