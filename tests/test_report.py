"""Reports: figures from a real (tiny) run, the numbers behind them, comparisons labelled by what
differs, partial runs reported as far as they go, published claims checked, and clear errors."""

import json
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from lth.cli import main
from lth.config import Config, load_preset, with_overrides
from lth.errors import StoreError
from lth.lottery import write_summary
from lth.report import Report, build_report
from lth.report import paper as published
from lth.report.build import load_runs
from lth.report.compare import differing_keys, labels
from lth.report.findings import compute_findings
from lth.report.load import describe_missing, read_run
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_run, tiny_splits

DATA = tiny_splits()
FIGURES = (
    "early_stop_iteration",
    "early_stop_accuracy",
    "final_accuracy",
    "accuracy_curves",
    "layer_sparsity",
)


def _config(*overrides: str) -> Config:
    return tiny_config(*overrides, trials=2)


def _real_run(root: Path, *overrides: str) -> Path:
    return tiny_run(root, _config(*overrides), DATA)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny real runs that differ only in strategy: reset and continue."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains several times faster without thread hand-offs
    try:
        return _real_run(root), _real_run(root, "lottery.strategy='continue'")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single(runs) -> Report:
    """The report of the reset run, written to its default place."""
    return build_report([runs[0]])


# --- figures and page from a real run ----------------------------------------------------------


def test_one_run_renders_every_figure_and_a_self_contained_page(runs, single):
    reset, _ = runs
    out = reset / "report"  # the default for one run
    assert single.out == out
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    page = (out / "report.html").read_text()
    drawn = [f.name for f in single.figures]  # FIGURES, then the "Masks" section's (test_masks.py)
    assert set(drawn) >= {*FIGURES, "mask_overlap", "mask_theta0"}
    assert page.count('src="data:image/svg+xml;base64,') == len(drawn)
    assert 'src="' not in page.replace('src="data:', "")  # nothing fetched from beside the page
    markdown = (out / "report.md").read_text()
    assert all(f"]({name}.png)" in markdown for name in FIGURES)
    for section in (
        "## Findings",
        "## Against the paper",
        "## Results per variant and level",
        "## Configuration",
    ):
        assert section in markdown
    assert 'strategy = "reset"' in markdown  # the resolved config is on the page


def test_aggregate_csv_is_the_summary_averaged_over_trials(runs, single):
    reset, _ = runs
    written = pd.read_csv(reset / "report" / "aggregate.csv")
    summary = pd.read_csv(reset / "summary.csv")
    expected = summary.groupby(["variant", "level"]).agg(
        trials=("trial", "nunique"),
        acc_mean=("early_stop_test_accuracy", "mean"),
        acc_std=("early_stop_test_accuracy", "std"),
        acc_min=("early_stop_test_accuracy", "min"),
        acc_max=("early_stop_test_accuracy", "max"),
        it_mean=("early_stop_iteration", "mean"),
        train_max=("final_train_accuracy", "max"),
    )
    got = written.set_index(["variant", "level"]).loc[expected.index]
    assert (got.trials == expected.trials).all() and (got.trials == 2).all()
    for ours, theirs in (
        ("early_stop_test_accuracy_mean", "acc_mean"),
        ("early_stop_test_accuracy_std", "acc_std"),
        ("early_stop_test_accuracy_min", "acc_min"),
        ("early_stop_test_accuracy_max", "acc_max"),
        ("early_stop_iteration_mean", "it_mean"),
        ("final_train_accuracy_max", "train_max"),
    ):
        pd.testing.assert_series_equal(got[ours], expected[theirs], check_names=False, rtol=1e-12)
    assert list(dict.fromkeys(written.variant)) == ["imp", "reinit", "random"]
    assert len(written) == len(single.aggregate) == 3 * 4


def test_layer_sparsity_comes_from_the_masks_and_results(runs):
    reset, _ = runs
    table = read_run(reset).layer_sparsity()
    assert table is not None
    dense = table[table.level == 0]
    assert (dense.remaining == dense["size"]).all() and (dense.percent_remaining == 100).all()
    hidden = table[table.layer == "hidden.0.weight"].sort_values("level")
    assert hidden["size"].iloc[0] == 64 * 32
    assert hidden.percent_remaining.is_monotonic_decreasing  # each round prunes 20% of what remains


