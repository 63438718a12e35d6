"""Headline findings of one run, computed from its summary the way the paper states them.

All comparisons are against the dense network (IMP level 0) and use early-stop metrics: the test
accuracy at the iteration of minimum validation loss, and that iteration. Each trial's level is
set against that trial's own dense network, then the differences (accuracy gain, in points) and
ratios (speed-up: dense early-stop iteration over the level's) are averaged over trials. For a
complete run the gain equals the difference of the means; for a partial run it never compares one
trial's ticket with another trial's dense network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lth.lottery import variants

# Accuracies are counts over a test set, averaged: equal means can differ in the last bits.
_EPS = 1e-9


@dataclass
class Findings:
    trials: int = 0  # trials with a dense level
    dense_accuracy: float | None = None  # mean early-stop test accuracy of level 0, a fraction
    dense_iteration: float | None = None  # mean early-stop iteration of level 0
    dense_metrics: dict[str, float] = field(default_factory=dict)  # level 0's mean of each accuracy
    matches_dense_down_to: float | None = None  # smallest Pm (%) whose accuracy is ≥ dense's
    matches_dense_level: int | None = None
    short_of_dense_above: list[float] = field(default_factory=list)  # larger Pms that fall short
    max_speedup: float | None = None  # dense early-stop iteration / the level's, mean over trials
    max_speedup_pm: float | None = None
    max_speedup_level: int | None = None
    max_gain: float | None = None  # early-stop test accuracy minus dense's, in points
    max_gain_pm: float | None = None
    max_gain_level: int | None = None
    iterations: int | None = None  # training budget per level, when known
    stopped_at_end: int = 0  # results whose early stop is the last evaluation
    results: int = 0
    # Per IMP level: level, percent_remaining, accuracy, gain (points), speedup.
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Per pruned level: level, percent_remaining, and for each control C present:
    # imp_minus_C (points of early-stop test accuracy) and C_over_imp_iteration (how much later C stops).
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        scalars = {k: v for k, v in self.__dict__.items() if not isinstance(v, pd.DataFrame)}
        return {
            **scalars,
            "levels": self.levels.to_dict(orient="records"),
            "controls": self.controls.to_dict(orient="records"),
        }

    def sentences(self) -> list[str]:
        """The findings as short sentences, for the terminal and the page."""
        if self.dense_accuracy is None:
            return ["No dense level (IMP level 0) is stored yet, so nothing can be compared with it."]
        out = [
            f"Dense network (level 0): early-stop test accuracy {100 * self.dense_accuracy:.2f}% "
            f"at iteration {self.dense_iteration:.0f} (mean over {self.trials} trial{_s(self.trials)})."
        ]
        if self.levels.empty or len(self.levels) < 2:
            return [*out, "No pruned level is stored yet."]
        if self.matches_dense_down_to is None:
            out.append("No pruned IMP level reaches the dense network's early-stop test accuracy.")
        else:
            line = (
                f"IMP's early-stop test accuracy is at least the dense network's down to "
                f"Pm {self.matches_dense_down_to:.1f}% (level {self.matches_dense_level})"
            )
            if self.short_of_dense_above:
                line += (
                    " (though below it at Pm "
                    + ", ".join(f"{p:.1f}%" for p in self.short_of_dense_above)
                    + ")"
                )
            out.append(line + ".")
        if self.max_speedup is not None:
            where = f"Pm {self.max_speedup_pm:.1f}% (level {self.max_speedup_level})"
            if self.max_speedup > 1 + _EPS:
                sooner = 100 * (1 - 1 / self.max_speedup)
                out.append(
                    f"Largest early-stop speed-up: {self.max_speedup:.2f}× ({sooner:.0f}% sooner) at {where}."
                )
            else:
                out.append(
                    f"No pruned level stops earlier than dense: the best is {self.max_speedup:.2f}× "
                    f"at {where}."
                )
        if self.max_gain is not None:
            where = f"Pm {self.max_gain_pm:.1f}% (level {self.max_gain_level})"
            if self.max_gain > _EPS:
                out.append(f"Largest accuracy gain over dense: {self.max_gain:+.2f} points at {where}.")
            else:
                out.append(
                    f"No pruned level beats dense: the closest is {self.max_gain:+.2f} points at {where}."
                )
        if self.iterations and self.stopped_at_end > self.results / 2:
            out.append(
                f"Caution: {self.stopped_at_end} of {self.results} results early-stop at the last evaluation "
                f"(iteration {self.iterations}): validation loss was still falling, so training is too short "
                "for early-stop iterations and speed-ups to mean much."
            )
        for control in variants.controls():
            column = f"imp_minus_{control}"
            if column in self.controls:
                diffs = ", ".join(
                    f"{pm:.1f}% {d:+.2f}"
                    for pm, d in zip(self.controls.percent_remaining, self.controls[column], strict=True)
                    if not pd.isna(d)
                )
                out.append(f"IMP minus {control} (points, by Pm): {diffs}.")
        return out


def compute_findings(
    summary: pd.DataFrame, iterations: int | None = None, pm: str = "percent_remaining"
) -> Findings:
    """The headline findings; `iterations` (the training budget per level) lets them say when
    early stopping only ever picked the last evaluation, i.e. training was too short to tell.

    `pm` is the summary column Pm is read from: the pruned layers' (the default, as in the
    figures) or all weights' (`percent_remaining_all`, the paper's). Every Pm in the findings,
    though named `percent_remaining`, is then that one."""
    summary = summary.assign(percent_remaining=summary[pm])
    imp = summary[summary.variant == variants.TICKET]
    dense = imp[imp.level == 0]
    if dense.empty:
        return Findings()
    dense_by_trial = dense.groupby("trial")[["early_stop_test_accuracy", "early_stop_iteration"]].mean()
    levels = _per_level(imp, dense_by_trial)
    found = Findings(
        trials=int(dense.trial.nunique()),
        dense_accuracy=float(dense.early_stop_test_accuracy.mean()),
        dense_iteration=float(dense.early_stop_iteration.mean()),
        dense_metrics={
            m: float(dense[m].mean())
            for m in ("early_stop_test_accuracy", "early_stop_val_accuracy", "final_test_accuracy")
            if m in dense
        },
        levels=levels,
        controls=_controls(summary, imp),
    )
    if iterations:
        found.iterations = iterations
        found.stopped_at_end = int((summary.early_stop_iteration >= iterations).sum())
        found.results = len(summary)
    pruned = levels[levels.level > 0]
    if pruned.empty:
        return found

    matching = pruned[pruned.gain >= -_EPS]
    if not matching.empty:
        best = matching.loc[matching.percent_remaining.idxmin()]
        found.matches_dense_down_to, found.matches_dense_level = (
            float(best.percent_remaining),
            int(best.level),
        )
        # The paper's "down to" reads as every level above matching too: say where that fails.
        short = pruned[(pruned.percent_remaining > best.percent_remaining) & (pruned.gain < -_EPS)]
        found.short_of_dense_above = [float(p) for p in short.percent_remaining]

    speedups = pruned.dropna(subset=["speedup"])
    if not speedups.empty:
        best = speedups.loc[speedups.speedup.idxmax()]
        found.max_speedup, found.max_speedup_pm = float(best.speedup), float(best.percent_remaining)
        found.max_speedup_level = int(best.level)

    best = pruned.loc[pruned.gain.idxmax()]
    found.max_gain, found.max_gain_pm, found.max_gain_level = (
        float(best.gain),
        float(best.percent_remaining),
        int(best.level),
    )
    return found


def _per_level(imp: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
    """IMP per level: mean Pm and accuracy, and against dense, trial by trial then averaged:
    the gain (points of early-stop test accuracy) and the speed-up (dense early-stop iteration
    over the level's). Pairing by trial keeps a partial run from comparing unlike trials."""
    rows = []
    for level, group in imp.groupby("level", sort=True):
        paired = group[group.trial.isin(dense.index)]
        dense_acc = paired.trial.map(dense.early_stop_test_accuracy)
        rows.append(
            {
                "level": int(level),
                "percent_remaining": float(group.percent_remaining.mean()),
                "accuracy": float(group.early_stop_test_accuracy.mean()),
                "gain": float(100 * (paired.early_stop_test_accuracy - dense_acc).mean()),
                "speedup": _mean_ratio(
                    paired.trial.map(dense.early_stop_iteration), paired.early_stop_iteration
                ),
            }
        )
    return pd.DataFrame(rows, columns=["level", "percent_remaining", "accuracy", "gain", "speedup"])


def _controls(summary: pd.DataFrame, imp: pd.DataFrame) -> pd.DataFrame:
    """Per pruned level, IMP against each control run at that level, trial by trial."""
    imp = imp[imp.level > 0]
    table = imp.groupby("level").percent_remaining.mean().rename("percent_remaining").to_frame()
    for control in variants.controls():
        other = summary[(summary.variant == control) & (summary.level > 0)]
        if other.empty:
            continue
        # Paired by trial, so a partial run compares only trials that have both.
        paired = imp.merge(other, on=["trial", "level"], suffixes=("", "_c"))
        paired["ratio"] = paired.early_stop_iteration_c / paired.early_stop_iteration.where(
            paired.early_stop_iteration > 0
        )
        by_level = paired.groupby("level")
        table[f"imp_minus_{control}"] = 100 * (
            by_level.early_stop_test_accuracy.mean() - by_level.early_stop_test_accuracy_c.mean()
        )
        table[f"{control}_over_imp_iteration"] = by_level.ratio.mean()
    return table.reset_index()


def _mean_ratio(numerator: pd.Series, denominator: pd.Series) -> float:
    """Mean of per-trial ratios; a trial that stopped at iteration 0 has no ratio and is left out."""
    ratios = [n / d for n, d in zip(numerator, denominator, strict=True) if d > 0 and not pd.isna(n)]
    return float(sum(ratios) / len(ratios)) if ratios else math.nan


def _s(n: int) -> str:
    return "" if n == 1 else "s"
