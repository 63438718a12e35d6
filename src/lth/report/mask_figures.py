"""The mask figures (`lth masks`, the report's "Masks" section), drawn from `analysis.masks`:
overlap against Pm beside random masks' overlap, the first layer's surviving weights per input
pixel, and θ0 of the weights a ticket keeps against those it prunes.

They follow `figures.py`'s conventions: colour is variant, line style is run where several are
overlaid, Pm axes are log and run from 100% down; a dotted line is always the random baseline.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lth.analysis.masks import OVERLAP_KINDS, MaskAnalysis
from lth.report.figures import PM_LABEL, RUN_STYLES, Builder, _pm_axis, variant_color

PANELS_PER_ROW = 3
# What a line of the overlap figure is titled by, per kind: its pairs differ in what the title says.
_KIND_TITLES = {
    "trials": "Across trials (other seeds)",
    "runs": "Across runs (same seed)",
    "levels": "Level L against L + 1",
    "variants": "Ticket against control",
}


def builders(analysis: MaskAnalysis) -> list[Builder]:
    """`figures.draw`'s entries for a mask analysis; each is left out where it has nothing to draw."""
    return [
        (
            "mask_overlap",
            "Overlap of masks",
            "Jaccard index |A ∩ B| / |A ∪ B| of two masks (all pruned layers pooled) against the sparser "
            "one's Pm, mean over pairs; dotted: two random masks with the same per-layer counts "
            "((ab/n) / (a + b − ab/n) per layer). Above the dotted line, two masks agree more than chance.",
            lambda: overlap_figure(analysis),
        ),
        (
            "mask_pixels",
            "Surviving first-layer weights per input pixel",
            "For each input pixel, the percent of its outgoing first-layer weights that the ticket keeps, "
            "at chosen levels (mean over trials): where IMP keeps the network looking.",
            lambda: pixels_figure(analysis),
        ),
        (
            "mask_theta0",
            "Initial weights kept and pruned",
            "Distribution of θ0 (the initial weights, signed) of the weights the ticket keeps and of those "
            "it prunes, per layer, at the deepest chosen level; each histogram normalised to its own area.",
            lambda: theta0_figure(analysis),
        ),
    ]


def _grid(panels: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    cols = min(panels, PANELS_PER_ROW)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def overlap_figure(analysis: MaskAnalysis) -> Figure | None:
    summary = analysis.overlap_summary()
    kinds = [kind for kind in OVERLAP_KINDS if (summary.kind == kind).any()]
    if not kinds:
        return None
    runs = list(dict.fromkeys([*summary.run_a, *summary.run_b]))
    fig, axes = _grid(len(kinds))
    for ax, kind in zip(axes, kinds, strict=True):
        rows = summary[summary.kind == kind]
        for (run_a, run_b, variant_a, variant_b), line in rows.groupby(
            ["run_a", "run_b", "variant_a", "variant_b"], sort=False
        ):
            color = variant_color(variant_b if kind == "variants" else variant_a)
            style, marker = RUN_STYLES[runs.index(run_a) % len(RUN_STYLES)]
            line = line.sort_values("percent_remaining")
            label = f"{variant_a} ~ {variant_b}" if kind == "variants" else variant_a
            if kind == "runs":
                label += f": {run_a} ~ {run_b}"
            ax.plot(
                line.percent_remaining,
                line.jaccard,
                color=color,
                linestyle=style,
                marker=marker,
                markersize=4,
                label=label,
            )
            ax.plot(line.percent_remaining, line.random_jaccard, color=color, linestyle=":", linewidth=1)
        _pm_axis(ax, rows.percent_remaining)
        ax.set_ylim(0, 1.02)
        ax.set_title(_KIND_TITLES[kind])
        ax.set_xlabel(PM_LABEL)
        ax.set_ylabel("Jaccard index")
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1))
        ax.legend(handles, [*labels, "random masks"], loc="upper right")
    fig.tight_layout()
    return fig


def pixels_figure(analysis: MaskAnalysis) -> Figure | None:
    images = [p for p in analysis.pixels if p.counts.shape[1] > 1]  # a conv's per-channel counts are no image
    if not images:
        return None
    runs = list(dict.fromkeys(p.run for p in images))
    cols = max(sum(p.run == run for p in images) for run in runs)
    fig, axes = plt.subplots(len(runs), cols, figsize=(2.6 * cols + 0.8, 2.7 * len(runs)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for r, run in enumerate(runs):
        for c, p in enumerate(p for p in images if p.run == run):
            ax = axes[r, c]
            ax.set_visible(True)
            percent = 100 * p.counts.mean(0) / p.outgoing  # over input channels, where several
            shown = ax.imshow(percent, cmap="viridis", vmin=0, vmax=max(float(percent.max()), 1e-9))
            ax.set_title(f"level {p.level}: Pm {p.percent_remaining:.1f}%", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="% kept" if c == 0 else None)
        if len(runs) > 1:
            axes[r, 0].set_ylabel(run)
    fig.suptitle(f"{images[0].layer}: surviving outgoing weights per input pixel (ticket)")
    fig.tight_layout()
    return fig


def theta0_figure(analysis: MaskAnalysis) -> Figure | None:
    bins = analysis.theta0_histogram
    if bins.empty:
        return None
    panels = list(bins.groupby(["run", "layer"], sort=False))
    fig, axes = _grid(len(panels))
    several = bins.run.nunique() > 1
    for ax, ((run, layer), rows) in zip(axes, panels, strict=True):
        level = int(rows.level.iloc[0])
        for kept, color in ((False, "#999999"), (True, variant_color("imp"))):
            part = rows[rows.kept == kept]
            edges = np.append(part.left.to_numpy(), part.right.iloc[-1])
            total = part["count"].sum()
            width = part.right - part.left
            density = part["count"] / (total * width) if total else pd.Series(0.0, index=part.index)
            stats = analysis.theta0[
                (analysis.theta0.run == run)
                & (analysis.theta0.layer == layer)
                & (analysis.theta0.kept == kept)
            ].iloc[0]
            label = (
                f"{'kept' if kept else 'pruned'} ({int(stats.weights):,}): mean |θ0| {stats.mean_abs:.3g}, "
                f"{100 * stats.positive:.0f}% > 0"
            )
            ax.stairs(
                density.to_numpy(),
                edges,
                color=color,
                fill=not kept,
                alpha=0.5 if not kept else 1,
                linewidth=1.8,
                label=label,
            )
        ax.set_title(f"{run}: {layer}" if several else f"{layer} (level {level})", fontsize=10)
        ax.set_xlabel("θ0")
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize=7.5)
    fig.tight_layout()
    return fig
