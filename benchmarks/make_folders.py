"""Write real image data sets as ImageNet-style folders (PATH/train/<class>/*.png, PATH/val/<class>/*.png), to
measure a run on one's own images with data no test wrote.

  python benchmarks/make_folders.py digits DIR          # scikit-learn's 1,797 handwritten digits (UCI), 32x32 gray
  python benchmarks/make_folders.py fashion-mnist DIR   # Fashion-MNIST's 60,000 + 10,000 images, 28x28 gray
  python benchmarks/make_folders.py fashion-mnist DIR --train 5000 --val 1000   # a seeded, class-balanced subset
  python benchmarks/make_folders.py icons-64 DIR        # two themes' icons by category: ~950 RGBA images, 64 px
  python benchmarks/make_folders.py icons-128 DIR       # five other themes' icons by category: ~1,100 RGBA images, 128 px

digits: the 8x8 scans (16 grey levels) upscaled to 32x32 (bicubic), a seeded 80/20 split per class (1,438 train,
359 val). scikit-learn ships them, so this works offline (`pip install scikit-learn`).

icons-64 and icons-128: colour icons of Debian's icon themes, classified by the freedesktop category folder they are
filed in (actions, apps, devices, mimetypes, places, status): drawings made by people, at sizes where a classifier
has to read shapes and colours, not text. oxygen-icon-theme is left out on purpose: it is kept aside as a folder no
choice of the project was made on. A theme is read from /usr/share/icons, or else from its Debian package, fetched
with `apt-get download` and unpacked in a temporary folder (no root needed).
- An *item* is one drawing: icon names that are links or copies of one file, or of the same picture in another
  theme, are one item. Items are split 80/20 per class, seeded, so that no drawing is in both train/ and val/.
- Each item is taken from the theme's largest PNG of at least the folder's size and scaled down (Lanczos), kept RGBA
  as the themes ship them.
- icons-128 caps each class at 400 items (seeded), so that apps, which outnumber the others 5 to 1, stays a class
  among six rather than most of the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ICON_CLASSES = ("actions", "apps", "devices", "mimetypes", "places", "status")
ICON_ALIASES = {"mimes": "mimetypes"}  # elementary-xfce's name for the same category
# folder name -> (Debian package, theme folder under /usr/share/icons)
THEMES = {"Faenza": "faenza-icon-theme", "gnome": "gnome-icon-theme", "mate": "mate-icon-theme",
          "Paper": "paper-icon-theme", "Moka": "moka-icon-theme", "elementary-xfce": "elementary-xfce-icon-theme",
          "nuoveXT2": "lxde-icon-theme"}
ICON_FOLDERS = {  # name -> (size in px, themes, items per class at most)
    "icons-64": (64, ("Faenza", "elementary-xfce"), None),
    "icons-128": (128, ("gnome", "mate", "Paper", "Moka", "nuoveXT2"), 400),
}


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    for name in classes:
        (root / split / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image, mode="L").save(root / split / classes[label] / f"{i:05d}.png")


def balanced_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` examples, as many of each class as the set allows (seeded), in their original order."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    keep = [rng.choice(np.flatnonzero(labels == c), n // len(classes), replace=False) for c in classes]
    return np.sort(np.concatenate(keep))


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


def fashion_mnist(root: Path, train: int | None = None, val: int | None = None, seed: int = 0) -> None:
    """Fashion-MNIST's train split as train/ and its test split as val/; ``train``/``val``: class-balanced subsets."""
    from resnet.data import open_split

    for split, folder, n in (("train", "train", train), ("test", "val", val)):
        data = open_split("fashion-mnist", split)
        classes = [c.replace("/", "-") for c in data.classes]
        keep = balanced_subset(data.labels.numpy(), n, seed)
        write_split(root, folder, data.images[keep, 0].numpy(), data.labels[keep].numpy(), classes)


# ------------------------------------------------------------------------------------------------------- icons


