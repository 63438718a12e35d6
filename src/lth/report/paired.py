"""Runs set against the first, trial by trial.

Two runs of the same network and data with the same `lottery.seed` start each trial from the
same θ0 and draw the same batches, so what differs between their trial t's tickets is the one
change between their configs (Strategy 1 against 2, iterative against one-shot, a criterion):
the noise of different seeds, which a comparison of means carries, cancels. `lth report A B`
therefore sets each later run's IMP tickets beside the first run's, level by level, over the
trials both hold, and counts where the later run is behind, per trial as well as on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lth.lottery import variants
from lth.report.compare import flatten
from lth.report.load import RunData

_SAME = ("model.", "data.", "lottery.seed")  # what must agree for trial t to start alike in both
_PM_TOLERANCE = 0.05  # points of Pm: a level pairs with the other run's level of the same Pm


@dataclass
class Paired:
    """Run `other`'s IMP tickets against run `base`'s, over the trials both hold."""

    base: str  # run labels
    other: str
    # Per pruned level: level, percent_remaining, base_accuracy, other_accuracy (early-stop test,
    # fractions), difference (points, other − base), base_iteration, other_iteration (early stop);
    # means over `trials`.
    levels: pd.DataFrame
    behind_per_trial: dict[int, tuple[int, int]]  # trial → (levels where `other` is less accurate, levels)
    # Trials that the two runs trained with different engines (`environment.signature`: another
    # CPU, GPU or build): the same θ0 and batches, but not the same arithmetic.
    engines_differ: list[int] = field(default_factory=list)

    @property
    def trials(self) -> list[int]:
        """The trials both runs hold."""
        return sorted(self.behind_per_trial)

    def sentences(self) -> list[str]:
        levels, n = self.levels, len(self.levels)
        behind = int((levels.difference < 0).sum())
        later = int((levels.other_iteration > levels.base_iteration).sum())
        sparsest = levels.loc[levels.percent_remaining.idxmin()]
        trials = ("trials " if len(self.trials) > 1 else "trial ") + ", ".join(map(str, self.trials))
        out = [
            f"{self.other} against {self.base}, trial by trial ({trials}: the same θ0 and "
            "batches in both): its tickets' early-stop test accuracy is lower at "
            f"{behind} of {n} pruned levels, {levels.difference.mean():+.2f} points on average "
            f"(at Pm {sparsest.percent_remaining:.1f}%: {100 * sparsest.other_accuracy:.2f}% against "
            f"{100 * sparsest.base_accuracy:.2f}%).",
            f"It early-stops later at {later} of {n} pruned levels (mean iteration "
            f"{levels.other_iteration.mean():,.0f} against {levels.base_iteration.mean():,.0f}).",
        ]
        if len(self.trials) > 1:
            each = ", ".join(f"{b} of {m} in trial {t}" for t, (b, m) in self.behind_per_trial.items())
            out.append(f"Levels where it is less accurate, trial by trial: {each}.")
        if self.engines_differ:
            apart = ("Trials " if len(self.engines_differ) > 1 else "Trial ") + ", ".join(
                map(str, self.engines_differ)
            )
            out.append(
                f"{apart} trained on different engines in the two runs (see each run's engines): the "
                "same θ0 and batches but not the same arithmetic, so there the differences carry the "
                "engines' rounding as well as the change between the configs."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "other": self.other,
            "trials": self.trials,
            "levels": self.levels.to_dict(orient="records"),
            "behind_per_trial": {
                t: {"behind": behind, "levels": n} for t, (behind, n) in self.behind_per_trial.items()
            },
            "engines_differ": self.engines_differ,
            "sentences": self.sentences(),
        }


def pair(runs: Sequence[RunData]) -> list[Paired]:
    """Each later run against the first, where they can be paired (same network, data and seed,
    trials and pruned levels in common)."""
    if len(runs) < 2:
        return []
    base = runs[0]
    return [p for other in runs[1:] if (p := _pair(base, other)) is not None]


def _pair(base: RunData, other: RunData) -> Paired | None:
    a, b = flatten(base.config), flatten(other.config)
    if any(a.get(k) != b.get(k) for k in {*a, *b} if k.startswith(_SAME)):
        return None
    columns = ["trial", "level", "percent_remaining", "early_stop_test_accuracy", "early_stop_iteration"]
    tickets = [
        run.summary.loc[(run.summary.variant == variants.TICKET) & (run.summary.level > 0), columns]
        for run in (base, other)
    ]
    both = tickets[0].merge(tickets[1], on=["trial", "level"], suffixes=("_base", "_other"))
    both = both[(both.percent_remaining_base - both.percent_remaining_other).abs() <= _PM_TOLERANCE]
    if both.empty:
        return None
    both = both.assign(
        difference=100 * (both.early_stop_test_accuracy_other - both.early_stop_test_accuracy_base)
    )
    levels = (
        both.groupby("level")
        .agg(
            percent_remaining=("percent_remaining_base", "mean"),
            base_accuracy=("early_stop_test_accuracy_base", "mean"),
            other_accuracy=("early_stop_test_accuracy_other", "mean"),
            difference=("difference", "mean"),
            base_iteration=("early_stop_iteration_base", "mean"),
            other_iteration=("early_stop_iteration_other", "mean"),
        )
        .reset_index()
    )
    behind = {int(t): (int((g.difference < 0).sum()), len(g)) for t, g in both.groupby("trial")}
    differ = [t for t in behind if base.trial_engines.get(t) != other.trial_engines.get(t)]
    return Paired(base.label, other.label, levels, behind, differ)
