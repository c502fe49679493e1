"""Start-up time of `resnet train` on a big image folder, and the file loader's speed.

    python benchmarks/folder_startup.py                  # 100,000 JPEGs (64x64, 10 classes + val/) under /tmp
    python benchmarks/folder_startup.py --files 3000     # a quick check of the script itself

Writes N small JPEGs once (reused by later runs: DIR/.complete records N), then measures, each in a fresh process:
- the first start: from launching `resnet train --data imagefolder:DIR ...` to its first training step (the first
  line of steps.jsonl, written after step 1 with log_every=1), with an empty scan cache (data.verify=cached decodes
  every file once);
- the second start: the same command again, the scan cache now warm (goal: under 10 s for 100,000 files);
- a start with data.verify=off (no scan at all: the floor);
- images/s of the file loader: FileLoader.epoch() over a fixed number of training batches with data.workers=2.
The scan cache and run directories live in a temporary folder ($RESNET_CACHE is pointed there), so the user's
~/.cache/resnet is not touched. The files were just written, so they sit in the page cache: on a cold disk the first
start (which reads every file) takes longer; the second start reads no file content.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from resnet.device import cpu_summary

CLASSES = 10
DECODING = re.compile(r"decoding ([\d,]+) of [\d,]+ image files")  # the scan's line before it decodes


def generate(root: Path, n: int, size: int) -> None:
    """N JPEGs, 10% of them in val/: per-class colour plus noise, so a model can learn something."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text().strip() == f"{n} {size}":
        print(f"reusing {n:,} images in {root}", flush=True)
        return
    if root.exists():
        shutil.rmtree(root)
    start, rng = time.perf_counter(), np.random.default_rng(0)
    colours = rng.integers(40, 216, (CLASSES, 3))
    n_val = n // 10
    for i in range(n):
        split, k = ("val", i - (n - n_val)) if i >= n - n_val else ("train", i)
        cls = k % CLASSES
        folder = root / split / f"class{cls}"
        if k < CLASSES:
            folder.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(-40, 41, (size, size, 3), dtype=np.int16)
        pixels = np.clip(colours[cls] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:07d}.jpg", quality=85)
    marker.write_text(f"{n} {size}")
    print(f"wrote {n:,} images ({size}x{size} JPEG) to {root} in {time.perf_counter() - start:.1f} s", flush=True)


def train_command(root: Path, out: Path, args, *extra: str) -> list[str]:
    return ["resnet", "train", "--data", f"imagefolder:{root}", "--model", args.model, "--batch-size",
            str(args.batch_size), "--iterations", "1000000", "--device", args.device, "--out", str(out),
            "--set", "log_every=1", "--set", f"data.image_size={args.crop}", "--set", f"data.eval_resize={args.crop}",
            "--set", "data.workers=2", "--set", "data.memory=off", *extra]  # the file path: scan, cache, workers


def time_to_first_step(cmd: list[str], run_dir: Path, env: dict, timeout: float) -> tuple[float, int, str]:
    """Seconds from launching ``cmd`` to the first record of run_dir/steps.jsonl; files it decoded before training
    (from its "decoding N of M image files" line); its output. The process (and its loader workers) is killed then."""
    log = run_dir.with_suffix(".log")
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "resnet", *cmd[1:]], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        steps = run_dir / "steps.jsonl"
        try:
            while True:
                if steps.is_file() and steps.read_text().strip():
                    seconds = time.perf_counter() - start
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"`{' '.join(cmd)}` exited ({proc.returncode}) before its first step:\n"
                                     f"{log.read_text()[-3000:]}")
                if time.perf_counter() - start > timeout:
                    raise SystemExit(f"no training step after {timeout:.0f} s: `{' '.join(cmd)}`")
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the trainer and its loader workers
            proc.wait()
    text = log.read_text()
    found = DECODING.search(text)
    return seconds, int(found.group(1).replace(",", "")) if found else 0, text


def scan_seconds(text: str) -> str:
    """" (scan X s)" from the scan's "decoded N image files in X s" line (written for 1,000 files or more)."""
    found = re.search(r"decoded [\d,]+ image files in ([\d.]+) s", text)
    return f" (scan {found.group(1)} s)" if found else ""


