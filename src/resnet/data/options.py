"""What a run asks of its data: the ``data:`` section of a recipe. Data owns it, so nothing here knows training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SMALL_IMAGE = 64  # px: image folders with a training crop below this are small images (pad-and-crop, 6n+2 nets)

AutoAugment = Literal["trivialaugment", "randaugment", "autoaugment"]
BadImages = Literal["error", "skip"]  # what a file-based set does with files that fail to decode
Verify = Literal["full", "cached", "off"]  # how a file-based set checks its files decode before training
Memory = Literal["auto", "on", "off"]  # whether an image folder is decoded once into memory (data.folder_memory)
RandomCrop = Literal["auto", "pad", "resized"]  # the training crop: pad-and-crop, or random-resized crops


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"  # a name of `resnet.data.list_datasets()`, or imagefolder:PATH
    root: str | None = None  # where to look first; then $RESNET_DATA, ~/.cache/resnet, /usr/share/datasets
    val_split: float = 0.0  # held out of the training set: 0 none, <1 a fraction, >=1 a number of examples
    train_limit: int | None = None  # train on the first N examples only (quick runs)
    test_limit: int | None = None  # evaluate on the first N test examples only (quick runs; results say how many)
    random_crop: RandomCrop = "auto"  # pad: pad-and-crop by crop_padding px; resized: random-resized crops from
    #                                   min_scale of the image up; auto: pad for the named sets and folders of images
    #                                   under 64 px, resized for larger ones
    crop_padding: int = 4  # pad-and-crop augmentation (pixels; 0 = off)
    flip: bool = True  # random horizontal flip
    random_erasing: float = 0.0  # probability per image (Zhong et al. 2017)
    image_size: int = 224  # image folders: training crop (and evaluation crop unless eval_crop is set)
    eval_resize: int = 256  # image folders: shorter side before the centre crop
    eval_crop: int | None = None  # image folders: evaluation centre crop (torchvision V2: train 176, eval 224)
    min_scale: float = 0.08  # random-resized crops: smallest area fraction
    fit_resolution: bool = False  # a budget run of random-resized crops in memory trains on crops smaller than
    #   image_size when few epochs fit (evaluation stays at image_size; train/resolution.py). Off by default: on the
    #   photo hold-out it lost 1-17 points at 1 minute for 1.7x the epochs (docs/results.md)
    auto_augment: AutoAugment | None = None  # file-based sets
    mixup: float = 0.0  # Beta(alpha, alpha) of MixUp; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off
    mix_from_epochs: float | None = None  # MixUp/CutMix only in a run of at least this many epochs (a budget run: as
    #                                       planned; the run keeps the decision); None: whenever they are set
    workers: int = 2  # file-based sets: data-loader worker processes
    bad_images: BadImages = "error"  # file-based sets
    verify: Verify = "cached"  # file-based sets: decode every file (full), only new or changed ones (cached), none (off)
    memory: Memory = "auto"  # image folders: decode once into memory and augment in batches on the training device;
    #                          auto: when the decoded images take at most a quarter of the free memory


# Fields that describe one data set's size or location: a recipe's values for them do not carry over to a run on
# another data set (`--data` names a different one), since e.g. Fashion-MNIST's `val_split: 5000` means nothing for a
# folder of 180 photos.
PER_DATASET_FIELDS = ("root", "val_split", "train_limit", "test_limit")
