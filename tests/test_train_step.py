"""One training step of the default recipe never waits for the device: nothing in it reads a tensor's value back to
the host. On a GPU such a read (``.item()``, ``bool(tensor)``, ``if tensor > 0``) stalls the loop at every step until
the device has caught up, which is how the EMA of torch's ``AveragedModel`` cost a 2-sync-per-step loop on an H200.
On the CPU the same reads show up as ``aten._local_scalar_dense`` / ``aten.is_nonzero`` calls, so this is tested here.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from resnet.config import load_config
from resnet.train.ema import make_ema
from resnet.train.loop import train_step
from resnet.train.trainer import Trainer

HOST_READS = {"aten._local_scalar_dense.default", "aten.is_nonzero.default", "aten.item.default"}


class HostReads(TorchDispatchMode):
    """Records every op that copies a tensor's value to the host."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in HOST_READS:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_ema_update_reads_nothing_back_from_the_device():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    for warmup in (True, False):
        ema = make_ema(model, 0.999, warmup=warmup)
        with HostReads() as mode:
            for _ in range(3):  # the first update (a copy) and the ones after it
                ema.update_parameters(model)
        assert mode.reads == []
        assert int(ema.n_averaged) == 3


def test_a_training_step_of_the_default_recipe_reads_nothing_back_from_the_device(tmp_path):
    cfg = load_config(None, {"out": str(tmp_path), "data.train_limit": 1024, "data.val_split": 256,
                             "data.test_limit": 256, "epochs": 1, "budget": None, "batch_size": 32, "ema": 0.999})
    trainer = Trainer(cfg, log=lambda *a, **k: None)
    assert trainer.ctx.ema is not None and cfg.label_smoothing > 0  # an EMA (the recipe's is off) and its loss
    batches = trainer.data.train.epoch(0)
    images, labels = next(batches)
    train_step(trainer.ctx, images, labels)  # the optimizer's first step creates its momentum buffers
    images, labels = next(batches)
    with HostReads() as mode:
        loss, errors = train_step(trainer.ctx, images, labels)
    assert mode.reads == []
    assert torch.isfinite(loss) and 0 <= int(errors) <= 32


def test_cuda_graphs_apply_only_to_a_plain_step_on_one_cuda_device(tmp_path):
    """Where a step cannot be captured, the run says why and trains eagerly (benchmarks/gpu_check.py checks the graphed
    step itself against eager steps on a GPU)."""
    from resnet.train.cuda_graph import make_step, why_not_graphed

    cfg = load_config(None, {"out": str(tmp_path), "data.train_limit": 512, "data.val_split": 128,
                             "data.test_limit": 128, "epochs": 1, "budget": None, "batch_size": 32})
    ctx = Trainer(cfg, log=lambda *a, **k: None).ctx
    assert why_not_graphed(ctx, distributed=False, compiled=False) == "not a CUDA device"
    assert not hasattr(make_step(ctx, enabled=True), "graphed")  # on the CPU: train_step itself
    ctx.device = torch.device("cuda")  # the reasons a CUDA run would give (nothing runs on it here)
    assert why_not_graphed(ctx, distributed=False, compiled=False) is None
    assert why_not_graphed(ctx, distributed=True, compiled=True) == "several processes (DDP), torch.compile"
    ctx.mixer = lambda images, labels, step: (images, labels)
    assert why_not_graphed(ctx, distributed=False, compiled=False) == "MixUp/CutMix"
