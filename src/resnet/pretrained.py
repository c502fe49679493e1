"""Pretrained weights: the one loader behind ``--pretrained SOURCE`` and ``init_from`` on `resnet train`, and behind
``torchvision:ARCH`` / ``timm:ARCH`` as a model in `resnet predict`, `eval` and `export`.

A SOURCE is one of::

    torchvision[:TAG]             the run's --model with torchvision's ImageNet weights (DEFAULT, or e.g. IMAGENET1K_V1)
    torchvision:ARCH[:TAG]        the same, architecture named (where no run names one: predict, eval, export)
    timm[:TAG], timm:ARCH[:TAG]   timm's weights for the names it shares with us (also timm:ARCH.TAG, timm's spelling);
                                  preact_resnetN loads timm's resnetv2_N after a key rename
    PATH                          a state dict (.pth .pt .bin, as torchvision and timm save them), a .safetensors file,
                                  or a run directory / checkpoint of `resnet train`

Named weights come through torch.hub's cache (``$TORCH_HOME/hub/checkpoints/<the URL's file name>``, where
torchvision and timm put them too) or, for timm weights kept on the Hugging Face Hub only, the HF cache (or
``$TORCH_HOME/hub/checkpoints/timm--<name>.safetensors``): found there when present, downloaded when a network is
there, else one sentence naming the URL and the exact file to put it in. Every file is read with
``torch.load(weights_only=True)`` or safetensors; nothing is unpickled that could run code.

The weights then meet the model: another class count gets a new head, another input-channel count gets the first
conv adapted (1 channel: the RGB filters summed; N: repeated and rescaled, as timm's ``adapt_input_conv``); any other
mismatch is one sentence naming the key.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import socket
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import UserError
from .io import first_line, load_safetensors, load_torch_file, sniff
from .modelcard import ModelCard, checkpoint_weights
from .models import create_model, list_models, model_info
from .runs import resolve_weights

HUBS = ("torchvision", "timm")
NAMED = re.compile(r"^(torchvision|timm)(:|$)")
OFFLINE_ENV = ("RESNET_OFFLINE", "HF_HUB_OFFLINE")  # set (to 1): never try the network, use the caches only
HEAD_PREFIX = "fc."  # the classifier of every family
WEIGHTS_HINT = "give a .pth/.pt/.bin/.safetensors file, a run directory, torchvision[:TAG] or timm[:TAG]"

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


@dataclass
class Weights:
    """A state dict (in our key names) and what is known about it."""

    state: dict[str, torch.Tensor]
    label: str  # how messages name it: "torchvision IMAGENET1K_V2", "timm resnet50d.ra2_in1k", a path
    card: ModelCard | None = None  # classes, preprocessing (named weights; runs of ours)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        head = self.state.get(HEAD_PREFIX + "weight")
        return int(head.shape[0]) if head is not None else None


# ----------------------------------------------------------------------------------------------------- grammar


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


def _arch_of(spec: Named, arch: str | None, source: str) -> str:
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


# ---------------------------------------------------------------------------------------------------- the caches


def offline() -> str | None:
    """The environment variable that forbids downloads, if one is set."""
    for name in OFFLINE_ENV:
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no"):
            return name
    return None


def hub_checkpoints() -> Path:
    """torch.hub's weights cache: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hub_cached_path(url: str) -> Path:
    """Where torch.hub keeps the file of ``url``: its file name in :func:`hub_checkpoints`."""
    return hub_checkpoints() / os.path.basename(urlparse(url).path)


def _not_available(label: str, url: str, path: Path, why: str) -> UserError:
    return UserError(f"{label} weights are not in the cache and cannot be downloaded ({why}); download {url} and "
                     f"save it as {path}, or start from a local file instead (--pretrained FILE.safetensors or "
                     f"FILE.pth)")


def unreachable(url: str, timeout: float = 3.0) -> str | None:
    """Why the host of ``url`` (or the proxy for it) cannot be reached in ``timeout`` seconds, DNS lookup included,
    else None: without a network a download fails at once, not after the hub clients' minute of retries."""
    parts = urlparse(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    target = urlparse(proxy if "://" in proxy else f"http://{proxy}") if proxy else parts
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    failure: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            failure.append(None)
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=connect, daemon=True)  # getaddrinfo itself has no timeout
    thread.start()
    thread.join(timeout)
    if not failure:
        return f"no network: {host} did not answer within {timeout:g} s"
    return None if failure[0] is None else f"no network: {host} cannot be reached, {first_line(failure[0], 80)}"


