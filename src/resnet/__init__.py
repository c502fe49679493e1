"""resnet: Deep Residual Learning (He et al. 2015) end to end on PyTorch."""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .models import ResNet, create_model, list_models, model_info  # noqa: E402
from .models.summary import count_macs, count_parameters, summarize  # noqa: E402
from .modelcard import load_model  # noqa: E402

__all__ = ["ResNet", "UserError", "count_macs", "count_parameters", "create_model", "list_models", "load_model", "model_info",
           "summarize"]
