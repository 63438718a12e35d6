"""What the stored masks keep (`lth masks`, the report's "Masks" section; docs/design.md, "Masks").

A run directory holds every finished level's mask (`mask.safetensors`) and the dense level's θ0
(`imp/level_00/init.safetensors`). From them, per run:

- **sparsity**: each layer's surviving weights per (trial, variant, level), counted from the masks;
- **overlap**: the Jaccard index |A ∩ B| / |A ∪ B| of two masks, per layer and pooled, for masks
  that ask a question: the same (variant, level) in two trials (does IMP find the same ticket
  from another seed?), the same (trial, variant, level) in two runs given together (do two
  strategies or criteria find the same ticket from the same θ0?), consecutive levels of one
  trial (how nested are the rounds?) and the ticket against each control at one level;
- **random overlap**: beside each, the overlap that two independent uniformly random masks with
  the same per-layer counts would have (`random_jaccard`, derived there, not drawn);
- **pixels**: for image data, how many of the first layer's weights out of each input pixel
  survive (for a fully connected first layer; a convolution shares its weights over positions,
  so no weight belongs to a pixel and the map is per input channel only);
- **θ0 of survivors and of pruned weights**: magnitude and sign of the initial weights that a
  level's ticket keeps and prunes, per layer (the paper's tickets keep larger initial weights).

A *record* has no masks or weights: it is refused here with the fix, and the report says so.
Reading only; nothing here writes into a run directory.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lth import layout
from lth.config import Config
from lth.errors import StoreError
from lth.lottery.variants import TICKET
from lth.pruning.mask import Mask
from lth.store import read_tensors

ALL = "all"  # the `layer` of a pooled row: every pruned layer together
HISTOGRAM_BINS = 40
# The kinds of overlap, in the order they are shown, and what each pair is.
OVERLAP_KINDS = {
    "trials": "same variant and level, two trials (different seeds)",
    "runs": "same trial, variant and level, two runs (same seed)",
    "levels": "level L against L + 1, same trial and variant",
    "variants": "the ticket against a control, same trial and level",
}


def random_jaccard(a: int, b: int, n: int) -> float:
    """The Jaccard index expected of two independent uniformly random masks keeping `a` and `b`
    of `n` weights.

    Derivation: each of B's b weights is in A with probability a/n, so E|A ∩ B| = ab/n, and
    |A ∪ B| = a + b − |A ∩ B|. This returns E|A ∩ B| / E|A ∪ B| = (ab/n) / (a + b − ab/n), the
    Jaccard index of the expected counts. |A ∩ B| is hypergeometric with standard deviation at
    most √(ab/n), so the ratio of expectations is within O(1/n) of the expected ratio for the
    layer sizes here (tests/test_masks.py checks it against random draws). Two empty masks are
    identical: 1.
    """
    if n <= 0 or a + b == 0:
        return 1.0
    meet = a * b / n
    return meet / (a + b - meet)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """|A ∩ B| and |A ∪ B| of two masks of one shape (any dtype; nonzero = kept)."""
    a, b = a.bool(), b.bool()
    return int((a & b).sum()), int((a | b).sum())


def overlap_rows(a: Mask, b: Mask) -> list[dict[str, Any]]:
    """Per layer and pooled (`layer = "all"`): sizes, counts, intersection, union, the Jaccard
    index and its random baseline. The pooled baseline sums each layer's expected counts, so it
    is that of random masks with the same *per-layer* counts."""
    rows = []
    meets = 0.0
    for name in a:
        meet, union = jaccard(a[name], b[name])
        n, ca, cb = a[name].numel(), int(a[name].sum()), int(b[name].sum())
        meets += ca * cb / n
        rows.append(_overlap_row(name, n, ca, cb, meet, union, random_jaccard(ca, cb, n)))
    n, ca, cb = (sum(r[k] for r in rows) for k in ("size", "count_a", "count_b"))
    meet, union = sum(r["intersection"] for r in rows), sum(r["union"] for r in rows)
    expected = meets / (ca + cb - meets) if ca + cb else 1.0
    rows.append(_overlap_row(ALL, n, ca, cb, meet, union, expected))
    return rows


def _overlap_row(layer: str, n: int, ca: int, cb: int, meet: int, union: int, expected: float) -> dict:
    return {
        "layer": layer,
        "size": n,
        "count_a": ca,
        "count_b": cb,
        "intersection": meet,
        "union": union,
        "jaccard": meet / union if union else 1.0,
        "random_jaccard": expected,
    }


# --- reading a run's masks ---------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One stored training: a (trial, variant, level)."""

    trial: int
    variant: str
    level: int


