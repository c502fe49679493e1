"""The one way a state dict goes into a model, for training (--pretrained, init_from, resume), eval, predict, export
and the studies: the head is kept, replaced when the class count differs, or always replaced (reset_head); the first
conv is adapted to another input-channel count when starting from weights; any other mismatch is one sentence
naming the key."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError

HEAD_PREFIX = "fc."  # the classifier of every family
HEADS = ("keep", "auto", "reset")
PICK = "pick the model the weights were made for"


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv filters (O, I, kH, kW) for ``in_chans`` inputs: 1 -> the I channels summed (a grey image gives
    what the colour net saw for the same grey in every channel); N -> channels repeated to N and scaled by I / N, so
    the response to a constant input keeps its size (as timm's ``adapt_input_conv``)."""
    dtype, w = weight.dtype, weight.float()
    source = w.shape[1]
    if in_chans == source:
        return weight
    if in_chans == 1:
        w = w.sum(1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / source), 1, 1)[:, :in_chans] * (source / in_chans)
    return w.to(dtype)


def first_conv_key(model: nn.Module) -> str | None:
    """The weight of the model's first convolution (``conv1.weight``; ``conv1.0.weight`` for a deep stem)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def other_architecture(source: str, detail: str) -> UserError:
    return UserError(f"{source} holds weights of another architecture: {detail}; {PICK}")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str, head: str = "keep",
              adapt_input: bool = False, arch: str | None = None) -> str:
    """Load ``state`` into ``model`` (every key and shape must match, but for the cases below) and return what
    happened, for the training banner. ``source`` and ``arch`` name the weights and the model in messages.

    ``head``: "keep" (the classifier must fit: resume, eval, init_from), "auto" (a new head when the class count
    differs: --pretrained) or "reset" (always a new head: reset_head). ``adapt_input``: another input-channel count
    adapts the first conv (:func:`adapt_input_conv`) rather than being an error."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    own = model.state_dict()
    state = dict(state)
    name = arch or "the model"
    head_key = HEAD_PREFIX + "weight"
    theirs, mine = state.get(head_key), own.get(head_key)
    new_head = head == "reset" or (head == "auto" and (theirs is None or mine is None or theirs.shape != mine.shape))
    if new_head:
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not (new_head and k.startswith(HEAD_PREFIX))
               and not k.endswith("num_batches_tracked")]
    if unexpected:
        raise other_architecture(source, f"its key {unexpected[0]!r} is not in {name} ({len(unexpected)} such keys)")
    if missing:
        raise other_architecture(source, f"{name}'s key {missing[0]!r} is missing from it ({len(missing)} missing)")
    notes = []
    first = first_conv_key(model)
    for key, value in list(state.items()):
        want = own[key].shape
        if value.shape == want:
            continue
        if key == first and value.ndim == 4 and value.shape[0] == want[0] and value.shape[2:] == want[2:]:
            if not adapt_input:
                raise UserError(f"{source} expects {value.shape[1]} input channels but the model has {want[1]}; set "
                                f"model.kwargs.in_chans={value.shape[1]} to match")
            state[key] = adapt_input_conv(value, want[1])
            notes.append(f"first conv {'summed' if want[1] == 1 else 'repeated'} from {value.shape[1]} to {want[1]} "
                         f"input channel{'s' if want[1] > 1 else ''}")
            continue
        if key.startswith(HEAD_PREFIX):  # head "keep"
            raise UserError(f"{source} has {value.shape[0]} classes but the model has {want[0]}; fine-tune with a new "
                            f"head (--set reset_head=true), or start from it with --pretrained, which replaces a head "
                            f"of another size")
        raise other_architecture(source, f"its key {key!r} has shape {tuple(value.shape)} where {name} has "
                                         f"{tuple(want)}")
    for key in own:  # the new head, and BN counters that old files do not store
        if key not in state:
            state[key] = own[key]
    model.load_state_dict(state, strict=True)
    what = source + (f" ({int(theirs.shape[0])} classes)" if theirs is not None else "")
    if new_head and mine is not None:
        what += f" -> new {int(mine.shape[0])}-class head"
    return ", ".join([what, *notes])
