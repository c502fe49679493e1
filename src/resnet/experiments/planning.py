"""How long a study will take on this machine, said before it starts: a few real training and evaluation steps of
the shallowest and the deepest net are timed now, and every unfinished cell's steps and evaluations are costed from
them (cost grows linearly with depth in the 6n+2 family)."""

from __future__ import annotations

import math

import torch

from ..config import Config
from ..data import open_split
from ..device import autocast, resolve_device, resolve_precision
from ..models import create_model
from ..train.log import format_duration
from ..train.timing import time_training_steps
from .grid import NetCell

TIMED_STEPS = 3  # calls timed after one untimed warm-up call


def step_seconds(cfg: Config, channels: int, size: int, classes: int) -> tuple[float, float]:
    """(seconds of one training step of a batch, seconds of the forward pass of one batch in eval mode) for
    ``cfg``'s net, batch size and precision on its device, on random data of the data set's shape."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = create_model(cfg.model.name, num_classes=classes, in_chans=channels).to(device, memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(cfg.batch_size, channels, size, size, device=device).to(memory_format=fmt)
    labels = torch.randint(0, classes, (cfg.batch_size,), device=device)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device, precision):
            model(x)

    batches = [(images, labels)] * (TIMED_STEPS + 1)  # one untimed warm-up call, then the timed ones
    model.train()
    train_s = time_training_steps(train_step, batches, device)
    model.eval()
    return train_s, time_training_steps(eval_step, batches, device)


def cell_seconds(cfg: Config, train_size: int, test_size: int, train_s: float, eval_s: float) -> float:
    """Planned seconds of one cell of config ``cfg``: its training steps, its evaluations (every ``eval_every``
    epochs and the final test) and the study's analysis (training error and responses: one more pass each)."""
    steps_per_epoch = math.ceil(train_size / cfg.batch_size)
    steps = cfg.iterations or (cfg.epochs or 0) * steps_per_epoch
    evaluations = steps // steps_per_epoch // cfg.eval_every + 3
    return steps * train_s + evaluations * math.ceil(test_size / cfg.batch_size) * eval_s


def describe_plan(cells: list[NetCell]) -> str:
    """One line: how many cells are left and about how long they will take here, with the measured step times."""
    todo = [c for c in cells if not c.done]
    if not todo:
        return f"planned: all {len(cells)} cells are finished; analysing and drawing only"
    cfg = todo[0].cfg
    train = open_split(cfg.data.name, "train", cfg.data.root, limit=cfg.data.train_limit)
    test_size = min(len(open_split(cfg.data.name, "test", cfg.data.root)), cfg.data.test_limit or 10 ** 9)
    train_size = len(train) - cfg.data.val_split
    channels, size = train.images.shape[1], train.images.shape[-1]
    depths = sorted({c.depth for c in todo})
    timed = {d: step_seconds(next(c.cfg for c in todo if c.depth == d), channels, size, len(train.classes))
             for d in {depths[0], depths[-1]}}

    def at(depth: int) -> tuple[float, float]:  # linear in depth between the two timed nets
        (d0, (t0, e0)), (d1, (t1, e1)) = sorted(timed.items())[0], sorted(timed.items())[-1]
        w = 0.0 if d1 == d0 else (depth - d0) / (d1 - d0)
        return t0 + w * (t1 - t0), e0 + w * (e1 - e0)

    seconds = sum(cell_seconds(c.cfg, train_size, test_size, *at(c.depth)) for c in todo)
    measured = ", ".join(f"depth {d}: {timed[d][0]:.3f} s" for d in sorted(timed))
    left = f"{len(todo)} of {len(cells)} cells left" if len(todo) < len(cells) else f"{len(cells)} cells"
    return (f"planned: {left}, about {format_duration(seconds)} on this machine (one training step of "
            f"{cfg.batch_size} measured now, {measured})")
