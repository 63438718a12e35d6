"""What the criteria that score the network itself (SNIP, GraSP, SynFlow) share: a private copy
of the network under the current mask, and its weight tensors.

A criterion never touches `ctx.model`: it scores a copy, in evaluation mode (dropout off, batch
norm on its running statistics), as Tanaka et al.'s reference code (Synaptic-Flow, `prune_loop`)
scores every method it compares, so that scoring draws no random numbers and changes no state.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lth.pruning.criteria import ScoreContext


def masked_copy(
    ctx: ScoreContext, dtype: torch.dtype | None = None
) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A copy of `ctx.model` with the pruned weights of `ctx.mask` zeroed, in eval mode, and its
    parameters by name (each requiring a gradient)."""
    if ctx.model is None:
        raise ValueError("this criterion scores the network: the ScoreContext must carry the model")
    model = copy.deepcopy(ctx.model).eval()
    if dtype is not None:
        model = model.to(dtype)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, keep in ctx.mask.items():
            params[name].mul_(keep.to(params[name].device, params[name].dtype))
    for p in params.values():
        p.requires_grad_(True)
    return model, params


def weight_names(params: dict[str, nn.Parameter]) -> list[str]:
    """The weights of every conv and linear layer (tensors of two or more dimensions): what
    GraSP's reference code differentiates, pruned or not."""
    return [name for name, p in params.items() if p.dim() >= 2]
