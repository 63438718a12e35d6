"""`PruningPlan`: a pruning config bound to one model's prunable layers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from lth.config import PruningConfig
from lth.errors import ConfigError
from lth.models import prunable_layers
from lth.pruning.magnitude import prune_global, prune_layerwise
from lth.pruning.mask import Mask


@dataclass(frozen=True)
class PruningPlan:
    """Which layers are pruned, at what rate per round, layer by layer or as one global pool."""

    layer_rates: dict[str, float]  # weight-parameter name → fraction of remaining pruned per round
    method: str  # "layerwise" or "global"

    @classmethod
    def for_model(cls, model: nn.Module, config: PruningConfig) -> PruningPlan:
        kinds = prunable_layers(model)
        missing = sorted(set(config.rates) - set(kinds.values()))
        if missing:
            have = ", ".join(sorted(set(kinds.values())))
            raise ConfigError(
                f"pruning.rates names layer kind {missing[0]!r}, which this model does not "
                f"have; its prunable kinds are {have}"
            )
        rates = {name: config.rates[kind] for name, kind in kinds.items() if kind in config.rates}
        return cls(rates, config.method)

    def dense_mask(self, model: nn.Module) -> Mask:
        return Mask.ones(model, list(self.layer_rates))

    def prune(self, mask: Mask, weights: Mapping[str, torch.Tensor], rounds: int = 1) -> Mask:
        """Prune by magnitude of `weights`; `rounds` > 1 goes straight to where that many
        rounds would reach (one-shot pruning: a fraction 1 - (1 - rate)^rounds)."""
        # Rounded to 12 places: in floating point 1 - (1 - 0.1) is 0.09999999999999998, which
        # made a round at rate 0.1 of 1,555 weights prune 155 rather than the 156 (155.5 rounded
        # half up) that the rate asks for.
        rates = {name: round(1 - (1 - rate) ** rounds, 12) for name, rate in self.layer_rates.items()}
        if self.method == "global":
            return prune_global(mask, weights, next(iter(rates.values())), list(rates))
        return prune_layerwise(mask, weights, rates)
