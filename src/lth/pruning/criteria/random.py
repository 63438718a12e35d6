"""Random: uniform scores, so survivors are pruned at random (a baseline for other criteria).

Unlike the `random` variant's mask (`lth.pruning.random_like`, drawn afresh at each level with the
ticket's per-layer counts), this prunes among the current survivors at the configured rates.
"""

from __future__ import annotations

import torch

from lth.pruning.criteria import ScoreContext, Scores, register


@register("random", "uniform random scores, seeded: survivors pruned at random (a baseline)")
def score(ctx: ScoreContext) -> Scores:
    # Layers in the mask's (sorted) order, so the draw does not depend on how a caller built it.
    generator = torch.Generator().manual_seed(ctx.seed)
    return {name: torch.rand(m.shape, generator=generator) for name, m in ctx.mask.items()}
