"""Bare matrix products at a fully connected network's shapes: the arithmetic floor of a step
and of an evaluation, on fresh operands and with nothing else (no data, loss, mask or optimiser).

What an engine is measured against: whatever a trainer does beyond these products is overhead
it could in principle remove; the products themselves it cannot, in fp32 and dense.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from lth.training.fused import mlp_layers


def layer_sizes(model: nn.Module) -> list[int] | None:
    """Input and output widths of a fully connected network's layers ([784, 300, 100, 10] for
    LeNet-300-100); None for any other network (its floor is not products alone)."""
    layers = mlp_layers(model)
    if layers is None:
        return None
    return [layers[0].in_features, *(layer.out_features for layer in layers)]


def training_step(batch: int, sizes: list[int]) -> Callable[[], None]:
    """The eight matrix products of one LeNet-shaped step at `batch`: each layer's forward and
    weight gradient, and the input gradients of all but the first layer."""
    x = torch.randn(batch, sizes[0])
    weights = [torch.randn(b, a) for a, b in itertools.pairwise(sizes)]
    g_out = torch.randn(batch, sizes[-1])

    def step() -> None:
        inputs, h = [], x
        for w in weights:
            inputs.append(h)
            h = h @ w.t()
        g = g_out
        for i in reversed(range(len(weights))):
            inputs[i].t() @ g
            if i:
                g = g @ weights[i]

    return step


def evaluation(examples: int, sizes: list[int], batch: int) -> Callable[[], None]:
    """The forward products of evaluating `examples` examples in batches of `batch`."""
    x = torch.randn(min(batch, examples), sizes[0])
    weights = [torch.randn(b, a) for a, b in itertools.pairwise(sizes)]
    batches = [min(batch, examples - start) for start in range(0, examples, batch)]

    def run() -> None:
        for n in batches:
            h = x[:n]
            for w in weights:
                h = h @ w.t()

    return run
