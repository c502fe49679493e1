"""Nothing lost: exact resume after SIGKILL, clean stop on SIGINT/SIGTERM, non-finite loss (failed writes:
test_write_faults.py)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from resnet.io import load_checkpoint
from resnet.runs import step_checkpoints

# A tiny deterministic run: 512 Fashion-MNIST images, batch 32, 2 epochs = 32 steps, one thread.
TINY = ["--train-limit", "512", "--batch-size", "32", "--epochs", "2", "--set", "threads=1", "--set",
        "deterministic=true", "--set", "data.val_split=0", "--set", "log_every=1", "--set", "keep_checkpoints=3",
        "--set", "schedule.name=cosine", "--set", "optim.lr=0.05", "--set", "data.random_erasing=0.5",
        "--set", "ema=0.9", "--set", "data.test_limit=300", "--set", "test_tta=none"]


def train_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "resnet", "train", "--out", str(out), *TINY, *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "steps.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while steps_logged(run_dir) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training did not reach the step in time"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = run(train_cmd(out, "--set", "checkpoint_every=4"))
    assert proc.returncode == 0, proc.stderr
    return load_file(str(out / "model.safetensors"))


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, uninterrupted):
    out = tmp_path / "run"
    # a step picked at random, mid-epoch or not; seeded (RESNET_TEST_SEED to vary it) so a failure reproduces
    kill_at = random.Random(int(os.environ.get("RESNET_TEST_SEED", "10"))).randint(5, 30)
    proc = subprocess.Popen(train_cmd(out, "--set", "checkpoint_every=4"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, out, kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()
    resumed = run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    final = load_file(str(out / "model.safetensors"))
    assert final.keys() == uninterrupted.keys()
    for key in final:
        assert torch.equal(final[key], uninterrupted[key]), f"{key} differs after resume (killed at step {kill_at})"
    # the logs hold each step once, as if the run had never stopped
    assert [int(line.split('"step": ')[1].split(",")[0]) for line in (out / "steps.jsonl").read_text().splitlines()] \
        == list(range(1, 33))


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_exits(tmp_path, sig, code, uninterrupted):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, out, 6)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "resnet train --resume auto --out" in stderr and "Traceback" not in stderr
    stopped_at = load_checkpoint(out / "checkpoints" / "last.pt")["run"]["step"]
    assert 6 <= stopped_at < 32
    resumed = run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)


def test_nonfinite_loss_stops_and_names_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    # a weight decay of 1e38 sends the weights to infinity within two steps
    proc = run(train_cmd(out, "--set", "checkpoint_every=1", "--set", "ema=0", "--set", "optim.weight_decay=1e38",
                         "--set", "schedule.name=constant"))
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert message.count("\n") == 0 and "Traceback" not in message
    assert re.search(r"the (loss|weights) became (nan|inf|-inf) at step \d+;", message), message
    bad_step = int(message.split("at step ")[1].split(";")[0])
    assert bad_step > 1  # the first step starts from finite He-initialised weights
    last_good = step_checkpoints(out / "checkpoints")[-1]
    assert str(last_good) in message and f"init_from={last_good}" in message
    ckpt = load_checkpoint(last_good)
    assert ckpt["run"]["step"] == bad_step - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "model.safetensors").exists()


def test_run_killed_before_its_first_checkpoint_restarts_with_resume_auto(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, out, 3)  # the first checkpoint comes at the epoch end, step 16
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((out / "checkpoints").glob("*.pt")) and (out / "config.yaml").is_file()
    again = run(train_cmd(out))  # a new run in the same directory is refused: it holds a run ...
    assert again.returncode == 2 and "already holds a run; continue it with --resume auto" in again.stderr
    resumed = run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr  # ... and --resume auto starts it again from step 0
    assert "starting the run again from step 0" in resumed.stdout
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(final[k], uninterrupted[k]) for k in final)


def test_a_resume_that_extends_the_run_keeps_config_yaml_and_records_the_change(tmp_path):
    """config.yaml stays what the user first asked for; a resume's own overrides go to run.json, and a later resume
    without them still follows them (the run does not shrink back to its first length)."""
    out = tmp_path / "run"
    first = run([*train_cmd(out), "--iterations", "8", "--set", "data.test_limit=200"])
    assert first.returncode == 0, first.stderr
    asked = (out / "config.yaml").read_bytes()
    longer = run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out), "--iterations", "12"])
    assert longer.returncode == 0, longer.stderr
    assert "resumed from" in longer.stdout and "at step 8" in longer.stdout
    assert (out / "config.yaml").read_bytes() == asked
    state = json.loads((out / "run.json").read_text())
    assert state["changes"] == {"iterations": 12} and state["step"] == state["total_steps"] == 12
    again = run([sys.executable, "-m", "resnet", "train", "--resume", "auto", "--out", str(out)])
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "results.json").read_text())["steps"] == 12