def theme_dir(theme: str, unpacked: Path) -> Path:
    """/usr/share/icons/THEME, or the theme unpacked from its Debian package into ``unpacked``."""
    installed = Path("/usr/share/icons") / theme
    if installed.is_dir():
        return installed
    package = THEMES[theme]
    try:
        subprocess.run(["apt-get", "download", package], cwd=unpacked, check=True, capture_output=True)
        deb = next(unpacked.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
        raise SystemExit(f"cannot get the {theme} icon theme ({exc}); install it with `apt-get install {package}`")
    return unpacked / "usr/share/icons" / theme


def _pixel_size(folder: str) -> int | None:
    """48 for '48', '48x48'; 96 for '48x48@2x'; None for 'scalable', 'actions', ..."""
    m = re.fullmatch(r"(\d+)(?:x\d+)?(@2x)?", folder)
    return int(m.group(1)) * (2 if m.group(2) else 1) if m else None


def theme_icons(root: Path, size: int) -> dict[tuple[str, str], Path]:
    """(category, icon name) -> the theme's largest PNG of at least ``size`` px, for the categories of
    ICON_CLASSES (both layouts: THEME/48x48/apps/x.png and THEME/apps/48/x.png)."""
    best: dict[tuple[str, str], tuple[int, Path]] = {}
    for path in root.rglob("*.png"):
        parts = path.relative_to(root).parts[:-1]
        sizes = [s for s in map(_pixel_size, parts) if s]
        cats = [ICON_ALIASES.get(p, p) for p in parts if ICON_ALIASES.get(p, p) in ICON_CLASSES]
        if len(sizes) != 1 or len(cats) != 1 or sizes[0] < size or not path.resolve().is_file():
            continue
        key = (cats[0], path.stem)
        if key not in best or sizes[0] > best[key][0]:
            best[key] = (sizes[0], path)
    return {key: path for key, (_, path) in best.items()}


def drawing_key(image: Image.Image) -> bytes:
    """What makes two icons one drawing: the same picture at 16 x 16, 4 bits a channel (copies, links, and the same
    icon shipped by two themes, as mate does gnome's)."""
    small = np.asarray(image.resize((16, 16), Image.BILINEAR), dtype=np.uint8)
    return hashlib.sha1((small >> 4).tobytes()).digest()


def icons(root: Path, name: str, seed: int = 0) -> None:
    size, themes, cap = ICON_FOLDERS[name]
    items: dict[str, dict[bytes, Image.Image]] = defaultdict(dict)  # class -> drawing -> image
    seen: dict[bytes, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for theme in themes:
            for (category, _), path in sorted(theme_icons(theme_dir(theme, Path(tmp)), size).items()):
                image = Image.open(path).convert("RGBA")
                if image.size != (size, size):
                    image = image.resize((size, size), Image.LANCZOS)
                key = drawing_key(image)
                if seen.setdefault(key, category) != category:  # one drawing filed under two categories: ambiguous
                    items[seen[key]].pop(key, None)
                    continue
                items[category].setdefault(key, image)
    rng = random.Random(seed)
    for category in ICON_CLASSES:
        drawings = list(items[category].values())
        rng.shuffle(drawings)
        drawings = drawings[:cap] if cap else drawings
        n_val = round(0.2 * len(drawings))
        for split, part in (("val", drawings[:n_val]), ("train", drawings[n_val:])):
            (root / split / category).mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(part):
                image.save(root / split / category / f"{i:04d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["digits", "fashion-mnist", *ICON_FOLDERS])
    p.add_argument("out", type=Path)
    p.add_argument("--train", type=int, help="fashion-mnist: this many training images (class-balanced, seeded)")
    p.add_argument("--val", type=int, help="fashion-mnist: this many val/ images from its test split")
    args = p.parse_args()
    if args.dataset == "digits":
        digits(args.out)
    elif args.dataset == "fashion-mnist":
        fashion_mnist(args.out, args.train, args.val)
    else:
        icons(args.out, args.dataset)
    counts = {s: sum(1 for _ in (args.out / s).rglob("*.png")) for s in ("train", "val")}
    print(f"wrote {args.out}: {counts['train']:,} train, {counts['val']:,} val images")


if __name__ == "__main__":
    main()
