"""Lottery experiments: trials × levels × variants, over training and pruning."""

from lth.lottery.runner import SUMMARY_COLUMNS, Experiment, Runtime, resolve_device, write_summary

__all__ = ["SUMMARY_COLUMNS", "Experiment", "Runtime", "resolve_device", "write_summary"]
