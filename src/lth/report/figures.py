"""The paper's figures, drawn from stored runs: PNG for looking, SVG for pages and papers.

Colour always means variant (imp, reinit, random: the same colours in every figure); when several
runs are overlaid, line style and marker mean run, with a second legend naming them. Pm axes are
log-scaled and run from 100% down, as in the paper, with ticks at the levels' own Pm values.
Error bars are the min and max over trials, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit, same output everywhere

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from lth.lottery import variants as variant_table
from lth.report.load import RunData

# A variant's colour and line follow its place in the table of variants (lottery/variants.py):
# the ticket first, in blue, drawn widest, so a control that lands on the same values stays
# visible as a thinner line on top of it (short runs often early-stop every variant at the same
# iteration); then each control in the table's order.
_VARIANT_COLORS = plt.get_cmap("tab10").colors
_VARIANT_WIDTHS = ((2.6, 5.5), (1.9, 4.5), (1.3, 3.5))  # (line width, marker size), then the last
_OTHER_COLOR = "#7f7f7f"  # a variant no longer in the table (a run made with a plug-in)


def variant_color(variant: str) -> str | tuple[float, ...]:
    order = variant_table.reported()
    return _VARIANT_COLORS[order.index(variant) % 10] if variant in order else _OTHER_COLOR


def variant_widths(variant: str) -> tuple[float, float]:
    order = variant_table.reported()
    rank = order.index(variant) if variant in order else len(_VARIANT_WIDTHS)
    return _VARIANT_WIDTHS[min(rank, len(_VARIANT_WIDTHS) - 1)]


def variant_name(variant: str) -> str:
    """`imp (winning ticket)`: the name and the table's legend for it."""
    legend = {v.name: v.legend for v in variant_table.table()}.get(variant)
    return f"{variant} ({legend})" if legend else variant


RUN_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v"), ((0, (1, 1)), "P"))
_LAYER_COLORS = plt.get_cmap("Dark2").colors
_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in SVG: small, searchable, crisp
    "svg.hashsalt": "lth",  # stable element ids, so the same run draws the same file
}
PM_LABEL = "Percent of weights remaining (Pm, log scale)"


# A figure to draw: (file stem, title, caption, a function drawing it or returning None).
Builder = tuple[str, str, str, Callable[[], Figure | None]]


@dataclass(frozen=True)
class FigureFile:
    name: str  # file stem
    title: str
    caption: str
    png: Path
    svg: Path


def render_all(
    runs: Sequence[RunData],
    aggregate: pd.DataFrame,
    out: Path,
    curve_levels: Sequence[int] | None = None,
    more: Sequence[Builder] = (),
) -> list[FigureFile]:
    """Draw every figure for `runs` into `out`, and those `more` builds (name, title, caption,
    figure; `stability_figures.builders`); a figure with nothing to draw is left out."""
    builders: tuple[Builder, ...] = (
        (
            "early_stop_iteration",
            "Early-stop iteration",
            "Iteration of minimum validation loss against Pm; mean over trials, bars min–max.",
            lambda: pm_figure(runs, aggregate, [("early_stop_iteration", "Early-stop iteration", 1.0)]),
        ),
        (
            "early_stop_accuracy",
            "Test accuracy at early stop",
            "Test accuracy at the iteration of minimum validation loss; mean over trials, bars min–max.",
            lambda: pm_figure(
                runs, aggregate, [("early_stop_test_accuracy", "Test accuracy at early stop (%)", 100.0)]
            ),
        ),
        (
            "final_accuracy",
            "Final test and train accuracy",
            "Accuracy at the end of training (the full budget); mean over trials, bars min–max.",
            lambda: pm_figure(
                runs,
                aggregate,
                [
                    ("final_test_accuracy", "Final test accuracy (%)", 100.0),
                    ("final_train_accuracy", "Final train accuracy (%)", 100.0),
                ],
            ),
        ),
        (
            "accuracy_curves",
            "Test accuracy during training",
            "Test accuracy against training iteration at selected levels, one panel per variant "
            "(the paper's Figure 3); mean over trials, shaded min–max.",
            lambda: curves_figure(runs, curve_levels),
        ),
        (
            "layer_sparsity",
            "Layer-wise sparsity",
            "Percent of each prunable layer's weights that IMP's mask keeps, against the overall Pm; "
            "the dotted diagonal is the overall Pm.",
            lambda: sparsity_figure(runs),
        ),
    )
    return draw(out, (*builders, *more))


