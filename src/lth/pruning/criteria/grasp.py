"""GraSP: gradient signal preservation (Wang, Zhang & Grosse, "Picking Winning Tickets Before
Training by Preserving Gradient Flow", ICLR 2020).

The paper scores S(−θ) = −θ ⊙ Hg, with g the loss gradient and H the Hessian at the weights, and
removes the weights of *largest* S: those whose removal reduces gradient flow least (or raises
it). Scores here are "higher = keep", so this criterion returns θ ⊙ Hg = −S.

Settings, from the paper's reference code (alecwangcq/GraSP, `pruner/GraSP.py`): 10 examples per
class, drawn class-balanced from the training set; one pass (`num_iters = 1`); logits divided by
a temperature T = 200 in both the gradient and the Hessian-gradient product; g and Hg over the
weights of every conv and linear layer (pruned by this run or not); Hg by double backpropagation,
∂(gᵀ∇L)/∂θ with g held fixed. The network is scored in evaluation mode (see `network.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lth.pruning.criteria import ScoreContext, Scores, register
from lth.pruning.criteria.network import masked_copy, weight_names

SAMPLES_PER_CLASS = 10
TEMPERATURE = 200.0


def balanced(ctx: ScoreContext, per_class: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` examples of each class in the seeded draw of training batches,
    drawing twice as many batches until every class has them (or the draw is the whole training
    set, and a rare class gives what it has)."""
    assert ctx.batches is not None  # PruningPlan.prune checks needs_data first
    n, drawn = 1, -1
    while True:
        x, y = ctx.batches(n)
        if bool((torch.bincount(y, minlength=classes) >= per_class).all()) or len(x) == drawn:
            picked = torch.cat([(y == c).nonzero().squeeze(1)[:per_class] for c in range(classes)])
            picked = picked.sort().values
            return x[picked], y[picked]
        n, drawn = 2 * n, len(x)


@register(
    "grasp",
    "θ ⊙ Hg: keeps the weights whose removal would cut gradient flow (Wang et al., ICLR 2020)",
    needs_data=True,
)
def score(ctx: ScoreContext) -> Scores:
    model, params = masked_copy(ctx)
    names = weight_names(params)
    weights = [params[n] for n in names]
    assert ctx.batches is not None
    with torch.no_grad():
        classes = model(ctx.batches(1)[0][:1]).shape[1]
    x, y = balanced(ctx, SAMPLES_PER_CLASS, classes)
    g = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), weights)
    grad = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), weights, create_graph=True)
    z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, grad, strict=True))
    hg = dict(zip(names, torch.autograd.grad(z, weights), strict=True))
    return {n: (params[n] * hg[n]).detach().float() for n in ctx.mask}
