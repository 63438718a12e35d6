"""The table of variants: what a level trains and reports, declared once.

A *variant* is one training of a pruned level: where its start weights come from, which mask
it trains under, the iteration (and learning-rate schedule position) it starts at, the salt that
seeds its own random draws, and whether the next level's mask comes from it. The runner (what a
level trains, the planned iterations), config validation, `lth sweep --status`/`--dry-run`, the
findings and the figures all read this table; none of them names a variant.

Adding a variant is one `register(Variant(...))` call, in this file or in a module of your own
imported before the run (see docs/design.md, "Variants"). Level 0, the dense network, is
not a variant: it is trained once per trial and stored under `imp`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lth.errors import ConfigError
from lth.layout import TICKET  # the ticket: everything else is compared with it
from lth.pruning import Mask, random_like
from lth.pruning.criteria import Scores
from lth.pruning.scopes import keep_lowest

if TYPE_CHECKING:
    from lth.config import Config

Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LevelContext:
    """What a variant's rules see at one (trial, level): the level's mask and where weights live.

    The weight sources are functions, called only when the variant is trained (a stored level is
    read back, not recomputed)."""

    trial: int
    seed: int  # the trial's seed
    level: int
    mask: Mask  # the level's mask, found by the strategy from the level before
    own_seed: int  # the variant's own seed for this level: derive_seed(seed, variant.salt, level)
    theta0: Callable[[], Weights]  # the trial's initial weights
    theta_k: Callable[[], Weights]  # its weights at the rewind iteration k (θ0 when k = 0)
    fresh: Callable[[int], Weights]  # a fresh initialisation under the given seed
    # A variant's final weights at the level before (level 0: dense); only those `read_by_next`
    # names, as the next level waits for nothing else.
    trained: Callable[[str], Weights]
    retrain: Retrain  # how the ticket is retrained after pruning (`lottery.retrain`)
    # The mask the level's mask was pruned from and the criterion's scores that chose it,
    # computed again when called (as `invert` does).
    scores: Callable[[], tuple[Mask, Scores]]


@dataclass(frozen=True)
class Retrain:
    """How a pruned network is retrained (Renda, Frankle & Carbin, ICLR 2020): its start weights,
    and whether it runs the learning-rate schedule from iteration k or holds its final rate. The
    ticket and every variant that `retrains` start this way; each is its own IMP loop, since the
    next mask comes from the ticket's own retrained weights."""

    name: str
    description: str
    weights: Callable[[LevelContext], Weights]
    final_lr: bool = False  # train at the schedule's last learning rate throughout (fine-tuning)


RETRAIN: dict[str, Retrain] = {
    r.name: r
    for r in (
        Retrain(
            "weights",
            "weight rewinding: survivors reset to θk, the schedule replayed from k (the 2019 paper: k = 0)",
            weights=lambda ctx: ctx.theta_k(),
        ),
        Retrain(
            "lr",
            "learning-rate rewinding: survivors keep their trained weights; the schedule replayed from k",
            weights=lambda ctx: ctx.trained(TICKET),
        ),
        Retrain(
            "finetune",
            "fine-tuning: survivors keep their trained weights and train T - k iterations at the final rate",
            weights=lambda ctx: ctx.trained(TICKET),
            final_lr=True,
        ),
    )
}


def retrained(ctx: LevelContext) -> Weights:
    """The start weights of the ticket, under the run's retraining rule."""
    return ctx.retrain.weights(ctx)


@dataclass(frozen=True)
class Variant:
    """One kind of training of a pruned level. See the module docstring."""

    name: str
    description: str  # one line, for `lth variants`
    legend: str  # what the figures call it, after its name: "imp (winning ticket)"
    weights: Callable[[LevelContext], Weights]  # its start weights, before the mask
    mask: Callable[[LevelContext], Mask]  # the mask it trains under
    from_rewind: bool  # starts at the rewind iteration k (schedule from k), else at iteration 0
    salt: str  # seeds its own random draws (a fresh init, a random mask) with derive_seed
    # Trains under the run's retraining rule like the ticket (`lottery.retrain`): fine-tuning holds
    # the final learning rate for it too. Others run the configured schedule.
    retrains: bool = False
    next_mask: bool = False  # the next level's mask comes from its trained weights (see mask_source)
    control: bool = True  # set beside the ticket (imp) in the findings and figures
    internal: bool = False  # trained when `applies` says so; never listed in lottery.variants
    applies: Callable[[Config, int], bool] = lambda config, level: True  # (config, level ≥ 1)
    aliases: tuple[str, ...] = ()  # other names `lottery.variants` accepts for it (read as `name`)


def level_mask(ctx: LevelContext) -> Mask:
    return ctx.mask


def random_mask(ctx: LevelContext) -> Mask:
    """A random mask with the level mask's count in every layer."""
    return random_like(ctx.mask, torch.Generator().manual_seed(ctx.own_seed))


def inverted_mask(ctx: LevelContext) -> Mask:
    """The lowest-scored weights in place of the highest: of the weights the level's mask was
    chosen from, in each layer the level mask's count of those the criterion ranks lowest."""
    candidates, scores = ctx.scores()
    return keep_lowest(candidates, scores, ctx.mask.remaining())


_TABLE: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add `variant` to the table (after those already there: the table's order is the report's)."""
    if variant.name in _TABLE:
        raise ValueError(f"a variant named {variant.name!r} is already registered")
    _TABLE[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove a variant (for tests that register a throwaway one)."""
    del _TABLE[name]


def table() -> list[Variant]:
    return list(_TABLE.values())


