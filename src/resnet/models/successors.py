"""ResNet's successors at the CIFAR scale (28-32 px, 1 or 3 channels), so the paper's "later evolutions" train on
the same data and budget as ResNet-20 (`resnet compare`).

Each is torchvision's own class, configured through its constructor arguments (growth rate, block configs,
inverted-residual settings, stage widths, patch and window size); only the stem changes where an ImageNet stem would
shrink a 28-px image to nothing, and where a setting's first stride-2 stage would do the same after it. A 32-px image
then ends at 4x4 in every net (at 8x8 in DenseNet-BC, whose CIFAR design downsamples 4x as ResNet-20 does).
The nets are then re-housed (:mod:`.rehoused`) so that every tool reads them as it reads a ResNet. Each keeps its
class's own initialisation, dropout and stochastic depth; a replaced stem is initialised as the class initialises
its other layers.

``depth`` of these nets is their number of weighted layers (convolutions and linear layers, squeeze-excitation
included), which is DenseNet's own count.

Two groups are registered: each family at the size of its paper's ImageNet (or CIFAR) model (:data:`SUCCESSORS`), and
each family small (:data:`SMALL_SUCCESSORS`), with the paper's own smaller setting where it has one, so that "fewer
MACs" and "fewer parameters" are questions the comparison can answer. On a 1x28x28 image, against ResNet-20's
30.8 M MACs: MobileNetV2 0.5x 23.1 M and 0.35x 12.8 M, ShuffleNetV2 0.5x 9.0 M, MnasNet 0.5 26.4 M, EfficientNet-B0
at width and depth 0.5 17.2 M and Swin at width 24 18.0 M are below it; DenseNet-BC (L=40, k=12) at 55.1 M and
RegNetX-200MF at 52.9 M are not (their 28 x 28 first stage costs what ImageNet's 56 x 56 costs at 224 px).
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn
from torchvision import models as tv
from torchvision.models.convnext import CNBlockConfig, LayerNorm2d
from torchvision.models.efficientnet import _efficientnet_conf
from torchvision.models.mobilenetv3 import _mobilenet_v3_conf
from torchvision.models.regnet import BlockParams
from torchvision.ops.misc import Conv2dNormActivation

from .registry import register
from .rehoused import RehousedNet

_INPUT = (3, 32, 32)


def _he_fan_out(conv: nn.Conv2d) -> nn.Conv2d:
    """The init MobileNet and EfficientNet give their convolutions (He, fan_out)."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _by_stride(blocks: list[nn.Module], strides: list[int]) -> list[nn.Sequential]:
    """Split a flat list of blocks into stages: a new stage at every block of stride 2 (where the map shrinks)."""
    stages: list[list[nn.Module]] = []
    for block, stride in zip(blocks, strides, strict=True):
        if not stages or stride > 1:
            stages.append([])
        stages[-1].append(block)
    return [nn.Sequential(*stage) for stage in stages]


def _first_stride_two_to_one(settings: list) -> list:
    """Copies of ``settings`` with the first stride-2 entry made stride 1: with the stem at stride 1 too, the net
    downsamples 8x instead of 32x."""
    settings = [copy.copy(s) for s in settings]
    next(s for s in settings if s.stride == 2).stride = 1
    return settings


# ---------------------------------------------------------------------------------------------------- the families


