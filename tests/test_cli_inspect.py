"""`resnet models` and `resnet summary`, run as a user runs them (a real process)."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "resnet", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_models_table():
    out = run_cli("models").stdout
    for expected in ["| resnet18 ", "11,689,512", "1.814 G", "25,557,032", "4.089 G", "60,192,808",
                     "| resnet20 ", "269,722", "40.551 M", "19,421,274", "| plain56 ", "| resnet50d ", "8.75", "23.87"]:
        assert expected in out, expected


def test_models_pattern():
    out = run_cli("models", "resnet1*").stdout
    assert "resnet110" in out and "resnet18" in out and "resnet20" not in out


def test_summary_resnet50():
    out = run_cli("summary", "resnet50").stdout
    for expected in ["112x112x64", "56x56x64", "56x56x256", "28x28x512", "14x14x1024", "7x7x2048", "| 1000 |",
                     "parameters: 25,557,032", "4.089 G"]:
        assert expected.replace("| 1000 |", "1000") in out, expected


def test_summary_custom_input_and_classes():
    out = run_cli("summary", "resnet20", "--input-size", "1", "28", "28", "--num-classes", "10").stdout
    assert "28x28x16" in out and "7x7x64" in out and "parameters: 269,434" in out


def test_unknown_model_is_one_sentence_and_status_2():
    proc = run_cli("summary", "resnet51", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "resnet50" in proc.stderr
