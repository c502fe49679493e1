"""Training: :func:`train` runs a recipe to the end and writes a run directory."""

from .trainer import RunResult, Trainer, train

__all__ = ["RunResult", "Trainer", "train"]
