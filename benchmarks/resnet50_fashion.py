"""A real ResNet-50 for the inference benchmark: Fashion-MNIST written as an RGB image folder and trained at 112 px
for a few minutes, so that infer_speed.py's ResNet-50 rows carry agreement and accuracy on real test images
(random weights say nothing about what int8 or bf16 costs in accuracy).

    .venv/bin/python benchmarks/resnet50_fashion.py --folder /tmp/fmnist-folder --out runs/resnet50-fashion-112

112 px (28 px upsampled 4x) keeps a 4x4 map after ResNet-50's 32x downsampling and costs a quarter of 224 px: about
36 training img/s on 2 bf16 cores, so one pass over the 60,000 training images takes about 28 minutes. (A pass over
24,000 images, 12 minutes, reached only 78% and quantized badly: int8 agreement 61-97% depending on calibration.)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from resnet.data import open_split
from transfer import write_folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True, help="where to write the image folder (train/, val/)")
    p.add_argument("--out", default="runs/resnet50-fashion-112", help="run directory")
    p.add_argument("--size", type=int, default=112, help="training and test resolution (px)")
    p.add_argument("--train-images", type=int, default=60000, help="training images (a class-balanced draw; one pass)")
    args = p.parse_args()

    folder = Path(args.folder)
    # A seeded, class-balanced draw for train/ (a folder's train_limit would take the first classes only), the whole
    # official test set as val/.
    for split, name, per_class in (("train", "train", args.train_images // 10), ("test", "val", None)):
        if not (folder / name).is_dir():
            data = open_split("fashion-mnist", split)
            n = write_folder(folder, name, data.images, data.labels, data.classes, range(10), per_class)
            print(f"wrote {n} {split} images to {folder / name}", flush=True)
    cmd = [sys.executable, "-m", "resnet", "train", "--model", "resnet50", "--data", f"imagefolder:{folder}",
           "--out", args.out, "--set", "epochs=1", "--set", f"data.image_size={args.size}", "--set", f"data.eval_resize={args.size}",
           "--set", "data.min_scale=0.5", "--set", "data.workers=1", "--set", "batch_size=64",
           "--set", "optim.lr=0.1", "--set", "eval_every=100000"]
    print(shlex.join(cmd), flush=True)
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
