"""A run's instability results (docs/design.md, "Instability"), read from the store and set
beside the claims of Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis" (ICML 2020), which `paper.toml` holds under `[[stability]]`.

What is read: instability.csv (a lottery run's `lottery.instability`), instability/rewind.csv
(`lth instability`), and, for the path figures, each measurement's instability.json. A run
without them has no stability section; a missing or unreadable path file is a note, not an error.

A network is *stable* where its instability (the test-error barrier, a fraction) is below the
experiment's `threshold`, the paper's 2%. Claims are checked on means over trials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lth import layout
from lth.lottery import variants
from lth.lottery.variants import TICKET
from lth.report import paper as published
from lth.report.compare import flatten
from lth.report.findings import Findings
from lth.report.load import RunData

STABLE_BELOW = 0.02  # the paper's line between stable and unstable, where paper.toml gives none


@dataclass
class Stability:
    """One run's instability results: per-level measurements and the rewind sweep's."""

    levels: pd.DataFrame  # instability.csv: INSTABILITY_COLUMNS, one row per (trial, variant, level)
    rewinds: (
        pd.DataFrame
    )  # instability/rewind.csv: the same columns, variant imp, one row per (trial, level, k)
    checks: list[published.Check] = field(default_factory=list)
    experiment: dict[str, Any] | None = None  # the [[stability]] entry of paper.toml the run matches

    @property
    def threshold(self) -> float:
        return (self.experiment or {}).get("threshold", STABLE_BELOW)

    def by_level(self) -> pd.DataFrame:
        """Per variant and level: trials, mean Pm, and mean / min / max of each measured column."""
        return _summarise(self.levels, ["variant", "level"])

    def by_rewind(self) -> pd.DataFrame:
        """Per level and rewind iteration k, the same as `by_level`."""
        return _summarise(self.rewinds, ["level", "rewind_iteration"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "levels": self.by_level().to_dict(orient="records"),
            "rewinds": self.by_rewind().to_dict(orient="records"),
            "checks": [c.__dict__ for c in self.checks],
        }


def _summarise(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame()
    named: dict[str, tuple[str, str]] = {
        "trials": ("trial", "nunique"),
        "percent_remaining": ("percent_remaining", "mean"),
    }
    for column in ("instability", "instability_train", "endpoint_test_error"):
        for stat in ("mean", "min", "max"):
            named[f"{column}_{stat}"] = (column, stat)
    table = rows.groupby(keys, sort=False).agg(**named).reset_index()
    if "variant" in keys:
        order = {v: i for i, v in enumerate(variants.reported())}
        table = table.assign(_rank=table.variant.map(order).fillna(len(order)))
        return table.sort_values(["_rank", "level"]).drop(columns="_rank").reset_index(drop=True)
    return table.sort_values(keys).reset_index(drop=True)


def read_stability(run: RunData, findings: Findings) -> Stability | None:
    """The run's instability results and their checks against the paper, or None if it has none."""
    levels = _read_csv(run, run.path / layout.INSTABILITY_CSV)
    rewinds = _read_csv(run, run.path / layout.INSTABILITY_DIR / layout.REWIND_CSV)
    if levels.empty and rewinds.empty:
        return None
    stability = Stability(levels, rewinds, experiment=match(run))
    stability.checks = check_claims(stability, findings)
    return stability


def check_claims(stability: Stability, findings: Findings) -> list[published.Check]:
    """Each claim of the run's `[[stability]]` experiment beside its numbers (none if it has none);
    `findings` (the run's, on summary.csv) say which IMP levels match the dense network."""
    claims = (stability.experiment or {}).get("claim", [])
    return [_CHECKS[claim["kind"]](claim, stability, findings) for claim in claims]


def _read_csv(run: RunData, path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=layout.INSTABILITY_COLUMNS)
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
        run.notes.append(f"{run.within(path)} is unreadable: its instability results are left out")
        return pd.DataFrame(columns=layout.INSTABILITY_COLUMNS)


def match(run: RunData) -> dict[str, Any] | None:
    """The `[[stability]]` experiment of paper.toml whose `match` the run's config has."""
    flat = flatten(run.config)
    for experiment in published.stability_experiments():
        if all(published._same(flat.get(k), v) for k, v in experiment["match"].items()):
            return experiment
    return None


# --- error paths, for figures -------------------------------------------------------------------


def level_path(run: RunData, trial: int, variant: str, level: int) -> dict[str, Any] | None:
    """instability.json of a (trial, variant, level) that lottery.instability measured."""
    return _path_file(run, run.level_dir(trial, variant, level) / layout.INSTABILITY)


def rewind_path(run: RunData, trial: int, level: int, k: int) -> dict[str, Any] | None:
    """instability.json of the rewind sweep's (trial, level, k): in its own folder, or, where the
    start point was a training of the lottery run, in that level's directory."""
    own = layout.rewind_point_dir(run.path, trial, level, k) / layout.INSTABILITY
    if own.exists():
        return _path_file(run, own)
    record = level_path(run, trial, TICKET, level)
    return record if record is not None and record.get("rewind_iteration") == k else None


def _path_file(run: RunData, path: Path) -> dict[str, Any] | None:
    if not path.exists():
        run.notes.append(f"{run.within(path)} is missing: left out of the error-path figure")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        run.notes.append(f"{run.within(path)} is unreadable: left out of the error-path figure")
        return None