def selectable() -> list[str]:
    """The names `lottery.variants` may list."""
    return [v.name for v in _TABLE.values() if not v.internal]


def controls() -> list[str]:
    """The variants set beside the ticket, in the table's order."""
    return [v.name for v in _TABLE.values() if v.control]


def reported() -> list[str]:
    """The variants a report shows, in the table's order (the ticket first)."""
    return [v.name for v in _TABLE.values() if not v.internal]


def trained_at(config: Config, level: int) -> list[Variant]:
    """The variants a pruned level (≥ 1) of `config` trains, in the table's order: the ticket,
    the chosen controls, and the internal ones the strategy needs."""
    chosen = set(config.lottery.variants) | {TICKET}
    return [v for v in _TABLE.values() if (v.internal or v.name in chosen) and v.applies(config, level)]


def stored_at(config: Config, level: int) -> list[str]:
    """The trainings any level of `config` stores, by variant name: level 0's dense network
    (under the ticket's name), else `trained_at`'s."""
    return [TICKET] if level == 0 else [v.name for v in trained_at(config, level)]


def measured_at(config: Config, level: int) -> list[Variant]:
    """The trainings of `level` whose instability is measured (docs/design.md, "Instability"):
    at the levels `lottery.instability` names, the dense network (level 0, as the ticket) or the
    ticket and its controls; never an internal training (Strategy 2's path)."""
    if level not in config.lottery.instability:
        return []
    if level == 0:
        return [_TABLE[TICKET]]
    return [v for v in trained_at(config, level) if not v.internal]


def read_by_next(config: Config, level: int) -> list[str]:
    """The trainings of `level` that the level after it reads, so waits for: those that declare
    `next_mask` (the ticket, Strategy 2's path), whose trained weights give the next mask and
    are the only ones a `LevelContext.trained` may return; level 0: the dense network. A
    control's training is read by nothing, so the next level need not wait for it."""
    if level == 0:
        return [TICKET]
    return [v.name for v in trained_at(config, level) if v.next_mask]


def mask_source(config: Config, level: int) -> str:
    """The variant whose trained weights at `level` give the next level's mask: the last one in
    the table that declares `next_mask` and trains at that level (`imp` at level 0, the dense
    network): the last of `read_by_next`."""
    return read_by_next(config, level)[-1]


def validate(config: Config) -> None:
    """The config's variants are registered, selectable, and include the ticket; a variant named
    by an alias is renamed to its name here, as the config is read, so nothing else sees aliases."""
    canonical = {alias: v.name for v in _TABLE.values() for alias in v.aliases}
    config.lottery.variants = list(dict.fromkeys(canonical.get(n, n) for n in config.lottery.variants))
    for name in config.lottery.variants:
        if name not in selectable():
            raise ConfigError(f"lottery.variants must be among {', '.join(selectable())}; got {name!r}")
    if TICKET not in config.lottery.variants:
        raise ConfigError("lottery.variants must include 'imp': the controls are defined by its masks")
    if config.lottery.retrain not in RETRAIN:
        raise ConfigError(
            f"lottery.retrain must be one of {', '.join(RETRAIN)}; got {config.lottery.retrain!r}"
        )
    if config.lottery.retrain != "weights" and (
        config.lottery.strategy != "reset" or config.lottery.schedule != "iterative"
    ):
        raise ConfigError(
            f"lottery.retrain {config.lottery.retrain!r} is its own iterative loop: it takes "
            "lottery.strategy 'reset' and lottery.schedule 'iterative'"
        )


# --- the table ------------------------------------------------------------------------------
# The salts are the names the runner used before this table existed: changing one would change
# the random draws of every stored run.

register(
    Variant(
        name=TICKET,
        description="the ticket: the level's mask on θk (θ0 at k = 0; see lottery.retrain), from iteration k",
        legend="winning ticket",
        weights=retrained,
        mask=level_mask,
        from_rewind=True,
        retrains=True,
        salt="imp",
        next_mask=True,
        control=False,
    )
)
register(
    Variant(
        name="path",
        description="Strategy 2's continued training: the pruned network trained on from where the "
        "level before ended; the next mask comes from it",
        legend="continued training",
        weights=lambda ctx: ctx.trained("path"),
        mask=level_mask,
        from_rewind=False,
        salt="path",
        next_mask=True,
        control=False,
        internal=True,
        applies=lambda config, level: config.lottery.strategy == "continue" and level < config.lottery.levels,
    )
)
register(
    Variant(
        name="reinit",
        description="the level's mask on a fresh random initialisation, trained from iteration 0",
        legend="random reinit",
        weights=lambda ctx: ctx.fresh(ctx.own_seed),
        mask=level_mask,
        from_rewind=False,
        salt="reinit",
    )
)
register(
    Variant(
        name="random",
        description="a random mask with the level mask's count in every layer, on the ticket's start "
        "weights, from iteration k (the 'shuffle' ablation of Frankle et al., ICLR 2021)",
        aliases=("shuffle",),
        legend="random sparse",
        weights=retrained,
        mask=random_mask,
        from_rewind=True,
        retrains=True,
        salt="random",
    )
)
register(
    Variant(
        name="invert",
        description="the level mask's count in every layer of the weights the criterion ranks lowest "
        "(of those it chose from), on the ticket's start weights, from iteration k (Frankle et al., "
        "ICLR 2021)",
        legend="inverted scores",
        weights=retrained,
        mask=inverted_mask,
        from_rewind=True,
        retrains=True,
        salt="invert",
    )
)
