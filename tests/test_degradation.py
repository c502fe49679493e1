"""`resnet degradation` on a tiny profile: two depths, a few dozen steps, a data subset."""

from __future__ import annotations

import json
import subprocess
import sys

TINY = ["--depths", "20", "32", "--iterations", "24", "--train-limit", "768", "--set", "data.test_limit=500",
        "--set", "log_every=4", "--set", "checkpoint_every=8", "--set", "threads=2"]


def test_tiny_study_writes_figure_and_tables_and_skips_finished_runs(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "resnet", "degradation", "--out", str(out), *TINY]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "degradation.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    assert [n["net"] for n in results["nets"]] == ["plain20", "plain32", "resnet20", "resnet32"]
    for net in results["nets"]:
        assert 0 <= net["train_error"] <= 100 and 0 <= net["test_error"] <= 100 and net["seeds"] == 1
    assert results["deeper_plain_trains_worse"]["answer"] in ("yes", "no")
    assert results["deeper_residual_trains_better"]["answer"] in ("yes", "no")
    table = (out / "results.md").read_text()
    assert "| plain32 | 1 |" in table and "Deeper plain net trains worse: **" in table
    for name in ("plain20", "plain32", "resnet20", "resnet32"):
        assert (out / f"{name}-seed0" / "results.json").is_file()
        steps = (out / f"{name}-seed0" / "steps.jsonl").read_text().splitlines()
        assert len(steps) == 6  # training error every 4 iterations
    stamp = (out / "plain20-seed0" / "results.json").stat().st_mtime_ns

    # An interrupted run (here: resnet32's results removed, its checkpoints kept) resumes; finished ones are skipped.
    (out / "resnet32-seed0" / "results.json").unlink()
    (out / "resnet32-seed0" / "model.safetensors").unlink()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished, skipped") == 3
    assert "resnet32 seed 0: resuming" in second.stdout
    assert (out / "plain20-seed0" / "results.json").stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["nets"][3]["net"] == "resnet32"


def test_bad_depths_are_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "resnet", "degradation", "--depths", "20", "21", "--out",
                           str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--depths" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
