"""`resnet export` and the ONNX Runtime backend on the model the test session trained, checked on real
Fashion-MNIST images: BN folding, dynamic batch, metadata round trip, verification, int8, predict parity."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.densenet import _DenseLayer, _Transition

from resnet.backends import card_from_onnx, onnxruntime_backend
from resnet.data import open_split
from resnet.errors import UserError
from resnet.export import (Reference, batchnorm_after_conv, conv_bn_pairs, export_onnx, export_safetensors,
                           export_torchscript, fold_batchnorm, load_torchscript, quantize_onnx, real_images,
                           verify_export)
from resnet.models import PreActBasicBlock, PreActBottleneck, create_model, list_models, model_info
from resnet.weights import ModelCard, load_model_and_card

from .conftest import hide_modules, require_module, run_cli


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
    # no external-data file, no temp left; the verification stored beside the model
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.verification.json"]
    m = re.search(r"on 300 real images: max abs logit difference (\S+), top-1 agreement (\S+)%; test top-1 "
                  r"PyTorch (\S+)%, export (\S+)%", stdout)
    assert m, stdout
    assert float(m.group(1)) < 1e-3 and float(m.group(2)) >= 99.0 and abs(float(m.group(3)) - float(m.group(4))) < 1
    stored = json.loads((path.parent / "model.onnx.verification.json").read_text())
    assert stored["file"] == "model.onnx" and stored["count"] == 300 and stored["top1_agreement"] >= 0.99


def test_onnx_graph_has_no_batchnorm_and_a_dynamic_batch(exported):
    import onnx

    path, model, card, _ = exported
    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # resnet14: every BN follows a conv
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    backend = onnxruntime_backend(path)
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
    assert meta["architecture"] == "resnet14" and meta["dataset"] == "fashion-mnist"
    assert json.loads(meta["classes"])[0] == "T-shirt/top"
    assert json.loads(meta["input_size"]) == [1, 28, 28] and json.loads(meta["mean"]) == card.mean


def test_verify_export_on_real_labelled_images(exported):
    path, model, card, _ = exported
    reference = Reference.of(model, card, 300)
    assert reference.labels is not None and len(reference.images) == 300
    v = verify_export(onnxruntime_backend(path), "onnxruntime", reference)
    assert v.count == 300 and v.max_abs_diff < 1e-3 and v.top1_agreement >= 0.99
    assert v.pytorch_top1 > 50 and abs(v.export_top1 - v.pytorch_top1) < 0.5


def test_int8_quantization_agrees_is_smaller_and_fully_integer(exported, tmp_path):
    import onnx
    import onnxruntime as ort

    path, model, card, _ = exported
    calib = real_images(card, 256, "train", seed=0)
    qpath = quantize_onnx(path, tmp_path / "model.int8.onnx", card, calib)
    v = verify_export(onnxruntime_backend(qpath), "onnxruntime int8", Reference.of(model, card, 1000))
    assert v.top1_agreement >= 0.95 and abs(v.export_top1 - v.pytorch_top1) < 5 and v.pytorch_top1 > 50
    assert qpath.stat().st_size < path.stat().st_size
    assert card_from_onnx(qpath) == card
    # uint8 activations let ONNX Runtime fuse every conv and residual add into integer kernels: the optimised
    # graph has no float Conv or Add left (int8 activations left a ResNet-50's adds and 20 convs in fp32)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(qpath), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert {"QLinearConv", "QLinearAdd"} <= ops and not ops & {"Conv", "Add"}, ops


def family_representatives() -> list[str]:
    """The shallowest registered model of each family (name pattern and input layout: resnet, plain, resnext,
    wide, ResNet-D, pre-activation, ... at CIFAR and ImageNet layout), plus resnet50 for the plain bottleneck."""
    smallest: dict[tuple[str, str], str] = {}
    for name in list_models():
        info = model_info(name)
        key = (re.sub(r"\d+", "N", name), info.family)
        if key not in smallest or info.depth < model_info(smallest[key]).depth:
            smallest[key] = name
    return sorted({*smallest.values(), "resnet50"})


def bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def leading_bns(model: nn.Module) -> int:
    """BNs that follow no conv, so folding must keep them: each pre-activation block's first BN (DenseNet's layers
    and transitions pre-activate too), the final norm (DenseNet's is the first of its neck)."""
    final = getattr(model, "norm", None)
    if isinstance(getattr(model, "neck", None), nn.Sequential):
        final = model.neck[0]
    return (sum(isinstance(m, (PreActBasicBlock, PreActBottleneck, _DenseLayer, _Transition)) for m in model.modules())
            + isinstance(final, nn.BatchNorm2d))


@pytest.mark.parametrize("name", family_representatives())
def test_fold_batchnorm_is_exact(name):
    torch.manual_seed(0)
    model = create_model(name)
    for m in model.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    model.eval()
    before = bn_count(model)
    folded = fold_batchnorm(model)
    assert bn_count(model) == before  # the original is untouched
    assert len(conv_bn_pairs(model)) == before - leading_bns(model)  # every other BN follows a conv
    assert conv_bn_pairs(folded) == [] and bn_count(folded) == leading_bns(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_onnx_export_keeps_the_batchnorm_no_conv_feeds(tmp_path):
    import onnx

    for name in ("onnx", "onnxruntime", "onnxscript"):
        require_module(name)
    torch.manual_seed(0)
    model = create_model("preact_resnet20").eval()
    card = ModelCard("preact_resnet20", {}, [str(i) for i in range(10)], [3, 32, 32], [0.5] * 3, [0.25] * 3,
                     [32, 32], dataset="cifar10")
    path = export_onnx(model, card, tmp_path / "preact.onnx")
    proto = onnx.load(str(path))
    kept = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert len(kept) == leading_bns(model) and batchnorm_after_conv(proto) == []
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (onnxruntime_backend(path)(x) - model(x)).abs().max() < 1e-4


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
    test = open_split("fashion-mnist", "test")
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
    from resnet.cli import main

    bare = tmp_path / "run"
    bare.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(trained_run.run_dir / name, bare / name)
    assert main(["predict", str(bare), str(tmp_path / "imgs"), "--backend", "onnxruntime"]) == 2
    assert "holds no exported model.onnx; create it with `resnet export" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--format", "tflite"], "unknown export format 'tflite'"),
    (["--format", "torchscript", "--quantize", "int8"], "--quantize int8 works on onnx or openvino exports only"),
    (["--format", "openvino", "--out", "model.onnx"], "openvino exports are named *.xml, got 'model.onnx'"),
    (["--quantize", "int4"], "unknown --quantize 'int4'"),
    (["--batch", "zero"], "--batch must be 'dynamic' or a positive integer"),
])
def test_export_user_errors(trained_run, capsys, args, message):
    from resnet.cli import main

    assert main(["export", str(trained_run.run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_export_names_the_real_image_counts_it_used(tmp_path):
    """Fewer images than --verify-images / --calib-images ask for: the log says how many were used."""
    for name in ("onnx", "onnxruntime", "onnxscript"):
        require_module(name)
    from resnet.export import export_model
    from resnet.weights import save_model

    card = ModelCard("resnet14", {"in_chans": 1, "num_classes": 10}, [str(i) for i in range(10)], [1, 28, 28],
                     [0.5], [0.25], resize=28)
    save_model(create_model("resnet14", in_chans=1, num_classes=10), card, tmp_path)
    (tmp_path / "images").mkdir()
    for i in range(12):
        Image.new("L", (28, 28), 20 * i).save(tmp_path / "images" / f"{i}.png")
    said = []
    export_model(tmp_path / "model.safetensors", "onnx", out=tmp_path / "model.onnx", quantize="int8",
                 calib_images=500, images=tmp_path / "images", log=said.append)
    assert "verifying against PyTorch on all 12 (of 1000 asked for) real test images ..." in said, said
    assert "quantizing to int8 (calibrating on all 12 (of 500 asked for) real training images) ..." in said, said


def test_missing_onnxruntime_says_how_to_install(exported, monkeypatch):
    hide_modules(monkeypatch, "onnxruntime")
    for call in (lambda: onnxruntime_backend(exported[0]), lambda: card_from_onnx(exported[0])):
        with pytest.raises(UserError, match=r"needs the onnx extra \(onnxruntime is not installed\): "
                                                 r"pip install 'resnet\[onnx\]'"):
            call()
