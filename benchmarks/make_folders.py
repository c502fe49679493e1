"""Write real image data sets as ImageNet-style folders (PATH/train/<class>/*.png, PATH/val/<class>/*.png), to
measure a run on one's own images with data no test wrote.

  python benchmarks/make_folders.py digits DIR          # scikit-learn's 1,797 handwritten digits (UCI), 32x32 gray
  python benchmarks/make_folders.py fashion-mnist DIR   # Fashion-MNIST's 60,000 + 10,000 images, 28x28 gray

digits: the 8x8 scans (16 grey levels) upscaled to 32x32 (bicubic), a seeded 80/20 split per class (1,437 train,
360 val). scikit-learn ships them, so this works offline (`pip install scikit-learn`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    for name in classes:
        (root / split / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image, mode="L").save(root / split / classes[label] / f"{i:05d}.png")


def digits(root: Path, size: int = 32, seed: int = 0) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = [np.asarray(Image.fromarray((im * (255 / 16)).astype(np.uint8)).resize((size, size), Image.BICUBIC))
              for im in d.images]
    images, labels = np.stack(images), d.target
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        val[rng.choice(idx, round(0.2 * len(idx)), replace=False)] = True
    classes = [str(c) for c in range(10)]
    write_split(root, "train", images[~val], labels[~val], classes)
    write_split(root, "val", images[val], labels[val], classes)


def fashion_mnist(root: Path) -> None:
    from resnet.data import open_split

    for split, folder in (("train", "train"), ("test", "val")):
        data = open_split("fashion-mnist", split)
        classes = [c.replace("/", "-") for c in data.classes]
        write_split(root, folder, data.images[:, 0].numpy(), data.labels.numpy(), classes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["digits", "fashion-mnist"])
    p.add_argument("out", type=Path)
    args = p.parse_args()
    {"digits": digits, "fashion-mnist": fashion_mnist}[args.dataset](args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
