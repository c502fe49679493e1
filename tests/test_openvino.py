"""`resnet export --format openvino [--quantize int8]`, `resnet predict --backend openvino|auto` and the choice of
the fastest backend, on the model the test session trained, checked on real Fashion-MNIST images."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from PIL import Image

from resnet.backends import card_from_openvino, choose_backend, load_predictor, openvino_backend, read_openvino
from resnet.backends import choice as choice_module
from resnet.data import open_split
from resnet.errors import UserError
from resnet.export import export_openvino, quantize_onnx, real_images
from resnet.export.options import ExportOptions
from resnet.weights import load_model_and_card

from .conftest import hide_modules, require_module, run_cli


@pytest.fixture(scope="module")
def ov_exported(trained_run, tmp_path_factory):
    """The trained run exported by the CLI to OpenVINO fp32 and int8 (verified on 300 real test images)."""
    for name in ("openvino", "nncf"):
        require_module(name)
    path = tmp_path_factory.mktemp("ov") / "model.xml"
    proc = run_cli("export", trained_run.run_dir, "--format", "openvino", "--quantize", "int8", "--out", path,
                   "--verify-images", 300, "--calib-images", 200)
    assert proc.returncode == 0, proc.stderr
    model, card = load_model_and_card(trained_run.run_dir)
    return path, model, card, proc.stdout


def test_export_writes_the_ir_pair_int8_and_verifications(ov_exported):
    path, _, _, stdout = ov_exported
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "model.bin", "model.int8.bin", "model.int8.xml", "model.int8.xml.verification.json", "model.xml",
        "model.xml.verification.json"]  # no temporary file left
    fp32 = re.search(r"openvino vs PyTorch on 300 real images: max abs logit difference (\S+), top-1 agreement "
                     r"(\S+)%; test top-1 PyTorch (\S+)%, export (\S+)%", stdout)
    int8 = re.search(r"openvino int8 vs PyTorch on 300 real images: max abs logit difference \S+, top-1 agreement "
                     r"(\S+)%; test top-1 PyTorch (\S+)%, export (\S+)%", stdout)
    assert fp32 and int8, stdout
    assert float(fp32.group(1)) < 1e-3 and float(fp32.group(2)) >= 99.0
    assert float(int8.group(1)) >= 95.0 and abs(float(int8.group(2)) - float(int8.group(3))) < 5
    stored = json.loads((path.parent / "model.int8.xml.verification.json").read_text())
    assert stored["backend"] == "openvino int8" and stored["calibration_images"] == 200
    assert stored["export_top1"] == pytest.approx(float(int8.group(3)), abs=0.01)
    assert (path.parent / "model.int8.bin").stat().st_size < 0.5 * (path.parent / "model.bin").stat().st_size


def test_card_round_trips_and_quantization_is_recorded(ov_exported):
    path, _, card, _ = ov_exported
    assert card_from_openvino(path) == card and card_from_openvino(path.with_suffix(".int8.xml")) == card
    model = read_openvino(path)
    assert model.get_rt_info(["resnet", "architecture"]).astype(str) == "resnet14"
    assert json.loads(model.get_rt_info(["resnet", "input_size"]).astype(str)) == [1, 28, 28]
    assert not model.has_rt_info(["resnet", "quantization"])
    assert "NNCF" in read_openvino(path.with_suffix(".int8.xml")).get_rt_info(["resnet", "quantization"]).astype(str)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_backend_matches_pytorch_at_every_batch_size(ov_exported, precision):
    path, model, card, _ = ov_exported
    x = real_images(card, 40)
    with torch.no_grad():
        ref = model(x)
    run = openvino_backend(path, precision)
    tolerance = 1e-3 if precision == "fp32" else 0.25  # bf16 keeps 8 bits of mantissa
    for n in (1, 7, 40):
        out = run(x[:n])
        assert out.shape == (n, 10) and (out - ref[:n]).abs().max() < tolerance
    assert (run(x).argmax(1) == ref.argmax(1)).float().mean() >= 0.95


def test_fixed_batch_ir_is_fed_in_chunks(trained_run, tmp_path):
    require_module("openvino")
    model, card = load_model_and_card(trained_run.run_dir)
    path = export_openvino(model, card, tmp_path / "fixed.xml", ExportOptions(batch=4))
    assert read_openvino(path).input(0).get_partial_shape()[0].get_length() == 4
    x = real_images(card, 7)
    with torch.no_grad():
        assert (openvino_backend(path)(x) - model(x)).abs().max() < 1e-3


def test_a_failed_export_leaves_the_previous_one_whole(ov_exported, tmp_path, monkeypatch):
    import openvino

    path, model, card, _ = ov_exported
    target = tmp_path / "model.xml"
    for suffix in (".xml", ".bin"):
        shutil.copy(path.with_suffix(suffix), target.with_suffix(suffix))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_save(model, output_model, **kwargs):
        open(output_model, "w").write("<half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(openvino, "save_model", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_openvino(model, card, target)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def fashion_pngs(folder, n: int = 8):
    test = open_split("fashion-mnist", "test")
    folder.mkdir()
    for i in range(n):
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(folder / f"img{i}.png")
    return folder


def test_predict_openvino_and_auto_match_torch(ov_exported, trained_run, tmp_path):
    path, _, _, _ = ov_exported
    images = fashion_pngs(tmp_path / "imgs")
    top1, first = {}, {}
    for name, source, backend in (("torch", trained_run.run_dir, "torch"), ("openvino", path, "openvino"),
                                  ("auto", path, "auto")):
        proc = run_cli("predict", source, images, "--format", "json", "--backend", backend)
        assert proc.returncode == 0, proc.stderr
        top1[name] = [r["top"][0]["label"] for r in json.loads(proc.stdout)]
        first[name] = proc.stderr.splitlines()[0]
    assert top1["torch"] == top1["openvino"] == top1["auto"] and len(top1["torch"]) == 8
    assert first["torch"].startswith("backend: torch fp32")
    assert re.match(r"backend: openvino (fp32|bf16) \(.*model\.xml\): the runtime of \.xml files", first["auto"])
    table = run_cli("predict", path.with_suffix(".int8.xml"), images)
    assert table.returncode == 0 and table.stdout.startswith("backend: openvino int8 (")


@pytest.fixture(scope="module")
def run_with_every_export(ov_exported, trained_run, tmp_path_factory):
    """A run directory holding the weights and every export: ONNX fp32 and int8, OpenVINO fp32 and int8."""
    path, model, card, _ = ov_exported
    require_module("onnxruntime")
    run = tmp_path_factory.mktemp("every") / "run"
    shutil.copytree(trained_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoints", "*.onnx*", "*.xml*"))
    for name in ("model.xml", "model.bin", "model.int8.xml", "model.int8.bin"):
        shutil.copy(path.parent / name, run / name)
    from resnet.export import export_onnx

    export_onnx(model, card, run / "model.onnx")
    quantize_onnx(run / "model.onnx", run / "model.int8.onnx", card, real_images(card, 64, "train", seed=0))
    return run


@pytest.mark.parametrize("vnni,bf16,expected", [
    (True, True, ("openvino", "model.int8.xml", "int8")),
    (False, True, ("openvino", "model.xml", "bf16")),
    (False, False, ("openvino", "model.xml", "fp32")),
])
def test_auto_picks_the_fastest_export_for_the_cpu(run_with_every_export, monkeypatch, vnni, bf16, expected):
    monkeypatch.setattr(choice_module, "cpu_has_vnni", lambda: vnni)
    monkeypatch.setattr(choice_module, "cpu_has_native_bf16", lambda: bf16)
    choice = choose_backend(run_with_every_export)
    assert (choice.backend, choice.path.rsplit("/", 1)[1], choice.precision) == expected
    assert ("has VNNI" in choice.why) == vnni


def test_auto_falls_back_by_what_is_installed_and_present(run_with_every_export, tmp_path, monkeypatch):
    monkeypatch.setattr(choice_module, "cpu_has_vnni", lambda: True)
    monkeypatch.setattr(choice_module, "installed", lambda backend: backend != "openvino")
    choice = choose_backend(run_with_every_export)
    assert (choice.backend, choice.path.rsplit("/", 1)[1], choice.precision) == ("onnxruntime", "model.int8.onnx",
                                                                                   "int8")
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.safetensors", "model.json"):
        shutil.copy(run_with_every_export / name, bare / name)
    choice = choose_backend(bare)
    assert choice.backend == "torch" and "resnet export RUN --format openvino --quantize int8" in choice.why
    backend, card, chosen = load_predictor(bare)
    assert chosen.backend == "torch" and backend(real_images(card, 2)).shape == (2, 10)


def test_explicit_backend_resolves_the_run_directory(run_with_every_export, capsys):
    choice = choose_backend(run_with_every_export, "openvino")
    assert choice.path.endswith("/model.xml") and choice.why == "as asked (--backend openvino)"
    choice = choose_backend(run_with_every_export / "model.int8.onnx", "onnxruntime")
    assert choice.precision == "int8"
    from resnet.cli import main

    assert main(["predict", str(run_with_every_export / "model.safetensors"), "x.png", "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "this backend runs an exported .xml model, not model.safetensors" in err and err.count("\n") == 1


def test_missing_openvino_says_how_to_install(ov_exported, monkeypatch):
    hide_modules(monkeypatch, "openvino", "nncf")
    for call in (lambda: openvino_backend(ov_exported[0]), lambda: card_from_openvino(ov_exported[0])):
        with pytest.raises(UserError, match=r"needs the openvino extra \(openvino is not "
                                                 r"installed\): pip install 'resnet\[openvino\]'"):
            call()


def test_export_without_openvino_is_one_sentence(trained_run, tmp_path, monkeypatch, capsys):
    from resnet.cli import main

    hide_modules(monkeypatch, "openvino", "nncf")
    assert main(["export", str(trained_run.run_dir), "--format", "openvino", "--out", str(tmp_path / "m.xml")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'resnet[openvino]'" in err and err.count("\n") == 1 and not list(tmp_path.iterdir())
