"""One run directory, read for a report: its config, its summary, and what it still lacks.

A report never fails because a run is unfinished: it reports the levels that are stored and
lists the (trial, variant, level) triples the config asks for that summary.csv does not hold yet.
Per-level files a figure needs (history.csv, result.json, masks) are read only for levels the
summary lists as done; one that is missing or unreadable is skipped with a note, not an error.
Nor does a run written before lth recorded Pm over all weights (see `fill_percent_remaining_all`).
A record (`lth record`: the same layout without weights) reads the same way: nothing here needs a
tensor file where result.json holds the number, and the report says which trials it holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lth import layout
from lth.config import Config
from lth.environment import signature, trial_signatures
from lth.errors import StoreError
from lth.lottery import variants
from lth.lottery.variants import TICKET
from lth.report.table import read_summary, unpruned_weights
from lth.steps import Step
from lth.store import LevelDir, read_tensors


@dataclass(frozen=True)
class Missing:
    """A (trial, variant, level) the config asks for that the summary does not hold yet."""

    trial: int
    variant: str
    level: int
    under_way: bool  # its directory holds a checkpoint or a mask: started, not finished
    unlisted: bool = False  # its result.json exists, but summary.csv was not rewritten after it


@dataclass
class RunData:
    path: Path
    config: Config
    summary: pd.DataFrame
    label: str = ""  # how figures and tables name this run (see `compare.label_runs`)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files a figure wanted but could not read
    # What trained the stored results (`lth.environment.signature`) → how many; and each trial →
    # the engines that trained it.
    engines: dict[str, int] = field(default_factory=dict)
    trial_engines: dict[int, list[str]] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # record.json where this is a record, not a run directory

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def mixed_trials(self) -> dict[int, list[str]]:
        """The trials whose levels mix engines: their numbers are not one engine's unbroken run's."""
        return {t: labels for t, labels in self.trial_engines.items() if len(labels) > 1}

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def unpruned_weights(self) -> bool:
        """Whether Pm over all weights differs from Pm over the pruned layers in this run."""
        return unpruned_weights(self.summary)

    @property
    def variants(self) -> list[str]:
        """The variants the summary holds, in the paper's order (imp first), then any others."""
        present = list(dict.fromkeys(self.summary["variant"]))
        order = variants.reported()
        return [v for v in order if v in present] + [v for v in present if v not in order]

    def level_dir(self, trial: int, variant: str, level: int) -> Path:
        return layout.level_dir(self.path, trial, variant, level)

    def within(self, path: Path) -> str:
        """A file of this run as its notes name it: from the run directory, which the page names."""
        return path.relative_to(self.path).as_posix()

    def iterations(self) -> int | None:
        """Training iterations per level, as the runner recorded them (epochs already converted)."""
        for row in self.summary.itertuples():
            result = self._result(int(row.trial), TICKET, int(row.level))
            if result is not None and "iterations" in result:
                return int(result["iterations"])
        # No readable result.json: the config says, when it counts in iterations (epochs need the data).
        steps = Step.parse(self.config.training.steps)
        return steps.value if steps.unit == "it" else None

    # --- per-level files, for figures ------------------------------------------------------------

    def history(self, variant: str, level: int) -> pd.DataFrame | None:
        """Accuracy against iteration for one (variant, level), averaged over its trials.

        Test accuracy where every trial recorded the full test curve (`training.test_curve`),
        else validation accuracy: by default the test set is evaluated only where the early-stop
        record needs it. `curve.attrs["split"]` says which ("test" or "validation").
        Columns: iteration, accuracy (mean), accuracy_min, accuracy_max, trials.
        """
        rows = self.summary[(self.summary.variant == variant) & (self.summary.level == level)]
        curves = []
        for trial in sorted(rows.trial.unique()):
            path = self.level_dir(int(trial), variant, level) / layout.HISTORY
            try:
                curve = pd.read_csv(path, usecols=["iteration", "val_accuracy", "test_accuracy"])
            except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError):
                self.notes.append(
                    f"{self.within(path)} is missing or unreadable: left out of the accuracy curves"
                )
                continue
            curves.append(curve.assign(trial=trial))
        if not curves:
            return None
        both = pd.concat(curves)
        split = "test" if both.test_accuracy.notna().all() else "validation"
        grouped = both.groupby("iteration")[f"{'test' if split == 'test' else 'val'}_accuracy"]
        out = grouped.agg(["mean", "min", "max", "count"]).reset_index()
        out = out.rename(
            columns={"mean": "accuracy", "min": "accuracy_min", "max": "accuracy_max", "count": "trials"}
        )
        out.attrs["split"] = split
        return out

    def layer_sparsity(self) -> pd.DataFrame | None:
        """Per imp level and prunable layer: weights remaining, layer size and percent remaining.

        Counts come from each level's result.json (`remaining_per_layer`), or its mask where an
        older result lacks them; sizes from the dense level's counts, else from a mask (a record
        has no masks). Averaged over trials (global pruning can leave each trial's layers
        differently sparse; layer-wise pruning cannot).
        """
        sizes = self._dense_sizes()
        rows = []
        imp = self.summary[self.summary.variant == TICKET]
        for trial, level in imp[["trial", "level"]].itertuples(index=False):
            mask_path = self.level_dir(int(trial), TICKET, int(level)) / layout.tensors("mask")
            result = self._result(int(trial), TICKET, int(level))
            remaining = (result or {}).get("remaining_per_layer")
            if sizes is None or remaining is None:
                try:
                    mask = read_tensors(mask_path)
                except StoreError:
                    self.notes.append(f"{self.within(mask_path)} is unreadable: layer sizes unknown")
                    continue
                sizes = sizes or {name: t.numel() for name, t in mask.items()}
                if remaining is None:
                    remaining = {name: int(t.sum().item()) for name, t in mask.items()}
            for layer, count in remaining.items():
                rows.append({"trial": trial, "level": level, "layer": layer, "remaining": count})
        if not rows or sizes is None:
            return None
        table = pd.DataFrame(rows).groupby(["level", "layer"], sort=False)["remaining"].mean().reset_index()
        table["size"] = table["layer"].map(sizes)
        table["percent_remaining"] = 100 * table["remaining"] / table["size"]
        pm = imp.groupby("level")["percent_remaining"].mean()
        table["level_percent_remaining"] = table["level"].map(pm)
        return table.sort_values(["level", "layer"], key=_layer_order(list(sizes))).reset_index(drop=True)

    def _dense_sizes(self) -> dict[str, int] | None:
        """Each pruned layer's size: its surviving weights at level 0, where every weight survives."""
        for trial in sorted(self.summary.trial.unique()):
            dense = (self._result(int(trial), TICKET, 0) or {}).get("remaining_per_layer")
            if dense is not None:
                return dense
        return None

    def _result(self, trial: int, variant: str, level: int) -> dict | None:
        path = self.level_dir(trial, variant, level) / layout.RESULT
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None


