"""One resolver for "a run directory, a checkpoint, or a model file", used by every command.

A run directory (see README) holds ``config.yaml``, ``checkpoints/step-N.pt`` + ``last.pt`` (+ ``best.pt``),
``model.safetensors`` + ``model.json`` and any exports (``model.onnx``, ...). Commands accept the directory or one
file in it; this module turns either into the file a command needs, or one sentence saying what to give instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import UserError
from .io import load_checkpoint

STEP_FILE = re.compile(r"step-(\d+)\.pt$")
RESUME_HINT = "give a run directory, a checkpoint (.pt) of one, or auto with --out DIR"


def run_dir_of(source: str | Path) -> Path:
    """The run directory of a run directory, checkpoint (RUN/checkpoints/x.pt) or weights file (RUN/x)."""
    path = Path(source)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def resolve_weights(source: str | Path) -> Path:
    """A run directory -> its model.safetensors (or, before training finished, checkpoints/last.pt); files as given;
    named pretrained weights (``torchvision:resnet50``) -> their file in the download cache (resnet.pretrained)."""
    from .pretrained import is_named, named_weights_file  # same layer; pretrained imports this module

    if is_named(source):
        return named_weights_file(str(source))
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "model.safetensors", path / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{path} holds no model.safetensors or checkpoints/last.pt; give a run directory of "
                        f"`resnet train` or a weights file")
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a run directory, a checkpoint (.pt) or weights (.safetensors)")
    return path


def resolve_export(source: str | Path, suffix: str, fmt: str) -> Path:
    """A run directory -> its exported ``model<suffix>``; a ``*<suffix>`` file as given; else one sentence saying how
    to export it."""
    path = Path(source)
    if path.is_dir():
        candidate = path / f"model{suffix}"
        if candidate.is_file():
            return candidate
        raise UserError(f"{path} holds no exported model{suffix}; create it with `resnet export {path} --format {fmt}`")
    if not path.exists():
        raise UserError(f"{path} does not exist; give an exported {suffix} file or a run directory holding "
                        f"model{suffix}")
    if not path.name.endswith(suffix):
        raise UserError(f"this backend runs an exported {suffix} model, not {path.name}; create one with "
                        f"`resnet export {path} --format {fmt}`")
    return path


# --------------------------------------------------------------------------------------------------- checkpoints


def step_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Step checkpoints of a run, oldest first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt") if (m := STEP_FILE.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_valid_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint in ``run_dir`` that loads; damaged newer files are passed over."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    candidates = sorted(step_checkpoints(ckpt_dir), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    if (ckpt_dir / "last.pt").is_file():
        candidates.insert(0, ckpt_dir / "last.pt")
    for path in candidates:
        try:
            load_checkpoint(path)
            return path
        except UserError:
            continue
    return None


def resume_run_dir(resume: str | Path, out: str | None) -> Path:
    """The run directory ``--resume`` means: ``auto`` -> ``--out``; a directory as given; a checkpoint's run."""
    if str(resume) == "auto":
        if not out:
            raise UserError("--resume auto needs the run directory: pass --out DIR (or give the checkpoint path)")
        return Path(out)
    if not Path(resume).exists():
        raise UserError(f"--resume {resume} does not exist; {RESUME_HINT}")
    return run_dir_of(resume)


def resume_checkpoint(resume: str | Path, out: str | None) -> Path | None:
    """The checkpoint ``--resume`` continues from. ``auto`` or a run directory without a valid checkpoint (a run
    killed before its first one) gives None: the run starts again from step 0 in the same directory."""
    if str(resume) != "auto" and not Path(resume).is_dir():
        if not Path(resume).is_file():
            raise UserError(f"--resume {resume} does not exist; {RESUME_HINT}")
        return Path(resume)
    run_dir = resume_run_dir(resume, out)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist; start a new run with --out {run_dir} (without --resume)")
    return latest_valid_checkpoint(run_dir)


def saved_config(resume: str | Path, out: str | None) -> dict:
    """The resolved config (a plain dict) of the run that ``--resume`` points at: its config.yaml, else the
    checkpoint's copy."""
    run_dir = resume_run_dir(resume, out)
    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}); restore it from the "
                            f"checkpoint's copy by giving the checkpoint file to --resume") from None
        if isinstance(data, dict):
            return data
    if str(resume) != "auto" and Path(resume).is_file():
        return load_checkpoint(resume)["config"]
    raise UserError(f"{run_dir} has no config.yaml; give the checkpoint file itself to --resume")