def test_accuracy_curves_are_test_where_every_trial_kept_it_and_validation_otherwise(tmp_path):
    full = _real_run(tmp_path, "training.test_curve=true", "lottery.levels=1", "lottery.variants=['imp']")
    cheap = tmp_path / "cheap"
    shutil.copytree(full, cheap)
    # As the default evaluation leaves it: the test set skipped where validation loss rose.
    path = cheap / "trial_1/imp/level_01/history.csv"
    pd.read_csv(path).assign(test_accuracy=lambda h: h.test_accuracy.where(h.index != 2)).to_csv(
        path, index=False
    )
    for run, split, column in ((full, "test", "test_accuracy"), (cheap, "validation", "val_accuracy")):
        curve = read_run(run).history("imp", 1)
        assert curve.attrs["split"] == split
        histories = [pd.read_csv(run / f"trial_{t}/imp/level_01/history.csv") for t in (0, 1)]
        expected = (histories[0][column] + histories[1][column]) / 2
        assert curve.accuracy.to_numpy() == pytest.approx(expected.to_numpy())
        assert (curve.trials == 2).all()


# --- comparisons ----------------------------------------------------------------------------------


def test_comparison_labels_say_what_differs_between_configs():
    a, b = _config(), _config("lottery.strategy='continue'", "pruning.rates={fc=0.4, output=0.1}")
    assert differing_keys([a, b]) == ["pruning.rates.fc", "lottery.strategy"]
    assert labels([a, b], ["x", "y"]) == [
        "pruning.rates.fc=0.2, lottery.strategy=reset",
        "pruning.rates.fc=0.4, lottery.strategy=continue",
    ]
    assert labels([a], ["only"]) == ["only"]
    more = _config("lottery.levels=5")
    assert labels([a, more], ["x", "y"]) == ["lottery.levels=3", "lottery.levels=5"]
    assert labels([a, with_overrides(b, ["lottery.levels=5"])], ["x", "y"])[1] == (
        "pruning.rates.fc=0.4, lottery.strategy=continue"  # how many levels is not what differs
    )
    assert labels([a, _config()], ["same", "same"]) == ["same #1", "same #2"]  # nothing differs


