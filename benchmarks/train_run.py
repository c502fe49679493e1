"""One command (a `resnet train`, a peer tool) run from a benchmark: its results, its run directory and its wall time, or the end of
the benchmark with the command's output when it fails."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_command(cmd: list[str], label: str = "", env: dict | None = None, what: str = ""
                ) -> tuple[subprocess.CompletedProcess, float]:
    """(the finished process, wall seconds) of ``cmd``, printed first with its ``label``; a failure ends the
    benchmark with the command's output, naming it ``what`` (default: the label)."""
    print(f"{f'[{label}] ' if label else ''}{shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{what or label or cmd[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc, wall


def run_train(cmd: list[str], label: str = "", env: dict | None = None) -> tuple[dict, Path, float]:
    """(results.json, run directory (``--out``), wall seconds) of ``cmd``."""
    _, wall = run_command(cmd, label, env, what=label or "resnet train")
    out = Path(cmd[cmd.index("--out") + 1])
    return json.loads((out / "results.json").read_text()), out, wall
