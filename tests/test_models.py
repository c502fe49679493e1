"""The model family: shapes, exact parameter counts (paper / torchvision), shortcut semantics, registry errors."""

from __future__ import annotations

import pytest
import torch

import resnet
from resnet.models import BasicBlock, Bottleneck, ZeroPadShortcut, list_models, model_info

PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    # paper Table 6 (0.27M ... 19.4M): shortcut A, 3 input channels, 10 classes
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
}


def small_input(name: str, in_chans: int = 3, n: int = 2) -> torch.Tensor:
    size = 32 if model_info(name).family == "cifar" else 64
    return torch.randn(n, in_chans, size, size)


def test_registry_lists_the_whole_family():
    names = set(list_models())
    expected = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34",
                "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
                "resnet50d", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
                "plain20", "plain32", "plain44", "plain56", "plain110"}
    assert expected <= names
    assert list_models("resnet1*") == ["resnet110", "resnet1202", "resnet18", "resnet101", "resnet152"]
    assert list_models("plain") == ["plain20", "plain32", "plain44", "plain56", "plain110", "plain18", "plain34"]


@pytest.mark.parametrize("name", [n for n in list_models() if n != "resnet1202"])
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = resnet.create_model(name, num_classes=7)
    x = small_input(name)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert model.conv1.weight.grad is not None if hasattr(model.conv1, "weight") else True
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features
    assert torch.equal(model.forward_head(feats), model(x))


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18", "resnet50", "resnet50d", "resnext50_32x4d"])
def test_grayscale_input(name):
    model = resnet.create_model(name, in_chans=1, num_classes=10).eval()
    assert model(small_input(name, in_chans=1)).shape == (2, 10)


def test_resnet1202_runs():
    model = resnet.create_model("resnet1202")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name,count", sorted(PARAMS.items()))
def test_exact_parameter_counts(name, count):
    with torch.device("meta"):
        model = resnet.create_model(name)
    assert resnet.count_parameters(model) == count


@pytest.mark.parametrize("name,input_size,macs,rel", [
    ("resnet50", (3, 224, 224), 4.089e9, 0.005),
    ("resnet18", (3, 224, 224), 1.814e9, 0.001),
    ("resnet20", (3, 32, 32), 40.6e6, 0.01),
    ("resnet56", (3, 32, 32), 125.5e6, 0.01),
    ("resnet110", (3, 32, 32), 252.9e6, 0.01),
])
def test_macs(name, input_size, macs, rel):
    assert resnet.summarize(name, input_size).macs == pytest.approx(macs, rel=rel)


def test_summary_stage_sizes_resnet50():
    s = resnet.summarize("resnet50")
    assert [(r.name, r.output) for r in s.rows] == [
        ("conv1", (112, 112, 64)), ("pool", (56, 56, 64)), ("conv2_x", (56, 56, 256)), ("conv3_x", (28, 28, 512)),
        ("conv4_x", (14, 14, 1024)), ("conv5_x", (7, 7, 2048)), ("fc", (1000,))]
    assert s.rows[2].layers == "[1x1, 64; 3x3, 64; 1x1, 256] x 3"


def test_plain_net_has_exactly_the_parameters_of_its_shortcut_a_twin():
    for plain, residual, kwargs in [("plain20", "resnet20", {}), ("plain110", "resnet110", {}),
                                    ("plain18", "resnet18", {"shortcut": "A"}),
                                    ("plain34", "resnet34", {"shortcut": "A"})]:
        with torch.device("meta"):
            a, b = resnet.create_model(plain), resnet.create_model(residual, **kwargs)
        assert resnet.count_parameters(a) == resnet.count_parameters(b), plain
        assert [k for k in a.state_dict()] == [k for k in b.state_dict()], plain


@pytest.mark.parametrize("block_cls,in_ch,planes,stride", [(BasicBlock, 16, 32, 2), (BasicBlock, 16, 16, 1),
                                                          (Bottleneck, 64, 16, 1), (Bottleneck, 256, 128, 2)])
def test_plain_block_output_is_its_residual_branch_alone(block_cls, in_ch, planes, stride):
    torch.manual_seed(0)
    plain = block_cls(in_ch, planes, stride, shortcut="none").eval()
    x = torch.randn(2, in_ch, 8, 8)
    assert plain.downsample is None
    assert torch.equal(plain(x), torch.relu(plain.residual(x)))
    residual = block_cls(in_ch, planes, stride, shortcut="A").eval()
    residual.load_state_dict(plain.state_dict())
    shortcut = x if residual.downsample is None else residual.downsample(x)
    assert torch.allclose(residual(x), torch.relu(plain.residual(x) + shortcut))
    assert not torch.allclose(residual(x), plain(x))


def test_shortcut_a_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert sum(p.numel() for p in ZeroPadShortcut(16, 32, 2).parameters()) == 0


def test_shortcut_b_and_c_projections():
    b = resnet.create_model("resnet18")
    c = resnet.create_model("resnet18", shortcut="C")
    assert [n for n, m in b.named_modules() if n.endswith("downsample")] == [
        "layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]
    assert len([n for n, m in c.named_modules() if n.endswith("downsample")]) == 8
    a = resnet.create_model("resnet18", shortcut="A")
    assert resnet.count_parameters(a) < resnet.count_parameters(b) < resnet.count_parameters(c)


def test_bottleneck_stride_placement():
    v15 = resnet.create_model("resnet50")
    v1 = resnet.create_model("resnet50", stride_in_1x1=True)
    assert v15.layer2[0].conv2.stride == (2, 2) and v15.layer2[0].conv1.stride == (1, 1)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert resnet.count_parameters(v1) == resnet.count_parameters(v15)
    # paper v1 is cheaper: 3.8 G MACs rather than 4.09 G
    macs_v1 = resnet.count_macs(v1, (3, 224, 224))
    assert macs_v1 == pytest.approx(3.86e9, rel=0.02)


def test_he_init_and_zero_init_residual():
    model = resnet.create_model("resnet56", zero_init_residual=True).eval()
    for block in model.layer1:
        assert torch.count_nonzero(block.bn2.weight) == 0
    x = torch.randn(2, 16, 8, 8).relu()
    assert torch.equal(model.layer1[1](x), x)  # a zero-initialised block starts as the identity
    conv = resnet.create_model("resnet20").layer2[1].conv1.weight
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert conv.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)
    bn = resnet.create_model("resnet20").bn1
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))


def test_reset_classifier():
    model = resnet.create_model("resnet20")
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_unknown_model_names_the_closest():
    with pytest.raises(resnet.UserError, match="did you mean resnet50"):
        resnet.create_model("resnt50")


@pytest.mark.parametrize("kwargs,match", [({"shortcut": "B"}, "plain"), ({"shortcut": "D"}, "unknown shortcut"),
                                          ({"widht_per_group": 4}, "did you mean 'width_per_group'"),
                                          ({"num_classes": 0}, "positive")])
def test_bad_model_arguments(kwargs, match):
    name = "plain20" if kwargs.get("shortcut") == "B" else "resnet20"
    with pytest.raises(resnet.UserError, match=match):
        resnet.create_model(name, **kwargs)
