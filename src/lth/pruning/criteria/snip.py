"""SNIP: connection sensitivity |θ ⊙ ∂L/∂θ| at the weights being scored (Lee, Ajanthan & Torr,
"SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019).

Settings, from the paper: the sensitivity of the loss to each connection's mask c at c = 1, which
is g ⊙ θ, taken in absolute value, on **one mini-batch** of training data (here the run's
training batch size; the paper's Algorithm 1 and §4 use one batch). The paper normalises the
scores by their sum; a positive scale changes no ranking, so it is left out. The network is
scored in evaluation mode (see `network.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lth.pruning.criteria import ScoreContext, Scores, register
from lth.pruning.criteria.network import masked_copy

BATCHES = 1  # Lee et al.: a single mini-batch


@register("snip", "|θ ⊙ ∂L/∂θ| on one training batch (Lee et al., ICLR 2019)", needs_data=True)
def score(ctx: ScoreContext) -> Scores:
    assert ctx.batches is not None  # PruningPlan.prune checks needs_data first
    model, params = masked_copy(ctx)
    x, y = ctx.batches(BATCHES)
    layers = list(ctx.mask)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [params[n] for n in layers])
    return {n: (g * params[n]).detach().abs().float() for n, g in zip(layers, grads, strict=True)}
