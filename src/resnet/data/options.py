"""What a run asks of its data: the ``data:`` section of a recipe. Data owns it, so nothing here knows training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AutoAugment = Literal["trivialaugment", "randaugment", "autoaugment"]
BadImages = Literal["error", "skip"]  # what a file-based set does with files that fail to decode
Verify = Literal["full", "cached", "off"]  # how a file-based set checks its files decode before training
Memory = Literal["auto", "on", "off"]  # whether an image folder is decoded once into memory (data.folder_memory)


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"  # a name of `resnet.data.list_datasets()`, or imagefolder:PATH
    root: str | None = None  # where to look first; then $RESNET_DATA, ~/.cache/resnet, /usr/share/datasets
    val_split: float = 0.0  # held out of the training set: 0 none, <1 a fraction, >=1 a number of examples
    train_limit: int | None = None  # train on the first N examples only (quick runs)
    test_limit: int | None = None  # evaluate on the first N test examples only (quick runs; results say how many)
    crop_padding: int = 4  # in-memory sets: pad-and-crop augmentation (pixels; 0 = off)
    flip: bool = True  # random horizontal flip
    random_erasing: float = 0.0  # probability per image (Zhong et al. 2017)
    image_size: int = 224  # file-based sets: training crop (and evaluation crop unless eval_crop is set)
    eval_resize: int = 256  # file-based sets: shorter side before the centre crop
    eval_crop: int | None = None  # file-based sets: evaluation centre crop (torchvision V2: train 176, eval 224)
    min_scale: float = 0.08  # file-based sets: random-resized-crop smallest area fraction
    auto_augment: AutoAugment | None = None  # file-based sets
    mixup: float = 0.0  # Beta(alpha, alpha) of MixUp; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off
    workers: int = 2  # file-based sets: data-loader worker processes
    bad_images: BadImages = "error"  # file-based sets
    verify: Verify = "cached"  # file-based sets: decode every file (full), only new or changed ones (cached), none (off)
    memory: Memory = "auto"  # image folders: decode once into memory and augment in batches (pad-and-crop + flip);
    #                          auto: when the training crop is small (< 64 px) and the decoded images fit easily


# Fields that describe one data set's size or location: a recipe's values for them do not carry over to a run on
# another data set (`--data` names a different one), since e.g. Fashion-MNIST's `val_split: 5000` means nothing for a
# folder of 180 photos.
PER_DATASET_FIELDS = ("root", "val_split", "train_limit", "test_limit")
