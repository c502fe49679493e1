"""The ResNet families (original and pre-activation): blocks, one configurable class each, and the registry."""

from . import cifar, imagenet, preact  # noqa: F401  (registers the models)
from .blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from .net import ResNet
from .preact import PreActBasicBlock, PreActBottleneck, PreActResNet
from .registry import ModelInfo, create_model, list_models, model_arguments, model_info

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "ResNet", "PreActBasicBlock", "PreActBottleneck",
           "PreActResNet", "ModelInfo", "create_model", "list_models", "model_arguments", "model_info"]