def fetch_url(url: str, label: str) -> Path:
    """The file of ``url`` in torch.hub's cache, downloaded (hash-checked, as torchvision does) when missing."""
    path = hub_cached_path(url)
    if path.is_file():
        return path
    if (env := offline()) is not None:
        raise _not_available(label, url, path, f"{env} is set")
    if (why := unreachable(url)) is not None:
        raise _not_available(label, url, path, why)
    hashed = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), hashed.group(1) if hashed else None, progress=True)
    except RuntimeError as exc:
        if "hash" in str(exc).lower():
            raise UserError(f"the download of {url} does not match its hash (a damaged transfer?); run again, or "
                            f"download it yourself and save it as {path}") from None
        raise _not_available(label, url, path, first_line(exc)) from None
    except (OSError, ValueError) as exc:  # URLError, socket errors, HTTP errors are OSErrors
        raise _not_available(label, url, path, first_line(exc)) from None
    return path


def _hf_cached(repo: str, filenames: list[str]) -> Path | None:
    """A timm weights file of Hugging Face repo ``repo`` already on this machine: our torch.hub-dir copy
    (``timm--<name>.safetensors``) or the HF cache (``$HF_HUB_CACHE``, as ``hf download`` leaves it)."""
    local = hf_local_path(repo)
    if local.is_file():
        return local
    try:
        import huggingface_hub as hf
    except ImportError:
        return None
    for name in filenames:
        cached = hf.try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return Path(cached)
    return None


def hf_local_path(repo: str) -> Path:
    return hub_checkpoints() / f"{repo.replace('/', '--')}.safetensors"


def _hf_download(repo: str, filenames: list[str]) -> Path:
    """Download a timm weights file from the Hugging Face Hub into the HF cache (OSError naming why not)."""
    try:
        import huggingface_hub as hf
    except ImportError:
        raise OSError("huggingface_hub is not installed") from None
    why = "not found"
    for name in filenames:
        try:
            return Path(hf.hf_hub_download(repo, name))
        except Exception as exc:  # offline, HTTP and missing-entry errors of huggingface_hub alike
            why = first_line(exc)
    raise OSError(why)


# ------------------------------------------------------------------------------------------------ named weights


def _imagenet_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision(arch: str, tag: str | None) -> tuple[Path, ModelCard]:
    from torchvision import models as tvm

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


def _timm_cfg(arch: str, tag: str | None):
    try:
        import timm.models
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


def _timm_classes(cfg: dict, num_classes: int) -> list[str]:
    if num_classes == 1000:
        return _imagenet_categories()
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(cfg)
        if subset:
            names = list(ImageNetInfo(subset).label_descriptions())
            if len(names) == num_classes:
                return names
    except Exception:  # an older timm, or a label set it does not describe
        pass
    return [f"class_{i}" for i in range(num_classes)]


def _timm(arch: str, tag: str | None) -> tuple[Path, ModelCard]:
    name, cfg = _timm_cfg(arch, tag)
    label = f"timm {name}.{cfg.get('tag')}"
    if cfg.get("custom_load") or cfg.get("file"):
        raise UserError(f"{label} weights need timm's own loader; create the model with timm and save its "
                        f"state_dict() as a .pth file, then give that file")
    url, repo = cfg.get("url") or "", (cfg.get("hf_hub_id") or "").split("@")[0]
    if not url and not repo:
        raise UserError(f"{label} names no download location; give a weights file instead")
    files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
    path = _timm_file(label, url, repo, files)
    num_classes = int(cfg.get("num_classes") or 1000)
    c, h, w = cfg.get("input_size") or (3, 224, 224)
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    card = ModelCard(architecture=arch, model_kwargs={"num_classes": num_classes}, classes=_timm_classes(cfg,
                     num_classes), input_size=[int(c), int(h), int(w)], mean=list(cfg.get("mean")),
                     std=list(cfg.get("std")), resize=int(math.floor(h / crop_pct)), crop=int(h), dataset="imagenet",
                     extra={"source": f"timm:{arch}:{cfg.get('tag')}", "timm": f"{name}.{cfg.get('tag')}",
                            "url": url or f"https://huggingface.co/{repo}"})
    return path, card


