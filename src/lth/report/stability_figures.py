"""The instability figures (Frankle et al., ICML 2020), drawn from what `report/stability.py` read:
the test error along the straight path between the two copies, instability against Pm for the
ticket and its controls, and instability against the rewind iteration k.

They follow `figures.py`'s conventions: colour is variant (or level, where one variant is drawn
at several), line style is run, error bars are the min and max over trials, Pm axes are log and
run from 100% down. The dotted line is the paper's threshold of stability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lth.lottery.variants import TICKET
from lth.report.figures import (
    PM_LABEL,
    RUN_STYLES,
    _pm_axis,
    _run_legend,
    _title,
    variant_color,
    variant_name,
)
from lth.report.load import RunData
from lth.report.stability import Stability, level_path, rewind_path

Measured = Sequence[tuple[RunData, Stability]]
PANELS_PER_ROW = 3
Builder = tuple[str, str, str, Callable[[], Figure | None]]


def builders(measured: Measured) -> list[Builder]:
    """`figures.render_all`'s entries for the runs that have instability results."""
    if not measured:
        return []
    return [
        (
            "instability_paths",
            "Test error along the path between two copies",
            "Test error of the network (1 − α)·A + α·B between two copies A and B trained from the same "
            "start with different SGD noise, at each measured level (per variant) and rewind iteration "
            "(per level of the rewind sweep); mean over trials. Instability is the highest point "
            "minus the mean of the two ends.",
            lambda: paths_figure(measured),
        ),
        (
            "instability_pm",
            "Instability against Pm",
            "Instability (test-error barrier, percentage points) of the ticket and its controls at "
            "each measured level; mean over trials, bars min–max; dotted: the paper's threshold of "
            "stability.",
            lambda: pm_figure(measured),
        ),
        (
            "instability_rewind",
            "Instability against the rewind iteration",
            "Instability of the dense network and IMP subnetworks whose copies start at iteration k "
            "(the ICML 2020 paper's central figure); mean over trials, bars min–max; dotted: the "
            "paper's threshold of stability.",
            lambda: rewind_figure(measured),
        ),
    ]


# --- error along the path --------------------------------------------------------------------------


