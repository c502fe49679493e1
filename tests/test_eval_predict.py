"""`resnet eval` and `resnet predict` on the run the tests trained, as real processes."""

from __future__ import annotations

import csv
import io
import json
import re

from PIL import Image

from resnet.data import open_split

from .conftest import run_cli


def test_eval_json_and_confusion(trained_run, tmp_path):
    proc = run_cli("eval", trained_run.run_dir, "--json", "--out", tmp_path)  # no --tta: the run's own
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["count"] == 10_000 and result["tta"] == trained_run.results["test_tta"]
    assert abs(result["top1"] - trained_run.results["test_top1"]) < 1e-6  # eval and the run agree
    assert abs(result["top5"] - trained_run.results["test_top5"]) < 1e-6
    assert [c["class"] for c in result["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    assert sum(c["count"] for c in result["per_class"]) == 10_000
    assert (tmp_path / "confusion.png").stat().st_size > 1000


def test_eval_defaults_to_the_tta_of_the_runs_final_test(tmp_path):
    from resnet.evaluate import run_test_tta

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "results.json").write_text(json.dumps({"test_tta": "flip"}))
    assert run_test_tta(tmp_path) == "flip" and run_test_tta(tmp_path / "checkpoints" / "last.pt") == "flip"
    assert run_test_tta(tmp_path / "elsewhere" / "model.safetensors") == "none"  # weights without a run: no TTA


def test_eval_table_with_tta(trained_run, tmp_path):
    proc = run_cli("eval", trained_run.run_dir / "checkpoints" / "last.pt", "--tta", "flip", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Ankle boot" in proc.stdout and "top-1" in proc.stdout and "tta flip" in proc.stdout
    top1 = float(re.search(r"top-1 ([0-9.]+)%", proc.stdout).group(1))
    assert abs(top1 - trained_run.results["test_top1"]) < 5  # two mirrored views of the same model
    # (the views of every mode, flip-translate's shifts among them, are checked in test_evaluate)


def write_test_images(folder, n=6):
    """Real Fashion-MNIST test images saved as files, in several modes and sizes, plus the true labels."""
    test = open_split("fashion-mnist", "test")
    folder.mkdir()
    labels = {}
    for i in range(n):
        arr = test.images[i, 0].numpy()
        img = Image.fromarray(arr, mode="L")
        if i % 3 == 1:
            img = img.convert("RGB").resize((84, 84))  # colour and larger: converted back and resized
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)
        labels[path.name] = test.classes[int(test.labels[i])]
    return labels


def test_predict_formats(trained_run, tmp_path):
    labels = write_test_images(tmp_path / "imgs")
    proc = run_cli("predict", trained_run.run_dir, tmp_path / "imgs", "--format", "json", "--topk", "3")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(labels)
    for r in results:
        assert len(r["top"]) == 3 and abs(sum(t["prob"] for t in r["top"]) - 1) < 0.5
        assert r["top"][0]["prob"] >= r["top"][1]["prob"]
    correct = sum(r["top"][0]["label"] == labels[r["path"].rsplit("/", 1)[1]] for r in results)
    assert correct >= len(labels) // 2
    table = run_cli("predict", trained_run.run_dir, tmp_path / "imgs" / "img0.jpg")
    assert table.returncode == 0 and "img0.jpg" in table.stdout
    rows = list(csv.reader(io.StringIO(run_cli("predict", trained_run.run_dir, tmp_path / "imgs", "--format",
                                               "csv").stdout)))
    assert rows[0] == ["path", "rank", "label", "prob", "error"] and len(rows) == 1 + 5 * len(labels)


def test_predict_reports_bad_files_and_predicts_the_rest(trained_run, tmp_path):
    write_test_images(tmp_path / "imgs", n=2)
    (tmp_path / "imgs" / "broken.jpg").write_text("not an image")
    proc = run_cli("predict", trained_run.run_dir, tmp_path / "imgs", "--format", "json")
    assert proc.returncode == 2
    results = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(proc.stdout)}
    assert "error" in results["broken.jpg"] and "top" in results["img0.jpg"]
    assert "Traceback" not in proc.stderr
