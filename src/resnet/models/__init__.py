"""The ResNet family: blocks, one configurable network class, and the registry of named models."""

from . import cifar, imagenet  # noqa: F401  (registers the models)
from .blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from .net import ResNet
from .registry import ModelInfo, create_model, list_models, model_arguments, model_info

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "ResNet", "ModelInfo", "create_model", "list_models",
           "model_arguments", "model_info"]
