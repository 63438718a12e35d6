"""Pruning at initialization against IMP (Frankle, Dziugaite, Roy & Carbin, ICLR 2021, "Pruning
Neural Networks at Initialization: Why Are We Missing the Mark?"): which of a report's runs prune
at initialization (`lottery.schedule = "init"`), which is IMP, and the paper's three findings
checked on them. The figures are in `at_init_figures.py`.

A gap is the difference of two mean early-stop test accuracies over trials, in points. An
ablation *hurts* where the method is more than HURT points better than it; the paper's claims
are judged on the mean gap over the levels each names, so one noisy level decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from lth.lottery.variants import TICKET
from lth.report.paper import FAILS, HOLDS, NO_DATA, NOT_REACHED, PARTLY, Check

if TYPE_CHECKING:
    from lth.report.contents import RunReport

HURT = 1.0  # points of early-stop test accuracy: less is within the noise of a few trials
SPARSE_PM = 50.0  # the ablation claims are judged at Pm ≤ this (%), where pruning has bitten
HIGH_SPARSITY_PM = 10.0  # "at high sparsity": the levels at or below this Pm (%)
ABLATIONS = ("random", "reinit")  # shuffle (our `random`) and reinit; invert is reported apart
INVERT = "invert"
_SOURCE = "Frankle et al., ICLR 2021, §5 and Figures 2–4"
METRIC = "early_stop_test_accuracy_mean"


@dataclass
class AtInit:
    """The runs of a report that compare pruning at initialization with IMP."""

    imp: str | None  # the label of the IMP run (iterative magnitude pruning), if there is one
    criteria: dict[str, str]  # criterion → label of its at-init run
    table: pd.DataFrame  # label, method, variant, level, Pm, mean/min/max early-stop test accuracy
    checks: list[Check] = field(default_factory=list)

    @property
    def methods(self) -> dict[str, str]:
        """Method name (IMP, or the criterion) → run label, IMP first."""
        return ({"IMP": self.imp} if self.imp else {}) | self.criteria


def find(reports: Sequence[RunReport], aggregate: pd.DataFrame) -> AtInit | None:
    """The at-init comparison among `reports`, or None where no run prunes at initialization."""
    criteria, imp = {}, None
    for r in reports:
        config = r.run.config
        if config.lottery.schedule == "init":
            criteria.setdefault(config.pruning.criterion, r.run.label)
        elif config.lottery.schedule == "iterative" and config.pruning.criterion == "magnitude":
            imp = imp or r.run.label
    if not criteria:
        return None
    method = {label: name for name, label in (({"IMP": imp} if imp else {}) | criteria).items()}
    rows = aggregate[aggregate.run.isin(method)].copy()
    rows.insert(1, "method", rows.run.map(method))
    at_init = AtInit(imp, criteria, rows)
    at_init.checks = [_ablations_do_not_hurt(at_init), _imp_ablations_hurt(at_init), _below_imp(at_init)]
    at_init.checks += [c for c in [_invert(at_init)] if c is not None]
    return at_init


def accuracy(at_init: AtInit, method: str, variant: str) -> pd.Series:
    """Mean early-stop test accuracy (%) of `method`'s `variant`, by level (pruned levels only)."""
    rows = at_init.table[(at_init.table.method == method) & (at_init.table.variant == variant)]
    rows = rows[rows.level > 0]
    return 100 * rows.set_index("level")[METRIC]


def pm(at_init: AtInit) -> pd.Series:
    """Pm (%) by level, from the ticket's rows (every run prunes at the same rates)."""
    rows = at_init.table[(at_init.table.variant == TICKET) & (at_init.table.level > 0)]
    return rows.groupby("level").percent_remaining_mean.first()


def gaps(at_init: AtInit, method: str, variant: str, max_pm: float) -> pd.Series:
    """The method's ticket minus its `variant`, in points, at the levels with Pm ≤ max_pm."""
    levels = pm(at_init)
    levels = levels[levels <= max_pm].index
    gap = accuracy(at_init, method, TICKET) - accuracy(at_init, method, variant)
    return gap[gap.index.isin(levels)].dropna()