def loader_speed(root: str, batch_size: int, crop: int, batches: int, warmup: int) -> None:
    """In a fresh process: images/s of the training FileLoader with data.workers=2 (printed as JSON)."""
    import torch

    from resnet.data import DataConfig, build_data

    cfg = DataConfig(name=f"imagefolder:{root}", image_size=crop, eval_resize=crop, workers=2, memory="off")
    lines: list[str] = []
    start = time.perf_counter()
    data = build_data(cfg, batch_size, 0, torch.device("cpu"), log=lines.append)
    setup = time.perf_counter() - start
    seen, images, start, epoch = 0, 0, 0.0, 0
    while seen < warmup + batches:
        for x, _ in data.train.epoch(epoch):
            seen += 1
            if seen == warmup:  # worker start-up and the first batches are not counted
                start = time.perf_counter()
            elif seen > warmup:
                images += x.shape[0]
            if seen >= warmup + batches:
                break
        epoch += 1
    print(json.dumps({"img_per_s": images / (time.perf_counter() - start), "images": images, "setup_s": setup,
                      "decoded": sum(int(m.group(1).replace(",", "")) for m in map(DECODING.search, lines) if m)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=100_000, help="images to generate (10%% of them in val/)")
    p.add_argument("--dir", help="image folder (default: /tmp/resnet-folder-bench-N-SIZEpx; reused if complete)")
    p.add_argument("--size", type=int, default=64, help="side of the generated JPEGs (pixels)")
    p.add_argument("--crop", type=int, default=32, help="training crop (data.image_size)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, default=100, help="timed batches of the loader measurement")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one start")
    p.add_argument("--loader", metavar="DIR", help=argparse.SUPPRESS)  # internal: the loader measurement
    args = p.parse_args()
    if args.loader:
        return loader_speed(args.loader, args.batch_size, args.crop, args.batches, warmup=5)

    root = Path(args.dir or f"/tmp/resnet-folder-bench-{args.files}-{args.size}px")
    generate(root, args.files, args.size)
    work = Path(tempfile.mkdtemp(prefix="resnet-folder-bench-"))
    env = {**os.environ, "RESNET_CACHE": str(work / "cache")}
    from resnet.table import format_table

    rows = []
    try:
        for name, extra in (("first start (data.verify=cached, empty cache)", ()),
                            ("second start (data.verify=cached, warm cache)", ()),
                            ("start with data.verify=off", ("--set", "data.verify='off'"))):
            run_dir = work / f"run{len(rows)}"
            cmd = train_command(root, run_dir, args, *extra)
            seconds, decoded, text = time_to_first_step(cmd, run_dir, env, args.timeout)
            print(f"{name}: {seconds:.1f} s to the first step, {decoded:,} files decoded before it", flush=True)
            shown = " ".join(a if re.fullmatch(r"[\w@%+=:,./-]+", a) else f'"{a}"' for a in cmd)
            shown = shown.replace(str(run_dir), "RUN")
            rows.append([name, args.files, f"{seconds:.1f} s to step 1{scan_seconds(text)}", decoded, shown])
        cmd = [sys.executable, __file__, "--loader", str(root), "--batch-size", str(args.batch_size), "--crop",
               str(args.crop), "--batches", str(args.batches)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        if proc.returncode != 0:
            raise SystemExit(f"loader measurement failed:\n{proc.stderr[-3000:]}")
        speed = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(["build_data alone (listing, stat, cached scan), fresh process", args.files,
                     f"{speed['setup_s']:.2f} s", speed["decoded"], "resnet.data.build_data(DataConfig(...))"])
        rows.append([f"file loader, data.workers=2, batch {args.batch_size}, crop {args.crop}", args.files,
                     f"{speed['img_per_s']:.0f} img/s", None,
                     f"FileLoader.epoch() x {args.batches} batches ({speed['images']:,} images)"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_table(["measurement", "N", "result", "decoded before step 1", "command"], rows, align="lrrrl"))
    print(f"\nCPU: {cpu_summary()}; {args.size}x{args.size} JPEGs in {root} (page-cached: written by this script)")
    print(f"reproduce: python benchmarks/folder_startup.py --files {args.files}")


if __name__ == "__main__":
    main()
