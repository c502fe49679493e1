"""State-dict and output parity with torchvision (and timm for ResNet-D): their checkpoints load into our models."""

from __future__ import annotations

import pytest
import torch
import torchvision

import resnet

from .conftest import require_module

TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                     "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine terms, so eval-mode outputs exercise every tensor."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.25)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def assert_parity(reference: torch.nn.Module, ours: torch.nn.Module, size: int) -> None:
    randomize_bn(reference)
    reference.eval()
    state = reference.state_dict()
    assert list(state) == list(ours.state_dict())
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert (expected - got).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_checkpoint_loads_and_matches(name):
    torch.manual_seed(0)
    size = 224 if name in ("resnet18", "resnet50") else 96
    assert_parity(getattr(torchvision.models, name)(), resnet.create_model(name), size)


def test_timm_resnet50d_checkpoint_loads_and_matches():
    timm = require_module("timm")
    torch.manual_seed(0)
    assert_parity(timm.create_model("resnet50d"), resnet.create_model("resnet50d"), 128)
