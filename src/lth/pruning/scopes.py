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

    Ties break by position (as a stable sort's first k), so pruning is deterministic.
    """
    survivors = keep.nonzero().squeeze(1)
    values = scores[survivors]
    new_keep = keep.clone()
    if k <= 0:
        return new_keep
    if k >= len(values) or bool(values.isnan().any()):  # sort puts NaN last, as the highest
        lowest = torch.sort(values, stable=True).indices[:k]
    else:
        # The k lowest without a full sort (SynFlow prunes 100 rounds per level): everything
        # below the k-th smallest value, then the first of those equal to it by position, which
        # is exactly what a stable sort's first k are.
        kth = torch.kthvalue(values, k).values
        below = (values < kth).nonzero().squeeze(1)
        tied = (values == kth).nonzero().squeeze(1)[: k - len(below)]
        lowest = torch.cat([below, tied])
    new_keep[survivors[lowest]] = 0
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


def keep_lowest(candidates: Mask, scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]) -> Mask:
    """In each layer, of `candidates`' survivors keep the `counts[layer]` of *lowest* score: the
    mask a criterion would give if it ranked the other way round, at given per-layer counts (the
    `invert` ablation of Frankle et al., ICLR 2021). Ties break by position, as in pruning."""
    new = {}
    for name, m in candidates.items():
        keep = m.flatten()
        k = int(keep.sum().item()) - counts[name]
        if k < 0:
            raise ValueError(f"layer {name!r} has {int(keep.sum())} candidates, fewer than {counts[name]}")
        new[name] = _prune_lowest(-_flat_scores(scores, candidates, name), keep, k).view_as(m)
    return Mask(new)


SCOPES: dict[str, Scope] = {"layerwise": layerwise, "global": global_pool}

# Which layers share a count under each scope: every layer its own, or one pool of all.
GROUPS: dict[str, Callable[[list[str]], list[list[str]]]] = {
    "layerwise": lambda layers: [[name] for name in layers],
    "global": lambda layers: [list(layers)],
}


def stepper(
    method: str, start: Mask, rates: Mapping[str, float]
) -> Callable[[Mask, Mapping[str, torch.Tensor], float], Mask]:
    """For criteria that prune in rounds (SynFlow): `step(mask, scores, t)` prunes the survivors
    of `mask` (a descendant of `start`) until a fraction (1 - rate)^t of `start`'s survivors
    remain, counted per layer or per pool as the scope `method` counts. At t = 1 exactly the
    weights one pruning of `start` at `rates` would leave remain, so rounds at t = r/R for
    r = 1..R (an exponential schedule) end on the scope's exact counts.
    """
    pruned = [n for n in start if rates.get(n, 0.0) > 0]
    groups = GROUPS[method](pruned)
    first = {tuple(g): sum(start.remaining()[n] for n in g) for g in groups}

    def target(group: list[str], t: float) -> int:
        rate = rates[group[0]]
        fraction = rate if t >= 1 else round(1 - (1 - rate) ** t, 12)
        return first[tuple(group)] - _count(fraction, first[tuple(group)])

    def step(mask: Mask, scores: Mapping[str, torch.Tensor], t: float) -> Mask:
        now = mask.remaining()
        round_rates: dict[str, float] = {}
        for group in groups:
            left = sum(now[n] for n in group)
            # The rate that prunes exactly `left - target` of `left`: _count rounds it back.
            rate = (left - min(target(group, t), left)) / left if left else 0.0
            round_rates |= dict.fromkeys(group, rate)
        return SCOPES[method](mask, scores, round_rates)

    return step
