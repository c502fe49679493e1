"""Benchmarks that must keep working where they cannot be measured: the GPU check's CPU smoke run, the MFU peak."""

from __future__ import annotations

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
