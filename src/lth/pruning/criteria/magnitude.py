"""Magnitude: |w|, the criterion of the lottery ticket papers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from lth.pruning.criteria import ScoreContext, Scores, register


def magnitudes(weights: Mapping[str, torch.Tensor], layers: Iterable[str]) -> Scores:
    """|w| of `layers` in float32 (exact for every float weight up to float32)."""
    return {name: weights[name].detach().abs().float() for name in layers}


@register("magnitude", "|w|: the smallest weights go first (the lottery ticket papers)")
def score(ctx: ScoreContext) -> Scores:
    return magnitudes(ctx.weights, ctx.mask)