def _timm_file(label: str, url: str, repo: str, files: list[str]) -> Path:
    """timm's weights: torch.hub's cache for its URL (timm's old cache), the HF cache, else a download (the URL
    first, then the Hugging Face Hub); no network and no cache names the URL and the file to put it in."""
    url_path = hub_cached_path(url) if url else None
    if url_path is not None and url_path.is_file():
        return url_path
    cached = _hf_cached(repo, files) if repo else None
    if cached is not None:
        return cached
    where = (url, url_path) if url else (f"https://huggingface.co/{repo}/resolve/main/{files[0]}", hf_local_path(repo))
    if (env := offline()) is not None:
        raise _not_available(label, where[0], where[1], f"{env} is set")
    if url:
        try:
            return fetch_url(url, label)
        except UserError:
            if not repo:
                raise
    if (why := unreachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")) is not None:
        raise _not_available(label, where[0], where[1], why)
    try:
        return _hf_download(repo, files)
    except OSError as exc:
        raise _not_available(label, where[0], where[1], first_line(exc)) from None


def _timm_resnetv2_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def named_weights_file(source: str, arch: str | None = None) -> Path:
    """The cached (or freshly downloaded) file of a named source: what `resnet export` names its output after."""
    return _resolve_named(source, arch)[0]


def _resolve_named(source: str, arch: str | None) -> tuple[Path, ModelCard]:
    spec = parse_source(source)
    arch = _arch_of(spec, arch, source)
    model_info(arch)
    return (_torchvision if spec.hub == "torchvision" else _timm)(arch, spec.tag)


# ------------------------------------------------------------------------------------------------ weight files


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (weights_only): plain, wrapped (``state_dict``, ``model``),
    DDP-prefixed (``module.``) or a checkpoint of ours (its EMA weights when its card says so)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; {WEIGHTS_HINT}")
    if path.suffix == ".safetensors" or sniff(path) == "safetensors":
        if path.stat().st_size == 0:
            raise UserError(f"weights file {path} is empty (an interrupted download or copy?); delete it and download "
                            f"or copy it again")
        return load_safetensors(path)
    obj = load_torch_file(path, "weights file", "(an interrupted download or copy?); delete it and download or copy "
                          "it again", "delete it and download or copy it again", WEIGHTS_HINT)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and ("card" in obj or "optimizer" in obj):
        obj = checkpoint_weights(obj, (obj.get("card") or {}).get("weights", "final"))  # a checkpoint of ours
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state dict of tensors; give model weights as torchvision or timm save them "
                        f"(torch.save(model.state_dict(), ...)) or as .safetensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_weights(source: str | Path, arch: str | None = None) -> Weights:
    """The weights of ``source`` (any SOURCE above) in our key names, with their card where the source has one."""
    if is_named(source):
        path, card = _resolve_named(str(source), arch)
        state = read_state_file(path)
        if card.architecture.startswith("preact_"):
            state = _timm_resnetv2_keys(state)
        hub = card.extra.get("source", str(source)).split(":")
        label = f"{hub[0]} {card.extra.get('timm') or hub[-1]}"
        return Weights(state, label, card, {"file": str(path)})
    path = resolve_weights(source) if Path(source).is_dir() else Path(source)
    state = read_state_file(path)
    if any(k.startswith("stages.") for k in state) and "stem.conv.weight" in state:
        state = _timm_resnetv2_keys(state)  # a resnetv2_* state dict saved from timm
    return Weights(state, str(source), None, {"file": str(path)})


# ------------------------------------------------------------------------------------------ weights -> the model


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv filters (O, I, kH, kW) for ``in_chans`` inputs: 1 -> the I channels summed (a grey image gives
    what the colour net saw for the same grey in every channel); N -> channels repeated to N and scaled by I / N, so
    the response to a constant input keeps its size."""
    dtype, w = weight.dtype, weight.float()
    source = w.shape[1]
    if in_chans == source:
        return weight
    if in_chans == 1:
        w = w.sum(1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / source), 1, 1)[:, :in_chans] * (source / in_chans)
    return w.to(dtype)


def _first_conv_key(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    raise UserError("the model has no convolution to adapt")  # not reached for our families


def apply_weights(model: nn.Module, weights: Weights, arch: str, head: str = "auto") -> str:
    """Load ``weights`` into ``model``, adapting the head and input channels; returns what happened, for the banner.

    ``head``: ``auto`` (a new head when the class count differs), ``reset`` (always a new head: ``reset_head``),
    ``keep`` (the head must fit: ``init_from`` without ``reset_head``, and prediction)."""
    own = model.state_dict()
    state = dict(weights.state)
    label, k_src = weights.label, weights.num_classes
    k_own = int(own[HEAD_PREFIX + "weight"].shape[0])
    theirs = state.get(HEAD_PREFIX + "weight")
    new_head = head == "reset" or (head == "auto" and (theirs is None or
                                                       theirs.shape != own[HEAD_PREFIX + "weight"].shape))
    if new_head:
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not (new_head and k.startswith(HEAD_PREFIX))
               and not k.endswith("num_batches_tracked")]
    if unexpected:
        raise UserError(f"{label} holds weights of another architecture: its key {unexpected[0]!r} is not in {arch} "
                        f"({len(unexpected)} such keys); pick the model the weights were made for")
    if missing:
        raise UserError(f"{label} holds weights of another architecture: {arch}'s key {missing[0]!r} is missing "
                        f"from it ({len(missing)} missing); pick the model the weights were made for")
    notes = []
    first = _first_conv_key(model)
    for key, value in list(state.items()):
        want = own[key].shape
        if value.shape == want:
            continue
        if key == first and value.ndim == 4 and value.shape[0] == want[0] and value.shape[2:] == want[2:]:
            state[key] = adapt_input_conv(value, want[1])
            notes.append(f"first conv {'summed' if want[1] == 1 else 'repeated'} from {value.shape[1]} to {want[1]} "
                         f"input channel{'s' if want[1] > 1 else ''}")
            continue
        if key.startswith(HEAD_PREFIX) and head == "keep":
            raise UserError(f"{label} has {value.shape[0]} classes but the model has {want[0]}; fine-tune with a new "
                            f"head (--set reset_head=true), or start from it with --pretrained, which replaces a head "
                            f"of another size")
        raise UserError(f"{label} does not fit {arch}: key {key!r} has shape {tuple(value.shape)} where the model has "
                        f"{tuple(want)}; pick the model the weights were made for")
    for key in own:  # the new head, and BN counters that old files do not store
        if key not in state:
            state[key] = own[key]
    model.load_state_dict(state, strict=True)
    classes = f" ({k_src} classes)" if k_src else ""
    what = f"{label}{classes}"
    if new_head:
        what += f" -> new {k_own}-class head"
    return ", ".join([what, *notes])


def init_model(model: nn.Module, arch: str, pretrained: str | None = None, init_from: str | None = None,
               reset_head: bool = False) -> str | None:
    """`resnet train`: start ``model`` from ``pretrained`` (a new head when the class count differs) or
    ``init_from`` (a local file whose head is kept unless ``reset_head``). Returns the banner line, or None."""
    if pretrained and init_from:
        raise UserError("set pretrained or init_from, not both; both start a run from weights (init_from keeps the "
                        "head unless reset_head=true)")
    source = pretrained or init_from
    if not source:
        return None
    if init_from and is_named(init_from):
        raise UserError(f"init_from takes a local weights file or run; use --pretrained {init_from} for named "
                        f"weights")
    head = "reset" if reset_head else ("auto" if pretrained else "keep")
    note = apply_weights(model, load_weights(source, arch), arch, head)
    return f"{'pretrained' if pretrained else 'init_from'}: {note}"


def load_named_model(source: str) -> tuple[nn.Module, ModelCard]:
    """``torchvision:ARCH[:TAG]`` / ``timm:ARCH[:TAG]`` as a ready model (eval mode) and its ImageNet card."""
    weights = load_weights(source)
    card = weights.card
    assert card is not None
    card.model_kwargs["num_classes"] = weights.num_classes or card.model_kwargs["num_classes"]
    model = create_model(card.architecture, **card.model_kwargs)
    apply_weights(model, weights, card.architecture, head="keep")
    if len(card.classes) != card.model_kwargs["num_classes"]:
        card.classes = [f"class_{i}" for i in range(card.model_kwargs["num_classes"])]
    return model.eval(), card


__all__ = ["HUBS", "Named", "TIMM_NAMES", "Weights", "adapt_input_conv", "apply_weights", "fetch_url", "init_model",
           "is_named", "load_named_model", "load_weights", "named_weights_file", "parse_source", "read_state_file"]
