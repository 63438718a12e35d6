"""Scopes: scores → mask. Which weights compete with which when the lowest scores are pruned.

`layerwise` prunes each layer at its own rate; `global` pools the named layers and prunes one
rate of the pool, so layers end up as sparse as their scores make them. Both are keyed by
`pruning.method`. Each round removes a fraction of the *remaining* weights: only survivors are
candidates, so a criterion that scores a pruned weight highly cannot bring it back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from lth.pruning.mask import Mask

Scope = Callable[[Mask, Mapping[str, torch.Tensor], Mapping[str, float]], Mask]


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


def _flat_scores(scores: Mapping[str, torch.Tensor], mask: Mask, name: str) -> torch.Tensor:
    """`name`'s scores as a flat float32 vector beside its mask, checked against the mask's shape
    (a criterion that scored another tensor would otherwise prune the wrong weights silently)."""
    if name not in scores:
        raise ValueError(f"the pruning criterion gave no scores for layer {name!r}")
    score = scores[name]
    if score.shape != mask[name].shape:
        raise ValueError(
            f"the pruning criterion scored layer {name!r} with shape {tuple(score.shape)}, "
            f"but the layer has shape {tuple(mask[name].shape)}"
        )
    return score.detach().flatten().to(mask[name].device, torch.float32)


def layerwise(mask: Mask, scores: Mapping[str, torch.Tensor], rates: Mapping[str, float]) -> Mask:
    """Prune `rates[layer]` of each layer's remaining weights, lowest score first; layers without
    a rate are kept whole."""
    new = {}
    for name, m in mask.items():
        keep = m.flatten()
        k = _count(rates.get(name, 0.0), int(keep.sum().item()))
        new[name] = _prune_lowest(_flat_scores(scores, mask, name), keep, k).view_as(m)
    return Mask(new)


def global_pool(mask: Mask, scores: Mapping[str, torch.Tensor], rates: Mapping[str, float]) -> Mask:
    """Prune one rate of the remaining weights pooled over the layers in `rates` (which all share
    that rate), lowest score first; other layers are left alone. Ties break by position in the
    pool, which runs through the layers in the order of `rates`."""
    if len(set(rates.values())) != 1:
        raise ValueError(f"global pruning takes one rate for every pooled layer, got {dict(rates)}")
    layers = list(rates)
    keep = torch.cat([mask[name].flatten() for name in layers])
    pooled = torch.cat([_flat_scores(scores, mask, name) for name in layers])
    flat = _prune_lowest(pooled, keep, _count(rates[layers[0]], int(keep.sum().item())))
    new = dict(mask.items())
    for name, part in zip(layers, flat.split([mask[name].numel() for name in layers]), strict=True):
        new[name] = part.view_as(mask[name])
    return Mask(new)


SCOPES: dict[str, Scope] = {"layerwise": layerwise, "global": global_pool}
