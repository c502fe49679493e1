"""resnet: Deep Residual Learning (He et al. 2015) end to end on PyTorch.

The public names load on first use (PEP 562), so that ``import resnet`` and ``resnet --help`` do not pay for torch.
"""

from __future__ import annotations

import importlib

from .errors import UserError

__version__ = "0.1.0"

_HOMES = {  # public name -> the module that defines it
    "ResNet": "models", "create_model": "models", "list_models": "models", "model_info": "models",
    "count_macs": "models.summary", "count_parameters": "models.summary", "summarize": "models.summary",
    "load_model": "weights",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = ["ResNet", "UserError", "count_macs", "count_parameters", "create_model", "list_models", "load_model",
           "model_info", "summarize"]
