"""Data readers on files the tests write (IDX, CIFAR batches, image folders) and the batched augmentation
(pad-and-crop, random-resized crops, flips, erasing)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from resnet.data.datasets import load_cifar_dataset, load_idx_dataset, read_idx, split_holdout
from resnet.data.datasets import MemoryDataset
from resnet.data.memory import (Augment, MemoryLoader, apply_erase, crop_flip, erase_boxes, resized_crop_boxes,
                                resized_crop_flip)
from resnet.data.sampling import epoch_permutation, train_indices
from resnet.errors import UserError


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def make_idx_set(root, n_train=64, n_test=32, size=28, compress=True):
    rng = np.random.default_rng(0)
    sfx = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n, size, size)), compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{sfx}", np.arange(n) % 10, compress)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reader(tmp_path, compress):
    make_idx_set(tmp_path, compress=compress)
    train = load_idx_dataset("mnist", str(tmp_path), train=True, download=False)
    test = load_idx_dataset("mnist", str(tmp_path), train=False, download=False)
    assert train.images.shape == (64, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.tolist() == [i % 10 for i in range(32)]
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else "")))
    assert torch.equal(train.images[:, 0], torch.from_numpy(raw.copy()))


def test_idx_truncated_and_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("RESNET_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.open(path).read()
    gzip.open(path, "wb").write(raw[:-100])
    with pytest.raises(UserError, match="truncated"):
        load_idx_dataset("mnist", str(tmp_path), train=True, download=False)
    with pytest.raises(UserError, match="mnist not found in .*nowhere") as info:
        load_idx_dataset("mnist", str(tmp_path / "nowhere"), train=True, download=False)
    assert "\n" not in str(info.value)


def test_real_fashion_mnist_is_found():
    data = load_idx_dataset("fashion-mnist", None, train=False, download=False)
    assert len(data) == 10_000 and data.classes[0] == "T-shirt/top"
    assert data.labels.bincount().tolist() == [1000] * 10


def write_cifar(root, n_per_batch=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)]}
        pickle.dump(batch, open(folder / name, "wb"))
    pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                                  b"ship", b"truck"]}, open(folder / "batches.meta", "wb"))
    return folder


def test_cifar_batches_reader(tmp_path):
    folder = write_cifar(tmp_path)
    train = load_cifar_dataset("cifar10", str(tmp_path), train=True, download=False)
    test = load_cifar_dataset("cifar10", str(tmp_path), train=False, download=False)
    assert train.images.shape == (100, 3, 32, 32) and len(test) == 20
    assert train.classes[9] == "truck"
    raw = pickle.load(open(folder / "data_batch_1", "rb"))
    assert torch.equal(train.images[0], torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32)))
    assert train.labels[:20].tolist() == raw[b"labels"]


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    folder = write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    pickle.dump({b"data": Evil(), b"labels": []}, open(folder / "test_batch", "wb"))
    with pytest.raises(UserError, match="refusing to load builtins.print"):
        load_cifar_dataset("cifar10", str(tmp_path), train=False, download=False)


def test_holdout_split_is_seeded_and_disjoint():
    a_train, a_val = split_holdout(100, 0.2, seed=1)
    b_train, b_val = split_holdout(100, 20, seed=1)
    assert torch.equal(a_val, b_val) and len(a_val) == 20
    assert set(a_train.tolist()).isdisjoint(a_val.tolist()) and len(a_train) + len(a_val) == 100
    with pytest.raises(UserError):
        split_holdout(100, 100, seed=0)


def test_crop_flip_keeps_shape_dtype_and_content():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    zero = torch.zeros(2, 2, dtype=torch.long) + 2  # offset == padding: no translation
    same = crop_flip(x, 2, zero, torch.tensor([False, True]))
    assert same.shape == x.shape and same.dtype == torch.uint8
    assert torch.equal(same[0], x[0]) and torch.equal(same[1], x[1].flip(-1))
    shifted = crop_flip(x, 2, torch.tensor([[0, 4], [2, 2]]), torch.tensor([False, False]))
    assert torch.equal(shifted[0, 0, 2:, :], x[0, 0, :4, :]) and shifted[0, 0, :2].sum() == 0  # moved down by 2
    assert torch.equal(shifted[1, 0, :4, :], x[1, 0, 2:, :]) and shifted[1, 0, 4:].sum() == 0  # moved up by 2


def test_random_erasing_boxes():
    gen = torch.Generator().manual_seed(0)
    boxes = erase_boxes(500, 28, 28, 0.5, gen)
    frac = boxes[:, 0].float().mean().item()
    assert 0.4 < frac < 0.6
    x = torch.ones(500, 1, 28, 28)
    erased = apply_erase(x, boxes)
    area = (erased == 0).flatten(1).sum(1)
    assert torch.equal(area, boxes[:, 0] * boxes[:, 3] * boxes[:, 4])


def test_memory_loader_labels_stay_aligned_with_images():
    # Each image is filled with its own label value: after cropping and flipping, the centre pixel still says it.
    n = 300
    labels = torch.arange(n) % 10
    images = (labels.view(n, 1, 1, 1) * 20 + 10).to(torch.uint8).expand(n, 1, 12, 12).clone()
    from resnet.data.datasets import MemoryDataset

    loader = MemoryLoader(MemoryDataset(images, labels, [str(i) for i in range(10)]), 32, device=torch.device("cpu"),
                          mean=(0.0,), std=(1 / 255,), train=True, augment=Augment(2, True, 0.0), seed=3)
    seen = 0
    for x, y in loader.epoch(1):
        assert x.shape == (32, 1, 12, 12) and x.dtype == torch.float32
        assert torch.equal(x[:, 0, 6, 6], (y * 20 + 10).float())
        seen += len(y)
    assert seen == len(loader) * 32 == 288


def test_global_batch_is_split_across_processes():
    perm = epoch_permutation(1000, seed=0, epoch=2)
    whole = train_indices(perm, 3, 64, rank=0, world=1)
    halves = torch.cat([train_indices(perm, 3, 32, rank=r, world=2) for r in range(2)])
    assert torch.equal(whole, halves)


def test_resized_crop_boxes_follow_torchvisions_distribution():
    gen = torch.Generator().manual_seed(0)
    boxes = resized_crop_boxes(4000, 74, 0.35, gen)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 74 + 1e-4).all()  # inside the image
    area = w * h / 74**2
    assert area.max() <= 1 + 1e-5 and area.min() >= 0.35 * 3 / 4 - 1e-5  # clamping only ever shrinks a side
    unclamped = (w < 74) & (h < 74)
    assert area[unclamped].min() >= 0.35 - 1e-5 and 0.6 < area.mean() < 0.72  # uniform in [0.35, 1]: mean 0.675
    aspect = (w / h)[unclamped]
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4


def test_resized_crop_flip_cuts_the_box_and_mirrors():
    # Left half black, right half white: the left half's box gives black, the whole image's box the same image.
    image = torch.zeros(1, 3, 16, 16, dtype=torch.uint8)
    image[..., 8:] = 255
    images = image.expand(3, -1, -1, -1)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 16.0], [0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 16.0, 16.0]])
    out = resized_crop_flip(images, boxes, 8, torch.tensor([False, False, True]))
    assert out.shape == (3, 3, 8, 8) and out.dtype == torch.float32
    assert out[0].max() == 0  # the left half, stretched
    assert torch.equal(out[1, :, :, :4], torch.zeros(3, 8, 4)) and torch.equal(out[1, :, :, 4:], torch.full((3, 8, 4),
                                                                                                         255.0))
    assert torch.equal(out[2], out[1].flip(-1))


def test_a_loader_of_random_resized_crops_is_seeded_and_independent_of_the_process_count():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 20, 20), generator=g, dtype=torch.uint8)
    data = MemoryDataset(images, torch.arange(64) % 4, list("abcd"))
    aug = Augment(flip=True, min_scale=0.3, size=16)
    common = dict(device=torch.device("cpu"), mean=(0.5,) * 3, std=(0.25,) * 3, train=True, augment=aug, seed=5)
    whole = next(iter(MemoryLoader(data, 16, **common).epoch(2, 1)))
    again = next(iter(MemoryLoader(data, 16, **common).epoch(2, 1)))
    halves = [next(iter(MemoryLoader(data, 8, rank=r, world=2, **common).epoch(2, 1))) for r in range(2)]
    assert whole[0].shape == (16, 3, 16, 16) and torch.equal(whole[0], again[0])
    assert torch.equal(whole[0], torch.cat([h[0] for h in halves])) and torch.equal(whole[1], torch.cat([h[1] for h in
                                                                                                         halves]))
    other_step = next(iter(MemoryLoader(data, 16, **common).epoch(2, 2)))
    assert not torch.equal(whole[0], other_step[0])


def test_an_evaluation_loader_can_scale_a_training_set_stored_larger():
    images = torch.full((4, 1, 20, 20), 200, dtype=torch.uint8)
    data = MemoryDataset(images, torch.zeros(4, dtype=torch.long), ["a"])
    loader = MemoryLoader(data, 4, device=torch.device("cpu"), mean=(0.0,), std=(1 / 255,), train=False, resize=16)
    x, _ = next(iter(loader.epoch(0)))
    assert x.shape == (4, 1, 16, 16) and torch.allclose(x, torch.full_like(x, 200.0))
    assert loader.example(1).shape == (1, 16, 16)
