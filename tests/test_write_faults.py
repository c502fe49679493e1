"""Every write can fail. A full disk, an I/O error or a read-only place ends the command with one sentence and exit
status 2; no partial file is left where a good one was, the last good checkpoint stays, and a run stops at once.
Writes a run can do without (TensorBoard, its figures and report page, the scan cache) warn once and it goes on.

Faults are injected at the Nth write of a file, part-way through it (``resnet.writes._written``, the point every
write passes once its bytes are out and before they are committed), one test per write site; and once for real: a
tmpfs that fills up during a run (as root; the injection alone elsewhere), after which ``--resume auto`` finishes
with the same weights as a run that never failed.
"""

from __future__ import annotations

import ast
import errno
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import resnet
from resnet import writes
from resnet.errors import UserError
from resnet.io import load_checkpoint
from resnet.writes import WriteError

from .conftest import main_cli, require_module

PACKAGE = Path(resnet.__file__).parent
TMP_NAME = re.compile(r"^\.(?P<stem>.+?)\.tmp-\d+(?P<suffix>\.\w+)?$")

# 256 Fashion-MNIST training images and a validation split of 64 (best.pt): 8 steps an epoch, 2 epochs, a
# checkpoint every 4 steps, a snapshot after epoch 1, one thread, deterministic.
TINY = ["--train-limit", "256", "--batch-size", "32", "--epochs", "2", "--set", "threads=1", "--set",
        "deterministic=true", "--set", "data.val_split=64", "--set", "log_every=1", "--set", "checkpoint_every=4",
        "--set", "data.test_limit=200", "--set", "test_tta=none", "--set", "snapshot_epochs=[1]",
        "--set", "precise_bn=0"]


def target_of(path: Path) -> Path:
    """The file a write is for: ``.step-8.pt.tmp-123`` -> ``step-8.pt``, ``.model.tmp-123.bin`` -> ``model.bin``."""
    found = TMP_NAME.match(path.name)
    return path.with_name(found["stem"] + (found["suffix"] or "")) if found else path


class Faults:
    """Stands in for ``resnet.writes._written``: records every write, and makes the ``nth`` write of a file whose
    name matches ``pattern`` fail with ``code`` after cutting its new bytes in half (a torn write), remembering
    what the target held just before."""

    def __init__(self):
        self.seen: list[Path] = []
        self.pattern, self.nth, self.code, self.count = None, 0, errno.ENOSPC, 0
        self.failed: Path | None = None
        self.before: bytes | None = None  # the target's content when its write failed (None: there was none)

    def arm(self, pattern: str, nth: int = 1, code: int = errno.ENOSPC) -> Faults:
        self.pattern, self.nth, self.code = pattern, nth, code
        return self

    def __call__(self, path: Path, start: int, torn: bool = True) -> None:
        target = target_of(path)
        self.seen.append(target)
        if self.pattern is None or self.failed is not None or not fnmatch.fnmatch(target.name, self.pattern):
            return
        self.count += 1
        if self.count < self.nth:
            return
        self.failed = target
        if target == path:  # an append: what was there before it began
            self.before = path.read_bytes()[:start]
        else:
            self.before = target.read_bytes() if target.exists() else None
        if torn:
            size = path.stat().st_size
            os.truncate(path, start + (size - start) // 2)
        raise OSError(self.code, os.strerror(self.code), str(path))


@pytest.fixture
def faults(monkeypatch) -> Faults:
    injected = Faults()
    monkeypatch.setattr(writes, "_written", injected)
    return injected


def leftovers(root: Path) -> list[Path]:
    """Temporary files of writes under ``root`` (a failed write must remove its own)."""
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def assert_one_sentence(code: int, stderr: str, path_name: str, reason: str) -> str:
    assert code == 2 and "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("resnet: error:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("resnet: error: could not write ") and path_name in lines[0], lines[0]
    assert reason in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------- the one place


WRITE_CALLS = {"mkdir", "makedirs", "savefig", "save_file", "write_text", "write_bytes", "download_url_to_file",
               "unlink", "touch", "tofile", "SummaryWriter"}  # as methods, or functions of any module
MODULE_WRITE_CALLS = {("torch", "save"), ("onnx", "save"), ("np", "save"), ("os", "replace"), ("os", "link"),
                      ("os", "rename"), ("os", "remove"), ("jit", "save"), ("onnx", "export"), ("ov", "save_model"),
                      ("shutil", "copyfile"), ("shutil", "copy"), ("shutil", "copy2"), ("shutil", "move"),
                      ("shutil", "rmtree")}
GATES = {"atomic_replace", "atomic_write", "replace_pair", "save_figure"}  # take the writer as an argument
ALLOWED = {  # (file, call): why that write may fail without a sentence
    ("data/scan_cache.py", "mkdir"): "the folder of the scan's lock file: where it cannot be made, the scan runs "
                                     "unlocked",
}


def write_call(node: ast.Call) -> str | None:
    """The name of a call that writes to the file system (None for any other call); ``open`` only in a write mode."""
    func = node.func
    if isinstance(func, ast.Name):
        if func.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                  None)
            return "open" if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+") else None
        return func.id if func.id in {"SummaryWriter", "copyfile", "download_url_to_file", "save_file"} else None
    if isinstance(func, ast.Attribute):
        owner = func.value.attr if isinstance(func.value, ast.Attribute) else getattr(func.value, "id", None)
        if (owner, func.attr) in MODULE_WRITE_CALLS:
            return f"{owner}.{func.attr}"
        if func.attr in WRITE_CALLS and owner not in {"self", "writes"}:
            return func.attr
    return None


