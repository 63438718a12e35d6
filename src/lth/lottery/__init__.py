"""Lottery experiments: trials × levels × variants, over training and pruning."""

from lth.layout import SUMMARY_COLUMNS  # re-exported: `lth.lottery.SUMMARY_COLUMNS` predates `lth.layout`
from lth.lottery.runner import (
    Experiment,
    LevelIterations,
    Runtime,
    level_iterations,
    resolve_device,
    write_summary,
)

__all__ = [
    "SUMMARY_COLUMNS",
    "Experiment",
    "LevelIterations",
    "Runtime",
    "level_iterations",
    "resolve_device",
    "write_summary",
]
