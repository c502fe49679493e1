"""The model families: shapes, exact parameter counts (paper / torchvision), shortcut semantics, pre-activation
block semantics, registry errors."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import resnet
from resnet.models import (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut, list_models,
                           model_arguments, model_info)

from .conftest import require_module

PARAMS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    # paper Table 6 (0.27M ... 19.4M): shortcut A, 3 input channels, 10 classes; resnet14 (n=2) is not in the paper
    "resnet14": 172_506, "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "resnet1202": 19_421_274,
}
# Pre-activation paper: 164 -> 1.7M, 1001 -> 10.2M. With BN parameters 1001 has 10.33M (as osmr/imgclsmob's
# PreResNet-1001); its 10,178,490 conv + fc parameters round to the paper's 10.2M.
# The 224-px counts equal timm's resnetv2_18 ... resnetv2_152.
PREACT_PARAMS = {
    "preact_resnet18": 11_687_720, "preact_resnet34": 21_795_880, "preact_resnet50": 25_549_352,
    "preact_resnet101": 44_541_480, "preact_resnet152": 60_185_128,
    "preact_resnet20": 272_282, "preact_resnet56": 855_578, "preact_resnet110": 1_730_522,
    "preact_resnet164": 1_703_258, "preact_resnet1001": 10_327_706,
}
TOO_BIG_FOR_CPU_TESTS = ("resnet1202", "plain1202", "preact_resnet1001")


def small_input(name: str, in_chans: int = 3, n: int = 2) -> torch.Tensor:
    size = 32 if model_info(name).family == "cifar" else 64
    return torch.randn(n, in_chans, size, size)


def test_registry_lists_the_whole_family():
    names = set(list_models())
    expected = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34",
                "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
                "resnet50d", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
                "plain14", "plain20", "plain32", "plain44", "plain56", "plain110", "plain1202"}
    assert expected <= names
    assert list_models("resnet1*") == ["resnet14", "resnet110", "resnet1202", "resnet18", "resnet101", "resnet152"]
    assert list_models("plain") == [
        "plain14", "plain20", "plain32", "plain44", "plain56", "plain110", "plain1202", "plain18", "plain34"]
    assert list_models("preact*") == list(PREACT_PARAMS)


@pytest.mark.parametrize("name", [n for n in list_models() if n not in TOO_BIG_FOR_CPU_TESTS])
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = resnet.create_model(name, num_classes=7)
    x = small_input(name)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    model.eval()  # (dropout and stochastic depth would make two passes differ)
    feats = model.forward_features(x)
    assert feats.shape[1] == model.num_features
    assert torch.equal(model.forward_head(feats), model(x))


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18", "resnet50", "resnet50d", "resnext50_32x4d",
                                  "preact_resnet20", "preact_resnet164", "preact_resnet18", "preact_resnet50"])
def test_grayscale_input(name):
    model = resnet.create_model(name, in_chans=1, num_classes=10).eval()
    assert model(small_input(name, in_chans=1)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet1202", "plain1202"])
def test_the_1202_layer_nets_run_and_are_twins(name):
    model = resnet.create_model(name)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert resnet.count_parameters(model) == PARAMS["resnet1202"]  # shortcut A adds no parameter


@pytest.mark.parametrize("name,count", sorted({**PARAMS, **PREACT_PARAMS}.items()))
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
    for plain, residual, kwargs in [("plain14", "resnet14", {}), ("plain20", "resnet20", {}),
                                    ("plain110", "resnet110", {}),
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shortcut_a_is_exact_on_odd_sizes_and_keeps_channels_last_gradients(dtype):
    leaf = torch.randn(2, 32, 7, 7, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    x = leaf * 1  # inside a graph: a leaf's .grad is re-laid out to match the leaf, an activation's gradient is not
    grads = []
    x.register_hook(grads.append)
    y = ZeroPadShortcut(32, 64, stride=2)(x)
    assert y.shape == (2, 64, 4, 4)
    assert torch.equal(y[:, :32], x[:, :, ::2, ::2])
    y.backward(torch.ones_like(y))
    (grad,) = grads
    assert grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grad[:, :, ::2, ::2], torch.ones(2, 32, 4, 4, dtype=dtype))
    assert grad.sum() == 2 * 32 * 4 * 4


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


# ------------------------------------------------------------------------------------------------ pre-activation


@pytest.mark.parametrize("block_cls,in_ch,planes,stride", [(PreActBasicBlock, 16, 16, 1), (PreActBasicBlock, 16, 32, 2),
                                                          (PreActBottleneck, 64, 16, 1), (PreActBottleneck, 16, 16, 1),
                                                          (PreActBottleneck, 256, 128, 2)])
def test_preact_block_is_branch_plus_shortcut_with_no_relu_after(block_cls, in_ch, planes, stride):
    torch.manual_seed(0)
    block = block_cls(in_ch, planes, stride)
    block(torch.randn(8, in_ch, 8, 8))  # one training step's BN statistics, so eval mode is not the identity
    block.eval()
    x = torch.randn(2, in_ch, 8, 8)
    out_ch = planes * block_cls.expansion
    preact = torch.relu(block.bn1(x))
    if stride == 1 and in_ch == out_ch:
        assert block.downsample is None
        shortcut = x
    else:  # a bare 1x1 conv (no BN) on the pre-activated input
        assert isinstance(block.downsample, nn.Conv2d) and block.downsample.kernel_size == (1, 1)
        shortcut = block.downsample(preact)
        assert not torch.allclose(block(x), block.branch(preact) + block.downsample(x))
    with torch.no_grad():
        out = block(x)
        assert torch.allclose(out, block.branch(preact) + shortcut, atol=1e-6)
    assert (out < 0).any()  # no ReLU after the addition


@pytest.mark.parametrize("name,first", [("preact_resnet18", ["conv1", "maxpool", "layer1.0.bn1"]),
                                        ("preact_resnet20", ["conv1", "layer1.0.bn1"])])
def test_preact_net_order_of_operations(name, first):
    """No BN/ReLU in the stem (the first block pre-activates); the last ops before pooling are the final BN-ReLU."""
    model = resnet.create_model(name).eval()
    calls: list[str] = []
    for mname, module in model.named_modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, o, mname=mname: calls.append(mname))
    norm_out = {}
    model.norm.register_forward_hook(lambda m, i, o: norm_out.setdefault("y", o.clone()))
    x = small_input(name)
    feats = model.forward_features(x)
    assert calls[:len(first)] == first
    assert calls[-2:] == ["norm", "relu"] and isinstance(model.norm, nn.BatchNorm2d)
    assert torch.equal(feats, torch.relu(norm_out["y"]))
    calls.clear()
    model(x)
    assert calls[-4:] == ["norm", "relu", "avgpool", "fc"]


def test_preact_bottleneck_layout():
    m164 = resnet.create_model("preact_resnet164")
    assert [len(s) for s in m164.stages()] == [18, 18, 18] and m164.num_features == 256
    assert [n for n, _ in m164.named_modules() if n.endswith("downsample")] == [
        "layer1.0.downsample", "layer2.0.downsample", "layer3.0.downsample"]
    assert m164.layer2[0].conv2.stride == (2, 2) and m164.layer2[0].conv1.stride == (1, 1)
    rows = resnet.summarize("preact_resnet164").rows
    assert [(r.name, r.output) for r in rows] == [("conv1", (32, 32, 16)), ("conv2_x", (32, 32, 64)),
                                                 ("conv3_x", (16, 16, 128)), ("conv4_x", (8, 8, 256)), ("fc", (10,))]
    assert rows[1].layers == "[1x1, 16; 3x3, 16; 1x1, 64] x 18"


def test_preact_costs_the_macs_of_its_projection_twin():
    """Same convolutions as the original nets with projection shortcuts: BN moves, the counted MACs do not."""
    assert resnet.summarize("preact_resnet50").macs == resnet.summarize("resnet50").macs
    assert resnet.summarize("preact_resnet110").macs == resnet.summarize("resnet110", shortcut="B").macs


def test_preact_he_init_and_zero_init_residual():
    model = resnet.create_model("preact_resnet56", zero_init_residual=True).eval()
    for block in model.layer1:
        assert torch.count_nonzero(block.conv2.weight) == 0  # the branch ends in a conv, not a BN
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(model.layer1[1](x), x)  # a zero-initialised identity block starts as the identity
    b = model.layer2[0]
    assert torch.equal(b(x), b.downsample(torch.relu(b.bn1(x))))
    conv = resnet.create_model("preact_resnet20").layer2[1].conv1.weight
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert conv.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.1)
    norm = resnet.create_model("preact_resnet20").norm
    assert torch.equal(norm.weight, torch.ones(64)) and torch.equal(norm.bias, torch.zeros(64))
    m164 = resnet.create_model("preact_resnet164", zero_init_residual=True)
    assert torch.count_nonzero(m164.layer3[5].conv3.weight) == 0


def test_preact_reset_classifier_and_arguments():
    model = resnet.create_model("preact_resnet20")
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert "shortcut" in model_arguments("resnet20") and "shortcut" not in model_arguments("preact_resnet20")
    with pytest.raises(resnet.UserError, match="unknown model argument 'shortcut' for preact_resnet20"):
        resnet.create_model("preact_resnet20", shortcut="A")
    with pytest.raises(resnet.UserError, match="did you mean 'zero_init_residual'"):
        resnet.create_model("preact_resnet20", zero_init_residul=True)


def test_preact_matches_timm_resnetv2():
    """timm's resnetv2_18 is the same net under other names (its fc is a 1x1 conv): its weights load and agree."""
    timm = require_module("timm")
    torch.manual_seed(0)
    ref = timm.create_model("resnetv2_18", pretrained=False)
    with torch.no_grad():
        ref(torch.randn(4, 3, 64, 64))  # non-trivial BN running statistics
    ref.eval()
    ours = resnet.create_model("preact_resnet18").eval()
    rename = [(r"^stem\.conv\.", "conv1."), (r"^head\.fc\.", "fc."), (r"\.norm(\d)\.", r".bn\1."),
              (r"downsample\.conv\.", "downsample.")]
    state = {}
    for key, value in ref.state_dict().items():
        for pat, new in rename:
            key = re.sub(pat, new, key)
        key = re.sub(r"^stages\.(\d)\.blocks\.", lambda m: f"layer{int(m[1]) + 1}.", key)
        state[key] = value.flatten(1) if key == "fc.weight" else value
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_the_head_pools_average_and_max_side_by_side_and_drops_out_in_training_only():
    torch.manual_seed(0)
    model = resnet.create_model("resnet18", num_classes=5, global_pool="catavgmax", drop_rate=0.5).eval()
    x = torch.randn(2, 3, 64, 64)
    features = model.forward_features(x)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, 2 * 512) and model.fc.in_features == 1024
    assert torch.allclose(pooled[:, 512:], features.amax((2, 3)))  # the max half
    assert torch.equal(model(x), model(x))  # no dropout in evaluation
    model.train()
    assert not torch.equal(model.forward_head(features), model.forward_head(features))
    with pytest.raises(ValueError, match="unknown global_pool 'max'"):
        resnet.create_model("resnet18", global_pool="max")
