"""Seeded initialisation: the θ0 of a trial."""

from __future__ import annotations

import torch
from torch import nn


def glorot_normal_(model: nn.Module) -> None:
    """The paper's initialisation: Gaussian Glorot weights, zero biases, identity batch norm."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.reset_parameters()  # weight 1, bias 0, running stats reset


@torch.no_grad()
def initialize(model: nn.Module, seed: int) -> nn.Module:
    """Give `model` the initial weights for `seed`, without touching the global RNG stream.

    Registered models use their own `init_weights()`; a user's module uses each submodule's
    `reset_parameters()`, PyTorch's default initialisation.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init_weights = getattr(model, "init_weights", None)
        if callable(init_weights):
            init_weights()
        else:
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
    return model
