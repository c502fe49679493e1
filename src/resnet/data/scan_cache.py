"""Which files of an image folder decode, remembered between runs, so a run of a big folder (ImageNet: 1.28 million
files) does not decode every file before its first step.

``data.verify`` says how much is decoded before training:

- ``cached`` (default): only files that are new or changed since the cached scan; every other file's verdict (ok, or
  why it is bad) comes from the cache. A file is unchanged when its (path, size, mtime_ns) match; one ``stat`` each.
- ``full``: every file, and the cache is rewritten with the results.
- ``off``: nothing, not even a ``stat`` or the cache; a bad file stops the run when the loader reaches it, so
  ``data.bad_images=skip`` cannot leave it out.

The cache of a folder is one JSON file, ``$RESNET_CACHE/scans/<sha256 of the resolved folder>-<mode>.json`` (without
``$RESNET_CACHE``: ``~/.cache/resnet/scans/``), so a read-only folder gets one too. It holds file names relative to
the folder in parallel lists (name, size, mtime_ns) plus the bad files' reasons: ~60 bytes a file. Files that are no
longer in the folder drop out when it is rewritten; a damaged, foreign or outdated cache file is ignored and
rewritten. Writes are atomic (:mod:`resnet.writes`); a lock beside the file lets one process of a multi-process run scan
while the others wait and then read its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from filelock import FileLock

from ..images import MAX_PIXELS, BadImageError
from ..writes import WriteError, write_text
from .files import scan_images

VERSION = 1
Entry = tuple[int, int, "str | None"]  # (size, mtime_ns, reason the file is bad or None)


def cache_root() -> Path:
    """``$RESNET_CACHE`` or ``~/.cache/resnet``."""
    return Path(os.environ.get("RESNET_CACHE") or Path.home() / ".cache" / "resnet").expanduser()


def cache_path(root: str | Path, mode: str) -> Path:
    """The scan cache of folder ``root`` read as ``mode`` ("RGB" or "L": a file's verdict may depend on it)."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:24]
    return cache_root() / "scans" / f"{digest}-{mode.lower()}.json"


def load_scan(path: Path, root: Path, mode: str) -> dict[str, Entry] | None:
    """{relative name: entry} of a cache file; None when it is missing, damaged or from another folder or version."""
    try:
        obj = json.loads(path.read_bytes())
        if (obj["version"], obj["folder"], obj["mode"], obj["max_pixels"]) != (VERSION, str(root), mode, MAX_PIXELS):
            return None
        names, sizes, mtimes, bad = obj["files"], obj["size"], obj["mtime_ns"], obj["bad"]
        if not (len(names) == len(sizes) == len(mtimes)) or not isinstance(bad, dict):
            return None
        if not all(isinstance(v, str) for v in bad.values()):
            return None
        return {n: (s, m, bad.get(n)) for n, s, m in zip(names, sizes, mtimes)}
    except (OSError, ValueError, KeyError, TypeError):  # ValueError covers JSON and UTF-8 errors
        return None


def save_scan(path: Path, root: Path, mode: str, entries: dict[str, Entry]) -> None:
    names = list(entries)
    obj = {"version": VERSION, "folder": str(root), "mode": mode, "max_pixels": MAX_PIXELS, "files": names,
           "size": [entries[n][0] for n in names], "mtime_ns": [entries[n][1] for n in names],
           "bad": {n: e[2] for n, e in entries.items() if e[2] is not None}}
    write_text(path, json.dumps(obj, separators=(",", ":")), "the scan cache")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock (filelock) on ``path``.lock for the length of a scan; none where the cache folder cannot
    hold a lock file (the scan then runs unlocked)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.with_name(path.name + ".lock")))
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _stat_all(paths: Sequence[str]) -> list[tuple[int, int] | None]:
    """(size, mtime_ns) of each path; None for one that cannot be stat'ed."""
    out: list[tuple[int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return out


def _names(paths: Sequence[str], root: str) -> list[str]:
    """Cache keys: paths relative to the folder as the samples name it (``root``), others made absolute."""
    prefix = root.rstrip(os.sep) + os.sep
    return [p[len(prefix):] if p.startswith(prefix) else os.path.abspath(p) for p in paths]


@dataclass
class FolderScan:
    """What :func:`scan_folder` found and did."""

    bad: list[BadImageError] = field(default_factory=list)  # in the order of the samples
    decoded: int = 0  # files decoded now
    cached: int = 0  # files whose verdict came from the cache
    cache_file: Path | None = None
    warning: str | None = None  # e.g. the cache could not be written


def scan_folder(root: str | Path, samples: Sequence[tuple[str, int]], mode: str, verify: str = "cached",
                workers: int | None = None, listed: Sequence[str] | None = None,
                log: Callable[[str], None] = print) -> FolderScan:
    """Find the samples (paths under ``root``) that do not decode as ``mode``, decoding as little as ``verify``
    allows (see the module notes). ``listed``: every file now in the folder (default: the samples'), so the cache
    keeps the verdicts of files this run does not use (a ``train_limit`` run) and forgets removed ones."""
    if verify == "off":
        return FolderScan()
    if verify not in ("cached", "full"):
        raise ValueError(f"verify must be full, cached or off, not {verify!r}")
    given, root = str(Path(root)), Path(root).resolve()
    path = cache_path(root, mode)
    paths = [p for p, _ in samples]
    names = _names(paths, given)
    stats = _stat_all(paths)

    def plan(entries: dict[str, Entry] | None) -> list[int]:
        """Indices of the samples whose verdict is not in ``entries``."""
        if entries is None:
            return list(range(len(paths)))
        return [i for i, (n, st) in enumerate(zip(names, stats))
                if st is None or entries.get(n, (None, None))[:2] != st]

    entries = load_scan(path, root, mode) if verify == "cached" else None
    damaged = verify == "cached" and entries is None and path.exists()
    keep = set(names if listed is None else _names(listed, given))
    todo = plan(entries) if verify == "cached" else None
    if todo == [] and entries is not None and keep.issuperset(entries):  # nothing new, changed or removed
        return _result(paths, names, entries, {}, 0, path)

    with _locked(path):  # another process of this run may be scanning: wait, then use what it found
        if verify == "cached":
            entries = load_scan(path, root, mode)
            todo = plan(entries)
        else:
            entries, todo = None, list(range(len(paths)))
        if todo:
            why = ("data.verify=full" if verify == "full" else "the cached scan is damaged or outdated" if damaged
                   else "no scan cached yet" if entries is None else "new or changed since the cached scan")
            log(f"decoding {len(todo):,} of {len(paths):,} image files to find bad ones ({why}; the result is "
                f"cached in {path}) ...")
        start = time.perf_counter()
        found = {e.path: e.reason for e in scan_images([samples[i] for i in todo], mode, workers=workers)}
        fresh = {}
        for i in todo:
            if stats[i] is not None:  # a file that vanished is reported, never cached
                fresh[names[i]] = (*stats[i], found.get(paths[i]))
        merged = {n: e for n, e in (entries or {}).items() if n in keep}
        merged.update(fresh)
        result = _result(paths, names, merged, found, len(todo), path)
        if len(todo) >= 1000:
            log(f"decoded {len(todo):,} image files in {time.perf_counter() - start:.1f} s")
        if not todo and entries is not None and len(merged) == len(entries):
            return result  # another process wrote this very scan while we waited for the lock
        try:
            save_scan(path, root, mode, merged)
        except WriteError as exc:  # a cache: the run goes on, and the next one decodes these files again
            result.warning = f"{exc} (or set RESNET_CACHE to another folder); the next run decodes these files again"
        return result


def _result(paths: list[str], names: list[str], entries: dict[str, Entry], found: dict[str, str], decoded: int,
            path: Path) -> FolderScan:
    bad = []
    for p, n in zip(paths, names):
        reason = found[p] if p in found else entries[n][2] if n in entries else None
        if reason is not None:
            bad.append(BadImageError(p, reason))
    return FolderScan(bad, decoded, len(paths) - decoded, path)


__all__ = ["FolderScan", "cache_path", "cache_root", "load_scan", "save_scan", "scan_folder"]
