"""Where weights come from and how they go into a model.

A SOURCE is one of::

    torchvision[:TAG]             the run's --model with torchvision's ImageNet weights (DEFAULT, or e.g. IMAGENET1K_V1)
    torchvision:ARCH[:TAG]        the same, architecture named (where no run names one: predict, eval, export)
    timm[:TAG], timm:ARCH[:TAG]   timm's weights for the names it shares with us (also timm:ARCH.TAG, timm's spelling)
    PATH                          a state dict (.pth .pt .bin, as torchvision and timm save them), a .safetensors file,
                                  or a run directory / checkpoint of `resnet train`

``card`` is the model card, ``files`` weights on disk, ``named`` and ``cache`` named weights and where they are kept,
``adapt`` the one function that puts a state dict into a model (head and input channels), ``load`` the loaders built
on them. Every file is read with ``torch.load(weights_only=True)`` or safetensors: nothing that could run code.
"""

from .adapt import adapt_input_conv, load_into
from .card import ModelCard, save_model
from .files import checkpoint_weights, read_state_file, read_weights, resolve_export, resolve_weights
from .load import Weights, init_model, load_model, load_model_and_card, load_named_model, load_weights
from .named import is_named, named_weights_file, parse_source

__all__ = ["ModelCard", "Weights", "adapt_input_conv", "checkpoint_weights", "init_model", "is_named", "load_into",
           "load_model", "load_model_and_card", "load_named_model", "load_weights", "named_weights_file",
           "parse_source", "read_state_file", "read_weights", "resolve_export", "resolve_weights", "save_model"]
