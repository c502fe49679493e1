"""Benchmarks that must keep working where they cannot be measured: the GPU check's and the GPU study's CPU smoke runs, the
MFU peak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_gpu_check_runs_on_the_cpu_in_quick_mode():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--quick"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    assert "FAIL" not in table
    assert table.count("| pass |") == 4  # outputs of two models, torchvision parity, training steps
    for check in ("resnet18: output on cpu = CPU", "resnet50 = torchvision resnet50", "training step on cpu",
                  "resnet50 training, 64 px, batch 4", "resnet train --budget 30s on cpu: final model"):
        assert check in table


def test_matmul_peak_is_measured_in_the_asked_precision():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from train_speed import matmul_peak_tflops
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert 0.001 < matmul_peak_tflops(torch.device("cpu"), "fp32", seconds=0.05) < 100


def test_the_gpu_study_runs_its_cells_at_once_and_writes_the_study_on_the_cpu_in_quick_mode(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_study.py"), "--device", "cpu", "--quick",
                           "--depths", "20", "32", "--jobs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 cells of 24 iterations, 2 at once on cpu" in proc.stdout
    assert proc.stdout.count(": training (24 iterations)") == 4 and "training: " in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["recipes"] == ["cifar10-resnet20-paper", "cifar10-resnet32-paper"]
    assert results["data"] == "fashion-mnist" and len(results["runs"]) == 4 and results["iterations"] == 24
    assert "residual_cures" in results["verdicts"] and (out / "degradation.png").is_file()

    packed = tmp_path / "packed"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_study.py"), "--pack", str(packed)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in packed.iterdir()) == sorted(["train-images-idx3-ubyte.gz",
                                                                "train-labels-idx1-ubyte.gz",
                                                                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
