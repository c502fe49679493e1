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
