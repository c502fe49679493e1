"""Every file the package writes goes through here, and so does every way a write can fail.

A write goes to a temporary file beside its target, is fsynced, then renamed over it: a kill at any moment leaves
the old file or the new one, never a torn one. An append (a log line) that fails is cut back to where it began.
A write that fails -- a full disk, a used-up quota, an I/O error, a read-only or forbidden place, or torch's and
safetensors' own serialization errors over one of these -- becomes a :class:`WriteError`: one sentence that names
the path, what failed, the free space where that matters and what to do, ending the command with exit status 2.
Whatever was at the path before is left as it was.

Writes a command can do without (TensorBoard events, a run's figures and report page, the folder scan cache) go
through :class:`OptionalWrites`: the first failure is a warning and the command goes on.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .errors import UserError

REASONS = {  # errno -> what went wrong, as a user reads it
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EIO: "an input/output error (a failing disk or a lost network mount)",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file is larger than the filesystem allows",
}
ADVICE = {  # errno -> what to do about it
    errno.ENOSPC: "free some space there or write somewhere else",
    errno.EDQUOT: "free some of your quota or write somewhere else",
    errno.EIO: "check the disk (see `dmesg`) or write somewhere else",
    errno.EROFS: "write somewhere that is writable",
    errno.EACCES: "write somewhere you have permission to, or change the permissions",
    errno.EPERM: "write somewhere you have permission to, or change the permissions",
}
# errnos found in the text of errors raised by native writers (safetensors: "(os error 28)"; openvino, C++ streams)
_NATIVE = re.compile(r"(?:os error|errno)[ =:]*(\d+)", re.IGNORECASE)
_STRERRORS = {os.strerror(code).lower(): code for code in REASONS}
# torch.save's own errors when the stream under it fails (the OSError, when there was one, is their __context__)
_TORCH_WRITE = ("inline_container", "PytorchStreamWriter", "iostream error", "file write failed")


class WriteError(UserError):
    """A file could not be written; what was at ``path`` before is intact. The message is one sentence; ``then``
    adds the next step a command knows (how to continue a run)."""

    def __init__(self, message: str, path: Path, then: str | None = None):
        super().__init__(message if then is None else f"{message}, then {then}")
        self.base, self.path = message, path

    def then(self, next_step: str) -> WriteError:
        """This error with ``next_step`` after what to do (", then continue with ..."), in place of any before."""
        return WriteError(self.base, self.path, next_step)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for an unprivileged user) on the filesystem that holds ``path`` or would: its nearest existing
    ancestor's. None where that cannot be read."""
    place = Path(path).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        return shutil.disk_usage(place).free
    except OSError:
        return None


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: ``exc`` itself, one in its chain (torch.save's RuntimeError carries the
    stream's OSError as its context), or an errno named in a native writer's message. None when it is no failure
    of the file system (a bug, a bad model) and must not be reported as one."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and not isinstance(seen, (BrokenPipeError, ConnectionError)):
            return seen
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    text = str(exc)
    if (found := _NATIVE.search(text)) is not None:
        return OSError(int(found.group(1)), os.strerror(int(found.group(1))))
    lowered = text.lower()
    for message, code in _STRERRORS.items():
        if message in lowered:
            return OSError(code, message)
    if any(mark in text for mark in _TORCH_WRITE):
        return OSError(None, f"torch.save failed ({text.strip().splitlines()[0][:100]})")
    return None


def write_error(path: Path, what: str, error: OSError) -> WriteError:
    """The sentence for ``error`` while writing ``what`` at ``path``."""
    code = error.errno
    reason = REASONS.get(code) or (error.strerror or str(error)).strip().rstrip(".")
    free = free_bytes(path) if code in (errno.ENOSPC, errno.EDQUOT, None) else None
    if code is None and free is not None and free < 1 << 20:
        code, reason = errno.ENOSPC, f"the disk is full ({reason})"  # a native writer that named no errno
    room = f" ({human_bytes(free)} free there)" if free is not None else ""
    advice = ADVICE.get(code, "check that place or write somewhere else")
    return WriteError(f"could not write {what} {path}: {reason}{room}; nothing there was changed: {advice}", path)


@contextmanager
def writing(path: str | Path, what: str = "file", disk_only: bool = False) -> Iterator[None]:
    """Turn a failed write of ``what`` at ``path`` inside the block into a :class:`WriteError`; any other error
    passes unchanged (with ``disk_only``, so does every OSError but a full, failing or forbidden disk's: a block
    that also reads the network)."""
    try:
        yield
    except UserError:  # (a WriteError already, or a user's mistake that a writer found)
        raise
    except Exception as exc:
        found = os_error_in(exc)
        if found is None or (disk_only and found.errno not in REASONS):
            raise
        raise write_error(Path(path), what, found) from None


def make_dir(path: str | Path, what: str = "directory") -> Path:
    """``mkdir -p path``, a failure as a :class:`WriteError`."""
    path = Path(path)
    with writing(path, what):
        path.mkdir(parents=True, exist_ok=True)
    return path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _written(path: Path, start: int, torn: bool = True) -> None:
    """Called once the bytes of a write are in ``path`` (from offset ``start``; ``torn``: a failure here may cut
    them part-way), before they are committed: the seam where the tests inject a failure at the Nth write."""


def _sync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _replace(path: Path, tmp: Path, write_to: Callable[[Path], Any], what: str,
             parts: Callable[[Path], list[Path]]) -> Path:
    """``write_to(tmp)``, then every file of ``parts(tmp)`` fsynced and renamed over its twin in ``parts(path)``, in
    that order; on any failure the temporary files are removed and the old ones stay."""
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_to(tmp)
            for part in parts(tmp):
                _written(part, 0)
                _sync(part)
            for part, target in zip(parts(tmp), parts(path)):
                os.replace(part, target)
        finally:
            for part in parts(tmp):  # (none is left after the renames)
                part.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_replace(path: str | Path, write_to: Callable[[Path], Any], what: str = "file") -> Path:
    """Call ``write_to(tmp)`` with a temporary path beside ``path``, fsync the file, then rename it over ``path``.
    On any failure the temporary file is removed and ``path`` keeps its previous content; a failure of the file
    system is a :class:`WriteError` naming ``what``. For writers that take a path (exporters, quantizers,
    safetensors, figures); :func:`atomic_write` is the same for writers of an open file."""
    path = Path(path)
    return _replace(path, path.with_name(f".{path.name}.tmp-{os.getpid()}"), write_to, what, lambda p: [p])


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any], what: str = "file") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_replace(path, to_file, what)


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()), what)


