"""A run against the paper: which published experiment it reproduces, and which claims hold.

The published numbers live in `paper.toml` beside this module, each with its source. A run
matches an experiment when its config has every `match` value (model, data set, schedule,
strategy, …); its other settings are compared with the paper's and listed where they differ,
and a run with fewer training iterations than the paper's is *shortened*: its numbers are set
beside the paper's but are not comparable one-for-one, and the page says so.

A claim about Pm P is checked at the run's IMP level nearest P (in log Pm) if one lies within a
factor `PM_TOLERANCE` of it; a run that stops pruning before P has "not reached" it. Each claim
names the Pm it means (`pm_counts`: "all" weights, as the paper counts them, or the "prunable"
layers') and is checked against that column of the summary, so a ResNet-20 claim at the paper's
11.8% is checked at 11.8% of all weights, not of the pruned convs. A shortened run cannot test
the claims its budget bounds (`BUDGET_BOUND`): they say so rather than fail.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

from lth.config import Config
from lth.report.compare import flatten
from lth.report.findings import Findings, compute_findings

PM_TOLERANCE = 1.25  # a level at Pm within ×/÷ 1.25 of the paper's stands for it
_ROUNDING = 0.05  # the paper prints Pm to one decimal: 3.6 means 3.55 to 3.65

HOLDS, PARTLY, FAILS, NOT_REACHED, NO_DATA = "holds", "partly", "does not hold", "not reached", "no data"
NOT_TESTABLE = "not testable"  # a claim the run's shortened budget cannot test

# The summary column each claim's `pm_counts` names.
PM_COLUMNS = {"all": "percent_remaining_all", "prunable": "percent_remaining"}
PM_WORDS = {"all": "all weights", "prunable": "pruned layers"}
_NO_PM = frozenset({"dense_accuracy"})  # kinds about the dense network alone, at Pm 100%

# Kinds a shortened run cannot test, whatever its numbers, because the budget itself bounds what
# they measure. The accuracy a network reaches rises with training (dense_accuracy, accuracy_at).
# An early-stop iteration can be no later than the budget, and in a short run most levels stop at
# the last evaluation, so speed-ups are capped near 1 (speedup, sooner_in_range; beats_reinit
# claims a speed-up and a gain together). The other kinds set the ticket's accuracy beside
# dense's at the same budget, like with like, and stay checked.
BUDGET_BOUND = frozenset({"dense_accuracy", "accuracy_at", "speedup", "sooner_in_range", "beats_reinit"})


@dataclass
class TrialCheck:
    """One claim checked on one trial alone."""

    trial: int
    ours: str
    verdict: str


@dataclass
class Check:
    """One published claim beside this run's number."""

    text: str  # the claim, in the paper's terms
    source: str  # section and figure
    paper: str  # the published number
    ours: str  # this run's number, with where it was measured
    verdict: str  # holds / partly / does not hold / not reached / no data / not testable
    pm_counts: str = ""  # which Pm the claim means: "all" or "prunable" (none for dense accuracy)
    # Where the run has several trials, the claim checked on each trial alone (`ours` and
    # `verdict` above are of the means): how firm a verdict of the means is.
    per_trial: list[TrialCheck] = field(default_factory=list)


@dataclass
class PaperComparison:
    experiment: str  # its id in paper.toml
    title: str
    source: str
    deviations: list[str] = field(default_factory=list)  # "training.lr: 0.001 (paper: 0.0012)"
    shortened: bool = False
    iterations: int | None = None
    paper_iterations: int | None = None
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "checks": [asdict(c) for c in self.checks]}


@cache
def _paper_toml() -> dict[str, Any]:
    return tomllib.loads(resources.files("lth.report").joinpath("paper.toml").read_text(encoding="utf-8"))


def stability_experiments() -> list[dict[str, Any]]:
    """paper.toml's `[[stability]]` entries: the ICML 2020 paper's claims on instability, which
    `report/stability.py` checks."""
    return _paper_toml().get("stability", [])


@cache
def experiments() -> list[dict[str, Any]]:
    """The published experiments in paper.toml, each claim's `pm_counts` checked."""
    published = _paper_toml()["experiment"]
    for claim in (c for experiment in published for c in experiment.get("claim", [])):
        pm_counts(claim)
    return published


