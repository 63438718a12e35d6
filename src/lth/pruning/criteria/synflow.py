"""SynFlow: iterative synaptic flow pruning, without data (Tanaka, Kunin, Yamins & Ganguli,
"Pruning neural networks without any data by iteratively conserving synaptic flow", NeurIPS 2020).

Settings, from the paper (Algorithm 1) and its reference code (ganguli-lab/Synaptic-Flow):
every parameter and buffer replaced by its absolute value ("linearised"), an all-ones input of
one example, R = the sum of the outputs, score |θ ⊙ ∂R/∂θ|; **100 rounds** of scoring and pruning
on an **exponential schedule** (after round r of R, a fraction (1 − rate)^(r/R) of the starting
survivors remain). The network is scored in evaluation mode (see `network.py`), and in float64,
since R is a product over layers that overflows float32 in deep networks. No data is used: a
training batch gives only the input's shape.

SynFlow prunes in rounds, while a criterion returns one score per weight: the weights pruned in
round r score r − R − 1 plus up to 0.5 by their score in that round (below every survivor, and
the earlier the lower), the survivors their last round's score. The scope then prunes exactly
the weights the rounds pruned, and `invert` keeps the weights SynFlow drops first.
"""

from __future__ import annotations

import torch

from lth.pruning.criteria import ScoreContext, Scores, register
from lth.pruning.criteria.network import masked_copy

ROUNDS = 100


@register(
    "synflow",
    "|θ ⊙ ∂R/∂θ| of the |θ| network on an all-ones input, 100 rounds (Tanaka et al., NeurIPS 2020); "
    "data-free: a batch gives only the input's shape",
    needs_data=True,  # for the input's shape only
)
def score(ctx: ScoreContext) -> Scores:
    if ctx.step is None or ctx.batches is None:
        raise ValueError("synflow prunes in rounds: score it through PruningPlan.prune")
    model, params = masked_copy(ctx, torch.float64)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.abs_()
    magnitudes = {n: params[n].detach().clone() for n in ctx.mask}
    ones = torch.ones(
        (1, *ctx.batches(1)[0].shape[1:]), dtype=torch.float64, device=magnitudes[next(iter(ctx.mask))].device
    )
    mask, order = ctx.mask, {n: torch.full_like(m, -(ROUNDS + 1.0)) for n, m in ctx.mask.items()}
    for r in range(1, ROUNDS + 1):
        with torch.no_grad():
            for n in mask:
                params[n].copy_(magnitudes[n] * mask[n].to(magnitudes[n]))
        flow = model(ones).sum()
        grads = torch.autograd.grad(flow, [params[n] for n in mask])
        scores = {n: (g * params[n]).detach().abs() for n, g in zip(mask, grads, strict=True)}
        new = ctx.step(mask, scores, r / ROUNDS)
        for n, s in scores.items():
            dropped = (mask[n] > new[n]).to(s.device)
            top = float(s.max()) or 1.0
            order[n] = torch.where(dropped.bool(), (r - ROUNDS - 1) + 0.5 * s / top, order[n].to(s))
        mask = new
    return {
        n: torch.where(mask[n].bool().to(s.device), scores[n], order[n]).float() for n, s in scores.items()
    }
