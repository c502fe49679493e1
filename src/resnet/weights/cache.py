"""Where named weights live on this machine: torch.hub's cache (``$TORCH_HOME/hub/checkpoints/<the URL's file
name>``, where torchvision and timm put them too) and, for timm weights kept on the Hugging Face Hub only, the HF
cache (or ``$TORCH_HOME/hub/checkpoints/timm--<name>.safetensors``). A file is used when present, downloaded when a
network is there, else one sentence names the URL and the exact file to put it in."""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import UserError
from ..io import first_line
from ..writes import WriteError, writing

OFFLINE_ENV = ("RESNET_OFFLINE", "HF_HUB_OFFLINE")  # set (to 1): never try the network, use the caches only


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


def hf_local_path(repo: str) -> Path:
    """Our own place for a Hugging Face repo's weights in torch.hub's cache (for a file copied by hand)."""
    return hub_checkpoints() / f"{repo.replace('/', '--')}.safetensors"


def not_available(label: str, url: str, path: Path, why: str) -> UserError:
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
        raise not_available(label, url, path, f"{env} is set")
    if (why := unreachable(url)) is not None:
        raise not_available(label, url, path, why)
    hashed = torch.hub.HASH_REGEX.search(path.name)
    try:
        with writing(path, "download", disk_only=True):  # (a full or read-only cache; network errors pass on to the lines below)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hashed.group(1) if hashed else None, progress=True)
    except WriteError:
        raise
    except RuntimeError as exc:
        if "hash" in str(exc).lower():
            raise UserError(f"the download of {url} does not match its hash (a damaged transfer?); run again, or "
                            f"download it yourself and save it as {path}") from None
        raise not_available(label, url, path, first_line(exc)) from None
    except (OSError, ValueError) as exc:  # URLError, socket errors, HTTP errors are OSErrors
        raise not_available(label, url, path, first_line(exc)) from None
    return path


def hf_cached(repo: str, filenames: list[str]) -> Path | None:
    """A weights file of Hugging Face repo ``repo`` already on this machine: :func:`hf_local_path` or the HF cache
    (``$HF_HUB_CACHE``, as ``hf download`` leaves it)."""
    local = hf_local_path(repo)
    if local.is_file():
        return local
    try:
        import huggingface_hub as hf  # optional: comes with timm
    except ImportError:
        return None
    for name in filenames:
        cached = hf.try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return Path(cached)
    return None


def hf_download(repo: str, filenames: list[str]) -> Path:
    """Download a weights file from the Hugging Face Hub into the HF cache (OSError naming why not)."""
    try:
        import huggingface_hub as hf  # optional: comes with timm
    except ImportError:
        raise OSError("huggingface_hub is not installed") from None
    why = "not found"
    for name in filenames:
        try:
            return Path(hf.hf_hub_download(repo, name))
        except Exception as exc:  # offline, HTTP and missing-entry errors of huggingface_hub alike
            why = first_line(exc)
    raise OSError(why)


def url_or_hub_file(label: str, url: str, repo: str, files: list[str]) -> Path:
    """A file published at ``url`` and/or in Hugging Face repo ``repo`` (timm's weights): torch.hub's cache for the
    URL, the HF cache, else a download (the URL first, then the Hub); with neither a network nor a cached copy, one
    sentence naming the URL and the file to put it in."""
    url_path = hub_cached_path(url) if url else None
    if url_path is not None and url_path.is_file():
        return url_path
    cached = hf_cached(repo, files) if repo else None
    if cached is not None:
        return cached
    where = (url, url_path) if url else (f"https://huggingface.co/{repo}/resolve/main/{files[0]}", hf_local_path(repo))
    if (env := offline()) is not None:
        raise not_available(label, where[0], where[1], f"{env} is set")
    if url:
        try:
            return fetch_url(url, label)
        except UserError:
            if not repo:
                raise
    if (why := unreachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")) is not None:
        raise not_available(label, where[0], where[1], why)
    try:
        return hf_download(repo, files)
    except OSError as exc:
        raise not_available(label, where[0], where[1], first_line(exc)) from None