def _layer_order(layers: list[str]):
    """Sort key keeping layers in the model's order (the mask's), not alphabetical."""
    rank = {name: i for i, name in enumerate(layers)}

    def key(column: pd.Series) -> pd.Series:
        return column.map(rank).fillna(len(rank)) if column.name == "layer" else column

    return key


def read_run(run_dir: str | Path) -> RunData:
    """A run directory's config and summary; raises `StoreError` naming the problem and the fix."""
    path = Path(run_dir)
    summary = read_summary(path)  # checks the directory and summary.csv first: the commoner mistakes
    config = layout.read_config(path)
    order = {v: i for i, v in enumerate(variants.reported())}
    summary = summary.sort_values(
        ["variant", "level", "trial"],
        key=lambda c: c.map(order).fillna(len(order)) if c.name == "variant" else c,
    ).reset_index(drop=True)
    run = RunData(path=path, config=config, summary=summary, record=layout.read_record(path))
    fill_percent_remaining_all(run)
    read_engines(run)
    run.missing = find_missing(run)
    return run


def fill_percent_remaining_all(run: RunData) -> None:
    """Give every row its Pm over all weights. A summary written before lth recorded it lacks the
    column (or, rewritten since, has empty cells where a level's files were unreadable): derive it
    from the level's stored mask and weights; where those are unreadable too, the pruned layers'
    Pm stands in, which is exact where every conv and linear weight is pruned (LeNet and
    Conv-2/4/6 as the paper prunes them), and a note says so."""
    summary = run.summary
    if "percent_remaining_all" not in summary:
        summary["percent_remaining_all"] = math.nan
    for i in summary.index[summary.percent_remaining_all.isna()]:
        trial, variant, level = summary.loc[i, ["trial", "variant", "level"]]
        derived = LevelDir(run.level_dir(int(trial), variant, int(level))).percent_remaining_all()
        summary.loc[i, "percent_remaining_all"] = math.nan if derived is None else derived
    unknown = summary.percent_remaining_all.isna()
    if unknown.any():
        summary.loc[unknown, "percent_remaining_all"] = summary.percent_remaining[unknown]
        run.notes.append(
            f"{int(unknown.sum())} of {len(summary)} results predate Pm over all weights and have no "
            "readable mask.safetensors and final.safetensors to derive it from: Pm over the pruned "
            "layers stands in for it (the same where every conv and linear weight is pruned)"
        )


