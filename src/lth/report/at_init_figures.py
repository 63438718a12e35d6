"""The pruning-at-initialization figures (Frankle et al., ICLR 2021), from `report/at_init.py`:
each method's tickets against Pm, each method against its ablations, and the per-layer sparsity
each criterion chooses. Colour is method in the first and last (IMP in black), variant in the
second, as in `figures.py`; bars and bands are the min and max over trials.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth.lottery.variants import TICKET
from lth.report.at_init import METRIC, AtInit
from lth.report.figures import PM_LABEL, _pm_axis, variant_color, variant_name
from lth.report.load import RunData

Builder = tuple[str, str, str, Callable[[], Figure | None]]
_COLORS = plt.get_cmap("tab10").colors


def builders(at_init: AtInit | None, runs: Sequence[RunData]) -> list[Builder]:
    """`figures.render_all`'s entries for a report with runs that prune at initialization."""
    if at_init is None:
        return []
    return [
        (
            "at_init_accuracy",
            "Pruning at initialization against IMP",
            "Early-stop test accuracy of each method's pruned network (the ticket variant) against Pm: "
            "IMP prunes the trained network and resets to θ0, the others choose the mask at θ0 "
            "before training. Mean over trials, bars min–max.",
            lambda: _methods_figure(at_init),
        ),
        (
            "at_init_ablations",
            "Each method against its ablations",
            "Early-stop test accuracy against Pm of each method's ticket, its mask shuffled within "
            "each layer (`random`), its weights re-initialised (`reinit`) and its scores inverted "
            "(`invert`). Where the ablations match the ticket, the method found per-layer "
            "sparsities, not particular weights. Mean over trials, shaded min–max.",
            lambda: _ablations_figure(at_init),
        ),
        (
            "at_init_layers",
            "Layer-wise sparsity by method",
            "Percent of each prunable layer's weights that each method's mask keeps, against Pm.",
            lambda: _layers_figure(at_init, runs),
        ),
    ]


def _color(at_init: AtInit, method: str) -> str | tuple[float, ...]:
    return "black" if method == "IMP" else _COLORS[list(at_init.criteria).index(method) % 10]


def _methods_figure(at_init: AtInit) -> Figure | None:
    rows = at_init.table[at_init.table.variant == TICKET]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for method in at_init.methods:
        group = rows[rows.method == method].sort_values("level")
        mean = 100 * group[METRIC].to_numpy()
        low = mean - 100 * group["early_stop_test_accuracy_min"].to_numpy()
        high = 100 * group["early_stop_test_accuracy_max"].to_numpy() - mean
        ax.errorbar(
            group.percent_remaining_mean,
            mean,
            yerr=np.vstack([low, high]),
            color=_color(at_init, method),
            marker="o",
            markersize=4 if method != "IMP" else 5,
            linewidth=1.6 if method != "IMP" else 2.6,
            capsize=2.5,
            label=method if method == "IMP" else f"{method} at init",
        )
    _pm_axis(ax, rows.percent_remaining_mean)
    ax.set_xlabel(PM_LABEL)
    ax.set_ylabel("Test accuracy at early stop (%)")
    ax.legend(title="method", loc="lower left")
    fig.tight_layout()
    return fig


def _ablations_figure(at_init: AtInit) -> Figure | None:
    methods = list(at_init.methods)
    columns = min(3, len(methods))
    rows_n = -(-len(methods) // columns)
    size = (4.6 * columns, 3.6 * rows_n)
    fig, axes = plt.subplots(rows_n, columns, figsize=size, squeeze=False, sharey=True)
    for ax, method in zip(axes.flat, methods, strict=False):
        table = at_init.table[at_init.table.method == method]
        for variant, group in table.groupby("variant", sort=False):
            group = group.sort_values("level")
            ax.plot(
                group.percent_remaining_mean,
                100 * group[METRIC],
                color=variant_color(variant),
                marker="o",
                markersize=3,
                linewidth=2.4 if variant == TICKET else 1.4,
                label=variant_name(variant),
            )
            ax.fill_between(
                group.percent_remaining_mean,
                100 * group.early_stop_test_accuracy_min,
                100 * group.early_stop_test_accuracy_max,
                color=variant_color(variant),
                alpha=0.15,
                linewidth=0,
            )
        _pm_axis(ax, table.percent_remaining_mean)
        ax.set_title(method if method == "IMP" else f"{method} at init")
        ax.set_xlabel("Pm (%)")
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("Test accuracy at early stop (%)")
    axes.flat[0].legend(loc="lower left", fontsize=7.5)
    fig.tight_layout()
    return fig


def _layers_figure(at_init: AtInit, runs: Sequence[RunData]) -> Figure | None:
    by_label = {run.label: run for run in runs}
    tables = {m: by_label[lb].layer_sparsity() for m, lb in at_init.methods.items() if lb in by_label}
    tables = {m: t for m, t in tables.items() if t is not None and not t.empty}
    if not tables:
        return None
    layers = list(dict.fromkeys(layer for t in tables.values() for layer in t.layer))
    fig, axes = plt.subplots(1, len(layers), figsize=(4.4 * len(layers), 3.8), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers, strict=True):
        for method, table in tables.items():
            rows = table[table.layer == layer]
            ax.plot(
                rows.level_percent_remaining,
                rows.percent_remaining,
                color=_color(at_init, method),
                marker="o",
                markersize=3,
                linewidth=2.4 if method == "IMP" else 1.4,
                label=method if method == "IMP" else f"{method} at init",
            )
        pms = pd.concat([t.level_percent_remaining for t in tables.values()])
        ax.plot(sorted(pms.unique()), sorted(pms.unique()), color="grey", linestyle=":", linewidth=1)
        _pm_axis(ax, pms)  # the dotted diagonal: the overall Pm
        ax.set_yscale("log")
        ax.set_title(layer)
        ax.set_xlabel("Pm (%)")
    axes[0][0].set_ylabel("Layer's weights remaining (%, log)")
    axes[0][0].legend(loc="lower left", fontsize=7.5)
    fig.tight_layout()
    return fig