# --- the paper's claims, one function per kind -----------------------------------------------------


def _ticket_at(s: Stability, k: int) -> pd.DataFrame:
    """The ticket's (level 0: the dense network's) measurements whose copies start at iteration
    k, from both tables, a point they both list counted once; with mean Pm and instability per level."""
    rows = pd.concat([s.levels, s.rewinds])
    rows = rows[(rows.rewind_iteration == k) & (rows.variant == TICKET)]
    rows = rows.drop_duplicates(subset=["trial", "level"])
    named = {"percent_remaining": ("percent_remaining", "mean"), "instability": ("instability", "mean")}
    return rows.groupby("level").agg(trials=("trial", "nunique"), **named).reset_index()


def _stable_at(claim: dict[str, Any], s: Stability, f: Findings) -> published.Check:
    """The network at `level`, from iteration `rewind`, is stable."""
    level, k, threshold = claim.get("level", 0), claim.get("rewind", 0), s.threshold
    paper = f"< {100 * threshold:g}% at level {level}, k = {k}"
    rows = _ticket_at(s, k)
    rows = rows[rows.level == level]
    if rows.empty:
        return _check(claim, paper, f"not measured at level {level}, k = {k}", published.NO_DATA)
    value, trials = float(rows.instability.iloc[0]), int(rows.trials.iloc[0])
    ours = f"{100 * value:.2f}% (mean of {trials} trial{'s' * (trials != 1)})"
    return _check(claim, paper, ours, published.HOLDS if value < threshold else published.FAILS)


def _matching_stable(claim: dict[str, Any], s: Stability, f: Findings) -> published.Check:
    """Every IMP level measured from iteration `rewind` whose accuracy matches the dense
    network's (the run's findings: mean early-stop test accuracy) is stable."""
    threshold, k = s.threshold, claim.get("rewind", 0)
    paper = f"stable (< {100 * threshold:g}%) wherever IMP matches dense, k = {k}"
    imp = _ticket_at(s, k)
    imp = imp[imp.level > 0]
    if imp.empty or f.levels.empty:
        return _check(claim, paper, f"no pruned IMP level measured at k = {k}", published.NO_DATA)
    gains = f.levels.set_index("level").gain
    matching = imp[imp.level.map(gains).fillna(-1) >= -1e-9]
    if matching.empty:
        return _check(claim, paper, "no measured IMP level matches the dense accuracy", published.NO_DATA)
    listed = ", ".join(
        f"Pm {p:.1f}%: {100 * v:.2f}%"
        for p, v in zip(matching.percent_remaining, matching.instability, strict=True)
    )
    unstable = matching[matching.instability >= threshold]
    if not unstable.empty:
        return _check(claim, paper, f"unstable where it matches ({listed})", published.FAILS)
    return _check(claim, paper, f"stable at every matching level ({listed})", published.HOLDS)


def _controls_unstable(claim: dict[str, Any], s: Stability, f: Findings) -> published.Check:
    """Each control becomes unstable as sparsity grows: at the sparsest measured level it is
    unstable and above its instability at the densest measured pruned level. Where it is still
    stable there, the claim is not reached above Pm `pm` (the sparsity the paper shows) and
    does not hold at or below it."""
    threshold, pm = s.threshold, claim.get("pm", 0.0)
    paper = f"unstable (≥ {100 * threshold:g}%) by Pm {pm:g}%"
    table = s.by_level()
    controls = [c for c in variants.controls() if not table.empty and c in set(table.variant)]
    pruned = {
        c: table[(table.variant == c) & (table.level > 0)].sort_values("percent_remaining") for c in controls
    }
    pruned = {c: rows for c, rows in pruned.items() if not rows.empty}
    if not pruned:
        return _check(claim, paper, "no control measured at a pruned level", published.NO_DATA)
    parts, verdicts = [], []
    for control, rows in pruned.items():
        sparsest, densest = rows.iloc[0], rows.iloc[-1]
        parts.append(
            f"{control} {100 * densest.instability_mean:.2f}% at Pm {densest.percent_remaining:.1f}% → "
            f"{100 * sparsest.instability_mean:.2f}% at Pm {sparsest.percent_remaining:.1f}%"
        )
        grows = len(rows) == 1 or sparsest.instability_mean > densest.instability_mean
        if sparsest.instability_mean >= threshold and grows:
            verdicts.append(published.HOLDS)
        elif sparsest.percent_remaining > pm * published.PM_TOLERANCE:
            verdicts.append(published.NOT_REACHED)
        else:
            verdicts.append(published.FAILS)
    for verdict in (published.FAILS, published.NOT_REACHED):
        if verdict in verdicts:
            return _check(claim, paper, "; ".join(parts), verdict)
    return _check(claim, paper, "; ".join(parts), published.HOLDS)


def _check(claim: dict[str, Any], paper: str, ours: str, verdict: str) -> published.Check:
    return published.Check(
        claim["text"], claim.get("source", ""), paper, ours, verdict, claim.get("pm_counts", "")
    )


_CHECKS = {
    "stable_at": _stable_at,
    "matching_stable": _matching_stable,
    "controls_unstable": _controls_unstable,
}
