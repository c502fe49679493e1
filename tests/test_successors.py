"""ResNet's successors (models/successors.py): torchvision's classes configured for 28-32 px images, re-housed in the
families' interface. Exact parameter counts, cost within the comparison's range, forward and backward at both input
shapes, the interface every tool reads, and ONNX export verified against PyTorch."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from resnet.models import RehousedNet, create_model, model_info
from resnet.models.successors import SMALL_SUCCESSORS, SUCCESSORS
from resnet.models.summary import summarize
from resnet.train.finetune import frozen_modules

from .conftest import require_module

NAMES = list(SUCCESSORS) + list(SMALL_SUCCESSORS)
RESNET20_MACS = 30_821_248  # at 1x28x28
# Parameters with 10 classes at (1 channel, 3 channels). DenseNet-BC (L=100, k=12): 0.8M in Huang et al. 2017, Table 2.
PARAMS = {
    "densenet_bc100": (768_730, 769_162),
    "mobilenet_v2_cifar": (2_236_106, 2_236_682),
    "mobilenet_v3_cifar": (4_214_554, 4_214_842),
    "shufflenet_v2_cifar": (1_263_422, 1_263_854),
    "efficientnet_b0_cifar": (4_019_782, 4_020_358),
    "regnet_x_400mf_cifar": (5_097_322, 5_097_898),
    "convnext_cifar": (3_376_170, 3_376_890),
    "swin_cifar": (3_049_780, 3_050_164),
    "mobilenet_v2_050_cifar": (700_202, 700_490),
    "mobilenet_v2_035_cifar": (408_650, 408_938),
    "shufflenet_v2_x0_5_cifar": (351_610, 352_042),
    "mnasnet0_5_cifar": (950_034, 950_322),
    "regnet_x_200mf_cifar": (2_318_906, 2_319_482),
    "densenet_bc40": (175_690, 176_122),
    "efficientnet_b0_050_cifar": (663_242, 663_530),
    "swin_w24_cifar": (771_388, 771_580),
}


def test_every_successor_is_registered_with_its_lineage():
    assert sorted(PARAMS) == sorted(NAMES)
    lineages = {model_info(n).lineage for n in NAMES}
    assert lineages == {"densenet", "mobilenet", "shufflenet", "efficientnet", "regnet", "convnext", "transformer",
                        "mnasnet"}
    assert model_info("resnet20").lineage == "resnet" and model_info("densenet_bc100").paper_error == 4.51


@pytest.mark.parametrize("name", NAMES)
def test_parameters_cost_and_depth(name):
    """Exact parameters at both input shapes; 10-300 M MACs at 28x28 at a paper's size, under 60 M small;
    ``depth`` is the number of weighted layers."""
    gray, rgb = summarize(name, (1, 28, 28)), summarize(name, (3, 32, 32))
    assert (gray.params, rgb.params) == PARAMS[name]
    assert (10e6 <= gray.macs <= 300e6 if name in SUCCESSORS else gray.macs < 60e6) and rgb.macs > gray.macs
    model = create_model(name)
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == model_info(name).depth


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_backward_at_both_input_shapes(name, shape):
    torch.manual_seed(0)
    model = create_model(name, in_chans=shape[0], num_classes=10)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # Small inputs keep a spatial map to the last stage: 4x4 from 32 px (DenseNet, which downsamples 4x as ResNet-20
    # does: 8x8), 3x3 or 4x4 from 28 px.
    with torch.no_grad():
        side = model.eval().forward_features(torch.zeros(1, *shape)).shape[-1]
    assert 3 <= side <= 8


@pytest.mark.parametrize("name", NAMES)
def test_built_from_torchvision_classes_only(name):
    """No architecture written by hand: every module is torch's or torchvision's, but the re-housing itself."""
    model = create_model(name)
    assert isinstance(model, RehousedNet)
    own = {type(m).__module__ for m in model.modules() if not type(m).__module__.startswith(("torch.", "torchvision."))}
    assert own == {"resnet.models.rehoused"}


def test_batch_norm_statistics_follow_a_short_run():
    """Every successor's BN keeps running statistics with momentum 0.1, as the ResNets do: MobileNetV3's ImageNet
    0.01 left a 116-step run predicting one class. Its builder still takes the paper's value when asked."""
    for name in NAMES:
        assert {m.momentum for m in create_model(name).modules() if isinstance(m, nn.BatchNorm2d)} <= {0.1}, name
    slow = create_model("mobilenet_v3_cifar", bn_momentum=0.01)
    assert {m.momentum for m in slow.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}

