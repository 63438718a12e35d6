"""Lottery experiments: trials × levels × variants, over training and pruning."""

from lth.lottery.runner import (
    SUMMARY_COLUMNS,
    Experiment,
    Runtime,
    level_iterations,
    resolve_device,
    write_summary,
)

__all__ = ["SUMMARY_COLUMNS", "Experiment", "Runtime", "level_iterations", "resolve_device", "write_summary"]
