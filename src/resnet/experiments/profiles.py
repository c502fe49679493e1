"""The degradation study's profiles (what `resnet degradation --profile` offers), apart from the study itself so
that the command line can list them without importing the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

PAPER_DEPTHS = (20, 32, 44, 56, 110)  # the depths of the paper's plain/residual CIFAR pairs
KINDS = ("plain", "resnet")  # the plain net and its residual twin (shortcut A: identical parameters)
SNAPSHOT_EPOCHS = [0, 1]  # weights kept for the gradient analysis: at initialisation and after the first epoch


@dataclass(frozen=True)
class Profile:
    """One version of the study. Its training settings live in the recipe (a YAML file under ``configs/``); a cell
    of the study is that recipe with only ``model.name``, ``seed``, ``out`` (and ``data.name``) set."""

    recipe: str  # recipe of every cell; ``{depth}`` in it is replaced by the cell's depth
    data: str
    depths: tuple[int, ...]
    seeds: int
    note: str = ""
    kinds: tuple[str, ...] = KINDS  # which of the pair it trains: both, or the residual nets alone
    # What the study records (log / evaluation / checkpoint cadence, snapshots) on top of recipes that are not the
    # study's own; never a training setting, which would belong in a recipe.
    overrides: dict = field(default_factory=dict)


_FASHION_NOTE = ("Fashion-MNIST (first 30k training images), 700 iterations of batch 128, SGD lr 0.1 with 100 linear "
                 "warm-up iterations then cosine decay, pad-4 crop + flip")
PROFILES = {
    # configs/degradation-fashion-mnist.yaml says why each setting is what it is.
    "default": Profile(recipe="degradation-fashion-mnist", data="fashion-mnist", depths=(20, 32, 44, 56), seeds=3,
                       note=_FASHION_NOTE),
    "quick": Profile(recipe="degradation-fashion-mnist", data="fashion-mnist", depths=(20, 56), seeds=1,
                     note=_FASHION_NOTE),
    # The paper's deepest pair of Fig. 6 against the shallowest, in the same recipe: does plain-110 degrade far
    # beyond plain-20 while ResNet-110 trains as well as ResNet-20? Two seeds give the spread the verdicts need, in
    # about 40 minutes on a 2-core bf16 CPU.
    "deep": Profile(recipe="degradation-fashion-mnist", data="fashion-mnist", depths=(20, 110), seeds=2,
                    note=_FASHION_NOTE),
    # Claim 4 (Fig. 6, Table 6: deeper residual nets train better), where a 2-core CPU's 90 minutes allow: the
    # residual nets alone, the study's recipe trained 3.6 times as long (2,500 iterations, ~11 epochs of its 30k
    # images), so that the deeper net has the steps to use its depth.
    "depth": Profile(recipe="degradation-fashion-mnist-long", data="fashion-mnist", depths=(20, 56), seeds=3,
                     kinds=("resnet",),
                     note=_FASHION_NOTE.replace("700 iterations", "2,500 iterations") + "; residual nets only"),
    # The paper's CIFAR-10 recipes (Sec. 4.2) as shipped: 64k iterations, /10 at 32k and 48k; the depth-110 recipe
    # carries the paper's warm-up, which plain-110 and ResNet-110 both get. The study records curves more often.
    "paper": Profile(
        recipe="cifar10-resnet{depth}-paper", data="cifar10", depths=(20, 32, 44, 56), seeds=1,
        note="CIFAR-10, the paper's schedule: 64k iterations, lr 0.1 /10 at 32k and 48k, batch 128",
        overrides={"log_every": 100, "eval_every": 1, "checkpoint_every": 2000, "test_tta": "none",
                   "snapshot_epochs": SNAPSHOT_EPOCHS}),
}
