"""`resnet models` and `resnet summary`, run as a user runs them (a real process)."""

from __future__ import annotations

import os
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


def test_help_lists_every_command_and_loads_none():
    """`resnet --help` needs only the table of commands: no command's module is imported."""
    code = ("import sys; from resnet.cli import COMMANDS, main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
            "print(sorted(m for m in sys.modules if m.startswith('resnet.cli.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "500"})  # one line per command
    assert proc.returncode == 0, proc.stderr
    *help_lines, loaded = proc.stdout.splitlines()
    assert loaded == "[]"
    from resnet.cli import COMMANDS

    text = " ".join(" ".join(help_lines).split())
    for name, line in COMMANDS.items():
        assert f"{name} {line}" in text, name


def test_a_command_imports_its_own_module_only():
    code = ("import sys; from resnet.cli import main; main(['recipes'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('resnet.cli.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "degradation-fashion-mnist" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "['resnet.cli.recipes']"


def test_every_command_has_its_options_in_its_help(capsys):
    """Each command module gives its parser (arguments with their help) and its handler; --help exits 0."""
    import pytest

    from resnet.cli import COMMANDS, main

    expected = {"train": ["--budget DURATION", "--resume PATH|auto", "fashion-mnist"], "eval": ["--tta {"],
                "predict": ["--backend {auto,"], "export": ["onnx |"], "degradation": ["--profile {default,"],
                "explain": ["Needs captum"], "summary": ["--input-size C H W"]}
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: resnet {name}")
        for fragment in expected.get(name, []):
            assert fragment in text, (name, fragment)
