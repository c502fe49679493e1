"""One fastai run of benchmarks/peers.py: the ten-line script a fastai user writes for a folder of images, with its
number of epochs fitted to a wall-clock budget. Prints one JSON line: val top-1, epochs, training images per second.

    python benchmarks/peer_fastai.py FOLDER SIZE BUDGET_S SEED [--started UNIX_TIME]

fastai has no time budget, so the script times a few training batches and one validation pass of a throwaway
learner, and fits ``fit_one_cycle(n)`` with the largest n that ends by ``started + BUDGET_S`` (started: when the
command was launched, so start-up counts). The learner is fastai's documented from-scratch set-up: torchvision's
ResNet-18 with fastai's head, ``Resize(SIZE)``, ``aug_transforms(size=SIZE, min_scale=0.75)``, batch 64, one-cycle
Adam at fastai's default peak lr (1e-3), accuracy on val/ after the last epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import time

TIMED_BATCHES = 8  # training batches timed after WARMUP_BATCHES untimed ones
WARMUP_BATCHES = 2
SAFETY = 0.97  # fit into this share of the time left: the last epoch's validation and the process's exit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("size", type=int)
    p.add_argument("budget", type=float)
    p.add_argument("seed", type=int)
    p.add_argument("--started", type=float, default=None)
    args = p.parse_args()
    started = args.started or time.time()

    from fastai.callback.core import Callback, CancelFitException
    from fastai.vision.all import (ImageDataLoaders, Resize, accuracy, aug_transforms, resnet18, set_seed,
                                   vision_learner)

    def learner():
        set_seed(args.seed)
        dls = ImageDataLoaders.from_folder(args.folder, train="train", valid="val", item_tfms=Resize(args.size),
                                           batch_tfms=aug_transforms(size=args.size, min_scale=0.75), bs=64)
        return vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)

    class TimeBatches(Callback):
        """Stop a fit after WARMUP_BATCHES + TIMED_BATCHES training batches, timing the last TIMED_BATCHES."""

        def before_epoch(self):
            self.count, self.start = 0, time.perf_counter()

        def after_batch(self):
            self.count += 1
            if self.count == WARMUP_BATCHES:
                self.warm = time.perf_counter()
            if self.count == WARMUP_BATCHES + TIMED_BATCHES:
                self.per_batch = (time.perf_counter() - self.warm) / TIMED_BATCHES
                raise CancelFitException()

        def epoch_seconds(self, batches: int) -> float:
            """The epoch's start (its workers, first batches) as timed, the rest at the timed batches' pace."""
            return self.warm - self.start + self.per_batch * (batches - WARMUP_BATCHES)

    probe = learner()
    timer = TimeBatches()
    batches = len(probe.dls.train)
    with probe.no_bar():
        t0 = time.perf_counter()
        if batches > WARMUP_BATCHES + TIMED_BATCHES:
            probe.fit_one_cycle(1, cbs=timer)
            epoch_s = timer.epoch_seconds(batches)
        else:  # an epoch shorter than the probe: time a whole one
            probe.fit_one_cycle(1)
            epoch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        probe.validate()
        epoch_s += time.perf_counter() - t0
    left = started + args.budget - time.time()
    epochs = max(1, math.floor(SAFETY * left / epoch_s))

    learn = learner()
    t0 = time.perf_counter()
    with learn.no_bar():
        learn.fit_one_cycle(epochs)
    fit_s = time.perf_counter() - t0
    valid_loss, top1 = learn.recorder.values[-1][1:3]
    n_train = len(learn.dls.train_ds)
    print(json.dumps({"top1": 100 * float(top1), "epochs": epochs, "img_per_s": epochs * n_train / fit_s,
                      "planned_epoch_s": epoch_s, "fit_s": fit_s}))


if __name__ == "__main__":
    main()
