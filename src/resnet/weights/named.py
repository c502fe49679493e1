"""Named weights: ``torchvision[:TAG]``, ``torchvision:ARCH[:TAG]``, ``timm[:TAG]``, ``timm:ARCH[:TAG]`` (also
``timm:ARCH.TAG``, timm's spelling). A source is parsed here, its file found in the caches (:mod:`.cache`), and it
comes with a card (ImageNet classes, preprocessing); timm's ``resnetv2_N`` loads into our ``preact_resnetN`` after a
key rename."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import models as tvm

from ..errors import UserError
from ..models import list_models, model_info
from .adapt import HEAD_PREFIX
from .cache import fetch_url, url_or_hub_file
from .card import ModelCard

HUBS = ("torchvision", "timm")
NAMED = re.compile(r"^(torchvision|timm)(:|$)")

# Our name -> timm's, for the architectures timm builds identically (keys and shapes checked in
# tests/test_pretrained.py). The pre-activation nets are timm's resnetv2_* under other key names.
TIMM_NAMES = {name: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50d",
                                      "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
                                      "wide_resnet101_2")}
TIMM_NAMES.update({f"preact_resnet{d}": f"resnetv2_{d}" for d in (18, 34, 50, 101, 152)})


@dataclass(frozen=True)
class Named:
    """A parsed ``torchvision[:ARCH][:TAG]`` / ``timm[:ARCH][:TAG]`` source."""

    hub: str
    arch: str | None = None
    tag: str | None = None

    def __str__(self) -> str:
        return ":".join(p for p in (self.hub, self.arch, self.tag) if p)


def is_named(source: str | Path | None) -> bool:
    """Whether ``source`` is a named hub source (``torchvision...`` / ``timm...``) rather than a path."""
    return source is not None and bool(NAMED.match(str(source)))


def parse_source(source: str) -> Named:
    """``"timm:resnet50d:a1_in1k"`` -> Named("timm", "resnet50d", "a1_in1k"); the ARCH part is recognised as one of
    our model names (``timm:resnet50d.a1_in1k``, timm's own spelling, works too)."""
    hub, _, rest = str(source).partition(":")
    if hub not in HUBS:
        raise UserError(f"{source!r} is not a named source; use torchvision[:ARCH][:TAG] or timm[:ARCH][:TAG]")
    parts = rest.split(":") if rest else []
    if any(not p for p in parts) or len(parts) > 2:
        raise UserError(f"cannot read weights source {source!r}; write {hub}, {hub}:TAG, {hub}:ARCH or "
                        f"{hub}:ARCH:TAG (e.g. {hub}:resnet50)")
    known = set(list_models())
    if hub == "timm" and parts and parts[0] not in known and "." in parts[0] and len(parts) == 1:
        arch, tag = parts[0].split(".", 1)
        if arch in known:
            return Named(hub, arch, tag)
    if not parts:
        return Named(hub)
    if parts[0] in known:
        return Named(hub, parts[0], parts[1] if len(parts) > 1 else None)
    if len(parts) == 2:
        model_info(parts[0])  # an unknown model: one sentence with the nearest names
    return Named(hub, None, parts[0])


def arch_of(spec: Named, arch: str | None, source: str) -> str:
    """The architecture a named source loads into: the one it names, else ``arch`` (the run's --model)."""
    if spec.arch and arch and spec.arch != arch:
        raise UserError(f"{source} names {spec.arch} but the model is {arch}; write {spec.hub}"
                        f"{':' + spec.tag if spec.tag else ''} (the run's --model is used) or train --model "
                        f"{spec.arch}")
    if spec.arch or arch:
        return spec.arch or arch  # type: ignore[return-value]
    close = difflib.get_close_matches(spec.tag or "", list_models(), n=1, cutoff=0.75)
    if close:
        model_info(spec.tag or "")  # "unknown model 'resnet5'; did you mean resnet50?"
    raise UserError(f"{source} does not name an architecture; write {spec.hub}:ARCH[:TAG], e.g. {spec.hub}:resnet50"
                    f"{':' + spec.tag if spec.tag else ''}")


def resolve_named(source: str, arch: str | None = None) -> tuple[Path, ModelCard]:
    """The file of a named source (cached or downloaded) and its card; ``arch`` is the run's --model, if any."""
    spec = parse_source(source)
    arch = arch_of(spec, arch, source)
    model_info(arch)
    return (torchvision_weights if spec.hub == "torchvision" else timm_weights)(arch, spec.tag)


def named_weights_file(source: str, arch: str | None = None) -> Path:
    """The cached (or freshly downloaded) file of a named source: what `resnet export` names its output after."""
    return resolve_named(source, arch)[0]


# --------------------------------------------------------------------------------------------------- torchvision


def torchvision_weights(arch: str, tag: str | None) -> tuple[Path, ModelCard]:
    try:
        enum = tvm.get_model_weights(arch)
    except (ValueError, KeyError):
        have = [n for n in list_models() if n in tvm.list_models(module=tvm)]
        raise UserError(f"torchvision has no weights for {arch}; its ResNets are {', '.join(have)} (or try timm or "
                        f"a weights file)") from None
    names = list(enum.__members__)
    key = (tag or "DEFAULT").split(".")[-1]  # "ResNet50_Weights.IMAGENET1K_V1" works too
    if key not in enum.__members__:
        close = difflib.get_close_matches(key, names, n=3, cutoff=0.3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(names)}."
        raise UserError(f"unknown torchvision weights tag {key!r} for {arch}; {hint}")
    weights = enum[key]
    t = weights.transforms()
    size = lambda v: int(v[0] if isinstance(v, (list, tuple)) else v)  # noqa: E731
    crop = size(t.crop_size)
    card = ModelCard(architecture=arch, model_kwargs={"num_classes": len(weights.meta["categories"])},
                     classes=list(weights.meta["categories"]), input_size=[3, crop, crop], mean=list(t.mean),
                     std=list(t.std), resize=size(t.resize_size), crop=crop, dataset="imagenet",
                     extra={"source": f"torchvision:{arch}:{weights.name}", "url": weights.url,
                            "recipe": weights.meta.get("recipe", "")})
    return fetch_url(weights.url, f"torchvision {type(weights).__name__}.{weights.name}"), card


# ---------------------------------------------------------------------------------------------------------- timm


def timm_cfg(arch: str, tag: str | None) -> tuple[str, dict]:
    """timm's name for ``arch`` and the pretrained config of its weights ``tag`` (timm's default without one)."""
    try:
        import timm.models  # optional
    except ImportError:
        raise UserError("timm weights need the timm package: pip install timm") from None
    name = TIMM_NAMES.get(arch)
    cfgs = timm.models.get_arch_pretrained_cfgs(name) if name else {}
    if not cfgs:
        have = ", ".join(TIMM_NAMES)
        raise UserError(f"timm has no weights for {arch}; timm weights load into {have}")
    tags = [k.split(".", 1)[1] for k in cfgs]
    if tag is None:
        cfg = timm.models.get_pretrained_cfg(name)
    elif tag in tags:
        cfg = cfgs[f"{name}.{tag}"]
    else:
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(tags)}."
        theirs = f" (timm's {name})" if name != arch else ""
        raise UserError(f"unknown timm weights tag {tag!r} for {arch}{theirs}; {hint}")
    return name, cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def timm_classes(cfg: dict, num_classes: int) -> list[str]:
    """The class names of timm weights: ImageNet's for 1000 classes, timm's label set where it has one."""
    if num_classes == 1000:
        return list(tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset  # optional

        subset = infer_imagenet_subset(cfg)
        if subset:
            names = list(ImageNetInfo(subset).label_descriptions())
            if len(names) == num_classes:
                return names
    except Exception:  # an older timm, or a label set it does not describe
        pass
    return [f"class_{i}" for i in range(num_classes)]


def timm_weights(arch: str, tag: str | None) -> tuple[Path, ModelCard]:
    name, cfg = timm_cfg(arch, tag)
    label = f"timm {name}.{cfg.get('tag')}"
    if cfg.get("custom_load") or cfg.get("file"):
        raise UserError(f"{label} weights need timm's own loader; create the model with timm and save its "
                        f"state_dict() as a .pth file, then give that file")
    url, repo = cfg.get("url") or "", (cfg.get("hf_hub_id") or "").split("@")[0]
    if not url and not repo:
        raise UserError(f"{label} names no download location; give a weights file instead")
    files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
    path = url_or_hub_file(label, url, repo, files)
    num_classes = int(cfg.get("num_classes") or 1000)
    c, h, w = cfg.get("input_size") or (3, 224, 224)
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    card = ModelCard(architecture=arch, model_kwargs={"num_classes": num_classes}, classes=timm_classes(cfg,
                     num_classes), input_size=[int(c), int(h), int(w)], mean=list(cfg.get("mean")),
                     std=list(cfg.get("std")), resize=int(math.floor(h / crop_pct)), crop=int(h), dataset="imagenet",
                     extra={"source": f"timm:{arch}:{cfg.get('tag')}", "timm": f"{name}.{cfg.get('tag')}",
                            "url": url or f"https://huggingface.co/{repo}"})
    return path, card


def is_timm_resnetv2(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is timm's resnetv2_* (keys ``stem.conv``, ``stages.N``) rather than ours."""
    return "stem.conv.weight" in state and any(k.startswith("stages.") for k in state)


def timm_resnetv2_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's resnetv2_* keys -> ours (preact_resnet*): stem.conv -> conv1, stages.N.blocks -> layerN+1, normK -> bnK,
    downsample.conv -> downsample, head.fc (a 1x1 conv) -> fc (a linear layer)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^stem\.conv\.", "conv1.", key)
        key = re.sub(r"^head\.fc\.", HEAD_PREFIX, key)
        key = re.sub(r"\.norm(\d)\.", r".bn\1.", key)
        key = re.sub(r"downsample\.conv\.", "downsample.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"layer{int(m[1]) + 1}.", key)
        out[key] = value.flatten(1) if key == HEAD_PREFIX + "weight" and value.ndim == 4 else value
    return out
