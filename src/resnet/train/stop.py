"""SIGINT / SIGTERM during training: the first one asks the loop to finish its step, write a checkpoint and stop; a
second one stops at once. The loop asks :meth:`StopFlag.requested` (a collective on several processes)."""

from __future__ import annotations

import signal

import torch

from ..errors import TrainingStopped
from . import distributed as dist

EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Installed for the life of a ``with`` block; the previous handlers come back after it."""

    def __init__(self, say=print):
        self.signal: int | None = None
        self._say, self._previous = say, {}

    def _handle(self, signum, _frame) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        self._say(f"\n{signal.Signals(signum).name}: finishing this step, then writing a checkpoint ...")

    def __enter__(self) -> StopFlag:
        for sig in EXIT_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def requested(self, env: dist.DistEnv, device: torch.device) -> bool:
        """A stop signal on any process."""
        if env.enabled:
            return dist.broadcast_flag(self.signal is not None, device)
        return self.signal is not None

    def stopped(self, step: int, checkpoint, run_dir) -> TrainingStopped:
        """What the run raises once it has written its checkpoint: how it stopped and how to resume."""
        signum = self.signal or signal.SIGTERM
        return TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint {checkpoint}. "
                               f"Resume with: resnet train --resume auto --out {run_dir}",
                               EXIT_SIGNALS.get(signum, 143))
