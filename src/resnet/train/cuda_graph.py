"""Training steps whose forward and backward pass are replayed from a CUDA graph.

On a GPU a small network's step is bound by the CPU launching kernels, not by the GPU running them: ResNet-20 on
28-pixel images is a few hundred kernels of microseconds each, and an H200 ran its eager step at about the speed of a
2-core CPU. Here the forward and backward pass (with the loss and the error count) are captured once into a CUDA graph
(``torch.cuda.graph``, the whole-network capture of PyTorch's CUDA-graphs notes) and replayed at every later step, one
launch instead of hundreds. The optimizer, the loss scaler, the schedule and the EMA stay eager after the replay, so
the learning rate is still a Python number that changes at every step. The gradients the replay writes are the same
tensors at every step (the capture's), which is why nothing may set them to None after the capture.

Capture needs a step that is the same at every call: one CUDA device and process, no torch.compile, no fp16 loss
scaling, no MixUp/CutMix and no fine-tuning schedule that freezes layers step by step; :func:`why_not_graphed`
names what rules it out. A failed capture falls back to eager steps and says why.
"""

from __future__ import annotations

import torch

from .loop import TrainContext, apply_update, forward_backward, train_step

WARMUP_STEPS = 3  # eager steps before the capture (on a side stream, as the capture wants): cuDNN's autotuning,
# the optimizer's momentum buffers and the allocator settle in them


def why_not_graphed(ctx: TrainContext, distributed: bool, compiled: bool) -> str | None:
    """Why this run's steps cannot be replayed from a CUDA graph, or None when they can."""
    if ctx.device.type != "cuda":
        return "not a CUDA device"
    reasons = [("several processes (DDP)", distributed), ("torch.compile", compiled),
               ("fp16 loss scaling", ctx.scaler.is_enabled()), ("MixUp/CutMix", ctx.mixer is not None),
               ("a fine-tuning schedule that freezes layers", ctx.freeze is not None)]
    found = [text for text, present in reasons if present]
    return ", ".join(found) if found else None


class GraphedStep:
    """A callable like :func:`train_step` (same arguments, same results): :data:`WARMUP_STEPS` eager steps, then the
    forward and backward pass of every step replayed from one captured graph. Every batch must have the shape of the
    first (training batches do: an epoch's ragged tail is dropped)."""

    def __init__(self, ctx: TrainContext, warmup: int = WARMUP_STEPS, log=print):
        self.ctx, self.warmup, self.log = ctx, warmup, log
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed: str | None = None  # why the capture failed: eager steps from then on
        self._side = torch.cuda.Stream(ctx.device)

    @property
    def graphed(self) -> bool:
        return self.graph is not None

    @property
    def setup_calls(self) -> int:
        """Calls before the replays begin (the eager warm-up steps and the capture): untimed when timing steps."""
        return self.warmup + 1

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.failed is not None:
            return train_step(self.ctx, images, labels)
        if self.calls <= self.warmup:
            current = torch.cuda.current_stream(self.ctx.device)
            self._side.wait_stream(current)
            with torch.cuda.stream(self._side):
                out = train_step(self.ctx, images, labels)
            current.wait_stream(self._side)
            return out
        if self.graph is None and not self._capture(images, labels):
            return train_step(self.ctx, images, labels)
        self._images.copy_(images)
        self._labels.copy_(labels)
        self.ctx.model.train()
        self.graph.replay()
        for param, grad in self._grads:  # the replay writes these tensors: keep them the parameters' gradients
            param.grad = grad
        apply_update(self.ctx)
        return self._loss.clone(), self._errors.clone()

    def _capture(self, images: torch.Tensor, labels: torch.Tensor) -> bool:
        ctx = self.ctx
        self._images = torch.empty_like(images)  # keeps channels_last
        self._labels = torch.empty_like(labels)
        ctx.model.train()
        ctx.optimizer.zero_grad(set_to_none=True)  # the capture allocates the gradients in the graph's own memory
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._loss, self._errors = forward_backward(ctx, self._images, self._labels, self._labels,
                                                            autocast_cache=False)
        except RuntimeError as exc:  # an op that cannot be captured: train on, eagerly
            self.failed = str(exc).splitlines()[0]
            self.log(f"CUDA graph capture failed ({self.failed}): eager steps from here")
            ctx.optimizer.zero_grad(set_to_none=True)
            return False
        self._grads = [(p, p.grad) for p in ctx.model.parameters() if p.grad is not None]
        self.graph = graph
        return True


def make_step(ctx: TrainContext, enabled: bool, distributed: bool = False, compiled: bool = False, log=print):
    """The step function of a run: a :class:`GraphedStep` where CUDA graphs are ``enabled`` and apply, else
    :func:`train_step` itself."""
    if enabled and why_not_graphed(ctx, distributed, compiled) is None:
        return GraphedStep(ctx, log=log)
    return lambda images, labels: train_step(ctx, images, labels)


def untimed_calls(step) -> int:
    """Calls of a step function before its time is its steady speed: a graphed step's eager steps and capture."""
    return step.setup_calls if isinstance(step, GraphedStep) else 1


def graph_note(step, ctx: TrainContext, enabled: bool, distributed: bool, compiled: bool) -> str:
    """The banner's word on CUDA graphs: only on a CUDA device, where they are the default."""
    if ctx.device.type != "cuda":
        return ""
    if isinstance(step, GraphedStep):
        return ", CUDA graph"
    return f", no CUDA graph ({why_not_graphed(ctx, distributed, compiled) if enabled else 'cuda_graph off'})"
