"""Multi-process training through torchrun on CPU (gloo): equivalence with one process, exact evaluation across
ranks, resuming on another number of processes, surviving a killed worker, and two nodes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

# Augmentation off: with SyncBatchNorm the only difference between 1 and N processes is floating-point summation
# order. A small lr keeps the first steps near-linear, so that difference is not amplified beyond recognition. The
# tolerance below was measured with ResNet-20, so these runs keep it rather than the default recipe's ResNet-14.
NET = "resnet20"
BASE = ["--model", NET, "--train-limit", "512", "--set", "threads=1", "--set", "data.val_split=0",
        "--set", "data.crop_padding=0",
        "--set", "data.flip=false", "--set", "ema=0", "--set", "log_every=1", "--set", "schedule.name=constant",
        "--set", "schedule.warmup_epochs=0",
        "--set", "optim.lr=0.002", "--set", "optim.lr_batch_size=64", "--set", "precision=fp32",
        "--set", "label_smoothing=0", "--set", "data.test_limit=256", "--set", "test_tta=none"]
SYNC = ["--set", "sync_bn=true"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
RESNET = [sys.executable, "-m", "resnet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def update_distance(a: Path, b: Path) -> float:
    """||w_a - w_b|| / ||w_a - w_init|| over all parameters: how far apart two runs' weight updates are."""
    from resnet.models import create_model

    torch.manual_seed(0)  # the trainer's initialisation (seed 0)
    init = create_model(NET, in_chans=1, num_classes=10).state_dict()
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    keys = [k for k in wa if wa[k].is_floating_point() and "running" not in k]
    apart = sum(((wa[k].double() - wb[k].double()) ** 2).sum() for k in keys) ** 0.5
    moved = sum(((wa[k].double() - init[k].double()) ** 2).sum() for k in keys) ** 0.5
    return float(apart / moved)


def step_losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run_dir / "steps.jsonl").read_text().splitlines()]


# Tolerance (fp32): the updates of 1 and 2 processes may differ by 5% of their size. Measured on this 2-core machine:
# 1.7% for 2 processes with SyncBN, 2.1% for the same single process with 2 threads instead of 1 (summation order
# alone), 1.3% and 0.4% for 3 + 3 steps resumed across 2 -> 1 and 1 -> 2 processes, and 11.6% for 2 processes
# without SyncBN (the control below that the test must tell apart).
TOLERANCE = 0.05


def test_two_processes_with_half_batch_equal_one_process(tmp_path):
    one, two, nosync = tmp_path / "one", tmp_path / "two", tmp_path / "nosync"
    run(RESNET + ["train", "--out", str(one), "--batch-size", "64", "--iterations", "5", *BASE])
    run(RESNET + ["train", "--nproc", "2", "--out", str(two), "--batch-size", "32", "--iterations", "5", *BASE, *SYNC])
    run(RESNET + ["train", "--nproc", "2", "--out", str(nosync), "--batch-size", "32", "--iterations", "5", *BASE])
    assert json.loads((two / "results.json").read_text())["world_size"] == 2
    assert update_distance(one, two) < TOLERANCE
    assert update_distance(one, nosync) > TOLERANCE  # per-process BN statistics are detectably different
    assert len(step_losses(one)) == 5 and step_losses(one) == pytest.approx(step_losses(two), abs=1e-3)


def _eval_worker(rank: int, world: int, init_file: str, results: dict) -> None:
    from resnet.data.datasets import MemoryDataset
    from resnet.data.memory import MemoryLoader
    from resnet.models import create_model
    from resnet.evaluate import evaluate

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = MemoryDataset(torch.randint(0, 256, (101, 1, 12, 12), generator=g, dtype=torch.uint8),
                         torch.randint(0, 3, (101,), generator=g), ["a", "b", "c"])
    model = create_model("resnet20", in_chans=1, num_classes=3)
    loader = MemoryLoader(data, 16, device=torch.device("cpu"), mean=(0.5,), std=(0.25,), train=False, rank=rank,
                          world=world)
    r = evaluate(model, loader.epoch(0), device=torch.device("cpu"), precision="fp32", num_classes=3)
    results[rank] = (r.count, r.top1, r.top5, r.loss, r.confusion.tolist())
    dist.destroy_process_group()


