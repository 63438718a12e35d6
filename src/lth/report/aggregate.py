"""summary.csv aggregated over trials: per run, variant and level, mean/std/min/max of each metric.

Min and max are there because the paper's error bars are the min and max over trials; std
(over trials, ddof=1) is empty where a level has a single trial.
"""

from __future__ import annotations

import pandas as pd

from lth.layout import SUMMARY_METRICS
from lth.lottery import variants

METRICS = SUMMARY_METRICS
STATS = ("mean", "std", "min", "max")


def aggregate(summary: pd.DataFrame, run: str = "") -> pd.DataFrame:
    """One row per (variant, level): `trials`, then `<metric>_<stat>` for every metric present."""
    metrics = [m for m in METRICS if m in summary.columns]
    grouped = summary.groupby(["variant", "level"], sort=False)
    named = {"trials": ("trial", "nunique")}
    for metric in metrics:
        for stat in STATS:
            named[f"{metric}_{stat}"] = (metric, stat)
    table = grouped.agg(**named).reset_index()
    table.insert(0, "run", run)
    return sort_rows(table)


def sort_rows(table: pd.DataFrame) -> pd.DataFrame:
    """imp, reinit, random (then any other variant), each by level."""
    order = {v: i for i, v in enumerate(variants.reported())}
    rank = table["variant"].map(order).fillna(len(order))
    return (
        table.assign(_rank=rank)
        .sort_values(["run", "_rank", "level"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
