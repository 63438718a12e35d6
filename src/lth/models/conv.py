"""Conv-2, Conv-4 and Conv-6: the paper's small VGG-style networks for CIFAR-10 (Figure 2).

Each stage is two 3×3 same-padded convolutions with ReLU and a 2×2 max-pool; then fully
connected 256, 256 and the output, with ReLU between.

Weights on CIFAR-10 (3×32×32), conv + fc:
- Conv-2: 38,592 + 4,262,400 = 4,300,992 (paper: 4.3M);
- Conv-4: 259,776 + 2,165,248 = 2,425,024 (paper: 2.4M);
- Conv-6: 1,144,512 + 1,116,672 = 2,261,184. The paper says 1.7M, but no reading of its table
  gives that: its Conv-2 and Conv-4 counts only match same padding, and with same padding the
  third stage adds 128·256·9 + 256·256·9 = 884,736 conv weights while shrinking the first fc
  layer from 8,192·256 to 4,096·256 (−1,048,576), for 2.26M. Valid padding cannot reach a
  third pool at all (32→28→14→10→5→1). We keep the architecture as described, not the count.

Dropout (option `dropout`, the paper's dropout experiments use 0.5) is applied to the input of
each fully connected layer: after the flatten, and after each hidden fc's ReLU. Neither the
paper nor the original TF code (google-research/lottery-ticket-hypothesis, which ships only the
MNIST fc network) says where it goes; the closest public replication of these networks, Zhou et
al.'s uber-research/deconstructing-lottery-tickets (`network_builders.py`), puts `Dropout(0.5)`
before each of the three Dense layers of Conv-4 and Conv-6, and so do we. Convolutions get none.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from lth.errors import ConfigError
from lth.models.init import glorot_normal_
from lth.models.registry import register


class ConvNet(nn.Module):
    """Stages of (conv 3×3, ReLU, conv 3×3, ReLU, max-pool 2×2), then fc layers and the output.

    `stages` gives each stage's width; the flattened size follows `input_shape`, so the same
    network also runs on 1×28×28 (Fashion-)MNIST images.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        stages: tuple[int, ...] = (64,),
        hidden: tuple[int, ...] = (256, 256),
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        channels, height, width = input_shape
        convs: list[nn.Conv2d] = []
        for out_channels in stages:
            convs.append(nn.Conv2d(channels, out_channels, 3, padding=1))
            convs.append(nn.Conv2d(out_channels, out_channels, 3, padding=1))
            channels = out_channels
            height, width = height // 2, width // 2  # max-pool 2×2 floors odd sizes
        if height == 0 or width == 0:
            raise ConfigError(f"input of shape {tuple(input_shape)} is too small for {len(stages)} 2×2 pools")
        self.convs = nn.ModuleList(convs)
        sizes = [channels * height * width, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.output = nn.Linear(sizes[-1], num_classes)
        self.dropout = nn.Dropout(dropout)  # no parameters; identity in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = x.flatten(1)
        for layer in self.hidden:
            x = F.relu(layer(self.dropout(x)))
        return self.output(self.dropout(x))

    def init_weights(self) -> None:
        glorot_normal_(self)

    def prunable(self) -> dict[str, str]:
        kinds = {f"convs.{i}.weight": "conv" for i in range(len(self.convs))}
        kinds |= {f"hidden.{i}.weight": "fc" for i in range(len(self.hidden))}
        return kinds | {"output.weight": "output"}


class _PaperConvNet(ConvNet):
    """A `ConvNet` with the paper's stage widths fixed; the other options stay open."""

    stages: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: tuple[int, ...] = (256, 256),
        dropout: float = 0.0,
    ):
        super().__init__(input_shape, num_classes, stages=self.stages, hidden=hidden, dropout=dropout)


@register("conv2")
class Conv2(_PaperConvNet):
    """64, 64, pool; fc 256, 256, output."""

    stages = (64,)


@register("conv4")
class Conv4(_PaperConvNet):
    """64, 64, pool, 128, 128, pool; fc 256, 256, output."""

    stages = (64, 128)


@register("conv6")
class Conv6(_PaperConvNet):
    """64, 64, pool, 128, 128, pool, 256, 256, pool; fc 256, 256, output."""

    stages = (64, 128, 256)
