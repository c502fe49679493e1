"""The ResNet families (original and pre-activation): blocks, one configurable class each, and the registry; and
ResNet's successors, torchvision's classes configured for small images."""

from . import cifar, imagenet, preact, successors  # noqa: F401  (registers the models)
from .blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from .net import ResNet
from .preact import PreActBasicBlock, PreActBottleneck, PreActResNet
from .rehoused import RehousedNet
from .registry import ModelInfo, create_model, list_models, model_arguments, model_info

__all__ = ["BasicBlock", "Bottleneck", "ZeroPadShortcut", "ResNet", "PreActBasicBlock", "PreActBottleneck",
           "PreActResNet", "RehousedNet", "ModelInfo", "create_model", "list_models", "model_arguments", "model_info"]