def test_several_runs_are_overlaid_labelled_by_their_difference_and_printed_as_json(
    runs, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["report", *map(str, runs), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    out = tmp_path / "report"  # the default for several runs
    assert data["out"] == "report" and data["differing_keys"] == ["lottery.strategy"]
    assert [r["label"] for r in data["runs"]] == ["lottery.strategy=reset", "lottery.strategy=continue"]
    assert data["runs"][0]["complete"] is True and data["runs"][0]["findings"]["dense_accuracy"] > 0.25
    assert {row["run"] for row in data["aggregate"]} == {
        "lottery.strategy=reset",
        "lottery.strategy=continue",
    }
    # The page's Masks section, as numbers: each run's layer sparsity and the runs' mask overlap.
    masks = data["masks"]
    assert {row["run"] for row in masks["sparsity"]} == {
        "lottery.strategy=reset",
        "lottery.strategy=continue",
    }
    assert all(0 <= row["percent"] <= 100 for row in masks["sparsity"])
    assert "runs" in {row["kind"] for row in masks["overlap"]}
    assert set(pd.read_csv(out / "aggregate.csv").run) == {
        "lottery.strategy=reset",
        "lottery.strategy=continue",
    }
    assert all((out / f"{name}.png").exists() for name in FIGURES)
    assert "lottery.strategy=continue" in (out / "early_stop_accuracy.svg").read_text()


# --- findings and the paper, on summaries whose answers are known -------------------------------


def _crafted_run(
    root: Path,
    rows: list[tuple],
    *overrides: str,
    variants=("imp", "reinit"),
    base: Config | None = None,
    pm_all: Callable[[pd.Series], pd.Series] | None = None,
) -> Path:
    """A run directory holding only config.toml and summary.csv, with the given rows:
    (trial, variant, level, Pm, early-stop iteration, early-stop test accuracy). Without `pm_all`
    (Pm over all weights from Pm) the summary is as lth wrote it before it recorded that."""
    config = with_overrides(
        base or Config(), [f"lottery.variants={json.dumps(list(variants))}", "lottery.trials=2", *overrides]
    )
    run = root / "crafted"
    run.mkdir()
    (run / "config.toml").write_text(config.to_toml())
    frame = pd.DataFrame(
        rows,
        columns=[
            "trial",
            "variant",
            "level",
            "percent_remaining",
            "early_stop_iteration",
            "early_stop_test_accuracy",
        ],
    )
    frame["early_stop_val_loss"] = 0.1
    frame["early_stop_val_accuracy"] = frame.early_stop_test_accuracy
    frame["final_test_accuracy"] = frame.early_stop_test_accuracy
    frame["final_train_accuracy"] = 1.0
    if pm_all is not None:
        frame.insert(4, "percent_remaining_all", pm_all(frame.percent_remaining))
    frame.to_csv(run / "summary.csv", index=False)
    return run


def _imp_and_reinit(pms, iterations, accuracies, reinit_accuracies, reinit_iterations):
    """Rows for two trials; per-level values are (trial 0, trial 1) pairs."""
    rows = []
    for level, pm in enumerate(pms):
        for trial in (0, 1):
            rows.append((trial, "imp", level, pm, iterations[level][trial], accuracies[level][trial]))
            if level == 0:
                rows.append((trial, "reinit", 0, pm, iterations[0][trial], accuracies[0][trial]))
            else:
                rows.append(
                    (
                        trial,
                        "reinit",
                        level,
                        pm,
                        reinit_iterations[level][trial],
                        reinit_accuracies[level][trial],
                    )
                )
    return rows


# Dense: accuracy 0.95 on average, early stop at 1000 and 2000. Level 1 falls short of dense;
# level 2 gains 2 points and stops 4× and 2× sooner (mean of ratios 3.0; ratio of means would be
# 2.4); level 3 is the smallest that still matches; level 4 falls short again.
PMS = [100.0, 80.0, 64.0, 51.2, 41.0]
ITERATIONS = [(1000, 2000), (1000, 2000), (250, 1000), (1000, 1000), (2000, 2000)]
ACCURACIES = [(0.94, 0.96), (0.945, 0.95), (0.96, 0.98), (0.95, 0.952), (0.93, 0.93)]
REINIT_ACC = [None, (0.94, 0.94), (0.95, 0.95), (0.90, 0.90), (0.90, 0.91)]
REINIT_ITERATIONS = [None, (1000, 2000), (500, 3000), (1000, 1000), (2000, 2000)]


def test_findings_on_a_crafted_summary(tmp_path):
    rows = _imp_and_reinit(PMS, ITERATIONS, ACCURACIES, REINIT_ACC, REINIT_ITERATIONS)
    run = _crafted_run(tmp_path, rows, "lottery.levels=4")
    found = compute_findings(read_run(run).summary)
    assert found.dense_accuracy == pytest.approx(0.95)
    assert found.dense_iteration == pytest.approx(1500)
    assert found.matches_dense_down_to == 51.2 and found.matches_dense_level == 3
    assert found.short_of_dense_above == [80.0]
    assert found.max_speedup == pytest.approx(3.0) and found.max_speedup_pm == 64.0
    assert found.max_gain == pytest.approx(2.0) and found.max_gain_level == 2
    controls = found.controls.set_index("level")
    assert controls.imp_minus_reinit.to_dict() == pytest.approx({1: 0.75, 2: 2.0, 3: 5.1, 4: 2.5})
    assert controls.loc[2, "reinit_over_imp_iteration"] == pytest.approx((2 + 3) / 2)
    text = " ".join(found.sentences())
    assert "down to Pm 51.2% (level 3)" in text and "3.00× (67% sooner) at Pm 64.0%" in text


def test_the_page_sets_a_run_beside_the_paper_with_verdicts(tmp_path):
    # LeNet on MNIST at the paper's Pm values; dense 98.0%; at 21.1% a 2× speed-up (paper 1.61×)
    # and +0.6 points over its reinit at 2.0× (paper: +0.5 at 2.51×); at 13.5% +0.2 points
    # (paper: more than +0.3); every level at least as accurate as dense down to 3.6%.
    pms = [100.0, 51.3, 21.1, 13.5, 3.6]
    its = [(1000, 1000), (900, 900), (500, 500), (700, 700), (1000, 1000)]
    acc = [(0.98, 0.98), (0.981, 0.981), (0.984, 0.984), (0.982, 0.982), (0.98, 0.98)]
    reinit_acc = [None, (0.98, 0.98), (0.978, 0.978), (0.97, 0.97), (0.95, 0.95)]
    reinit_its = [None, (900, 900), (1000, 1000), (1000, 1000), (1000, 1000)]
    run = _crafted_run(tmp_path, _imp_and_reinit(pms, its, acc, reinit_acc, reinit_its), "lottery.levels=4")
    report = build_report([run], tmp_path / "out")
    comparison = report.runs[0].paper
    assert comparison is not None and comparison.experiment == "lenet300-iterative"
    assert not comparison.shortened  # the default config trains 50,000 iterations, as the paper
    assert comparison.deviations == ["lottery.trials: 2 (paper: 5)"]
    kinds = [
        "dense accuracy",
        "matches dense down to 3.6%",
        "1.61× at 21.1%",
        "+0.3 at 13.5%",
        "beats reinit",
    ]
    verdicts = dict(zip(kinds, (c.verdict for c in comparison.checks), strict=True))
    assert verdicts == dict(zip(kinds, ["holds", "holds", "holds", "partly", "partly"], strict=True))
    page = (tmp_path / "out" / "report.md").read_text()
    assert "2.00× at Pm 21.1%" in page and "Section 2, Figure 4" in page and "Shortened run" not in page


def test_each_claim_is_also_checked_on_each_trial_alone(tmp_path):
    # At Pm 21.1% trial 0 stops 4× sooner than its dense network and trial 1 no sooner: the
    # mean of the ratios (2.5×) holds the paper's 1.61×, one trial alone does not. Trial 1 falls
    # below its dense network at 51.3%, trial 0 does not; the mean (-0.05 pt) fails.
    pms = [100.0, 51.3, 21.1, 13.5, 3.6]
    its = [(2000, 1000), (2000, 1000), (500, 1000), (700, 700), (1000, 1000)]
    acc = [(0.98, 0.98), (0.981, 0.978), (0.984, 0.984), (0.984, 0.984), (0.98, 0.98)]
    reinit = [None, (0.98, 0.98), (0.978, 0.978), (0.97, 0.97), (0.95, 0.95)]
    reinit_its = [None, (900, 900), (1000, 1000), (1000, 1000), (1000, 1000)]
    run = _crafted_run(tmp_path, _imp_and_reinit(pms, its, acc, reinit, reinit_its), "lottery.levels=4")
    comparison = build_report([run], tmp_path / "out").runs[0].paper
    checks = {c.text[:30]: c for c in comparison.checks}
    speedup = checks["early stop 38% sooner than den"]
    assert speedup.verdict == "holds" and speedup.ours.startswith("2.50× at Pm 21.1%")
    assert [(t.trial, t.verdict) for t in speedup.per_trial] == [(0, "holds"), (1, "does not hold")]
    assert speedup.per_trial[0].ours.startswith("4.00× at Pm 21.1%")
    matches = checks["winning tickets' early-stop te"]
    assert matches.verdict == "does not hold"
    assert [t.verdict for t in matches.per_trial] == ["holds", "does not hold"]
    assert matches.per_trial[1].ours == "below dense at Pm 51.3% (-0.20 pt)"
    page = (tmp_path / "out" / "report.md").read_text()
    assert "| ✓ holds | ✓ 0 · ✗ 1 |" in page and "| trial 0 | trial 1 |" in page
    assert comparison.to_dict()["checks"][2]["per_trial"][1] == {
        "trial": 1,
        "ours": speedup.per_trial[1].ours,
        "verdict": "does not hold",
    }


def test_a_second_run_is_set_beside_the_first_trial_by_trial(tmp_path):
    # Strategy 2 against Strategy 1, same seed: level 1 is the same training in both; trial 0 of
    # Strategy 2 is behind at levels 2 and 3, trial 1 only at level 3, and stops later at 3.
    pms = [100.0, 80.0, 64.0, 51.2]
    its = [(1000, 1000), (900, 900), (800, 800), (700, 700)]
    acc = [(0.98, 0.98), (0.981, 0.981), (0.982, 0.982), (0.983, 0.983)]
    reinit = [None, (0.97, 0.97), (0.97, 0.97), (0.97, 0.97)]
    its_2 = [(1000, 1000), (900, 900), (800, 800), (1500, 1500)]
    acc_2 = [(0.98, 0.98), (0.981, 0.981), (0.978, 0.983), (0.975, 0.977)]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    reset = _crafted_run(tmp_path / "a", _imp_and_reinit(pms, its, acc, reinit, its), "lottery.levels=3")
    rows = _imp_and_reinit(pms, its_2, acc_2, reinit, its)
    go_on = _crafted_run(tmp_path / "b", rows, "lottery.levels=3", "lottery.strategy='continue'")
    report = build_report([reset, go_on], tmp_path / "out")
    (one,) = report.paired
    assert (one.base, one.other, one.trials) == (
        "lottery.strategy=reset",
        "lottery.strategy=continue",
        [0, 1],
    )
    assert one.levels.difference.tolist() == pytest.approx([0.0, -0.15, -0.7])
    assert one.behind_per_trial == {0: (2, 3), 1: (1, 3)}
    text = " ".join(one.sentences())
    assert (
        "lower at 2 of 3 pruned levels, -0.28 points on average (at Pm 51.2%: 97.60% against 98.30%)" in text
    )
    assert "later at 1 of 3 pruned levels" in text and "2 of 3 in trial 0, 1 of 3 in trial 1" in text
    page = (tmp_path / "out" / "report.md").read_text()
    assert "## Trial by trial" in page and "| 3 | 51.2% | 98.30 | 97.60 | -0.70 | 700 | 1,500 |" in page
    assert report.to_dict()["paired"][0]["behind_per_trial"] == {
        "0": {"behind": 2, "levels": 3},
        "1": {"behind": 1, "levels": 3},
    }
    assert one.engines_differ == [] and "different engines" not in text
    # Trial 1 of the second run as if trained on another CPU: the pair says so.
    from lth.report.load import read_run
    from lth.report.paired import pair

    runs = [read_run(reset), read_run(go_on)]
    amd = "torch 2.13.0+cpu on cpu (AMD EPYC), one model"
    runs[0].trial_engines = {0: [amd], 1: [amd]}
    runs[1].trial_engines = {0: [amd], 1: ["torch 2.13.0+cpu on cpu (Intel(R) Xeon(R) Processor), one model"]}
    (apart,) = pair(runs)
    assert apart.engines_differ == [1]
    assert "Trial 1 trained on different engines in the two runs" in " ".join(apart.sentences())
    # Another seed starts each trial elsewhere: nothing to pair.
    (tmp_path / "c").mkdir()
    other_seed = _crafted_run(tmp_path / "c", rows, "lottery.levels=3", "lottery.seed=7")
    assert build_report([reset, other_seed], tmp_path / "out2").paired == []


def test_a_shortened_run_is_labelled_and_its_unreached_claims_say_so(runs, single):
    comparison = single.runs[0].paper
    assert comparison.shortened and comparison.iterations == 40 and comparison.paper_iterations == 50000
    verdicts = {c.verdict for c in comparison.checks}
    assert {"not reached", "not testable"} <= verdicts  # 3 levels never get to Pm 3.6%
    assert "Shortened run: 40 training iterations per level" in (runs[0] / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    ("steps", "budget_bound"),
    [("50000it", "✗ does not hold"), ("2000it", "– not testable at 2,000 iterations per level")],
)
def test_claims_a_shortened_budget_cannot_test_say_so_instead_of_failing(tmp_path, steps, budget_bound):
    # What `make demo` shows: dense 97.3% (paper 98.0%) and every level stopping at the budget's
    # end, so no speed-up, over dense or over reinit; yet the ticket is above dense at every level
    # and +0.9 points at Pm 13.5%, which compares like with like at any budget.
    pms = [100.0, 51.3, 21.1, 13.5, 3.6]
    its = [(2000, 2000)] * 5
    acc = [(0.973, 0.973), (0.975, 0.975), (0.978, 0.978), (0.982, 0.982), (0.974, 0.974)]
    reinit_acc = [None, (0.97, 0.97), (0.968, 0.968), (0.96, 0.96), (0.95, 0.95)]
    rows = _imp_and_reinit(pms, its, acc, reinit_acc, its)
    run = _crafted_run(tmp_path, rows, "lottery.levels=4", f"training.steps='{steps}'")
    comparison = build_report([run], tmp_path / "out").runs[0].paper
    assert comparison is not None and comparison.shortened == (steps == "2000it")
    at_paper = ["does not hold", "holds", "does not hold", "holds", "partly"]
    shortened = ["not testable", "holds", "not testable", "holds", "not testable"]
    assert [c.verdict for c in comparison.checks] == (shortened if comparison.shortened else at_paper)
    assert comparison.checks[0].ours == "97.30% (test)"  # still beside the paper's, for orientation
    page = (tmp_path / "out" / "report.md").read_text()
    assert page.count(f"| {budget_bound} |") == (3 if comparison.shortened else 2)
    assert ("| ✗" in page) != comparison.shortened


def _resnet_pm_all(conv_pm: pd.Series) -> pd.Series:
    """ResNet-20's Pm over all 270,896 weights from its conv Pm: the output (640) and the 1×1
    shortcuts (2,560) are not pruned."""
    return 100 * (conv_pm / 100 * (270_896 - 3_200) + 3_200) / 270_896


@pytest.mark.parametrize(("level_10", "verdict"), [(0.912, "holds"), (0.905, "does not hold")])
def test_a_resnet_claim_is_checked_at_the_papers_pm_over_all_weights(tmp_path, level_10, verdict):
    # Conv Pm 0.8^k; the paper's 11.8% (all weights) is round 10, whose conv Pm is 10.7%. Tickets
    # at least match dense (91.0%) down to round 9 (14.4% of all weights); round 10 decides the
    # claim "match dense for Pm ≥ 11.8%". Counting conv Pm, round 10 would lie below 11.8% and
    # the claim would hold whatever round 10 did.
    accuracies = [0.91, *[0.915] * 9, level_10, 0.90, 0.90]
    rows = [
        (trial, "imp", level, 100 * 0.8**level, 20_000, accuracy)
        for level, accuracy in enumerate(accuracies)
        for trial in (0, 1)
    ]
    run = _crafted_run(
        tmp_path,
        rows,
        "lottery.levels=12",
        variants=("imp",),
        base=load_preset("resnet18-cifar10"),
        pm_all=_resnet_pm_all,
    )
    report = build_report([run], tmp_path / "out")
    comparison = report.runs[0].paper
    assert comparison is not None and comparison.experiment == "resnet20-warmup" and not comparison.shortened
    accuracy_at, down_to = comparison.checks
    assert (accuracy_at.verdict, accuracy_at.ours) == ("holds", "91.50% at Pm 27.1%")  # round 6: conv 26.2%
    assert down_to.pm_counts == "all" and down_to.verdict == verdict
    assert "Pm 11.8%" in down_to.ours
    page = (tmp_path / "out" / "report.md").read_text()
    assert "| Pm % (pruned layers) | Pm % (all weights) |" in page  # both, as they differ here
    assert "| 10 | 10.7 | 11.8 |" in page and "| all weights |" in page


def test_pm_over_all_weights_is_recorded_and_derived_for_results_that_lack_it(tmp_path):
    run = _real_run(tmp_path, "pruning.rates={fc=0.2}", "lottery.levels=2", "lottery.variants=['imp']")
    # 64 → 32 → 16 → 4: hidden layers of 2,048 and 512 weights pruned 20% a round (rounded half
    # up), the output's 64 never: of 2,624 weights, 2,048 + 64 remain at level 1, 1,638 + 64 at 2.
    expected = {0: 100.0, 1: 100 * (1638 + 410 + 64) / 2624, 2: 100 * (1310 + 328 + 64) / 2624}
    summary = pd.read_csv(run / "summary.csv")
    assert summary.columns[4:6].tolist() == ["percent_remaining", "percent_remaining_all"]
    assert summary.percent_remaining.tolist() == pytest.approx([100.0, 80.0, 63.984375] * 2)
    assert summary.percent_remaining_all.tolist() == pytest.approx([*expected.values()] * 2)

    # Results written before lth recorded it: derived from the level's mask and weights, or,
    # where those are gone too, left empty in summary.csv and taken as the pruned layers' Pm.
    for trial in (0, 1):
        path = run / f"trial_{trial}/imp/level_02/result.json"
        result = json.loads(path.read_text())
        del result["percent_remaining_all"]
        path.write_text(json.dumps(result))
    (run / "trial_1/imp/level_02/final.safetensors").unlink()
    config = read_run(run).config
    write_summary(config, RunStore(tmp_path, config))
    rewritten = pd.read_csv(run / "summary.csv").set_index(["trial", "level"]).percent_remaining_all
    assert rewritten[0, 2] == pytest.approx(expected[2]) and pd.isna(rewritten[1, 2])
    pd.read_csv(run / "summary.csv").drop(columns="percent_remaining_all").to_csv(
        run / "summary.csv", index=False
    )  # a summary.csv from before the column
    loaded = read_run(run)
    pm_all = loaded.summary.set_index(["trial", "level"]).percent_remaining_all
    assert pm_all[0, 2] == pytest.approx(expected[2]) and pm_all[1, 2] == pytest.approx(63.984375)
    assert pm_all[1, 1] == pytest.approx(expected[1])
    assert loaded.notes == [
        "1 of 6 results predate Pm over all weights and have no readable mask.safetensors and "
        "final.safetensors to derive it from: Pm over the pruned layers stands in for it (the same "
        "where every conv and linear weight is pruned)"
    ]


def test_every_published_claim_at_a_pm_is_checked_at_the_papers_pm_over_all_weights():
    claims = [c for experiment in published.experiments() for c in experiment.get("claim", [])]
    assert {published.pm_counts(c) for c in claims if c["kind"] != "dense_accuracy"} == {"all"}
    with pytest.raises(ValueError, match="needs pm_counts"):
        published.pm_counts({"kind": "speedup", "text": "sooner", "pm": 21.1})


def test_pages_name_run_directories_relative_to_themselves(tmp_path):
    rows = _imp_and_reinit(PMS, ITERATIONS, ACCURACIES, REINIT_ACC, REINIT_ITERATIONS)
    run = _crafted_run(tmp_path, rows, "lottery.levels=4")
    build_report([run], tmp_path / "reports" / "out")
    out = tmp_path / "reports" / "out"
    for page in ("report.md", "report.html"):
        text = (out / page).read_text()
        assert "../../crafted" in text and str(tmp_path) not in text  # nor in a note about a file
    assert set(pd.read_csv(out / "aggregate.csv").run_dir) == {"../../crafted"}


def test_a_run_no_experiment_matches_names_the_closest(tmp_path):
    rows = _imp_and_reinit(PMS, ITERATIONS, ACCURACIES, REINIT_ACC, REINIT_ITERATIONS)
    run = read_run(_crafted_run(tmp_path, rows, "lottery.levels=4", "lottery.rewind_step='100it'"))
    assert published.compare(run.config, run.summary, run.iterations()) is None
    assert "lottery.rewind_step=100it (paper: 0it)" in " ".join(published.near_misses(run.config))


# --- partial runs ---------------------------------------------------------------------------------


def test_a_partial_run_reports_what_it_has_and_lists_what_is_missing(runs, tmp_path):
    run = tmp_path / "partial"
    shutil.copytree(runs[0], run, ignore=shutil.ignore_patterns("report"))
    summary = pd.read_csv(run / "summary.csv")
    # Trial 1 was interrupted during imp level 2: levels 2–3 of every variant are not done.
    summary = summary[~((summary.trial == 1) & (summary.level >= 2))]
    summary.to_csv(run / "summary.csv", index=False)
    for variant in ("imp", "reinit", "random"):
        for level in (2, 3):
            shutil.rmtree(run / "trial_1" / variant / f"level_{level:02d}")
    (run / "trial_1" / "imp" / "level_02").mkdir()
    (run / "trial_1" / "imp" / "level_02" / "checkpoint.pt").write_bytes(b"")

    report = build_report([run])
    result = report.runs[0]
    assert not result.run.complete and len(result.run.missing) == 6
    assert result.missing == [
        "trial 1: imp levels 2–3, reinit levels 2–3, random levels 2–3 "
        "(under way or interrupted: imp level 2)"
    ]
    assert all((run / "report" / f"{name}.png").exists() for name in FIGURES)
    page = (run / "report" / "report.md").read_text()
    assert "is incomplete" in page and "18 of 24 results" in page
    levels = pd.read_csv(run / "report" / "aggregate.csv").query("variant == 'imp'").set_index("level").trials
    assert levels.to_dict() == {0: 2, 1: 2, 2: 1, 3: 1}


def test_a_level_finished_after_the_last_summary_is_named_as_such(runs, tmp_path):
    run = tmp_path / "unlisted"
    shutil.copytree(runs[0], run, ignore=shutil.ignore_patterns("report"))
    summary = pd.read_csv(run / "summary.csv")
    summary[~((summary.trial == 1) & (summary.variant == "random") & (summary.level == 3))].to_csv(
        run / "summary.csv", index=False
    )
    (line,) = describe_missing(read_run(run))
    assert line.startswith("trial 1: random level 3 (finished but not in summary.csv: random level 3;")


def test_the_same_run_named_twice_is_reported_once(runs):
    (run,) = load_runs([runs[0], runs[0] / ".." / runs[0].name])
    assert run.label == runs[0].name


# --- the command line -----------------------------------------------------------------------------


def test_cli_prints_the_table_and_findings(runs, tmp_path, capsys):
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "text"), "--levels", "0,3"]) == 0
    out = capsys.readouterr().out
    assert "early-stop test %" in out and "Dense network (level 0)" in out
    assert f"report: {tmp_path / 'text' / 'report.html'}" in out


