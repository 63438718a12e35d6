"""Terminal tables: a run's summary, per variant and level, averaged over trials."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lth.errors import StoreError


def read_summary(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / "summary.csv"
    if not Path(run_dir).is_dir():
        raise StoreError(f"run directory {run_dir} does not exist; give the path `lth run` printed")
    if not path.exists():
        raise StoreError(f"{run_dir} has no summary.csv yet: no level has finished; run `lth run` first")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise StoreError(
            f"run file {path} is damaged ({err}); run the same `lth run` again to rewrite it"
        ) from None


def level_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean (± std where there are several trials) per variant and level."""
    grouped = summary.groupby(["variant", "level"], sort=False)
    table = grouped.agg(
        trials=("trial", "nunique"),
        pm=("percent_remaining", "mean"),
        es_iter=("early_stop_iteration", "mean"),
        es_test_acc=("early_stop_test_accuracy", "mean"),
        es_test_acc_std=("early_stop_test_accuracy", "std"),
        final_test_acc=("final_test_accuracy", "mean"),
        final_train_acc=("final_train_accuracy", "mean"),
    )
    return table.reset_index()


def format_table(summary: pd.DataFrame) -> str:
    """One block per variant: Pm, early-stop iteration and accuracies (as percents)."""
    table = level_table(summary)
    blocks = []
    for variant, rows in table.groupby("variant", sort=False):
        shown = pd.DataFrame(
            {
                "level": rows["level"],
                "Pm %": rows["pm"].map("{:.1f}".format),
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
