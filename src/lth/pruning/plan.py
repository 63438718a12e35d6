"""`PruningPlan`: a pruning config bound to one model's prunable layers."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from lth.config import PruningConfig
from lth.errors import ConfigError
from lth.models import prunable_layers
from lth.pruning import criteria
from lth.pruning.criteria import ScoreContext, Scores
from lth.pruning.mask import Mask
from lth.pruning.scopes import SCOPES, stepper


@dataclass(frozen=True)
class PruningPlan:
    """Which layers are pruned, at what rate per round, by which criterion, and whether layer by
    layer or as one global pool."""

    layer_rates: dict[str, float]  # weight-parameter name → fraction of remaining pruned per round
    method: str  # the scope: "layerwise" or "global"
    criterion: str = "magnitude"  # a name in `lth.pruning.criteria`

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
        criteria.get(config.criterion)  # an unknown name fails here, before anything trains
        rates = {name: config.rates[kind] for name, kind in kinds.items() if kind in config.rates}
        return cls(rates, config.method, config.criterion)

    def dense_mask(self, model: nn.Module) -> Mask:
        return Mask.ones(model, list(self.layer_rates))

    def prune(
        self,
        mask: Mask,
        weights: Mapping[str, torch.Tensor],
        rounds: int = 1,
        context: ScoreContext | None = None,
    ) -> Mask:
        """Prune the survivors of `mask` with the lowest scores under the criterion; `rounds` > 1
        goes straight to where that many rounds would reach (one-shot pruning: a fraction
        1 - (1 - rate)^rounds), scoring once.

        `context` carries what a criterion may score with beyond `weights` (the model, training
        batches, a seed) and must be built on this `mask` and `weights`; without it, criteria
        score from the weights alone with seed 0.
        """
        return SCOPES[self.method](mask, self.score(mask, weights, rounds, context), self.rates(rounds))

    def score(
        self,
        mask: Mask,
        weights: Mapping[str, torch.Tensor],
        rounds: int = 1,
        context: ScoreContext | None = None,
    ) -> Scores:
        """The criterion's scores for `prune` with the same arguments (higher = keep)."""
        criterion = criteria.get(self.criterion)
        if context is None:
            context = ScoreContext(model=None, mask=mask, weights=weights, batches=None, seed=0)
        elif context.mask is not mask or context.weights is not weights:
            raise ValueError("PruningPlan.prune: the context must be built on the mask and weights it prunes")
        if criterion.needs_data and (context.model is None or context.batches is None):
            raise ConfigError(
                f"pruning.criterion {self.criterion!r} scores the network on training batches, but none "
                "were given: pass PruningPlan.prune a ScoreContext with the model and batches, or choose "
                "a criterion that needs no data (see `lth criteria`)"
            )
        step = stepper(self.method, mask, self.rates(rounds))
        return criterion.score(dataclasses.replace(context, step=step))

    def rates(self, rounds: int = 1) -> dict[str, float]:
        """Each layer's fraction of its survivors that `rounds` rounds prune."""
        # Rounded to 12 places: in floating point 1 - (1 - 0.1) is 0.09999999999999998, which
        # made a round at rate 0.1 of 1,555 weights prune 155 rather than the 156 (155.5 rounded
        # half up) that the rate asks for.
        return {name: round(1 - (1 - rate) ** rounds, 12) for name, rate in self.layer_rates.items()}