def densenet_bc(*, depth: int = 100, growth_rate: int = 12, num_classes: int = 10, in_chans: int = 3,
                drop_rate: float = 0.0) -> RehousedNet:
    """DenseNet-BC (L=``depth``, k=``growth_rate``), the CIFAR configuration of Huang et al. 2017 (Sec. 3): three
    dense blocks of (L - 4) / 6 bottleneck layers, 2k channels out of a 3x3 stem conv (no BN, ReLU or pool after it:
    the first dense layer pre-activates), compression 0.5 in the transitions. L=100 and L=40 are the paper's."""
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC's depth is 6n + 4, got {depth}")
    layers = (depth - 4) // 6
    net = tv.DenseNet(growth_rate=growth_rate, block_config=(layers,) * 3, num_init_features=2 * growth_rate,
                      bn_size=4, drop_rate=drop_rate, num_classes=num_classes)
    f = net.features
    stem = nn.Conv2d(in_chans, 2 * growth_rate, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(stem.weight)  # as the class initialises its convolutions (He, fan_in)
    stages = [nn.Sequential(f.denseblock1), nn.Sequential(f.transition1, f.denseblock2),
              nn.Sequential(f.transition2, f.denseblock3)]
    return RehousedNet(stem, stages, nn.Sequential(f.norm5, nn.ReLU(inplace=True)), nn.Flatten(1), net.classifier,
                       num_features=net.classifier.in_features, in_chans=in_chans)


def mobilenet_v2_cifar(*, width_mult: float = 1.0, num_classes: int = 10, in_chans: int = 3,
                       dropout: float = 0.2) -> RehousedNet:
    """MobileNetV2 (Sandler et al. 2018) at ``width_mult`` (the paper's 1.0, 0.5, 0.35: every layer's channels but
    the last 1,280 scaled, rounded to multiples of 8 as the class does), with Table 2's inverted-residual setting at
    stride 1 in the stem and in the first stride-2 row (24 channels at width 1)."""
    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
               [6, 320, 1, 1]]  # t, c, n, s; ImageNet's second row has s=2
    net = tv.MobileNetV2(num_classes=num_classes, width_mult=width_mult, inverted_residual_setting=setting,
                         dropout=dropout)
    stem = Conv2dNormActivation(in_chans, net.features[0].out_channels, stride=1, norm_layer=nn.BatchNorm2d,
                                activation_layer=nn.ReLU6)
    _he_fan_out(stem[0])
    strides = [stride if i == 0 else 1 for _, _, n, stride in setting for i in range(n)]
    drop, fc = net.classifier
    return RehousedNet(stem, _by_stride(list(net.features)[1:-1], strides), net.features[-1],
                       nn.Sequential(nn.Flatten(1), drop), fc, num_features=net.last_channel, in_chans=in_chans)


def mobilenet_v3_cifar(*, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.2,
                       bn_momentum: float = 0.1) -> RehousedNet:
    """MobileNetV3-Large (Howard et al. 2019), torchvision's setting with the stem and the first stride-2 block at
    stride 1. BN momentum 0.1, as every other net here, not the ImageNet recipe's 0.01: its running statistics
    average over about 100 steps from their start (mean 0, variance 1), so a run of a few hundred steps evaluates
    with statistics far from the batches' (a 5-minute CPU run of 116 steps predicted one class)."""
    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large")
    setting = _first_stride_two_to_one(setting)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=bn_momentum)
    net = tv.MobileNetV3(setting, last_channel, num_classes=num_classes, dropout=dropout, norm_layer=norm)
    stem = Conv2dNormActivation(in_chans, setting[0].input_channels, stride=1, norm_layer=norm,
                                activation_layer=nn.Hardswish)
    _he_fan_out(stem[0])
    hidden, act, drop, fc = net.classifier
    return RehousedNet(stem, _by_stride(list(net.features)[1:-1], [c.stride for c in setting]), net.features[-1],
                       nn.Sequential(nn.Flatten(1), hidden, act, drop), fc, num_features=hidden.in_features,
                       in_chans=in_chans)


SHUFFLENET_WIDTHS = {1.0: [24, 116, 232, 464, 1024], 0.5: [24, 48, 96, 192, 1024]}  # Ma et al. 2018, Table 5


