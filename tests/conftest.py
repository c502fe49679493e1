"""Shared fixtures. Under CI (``CI`` set) a missing optional dependency or data set is a failure, never a skip.

The suite runs in parallel with pytest-xdist (`make test`: ``-n auto``). Each worker gets its share of the cores
(torch threads, and OMP_NUM_THREADS for the processes tests start); the shared training run is built once, by the
first worker that needs it, and read from disk by the others.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from filelock import FileLock

# Image-folder scan caches of the tests go to a temporary folder, never to the user's ~/.cache/resnet.
os.environ.setdefault("RESNET_CACHE", tempfile.mkdtemp(prefix="resnet-test-cache-"))

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)  # for the `python -m resnet` processes the tests start

def require_module(name: str):
    """Import ``name`` or skip locally; under CI a missing module fails the test, since it means a broken install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed but CI must test it: `make test` installs the dev extra")
        pytest.skip(f"{name} is not installed")


def run_cli(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m resnet ARGS`` in a fresh process, output captured as text."""
    return subprocess.run([sys.executable, "-m", "resnet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def hide_modules(monkeypatch, *names: str) -> None:
    """Make importing any of ``names`` (or their submodules) fail, as on a machine without them."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short real training run of the default recipe (ResNet-14) on a Fashion-MNIST subset, shared by the eval /
    predict / export tests (and by every xdist worker: the first one trains under a file lock, the others find its
    finished run directory)."""
    from resnet.config import DEFAULT_RECIPE, load_config
    from resnet.train import RunResult, train

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the workers' common base directory
    out = shared / "shared-runs" / "fmnist"
    with FileLock(str(shared / "shared-runs.lock")):
        if not (out / "results.json").is_file():
            cfg = load_config(DEFAULT_RECIPE, {"out": str(out), "epochs": 3, "batch_size": 64,
                                                "data.train_limit": 8000, "data.val_split": 1000},
                              ["optim.lr=0.1", "schedule.name=cosine", "schedule.warmup_epochs=0.2", "log_every=20",
                               "test_tta=none"])
            train(cfg, log=lambda *a, **k: None)
    return RunResult(out, None, json.loads((out / "results.json").read_text()))


def main_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``resnet ARGV`` in this process: its exit status, standard output and standard error."""
    from resnet.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def kill_at_first_checkpoint(argv: list[str], checkpoints: Path) -> None:
    """``resnet ARGV`` in a child process, killed (SIGKILL: no chance to clean up) as soon as the directory
    ``checkpoints`` holds a step checkpoint; fails if the command ends before that."""
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "resnet", *argv], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*.pt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "it ended before it could be killed: " + process.stderr.read()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