def draw(out: Path, builders: Sequence[Builder]) -> list[FigureFile]:
    """Build each figure in the report's style and save it to `out` as PNG and SVG; a builder
    with nothing to draw (None) is left out. `lth masks` draws its figures through this too."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with plt.rc_context(_STYLE):
        for name, title, caption, build in builders:
            figure = build()
            if figure is None:
                continue
            png, svg = out / f"{name}.png", out / f"{name}.svg"
            figure.savefig(png, dpi=150, bbox_inches="tight")
            figure.savefig(svg, bbox_inches="tight", metadata={"Date": None})
            plt.close(figure)
            files.append(FigureFile(name, title, caption, png, svg))
    return files


# --- metric against Pm ---------------------------------------------------------------------------


def pm_figure(
    runs: Sequence[RunData], aggregate: pd.DataFrame, panels: Sequence[tuple[str, str, float]]
) -> Figure | None:
    """One panel per (metric, axis label, scale): a line per run and variant, min–max bars."""
    if aggregate.empty:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    labels = [r.label for r in runs]
    for ax, (metric, ylabel, scale) in zip(axes[0], panels, strict=True):
        for i, label in enumerate(labels):
            rows = aggregate[aggregate.run == label]
            for variant, group in rows.groupby("variant", sort=False):
                group = group.sort_values("level")
                mean = scale * group[f"{metric}_mean"].to_numpy()
                low = mean - scale * group[f"{metric}_min"].to_numpy()
                high = scale * group[f"{metric}_max"].to_numpy() - mean
                linestyle, marker = RUN_STYLES[i % len(RUN_STYLES)]
                width, size = variant_widths(variant)
                ax.errorbar(
                    group["percent_remaining_mean"],
                    mean,
                    yerr=np.vstack([low, high]),
                    color=variant_color(variant),
                    linestyle=linestyle,
                    marker=marker,
                    markersize=size,
                    linewidth=width,
                    capsize=2.5,
                    elinewidth=1,
                )
        ax.set_ylabel(ylabel)
        ax.set_xlabel(PM_LABEL)
        _pm_axis(ax, aggregate.percent_remaining_mean)
    fig.suptitle(_title(runs), fontsize=11)
    fig.tight_layout()
    _legends(fig, axes[0][0], list(dict.fromkeys(aggregate.variant)), labels)
    return fig


def _pm_axis(ax: Axes, pms: pd.Series) -> None:
    """Log x from 100% down to the sparsest level, ticked at the levels' own Pm values."""
    values = sorted({round(float(p), 1) for p in pms if p > 0}, reverse=True)
    if not values:
        return
    ax.set_xscale("log")
    ax.set_xlim(values[0] * 1.12, values[-1] / 1.12)  # high to low: the axis runs from 100 down
    ticks = _thin(values, 9)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])


def _log_ticks(ax: Axes, values: pd.Series) -> None:
    """Plain-number ticks on a log y axis (1-2-5, or finer when the range is narrow)."""
    low, high = float(values.min()), float(values.max())
    ax.set_ylim(low / 1.15, min(high * 1.15, 130))
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        ticks = [m * 10.0**e for e in range(-3, 3) for m in steps]
        ticks = [t for t in ticks if low / 1.15 <= t <= high * 1.15]
        if len(ticks) >= 3:
            break
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _thin(values: list[float], most: int) -> list[float]:
    """At most `most` ticks, spread evenly over the levels, always keeping the first and last."""
    if len(values) <= most:
        return values
    keep = np.unique(np.round(np.linspace(0, len(values) - 1, most)).astype(int))
    return [values[i] for i in keep]


