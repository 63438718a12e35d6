"""Terminal tables: a run's summary, per variant and level, averaged over trials."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lth import layout
from lth.errors import StoreError

# What every summary.csv holds (the contract in docs/design.md); a file without them is damaged.
REQUIRED_COLUMNS = (
    "trial",
    "variant",
    "level",
    "percent_remaining",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_test_accuracy",
    "final_test_accuracy",
    "final_train_accuracy",
)
# The runner's other columns, all numeric; older or hand-made summaries may lack them.
OPTIONAL_NUMERIC = tuple(c for c in layout.SUMMARY_COLUMNS if c not in REQUIRED_COLUMNS)


def read_summary(run_dir: str | Path) -> pd.DataFrame:
    """A run's summary.csv, checked: every required column present, numbers where numbers belong."""
    path = Path(run_dir) / layout.SUMMARY
    if not Path(run_dir).is_dir():
        raise StoreError(f"run directory {run_dir} does not exist; give the path `lth run` printed")
    if not path.exists():
        raise StoreError(f"{run_dir} has no summary.csv yet: no level has finished; run `lth run` first")
    fix = "run the same `lth run` again to rewrite it from the stored levels"
    try:
        summary = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StoreError(f"run file {path} is damaged ({why}); {fix}") from None
    absent = [c for c in REQUIRED_COLUMNS if c not in summary.columns]
    if absent:
        raise StoreError(f"run file {path} is damaged (no column {', '.join(absent)}); {fix}")
    if summary.empty:
        raise StoreError(f"{path} lists no finished level yet; run `lth run` until one finishes")
    if summary["variant"].isna().any():
        row = int(summary["variant"].isna().idxmax()) + 2
        raise StoreError(f"run file {path} is damaged (line {row}: no variant); {fix}")
    summary["variant"] = summary["variant"].astype(str)
    numeric = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_NUMERIC) if c in summary.columns and c != "variant"]
    for column in numeric:
        numbers = pd.to_numeric(summary[column], errors="coerce")
        bad = numbers.isna() & (summary[column].notna() | (column in REQUIRED_COLUMNS))
        if bad.any():
            row = int(bad.idxmax()) + 2  # +1 for the header, +1 to count lines from 1 as editors do
            raise StoreError(f"run file {path} is damaged (line {row}: {column} is not a number); {fix}")
        summary[column] = numbers
    for column in ("trial", "level"):
        summary[column] = summary[column].astype(int)
    return summary


def unpruned_weights(summary: pd.DataFrame) -> bool:
    """Whether the run leaves some weights unpruned (ResNet's shortcuts and output, VGG's output),
    so that its Pm over all weights differs from Pm over the pruned layers: reports show both."""
    if "percent_remaining_all" not in summary:
        return False
    return bool(((summary.percent_remaining_all - summary.percent_remaining).abs() > 1e-9).any())


def level_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean (± std where there are several trials) per variant and level."""
    grouped = summary.groupby(["variant", "level"], sort=False)
    both = {"pm_all": ("percent_remaining_all", "mean")} if "percent_remaining_all" in summary else {}
    table = grouped.agg(
        trials=("trial", "nunique"),
        pm=("percent_remaining", "mean"),
        **both,
        es_iter=("early_stop_iteration", "mean"),
        es_test_acc=("early_stop_test_accuracy", "mean"),
        es_test_acc_std=("early_stop_test_accuracy", "std"),
        final_test_acc=("final_test_accuracy", "mean"),
        final_train_acc=("final_train_accuracy", "mean"),
    )
    return table.reset_index()


def format_table(summary: pd.DataFrame) -> str:
    """One block per variant: Pm (also over all weights where that differs), early-stop
    iteration and accuracies (as percents)."""
    table = level_table(summary)
    both = unpruned_weights(summary)
    blocks = []
    for variant, rows in table.groupby("variant", sort=False):
        shown = pd.DataFrame(
            {
                "level": rows["level"],
                "Pm %": rows["pm"].map("{:.1f}".format),
                **({"Pm all weights %": rows["pm_all"].map("{:.1f}".format)} if both else {}),
                "early-stop it": rows["es_iter"].map("{:.0f}".format),
                "early-stop test %": [
                    _pct(m, s) for m, s in zip(rows["es_test_acc"], rows["es_test_acc_std"], strict=True)
                ],
                "final test %": rows["final_test_acc"].map(lambda v: f"{100 * v:.2f}"),
                "final train %": rows["final_train_acc"].map(lambda v: f"{100 * v:.2f}"),
                "trials": rows["trials"],
            }
        )
        blocks.append(f"{variant}\n{shown.to_string(index=False)}")
    return "\n\n".join(blocks)


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}" if pd.isna(std) else f"{100 * mean:.2f} ± {100 * std:.2f}"