@dataclass
class RunMasks:
    """A run directory's finished levels and their masks.

    The last few masks read are kept: pairs are visited in an order that reuses them, and a large
    network's masks (VGG-19: 20M weights each) are too many to hold all at once."""

    path: Path
    config: Config
    label: str
    percent: dict[Key, float]  # Pm (percent of the pruned layers' weights) of each finished level
    _masks: OrderedDict[Key, Mask] = field(default_factory=OrderedDict, repr=False)

    KEEP = 8  # masks held at once

    @property
    def keys(self) -> list[Key]:
        return sorted(self.percent, key=lambda k: (k.trial, _variant_rank(k.variant), k.level))

    def mask(self, key: Key) -> Mask:
        if key in self._masks:
            self._masks.move_to_end(key)
        else:
            path = layout.level_dir(self.path, key.trial, key.variant, key.level) / layout.tensors("mask")
            self._masks[key] = Mask(read_tensors(path))
            if len(self._masks) > self.KEEP:
                self._masks.popitem(last=False)
        return self._masks[key]

    def theta0(self, trial: int) -> dict[str, torch.Tensor]:
        """The trial's initial weights: the dense level's start weights (the ticket's θ0)."""
        return read_tensors(layout.level_dir(self.path, trial, TICKET, 0) / layout.tensors("init"))


def _variant_rank(variant: str) -> int:
    from lth.lottery import variants

    order = variants.reported()
    return order.index(variant) if variant in order else len(order)


