"""The layout of a run directory, as path logic: which run a file belongs to, its step checkpoints (the newest one
that loads), what ``--resume`` points at, and the config the run was started with.

A run directory holds ``config.yaml`` (as the user asked), ``run.json`` (what the run decided),
``checkpoints/step-N.pt`` + ``last.pt`` (+ ``best.pt``), ``model.safetensors`` + ``model.json`` and any exports
(``model.onnx``, ...). Which weights file a command reads is :mod:`resnet.weights`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UnreadableFile, UserError
from .io import load_checkpoint

RUN_FILE = "run.json"  # what the run decided (resnet.train.run_state)
STEP_FILE = re.compile(r"step-(\d+)\.pt$")
RESUME_HINT = "give a run directory, a checkpoint (.pt) of one, or auto with --out DIR"


def run_dir_of(source: str | Path) -> Path:
    """The run directory of a run directory, checkpoint (RUN/checkpoints/x.pt) or weights file (RUN/x)."""
    path = Path(source)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


# --------------------------------------------------------------------------------------------------- checkpoints


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Step checkpoints of a run, oldest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


@dataclass(frozen=True)
class FoundCheckpoint:
    """The checkpoint a resume continues from (``path`` None: none in the run loads) and the newer files it passed
    over, each with why."""

    path: Path | None
    content: dict | None
    skipped: tuple[tuple[Path, str], ...] = ()

    def skipped_note(self) -> str | None:
        """``skipped last.pt (empty), step-00000040.pt (its weights are not finite)``; None when none was."""
        if not self.skipped:
            return None
        return "skipped " + ", ".join(f"{path.name} ({why})" for path, why in self.skipped)


def nonfinite_weights(ckpt: dict) -> bool:
    """Whether a checkpoint's weights hold a NaN or an infinity (a run stops before it writes such weights; a file
    from elsewhere, or bits flipped on disk, may still hold them)."""
    return any(t.is_floating_point() and not bool(t.isfinite().all()) for t in ckpt["model"].values()
               if hasattr(t, "is_floating_point"))


def newest_checkpoint(run_dir: Path) -> FoundCheckpoint:
    """The newest checkpoint in ``run_dir`` that loads and holds finite weights, and its content; newer files that
    are damaged or not finite are passed over and named."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    last = [ckpt_dir / "last.pt"] if (ckpt_dir / "last.pt").is_file() else []
    # Newest first, last.pt before its twin: a step file written after a failed update of last.pt comes first.
    candidates = sorted(last + step_checkpoints(ckpt_dir), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    skipped: list[tuple[Path, str]] = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
        except UnreadableFile as exc:
            skipped.append((path, exc.reason))
            continue
        if nonfinite_weights(ckpt):
            skipped.append((path, "its weights are not finite"))
            continue
        return FoundCheckpoint(path, ckpt, tuple(skipped))
    return FoundCheckpoint(None, None, tuple(skipped))


def latest_valid_checkpoint(run_dir: Path) -> Path | None:
    """The path of :func:`newest_checkpoint`."""
    return newest_checkpoint(run_dir).path


def resume_run_dir(resume: str | Path, out: str | None) -> Path:
    """The run directory ``--resume`` means: ``auto`` -> ``--out``; a directory as given; a checkpoint's run."""
    if str(resume) == "auto":
        if not out:
            raise UserError("--resume auto needs the run directory: pass --out DIR (or give the checkpoint path)")
        return Path(out)
    if not Path(resume).exists():
        raise UserError(f"--resume {resume} does not exist; {RESUME_HINT}")
    return run_dir_of(resume)


def resume_checkpoint(resume: str | Path, out: str | None) -> FoundCheckpoint:
    """The checkpoint ``--resume`` continues from, and its content (loaded once). ``auto`` or a run directory without
    a valid checkpoint (a run killed before its first one) finds none (``path`` None): the run starts again from
    step 0 in the same directory."""
    if str(resume) != "auto" and not Path(resume).is_dir():
        if not Path(resume).is_file():
            raise UserError(f"--resume {resume} does not exist; {RESUME_HINT}")
        return FoundCheckpoint(Path(resume), load_checkpoint(resume))
    run_dir = resume_run_dir(resume, out)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist; start a new run with --out {run_dir} (without --resume)")
    return newest_checkpoint(run_dir)


def saved_config_file(resume: str | Path, out: str | None) -> dict:
    """The resolved config (a plain dict) of the run that ``--resume`` points at: its config.yaml, else (given a
    checkpoint file) the checkpoint's copy. ``budget_plan``, which runs made before run.json wrote there, is left out."""
    run_dir = resume_run_dir(resume, out)
    path, given_file = run_dir / "config.yaml", str(resume) != "auto" and Path(resume).is_file()
    data = None
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            if not given_file:
                raise UserError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}); restore it from the "
                                f"checkpoint's copy by giving the checkpoint file to --resume") from None
    if not isinstance(data, dict):
        if not given_file:
            raise UserError(f"{run_dir} has no config.yaml; give the checkpoint file itself to --resume")
        data = load_checkpoint(resume)["config"]
    data.pop("budget_plan", None)
    return data


def saved_changes(run_dir: Path) -> dict:
    """The config changes (dotted key -> value) that earlier resumes of a run asked for, from its run.json."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return {}
    try:
        changes = json.loads(path.read_text()).get("changes", {})
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{path} is damaged; delete it to resume with config.yaml as first written") from None
    return changes if isinstance(changes, dict) else {}
