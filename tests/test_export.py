"""`resnet export` and the ONNX Runtime backend on the model the test session trained, checked on real
Fashion-MNIST images: BN folding, dynamic batch, metadata round trip, verification, int8, predict parity."""

from __future__ import annotations

import builtins
import json
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image
from torch import nn

from resnet.data.datasets import load_memory_dataset
from resnet.errors import UserError
from resnet.export import (card_from_onnx, export_safetensors, export_torchscript, fold_batchnorm, labelled_test_set,
                           load_torchscript, onnx_backend, quantize_int8, real_images, verify_onnx)
from resnet.modelcard import load_model_and_card
from resnet.models import create_model

from .conftest import require_module


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """The trained run exported by the CLI (dynamic batch, verified on 300 real test images)."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        require_module(name)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    proc = run_cli("export", trained_run.run_dir, "--format", "onnx", "--out", path, "--verify-images", 300)
    assert proc.returncode == 0, proc.stderr
    model, card = load_model_and_card(trained_run.run_dir)
    return path, model, card, proc.stdout


def test_cli_export_writes_one_file_and_reports_verification(exported):
    path, _, _, stdout = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no external-data file, no temp left
    m = re.search(r"on 300 real images: max abs logit difference (\S+), top-1 agreement (\S+)%", stdout)
    assert m, stdout
    assert float(m.group(1)) < 1e-3 and float(m.group(2)) >= 99.0


def test_onnx_graph_has_no_batchnorm_and_a_dynamic_batch(exported):
    import onnx

    path, model, card, _ = exported
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    backend = onnx_backend(path)
    x = real_images(card, 7)
    with torch.no_grad():
        ref = model(x)
    for n in (1, 7):
        out = backend(x[:n])
        assert out.shape == (n, len(card.classes))
        assert (out - ref[:n]).abs().max() < 1e-3


def test_metadata_round_trip(exported):
    import onnx

    path, _, card, _ = exported
    assert card_from_onnx(path) == card
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["architecture"] == "resnet20" and meta["dataset"] == "fashion-mnist"
    assert json.loads(meta["classes"])[0] == "T-shirt/top"
    assert json.loads(meta["input_size"]) == [1, 28, 28] and json.loads(meta["mean"]) == card.mean


def test_verify_onnx_on_real_images(exported):
    path, model, card, _ = exported
    v = verify_onnx(path, model, card, real_images(card, 300))
    assert v.count == 300 and v.max_abs_diff < 1e-3 and v.top1_agreement >= 0.99


def test_int8_quantization_agrees_and_is_smaller(exported, tmp_path):
    path, _, card, _ = exported
    calib = real_images(card, 256, "train", seed=0)
    x, y = labelled_test_set(card, limit=1000)
    q = quantize_int8(path, tmp_path / "model.int8.onnx", card, calib, x, y)
    assert q.top1_agreement >= 0.95
    assert q.int8_bytes < q.fp32_bytes == path.stat().st_size
    assert abs(q.int8_top1 - q.fp32_top1) < 5 and q.fp32_top1 > 50
    assert card_from_onnx(q.path) == card


@pytest.mark.parametrize("name,shape", [("resnet20", (2, 3, 32, 32)), ("resnet50", (2, 3, 32, 32)),
                                        ("resnet50d", (2, 3, 32, 32))])
def test_fold_batchnorm_is_exact(name, shape):
    torch.manual_seed(0)
    model = create_model(name)
    for m in model.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(*shape)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_torchscript_and_safetensors_exports_load_back(trained_run, tmp_path):
    model, card = load_model_and_card(trained_run.run_dir)
    x = real_images(card, 16)
    with torch.no_grad():
        ref = model(x)
        ts, ts_card = load_torchscript(export_torchscript(model, card, tmp_path / "model.torchscript.pt"))
        assert ts_card == card and (ts(x) - ref).abs().max() < 1e-4
    st_model, st_card = load_model_and_card(export_safetensors(model, card, tmp_path / "copy.safetensors"))
    assert st_card == card
    with torch.no_grad():
        assert torch.equal(st_model(x), ref)


def test_predict_onnxruntime_matches_torch(exported, trained_run, tmp_path, capsys):
    path = exported[0]
    test = load_memory_dataset("fashion-mnist", None, train=False, download=False)
    (tmp_path / "imgs").mkdir()
    for i in range(8):
        img = Image.fromarray(test.images[i, 0].numpy(), mode="L")
        (img.convert("RGB").resize((56, 56)) if i % 2 else img).save(tmp_path / "imgs" / f"img{i}.png")
    top1 = {}
    for backend, model_path in (("torch", trained_run.run_dir), ("onnxruntime", path)):
        proc = run_cli("predict", model_path, tmp_path / "imgs", "--format", "json", "--backend", backend)
        assert proc.returncode == 0, proc.stderr
        top1[backend] = [(r["path"], r["top"][0]["label"]) for r in json.loads(proc.stdout)]
    assert len(top1["torch"]) == 8 and top1["torch"] == top1["onnxruntime"]
    # a run directory without an exported model.onnx: exit 2 and say how to export one
    if not (trained_run.run_dir / "model.onnx").exists():
        from resnet.cli import main

        assert main(["predict", str(trained_run.run_dir), str(tmp_path / "imgs"), "--backend", "onnxruntime"]) == 2
        assert "holds no exported model.onnx; create it with `resnet export" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--format", "torchscript", "--quantize", "int8"], "--quantize int8 works on ONNX exports only"),
    (["--quantize", "int4"], "unknown --quantize 'int4'"),
    (["--batch", "zero"], "--batch must be 'dynamic' or a positive integer"),
])
def test_export_user_errors(trained_run, capsys, args, message):
    from resnet.cli import main

    assert main(["export", str(trained_run.run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_onnxruntime_says_how_to_install(exported, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for call in (lambda: onnx_backend(exported[0]), lambda: card_from_onnx(exported[0])):
        with pytest.raises(UserError, match=r"needs onnx and onnxruntime .*: pip install 'resnet\[onnx\]'"):
            call()
