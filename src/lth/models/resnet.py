"""The 20-layer CIFAR ResNet of He et al. (2016, Section 4.2): the paper's "ResNet-18".

A 3×3 conv of width 16, then three stages of basic blocks of widths 16, 32 and 64 (the second
and third start with stride 2), a global average pool and a linear output. Each block is
conv → BN → ReLU → conv → BN, plus the shortcut, then ReLU. Where a block changes shape the
shortcut is a 1×1 conv + BN projection (He et al.'s option B, as in open_lth); elsewhere it is
the identity. Convs have no bias, since batch norm follows each one.

Weights on CIFAR-10, with n = 3 blocks per stage:
- first conv 3·16·9 = 432;
- stage 1: 6 convs of 16·16·9 = 2,304 → 13,824;
- stage 2: 16·32·9 = 4,608 + 5 convs of 32·32·9 = 9,216 → 50,688;
- stage 3: 32·64·9 = 18,432 + 5 convs of 64·64·9 = 36,864 → 202,752;
- 3×3 convs 267,696; 1×1 shortcuts 16·32 + 32·64 = 512 + 2,048 = 2,560; output 64·10 = 640;
- all weights 270,896. With batch norm (1,568) and the output bias (10): 272,474 parameters,
  which the paper rounds to "274K" (within 1%; the paper's 640 and 2,560 match exactly).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from lth.models.init import glorot_normal_
from lth.models.registry import register


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class Projection(nn.Module):
    """The shortcut where a block changes shape: strided 1×1 conv → batch norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """conv → BN → ReLU → conv → BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            Projection(in_channels, out_channels, stride)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6n + 2; subclasses fix n (`blocks_per_stage`)."""

    blocks_per_stage: ClassVar[int] = 3
    widths: ClassVar[tuple[int, ...]] = (16, 32, 64)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels = self.widths[0]
        self.conv = _conv3x3(input_shape[0], channels)
        self.bn = nn.BatchNorm2d(channels)
        blocks: list[BasicBlock] = []
        for stage, width in enumerate(self.widths):
            for i in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.ModuleList(blocks)
        self.output = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        for block in self.blocks:
            x = block(x)
        return self.output(x.mean(dim=(2, 3)))  # global average pool

    def init_weights(self) -> None:
        glorot_normal_(self)

    def prunable(self) -> dict[str, str]:
        kinds = {"conv.weight": "conv"}
        for i, block in enumerate(self.blocks):
            kinds[f"blocks.{i}.conv1.weight"] = "conv"
            kinds[f"blocks.{i}.conv2.weight"] = "conv"
            if isinstance(block.shortcut, Projection):
                kinds[f"blocks.{i}.shortcut.conv.weight"] = "shortcut"
        return kinds | {"output.weight": "output"}


@register("resnet20")
class ResNet20(CifarResNet):
    """20 layers: 1 + 3 stages × 3 blocks × 2 convs + the output."""

    blocks_per_stage = 3