def _ablations_do_not_hurt(at_init: AtInit) -> Check:
    parts, verdicts = [], []
    for criterion in at_init.criteria:
        for variant in ABLATIONS:
            gap = gaps(at_init, criterion, variant, SPARSE_PM)
            if gap.empty:
                continue
            parts.append(f"{criterion} − {_name(variant)} {gap.mean():+.2f}")
            verdicts.append(gap.mean() <= HURT)
    return _check(
        "Shuffling an at-init method's mask within each layer, or re-initialising its weights, "
        "does not hurt it (they find per-layer sparsities, not particular weights)",
        f"no lower accuracy for SNIP, GraSP, SynFlow and magnitude at init ({_SOURCE})",
        parts,
        verdicts,
        f"mean gap in points over levels with Pm ≤ {SPARSE_PM:g}%; hurts if > {HURT:g}",
    )


def _imp_ablations_hurt(at_init: AtInit) -> Check:
    parts, verdicts = [], []
    if at_init.imp is not None:
        for variant in ABLATIONS:
            gap = gaps(at_init, "IMP", variant, SPARSE_PM)
            if not gap.empty:
                parts.append(f"IMP − {_name(variant)} {gap.mean():+.2f}")
                verdicts.append(gap.mean() > HURT)
    return _check(
        "Shuffling IMP's mask or re-initialising its weights hurts it (its masks depend on the weights)",
        f"lower accuracy for both ablations of IMP at sparse levels ({_SOURCE})",
        parts,
        verdicts,
        f"mean gap in points over levels with Pm ≤ {SPARSE_PM:g}%; hurts if > {HURT:g}",
    )


def _below_imp(at_init: AtInit) -> Check:
    levels = pm(at_init)
    sparse = levels[levels <= HIGH_SPARSITY_PM].index
    parts, verdicts = [], []
    if at_init.imp is not None and len(sparse):
        imp = accuracy(at_init, "IMP", TICKET)
        for criterion in at_init.criteria:
            gap = (imp - accuracy(at_init, criterion, TICKET))[lambda s: s.index.isin(sparse)].dropna()
            if not gap.empty:
                parts.append(f"IMP − {criterion} {gap.mean():+.2f}")
                verdicts.append(gap.mean() > HURT)
    check = _check(
        "Pruning at initialization falls below IMP at high sparsity",
        f"every at-init method below IMP (with rewinding) at extreme sparsities ({_SOURCE})",
        parts,
        verdicts,
        f"mean gap in points over levels with Pm ≤ {HIGH_SPARSITY_PM:g}%; below if > {HURT:g}",
    )
    if not len(sparse):
        check.verdict = NOT_REACHED
        check.ours = f"no level at Pm ≤ {HIGH_SPARSITY_PM:g}% (sparsest {levels.min():.1f}%)"
    return check


def _invert(at_init: AtInit) -> Check | None:
    parts, verdicts = [], []
    for criterion in at_init.criteria:
        gap = gaps(at_init, criterion, INVERT, SPARSE_PM)
        if not gap.empty and criterion != "random":
            parts.append(f"{criterion} − inverted {gap.mean():+.2f}")
            verdicts.append(gap.mean() > HURT if criterion != "grasp" else gap.mean() <= HURT)
    if not parts:
        return None
    return _check(
        "Inverting the scores hurts SNIP, SynFlow and magnitude at init, but not GraSP",
        "inverted SNIP, SynFlow and magnitude fall well below; inverted GraSP does as well or better",
        parts,
        verdicts,
        f"mean gap in points over levels with Pm ≤ {SPARSE_PM:g}%; hurts if > {HURT:g}",
    )


def _check(text: str, paper: str, parts: list[str], verdicts: list[bool], how: str) -> Check:
    if not verdicts:
        return Check(text, _SOURCE, paper, "the runs lack the variants or levels it needs", NO_DATA)
    verdict = HOLDS if all(verdicts) else FAILS if not any(verdicts) else PARTLY
    return Check(text, _SOURCE, paper, f"{'; '.join(parts)} ({how})", verdict)


def _name(variant: str) -> str:
    return "shuffled" if variant == "random" else "reinit"
