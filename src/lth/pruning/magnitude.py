"""Magnitude pruning (layer-wise and global) and random pruning with the same counts.

Plain functions: (mask, weights, rates) → new mask. They know nothing of training. Each round
removes a fraction of the *remaining* weights; already-pruned weights stay pruned.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lth.pruning.mask import Mask


def _count(rate: float, remaining: int) -> int:
    """How many of `remaining` weights a round at `rate` prunes (rounded half up)."""
    return int(rate * remaining + 0.5)


def _prune_lowest(scores: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """New flat keep-vector: `keep` with the `k` surviving entries of lowest score removed.

    Ties break by position (stable sort), so pruning is deterministic.
    """
    survivors = keep.nonzero().squeeze(1)
    order = torch.sort(scores[survivors], stable=True).indices
    new_keep = keep.clone()
    new_keep[survivors[order[:k]]] = 0
    return new_keep


def prune_layerwise(mask: Mask, weights: Mapping[str, torch.Tensor], rates: Mapping[str, float]) -> Mask:
    """Prune `rates[layer]` of each layer's remaining weights, lowest magnitude first."""
    new = {}
    for name, m in mask.items():
        keep = m.flatten()
        k = _count(rates.get(name, 0.0), int(keep.sum().item()))
        scores = weights[name].detach().flatten().abs().to(keep.device, torch.float32)
        new[name] = _prune_lowest(scores, keep, k).view_as(m)
    return Mask(new)


def prune_global(mask: Mask, weights: Mapping[str, torch.Tensor], rate: float, layers: list[str]) -> Mask:
    """Prune `rate` of the remaining weights pooled over `layers`, lowest magnitude first."""
    keep = torch.cat([mask[name].flatten() for name in layers])
    scores = torch.cat([weights[name].detach().flatten().abs().float().to(keep.device) for name in layers])
    flat = _prune_lowest(scores, keep, _count(rate, int(keep.sum().item())))
    new = dict(mask.items())
    for name, part in zip(layers, flat.split([mask[name].numel() for name in layers]), strict=True):
        new[name] = part.view_as(mask[name])
    return Mask(new)


def random_like(mask: Mask, generator: torch.Generator) -> Mask:
    """A random mask with exactly `mask`'s number of survivors in each layer."""
    new = {}
    for name, m in mask.items():
        n_keep = int(m.sum().item())
        order = torch.randperm(m.numel(), generator=generator)
        keep = torch.zeros(m.numel())
        keep[order[:n_keep]] = 1
        new[name] = keep.view_as(m).to(m.device)
    return Mask(new)
