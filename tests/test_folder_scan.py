"""The bad-file scan of an image folder is cached: an unchanged folder is not decoded again, a new or changed file is
decoded alone, bad files stay reported, and data.verify chooses full / cached / off. Decodes are counted through
``resnet.data.files.open_image``, the one function the scan and the loader read files with."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import resnet.data.files as files
from resnet.data import DataConfig, build_data, open_split
from resnet.data.scan_cache import cache_path, scan_folder
from resnet.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def decoded(monkeypatch):
    """Paths passed to open_image (by the scan threads and a loader without workers), in call order."""
    seen, lock, real = [], threading.Lock(), files.open_image

    def counting(path, *args, **kwargs):
        with lock:
            seen.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(files, "open_image", counting)
    return seen


def write_image(path, shade: int) -> None:
    rng = np.random.default_rng(shade)
    Image.fromarray(np.clip(rng.normal(shade, 20, (12, 12, 3)), 0, 255).astype(np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    """train/{dark,light}/ with 10 images each plus one bad file; val/{dark,light}/ with 3 each."""
    root = tmp_path / "data"
    for split, n in (("train", 10), ("val", 3)):
        for cls, shade in (("dark", 40), ("light", 210)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                write_image(root / split / cls / f"{i}.png", shade + i)
    (root / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return root


def samples_of(root):
    train = open_split(f"imagefolder:{root}", "train")
    val = open_split(f"imagefolder:{root}", "test")
    return train.samples + val.samples


def scan(root, verify="cached", log=None, **kwargs):
    lines = [] if log is None else log
    return scan_folder(root, samples_of(root), "RGB", verify, workers=2, log=lines.append, **kwargs)


def touch(path, seconds_later: int = 5) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds_later * 10**9))


def test_second_scan_of_an_unchanged_folder_decodes_nothing(folder, cache, decoded):
    first = scan(folder)
    assert len(decoded) == 27 and first.decoded == 27
    assert [os.path.basename(e.path) for e in first.bad] == ["broken.png"]
    assert cache_path(folder, "RGB").parent == cache / "scans" and cache_path(folder, "RGB").is_file()
    decoded.clear()
    lines = []
    second = scan(folder, log=lines)
    assert decoded == [] and second.decoded == 0 and second.cached == 27 and lines == []
    assert [(e.path, e.reason) for e in second.bad] == [(e.path, e.reason) for e in first.bad]  # still reported


def test_touched_added_and_removed_files(folder, cache, decoded):
    scan(folder)
    decoded.clear()
    touched, added = folder / "train" / "light" / "3.png", folder / "val" / "dark" / "new.png"
    touch(touched)
    write_image(added, 99)
    (folder / "train" / "dark" / "0.png").unlink()
    result = scan(folder)
    assert sorted(decoded) == sorted([str(touched), str(added)]) and result.decoded == 2 and len(result.bad) == 1
    names = json.loads(cache_path(folder, "RGB").read_text())["files"]
    assert "val/dark/new.png" in names and "train/dark/0.png" not in names  # removed files drop out
    decoded.clear()
    assert scan(folder).decoded == 0 and decoded == []


def test_a_fixed_bad_file_is_decoded_again_and_then_good(folder, cache, decoded):
    scan(folder)
    decoded.clear()
    broken = folder / "train" / "dark" / "broken.png"
    write_image(broken, 7)
    touch(broken)
    result = scan(folder)
    assert decoded == [str(broken)] and result.bad == []


def test_verify_full_decodes_all_and_off_decodes_nothing(folder, cache, decoded):
    off = scan(folder, "off")
    assert decoded == [] and off.bad == [] and not cache.exists()  # off: no stat, no cache, no decoding
    scan(folder)
    decoded.clear()
    full = scan(folder, "full")
    assert len(decoded) == 27 and full.decoded == 27 and len(full.bad) == 1
    decoded.clear()
    scan(folder, "off")
    assert decoded == []


@pytest.mark.parametrize("damage", [b"", b"{\"version\": 1, \"files\": [", b"\xff\xfe not json", b"[1, 2, 3]",
                                    "lengths", "types", "other folder"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(folder, cache, decoded, damage):
    scan(folder)
    path = cache_path(folder, "RGB")
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        obj = json.loads(path.read_text())
        if damage == "lengths":
            obj["size"] = obj["size"][:-1]
        elif damage == "types":
            obj["bad"] = ["train/dark/broken.png"]
        else:
            obj["folder"] = "/somewhere/else"
        path.write_text(json.dumps(obj))
    decoded.clear()
    lines = []
    result = scan(folder, log=lines)
    assert len(decoded) == 27 and len(result.bad) == 1 and result.warning is None
    assert any("decoding 27 of 27" in line for line in lines)
    assert json.loads(path.read_text())["version"] == 1  # rewritten whole
    decoded.clear()
    assert scan(folder).decoded == 0 and decoded == []


def test_an_unwritable_cache_warns_and_still_finds_bad_files(folder, tmp_path, monkeypatch, decoded):
    (tmp_path / "not_a_dir").write_text("")
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "not_a_dir"))
    result = scan(folder)
    assert len(result.bad) == 1 and "could not write the scan cache" in result.warning


def test_files_outside_the_run_keep_their_verdicts(folder, cache, decoded):
    """A train_limit run checks a few files; the cache keeps the rest of the folder (``listed``)."""
    everything = samples_of(folder)
    scan(folder)
    decoded.clear()
    few = scan_folder(folder, everything[:3], "RGB", "cached", workers=2, listed=[p for p, _ in everything],
                      log=lambda s: None)
    assert few.decoded == 0 and len(json.loads(cache_path(folder, "RGB").read_text())["files"]) == 27
    assert scan(folder).decoded == 0 and decoded == []


def test_grayscale_runs_have_their_own_cache(folder, cache, decoded):
    scan(folder)
    decoded.clear()
    scan_folder(folder, samples_of(folder), "L", "cached", workers=2, log=lambda s: None)
    assert len(decoded) == 27 and cache_path(folder, "L") != cache_path(folder, "RGB")


def folder_config(root, **kw) -> DataConfig:
    """The file loader's path (memory off: the scan and its cache are what is tested)."""
    return DataConfig(**{"name": f"imagefolder:{root}", "image_size": 8, "eval_resize": 8, "workers": 0,
                         "memory": "off", **kw})


