"""VGG-19 for CIFAR-10, with batch norm (the paper's Section 4 network, as in open_lth).

Sixteen 3×3 same-padded convolutions, each conv → BN → ReLU, in the plan below ("M" is a 2×2
max-pool); then a global average pool and one linear output layer 512 → classes, with no hidden
fc layers (the CIFAR variant, unlike ImageNet VGG's 4096-wide head).

Weights on CIFAR-10: 20,018,880 conv + 5,120 output = 20,024,000 (paper: 20.0M). The convs have
no bias: the batch norm that follows each one has its own shift, so a bias would be redundant.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lth.models.init import glorot_normal_
from lth.models.registry import register

_POOL = "M"
VGG19_PLAN: tuple[int | str, ...] = (
    *(64, 64, _POOL),
    *(128, 128, _POOL),
    *(256,) * 4, _POOL,
    *(512,) * 4, _POOL,
    *(512,) * 4,
)  # fmt: skip


class ConvBN(nn.Module):
    """3×3 same-padded conv (no bias) → batch norm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@register("vgg19")
class VGG19(nn.Module):
    """CIFAR VGG-19 with batch norm; any input of at least 16×16 (four pools) works."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels = input_shape[0]
        layers: list[nn.Module] = []
        for item in VGG19_PLAN:
            if item == _POOL:
                layers.append(nn.MaxPool2d(2))
            else:
                assert isinstance(item, int)
                layers.append(ConvBN(channels, item))
                channels = item
        self.features = nn.Sequential(*layers)
        self.output = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.output(x.mean(dim=(2, 3)))  # global average pool

    def init_weights(self) -> None:
        glorot_normal_(self)

    def prunable(self) -> dict[str, str]:
        kinds = {
            f"features.{i}.conv.weight": "conv"
            for i, layer in enumerate(self.features)
            if isinstance(layer, ConvBN)
        }
        return kinds | {"output.weight": "output"}