def write_json(path: str | Path, obj: Any, what: str = "file") -> Path:
    return write_text(path, json.dumps(obj, indent=2), what)


def append_line(path: str | Path, line: str, what: str = "log") -> None:
    """Append ``line`` (and a newline) to ``path``; a failed append is cut back, so the file ends with its last
    whole line as before."""
    path = Path(path)
    with writing(path, what):
        with open(path, "ab") as f:
            start = f.tell()
            try:
                f.write(line.encode() + b"\n")
                f.flush()
                _written(path, start)
            except BaseException:
                f.truncate(start)
                raise


def link_or_copy(src: Path, dst: Path, what: str = "file") -> None:
    """Point ``dst`` at ``src``'s content atomically (hard link when possible; a copy otherwise)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    with writing(dst, what):
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            atomic_replace(dst, lambda t: shutil.copyfile(src, t), what)
            return
        try:
            _written(tmp, 0, torn=False)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def replace_pair(path: Path, write_to: Callable[[Path], Any], other: Callable[[Path], Path], what: str) -> Path:
    """:func:`atomic_replace` for a format of two files (OpenVINO's .xml and the .bin that ``other`` names): both
    are written under temporary names, then the second file and ``path`` are renamed over the old pair."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")  # (the writer reads the suffix)
    return _replace(path, tmp, write_to, what, lambda p: [other(p), p])


def save_figure(fig, path: str | Path, dpi: int, what: str = "figure") -> Path:
    """A matplotlib figure written as a PNG at ``path``, atomically."""
    return atomic_replace(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), what)


class OptionalWrites:
    """Writes a command can do without (TensorBoard events, a run's figures and report page, a cache): a failure
    is a warning, given once (``warn``), and the command goes on without the file."""

    def __init__(self, warn: Callable[[str], None]):
        self.warn, self.failed = warn, []

    def __call__(self, write: Callable[..., Any], *args, **kwargs) -> Any:
        """``write(*args, **kwargs)``, or None when it failed to write."""
        try:
            return write(*args, **kwargs)
        except WriteError as exc:
            if not self.failed:
                self.warn(f"{exc}; going on without it")
            self.failed.append(exc.path)
            return None
