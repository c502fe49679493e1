"""Fine-tuning a pretrained net: which layers train, at what learning rate, and from which step.

The head is ``model.fc`` (the layer ``reset_head`` / ``reset_classifier`` replaces); the backbone is every other
module. The stem is every module the net registers before its first stage (``conv1``, ``bn1``, ``maxpool``), and the
stages are ``model.stages()``. ``finetune.freeze_stages: K`` freezes the stem and the first K stages, ``-1`` the whole
backbone. A frozen layer keeps its weights bit for bit: its parameters need no gradient (so they are left out of the
optimizer and autograd does not even compute one), and its BatchNorm layers stay in eval mode during training, so they
normalise with the pretrained running statistics and never update them.

``finetune.head_warmup_epochs`` freezes the whole backbone for the first steps of the run, so the fresh head settles
before its random gradients reach the pretrained layers; then the backbone joins (less what ``freeze_stages`` keeps
frozen). The phase of a step follows from the step number alone, so a resumed run does what an uninterrupted one does.

``finetune.backbone_lr`` multiplies the learning rate of the backbone's parameter groups (the head keeps the recipe's
lr); the optimizer's split of BN parameters and biases (no weight decay) applies within each part.
"""

from __future__ import annotations

from torch import nn

from ..config import FinetuneConfig
from ..errors import UserError


def frozen_modules(model: nn.Module, freeze_stages: int) -> list[nn.Module]:
    """The top-level modules ``freeze_stages`` freezes: the stem and the first K stages (-1: all but ``model.fc``)."""
    if freeze_stages == 0:
        return []
    if freeze_stages < 0:
        return [m for m in model.children() if m is not model.fc]
    stages = model.stages()
    if freeze_stages > len(stages):
        raise UserError(f"finetune.freeze_stages={freeze_stages} but {type(model).__name__} has {len(stages)} stages; "
                        f"use 1 to {len(stages)}, or -1 to freeze the whole backbone")
    out = []
    for module in model.children():  # registration order = forward order: stem, layer1, layer2, ...
        out.append(module)
        if module is stages[freeze_stages - 1]:
            return out
    raise ValueError("the model's stages are not among its children")


def _params(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def _batchnorms(modules: list[nn.Module]) -> list[nn.Module]:
    return [m for top in modules for m in top.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def head_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.fc.parameters()}


def split_head_backbone(model: nn.Module, groups: list[dict], lr: float, backbone_lr: float) -> list[dict]:
    """Split every parameter group into its head part (lr ``lr``) and backbone part (lr ``lr x backbone_lr``), head
    groups first (the logged lr is the head's); empty parts are dropped."""
    head = head_parameter_ids(model)
    heads, backbones = [], []
    for group in groups:
        params = group["params"]
        heads.append({**group, "params": [p for p in params if id(p) in head]})
        backbones.append({**group, "params": [p for p in params if id(p) not in head], "lr": lr * backbone_lr})
    return [g for g in heads + backbones if g["params"]]


class FineTuning:
    """The freezing plan of one run. Construct it on the model that trains (after SyncBatchNorm conversion, before
    the optimizer): it freezes ``freeze_stages`` for good. :meth:`apply` is called by every training step after
    ``model.train()`` and puts the layers frozen at that step in place (head warm-up, BN eval mode)."""

    def __init__(self, model: nn.Module, cfg: FinetuneConfig, steps_per_epoch: int):
        self.frozen = frozen_modules(model, cfg.freeze_stages)
        self.backbone_lr = cfg.backbone_lr  # applied by build_optimizer; kept here for describe()
        self.warmup_steps = int(round(cfg.head_warmup_epochs * steps_per_epoch))
        # During the head warm-up the whole backbone is frozen; the layers frozen for good are a subset of it.
        self.warmup_frozen = frozen_modules(model, -1) if self.warmup_steps else self.frozen
        self._bns = {False: _batchnorms(self.frozen), True: _batchnorms(self.warmup_frozen)}
        names = {id(m): name for name, m in model.named_modules()}
        self._bn_names = {warm: frozenset(names[id(m)] for m in bns) for warm, bns in self._bns.items()}
        permanent = {id(p) for p in _params(self.frozen)}
        self._joining = [p for p in _params(self.warmup_frozen) if id(p) not in permanent]  # frozen in warm-up only
        for p in _params(self.frozen):
            p.requires_grad_(False)
        self._in_warmup: bool | None = None  # unknown until the first step: apply() decides from the step

    @property
    def active(self) -> bool:
        return bool(self.frozen) or self.warmup_steps > 0 or self.backbone_lr != 1.0

    @property
    def toggles(self) -> bool:
        """True when parameters stop and start needing gradients during the run (DDP must then look for unused
        parameters each step)."""
        return bool(self._joining)

    def describe(self) -> str:
        """One line for the run's banner."""
        frozen = sum(p.numel() for p in _params(self.frozen))
        parts = [f"{frozen:,} parameters frozen (BN in eval mode)" if frozen else "every layer trains"]
        if self.backbone_lr != 1.0:
            parts.append(f"backbone lr x{self.backbone_lr:g}")
        if self.warmup_steps:
            parts.append(f"the head alone for the first {self.warmup_steps:,} steps")
        return "fine-tuning: " + ", ".join(parts)

    def in_warmup(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based: the steps done before it) trains the head alone."""
        return step < self.warmup_steps

    def frozen_batchnorms(self, step: int) -> frozenset[str]:
        """Names (in the model's ``named_modules``) of the BatchNorm layers frozen at step ``step``: their running
        statistics are the pretrained ones and must stay so."""
        return self._bn_names[self.in_warmup(step)]

    def apply(self, step: int) -> None:
        warm = self.in_warmup(step)
        if warm != self._in_warmup:  # the phase changes (or the first step of a run or resume)
            for p in self._joining:
                p.requires_grad_(not warm)
            self._in_warmup = warm
        for bn in self._bns[warm]:
            bn.eval()


def plan_finetuning(model: nn.Module, cfg: FinetuneConfig, steps_per_epoch: int) -> FineTuning | None:
    """The run's :class:`FineTuning`, or None when every layer trains from the first step at one lr (the default)."""
    plan = FineTuning(model, cfg, steps_per_epoch)
    return plan if plan.active else None