def test_evaluation_counts_every_example_once_and_ranks_agree(tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_eval_worker, args=(2, str(tmp_path / "rdzv"), results), nprocs=2)
    single = manager.dict()
    mp.spawn(_eval_worker, args=(1, str(tmp_path / "rdzv1"), single), nprocs=1)
    assert results[0][0] == results[1][0] == 101  # odd size: no padded duplicates
    assert results[0] == results[1]  # every rank sees the same metrics
    assert results[0][:3] == single[0][:3] and results[0][4] == single[0][4]
    assert results[0][3] == pytest.approx(single[0][3], rel=1e-5)


@pytest.fixture(scope="module")
def six_steps_on_one_process(tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "run"
    run(RESNET + ["train", "--out", str(ref), "--batch-size", "32", "--iterations", "6", *BASE])
    return ref


@pytest.mark.parametrize("first,second", [((2, 16), (1, 32)), ((1, 32), (2, 16))])
def test_resume_on_another_number_of_processes(tmp_path, first, second, six_steps_on_one_process):
    """3 steps on `first` processes, then 3 more on `second`, equal 6 steps on one process (same global batch).

    The per-step losses show that the resumed run saw the same batches in the same order at the same lr (the schedule
    is constant: a warm-up would be cut to fit the first leg's 3 steps)."""
    ref, split = six_steps_on_one_process, tmp_path / "split"
    (n1, b1), (n2, b2) = first, second
    run(RESNET + ["train", "--nproc", str(n1), "--out", str(split), "--batch-size", str(b1), "--iterations", "3",
                  *BASE, *SYNC])
    proc = run(RESNET + ["train", "--nproc", str(n2), "--resume", "auto", "--out", str(split), "--batch-size",
                         str(b2), "--iterations", "6"])
    assert "resumed from" in proc.stdout
    assert step_losses(split) == pytest.approx(step_losses(ref), abs=1e-3)
    assert update_distance(ref, split) < TOLERANCE


def test_resume_with_another_global_batch_is_refused(tmp_path):
    out = tmp_path / "run"
    run(RESNET + ["train", "--out", str(out), "--batch-size", "32", "--iterations", "2", *BASE])
    proc = subprocess.run(RESNET + ["train", "--resume", "auto", "--out", str(out), "--batch-size", "16",
                                    "--iterations", "4"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "global batch of 32" in proc.stderr and "Traceback" not in proc.stderr


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_killed_worker_restarts_the_group_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = TORCHRUN + ["--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "-m", "resnet", "train",
                      "--out", str(out), "--batch-size", "16", "--iterations", "40", "--set", "checkpoint_every=5",
                      *BASE]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    steps = out / "steps.jsonl"
    deadline = time.time() + 300
    while not (steps.exists() and len(steps.read_text().splitlines()) >= 13):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "resumed from" in stdout  # the restarted group continued from a checkpoint, not from scratch
    logged = [json.loads(line)["step"] for line in steps.read_text().splitlines()]
    assert logged == list(range(1, 41))
    assert (out / "model.safetensors").is_file()


def test_two_nodes_on_loopback(tmp_path):
    out, port = tmp_path / "run", free_port()

    def node(rank: int) -> subprocess.Popen:
        cmd = TORCHRUN + ["--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), "-m", "resnet", "train", "--out", str(out),
                          "--batch-size", "16", "--iterations", "6", *BASE]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})

    nodes = [node(0), node(1)]
    outputs = [p.communicate(timeout=600) for p in nodes]
    for p, (_, err) in zip(nodes, outputs):
        assert p.returncode == 0, err[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 6
    assert "run directory" in outputs[0][0] and "run directory" not in outputs[1][0]  # only rank 0 prints