def test_the_interface_the_tools_read():
    """A new head where fc's input is not the feature map's width (MobileNetV3's hidden layer), stages to freeze,
    a stage table, and pre-logits features."""
    model = create_model("mobilenet_v3_cifar", in_chans=1)
    assert model.num_features == 960 and model.fc.in_features == 1280
    model.reset_classifier(5)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)
    assert frozen_modules(model, 1) == [model.conv1, model.layer1]
    assert len(frozen_modules(model, -1)) == len(list(model.children())) - 1
    assert model.eval().forward_head(model.forward_features(torch.zeros(1, 1, 28, 28)), pre_logits=True).shape == \
        (1, 1280)
    rows = {r.name: r for r in summarize("swin_cifar", (1, 28, 28)).rows}
    assert rows["conv2_x"].output == (14, 14, 48) and rows["conv4_x"].output == (4, 4, 192)  # (H, W, C)
    assert rows["conv3_x"].layers == "PatchMerging, SwinTransformerBlock x 2"
    assert summarize("densenet_bc100", (3, 32, 32)).rows[1].layers == "DenseLayer x 16"


def test_most_small_successors_cost_at_most_resnet20():
    """The small group answers "with fewer MACs": six of its eight nets are at or below ResNet-20's cost."""
    assert summarize("resnet20", (1, 28, 28)).macs == RESNET20_MACS
    cheap = {n for n in SMALL_SUCCESSORS if summarize(n, (1, 28, 28)).macs <= RESNET20_MACS}
    assert cheap == set(SMALL_SUCCESSORS) - {"densenet_bc40", "regnet_x_200mf_cifar"}


@pytest.mark.parametrize("name", [*SUCCESSORS, "mnasnet0_5_cifar"])  # (the small nets but MnasNet: the same classes)
def test_onnx_export_matches_pytorch(name, tmp_path):
    """The project's exporter (BN folded, dynamic batch) on each successor; onnxruntime agrees with PyTorch."""
    for module in ("onnx", "onnxruntime", "onnxscript"):
        require_module(module)
    from resnet.backends import onnxruntime_backend
    from resnet.export import export_onnx
    from resnet.weights import ModelCard

    torch.manual_seed(0)
    model = create_model(name, in_chans=1).eval()
    card = ModelCard(name, {"in_chans": 1}, [str(i) for i in range(10)], [1, 28, 28], [0.5], [0.25], [28, 28],
                     dataset="fashion-mnist")
    path = export_onnx(model, card, tmp_path / f"{name}.onnx")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
    assert (onnxruntime_backend(path)(x) - ref).abs().max() < 1e-4 * max(1.0, ref.abs().max().item())


def test_a_successor_through_the_tools(tmp_path):
    """Swin (the least ResNet-like) trained through the command line on real Fashion-MNIST images, then evaluated,
    asked for predictions, and exported to ONNX verified on real images: the same run directory every tool reads."""
    from .conftest import run_cli

    run = tmp_path / "swin"
    proc = run_cli("train", "--model", "swin_cifar", "--iterations", "6", "--batch-size", "32", "--train-limit", "256",
                   "--out", run, "--set", "data.test_limit=64", "--set", "test_tta=none", "--set", "threads=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["model"] == "swin_cifar" and results["parameters"] == PARAMS["swin_cifar"][0]
    proc = run_cli("eval", run, "--json")  # the whole official test set (the run itself tested 64 images)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 0 <= json.loads(proc.stdout)["top1"] <= 100
    image = tmp_path / "shirt.png"
    from PIL import Image

    from resnet.data import open_split

    Image.fromarray(open_split("fashion-mnist", "test", limit=1).images[0, 0].numpy(), mode="L").save(image)
    proc = run_cli("predict", run, image, "--format", "json", "--backend", "torch")
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["top"][0]["label"], proc.stderr[-3000:]
    proc = run_cli("export", run, "--format", "onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "model.onnx").is_file() and "top-1 agreement 100.00%" in proc.stdout
