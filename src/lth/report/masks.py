"""`lth masks`: run directories → the mask analysis (`analysis/masks.py`) as CSV, JSON, figures and
a printed table; and the same analysis for `lth report`'s "Masks" section.

Files (in `--out`, default `RUN_DIR/masks` for one run, `./masks` for several):
    sparsity.csv           run, trial, variant, level, percent_remaining, layer, remaining, size, percent
    overlap.csv            every compared pair, per layer and pooled (`layer = all`), with the random baseline
    theta0.csv             per layer, kept and pruned: weights, mean |θ0|, fraction positive
    theta0_histogram.csv   the histograms the θ0 figure draws
    masks.json             the pooled overlap per kind, the pixel maps, θ0 and notes, for scripts
    mask_*.png, .svg       the figures (`report/mask_figures.py`), and layer_sparsity as the report draws it
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lth.analysis import masks as analysis
from lth.errors import StoreError
from lth.report import compare
from lth.report.contents import _json_ready
from lth.report.figures import FigureFile, draw, sparsity_figure
from lth.report.load import read_run
from lth.report.mask_figures import builders
from lth.store import write_atomic

DEFAULT_MULTI_OUT = Path("masks")
# What the overlap columns of `level_table` mean, said under it here and on the report's page.
OVERLAP_NOTE = (
    "Overlap is the Jaccard index of the masks (all layers pooled; mean over pairs), in brackets "
    "that of random masks with the same per-layer counts."
)


@dataclass
class MaskReport:
    analysis: analysis.MaskAnalysis
    runs: list[analysis.RunMasks]
    out: Path
    figures: list[FigureFile] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def text(self) -> str:
        return (
            summary_text(self.analysis, self.runs)
            + "\n\n"
            + "\n".join(
                [f"{name}: {path}" for name, path in self.files.items()]
                + [f"figure: {f.png}" for f in self.figures]
            )
        )


def open_runs(run_dirs: Sequence[str | Path]) -> list[analysis.RunMasks]:
    """Each run once, labelled as `lth report` labels them (by what differs between configs)."""
    if not run_dirs:
        raise StoreError("no run directory given: name one or more, e.g. `lth masks runs/lenet300-mnist-…`")
    unique = list(dict.fromkeys(Path(d).resolve() if Path(d).exists() else Path(d) for d in run_dirs))
    runs = [analysis.open_run(d) for d in unique]
    for run, label in zip(
        runs, compare.labels([r.config for r in runs], [r.path.name for r in runs]), strict=True
    ):
        run.label = label
    return runs


def write_masks(
    run_dirs: Sequence[str | Path], out: str | Path | None = None, *, levels: Sequence[int] | None = None
) -> MaskReport:
    """Analyse the runs' masks and write the tables, masks.json and figures to `out`."""
    runs = open_runs(run_dirs)
    found = analysis.analyse(runs, levels)
    out = Path(out) if out is not None else (runs[0].path / "masks" if len(runs) == 1 else DEFAULT_MULTI_OUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot write to {out} ({err.strerror}); choose another with --out DIR") from None
    report = MaskReport(found, runs, out)
    tables = {
        "sparsity": found.sparsity,
        "overlap": found.overlap,
        "theta0": found.theta0,
        "theta0_histogram": found.theta0_histogram,
    }
    for name, table in tables.items():
        report.files[name] = out / f"{name}.csv"
        write_atomic(report.files[name], table.to_csv(index=False).encode())
    report.files["json"] = out / "masks.json"
    write_atomic(report.files["json"], json.dumps(_json_ready(found.to_dict()), indent=1).encode())
    layers = [read_run(r.path) for r in runs]
    for data, run in zip(layers, runs, strict=True):
        data.label = run.label
    sparsity = (
        "layer_sparsity",
        "Layer-wise sparsity",
        "Percent of each prunable layer's weights that IMP's mask keeps, against the overall Pm.",
        lambda: sparsity_figure(layers),
    )
    report.figures = draw(out, [sparsity, *builders(found)])
    return report


# --- the printed table ---------------------------------------------------------------------------


def summary_text(found: analysis.MaskAnalysis, runs: Sequence[analysis.RunMasks]) -> str:
    """Per run: layer sparsity and overlaps per level side by side (random baselines in brackets),
    θ0 of kept against pruned weights, the pixel maps in numbers, and what was left out."""
    blocks = []
    several = len(runs) > 1
    overlap = found.overlap_summary()
    for run in runs:
        lines = [f"== {run.label if several else run.path} =="]
        table = level_table(found.sparsity, overlap, run.label)
        lines += ["", table.to_string(index=False), ""]
        lines.append(OVERLAP_NOTE)
        theta = found.theta0[found.theta0.run == run.label] if not found.theta0.empty else found.theta0
        if not theta.empty:
            level = int(theta.level.iloc[0])
            lines += ["", f"θ0 of the weights the ticket keeps and prunes at level {level}:"]
            shown = theta.assign(
                kept=theta.kept.map({True: "kept", False: "pruned"}),
                mean_abs=theta.mean_abs.map(lambda v: f"{v:.4f}"),
                positive=theta.positive.map(lambda v: f"{100 * v:.1f}%"),
            )[["layer", "kept", "weights", "mean_abs", "positive"]]
            lines.append(
                shown.rename(columns={"mean_abs": "mean |θ0|", "positive": "θ0 > 0"}).to_string(index=False)
            )
        for p in (p for p in found.pixels if p.run == run.label and p.counts.shape[1] > 1):
            lines.append(_pixel_line(p))
        blocks.append("\n".join(lines))
    blocks += [f"note: {n}" for n in found.notes]
    runs_pairs = overlap[overlap.kind == "runs"]
    if not runs_pairs.empty:
        blocks.append(
            "Across runs (same trial, variant and level):\n" + _runs_table(runs_pairs).to_string(index=False)
        )
    return "\n\n".join(blocks)


def level_table(sparsity: pd.DataFrame, overlap: pd.DataFrame, label: str) -> pd.DataFrame:
    """One row per level of run `label`: Pm, each layer's percent kept (ticket, mean over trials),
    and the overlaps (`overlap_summary`) of the ticket (with the next level, across trials, against
    each control). `lth masks` prints it; the report's "Masks" section shows it."""
    imp = sparsity[(sparsity.run == label) & (sparsity.variant == analysis.TICKET)]
    table = imp.pivot_table(index="level", columns="layer", values="percent", aggfunc="mean", sort=False)
    table = table.map(lambda v: f"{v:.2f}")
    table.insert(0, "Pm %", imp.groupby("level").percent_remaining.mean().map(lambda v: f"{v:.2f}"))
    own = overlap[(overlap.run_a == label) & (overlap.run_b == label)]
    columns = {
        "next level": own[(own.kind == "levels") & (own.variant_a == analysis.TICKET)],
        "other trials": own[(own.kind == "trials") & (own.variant_a == analysis.TICKET)],
    }
    for control in dict.fromkeys(own[own.kind == "variants"].variant_b):
        columns[f"vs {control}"] = own[(own.kind == "variants") & (own.variant_b == control)]
    for name, rows in columns.items():
        if not rows.empty:
            cells = {int(r.level_a): f"{r.jaccard:.3f} ({r.random_jaccard:.3f})" for r in rows.itertuples()}
            table[name] = table.index.map(lambda lv, cells=cells: cells.get(lv, ""))
    return table.reset_index()


def _runs_table(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "runs": rows.run_a + " ~ " + rows.run_b,
            "variant": rows.variant_a,
            "level": rows.level_a,
            "Pm %": rows.percent_remaining.map(lambda v: f"{v:.2f}"),
            "pairs": rows.pairs,
            "overlap (random)": [
                f"{j:.3f} ({r:.3f})" for j, r in zip(rows.jaccard, rows.random_jaccard, strict=True)
            ],
        }
    )


def _pixel_line(p: analysis.PixelMap) -> str:
    """The pixel map in one sentence: how much of the first layer's survivors read the centre
    (the middle half of the rows and columns, a quarter of the pixels)."""
    image = p.counts.sum(0)
    h, w = image.shape
    centre = image[h // 4 : h - h // 4, w // 4 : w - w // 4].sum()
    share = centre / image.sum() if image.sum() else float("nan")
    area = ((h - 2 * (h // 4)) * (w - 2 * (w // 4))) / (h * w)
    empty = int((image == 0).sum())
    return (
        f"level {p.level} (Pm {p.percent_remaining:.1f}%): {100 * share:.1f}% of {p.layer}'s surviving "
        f"weights read the central {100 * area:.0f}% of pixels; {empty} of {h * w} pixels have none left"
    )
