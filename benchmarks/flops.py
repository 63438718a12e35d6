"""Counting a training step's FLOPs, and the machine's fp32 matrix-product peak to compare with.

Counting is dense: a mask zeroes weights but the dense matmuls and convolutions still do all
their multiply-adds, so a pruned network costs what the dense one does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from timing import best_of

# Forward (1×) + backward (2×: gradients with respect to the inputs and to the weights).
TRAINING_STEP_FACTOR = 3

LENET_LAYERS = ((784, 300), (300, 100), (100, 10))


def lenet_step_flops(batch: int) -> int:
    """The issue's formula for one LeNet-300-100 training step: 3 × 2 × B × Σ(in·out) ≈ 96 MFLOP at B=60."""
    return TRAINING_STEP_FACTOR * 2 * batch * sum(a * b for a, b in LENET_LAYERS)


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of `model` on `example`, over its convolutions
    and linear layers (what dominates; activations, pooling and biases are not counted).

    Forward hooks read each layer's real output shape, so strides, padding and pooling between
    layers are accounted for without restating the architecture here.
    """
    macs = 0

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(module, nn.modules.conv._ConvNd)
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        macs += output.numel() * per_output

    def linear_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        assert isinstance(module, nn.Linear)
        macs += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def training_step_flops(model: nn.Module, input_shape: tuple[int, ...], batch: int) -> int:
    """FLOPs of one training step at batch `batch`: 2 FLOPs per MAC, × 3 for forward + backward."""
    per_example = count_macs(model, torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    return TRAINING_STEP_FACTOR * 2 * per_example * batch


def matmul_peak(n: int = 2048, repeats: int = 5, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The fp32 matrix-product FLOP/s this process reaches now: the best of `repeats` n×n×n matmuls.

    The ceiling a training step's achieved FLOP/s is compared with, measured in the same run
    with the same threads, rather than a datasheet figure this shared machine never sees.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device)
    b = torch.randn(n, n, generator=generator).to(device)
    out = torch.empty(n, n, device=device)
    seconds = best_of(lambda: torch.mm(a, b, out=out), repeats=repeats, warmup=1)
    flops = 2 * n**3
    return {"n": n, "repeats": repeats, "best_s": seconds, "flops": flops, "flop_per_s": flops / seconds}