def match_experiment(config: Config) -> dict[str, Any] | None:
    flat = flatten(config)
    for experiment in experiments():
        if all(_same(flat.get(k), v) for k, v in experiment["match"].items()):
            return experiment
    return None


def near_misses(config: Config) -> list[str]:
    """For a run that matches nothing: the experiments on its model and data set, and what differs."""
    flat = flatten(config)
    out = []
    for experiment in experiments():
        match = experiment["match"]
        if not (
            _same(flat.get("model.name"), match["model.name"])
            and _same(flat.get("data.dataset"), match["data.dataset"])
        ):
            continue
        differs = [f"{k}={flat.get(k)} (paper: {v})" for k, v in match.items() if not _same(flat.get(k), v)]
        out.append(f"{experiment['title']}: differs in " + ", ".join(differs))
    return out


def compare(config: Config, summary: pd.DataFrame, iterations: int | None) -> PaperComparison | None:
    """The run (its summary, with both Pm columns) set against the experiment it reproduces, or
    None if it reproduces none."""
    experiment = match_experiment(config)
    if experiment is None:
        return None
    flat = flatten(config)
    result = PaperComparison(
        experiment=experiment["id"], title=experiment["title"], source=experiment["source"]
    )
    for key, paper_value in experiment.get("settings", {}).items():
        if key == "iterations":
            result.iterations, result.paper_iterations = iterations, int(paper_value)
            if iterations is None:
                result.deviations.append(f"training iterations per level unknown (paper: {paper_value:,})")
            elif iterations != paper_value:
                result.deviations.append(
                    f"training iterations per level: {iterations:,} (paper: {paper_value:,})"
                )
                result.shortened = iterations < paper_value
        elif not _same(flat.get(key), paper_value):
            result.deviations.append(f"{key}: {_show(flat.get(key))} (paper: {_show(paper_value)})")
    claims = experiment.get("claim", [])
    result.checks = _check_all(claims, summary, iterations, result.shortened)
    trials = sorted(int(t) for t in summary.trial.unique()) if "trial" in summary else []
    if len(trials) > 1:
        for trial in trials:
            alone = _check_all(claims, summary[summary.trial == trial], iterations, result.shortened)
            for check, one in zip(result.checks, alone, strict=True):
                check.per_trial.append(TrialCheck(trial, one.ours, one.verdict))
    return result


def _check_all(
    claims: list[dict[str, Any]], summary: pd.DataFrame, iterations: int | None, shortened: bool
) -> list[Check]:
    """Every claim checked on `summary` (its trials' means)."""
    findings = {
        counts: compute_findings(summary, iterations, pm=column) for counts, column in PM_COLUMNS.items()
    }
    return [check_claim(claim, findings[pm_counts(claim) or "all"], shortened) for claim in claims]


def pm_counts(claim: dict[str, Any]) -> str:
    """Which Pm a claim means ("all" or "prunable"); "" for a claim about the dense network."""
    if claim["kind"] in _NO_PM:
        return ""
    counts = claim.get("pm_counts")
    if counts not in PM_COLUMNS:
        raise ValueError(f"paper.toml: claim {claim['text']!r} needs pm_counts, one of {sorted(PM_COLUMNS)}")
    return counts


def check_claim(claim: dict[str, Any], findings: Findings, shortened: bool = False) -> Check:
    """Set one claim beside the run's findings, whose Pm must be the one the claim means, and say
    whether it holds; on a `shortened` run, a claim of a `BUDGET_BOUND` kind is not testable."""
    check = _CHECKS[claim["kind"]]
    text, source, counts = claim["text"], claim.get("source", ""), pm_counts(claim)
    if findings.dense_accuracy is None or findings.levels.empty:
        return Check(text, source, _paper_value(claim), "no dense level yet", NO_DATA, counts)
    paper, ours, verdict = check(claim, findings)
    if shortened and claim["kind"] in BUDGET_BOUND:
        verdict = NOT_TESTABLE  # our number stays beside the paper's, for orientation
    return Check(text, source, paper, ours, verdict, counts)


# --- one function per kind of claim ------------------------------------------------------------