def gated(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether a call sits inside ``with writing(...)``, in an argument of a gate (a lambda), or in a nested
    function that its enclosing function hands to a gate."""
    child, node = node, parents.get(node)
    while node is not None:
        if isinstance(node, ast.With) and child in node.body and any(
                isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "id", None) == "writing"
                for item in node.items):
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in GATES and child is not node.func:
            return True
        if isinstance(node, ast.FunctionDef) and (outer := parents.get(node)) is not None:
            for call in ast.walk(outer):
                if (isinstance(call, ast.Call) and getattr(call.func, "id", None) in GATES
                        and any(getattr(a, "id", None) == node.name for a in call.args)):
                    return True
        child, node = node, parents.get(node)
    return False


def ungated_writes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "writes.py":
            continue
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
        for node in calls:
            if (name := write_call(node)) and (relative, name) not in ALLOWED and not gated(node, parents):
                found.append(f"{relative}:{node.lineno} {name}")
    return found


def test_no_write_in_the_package_escapes_the_one_place():
    """Every call that writes to the file system runs inside resnet.writes' gates, so a failure is one sentence."""
    assert ungated_writes() == []


def test_the_lister_finds_writes_outside_the_gates(tmp_path, monkeypatch):
    """The lister itself: ungated writes of each kind are found, gated ones are not."""
    fake = tmp_path / "resnet"
    fake.mkdir()
    (fake / "bad.py").write_text(
        "import torch, os\n"
        "def f(p, obj, fig):\n"
        "    torch.save(obj, p)\n"
        "    with open(p, 'w') as f: f.write('x')\n"
        "    fig.savefig(p)\n"
        "    p.mkdir()\n"
        "    os.replace(p, p)\n"
        "    open(p).read()\n"
        "    atomic_write(p, lambda f: torch.save(obj, f))\n"
        "    with writing(p):\n"
        "        p.unlink()\n"
        "    def write(tmp):\n"
        "        torch.save(obj, tmp)\n"
        "    atomic_replace(p, write)\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert ungated_writes() == ["bad.py:3 torch.save", "bad.py:4 open", "bad.py:5 savefig", "bad.py:6 mkdir",
                                "bad.py:7 os.replace"]


# ------------------------------------------------------------------------------------------ the sentence itself


@pytest.mark.parametrize("code, reason, advice", [
    (errno.ENOSPC, "the disk is full (", "free some space there"),
    (errno.EDQUOT, "the disk quota is used up (", "free some of your quota"),
    (errno.EIO, "an input/output error", "check the disk"),
    (errno.EROFS, "the filesystem is read-only", "write somewhere that is writable"),
    (errno.EACCES, "permission denied", "write somewhere you have permission to"),
])
def test_each_failure_is_one_sentence_and_the_old_file_stays(tmp_path, faults, code, reason, advice):
    path = tmp_path / "results.json"
    writes.write_json(path, {"old": 1})
    faults.arm("results.json", code=code)
    with pytest.raises(WriteError) as caught:
        writes.write_json(path, {"new": 2}, "results")
    message = str(caught.value)
    assert message.startswith(f"could not write results {path}: {reason}") and advice in message
    assert "\n" not in message and isinstance(caught.value, UserError) and caught.value.exit_code == 2
    assert json.loads(path.read_text()) == {"old": 1} and not leftovers(tmp_path)


def test_torch_saves_own_error_on_a_full_stream_is_named_by_its_errno(tmp_path):
    """torch.save reports a failed stream as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``;
    the OSError under it gives the reason."""
    def full(f):
        class Full:
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def flush(self):
                pass
        torch.save({"w": torch.zeros(1000)}, Full())

    with pytest.raises(WriteError, match=r"could not write checkpoint .*: the disk is full \("):
        writes.atomic_write(tmp_path / "a.pt", full, "checkpoint")
    assert not list(tmp_path.iterdir())


def test_a_failed_append_is_cut_back_to_its_last_whole_line(tmp_path, faults):
    path = tmp_path / "steps.jsonl"
    writes.append_line(path, '{"step": 1}')
    faults.arm("steps.jsonl", code=errno.EIO)
    with pytest.raises(WriteError, match="an input/output error"):
        writes.append_line(path, '{"step": 2, "long": "' + "x" * 200 + '"}')
    assert path.read_text() == '{"step": 1}\n'


def test_a_write_that_is_no_disk_failure_passes_unchanged(tmp_path):
    with pytest.raises(ZeroDivisionError):
        writes.atomic_replace(tmp_path / "x", lambda tmp: 1 / 0)
    with pytest.raises(UserError, match="a user's mistake"):
        writes.atomic_replace(tmp_path / "x", lambda tmp: (_ for _ in ()).throw(UserError("a user's mistake")))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------- the training run's files


def train_argv(out: Path, *extra: str) -> list[str]:
    return ["train", "--out", str(out), *TINY, *extra]


# (file pattern, which write of it fails, the errno, whether the run may go on without it)
TRAIN_SITES = [
    ("config.yaml", 1, errno.EROFS, False),
    ("run.json", 2, errno.ENOSPC, False),
    ("step-*.pt", 2, errno.ENOSPC, False),
    ("last.pt", 2, errno.EIO, False),
    ("best.pt", 1, errno.ENOSPC, False),
    ("steps.jsonl", 5, errno.ENOSPC, False),
    ("metrics.jsonl", 2, errno.EIO, False),
    ("epoch-1.safetensors", 1, errno.ENOSPC, False),
    ("model.safetensors", 1, errno.ENOSPC, False),
    ("model.json", 1, errno.EDQUOT, False),
    ("results.json", 1, errno.ENOSPC, False),
    ("curves.png", 1, errno.ENOSPC, True),
    ("confusion.png", 1, errno.EIO, True),
    ("report.html", 1, errno.ENOSPC, True),
]
REASON = {errno.ENOSPC: "the disk is full", errno.EIO: "an input/output error", errno.EROFS: "read-only",
          errno.EDQUOT: "quota"}


@pytest.mark.parametrize("pattern, nth, code, optional", TRAIN_SITES, ids=[s[0] for s in TRAIN_SITES])
def test_a_failed_write_of_a_run(tmp_path, faults, capsys, pattern, nth, code, optional):
    out = tmp_path / "run"
    faults.arm(pattern, nth, code)
    result, stdout, stderr = main_cli(train_argv(out), capsys)
    assert faults.failed is not None, f"no write of {pattern} happened: {sorted({p.name for p in faults.seen})}"
    assert not leftovers(tmp_path)
    if faults.before is None:  # the file did not exist before: it does not now
        assert not faults.failed.exists()
    else:  # what was there before is there, byte for byte (an append: its lines before the failed one)
        assert faults.failed.read_bytes() == faults.before
    if optional:
        assert result == 0, stderr[-3000:]
        warnings = [line for line in stderr.splitlines() if line.startswith("warning: could not write")]
        assert len(warnings) == 1 and faults.failed.name in warnings[0] and "going on without it" in warnings[0]
        assert (out / "results.json").is_file() and (out / "model.safetensors").is_file()
        return
    line = assert_one_sentence(result, stderr, faults.failed.name, REASON[code])
    if pattern == "config.yaml":  # nothing of the run is written yet: the same command runs again
        assert line.endswith(", then run the same command again")
        code, _, stderr = main_cli(train_argv(out), capsys)
        assert code == 0, stderr[-3000:]
        return
    assert f"continue with `resnet train --resume auto --out {out}`" in line
    checkpoints = sorted((out / "checkpoints").glob("step-*.pt")) if (out / "checkpoints").is_dir() else []
    if checkpoints:  # the newest good checkpoint loads, and the run trained no step past the failure
        last = load_checkpoint(out / "checkpoints" / "last.pt")
        assert f"from {out / 'checkpoints'}" in line and ", which is intact" in line
        assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
        steps = [json.loads(x)["step"] for x in (out / "steps.jsonl").read_text().splitlines()]
        assert steps == list(range(1, len(steps) + 1))  # whole lines only, none torn or missing
        assert last["run"]["step"] <= max(steps)
        if pattern == "step-*.pt":  # the run trained no step past the checkpoint that failed
            assert max(steps) == int(faults.failed.stem.split("-")[1])


def test_a_run_whose_final_files_failed_finishes_with_resume_auto(tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.arm("model.safetensors")
    code, _, stderr = main_cli(train_argv(out), capsys)
    assert code == 2 and "could not write weights" in stderr
    faults.arm("nothing-matches")
    code, stdout, stderr = main_cli(["train", "--resume", "auto", "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    assert "at step 16" in stdout and (out / "model.safetensors").is_file() and (out / "report.html").is_file()


def test_tensorboard_that_cannot_write_warns_once_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    require_module("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(SummaryWriter, "add_scalar", failing)
    code, _, stderr = main_cli(train_argv(tmp_path / "run"), capsys)
    assert code == 0, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: could not write TensorBoard")]
    assert len(warnings) == 1 and "an input/output error" in warnings[0] and calls["n"] == 1
    assert (tmp_path / "run" / "results.json").is_file()


def test_the_space_check_refuses_a_run_before_any_time_is_spent(tmp_path, capsys, monkeypatch):
    from resnet.train import space

    monkeypatch.setattr(space, "free_bytes", lambda path: 1_000_000)
    out = tmp_path / "run"
    start = time.perf_counter()
    code, _, stderr = main_cli(train_argv(out), capsys)
    assert code == 2 and "Traceback" not in stderr
    assert f"resnet: error: {out} is on a disk with 1.0 MB free, but this run writes about " in stderr
    assert "(3 checkpoints of " in stderr and "keep fewer checkpoints (--set keep_checkpoints=1)" in stderr
    assert not out.exists() and time.perf_counter() - start < 60


def test_the_estimate_counts_weights_optimizer_ema_and_the_kept_checkpoints():
    from resnet.config import load_config
    from resnet.models import create_model
    from resnet.train.space import EXTRA_BYTES, run_size

    model = create_model("resnet20", num_classes=10, in_chans=1)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * 4 for p in model.parameters())
    sgd = run_size(load_config(None, {"keep_checkpoints": 2}), model)
    assert sgd.checkpoint == weights + params and sgd.checkpoints == 3
    adamw = run_size(load_config(None, {"optim.name": "adamw", "ema": 0.999, "snapshot_epochs": [0, 1]}), model)
    assert adamw.checkpoint == 2 * weights + 2 * params and adamw.snapshots == 2 * weights
    assert adamw.total == adamw.checkpoint * adamw.checkpoints + 2 * weights + weights + EXTRA_BYTES
    # ... and a real checkpoint is about that size
    torch.save({"model": model.state_dict(), "momentum": [p.detach().clone() for p in model.parameters()]},
               buffer := __import__("io").BytesIO())
    assert abs(buffer.tell() - sgd.checkpoint) < 0.1 * sgd.checkpoint


def test_resume_auto_names_the_checkpoints_it_skipped_and_why(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, stderr = main_cli(train_argv(out, "--set", "keep_checkpoints=3"), capsys)
    assert code == 0, stderr[-3000:]
    ckpt_dir = out / "checkpoints"
    steps = [p.name for p in sorted(ckpt_dir.glob("step-*.pt"))]
    assert steps == ["step-00000008.pt", "step-00000012.pt", "step-00000016.pt"]
    (out / "results.json").unlink()
    # last.pt cut short (a copy: its hard-linked twin stays whole), the newest step file not finite
    data = (ckpt_dir / "last.pt").read_bytes()
    (ckpt_dir / "last.pt").unlink()
    (ckpt_dir / "last.pt").write_bytes(data[:len(data) // 3])
    bad = torch.load(ckpt_dir / "step-00000016.pt", weights_only=True)
    next(iter(bad["model"].values())).fill_(float("nan"))
    torch.save(bad, ckpt_dir / "step-00000016.pt")
    os.utime(ckpt_dir / "last.pt")  # the newest file, as it was
    code, stdout, stderr = main_cli(["train", "--resume", "auto", "--out", str(out)], capsys)
    assert code == 0, stderr[-3000:]
    assert (f"skipped last.pt (truncated or corrupt: ") in stdout
    assert f"step-00000016.pt (its weights are not finite) in {out}" in stdout
    assert f"resumed from {ckpt_dir / 'step-00000012.pt'} at step 12" in stdout


# ------------------------------------------------------------------------------- the other commands' files


@pytest.fixture
def own_run(trained_run, tmp_path) -> Path:
    """A copy of the shared run's final files (the tests write beside them)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.safetensors", "model.json", "results.json", "config.yaml", "run.json", "metrics.jsonl"):
        shutil.copy(trained_run.run_dir / name, run / name)
    return run


EXPORT_SITES = [  # (format, file pattern, extra arguments)
    ("onnx", "model.onnx", []),
    ("onnx", "model.onnx.verification.json", []),
    ("onnx", "model.int8.onnx", ["--quantize", "int8"]),
    ("torchscript", "model.torchscript.pt", []),
    ("safetensors", "copy.json", ["--out", "{run}/copy.safetensors"]),
    ("openvino", "model.bin", []),
]


@pytest.mark.parametrize("fmt, pattern, extra", EXPORT_SITES, ids=[s[1] for s in EXPORT_SITES])
def test_a_failed_export_leaves_the_previous_one(own_run, faults, capsys, fmt, pattern, extra):
    if fmt in ("onnx", "openvino"):
        require_module("onnxruntime" if fmt == "onnx" else "openvino")
    argv = ["export", str(own_run), "--format", fmt, *[a.format(run=own_run) for a in extra]]
    code, _, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    before = {p.name: p.read_bytes() for p in own_run.iterdir() if p.is_file()}
    faults.arm(pattern, code=errno.ENOSPC)
    code, _, stderr = main_cli(argv, capsys)
    named = "model.xml" if fmt == "openvino" else pattern  # (an OpenVINO export is named by its .xml)
    assert_one_sentence(code, stderr, named, "the disk is full")
    assert not leftovers(own_run)
    after = {p.name: p.read_bytes() for p in own_run.iterdir() if p.is_file()}
    assert after.keys() == before.keys()
    assert after[faults.failed.name] == before[faults.failed.name]  # the previous export, byte for byte


def test_a_failed_report_page_leaves_the_previous_one(trained_run, tmp_path, faults, capsys):
    page = tmp_path / "report.html"
    page.write_text("<p>the previous page</p>")
    faults.arm("report.html", code=errno.EIO)
    code, _, stderr = main_cli(["report", str(trained_run.run_dir), "--out", str(page)], capsys)
    assert_one_sentence(code, stderr, "report.html", "an input/output error")
    assert page.read_text() == "<p>the previous page</p>" and not leftovers(tmp_path)


def test_a_read_only_place_for_grad_cam_is_one_sentence(trained_run, tmp_path, faults, capsys):
    require_module("captum")
    from PIL import Image

    image = tmp_path / "shoe.png"
    Image.new("L", (28, 28), 128).save(image)
    faults.arm("*.gradcam.png", code=errno.EROFS)
    code, _, stderr = main_cli(["explain", str(trained_run.run_dir), str(image), "--out", str(tmp_path / "cam")],
                               capsys)
    assert_one_sentence(code, stderr, "shoe.gradcam.png", "read-only")
    assert not leftovers(tmp_path) and not (tmp_path / "cam" / "shoe.gradcam.png").exists()


def test_eval_prints_its_numbers_when_its_figure_cannot_be_written(trained_run, tmp_path, faults, capsys):
    faults.arm("confusion.png")
    code, stdout, stderr = main_cli(["eval", str(trained_run.run_dir), "--out", str(tmp_path)], capsys)
    assert code == 0 and "top-1" in stdout and "confusion matrix:" not in stdout
    assert stderr.count("warning: could not write figure") == 1 and not leftovers(tmp_path)


def test_a_scan_cache_that_cannot_be_written_is_a_warning(tmp_path, faults, monkeypatch):
    from PIL import Image

    from resnet.data.scan_cache import scan_folder

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
    faults.arm("*.json", code=errno.ENOSPC)
    result = scan_folder(tmp_path, [(str(tmp_path / f"{i}.png"), 0) for i in range(3)], "RGB")
    assert result.bad == [] and "could not write the scan cache" in result.warning
    assert "the disk is full" in result.warning and "the next run decodes these files again" in result.warning


def test_a_study_cell_whose_checkpoint_fails_says_to_run_the_study_again(tmp_path, faults, capsys):
    out = tmp_path / "compare"
    argv = ["compare", "resnet14", "--out", str(out), "--seeds", "1", "--set", "iterations=4", "--set",
            "data.train_limit=128", "--set", "data.test_limit=100", "--set", "batch_size=32", "--set", "threads=1",
            "--set", "test_tta=none", "--set", "checkpoint_every=2"]
    faults.arm("step-*.pt", 2)
    code, _, stderr = main_cli(argv, capsys)
    line = assert_one_sentence(code, stderr, "step-00000004.pt", "the disk is full")
    assert line.endswith("then run the same command again: finished cells are kept and this one continues from its "
                         "last checkpoint")
    assert not (out / "results.json").exists()
    faults.arm("nothing-matches")
    code, stdout, stderr = main_cli(argv, capsys)
    assert code == 0, stderr[-3000:]
    assert "resnet14 seed 0: resuming" in stdout and (out / "results.json").is_file()


# ------------------------------------------------------------------------------------ a disk that really fills


def mount_tmpfs(where: Path, size: str) -> bool:
    """A tmpfs of ``size`` at ``where`` (root only); False where it cannot be mounted."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def fill(disk: Path) -> Path:
    """Write zeros to ``disk/filler`` until the disk is full."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "resnet", *args]


def test_a_disk_that_fills_during_a_run_then_resume_gives_the_same_weights(tmp_path, faults, capsys):
    """A tmpfs fills up under a run (another process takes the last byte): the run stops with the sentence, the
    space is freed, and ``--resume auto`` ends with the weights of a run that never failed, bit for bit."""
    longer = ("--epochs", "6")  # 36 steps: the run is still going when the disk fills
    disk = tmp_path / "disk"
    out = disk / "run"
    if mount_tmpfs(disk, "64m"):
        try:
            reference = subprocess.run(cli(*train_argv(tmp_path / "reference", *longer)), capture_output=True,
                                       text=True, timeout=600)
            assert reference.returncode == 0, reference.stderr[-3000:]
            # The run is stopped (SIGSTOP) once it has logged step 5, the disk is filled, and it goes on (SIGCONT):
            # a write soon meets the full disk.
            proc = subprocess.Popen(cli(*train_argv(out, *longer)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            deadline = time.monotonic() + 300
            while not (out / "steps.jsonl").is_file() or len((out / "steps.jsonl").read_text().splitlines()) < 5:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGSTOP)
            filler = fill(disk)
            os.kill(proc.pid, signal.SIGCONT)
            _, stderr = proc.communicate(timeout=300)
            assert_one_sentence(proc.returncode, stderr, str(out), "the disk is full (")
            assert f"continue with `resnet train --resume auto --out {out}`" in stderr and not leftovers(disk)
            filler.unlink()  # space is freed
            resumed = subprocess.run(cli("train", "--resume", "auto", "--out", str(out)), capture_output=True,
                                     text=True, timeout=600)
            assert resumed.returncode == 0, resumed.stderr[-3000:]
            final = load_file(str(out / "model.safetensors"))
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    else:  # no tmpfs here (not root): the same story in this process, the fault injected at step 7's log line
        code, _, stderr = main_cli(train_argv(tmp_path / "reference", *longer), capsys)
        assert code == 0, stderr[-3000:]
        faults.arm("steps.jsonl", 7)
        code, _, stderr = main_cli(train_argv(out, *longer), capsys)
        assert_one_sentence(code, stderr, "steps.jsonl", "the disk is full")
        faults.arm("nothing-matches")
        code, _, stderr = main_cli(["train", "--resume", "auto", "--out", str(out)], capsys)
        assert code == 0, stderr[-3000:]
        final = load_file(str(out / "model.safetensors"))
    expected = load_file(str(tmp_path / "reference" / "model.safetensors"))
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
