"""Masks and the pruning rules that make them; nothing here knows about training."""

from lth.pruning.magnitude import prune_global, prune_layerwise, random_like
from lth.pruning.mask import Mask
from lth.pruning.plan import PruningPlan

__all__ = ["Mask", "PruningPlan", "prune_global", "prune_layerwise", "random_like"]