def read_engines(run: RunData) -> None:
    """Which engines trained the run's stored results, and which trained each trial."""
    engines_of = []
    engines: dict[str, int] = {}
    for trial, variant, level in run.summary[["trial", "variant", "level"]].itertuples(index=False):
        if level == 0 and variant != TICKET:
            continue  # the dense level is one result, listed under every variant
        result = run._result(int(trial), variant, int(level))
        engine = (result or {}).get("engine")
        label = signature(engine)
        engines[label] = engines.get(label, 0) + 1
        engines_of.append((int(trial), engine))
    run.engines = dict(sorted(engines.items(), key=lambda item: -item[1]))
    run.trial_engines = trial_signatures(engines_of)


def engine_lines(run: RunData) -> list[str]:
    """The engines (with their trials, where there are several), and a warning per trial that
    mixes them, as the report prints them."""

    def trials(label: str) -> str:
        held = [t for t, labels in run.trial_engines.items() if label in labels]
        return f"; trial{'s' * (len(held) != 1)} {', '.join(map(str, held))}" if len(run.engines) > 1 else ""

    lines = [
        f"Trained by {label} ({n} result{'s' * (n != 1)}{trials(label)})" for label, n in run.engines.items()
    ]
    lines += [
        f"Trial {t} mixes engines ({'; '.join(labels)}): its later levels are not what one engine's "
        "unbroken run gives to the last digit (see the README: which settings change numbers)"
        for t, labels in run.mixed_trials.items()
    ]
    return lines


def record_line(run: RunData) -> str | None:
    """What the report says of a record: that it is one, and which trials it holds."""
    if run.record is None:
        return None
    trials = run.record.get("trials", [])
    held = f"trial{'s' * (len(trials) != 1)} {', '.join(map(str, trials)) or 'none'}"
    return (
        f"Reading a record (no weights; `lth record`) of run {run.record.get('run', '?')}: it holds "
        f"{held} of the config's {run.config.lottery.trials}"
    )


def find_missing(run: RunData) -> list[Missing]:
    """What the config's trials × variants × levels ask for and summary.csv lacks."""
    lot = run.config.lottery
    done = set(run.summary[["trial", "variant", "level"]].itertuples(index=False, name=None))
    missing = []
    for trial in range(lot.trials):
        for variant in lot.variants:
            for level in range(lot.levels + 1):
                if (trial, variant, level) in done:
                    continue
                folder = run.level_dir(trial, variant, level)
                unlisted = (folder / layout.RESULT).exists()  # killed between its result and the summary
                started = (folder / layout.CHECKPOINT).exists() or (folder / layout.tensors("mask")).exists()
                missing.append(Missing(trial, variant, level, started and not unlisted, unlisted))
    return missing


def describe_missing(run: RunData) -> list[str]:
    """One line per trial with missing work, e.g. 'trial 1: imp levels 3–4, reinit levels 3–4'."""
    lot = run.config.lottery
    lines = []
    by_trial: dict[int, list[Missing]] = {}
    for item in run.missing:
        by_trial.setdefault(item.trial, []).append(item)
    for trial, items in sorted(by_trial.items()):
        if len(items) == len(lot.variants) * (lot.levels + 1):
            held = run.record is None or trial in run.record.get("trials", [])
            lines.append(f"trial {trial}: {'not started' if held else 'not in this record'}")
            continue
        parts = []
        for variant in lot.variants:
            levels = [m.level for m in items if m.variant == variant]
            if levels:
                parts.append(f"{variant} {_ranges(levels)}")
        line = f"trial {trial}: " + ", ".join(parts)
        under_way = sorted({(m.variant if m.level else TICKET, m.level) for m in items if m.under_way})
        if under_way:
            line += " (under way or interrupted: " + ", ".join(f"{v} level {lv}" for v, lv in under_way) + ")"
        unlisted = sorted({(m.variant if m.level else TICKET, m.level) for m in items if m.unlisted})
        if unlisted:
            line += (
                " (finished but not in summary.csv: "
                + ", ".join(f"{v} level {lv}" for v, lv in unlisted)
                + "; run the same `lth run` again to list them)"
            )
        lines.append(line)
    return lines


def _ranges(levels: list[int]) -> str:
    """[1, 2, 3, 5] → 'levels 1–3, 5'."""
    levels = sorted(levels)
    spans: list[list[int]] = []
    for level in levels:
        if spans and level == spans[-1][1] + 1:
            spans[-1][1] = level
        else:
            spans.append([level, level])
    text = ", ".join(f"{a}" if a == b else f"{a}–{b}" for a, b in spans)
    return f"level{'s' if len(levels) > 1 else ''} {text}"
