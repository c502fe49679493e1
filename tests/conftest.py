"""Shared fixtures. Under CI (``CI`` set) a missing optional dependency or data set is a failure, never a skip."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def require_module(name: str):
    """Import ``name`` or skip locally; under CI a missing module fails the test, since it means a broken install."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed but CI must test it: `make test` installs the dev extra")
        pytest.skip(f"{name} is not installed")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short real training run on a Fashion-MNIST subset, shared by the eval / predict / export tests."""
    from resnet.train.config import load_config
    from resnet.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "fmnist"
    cfg = load_config("fashion-mnist-resnet20", {"out": str(out), "epochs": 3, "batch_size": 64,
                                                 "data.train_limit": 8000, "data.val_split": 1000},
                      ["optim.lr=0.1", "schedule.name=cosine", "schedule.warmup_epochs=0.2", "log_every=20",
                       "test_tta=none"])
    return train(cfg, log=lambda *a, **k: None)