def _dense_accuracy(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    paper = f"{claim['value']:.1f}%"
    metric = claim.get("metric", "early_stop_test_accuracy")
    values = f.dense_metrics.get(metric)
    if values is None:
        return paper, f"{metric} not recorded", NO_DATA
    ours = 100 * values
    verdict = HOLDS if abs(ours - claim["value"]) <= claim.get("tolerance", 0.5) else FAILS
    return paper, f"{ours:.2f}% ({_metric_name(metric)})", verdict


def _matches_dense_down_to(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    pm = claim["pm"]
    paper = f"≥ dense down to Pm {pm:g}%"
    pruned = f.levels[(f.levels.level > 0) & (f.levels.percent_remaining >= pm - _ROUNDING)]
    short = pruned[pruned.gain < -1e-9]
    if not short.empty:
        worst = short.loc[short.percent_remaining.idxmax()]
        return paper, f"below dense at Pm {worst.percent_remaining:.1f}% ({_points(worst.gain)} pt)", FAILS
    sparsest = float(f.levels.percent_remaining.min())
    if sparsest > pm + _ROUNDING:
        return paper, f"≥ dense at every level down to Pm {sparsest:.1f}%, the run's sparsest", NOT_REACHED
    return paper, f"≥ dense at every level down to Pm {pm:g}%" + _beyond(f, pm), HOLDS


def _beyond(f: Findings, pm: float) -> str:
    if f.matches_dense_down_to is not None and f.matches_dense_down_to < pm - _ROUNDING:
        return f" (and still at Pm {f.matches_dense_down_to:.1f}%)"
    return ""


def _speedup(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    paper = f"{claim['value']:.2f}× at Pm {claim['pm']:g}%"
    row, missing = _level_near(f, claim["pm"])
    if row is None:
        return paper, missing, NOT_REACHED
    value = row["speedup"]
    if pd.isna(value):
        return paper, f"no speed-up recorded at Pm {row['percent_remaining']:.1f}%", NO_DATA
    ours = f"{value:.2f}× at Pm {row['percent_remaining']:.1f}%" + _best_speedup(f)
    return paper, ours, _graded(value, claim["value"], 1.0)


def _best_speedup(f: Findings) -> str:
    if f.max_speedup is None:
        return ""
    return f"; best {f.max_speedup:.2f}× at Pm {f.max_speedup_pm:.1f}%"


def _accuracy_gain(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    if "pm" not in claim:
        paper = f"{claim['value']:+.1f} pt (largest)"
        if f.max_gain is None:
            return paper, "no pruned level yet", NO_DATA
        ours = f"{f.max_gain:+.2f} pt at Pm {f.max_gain_pm:.1f}%"
        return paper, ours, _graded(f.max_gain, claim["value"], 0.0)
    paper = f"{claim['value']:+.1f} pt at Pm {claim['pm']:g}%"
    row, missing = _level_near(f, claim["pm"])
    if row is None:
        return paper, missing, NOT_REACHED
    ours = f"{row['gain']:+.2f} pt at Pm {row['percent_remaining']:.1f}%"
    if f.max_gain is not None:
        ours += f"; best {f.max_gain:+.2f} pt at Pm {f.max_gain_pm:.1f}%"
    return paper, ours, _graded(row["gain"], claim["value"], 0.0)


def _accuracy_at(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    paper = f"{claim['value']:.1f}% at Pm {claim['pm']:g}%"
    row, missing = _level_near(f, claim["pm"])
    if row is None:
        return paper, missing, NOT_REACHED
    ours = 100 * row["accuracy"]
    verdict = HOLDS if ours >= claim["value"] - claim.get("tolerance", 0.5) else FAILS
    return paper, f"{ours:.2f}% at Pm {row['percent_remaining']:.1f}%", verdict


def _beats_reinit(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
    paper = f"{claim['speedup']:.2f}× sooner, {claim['gain']:+.1f} pt at Pm {claim['pm']:g}%"
    if "imp_minus_reinit" not in f.controls:
        return paper, "no reinit runs", NO_DATA
    row, missing = _level_near(f, claim["pm"])
    if row is None:
        return paper, missing, NOT_REACHED
    at = f.controls[f.controls.level == row["level"]]
    if at.empty or pd.isna(at.iloc[0]["imp_minus_reinit"]):
        return paper, f"no reinit run at Pm {row['percent_remaining']:.1f}%", NO_DATA
    speed, gain = float(at.iloc[0]["reinit_over_imp_iteration"]), float(at.iloc[0]["imp_minus_reinit"])
    ours = f"{speed:.2f}× sooner, {gain:+.2f} pt at Pm {row['percent_remaining']:.1f}%"
    if speed >= claim["speedup"] and gain >= claim["gain"]:
        verdict = HOLDS
    elif speed > 1 or gain > 0:
        verdict = PARTLY
    else:
        verdict = FAILS
    return paper, ours, verdict


def _in_range(column: str, test: str, name: str):
    """A claim that every level with pm_low ≤ Pm ≤ pm_high passes `test` on `column`."""

    def check(claim: dict[str, Any], f: Findings) -> tuple[str, str, str]:
        low, high = claim["pm_low"], claim["pm_high"]
        paper = f"{name} for {high:g}% ≥ Pm ≥ {low:g}%"
        levels = f.levels[
            (f.levels.level > 0)
            & (f.levels.percent_remaining >= low - _ROUNDING)
            & (f.levels.percent_remaining <= high + _ROUNDING)
        ]
        if levels.empty:
            return paper, "no level in this range", NOT_REACHED
        passed = levels[column] > 1 + 1e-9 if test == "above_one" else levels[column] >= -1e-9
        if not passed.all():
            failing = levels[~passed].percent_remaining
            return paper, "not at Pm " + ", ".join(f"{p:.1f}%" for p in failing), FAILS
        span = f"{levels.percent_remaining.max():.1f}%–{levels.percent_remaining.min():.1f}%"
        if float(f.levels.percent_remaining.min()) > low + _ROUNDING:
            return paper, f"at every level from {span} (the run stops there)", NOT_REACHED
        return paper, f"at every level from {span}", HOLDS

    return check


_CHECKS = {
    "dense_accuracy": _dense_accuracy,
    "matches_dense_down_to": _matches_dense_down_to,
    "speedup": _speedup,
    "accuracy_gain": _accuracy_gain,
    "accuracy_at": _accuracy_at,
    "beats_reinit": _beats_reinit,
    "sooner_in_range": _in_range("speedup", "above_one", "sooner than dense"),
    "above_dense_in_range": _in_range("gain", "non_negative", "≥ dense accuracy"),
}


# --- helpers -------------------------------------------------------------------------------------


def _level_near(f: Findings, pm: float) -> tuple[pd.Series | None, str]:
    """The pruned IMP level nearest Pm `pm` in log scale, or None and why not."""
    pruned = f.levels[f.levels.level > 0]
    if pruned.empty:
        return None, "no pruned level yet"
    distance = (pruned.percent_remaining / pm).map(lambda r: abs(math.log(r)))
    best = pruned.loc[distance.idxmin()]
    if distance.min() <= math.log(PM_TOLERANCE):
        return best, ""
    sparsest = float(pruned.percent_remaining.min())
    if sparsest > pm:
        return None, f"run stops at Pm {sparsest:.1f}%"
    return None, f"no level near Pm {pm:g}% (nearest {best.percent_remaining:.1f}%)"


def _points(gain: float) -> str:
    """A gain in points to 2 decimals, or to the first digit that shows where 2 would round a
    shortfall to "-0.00"."""
    digits = 2
    while round(gain, digits) == 0 and gain != 0 and digits < 6:
        digits += 1
    return f"{gain:+.{digits}f}"


def _graded(value: float, target: float, baseline: float) -> str:
    """Holds at or above the paper's number; partly when on the paper's side of `baseline`."""
    if value >= target - 1e-9:
        return HOLDS
    return PARTLY if value > baseline + 1e-9 else FAILS


def _paper_value(claim: dict[str, Any]) -> str:
    if "value" in claim:
        return f"{claim['value']:g}" + (f" at Pm {claim['pm']:g}%" if "pm" in claim else "")
    if "pm" in claim:
        return f"Pm {claim['pm']:g}%"
    return f"{claim.get('pm_high', '')}%–{claim.get('pm_low', '')}%"


def _metric_name(metric: str) -> str:
    return {"early_stop_test_accuracy": "test", "early_stop_val_accuracy": "validation"}.get(metric, metric)


def _same(ours: Any, paper: Any) -> bool:
    if isinstance(paper, float) or isinstance(ours, float):
        try:
            return math.isclose(float(ours), float(paper), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return ours == paper


def _show(value: Any) -> str:
    return "not set" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