def test_build_data_skips_bad_files_from_the_cache(folder, cache, decoded):
    logs = []
    data = build_data(folder_config(folder, bad_images="skip"), 4, 0, torch.device("cpu"), log=logs.append)
    assert data.train.size == 20 and any("leaving out 1 bad" in line for line in logs)
    decoded.clear()
    logs.clear()
    again = build_data(folder_config(folder, bad_images="skip"), 4, 0, torch.device("cpu"), log=logs.append)
    assert decoded == [] and again.train.size == 20 and any("leaving out 1 bad" in line for line in logs)
    with pytest.raises(UserError, match="1 bad image file.*broken.png"):
        build_data(folder_config(folder), 4, 0, torch.device("cpu"), log=logs.append)
    assert decoded == []


@pytest.mark.parametrize("workers", [0, 2])
def test_verify_off_fails_in_the_loader_with_one_sentence(folder, cache, decoded, workers):
    logs = []
    cfg = folder_config(folder, verify="off", bad_images="skip", workers=workers)
    data = build_data(cfg, 21, 0, torch.device("cpu"), log=logs.append)  # one batch holds every training file
    assert decoded == [] and data.train.size == 21
    assert any("data.verify=off" in line and "cannot leave bad files out" in line for line in logs)
    with pytest.raises(UserError) as info:
        list(data.train.epoch(0))
    message = str(info.value)
    assert message.startswith("bad image during training: ") and "broken.png" in message
    assert "\n" not in message and "Traceback" not in message


def test_empty_class_folder_is_found_from_the_listing(tmp_path):
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    (tmp_path / "d" / "train" / "b").mkdir(parents=True)
    (tmp_path / "d" / "train" / "b" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "d" / "train" / "a" / "x.png", 1)
    with pytest.raises(UserError, match=r"train/b is empty \(no .jpg"):
        open_split(f"imagefolder:{tmp_path / 'd'}", "train")
