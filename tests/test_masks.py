"""Mask analysis (`lth masks`, analysis/masks.py): overlaps and their random baseline, layer
sparsity, the first layer's pixel map, θ0 of survivors, the command's files and errors, and the
report's "Masks" section (absent for a record, which says why)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lth import cli, layout
from lth.analysis import masks
from lth.pruning.mask import Mask
from lth.record import write_record
from lth.report import build_report
from lth.report.page import NO_MASKS
from tests.helpers import tiny_config, tiny_run, tiny_splits

# MNIST's shape, so the config's data set (mnist) says how to draw the first layer as an image.
DATA = tiny_splits(n_train=300, shape=(1, 28, 28))


def _run(root: Path, *overrides: str) -> Path:
    return tiny_run(root, tiny_config(*overrides, trials=2), DATA, hidden=(16, 8))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny real runs from the same seeds: magnitude and random pruning."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(root), _run(root, "pruning.criterion='random'")
    finally:
        torch.set_num_threads(threads)


def _mask(**layers: list[int]) -> Mask:
    return Mask({name: torch.tensor(bits, dtype=torch.float32) for name, bits in layers.items()})


def test_identical_masks_overlap_fully_and_disjoint_masks_not_at_all():
    a = _mask(x=[1, 1, 0, 0, 1, 0], y=[0, 1])
    disjoint = _mask(x=[0, 0, 1, 1, 0, 1], y=[1, 0])
    same = {r["layer"]: r["jaccard"] for r in masks.overlap_rows(a, a)}
    apart = {r["layer"]: r["jaccard"] for r in masks.overlap_rows(a, disjoint)}
    assert same == {"x": 1.0, "y": 1.0, masks.ALL: 1.0}
    assert apart == {"x": 0.0, "y": 0.0, masks.ALL: 0.0}
    assert masks.random_jaccard(0, 0, 10) == 1.0  # two empty masks are the same mask


def test_the_random_baseline_matches_random_draws():
    """(ab/n) / (a + b − ab/n) against the mean Jaccard index of independent uniform draws, per
    layer and pooled over layers of different sizes and densities."""
    g = torch.Generator().manual_seed(0)
    sizes = {"big": (3000, 600, 1500), "small": (400, 300, 40)}  # n, a, b

    def draw(n: int, k: int) -> torch.Tensor:
        bits = torch.zeros(n)
        bits[torch.randperm(n, generator=g)[:k]] = 1
        return bits

    drawn: dict[str, list[float]] = {}
    for _ in range(300):
        a = Mask({name: draw(n, ka) for name, (n, ka, _) in sizes.items()})
        b = Mask({name: draw(n, kb) for name, (n, _, kb) in sizes.items()})
        rows = masks.overlap_rows(a, b)
        for row in rows:
            drawn.setdefault(row["layer"], []).append(row["jaccard"])
    expected = {r["layer"]: r["random_jaccard"] for r in rows}
    for name, (n, ka, kb) in sizes.items():
        assert expected[name] == pytest.approx(masks.random_jaccard(ka, kb, n))
    for layer, values in drawn.items():
        mean = sum(values) / len(values)
        assert mean == pytest.approx(expected[layer], abs=0.005), layer


def test_layer_sparsity_is_the_masks_counts(runs):
    run = masks.open_run(runs[0])
    found = masks.analyse([run])
    assert len(found.sparsity) == 3 * len(run.keys)  # three pruned layers per stored training
    for row in found.sparsity.itertuples():
        path = layout.level_dir(runs[0], row.trial, row.variant, row.level) / layout.tensors("mask")
        mask = Mask.load(path)
        assert row.remaining == mask.remaining()[row.layer]
        assert row.size == mask.sizes()[row.layer]


def test_the_pixel_map_counts_the_first_layers_survivors(runs):
    run = masks.open_run(runs[0])
    found = masks.analyse([run], levels=[1, 3])
    assert [p.level for p in found.pixels] == [1, 3]
    for p in found.pixels:
        assert p.layer == "hidden.0.weight" and p.counts.shape == (1, 28, 28) and p.outgoing == 16
        paths = [layout.level_dir(runs[0], t, "imp", p.level) / layout.tensors("mask") for t in (0, 1)]
        survivors = sum(Mask.load(f)["hidden.0.weight"].sum().item() for f in paths) / 2  # mean of trials
        assert p.counts.sum() == pytest.approx(survivors)
    theta = found.theta0
    assert set(theta.level) == {3} and set(theta.kept) == {True, False}
    dense = sum(Mask.load(layout.level_dir(runs[0], 0, "imp", 3) / layout.tensors("mask")).sizes().values())
    assert theta.weights.sum() == 2 * dense  # every weight of both trials, kept or pruned


def test_overlaps_pair_trials_runs_levels_and_controls(runs):
    found = masks.analyse([masks.open_run(r) for r in runs])
    pooled = found.overlap[found.overlap.layer == masks.ALL]
    assert set(pooled.kind) == {"trials", "runs", "levels", "variants"}
    dense = pooled[(pooled.kind == "trials") & (pooled.level_a == 0)]
    assert (dense.jaccard == 1.0).all()  # level 0 keeps every weight in every trial
    reinit = pooled[(pooled.kind == "variants") & (pooled.variant_b == "reinit")]
    assert (reinit.jaccard == 1.0).all()  # reinit trains the ticket's own mask
    across = pooled[pooled.kind == "runs"]
    assert set(zip(across.trial_a, across.level_a, strict=True)) >= {(0, 3), (1, 3)}
    assert (across.trial_a == across.trial_b).all() and (across.level_a == across.level_b).all()


def test_lth_masks_writes_its_files_and_prints_a_table(runs, tmp_path, capsys):
    out = tmp_path / "masks"
    assert cli.main(["masks", str(runs[0]), str(runs[1]), "--out", str(out), "--levels", "2,3"]) == 0
    printed = capsys.readouterr().out
    assert "next level" in printed and "Across runs" in printed and "θ0" in printed
    for name in ("sparsity.csv", "overlap.csv", "theta0.csv", "theta0_histogram.csv", "masks.json"):
        assert (out / name).stat().st_size > 0, name
    for name in ("layer_sparsity", "mask_overlap", "mask_pixels", "mask_theta0"):
        assert (out / f"{name}.png").exists(), name


def test_lth_masks_refuses_a_folder_that_is_not_a_run_and_a_record(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    record = tmp_path / "record"
    write_record(runs[0], record)
    for folder, words in ((tmp_path / "empty", "not a run directory"), (record, "is a record")):
        assert cli.main(["masks", str(folder)]) == 1
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err


# --- the report's "Masks" section ----------------------------------------------------------------

MASK_FIGURES = {"mask_overlap", "mask_pixels", "mask_theta0"}


def test_the_report_of_a_run_has_a_masks_section_and_its_figures(runs, tmp_path):
    report = build_report([runs[0]], tmp_path / "report")
    names = [f.name for f in report.figures]
    assert set(names) >= MASK_FIGURES and names.count("layer_sparsity") == 1
    assert report.masks is not None and set(report.masks.sparsity.run) == {report.runs[0].run.label}
    page = (tmp_path / "report" / "report.md").read_text()
    assert page.index("## Masks") < page.index("## Figures")
    masks_section = page[page.index("## Masks") : page.index("## Figures")]
    assert "| level | Pm % |" in masks_section and "next level" in masks_section
    assert "random masks with the same per-layer counts" in masks_section
    assert NO_MASKS not in page


def test_the_report_of_a_record_has_no_masks_and_says_why(runs, tmp_path):
    record = tmp_path / "record"
    write_record(runs[0], record)
    report = build_report([record], tmp_path / "report")
    assert report.masks is None
    assert not MASK_FIGURES & {f.name for f in report.figures}
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Masks" not in page and NO_MASKS in page
