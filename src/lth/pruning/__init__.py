"""Masks and the pruning rules that make them: a criterion scores, a scope turns scores into a
mask. Nothing here knows about training."""

from lth.pruning import criteria
from lth.pruning.criteria import ScoreContext
from lth.pruning.magnitude import prune_global, prune_layerwise, random_like
from lth.pruning.mask import Mask
from lth.pruning.plan import PruningPlan

__all__ = [
    "Mask",
    "PruningPlan",
    "ScoreContext",
    "criteria",
    "prune_global",
    "prune_layerwise",
    "random_like",
]