def shufflenet_v2_cifar(*, width: float = 1.0, num_classes: int = 10, in_chans: int = 3) -> RehousedNet:
    """ShuffleNetV2 1.0x or 0.5x (Ma et al. 2018): stages of 4, 8, 4 units with the paper's channels for the width,
    the stem conv at stride 1 and without its max-pool. torchvision gives the class no init of its own, nor the new
    stem."""
    net = tv.ShuffleNetV2([4, 8, 4], SHUFFLENET_WIDTHS[width], num_classes=num_classes)
    stem = nn.Sequential(nn.Conv2d(in_chans, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
    return RehousedNet(stem, [net.stage2, net.stage3, net.stage4], net.conv5, nn.Flatten(1), net.fc,
                       num_features=net.fc.in_features, in_chans=in_chans)


def efficientnet_b0_cifar(*, width_mult: float = 1.0, depth_mult: float = 1.0, num_classes: int = 10,
                          in_chans: int = 3, dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> RehousedNet:
    """EfficientNet-B0 (Tan & Le 2019), torchvision's setting with the stem and the first stride-2 stage at
    stride 1, its channels and block counts scaled by the compound-scaling multipliers ``width_mult`` and
    ``depth_mult`` (1.0: B0 itself; below 1: the same rule scaled down, which the paper does not name)."""
    setting, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=width_mult, depth_mult=depth_mult)
    setting = _first_stride_two_to_one(list(setting))
    net = tv.EfficientNet(setting, dropout, stochastic_depth_prob,
                          num_classes=num_classes, last_channel=last_channel)
    stem = Conv2dNormActivation(in_chans, setting[0].input_channels, stride=1, norm_layer=nn.BatchNorm2d,
                                activation_layer=nn.SiLU)
    _he_fan_out(stem[0])
    drop, fc = net.classifier
    return RehousedNet(stem, _by_stride(list(net.features)[1:-1], [c.stride for c in setting]), net.features[-1],
                       nn.Sequential(nn.Flatten(1), drop), fc, num_features=fc.in_features, in_chans=in_chans)


REGNETX = {"400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),  # torchvision's regnet_x_400mf
           "200mf": dict(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8)}  # the paper's RegNetX-200MF


def regnet_x_cifar(*, size: str = "400mf", num_classes: int = 10, in_chans: int = 3) -> RehousedNet:
    """RegNetX-400MF or -200MF (Radosavovic et al. 2020, Appendix: nets of the design space, not hand designs), their
    block parameters with the first stage at stride 1 and a stride-1 stem (given through the class's
    ``stem_type``)."""
    with torch.device("cpu"):  # (it computes the widths with tensors, which a meta-device build could not read)
        params = BlockParams.from_init_params(**REGNETX[size])
    params.strides = [1] + list(params.strides[1:])

    def stem_type(_width_in: int, width_out: int, norm_layer, activation_layer) -> nn.Module:
        return Conv2dNormActivation(in_chans, width_out, kernel_size=3, stride=1, norm_layer=norm_layer,
                                    activation_layer=activation_layer)

    net = tv.RegNet(params, num_classes=num_classes, stem_type=stem_type)
    return RehousedNet(net.stem, list(net.trunk_output), nn.Identity(), nn.Flatten(1), net.fc,
                       num_features=net.fc.in_features, in_chans=in_chans)


def mnasnet_cifar(*, alpha: float = 0.5, num_classes: int = 10, in_chans: int = 3, dropout: float = 0.2,
                  bn_momentum: float = 0.1) -> RehousedNet:
    """MnasNet-B1 (Tan et al. 2019: the searched net without squeeze-excitation), torchvision's MNASNet at its
    depth multiplier ``alpha`` (the paper's 0.5 scales every layer's channels but the last 1,280), with the stem
    conv and the first stride-2 stack at stride 1. BN momentum 0.1, as every other net here, not the class's
    TensorFlow-style 0.0003, whose running statistics would barely leave their start in a short run (see
    :func:`mobilenet_v3_cifar`)."""
    net = tv.MNASNet(alpha, num_classes=num_classes, dropout=dropout)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = bn_momentum
    layers = list(net.layers)  # stem conv, BN, ReLU, separable conv (6 modules), six stacks, 1x1 conv, BN, ReLU
    stem_conv = nn.Conv2d(in_chans, layers[0].out_channels, 3, padding=1, stride=1, bias=False)
    nn.init.kaiming_normal_(stem_conv.weight, mode="fan_out", nonlinearity="relu")  # as the class initialises convs
    first_stack = layers[8]
    first_stack[0].layers[3].stride = (1, 1)  # the depthwise conv of its first block
    stem = nn.Sequential(stem_conv, *layers[1:8])
    stacks = layers[8:14]
    stages = [nn.Sequential(stacks[0]), nn.Sequential(stacks[1]), nn.Sequential(stacks[2], stacks[3]),
              nn.Sequential(stacks[4], stacks[5])]  # a new stage where a stack halves the map
    drop, fc = net.classifier
    return RehousedNet(stem, stages, nn.Sequential(*layers[14:]), nn.Sequential(nn.Flatten(1), drop), fc,
                       num_features=fc.in_features, in_chans=in_chans)


def convnext_cifar(*, num_classes: int = 10, in_chans: int = 3, stochastic_depth_prob: float = 0.0) -> RehousedNet:
    """ConvNeXt (Liu et al. 2022) at the smallest size timm names (atto: widths 40/80/160/320, 2/2/6/2 blocks),
    with a 3x3 stride-1 stem conv (LayerNorm, no activation, as torchvision's) in place of the 4x4 stride-4
    patchify."""
    setting = [CNBlockConfig(40, 80, 2), CNBlockConfig(80, 160, 2), CNBlockConfig(160, 320, 6),
               CNBlockConfig(320, None, 2)]
    net = tv.ConvNeXt(setting, stochastic_depth_prob=stochastic_depth_prob, num_classes=num_classes)
    stem = Conv2dNormActivation(in_chans, 40, kernel_size=3, stride=1, norm_layer=partial(LayerNorm2d, eps=1e-6),
                                activation_layer=None, bias=True)
    nn.init.trunc_normal_(stem[0].weight, std=0.02)  # as the class initialises every conv
    nn.init.zeros_(stem[0].bias)
    f = list(net.features)  # stem, stage, downsample, stage, downsample, stage, downsample, stage
    stages = [f[1]] + [nn.Sequential(f[i], f[i + 1]) for i in range(2, len(f), 2)]
    norm, flatten, fc = net.classifier
    return RehousedNet(stem, stages, nn.Identity(), nn.Sequential(norm, flatten), fc, num_features=fc.in_features,
                       in_chans=in_chans)


def swin_cifar(*, embed_dim: int = 48, num_classes: int = 10, in_chans: int = 3,
               stochastic_depth_prob: float = 0.1) -> RehousedNet:
    """Swin Transformer (Liu et al. 2021) for small images: 2x2 patches, 4x4 windows, three stages of 2/2/6 blocks
    with ``embed_dim`` x 1/2/4 channels (48: 48/96/192) and 3/6/12 heads, all through the class's arguments; only the
    patch embedding's conv takes ``in_chans`` channels. Unlike ViT, Swin has no absolute position table, so it reads
    28 and 32 px alike."""
    net = tv.SwinTransformer(patch_size=[2, 2], embed_dim=embed_dim, depths=[2, 2, 6], num_heads=[3, 6, 12],
                             window_size=[4, 4], stochastic_depth_prob=stochastic_depth_prob,
                             num_classes=num_classes)
    stem = net.features[0]
    stem[0] = nn.Conv2d(in_chans, embed_dim, kernel_size=2, stride=2)  # PyTorch's default init, as the class's
    f = list(net.features)  # patch embedding, stage, merging, stage, merging, stage
    stages = [f[1]] + [nn.Sequential(f[i], f[i + 1]) for i in range(2, len(f), 2)]
    return RehousedNet(stem, stages, nn.Sequential(net.norm, net.permute), nn.Flatten(1), net.head,
                       num_features=net.head.in_features, in_chans=in_chans, stage_layout="nhwc")


# ------------------------------------------------------------------------------------------------------ registry

# name -> (builder, lineage, weighted layers): each family at its paper's size ...
SUCCESSORS = {
    "densenet_bc100": (partial(densenet_bc, depth=100), "densenet", 100),
    "mobilenet_v2_cifar": (mobilenet_v2_cifar, "mobilenet", 53),
    "mobilenet_v3_cifar": (mobilenet_v3_cifar, "mobilenet", 64),
    "shufflenet_v2_cifar": (shufflenet_v2_cifar, "shufflenet", 57),
    "efficientnet_b0_cifar": (efficientnet_b0_cifar, "efficientnet", 82),
    "regnet_x_400mf_cifar": (partial(regnet_x_cifar, size="400mf"), "regnet", 71),
    "convnext_cifar": (convnext_cifar, "convnext", 41),
    "swin_cifar": (swin_cifar, "transformer", 44),
}
# ... and small: the paper's smaller settings where it has them, most at or below ResNet-20's 30.8 M MACs
SMALL_SUCCESSORS = {
    "mobilenet_v2_050_cifar": (partial(mobilenet_v2_cifar, width_mult=0.5), "mobilenet", 53),
    "mobilenet_v2_035_cifar": (partial(mobilenet_v2_cifar, width_mult=0.35), "mobilenet", 53),
    "shufflenet_v2_x0_5_cifar": (partial(shufflenet_v2_cifar, width=0.5), "shufflenet", 57),
    "mnasnet0_5_cifar": (partial(mnasnet_cifar, alpha=0.5), "mnasnet", 53),
    "regnet_x_200mf_cifar": (partial(regnet_x_cifar, size="200mf"), "regnet", 45),
    "densenet_bc40": (partial(densenet_bc, depth=40), "densenet", 40),
    "efficientnet_b0_050_cifar": (partial(efficientnet_b0_cifar, width_mult=0.5, depth_mult=0.5), "efficientnet", 52),
    "swin_w24_cifar": (partial(swin_cifar, embed_dim=24), "transformer", 44),
}

for _name, (_builder, _lineage, _depth) in {**SUCCESSORS, **SMALL_SUCCESSORS}.items():
    register(_name, _builder, family="cifar", depth=_depth, input_size=_INPUT, default_classes=10,
             lineage=_lineage, paper_error=4.51 if _name == "densenet_bc100" else None)