def open_run(path: str | Path, label: str | None = None) -> RunMasks:
    """A run directory's finished levels; a folder that is not a run, a record (no masks) or a
    run with no finished level is a one-line `StoreError` naming the fix."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{path} is not a folder; give a run directory that `lth run` printed")
    if (record := layout.read_record(path)) is not None:
        source = record.get("run") or "the run directory it was recorded from"
        raise StoreError(f"{path} is a record, which keeps no masks or weights; run `lth masks` on {source}")
    config = layout.read_config(path)
    percent = {}
    for trial in range(config.lottery.trials):
        for result_file in layout.stored_results(path, trial):
            try:
                result = json.loads(result_file.read_text())
                key = Key(int(result["trial"]), str(result["variant"]), int(result["level"]))
                percent[key] = float(result["percent_remaining"])
            except (OSError, UnicodeDecodeError, ValueError, KeyError):
                continue  # a damaged result is the report's to name; its level is left out here
            if not (result_file.parent / layout.tensors("mask")).exists():
                del percent[key]
    if not percent:
        raise StoreError(f"{path} has no finished level with a mask yet; run it first (`lth run`)")
    return RunMasks(path, config, label or path.name, percent)


# --- the analysis ------------------------------------------------------------------------------


@dataclass
class PixelMap:
    """How many of the first layer's weights out of each input (C, H, W) survive at a level,
    averaged over the trials; `outgoing` is how many each input has when dense."""

    run: str
    level: int
    percent_remaining: float
    layer: str
    counts: np.ndarray  # (C, H, W)
    outgoing: int
    trials: int


@dataclass
class MaskAnalysis:
    sparsity: pd.DataFrame  # run, trial, variant, level, percent_remaining, layer, remaining, size, percent
    overlap: pd.DataFrame  # kind, run_a, run_b, trial_a, trial_b, variant_a, variant_b, level_a, level_b, …
    pixels: list[PixelMap]
    theta0: pd.DataFrame  # run, level, layer, kept, weights, mean_abs, positive (fractions)
    theta0_histogram: pd.DataFrame  # run, level, layer, kept, left, right, count
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    def overlap_summary(self) -> pd.DataFrame:
        """The pooled overlap per kind, run pair, variants and levels: the mean over pairs of
        trials (or the one pair), with Pm of the sparser mask."""
        rows = self.overlap[self.overlap.layer == ALL]
        keys = ["kind", "run_a", "run_b", "variant_a", "variant_b", "level_a", "level_b"]
        if rows.empty:
            return pd.DataFrame(columns=[*keys, "pairs", "percent_remaining", "jaccard", "random_jaccard"])
        grouped = rows.groupby(keys, sort=False)
        out = grouped.agg(
            pairs=("jaccard", "size"),
            percent_remaining=("percent_remaining", "mean"),
            jaccard=("jaccard", "mean"),
            random_jaccard=("random_jaccard", "mean"),
        ).reset_index()
        order = {kind: i for i, kind in enumerate(OVERLAP_KINDS)}
        return out.sort_values(
            ["kind", "run_a", "run_b", "variant_a", "variant_b", "level_b"],
            key=lambda c: c.map(order) if c.name == "kind" else c,
            kind="stable",
        ).reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sparsity": self.sparsity.to_dict(orient="records"),
            "overlap": self.overlap_summary().to_dict(orient="records"),
            "pixels": [
                {
                    "run": p.run,
                    "level": p.level,
                    "percent_remaining": p.percent_remaining,
                    "layer": p.layer,
                    "outgoing": p.outgoing,
                    "trials": p.trials,
                    "counts": p.counts.round(4).tolist(),
                }
                for p in self.pixels
            ],
            "theta0": self.theta0.to_dict(orient="records"),
            "notes": self.notes,
        }


def analyse(runs: Sequence[RunMasks], levels: Sequence[int] | None = None) -> MaskAnalysis:
    """Every number of the analysis for `runs`; `levels` chooses the levels of the pixel maps
    (default: up to five from dense to sparsest) and θ0 is compared at the deepest of them."""
    notes: list[str] = []
    sparsity = _sparsity(runs)
    overlap = pd.DataFrame(list(_overlaps(runs)))
    if overlap.empty:
        overlap = pd.DataFrame(columns=["kind", "layer", "jaccard", "random_jaccard"])
    pixels, theta0, histogram = [], [], []
    for run in runs:
        chosen = _levels(run, levels)
        if not chosen:
            notes.append(f"{run.label}: none of levels {list(levels or [])} is finished for the ticket")
            continue
        pixels += _pixels(run, chosen, notes)
        rows, bins = _theta0(run, chosen[-1], notes)
        theta0 += rows
        histogram += bins
    return MaskAnalysis(sparsity, overlap, pixels, pd.DataFrame(theta0), pd.DataFrame(histogram), notes)


def _sparsity(runs: Sequence[RunMasks]) -> pd.DataFrame:
    rows = []
    for run in runs:
        for key in run.keys:
            mask = run.mask(key)
            sizes, remaining = mask.sizes(), mask.remaining()
            for layer in mask:
                rows.append(
                    {
                        "run": run.label,
                        "trial": key.trial,
                        "variant": key.variant,
                        "level": key.level,
                        "percent_remaining": run.percent[key],
                        "layer": layer,
                        "remaining": remaining[layer],
                        "size": sizes[layer],
                        "percent": 100 * remaining[layer] / sizes[layer],
                    }
                )
    return pd.DataFrame(rows)


def _pairs(runs: Sequence[RunMasks]) -> Iterable[tuple[str, RunMasks, Key, RunMasks, Key]]:
    """Every (kind, run, key, run, key) whose two masks the analysis compares (`OVERLAP_KINDS`)."""
    for run in runs:
        by_cell: dict[tuple[str, int], list[Key]] = {}
        for key in run.keys:
            by_cell.setdefault((key.variant, key.level), []).append(key)
        for keys in by_cell.values():
            for a, b in itertools.combinations(keys, 2):
                yield "trials", run, a, run, b
    for run_a, run_b in itertools.combinations(runs, 2):
        for key in run_a.keys:
            if key in run_b.percent:
                yield "runs", run_a, key, run_b, key
    for run in runs:
        present = set(run.keys)
        for key in run.keys:
            after = Key(key.trial, key.variant, key.level + 1)
            if key.level >= 1 and after in present:
                yield "levels", run, key, run, after
            if key.variant == TICKET and key.level >= 1:
                for other in present:
                    if other.variant != TICKET and (other.trial, other.level) == (key.trial, key.level):
                        yield "variants", run, key, run, other


def _overlaps(runs: Sequence[RunMasks]) -> Iterable[dict[str, Any]]:
    for kind, run_a, a, run_b, b in _pairs(runs):
        pair = {
            "kind": kind,
            "run_a": run_a.label,
            "run_b": run_b.label,
            "trial_a": a.trial,
            "trial_b": b.trial,
            "variant_a": a.variant,
            "variant_b": b.variant,
            "level_a": a.level,
            "level_b": b.level,
            "percent_remaining": min(run_a.percent[a], run_b.percent[b]),
        }
        for row in overlap_rows(run_a.mask(a), run_b.mask(b)):
            yield pair | row


def _levels(run: RunMasks, levels: Sequence[int] | None) -> list[int]:
    """The ticket's stored levels among `levels`; by default up to five pruned ones, evenly from
    the first to the sparsest (level 0's mask keeps everything: its map would be flat)."""
    from lth.report.figures import choose_levels

    stored = sorted({k.level for k in run.keys if k.variant == TICKET})
    if levels is not None:
        return [lv for lv in levels if lv in stored]
    return choose_levels([lv for lv in stored if lv > 0] or stored)


def _ticket_keys(run: RunMasks, level: int) -> list[Key]:
    return [k for k in run.keys if k.variant == TICKET and k.level == level]


def first_layer(run: RunMasks) -> tuple[str, tuple[int, ...]] | str:
    """The prunable weight that reads the input, and the input's shape (C, H, W); or why there is
    none to draw. The model is built (weights unused) for its layer order: masks keep theirs sorted."""
    from lth.compose import model_options
    from lth.data import get as data_source
    from lth.errors import LthError
    from lth.models import build

    config = run.config
    try:
        shape = data_source(config.data.dataset).input_shape
        model = build(
            config.model.name,
            shape,
            data_source(config.data.dataset).num_classes,
            **model_options(config.model),
        )
    except LthError:
        return f"{config.model.name} on {config.data.dataset} is not one of lth's models and data sets"
    masked = set(run.mask(run.keys[0]))
    first = next((name for name, _ in model.named_parameters() if name in masked), None)
    if first is None:
        return "no layer of the model is pruned"
    return first, shape


def _pixels(run: RunMasks, levels: Sequence[int], notes: list[str]) -> list[PixelMap]:
    found = first_layer(run)
    if isinstance(found, str):
        notes.append(f"{run.label}: no pixel map: {found}")
        return []
    layer, shape = found
    maps = []
    for level in levels:
        keys = _ticket_keys(run, level)
        weights = [run.mask(k)[layer] for k in keys]
        if weights[0].dim() == 2 and weights[0].shape[1] == math.prod(shape):
            counts = torch.stack([w.sum(0) for w in weights]).mean(0).reshape(shape)
            outgoing = weights[0].shape[0]
        elif weights[0].dim() == 4 and weights[0].shape[1] == shape[0]:
            if level == levels[0]:
                notes.append(
                    f"{run.label}: the first layer ({layer}) is a convolution, whose weights are shared by "
                    "every position: no weight belongs to a pixel, so its map is per input channel only"
                )
            counts = torch.stack([w.sum((0, 2, 3)) for w in weights]).mean(0).reshape(shape[0], 1, 1)
            outgoing = weights[0][:, 0].numel()
        else:
            notes.append(
                f"{run.label}: no pixel map: {layer} of shape {tuple(weights[0].shape)} does not read "
                f"the {shape} input directly"
            )
            return []
        maps.append(
            PixelMap(run.label, level, _mean_pm(run, keys), layer, counts.numpy(), outgoing, len(keys))
        )
    return maps


def _mean_pm(run: RunMasks, keys: Sequence[Key]) -> float:
    return float(np.mean([run.percent[k] for k in keys]))


def _theta0(run: RunMasks, level: int, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """Per layer, the initial weights the ticket at `level` keeps and prunes: count, mean |θ0|,
    fraction positive, and a histogram of θ0 (signed: both magnitude and sign), pooled over trials."""
    if level == 0:
        notes.append(f"{run.label}: θ0 is compared at level 0, where nothing is pruned yet")
    values: dict[tuple[str, bool], list[torch.Tensor]] = {}
    for key in _ticket_keys(run, level):
        try:
            theta0 = run.theta0(key.trial)
        except StoreError as err:
            notes.append(f"{run.label}: θ0 of trial {key.trial} left out: {err}")
            continue
        mask = run.mask(key)
        for layer, m in mask.items():
            w = theta0[layer].float()
            kept = m.bool()
            values.setdefault((layer, True), []).append(w[kept])
            values.setdefault((layer, False), []).append(w[~kept])
    rows, bins = [], []
    pm = _mean_pm(run, _ticket_keys(run, level))
    for layer in dict.fromkeys(layer for layer, _ in values):
        both = torch.cat(values[(layer, True)] + values[(layer, False)])
        edge = float(both.abs().max()) or 1.0
        edges = np.linspace(-edge, edge, HISTOGRAM_BINS + 1)
        for kept in (True, False):
            w = torch.cat(values[(layer, kept)])
            head = {"run": run.label, "level": level, "percent_remaining": pm, "layer": layer, "kept": kept}
            rows.append(
                head
                | {
                    "weights": w.numel(),
                    "mean_abs": float(w.abs().mean()) if w.numel() else math.nan,
                    "positive": float((w > 0).float().mean()) if w.numel() else math.nan,
                }
            )
            counts, _ = np.histogram(w.numpy(), bins=edges)
            bins += [
                head | {"left": lo, "right": hi, "count": int(c)}
                for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
            ]
    return rows, bins
