"""Instability analysis (docs/design.md, "Instability"): the error barrier between two copies of a
network trained with different SGD noise, measured on tiny networks and data."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from torch import nn

from lth import layout
from lth.analysis import instability, rewind
from lth.analysis.instability import ErrorPath, PathSettings, error_path, measure, path_models, train_copy
from lth.config import Config, PruningConfig, TrainingConfig
from lth.data import Split, Splits
from lth.errors import ConfigError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import Mask, PruningPlan
from lth.report import paper
from lth.report.build import analyse, load_runs
from lth.report.contents import Report
from lth.report.findings import Findings
from lth.report.page import outline, to_markdown
from lth.report.stability import Stability, check_claims
from lth.report.stability_figures import builders as stability_figures
from lth.store import FileCheckpoint, GroupCheckpoint, LevelDir, RunStore, read_tensors
from lth.training import evaluate
from tests.helpers import lth, tiny_config, tiny_splits, wait_for

DATA = tiny_splits()
TRAINING = TrainingConfig(steps="40it", eval_every="20it", batch_size=30)


def _make_model() -> nn.Module:
    return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))


def _start() -> tuple[dict[str, torch.Tensor], Mask]:
    """θ0 of a tiny LeNet and a mask keeping about 60% of its weights."""
    model = initialize(_make_model(), seed=0)
    plan = PruningPlan.for_model(model, PruningConfig())
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=2)
    return model.state_dict(), mask


def test_identical_noise_seeds_give_exactly_zero():
    weights, mask = _start()
    path = measure(_make_model, weights, mask, DATA, TRAINING, start=0, seeds=(3, 3))
    assert path.instability == 0.0 and path.instability_train == 0.0
    assert len(set(path.test_error)) == 1  # one network all along the path


def test_different_seeds_give_the_barrier_of_the_path_and_its_ends_are_the_copies():
    weights, mask = _start()
    seeds = (3, instability.noise_seed(3, "imp", 1, 0))
    copies = [train_copy(_make_model, weights, mask, DATA, TRAINING, start=0, seed=s) for s in seeds]
    path = error_path(_make_model, *copies, mask, DATA)
    assert len(path.alpha) == instability.POINTS == 30
    assert path.alpha[0] == 0.0 and path.alpha[-1] == 1.0
    assert path.alpha == pytest.approx([i / 29 for i in range(30)])
    # The ends are the two trained copies, evaluated as themselves.
    for end, weights_ in ((0, copies[0]), (-1, copies[1])):
        model = _make_model()
        model.load_state_dict(weights_)
        assert path.test_error[end] == 1 - evaluate(model, DATA.test.x, DATA.test.y)[1]
    assert copies[0]["hidden.0.weight"].ne(copies[1]["hidden.0.weight"]).any()  # the noise differs
    # The barrier, by hand from the path: finite, at least half the ends' difference.
    by_hand = max(path.test_error) - (path.test_error[0] + path.test_error[-1]) / 2
    assert path.instability == by_hand
    assert 0 <= abs(path.test_error[0] - path.test_error[-1]) / 2 <= path.instability < 1
    assert path.instability_train == max(path.train_error) - (path.train_error[0] + path.train_error[-1]) / 2
    assert ErrorPath.from_dict(path.to_dict()) == path


def test_pruned_weights_stay_exactly_zero_along_the_path():
    weights, mask = _start()
    a, b = (train_copy(_make_model, weights, mask, DATA, TRAINING, start=0, seed=s) for s in (1, 2))
    for _, model in path_models(_make_model, a, b, mask, instability.alphas(30)):
        params = dict(model.named_parameters())
        for name, m in mask.items():
            assert torch.all(params[name][m == 0] == 0), name
            assert torch.any(params[name][m == 1] != 0), name


def _swapped_pair() -> tuple[Splits, dict, dict]:
    """Two 2-2-2 ReLU networks that both classify e0 → 0 and e1 → 1: one the identity, the other
    the same with its two hidden units swapped. At α = 1/2 every weight is 1/2, both logits tie,
    argmax picks class 0 and e1 is wrong: the midpoint's error is 1/2, the ends' 0."""
    x = torch.eye(2)
    y = torch.tensor([0, 1])
    split = Split(x, y)
    data = Splits(name="swap", train=split, val=split, test=split, num_classes=2)
    identity, swap = torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    a = {"0.weight": identity, "2.weight": identity}
    b = {"0.weight": swap, "2.weight": swap}
    return data, a, b


def _two_layer() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))


def test_a_hand_built_pair_gives_the_known_barrier():
    data, a, b = _swapped_pair()
    mask = Mask({"0.weight": torch.ones(2, 2), "2.weight": torch.ones(2, 2)})
    path = error_path(_two_layer, a, b, mask, data, PathSettings(points=3))
    assert path.alpha == [0.0, 0.5, 1.0]
    assert path.test_error == [0.0, 0.5, 0.0] and path.instability == 0.5
    assert path.train_error == [0.0, 0.5, 0.0] and path.instability_train == 0.5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"points": 1}, "lottery.instability_points must be 2 or more"),
        ({"train_examples": 0}, "at least 1 example"),
        ({"batch_norm": "frozen"}, "lottery.instability_bn must be one of interpolated, reestimated"),
    ],
)
def test_bad_path_settings_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        PathSettings(**settings)
    assert "\n" not in str(err.value)


class _Normed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(64, 8)
        self.norm = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.fc(self.flat(x)))))


def test_batch_norm_statistics_are_interpolated_or_reestimated():
    model = initialize(_Normed(), seed=0)
    mask = Mask({"fc.weight": torch.ones(8, 64)})
    a, b = (train_copy(_Normed, model.state_dict(), mask, DATA, TRAINING, start=0, seed=s) for s in (1, 2))
    [(_, mid)] = list(path_models(_Normed, a, b, mask, [0.5]))
    assert torch.allclose(mid.norm.running_mean, (a["norm.running_mean"] + b["norm.running_mean"]) / 2)
    interpolated = error_path(_Normed, a, b, mask, DATA, PathSettings(points=3))
    reestimated = error_path(_Normed, a, b, mask, DATA, PathSettings(points=3, batch_norm="reestimated"))
    assert reestimated.to_dict() != interpolated.to_dict()
    # Re-estimating at an end measures that copy's statistics afresh on training batches: the
    # same again on the same batches.
    again = error_path(_Normed, a, b, mask, DATA, PathSettings(points=3, batch_norm="reestimated"))
    assert again == reestimated


# --- in a lottery run -----------------------------------------------------------------------------


def _lottery(root, *overrides: str, trials: int = 1) -> tuple[Config, RunStore]:
    config = tiny_config("lottery.levels=2", "training.steps='20it'", *overrides, trials=trials)
    store = RunStore(root, config)
    Experiment(config, DATA, _make_model, store, Runtime(progress=False, checkpoint_interval_s=0.0)).run()
    return config, store


def test_a_lottery_run_measures_the_ticket_and_its_controls_at_the_chosen_levels(tmp_path):
    plain_config, plain = _lottery(tmp_path / "plain")
    config, store = _lottery(tmp_path / "measured", "lottery.instability=[0, 2]")
    assert config.hash() == plain_config.hash()  # it adds measurements, so it is not hashed
    # ... and changes none of the run's results.
    assert (store.path / layout.SUMMARY).read_text() == (plain.path / layout.SUMMARY).read_text()
    table = pd.read_csv(store.path / layout.INSTABILITY_CSV)
    assert list(table.columns) == [
        "trial",
        "variant",
        "level",
        "percent_remaining",
        "rewind_iteration",
        "instability",
        "instability_train",
        "endpoint_test_error",
    ]
    assert set(zip(table.variant, table.level, strict=True)) == {
        (v, lv) for v in ("imp", "reinit", "random") for lv in (0, 2)
    }
    assert table.instability.between(0, 1).all() and table.endpoint_test_error.between(0, 1).all()
    for variant in ("imp", "reinit", "random"):
        level = store.level(0, variant, 2)
        record = json.loads((level.path / layout.INSTABILITY).read_text())
        assert record["seeds"][0] == config.lottery.seed  # the level's own training is the first copy
        assert len(record["alpha"]) == 30 and record["settings"]["batch_norm"] == "interpolated"
        final = _make_model()
        final.load_state_dict(level.load_tensors("final"))
        assert record["test_error"][0] == 1 - evaluate(final, DATA.test.x, DATA.test.y)[1]
        assert (level.path / layout.tensors(layout.COPY)).exists()
        assert not (level.path / layout.COPY_CHECKPOINT).exists()
    assert not (store.level(0, "imp", 1).path / layout.INSTABILITY).exists()  # level 1 was not chosen
    # Rerunning measures nothing again.
    before = {p: p.stat().st_mtime_ns for p in store.path.rglob(layout.INSTABILITY)}
    _lottery(tmp_path / "measured", "lottery.instability=[0, 2]")
    assert {p: p.stat().st_mtime_ns for p in store.path.rglob(layout.INSTABILITY)} == before


def test_a_measurement_interrupted_while_its_copy_trains_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    _, clean = _lottery(tmp_path / "clean", "lottery.instability=[1]", "lottery.levels=1")
    saves = []
    original = FileCheckpoint.save

    def save_then_stop(self, state):
        original(self, state)
        if self.path.name == layout.COPY_CHECKPOINT:
            saves.append(self.path)
            if len(saves) == 2:  # part-way through the second measurement's copy
                raise KeyboardInterrupt

    monkeypatch.setattr(FileCheckpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _lottery(tmp_path / "killed", "lottery.instability=[1]", "lottery.levels=1")
    assert saves[-1].exists() and not (saves[-1].parent / layout.INSTABILITY).exists()
    monkeypatch.setattr(FileCheckpoint, "save", original)
    _, resumed = _lottery(tmp_path / "killed", "lottery.instability=[1]", "lottery.levels=1")
    assert (resumed.path / layout.INSTABILITY_CSV).read_text() == (
        clean.path / layout.INSTABILITY_CSV
    ).read_text()
    assert not list(resumed.path.rglob("*checkpoint.pt"))


def test_copies_trained_together_as_replicas_give_the_numbers_of_copies_trained_alone(tmp_path):
    _, alone = _lottery(tmp_path / "alone", "lottery.instability=[2]")
    _, together = _lottery(tmp_path / "together", "lottery.instability=[2]", "lottery.replicas=3")
    # The fused engine's replica groups are bit-exact on a CPU (training/engines.py).
    assert (together.path / layout.INSTABILITY_CSV).read_text() == (
        alone.path / layout.INSTABILITY_CSV
    ).read_text()
    for variant in ("imp", "reinit", "random"):  # the level's three second copies: one group
        assert _group_size(together.level(0, variant, 2).path) == 3
        assert _group_size(alone.level(0, variant, 2).path) == 1
    assert not list(together.path.rglob(f"{layout.COPIES_CHECKPOINT}-*.pt"))


@pytest.mark.parametrize("stop", ["training", "writing"])
def test_a_group_of_copies_interrupted_resumes_as_the_same_group(tmp_path, monkeypatch, stop):
    flags = ("lottery.instability=[1]", "lottery.levels=1", "lottery.replicas=3")
    _, clean = _lottery(tmp_path / "clean", *flags)
    original_save, original_write = GroupCheckpoint.save, LevelDir.save_tensors
    groups = []

    def save_then_stop(self, state):
        original_save(self, state)
        if self.path.name.startswith(layout.COPIES_CHECKPOINT) and stop == "training":
            groups.append(self.path)
            raise KeyboardInterrupt  # after the group's first checkpoint, part-way through training

    def write_one_then_stop(self, name, tensors):
        original_write(self, name, tensors)
        if name == layout.COPY and stop == "writing":
            raise KeyboardInterrupt  # one copy written, the other two only in the group checkpoint

    monkeypatch.setattr(GroupCheckpoint, "save", save_then_stop)
    monkeypatch.setattr(LevelDir, "save_tensors", write_one_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _lottery(tmp_path / "killed", *flags)
    left = list((tmp_path / "killed").rglob(f"{layout.COPIES_CHECKPOINT}-*.pt"))
    assert len(left) == 1 and ("weights" in FileCheckpoint(left[0], 0).load()) == (stop == "writing")
    monkeypatch.setattr(GroupCheckpoint, "save", original_save)
    monkeypatch.setattr(LevelDir, "save_tensors", original_write)
    _, resumed = _lottery(tmp_path / "killed", *flags)
    assert (resumed.path / layout.INSTABILITY_CSV).read_text() == (
        clean.path / layout.INSTABILITY_CSV
    ).read_text()
    assert not list(resumed.path.rglob(f"{layout.COPIES_CHECKPOINT}-*.pt"))


# --- against the rewind iteration (lth instability) -----------------------------------------------


def _experiment(root, *overrides: str) -> Experiment:
    config = tiny_config("lottery.levels=1", "training.steps='20it'", "lottery.variants=['imp']", *overrides)
    runtime = Runtime(progress=False, checkpoint_interval_s=0.0)
    return Experiment(config, DATA, _make_model, RunStore(root, config), runtime)


def test_the_rewind_sweep_starts_from_the_dense_levels_own_theta_k_and_reuses_its_trainings(tmp_path):
    experiment = _experiment(tmp_path, "lottery.rewind_step='10it'", "lottery.instability=[1]")
    experiment.run()
    rows = rewind.sweep(experiment, [0, 10], [0, 1], [0])
    run = experiment.store.path
    # θk, trained again for k iterations, is bit for bit what the dense level captured at k.
    captured = experiment.store.level(0, "imp", 0).load_tensors("rewind")
    again = read_tensors(layout.theta_file(run, 0, 10))
    assert all(torch.equal(captured[k], again[k]) for k in captured)
    table = rewind.read(run)
    assert list(table.columns) == layout.INSTABILITY_COLUMNS
    assert list(zip(table.level, table.rewind_iteration, strict=True)) == [(0, 0), (0, 10), (1, 0), (1, 10)]
    measured = pd.DataFrame(rows).sort_values(["level", "rewind_iteration"])
    assert table.to_dict(orient="records") == measured.to_dict(orient="records")
    # The ticket at the run's own k is the lottery run's level 1: measured there, once, with the
    # numbers lottery.instability stored; the dense network at k = 0 is level 0 itself.
    in_run = pd.read_csv(run / layout.INSTABILITY_CSV).set_index("level")
    assert (
        table.set_index(["level", "rewind_iteration"]).loc[(1, 10)].instability == in_run.loc[1].instability
    )
    assert (experiment.store.level(0, "imp", 0).path / layout.INSTABILITY).exists()
    assert not layout.rewind_point_dir(run, 0, 1, 10).exists()
    assert not layout.rewind_point_dir(run, 0, 0, 0).exists()
    assert (layout.rewind_point_dir(run, 0, 1, 0) / layout.INSTABILITY).exists()


def test_a_sweeps_start_points_at_one_k_train_their_copies_together_with_the_same_numbers(tmp_path):
    alone = _experiment(tmp_path / "alone", "lottery.rewind_step='10it'")
    together = _experiment(tmp_path / "together", "lottery.rewind_step='10it'", "lottery.replicas=4")
    rows = {}
    for name, experiment in (("alone", alone), ("together", together)):
        experiment.run()
        rows[name] = rewind.sweep(experiment, [0, 10], [0, 1], [0])
    assert rows["together"] == rows["alone"]
    run = together.store.path
    # At each k, one start point is a training of the run (the dense level at k = 0, the ticket at
    # its own k = 10), so it lacks only its second copy; with the other point's two, a group of 3.
    for level in (0, 1):
        assert _group_size(together.store.level(0, "imp", level).path) == 3
    for level, k in ((1, 0), (0, 10)):
        assert _group_size(layout.rewind_point_dir(run, 0, level, k)) == 3


def _group_size(folder: Path) -> int:
    """How many copies trained together in the measurement stored in `folder`."""
    return json.loads((folder / layout.INSTABILITY).read_text())["replicas"]


def test_a_later_sweep_keeps_the_rows_of_earlier_ones(tmp_path):
    experiment = _experiment(tmp_path)
    experiment.run()
    rewind.sweep(experiment, [0], [0], [0])
    rewind.sweep(experiment, [5], [0], [0])
    assert list(rewind.read(experiment.store.path).rewind_iteration) == [0, 5]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rewind.check_rewinds([0, 20], 20), "rewind iteration 20 is outside the training"),
        (lambda: rewind.check_rewinds([-1], 20), "rewind iteration -1 is outside the training"),
        (lambda: rewind.check_rewinds([], 20), "needs at least one iteration"),
        (lambda: rewind.check_levels([0, -2]), "levels 0 or more"),
    ],
)
def test_bad_sweep_input_is_a_one_line_error(call, message):
    with pytest.raises(ConfigError, match=message) as err:
        call()
    assert "\n" not in str(err.value)


# --- the command line, on real MNIST ----------------------------------------------------------------

SHORT = ["--set", "training.steps='100it'", "--set", "lottery.levels=0", "--set", "lottery.variants=['imp']"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rewind", "0,ten"], "--rewind: expected numbers separated by commas"),
        (["--rewind", "0", "--levels", "1;2"], "--levels: expected numbers separated by commas"),
        (["--rewind", "0", "--levels", "-1"], "--levels takes levels 0 or more"),
        (["--rewind", "0", "--set", "lottery.instability_points=1"], "lottery.instability_points must be 2"),
    ],
)
def test_bad_instability_options_are_one_line_errors(tmp_path, args, message):
    out = lth("instability", "lenet-mnist-quick", *args, "--out", str(tmp_path / "runs"))
    assert out.returncode == 1 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "runs").exists()


def test_a_rewind_past_the_budget_is_refused_before_anything_is_written(tmp_path, mnist_root):
    runs = tmp_path / "runs"
    out = lth(
        "instability",
        "lenet-mnist-quick",
        *SHORT,
        "--rewind",
        "0,100",
        "--out",
        str(runs),
        data_dir=mnist_root,
    )
    assert out.returncode == 1 and "rewind iteration 100 is outside the training" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not runs.exists()


@pytest.mark.slow
def test_lth_instability_on_mnist_end_to_end(tmp_path, mnist_root):
    """The dense LeNet at k = 0 and 50 of a 100-iteration training, on 5-point paths: the lottery
    run first (its level 0 is the k = 0 point's first copy), then the sweep; run again, it
    measures nothing."""
    args = ["instability", "lenet-mnist-quick", *SHORT, "--rewind", "0,50", "--threads", "1", "--quiet"]
    args += ["--set", "lottery.instability_points=5"]  # a short path: evaluating 30 points costs more
    out = lth(*args, "--out", str(tmp_path), data_dir=mnist_root)
    assert out.returncode == 0, out.stderr
    run = Path(out.stdout.strip().splitlines()[-1].removeprefix("results: "))
    rewinds = run / layout.INSTABILITY_DIR / layout.REWIND_CSV
    table = pd.read_csv(rewinds)
    assert list(zip(table.level, table.rewind_iteration, strict=True)) == [(0, 0), (0, 50)]
    assert table.instability.between(0, 1).all() and (table.endpoint_test_error < 0.5).all()
    assert (run / layout.SUMMARY).read_text().count("\n") == 2  # the lottery run's level 0
    stamp = rewinds.stat().st_mtime_ns
    again = lth(*args, "--out", str(tmp_path), data_dir=mnist_root)
    assert again.returncode == 0 and pd.read_csv(rewinds).equals(table)
    assert (
        run / layout.INSTABILITY_DIR / "trial_0" / "level_00" / "k_50" / layout.INSTABILITY
    ).stat().st_mtime_ns < stamp


# --- the report ---------------------------------------------------------------------------------------


def test_the_report_draws_and_tabulates_instability_and_checks_it_against_the_paper(tmp_path):
    overrides = ["lottery.instability=[0, 1]", "lottery.variants=['imp', 'random']"]
    experiment = _experiment(tmp_path / "runs", *overrides)
    experiment.run()
    rewind.sweep(experiment, [0, 10], [0, 1], [0])
    # What build_report does, but drawing only the instability figures (the others are slow).
    [run] = load_runs([experiment.store.path])
    report = Report(runs=[analyse(run)], out=tmp_path / "report")
    stability = report.runs[0].stability
    figures = stability_figures([(run, stability)])
    assert [name for name, *_ in figures] == ["instability_paths", "instability_pm", "instability_rewind"]
    for _, _, _, draw in figures:
        figure = draw()
        assert figure is not None
        plt.close(figure)
    assert not run.notes  # every path file was found
    page = to_markdown(outline(report), report.out)
    assert "## Stability to SGD noise" in page
    assert "the dense network is stable at initialization" in page  # the config says LeNet on MNIST
    table = report.to_dict()["runs"][0]["stability"]
    assert {(row["variant"], row["level"]) for row in table["levels"]} == {
        ("imp", 0),
        ("imp", 1),
        ("random", 0),
        ("random", 1),
    }
    points = [(row["level"], row["rewind_iteration"]) for row in table["rewinds"]]
    assert points == [(0, 0), (0, 10), (1, 0), (1, 10)]


def _claims(levels: list[tuple[str, int, float, float]], gains: dict[int, float]) -> dict[str, str]:
    """The verdicts of the LeNet-on-MNIST stability claims for measured (variant, level, Pm,
    instability) at k = 0, with each IMP level's accuracy gain over dense (points)."""
    rows = pd.DataFrame(
        [(0, v, lv, pm, 0, value, value, 0.02) for v, lv, pm, value in levels],
        columns=layout.INSTABILITY_COLUMNS,
    )
    [lenet] = [e for e in paper.stability_experiments() if e["match"]["model.name"] == "lenet300"]
    found = Findings(
        dense_accuracy=0.98,
        levels=pd.DataFrame({"level": list(gains), "percent_remaining": 0.0, "gain": list(gains.values())}),
    )
    empty = pd.DataFrame(columns=layout.INSTABILITY_COLUMNS)
    checks = check_claims(Stability(rows, empty, experiment=lenet), found)
    return {kind["kind"]: c.verdict for kind, c in zip(lenet["claim"], checks, strict=True)}


def test_the_papers_stability_claims_hold_fail_or_are_not_reached():
    stable = [("imp", 0, 100.0, 0.004), ("imp", 3, 51.3, 0.006), ("imp", 12, 6.9, 0.008)]
    controls = [
        ("random", 3, 51.3, 0.01),
        ("random", 12, 6.9, 0.06),
        ("reinit", 3, 51.3, 0.012),
        ("reinit", 12, 6.9, 0.03),
    ]
    verdicts = _claims(stable + controls, {0: 0.0, 3: 0.2, 12: 0.1})
    assert verdicts == {"stable_at": "holds", "matching_stable": "holds", "controls_unstable": "holds"}
    # An unstable dense network, and a matching ticket that is unstable.
    verdicts = _claims([("imp", 0, 100.0, 0.03), ("imp", 3, 51.3, 0.025)], {0: 0.0, 3: 0.1})
    assert verdicts["stable_at"] == "does not hold" and verdicts["matching_stable"] == "does not hold"
    # A ticket that no longer matches dense says nothing about matching tickets.
    assert _claims([("imp", 12, 6.9, 0.05)], {0: 0.0, 12: -0.5})["matching_stable"] == "no data"
    # Controls still stable at Pm 6.9%: the paper's 3.5% is not reached; at 3.6% the claim fails.
    assert (
        _claims([("random", 3, 51.3, 0.01), ("random", 12, 6.9, 0.012)], {})["controls_unstable"]
        == "not reached"
    )
    assert (
        _claims([("random", 3, 51.3, 0.01), ("random", 15, 3.6, 0.012)], {})["controls_unstable"]
        == "does not hold"
    )


_KILLABLE = """
import sys
from lth.lottery import Experiment, Runtime
from lth.models import build
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_splits

data = tiny_splits()
config = tiny_config(
    "lottery.levels=0", "training.steps='150it'", "lottery.instability=[0]", "lottery.variants=['imp']"
)
store = RunStore(sys.argv[1], config)
make_model = lambda: build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16))
Experiment(config, data, make_model, store, Runtime(progress=False, checkpoint_interval_s=0.0)).run()
"""


@pytest.mark.slow
def test_sigkill_while_the_copy_trains_then_rerun_gives_the_same_instability(tmp_path):
    """A real SIGKILL, in a process of its own, once the second copy has checkpointed and before
    the measurement is done; run again, it ends with an unbroken run's numbers."""
    root = Path(__file__).resolve().parents[1]

    def start(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _KILLABLE, str(out)], cwd=root)

    assert start(tmp_path / "clean").wait() == 0
    process = start(tmp_path / "killed")
    checkpoint = wait_for(
        f"*/trial_0/imp/level_00/{layout.COPY_CHECKPOINT}",
        tmp_path / "killed",
        lambda: process.poll() is None,
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (checkpoint.parent / layout.INSTABILITY).exists(), (
        "killed too late: the measurement had finished"
    )
    assert start(tmp_path / "killed").wait() == 0
    [clean] = (tmp_path / "clean").glob(f"*/{layout.INSTABILITY_CSV}")
    [resumed] = (tmp_path / "killed").glob(f"*/{layout.INSTABILITY_CSV}")
    assert resumed.read_text() == clean.read_text()
    paths = [
        json.loads(p.parent.joinpath("trial_0/imp/level_00", layout.INSTABILITY).read_text())
        for p in (clean, resumed)
    ]
    assert [{k: v for k, v in p.items() if k != "wall_time_s"} for p in paths] == [
        {k: v for k, v in paths[0].items() if k != "wall_time_s"}
    ] * 2
