"""Magnitude pruning on weights (layer-wise and global) and random masks with the same counts.

Plain functions: (mask, weights, rates) → new mask, for callers that hold weights and want the
papers' magnitude pruning without a `PruningPlan`. The pruning itself is the magnitude criterion
and a scope (`lth.pruning.scopes`), the same path `PruningPlan.prune` takes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lth.pruning.criteria.magnitude import magnitudes
from lth.pruning.mask import Mask
from lth.pruning.scopes import global_pool, layerwise


def prune_layerwise(mask: Mask, weights: Mapping[str, torch.Tensor], rates: Mapping[str, float]) -> Mask:
    """Prune `rates[layer]` of each layer's remaining weights, lowest magnitude first."""
    return layerwise(mask, magnitudes(weights, mask), rates)


def prune_global(mask: Mask, weights: Mapping[str, torch.Tensor], rate: float, layers: list[str]) -> Mask:
    """Prune `rate` of the remaining weights pooled over `layers`, lowest magnitude first."""
    return global_pool(mask, magnitudes(weights, layers), dict.fromkeys(layers, rate))


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