def _legends(fig: Figure, ax: Axes, variants: list[str], run_labels: list[str]) -> None:
    """Colour = variant on the first panel; with several runs, a second legend for line style = run."""
    handles = [
        Line2D([], [], color=variant_color(v), marker="o", linewidth=1.6, markersize=4) for v in variants
    ]
    first = ax.legend(handles, [variant_name(v) for v in variants], title="variant", loc="best")
    if len(run_labels) > 1:
        ax.add_artist(first)
        styles = [
            Line2D([], [], color="black", linestyle=ls, marker=m, markersize=4, linewidth=1.4)
            for ls, m in (RUN_STYLES[i % len(RUN_STYLES)] for i in range(len(run_labels)))
        ]
        _run_legend(fig, styles, run_labels)


def _run_legend(fig: Figure, handles: list[Line2D], labels: list[str]) -> None:
    """Line style = run, below the panels (saved with bbox_inches="tight", so it is kept)."""
    fig.legend(
        handles,
        labels,
        title="run",
        loc="upper center",
        ncol=min(len(labels), 2),
        bbox_to_anchor=(0.5, 0.0),
        frameon=False,
    )


def _title(runs: Sequence[RunData]) -> str:
    names = list(dict.fromkeys(f"{r.config.model.name} on {r.config.data.dataset}" for r in runs))
    return ", ".join(names)


# --- accuracy during training (Figure 3) -------------------------------------------------------


def choose_levels(levels: Sequence[int], most: int = 5) -> list[int]:
    """Up to `most` levels spread evenly from dense to sparsest, as the paper's Figure 3 picks."""
    levels = sorted(set(levels))
    if len(levels) <= most:
        return levels
    keep = np.unique(np.round(np.linspace(0, len(levels) - 1, most)).astype(int))
    return [levels[i] for i in keep]


def curves_figure(runs: Sequence[RunData], curve_levels: Sequence[int] | None) -> Figure | None:
    variants = list(dict.fromkeys(v for r in runs for v in r.variants))
    all_levels = sorted({int(lv) for r in runs for lv in r.summary.level})
    chosen = [lv for lv in curve_levels if lv in all_levels] if curve_levels else choose_levels(all_levels)
    if not variants or not chosen:
        return None
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(chosen)))
    fig, axes = plt.subplots(1, len(variants), figsize=(5.2 * len(variants), 4.4), squeeze=False, sharey=True)
    drawn: list[pd.DataFrame] = []
    level_pm: dict[int, float] = {}
    for ax, variant in zip(axes[0], variants, strict=True):
        for i, run in enumerate(runs):
            linestyle, _ = RUN_STYLES[i % len(RUN_STYLES)]
            for color, level in zip(colors, chosen, strict=True):
                curve = run.history(variant, level)
                if curve is None:
                    continue
                rows = run.summary[(run.summary.variant == variant) & (run.summary.level == level)]
                level_pm.setdefault(level, float(rows.percent_remaining.mean()))
                x, y = curve.iteration, 100 * curve.accuracy
                ax.plot(x, y, color=color, linestyle=linestyle, linewidth=1.5)
                if curve.trials.max() > 1:
                    ax.fill_between(
                        x,
                        100 * curve.accuracy_min,
                        100 * curve.accuracy_max,
                        color=color,
                        alpha=0.12,
                    )
                drawn.append(curve)
        ax.set_title(variant_name(variant), color=variant_color(variant))
        ax.set_xlabel("Training iteration")
    if not drawn:
        plt.close(fig)
        return None
    splits = {curve.attrs["split"] for curve in drawn}
    axes[0][0].set_ylabel(
        "Test accuracy (%)"
        if splits == {"test"}
        else "Validation accuracy (%)"
        if splits == {"validation"}
        else "Accuracy (%): test, or validation where no test curve was kept"
    )
    _zoom(axes[0][0], drawn)
    handles = [Line2D([], [], color=c, linewidth=2) for c in colors]
    names = [f"Pm {level_pm.get(lv, float('nan')):.1f}% (level {lv})" for lv in chosen]
    axes[0][-1].legend(handles, names, title="level", loc="lower right")
    if len(runs) > 1:
        styles = [
            Line2D([], [], color="black", linestyle=RUN_STYLES[i % len(RUN_STYLES)][0])
            for i in range(len(runs))
        ]
        _run_legend(fig, styles, [r.label for r in runs])
    fig.suptitle(_title(runs), fontsize=11)
    fig.tight_layout()
    return fig


