"""Real bad files and bad command lines: every case ends in one clear sentence, and nothing is written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.images import BadImageError, open_image

from .conftest import run_cli as resnet


def make_corpus(folder):
    """Every kind of file a real image folder holds, written by the test. Returns {name: expected} where
    expected is the decoded (mode, size) or the word 'bad'."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    expect = {}
    photo = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "RGB")
    photo.save(folder / "rgb.jpg", quality=90)
    expect["rgb.jpg"] = "ok"
    Image.new("RGB", (20, 20), (255, 0, 0)).convert("CMYK").save(folder / "cmyk.jpg")
    expect["cmyk.jpg"] = "ok"
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(folder / "sixteen.png")
    expect["sixteen.png"] = "ok"
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 255] + [0] * 765)
    pal.save(folder / "palette.png")
    expect["palette.png"] = "ok"
    Image.new("RGBA", (8, 8), (0, 255, 0, 10)).save(folder / "rgba.png")
    expect["rgba.png"] = "ok"
    Image.new("L", (30, 30), 200).save(folder / "gray.png")
    expect["gray.png"] = "ok"
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "tiny.png")
    expect["tiny.png"] = "ok"
    good = (folder / "rgb.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    expect["truncated.jpg"] = "bad"
    photo.save(folder / "full.png")
    (folder / "truncated.png").write_bytes((folder / "full.png").read_bytes()[:300])
    (folder / "full.png").unlink()
    expect["truncated.png"] = "bad"
    (folder / "empty.png").write_bytes(b"")
    expect["empty.png"] = "bad"
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    expect["notes.jpg"] = "bad"
    Image.new("L", (10_000, 6_000)).save(folder / "bomb.png")  # 60M pixels, a few kB on disk
    expect["bomb.png"] = "bad"
    return expect


def test_every_mode_decodes_correctly_and_bad_files_name_themselves(tmp_path):
    expect = make_corpus(tmp_path / "c")
    for name, what in expect.items():
        path = tmp_path / "c" / name
        if what == "bad":
            with pytest.raises(BadImageError) as info:
                open_image(path, "RGB")
            assert str(path) in str(info.value)
        else:
            assert open_image(path, "RGB").mode == "RGB" and open_image(path, "L").mode == "L"
    red = np.asarray(open_image(tmp_path / "c" / "cmyk.jpg", "RGB"))
    assert red[..., 0].min() > 200 and red[..., 1:].max() < 60  # CMYK red comes back red
    assert np.asarray(open_image(tmp_path / "c" / "sixteen.png", "L")).min() == 255  # 16-bit white stays white
    assert tuple(np.asarray(open_image(tmp_path / "c" / "palette.png", "RGB"))[0, 0]) == (0, 0, 255)
    assert tuple(np.asarray(open_image(tmp_path / "c" / "rgba.png", "RGB"))[0, 0]) == (0, 255, 0)
    assert np.asarray(open_image(tmp_path / "c" / "gray.png", "RGB"))[0, 0].tolist() == [200, 200, 200]
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_image(tmp_path / "c" / "bomb.png", "L")


def test_predict_on_the_whole_corpus(trained_run, tmp_path):
    expect = make_corpus(tmp_path / "c")
    proc = subprocess.run([sys.executable, "-m", "resnet", "predict", str(trained_run.run_dir), str(tmp_path / "c"),
                           "--format", "json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "could not be read" in proc.stderr and "Traceback" not in proc.stderr
    results = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(proc.stdout)}
    assert set(results) == set(expect)
    for name, what in expect.items():
        assert ("error" in results[name]) == (what == "bad"), name
        if what == "ok":  # RGB files for a grayscale model: converted, resized to 28x28, predicted
            assert len(results[name]["top"]) == 5


def write_folder(root, bad: bool):
    rng = np.random.default_rng(1)
    for split, n in (("train", 16), ("val", 4)):
        for cls, shade in (("dark", 40), ("light", 210)):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(shade, 20, (36, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    if bad:
        (root / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        (root / "train" / "light" / "zero.jpg").write_bytes(b"")


# No data.val_split here: a folder run takes its own split, never a Fashion-MNIST recipe's.
FOLDER_ARGS = ["--model", "resnet20", "--batch-size", "8", "--iterations", "4", "--set", "data.image_size=32",
               "--set", "data.eval_resize=36", "--set", "data.workers=0", "--set", "threads=1"]


def test_image_folder_bad_files_error_lists_all_and_skip_trains(tmp_path):
    write_folder(tmp_path / "data", bad=True)
    data = f"imagefolder:{tmp_path / 'data'}"
    proc = resnet("train", "--data", data, "--out", tmp_path / "run", *FOLDER_ARGS)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 bad image file(s)" in proc.stderr and "broken.png" in proc.stderr and "zero.jpg" in proc.stderr
    assert not (tmp_path / "run").exists()
    proc = resnet("train", "--data", data, "--out", tmp_path / "run", *FOLDER_ARGS, "--set", "data.bad_images=skip")
    assert proc.returncode == 0, proc.stderr
    assert "leaving out 2 bad image file(s)" in proc.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test_count"] == 8
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["classes"] == ["dark", "light"] and card["crop"] == 32 and card["input_size"] == [3, 32, 32]
    ev = resnet("eval", tmp_path / "run", "--json", "--tta", "10crop")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["count"] == 8


@pytest.fixture
def folders(tmp_path):
    write_folder(tmp_path / "data", bad=False)
    (tmp_path / "empty_class" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty_class" / "train" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "empty_class" / "train" / "a" / "x.png")
    return tmp_path


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet57"], "unknown model 'resnet57'"),
    (["--data", "cifar11"], "unknown data set 'cifar11'"),
    (["--data", "imagefolder:{tmp}/missing"], "does not exist"),
    (["--data", "imagefolder:{tmp}/empty_class"], "is empty"),
    (["--set", "model.kwargs.in_chans=3"], "in_chans=3 does not match the data"),
    (["--lr", "-0.1"], "optim.lr must be positive"),
    (["--lr", "0"], "optim.lr must be positive"),
    (["--batch-size", "0"], "batch_size must be at least 1"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--epochs", "-3"], "epochs must be at least 1"),
    (["--batch-size", "100", "--train-limit", "50"], "larger than the 50 training examples"),
    (["--set", "optim.momentm=0.9"], "did you mean optim.momentum"),
    (["--config", "{tmp}/nope.yaml"], "does not exist"),
    (["--budget", "-5m"], "budget -5m is not a positive duration; write e.g. 90s, 10m, 1h or 1h30m"),
    (["--resume", "{tmp}/no-run/last.pt"], "--resume {tmp}/no-run/last.pt does not exist"),
])
def test_bad_command_lines(folders, args, message, capsys):
    """In-process (the process-level contract, exit status 2 and no traceback, is tested through real processes by
    the other tests here): each case is one clear sentence, status 2, and nothing written."""
    from resnet.cli import main

    out = folders / "run"
    args = [a.replace("{tmp}", str(folders)) for a in args]
    assert main(["train", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message.replace("{tmp}", str(folders)) in err and err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


def test_existing_run_is_never_overwritten(trained_run):
    before = (trained_run.run_dir / "model.safetensors").read_bytes()
    proc = resnet("train", "--out", trained_run.run_dir, "--epochs", "1")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (trained_run.run_dir / "model.safetensors").read_bytes() == before


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"model": Exploit()}, tmp_path / "evil.pt")
    for cmd in (["eval", tmp_path / "evil.pt"], ["predict", tmp_path / "evil.pt", tmp_path]):
        proc = resnet(*cmd)
        assert proc.returncode == 2 and "refusing to load" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_a_file_that_is_no_weights_file_at_all_says_so(tmp_path, capsys):
    """Text or an image named .pt is no torch zip, pickle or safetensors file: one sentence saying so (not a
    KeyError, and not "could run code", which is what a real pickle of objects would do)."""
    from resnet.cli import main

    (tmp_path / "fake.pt").write_text("hi\n")
    Image.new("RGB", (8, 8)).save(tmp_path / "image.png")
    (tmp_path / "image.png").rename(tmp_path / "image.pt")
    for name in ("fake.pt", "image.pt"):
        path = tmp_path / name
        for argv, noun in ((["eval", path], "checkpoint"), (["predict", path, tmp_path], "checkpoint"),
                           (["train", "--resume", path], "checkpoint"),
                           (["train", "--pretrained", path, "--out", tmp_path / "run"], "weights file")):
            assert main([str(a) for a in argv]) == 2
            err = capsys.readouterr().err.strip()
            assert f"{path} is not a {noun} at all (neither a torch zip, a pickle nor a safetensors file); give" \
                in err, err
            assert err.count("\n") == 0 and "could run code" not in err
    assert not (tmp_path / "run").exists()


def test_quoted_reasons_are_cut_at_a_word():
    from resnet.io import first_line

    reason = first_line(RuntimeError("Re-running `torch.load` with `weights_only` set to `False` will likely succeed"
                                     "\nsecond line"), 40)
    assert reason == "Re-running `torch.load` with..." and len(reason) <= 40


def test_truncated_and_mismatched_checkpoints(trained_run, tmp_path):
    from resnet.errors import UserError
    from resnet.models import create_model
    from resnet.weights import load_into, read_weights

    last = trained_run.run_dir / "checkpoints" / "last.pt"
    cut = tmp_path / "cut.pt"
    cut.write_bytes(last.read_bytes()[:5000])
    proc = resnet("eval", cut)
    assert proc.returncode == 2 and "truncated or corrupt" in proc.stderr and "Traceback" not in proc.stderr
    state = read_weights(last)
    with pytest.raises(UserError, match="another architecture: the model's key .* is missing"):
        load_into(create_model("resnet32", in_chans=1), state, str(last))
    with pytest.raises(UserError, match=r"has 10 classes but the model has 7.*reset_head=true"):
        load_into(create_model("resnet14", in_chans=1, num_classes=7), state, str(last))
    with pytest.raises(UserError, match="expects 1 input channels but the model has 3"):
        load_into(create_model("resnet14", in_chans=3), state, str(last))
    # fine-tuning on another label set: the new head is kept, the rest loads
    model = create_model("resnet14", in_chans=1, num_classes=7)
    load_into(model, state, str(last), head="reset")
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
