"""Reading real image files safely: any mode (palette, RGBA, CMYK, 16-bit, 1-bit) converted to RGB or L, corrupt or
truncated files reported with their path, and decompression bombs refused before decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # width x height above which a file is refused unread (a decompression bomb)
# The one list of image file suffixes: training folders, evaluation folders and `resnet predict` all read these
# (torchvision's ImageFolder list plus .gif, which PIL decodes as its first frame).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class BadImageError(Exception):
    """One file that is not a usable image; ``str()`` names the file and why."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def _to_8bit(im: Image.Image) -> Image.Image:
    """16- and 32-bit integer and float images (e.g. 16-bit PNG, mode I;16) scaled to 8-bit L."""
    arr = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        arr = arr * (255.0 if arr.max() <= 1.0 else 1.0)
    elif arr.max() > 255:
        arr = arr / 257.0  # 16-bit range to 8-bit
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def open_image(path: str | Path, mode: str = "RGB", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``path`` fully and convert it to ``mode`` ("RGB" or "L"); raise :class:`BadImageError` otherwise."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadImageError(path, f"{w}x{h} pixels exceeds the limit of {max_pixels:,} (possible "
                                          f"decompression bomb); resize it first")
            im.load()  # full decode: truncated files fail here, not later in a worker
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                im = _to_8bit(im)
            elif im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            return im.convert(mode)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(path, "is a directory") from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(path, f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        size = Path(path).stat().st_size if Path(path).exists() else 0
        raise BadImageError(path, "empty file" if size == 0 else "not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(path, f"corrupt or truncated image ({exc})") from None


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively, by image suffix) into a sorted list of files."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(p)
    return found
