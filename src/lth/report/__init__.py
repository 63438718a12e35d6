"""Reports read the store (never the trainer): tables now, figures and pages later."""

from lth.report.table import format_table, level_table, read_summary

__all__ = ["format_table", "level_table", "read_summary"]