# --- errors ---------------------------------------------------------------------------------------


def test_a_missing_run_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(StoreError, match="does not exist"):
        build_report([tmp_path / "nowhere"])
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lth: error: run directory") and err.count("\n") == 1


def test_a_directory_without_summary_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match=r"no summary\.csv yet.*lth run"):
        build_report([tmp_path])


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xff\xfe\x00garbage\x00\x81", "damaged"),
        (b"trial,variant,level\n0,imp,0\n", "no column percent_remaining"),
        (
            b"trial,variant,level,percent_remaining,early_stop_iteration,early_stop_val_loss,"
            b"early_stop_test_accuracy,final_test_accuracy,final_train_accuracy\n0,imp,0,100,300,0.2,0.9,0.9,oops\n",
            "line 2: final_train_accuracy is not a number",
        ),
    ],
)
def test_a_damaged_summary_is_named_with_the_fix(runs, tmp_path, content, why):
    run = tmp_path / "damaged"
    run.mkdir()
    shutil.copy(runs[0] / "config.toml", run / "config.toml")
    (run / "summary.csv").write_bytes(content)
    with pytest.raises(StoreError, match=why) as caught:
        build_report([run])
    assert "run the same `lth run` again" in str(caught.value) and "\n" not in str(caught.value)


def test_config_of_a_report_is_the_stored_one(runs):
    stored = tomllib.loads((runs[1] / "config.toml").read_text())
    assert read_run(runs[1]).config.lottery.strategy == stored["lottery"]["strategy"] == "continue"


@pytest.mark.parametrize(
    ("gain", "text"), [(-0.2, "-0.20"), (-0.0025, "-0.003"), (0.0, "+0.00"), (0.5, "+0.50")]
)
def test_a_shortfall_too_small_for_two_decimals_still_shows_its_sign_and_size(gain, text):
    # A mean 0.0025 points below dense fails "≥ dense"; "-0.00 pt" would read as no shortfall.
    assert published._points(gain) == text
