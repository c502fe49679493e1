"""Defaults chosen from an image folder's own images, for a run that names no recipe of its own.

A run on ``imagefolder:PATH`` without ``--config`` starts from the recipe its images call for (resnet.config: the
default recipe, made for 28-px Fashion-MNIST, for small images; ``imagefolder-photos`` for colour images and photos
of 64 px and up; the fine-tuning recipe with ``--pretrained``), then takes the training crop, the net, the input
channels, the batch size and the evaluation resize from the images (:func:`choose`), and says what it chose and why
(``Config.chosen``, printed in the banner). Anything the user sets
with a flag or ``--set`` wins; with ``--config`` the recipe's own values win too and only what it leaves unset
(``data.image_size`` of a recipe made for an in-memory set, say) follows the images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import safe_open

from .data.options import SMALL_IMAGE
from .data.folder_stats import FolderStats
from .device import usable_cores
from .io import load_checkpoint
from .models import model_info

SMALL = SMALL_IMAGE  # shorter side (px) below which images are small: a 6n+2 net at their size, pad-and-crop, memory
MAX_SIZE = 224  # the largest training crop chosen: the ImageNet nets' size; larger photos are scaled down to it
SMALL_MODEL = "resnet14"  # the default recipe's net: for small images when the recipe's net has an ImageNet stem
PHOTO_MODEL = "resnet18"  # the cheapest ImageNet-stem ResNet (1.8 GMACs at 224 px, 0.15 at 64)


def batch_for(training_images: int, recipe_batch: int) -> int:
    """The recipe's batch, or the largest power of two up to a quarter of the training images if that is smaller,
    so even a folder of 50 images gets several steps an epoch."""
    cap = max(1, training_images // 4)
    if recipe_batch <= cap:
        return recipe_batch
    return 1 << (cap.bit_length() - 1)


def choose(stats: FolderStats, data: dict, asked: set[str], recipe_given: bool,
           weights_arch: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(dotted key -> value, one line per choice saying why) for the folder of ``stats``. ``data`` is the resolved
    recipe (a plain dict), ``asked`` the dotted keys the user set; with ``recipe_given`` a key the recipe sets is
    kept as well. ``weights_arch``: the architecture of --pretrained weights, when their card says."""
    chosen: dict[str, Any] = {}
    why: list[str] = []

    def free(key: str) -> bool:
        if key in asked:
            return False
        if not recipe_given:
            return True
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return True
            node = node[part]
        return False

    if not stats.short_side:  # no file's header could be read: the run's scan names the bad files
        return chosen, why
    size, small = stats.short_side, stats.short_side < SMALL
    model = data.get("model", {}).get("name")
    if free("model.name"):
        if weights_arch:
            model = weights_arch
            why.append(f"model {model}: the architecture of the pretrained weights")
        elif small:
            model = model if model_info(model).family == "cifar" else SMALL_MODEL
            why.append(f"model {model}: a 6n+2 net with no downsampling stem, for {size}-px images")
        else:
            model = PHOTO_MODEL
            why.append(f"model {model}: the ImageNet stem (stride 4) suits images from {SMALL} px up")
        chosen["model.name"] = model
    cifar_net = model_info(model).family == "cifar"

    if free("data.image_size"):
        # A 6n+2 net keeps full resolution to the first stage: beyond 64 px its cost grows with no gain in view.
        image_size = min(size, SMALL) if cifar_net else max(SMALL, min(size, MAX_SIZE))
        chosen["data.image_size"] = image_size
        note = "the images' median shorter side" if image_size == size else (
            f"the median shorter side {size} px, {'raised' if image_size > size else 'capped'} for {model}")
        why.append(f"training crop {image_size} px: {note}")
    else:
        image_size = int(data.get("data", {}).get("image_size", 224))
    if free("data.eval_resize"):
        chosen["data.eval_resize"] = int(data.get("data", {}).get("eval_crop") or image_size)
        why.append("evaluation on the whole image at that size (shorter side to it, no border cut off)")
    section = data.get("data", {})
    flip = "flip" if section.get("flip", True) else "no flip"
    if image_size < SMALL:
        why.append(f"augmentation: pad-and-crop ({section.get('crop_padding', 4)} px) and {flip}, batched on the "
                   f"training device (set data.flip=false when a mirror image changes the class)")
    else:
        why.append(f"augmentation: random-resized crops from {section.get('min_scale', 0.08):.0%} of the image up "
                   f"and {flip}, batched on the training device when the folder fits in memory")
    if free("model.kwargs.in_chans"):
        chans = 1 if stats.grayscale else 3
        chosen["model.kwargs.in_chans"] = chans
        why.append(f"{chans} input channel{'s' if chans > 1 else ''}: the images are "
                   f"{'grayscale' if chans == 1 else 'in colour'}")
    workers = int(data.get("data", {}).get("workers", 2))
    cores = usable_cores()
    if image_size >= SMALL and workers > cores and free("data.workers"):
        chosen["data.workers"] = cores
        why.append(f"{cores} loader workers: one per core of this machine (the recipe asks for {workers})")
    recipe_batch = int(data.get("batch_size", 128))
    if "batch_size" not in asked:
        batch = batch_for(stats.training_images, recipe_batch)
        if batch != recipe_batch:
            chosen["batch_size"] = batch
            why.append(f"batch {batch}: at most a quarter of the {stats.training_images:,} training images (the "
                       f"lr follows it linearly)")
    return chosen, why


def weights_architecture(source: str | None) -> str | None:
    """The architecture a local --pretrained source was trained as, where it says: a run directory (its model.json),
    a checkpoint of `resnet train` (its card), a .safetensors file (the card beside it, or its metadata); None for a
    bare state dict, named weights (``torchvision``, ``timm:...``) and anything unreadable, which the run itself
    reports in its own words when it loads the weights."""
    path = Path(source or "")
    if not source or not path.exists():
        return None
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").is_file() else path / "checkpoints/last.pt"
    try:
        if path.suffix == ".safetensors":
            card = path.with_suffix(".json")
            if card.is_file():
                return json.loads(card.read_text()).get("architecture")
            with safe_open(str(path), "pt") as f:
                return (f.metadata() or {}).get("architecture")
        return load_checkpoint(path).get("card", {}).get("architecture")
    except Exception:  # unreadable: reported by the run when it loads the weights
        return None
