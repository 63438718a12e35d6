"""LeNet-300-100: the fully connected network of the paper's MNIST experiments."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from lth.models.init import glorot_normal_
from lth.models.registry import register


@register("lenet300")
class LeNet300(nn.Module):
    """784-300-100-10 with ReLU (for MNIST); the input size follows the data's shape."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (300, 100)):
        super().__init__()
        sizes = [math.prod(input_shape), *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.output = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.output(x)

    def init_weights(self) -> None:
        glorot_normal_(self)

    def prunable(self) -> dict[str, str]:
        kinds = {f"hidden.{i}.weight": "fc" for i in range(len(self.hidden))}
        return kinds | {"output.weight": "output"}