def paths_figure(measured: Measured) -> Figure | None:
    """One panel per variant measured in-run (lines: levels) and per level of the rewind sweep
    (lines: k); each line the mean over trials of the test error along α."""
    panels: list[tuple[str, list[tuple[str, list[dict]]]]] = []
    for run, stability in measured:
        for variant in dict.fromkeys(stability.levels.variant):
            rows = stability.levels[stability.levels.variant == variant]
            lines = [
                (f"level {level} (Pm {group.percent_remaining.mean():.1f}%)", _paths(run, group, variant))
                for level, group in rows.groupby("level")
            ]
            panels.append((variant_name(variant), lines))
        for level, rows in stability.rewinds.groupby("level"):
            lines = [(f"k = {k}", _rewind_paths(run, group)) for k, group in rows.groupby("rewind_iteration")]
            panels.append((f"rewind sweep, level {level} (Pm {rows.percent_remaining.mean():.1f}%)", lines))
    panels = [(title, [(label, paths) for label, paths in lines if paths]) for title, lines in panels]
    panels = [(title, lines) for title, lines in panels if lines]
    if not panels:
        return None
    columns = min(len(panels), PANELS_PER_ROW)
    grid_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(4.6 * columns, 3.9 * grid_rows), squeeze=False, sharey=True
    )
    flat = list(axes.flat)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, lines) in zip(flat, panels, strict=False):
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(lines)))
        for color, (label, paths) in zip(colors, lines, strict=True):
            alpha = paths[0]["alpha"]
            errors = np.mean([p["test_error"] for p in paths if len(p["test_error"]) == len(alpha)], axis=0)
            ax.plot(alpha, 100 * errors, color=color, marker="o", markersize=2.5, linewidth=1.5, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("Interpolation α (copy A at 0, copy B at 1)")
        ax.legend(loc="best", fontsize=7.5)
    for row in axes:
        row[0].set_ylabel("Test error (%)")
    fig.suptitle(_title([run for run, _ in measured]), fontsize=11)
    fig.tight_layout()
    return fig


def _paths(run: RunData, rows: pd.DataFrame, variant: str) -> list[dict]:
    found = (level_path(run, int(r.trial), variant, int(r.level)) for r in rows.itertuples())
    return [p for p in found if p is not None]


def _rewind_paths(run: RunData, rows: pd.DataFrame) -> list[dict]:
    found = (rewind_path(run, int(r.trial), int(r.level), int(r.rewind_iteration)) for r in rows.itertuples())
    return [p for p in found if p is not None]


# --- instability against Pm --------------------------------------------------------------------------


def pm_figure(measured: Measured) -> Figure | None:
    tables = [(i, s.by_level()) for i, (_, s) in enumerate(measured)]
    tables = [(i, t) for i, t in tables if not t.empty]
    if not tables:
        return None
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    for i, table in tables:
        linestyle, marker = RUN_STYLES[i % len(RUN_STYLES)]
        for variant, group in table.groupby("variant", sort=False):
            rows = group.sort_values("level")
            if variant != TICKET:  # a control's curve starts from the dense network, as in summary.csv
                dense = table[(table.variant == TICKET) & (table.level == 0)]
                rows = pd.concat([dense, rows]).drop_duplicates(subset=["level"])
            _errorbars(ax, rows.percent_remaining, rows, variant_color(variant), linestyle, marker)
    _pm_axis(ax, pd.concat([t.percent_remaining for _, t in tables]))
    _threshold(ax, measured)
    ax.set_xlabel(PM_LABEL)
    ax.set_ylabel("Instability (test-error barrier, points)")
    variants = list(dict.fromkeys(v for _, t in tables for v in t.variant))
    handles = [
        Line2D([], [], color=variant_color(v), marker="o", linewidth=1.6, markersize=4) for v in variants
    ]
    ax.legend(handles, [variant_name(v) for v in variants], title="variant", loc="upper left")
    _runs_legend(fig, measured, [i for i, _ in tables])
    ax.set_title(
        f"Instability of the ticket and its controls: {_title([r for r, _ in measured])}", fontsize=10
    )
    fig.tight_layout()
    return fig


# --- instability against the rewind iteration ------------------------------------------------------


def rewind_figure(measured: Measured) -> Figure | None:
    tables = [(i, s.by_rewind()) for i, (_, s) in enumerate(measured)]
    tables = [(i, t) for i, t in tables if not t.empty]
    if not tables:
        return None
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    levels = sorted({int(lv) for _, t in tables for lv in t.level})
    colors = dict(zip(levels, plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(levels))), strict=True))
    for i, table in tables:
        linestyle, marker = RUN_STYLES[i % len(RUN_STYLES)]
        for level, rows in table.groupby("level"):
            _errorbars(ax, rows.rewind_iteration, rows, colors[int(level)], linestyle, marker)
    ks = sorted({int(k) for _, t in tables for k in t.rewind_iteration})
    positive = [k for k in ks if k > 0]
    if positive:  # k = 0 is on the axis too: logarithmic above the smallest positive k, linear below
        ax.set_xscale("symlog", linthresh=min(positive))
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    _threshold(ax, measured)
    ax.set_xlabel("Rewind iteration k (the copies start from θk)")
    ax.set_ylabel("Instability (test-error barrier, points)")
    pms = {int(lv): float(t[t.level == lv].percent_remaining.mean()) for _, t in tables for lv in t.level}
    handles = [Line2D([], [], color=colors[lv], marker="o", linewidth=1.6, markersize=4) for lv in levels]
    names = [f"level {lv} (Pm {pms[lv]:.1f}%)" if lv else "dense (level 0)" for lv in levels]
    ax.legend(handles, names, title="network", loc="upper right")
    _runs_legend(fig, measured, [i for i, _ in tables])
    ax.set_title(f"Instability against k: {_title([r for r, _ in measured])}", fontsize=10)
    fig.tight_layout()
    return fig


# --- shared --------------------------------------------------------------------------------------------


def _errorbars(ax: Axes, x: pd.Series, rows: pd.DataFrame, color, linestyle, marker: str) -> None:
    mean = 100 * rows.instability_mean.to_numpy()
    low = mean - 100 * rows.instability_min.to_numpy()
    high = 100 * rows.instability_max.to_numpy() - mean
    ax.errorbar(
        x,
        mean,
        yerr=np.vstack([low, high]),
        color=color,
        linestyle=linestyle,
        marker=marker,
        markersize=4.5,
        linewidth=1.8,
        capsize=2.5,
        elinewidth=1,
    )


def _threshold(ax: Axes, measured: Measured) -> None:
    thresholds = {s.threshold for _, s in measured}
    for threshold in thresholds:
        ax.axhline(100 * threshold, color="black", linestyle=":", linewidth=1)
    ax.set_ylim(bottom=0)


def _runs_legend(fig: Figure, measured: Measured, drawn: list[int]) -> None:
    if len(measured) > 1:
        styles = [
            Line2D(
                [],
                [],
                color="black",
                linestyle=RUN_STYLES[i % len(RUN_STYLES)][0],
                marker=RUN_STYLES[i % len(RUN_STYLES)][1],
            )
            for i in drawn
        ]
        _run_legend(fig, styles, [measured[i][0].label for i in drawn])