def _zoom(ax: Axes, curves: list[pd.DataFrame]) -> None:
    """Zoom on where training ends up, as the paper does: the first evaluation (the untrained
    network, near chance) would otherwise squash every difference worth seeing."""
    later = pd.concat([c[c.iteration > c.iteration.min()] for c in curves])
    if later.empty:
        return
    low, high = 100 * later.accuracy_min.min(), 100 * later.accuracy_max.max()
    pad = max(0.1 * (high - low), 0.2)
    ax.set_ylim(low - pad, min(high + pad, 100.0))


# --- layer-wise sparsity -------------------------------------------------------------------------


def sparsity_figure(runs: Sequence[RunData]) -> Figure | None:
    tables = [(i, run, run.layer_sparsity()) for i, run in enumerate(runs)]
    tables = [(i, run, t) for i, run, t in tables if t is not None and not t.empty]
    if not tables:
        return None
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    layers = list(dict.fromkeys(layer for _, _, t in tables for layer in t.layer))
    layer_colors = {layer: _LAYER_COLORS[k % len(_LAYER_COLORS)] for k, layer in enumerate(layers)}
    for i, _run, table in tables:
        linestyle, marker = RUN_STYLES[i % len(RUN_STYLES)]
        for layer, rows in table.groupby("layer", sort=False):
            # Earlier layers wider and underneath: layers pruned at the same rate share one curve,
            # and each stays visible as a band around the next.
            under = 1 - layers.index(layer) / max(len(layers) - 1, 1)  # 1 for the first layer, 0 the last
            ax.plot(
                rows.level_percent_remaining,
                rows.percent_remaining,
                color=layer_colors[layer],
                linestyle=linestyle,
                marker=marker,
                markersize=3 + 4 * under,
                linewidth=1.5 + 4.5 * under,
                zorder=3 - under,
            )
    pms = pd.concat([t.level_percent_remaining for _, _, t in tables])
    diagonal = sorted(pms.unique())
    ax.plot(diagonal, diagonal, color="black", linestyle=":", linewidth=1, zorder=10)  # the overall Pm
    _pm_axis(ax, pms)
    ax.set_yscale("log")
    _log_ticks(ax, pd.concat([t.percent_remaining for _, _, t in tables]))
    ax.set_xlabel(PM_LABEL)
    ax.set_ylabel("Layer's weights remaining (%, log scale)")
    sizes = {}
    for _, _, table in tables:
        sizes.update(dict(zip(table.layer, table["size"], strict=True)))
    handles = [Line2D([], [], color=c, linewidth=2) for c in layer_colors.values()]
    handles.append(Line2D([], [], color="black", linestyle=":", linewidth=1))
    names = [f"{layer} ({int(sizes[layer]):,} weights)" for layer in layer_colors] + ["all layers (Pm)"]
    ax.legend(handles, names, title="layer", loc="lower left")
    if len(runs) > 1:
        labels = [run.label for _, run, _ in tables]
        styles = [
            Line2D(
                [],
                [],
                color="black",
                linestyle=RUN_STYLES[i % len(RUN_STYLES)][0],
                marker=RUN_STYLES[i % len(RUN_STYLES)][1],
            )
            for i, _, _ in tables
        ]
        _run_legend(fig, styles, labels)
    ax.set_title(f"IMP's masks, layer by layer: {_title(runs)}")
    fig.tight_layout()
    return fig
