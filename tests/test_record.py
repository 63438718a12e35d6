"""Records (`lth record`): a run's finished trials without weights, reported like the run, grown
trial by trial, refused for another config, and checked for consistency, both tiny records made
here and every record committed under docs/reproductions/."""

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch

from lth import layout
from lth.analysis import rewind
from lth.cli import main
from lth.config import Config, load_preset, with_overrides
from lth.errors import StoreError
from lth.lottery import Experiment, Runtime
from lth.models import build
from lth.record import (
    check_record,
    expected_remaining,
    finished_trials,
    planned_trainings,
    pruning_plan,
    write_record,
)
from lth.report import build_report
from lth.report.build import analyse, load_runs
from lth.report.load import describe_missing, read_run, record_line
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_splits

DATA = tiny_splits()
REPRODUCTIONS = Path(__file__).resolve().parents[1] / "docs" / "reproductions"
COMMITTED = sorted(p.parent.name for p in REPRODUCTIONS.glob(f"*/{layout.RECORD}"))


def _run(root: Path, config: Config, trials: list[int]) -> Path:
    """Run `trials` of `config` under `root` (resuming what is stored there); its run directory."""
    experiment = _experiment(root, config)
    with _one_thread():
        experiment.run(trials)
    return experiment.store.path


def _experiment(root: Path, config: Config) -> Experiment:
    def make_model():
        return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))

    return Experiment(config, DATA, make_model, RunStore(root, config), Runtime(progress=False))


@contextmanager
def _one_thread() -> Iterator[None]:
    """A tiny model trains several times faster without thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def half(tmp_path_factory) -> Path:
    """A tiny run of two trials in which only trial 0 has run."""
    return _run(tmp_path_factory.mktemp("half"), tiny_config(trials=2), [0])


@pytest.fixture(scope="module")
def full(half, tmp_path_factory) -> Path:
    """The same run with trial 1 finished too (in a copy, so `half` stays half)."""
    root = tmp_path_factory.mktemp("full")
    shutil.copytree(half, root / half.name)
    return _run(root, tiny_config(trials=2), [1])


@pytest.fixture(scope="module")
def tiny_record(full, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("records") / "tiny"
    write_record(full, out)
    return out


# --- what a record holds ------------------------------------------------------------------------


def test_a_record_holds_results_and_histories_of_finished_trials_and_no_weights(half, tmp_path):
    out = tmp_path / "record"
    record = write_record(half, out)
    assert (record.trials, record.added, record.unfinished) == ([0], [0], [1])
    files = _files(out)
    assert not [name for name in files if name.endswith((".safetensors", ".pt"))]
    assert files[layout.CONFIG] == (half / layout.CONFIG).read_bytes()
    config = tiny_config(trials=2)
    copied = [
        layout.level_dir(Path(), 0, v, lv).as_posix() + f"/{name}"
        for v, lv in planned_trainings(config)
        for name in (layout.RESULT, layout.HISTORY)
    ]
    assert all(files[name] == (half / name).read_bytes() for name in copied)
    assert not any(name.startswith("trial_1") for name in files)
    pd.testing.assert_frame_equal(pd.read_csv(out / layout.SUMMARY), pd.read_csv(half / layout.SUMMARY))
    assert json.loads(files[layout.RECORD])["trials"] == [0]


def test_environment_gathers_each_trainings_engine_and_wall_time(half, tmp_path):
    write_record(half, tmp_path / "record")
    env = json.loads((tmp_path / "record" / layout.ENVIRONMENT).read_text())
    results = [json.loads(path.read_text()) for path in layout.stored_results(half, 0)]
    (engine,) = env["engines"]
    assert engine["trainings"] == len(results) == len(env["trainings"]) == 10
    assert {k: engine[k] for k in results[0]["engine"]} == results[0]["engine"]
    assert engine["signature"] == "torch {} on cpu ({}), one model".format(engine["torch"], engine["cpu"])
    assert env["mixed_engines"] is False and env["mixed_trials"] == {}
    assert env["wall_time_s"]["total"] == pytest.approx(sum(r["wall_time_s"] for r in results))
    assert "instability_wall_time_s" not in env  # the config measures none


def test_environment_says_when_a_trials_trainings_mixed_engines(half, tmp_path):
    out = tmp_path / "record"
    write_record(half, out)
    level = layout.level_dir(out, 0, "imp", 3) / layout.RESULT
    result = json.loads(level.read_text())
    # As if a later level had trained as vmapped replicas, whose numbers are not one model's.
    result["engine"] |= {"max_replicas": 8, "trainer": "vmap replicas", "trainer_exact": False}
    level.write_text(json.dumps(result))
    write_record(half, out, trials=[])  # rewrites environment.json from the record's own files
    env = json.loads((out / layout.ENVIRONMENT).read_text())
    version, cpu = result["engine"]["torch"], result["engine"]["cpu"]
    assert env["mixed_engines"] is True
    assert env["mixed_trials"] == {
        "0": [
            f"torch {version} on cpu ({cpu}), one model",
            f"torch {version} on cpu ({cpu}), vmap replicas engine, groups up to 8",
        ]
    }
    assert [e["trainings"] for e in env["engines"]] == [9, 1]


def test_the_readme_gives_the_command_that_recomputes_each_trial_alone(tiny_record):
    text = (tiny_record / layout.RECORD_README).read_text()
    assert "trials 0, 1 of the config's 2" in text
    config = f"{tiny_record.as_posix()}/{layout.CONFIG}"
    row = f"| 1 | 1 | `lth run {config} --trials 1` | `lth run {config} --set lottery.seed=1 --trials 0` |"
    assert row in text


def test_trial_t_is_trial_0_of_the_config_with_seed_plus_t(full, tmp_path):
    """What the README promises: nothing of a trial depends on its index but the seed."""
    shifted = _run(tmp_path, tiny_config("lottery.seed=1", trials=2), [0])
    ours = pd.read_csv(shifted / layout.SUMMARY)
    theirs = pd.read_csv(full / layout.SUMMARY).query("trial == 1").reset_index(drop=True)
    pd.testing.assert_frame_equal(ours.drop(columns="trial"), theirs.drop(columns="trial"))


# --- reporting a record ---------------------------------------------------------------------------


def test_a_record_reports_as_its_run_and_says_it_is_a_record(full, tiny_record, tmp_path):
    (run,) = load_runs([full])
    on_run = analyse(run)  # the numbers, without drawing the figures a second time
    on_record = build_report([tiny_record], tmp_path / "record")
    columns = [c for c in on_run.aggregate.columns if c not in ("run", "run_dir")]
    pd.testing.assert_frame_equal(on_run.aggregate[columns], on_record.aggregate[columns])
    assert on_run.findings.sentences() == on_record.runs[0].findings.sentences()
    # Layer sparsity without a mask file: counts and sizes from result.json.
    pd.testing.assert_frame_equal(read_run(full).layer_sparsity(), read_run(tiny_record).layer_sparsity())
    said = f"Reading a record (no weights; `lth record`) of run {full.name}: it holds trials 0, 1"
    assert said in on_record.text() and said in (tmp_path / "record" / "report.md").read_text()
    assert record_line(run) is None
    assert on_record.runs[0].run.notes == []  # nothing it looked for was missing


def test_a_partial_record_lists_the_trials_it_does_not_hold(half, tmp_path):
    write_record(half, tmp_path / "record")
    record = read_run(tmp_path / "record")
    assert describe_missing(record) == ["trial 1: not in this record"]
    assert record_line(record).endswith("it holds trial 0 of the config's 2")


# --- growing a record -----------------------------------------------------------------------------


def test_trials_another_run_directory_recorded_are_not_called_unfinished(half, full, tmp_path):
    # As the paper-scale record grows: trial 0 came from one checkout's run directory, trial 1
    # from another's that never held trial 0.
    only_1 = tmp_path / "only-1" / full.name
    shutil.copytree(full, only_1)
    shutil.rmtree(only_1 / "trial_0")
    out = tmp_path / "record"
    write_record(half, out)
    record = write_record(only_1, out)
    assert (record.trials, record.added, record.unfinished) == ([0, 1], [1], [])
    assert check_record(out) == []


def test_a_record_grows_trial_by_trial_and_recording_again_changes_nothing(half, full, tmp_path):
    out = tmp_path / "record"
    write_record(half, out)
    record = write_record(full, out)
    assert (record.trials, record.added, record.unfinished) == ([0, 1], [1], [])
    before = _files(out)
    assert write_record(full, out).added == []
    assert _files(out) == before
    assert before[layout.SUMMARY] == (full / layout.SUMMARY).read_bytes()
    assert check_record(out) == []


def test_a_record_of_another_config_is_refused_with_one_line(half, tmp_path, capsys):
    out = tmp_path / "record"
    write_record(half, out)
    other = tmp_path / "other" / half.name
    shutil.copytree(half, other)
    config = with_overrides(tiny_config(trials=2), ["lottery.seed=5"])
    (other / layout.CONFIG).write_text(config.to_toml())
    with pytest.raises(
        StoreError, match=r"holds config \w+, but .* ran config \w+; record this run into another"
    ):
        write_record(other, out)
    assert main(["record", str(other), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("lth: error: record") and error.count("\n") == 1
    # The same config measuring instability (not hashed: the same trainings) goes elsewhere too,
    # since a record holds every trial's measurements or none.
    measuring = with_overrides(tiny_config(trials=2), ["lottery.instability=[0, 2]"])
    assert measuring.hash() == layout.read_config(out).hash()
    (other / layout.CONFIG).write_text(measuring.to_toml())
    with pytest.raises(
        StoreError,
        match=r"measures instability at no level, but .* measures it at levels \[0, 2\] \(30 points",
    ):
        write_record(other, out)


@pytest.mark.parametrize(
    ("trials", "out", "message"),
    [
        ([1], "record", "trial 1 of .* is not finished; finish it with `lth run CONFIG --trials 1`"),
        ([2], "record", "trial 2 is not among the config's 0..1"),
        (None, ".", "is the run directory itself"),
    ],
)
def test_what_cannot_be_recorded_is_refused(half, tmp_path, trials, out, message):
    with pytest.raises(StoreError, match=message):
        write_record(half, half if out == "." else tmp_path / out, trials=trials)


def test_a_run_directory_is_not_taken_for_a_record(half, full):
    with pytest.raises(StoreError, match="is a run directory, not a record"):
        write_record(half, full)


def test_cli_records_and_checks(half, tmp_path, capsys):
    out = tmp_path / "record"
    assert main(["record", str(half), "--out", str(out), "--trials", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"record {out}: trials 0 (added: 0)" in printed and "not recorded: trials 1" in printed
    assert main(["record", "--check", str(out), str(half)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{out}: consistent", f"{half}: consistent"]
    assert main(["record", str(half)]) == 1
    assert "needs RUN_DIR and --out DIR" in capsys.readouterr().err


# --- the consistency check ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", *COMMITTED])
def test_every_record_is_consistent(name, request):
    """The tiny record made here and every record committed under docs/reproductions/."""
    path = request.getfixturevalue("tiny_record") if name == "tiny" else REPRODUCTIONS / name
    trials = json.loads((path / layout.RECORD).read_text())["trials"]
    assert trials and finished_trials(path, layout.read_config(path)) == trials
    assert check_record(path) == []


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set_summary(out: Path, column: str, value: str) -> None:
    summary = pd.read_csv(out / layout.SUMMARY)
    summary.loc[5, column] = value
    summary.to_csv(out / layout.SUMMARY, index=False)


LEVEL_2 = layout.unit_id(1, "reinit", 2)
EDITS = {
    "a summary cell": (
        lambda out: _set_summary(out, "final_test_accuracy", 0.5),
        "summary.csv line 7: final_test_accuracy is '0.5', its result.json says",
    ),
    "a missing summary row": (
        lambda out: pd.read_csv(out / layout.SUMMARY).iloc[:-1].to_csv(out / layout.SUMMARY, index=False),
        "summary.csv has no row for (1, 'random', 3)",
    ),
    "the budget": (
        lambda out: _edit_json(out / LEVEL_2 / layout.RESULT, lambda r: r.update(iterations=30)),
        f"{LEVEL_2}/result.json: trained 30 iterations, the config's budget is 40",
    ),
    "a layer's count": (
        lambda out: _edit_json(
            out / LEVEL_2 / layout.RESULT, lambda r: r["remaining_per_layer"].update({"output.weight": 1})
        ),
        f"{LEVEL_2}/result.json: surviving weights per layer",
    ),
    "the seed": (
        lambda out: _edit_json(out / LEVEL_2 / layout.RESULT, lambda r: r.update(seed=0)),
        f"{LEVEL_2}/result.json: says (trial, variant, level, seed) = (1, 'reinit', 2, 0)",
    ),
    "a weight file": (
        lambda out: (out / LEVEL_2 / layout.tensors("final")).write_bytes(b""),
        f"{LEVEL_2}/final.safetensors: a record holds no weights or checkpoints",
    ),
    "a missing history": (
        lambda out: (out / LEVEL_2 / layout.HISTORY).unlink(),
        f"{LEVEL_2}/history.csv is missing",
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_the_check_finds_each_kind_of_inconsistency(tiny_record, tmp_path, edit):
    out = tmp_path / "record"
    shutil.copytree(tiny_record, out)
    change, problem = EDITS[edit]
    change(out)
    problems = check_record(out)
    assert any(p.startswith(problem) for p in problems), problems


def test_the_pruning_rule_gives_the_papers_lenet_pm_per_round():
    """Iterative: 20% of fc and 10% of the output layer's remaining weights per round gives the
    paper's Pm (docs/design.md, "The paper in numbers"); one-shot reaches level L at once."""
    config = load_preset("lenet-mnist")
    plan = pruning_plan(config)
    sizes = {"hidden.0.weight": 784 * 300, "hidden.1.weight": 300 * 100, "output.weight": 100 * 10}
    iterative = expected_remaining(config, plan, sizes)
    pm = [100 * sum(c.values()) / sum(sizes.values()) for c in iterative]
    assert [round(pm[level], 1) for level in (3, 7, 9, 15)] == [51.3, 21.1, 13.5, 3.6]
    oneshot = with_overrides(config, ["lottery.schedule='oneshot'"])
    once = expected_remaining(oneshot, plan, sizes)
    assert once[1] == iterative[1]
    assert once[15]["hidden.0.weight"] == 784 * 300 - int((1 - 0.8**15) * 784 * 300 + 0.5)


@pytest.mark.parametrize("overrides", [["lottery.strategy='continue'"], ["lottery.schedule='oneshot'"]])
def test_records_of_the_other_strategy_and_schedule_are_consistent(tmp_path, overrides):
    run = _run(tmp_path / "runs", tiny_config(*overrides, "lottery.levels=2"), [0])
    write_record(run, tmp_path / "record")
    if "continue" in overrides[0]:  # its internal path is recorded too
        assert (layout.level_dir(tmp_path / "record", 0, "path", 1) / layout.RESULT).exists()
    assert check_record(tmp_path / "record") == []


def test_a_record_of_an_instability_run_keeps_its_measurements_and_reports_them(tmp_path):
    """A run that measures instability records each measured level's instability.json and
    rebuilds instability.csv, byte for byte the run's; the report reads them from the record as
    from the run; the check finds an edited cell and a missing measurement; and a trial whose
    measurements are not all made is not finished, so not recorded."""
    config = tiny_config("lottery.levels=2", "training.steps='20it'", "lottery.instability=[0, 2]")
    run = _run(tmp_path / "runs", config, [0])
    out = tmp_path / "record"
    write_record(run, out)
    measured = sorted(p.relative_to(run) for p in run.rglob(layout.INSTABILITY))
    assert len(measured) == 1 + 3  # the dense level; the ticket and both controls at level 2
    assert sorted(p.relative_to(out) for p in out.rglob(layout.INSTABILITY)) == measured
    assert (out / layout.INSTABILITY_CSV).read_bytes() == (run / layout.INSTABILITY_CSV).read_bytes()
    assert check_record(out) == []
    readme = (out / layout.RECORD_README).read_text()
    assert "`instability.json`" in readme
    # The measurements' wall time is counted apart from the trainings', which leave it out.
    measuring = json.loads((out / layout.ENVIRONMENT).read_text())["instability_wall_time_s"]
    walls = [json.loads((run / m).read_text())["wall_time_s"] for m in measured]
    assert measuring["total"] == pytest.approx(sum(walls)) and measuring["total"] > 0
    assert measuring["per_trial"] == {"0": pytest.approx(sum(walls))}
    assert f"and {sum(walls) / 3600:.2f} measuring instability in all" in " ".join(readme.split())
    from_run, from_record = (build_report([p], tmp_path / f"report-{p.name}") for p in (run, out))
    assert from_record.runs[0].stability.levels.equals(from_run.runs[0].stability.levels)

    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    table = pd.read_csv(edited / layout.INSTABILITY_CSV)
    table.loc[1, "instability"] = 0.5
    table.to_csv(edited / layout.INSTABILITY_CSV, index=False)
    (edited / measured[-1]).unlink()
    problems = check_record(edited)
    assert problems == [f"{measured[-1].as_posix()} is missing"]  # files first: the rest reads them
    shutil.copy(out / measured[-1], edited / measured[-1])
    assert check_record(edited) == [
        f"{layout.INSTABILITY_CSV} line 3: instability is '0.5', its instability.json says "
        f"{float(pd.read_csv(out / layout.INSTABILITY_CSV).instability[1])!r}"
    ]

    (run / measured[-1]).unlink()  # as if the run stopped before measuring it
    assert finished_trials(run, config) == []


def test_a_record_keeps_a_rewind_sweep_of_the_trials_it_holds_and_checks_it(tmp_path):
    """`lth instability`'s sweep (instability/rewind.csv and each start point's instability.json,
    measured in a level's directory or its own) is recorded for the held trials only, without its
    θk or copies; the report reads it from the record as from the run; the check finds an edited
    cell and a missing measurement."""
    config = tiny_config("lottery.levels=1", "training.steps='20it'", "lottery.rewind_step='10it'", trials=2)
    experiment = _experiment(tmp_path / "runs", config)
    with _one_thread():
        experiment.run([0, 1])
        rewind.sweep(experiment, [0, 10], [0, 1], [0, 1])
    run, out = experiment.store.path, tmp_path / "record"

    def measured(folder: Path, trial: int) -> list[Path]:
        return sorted(
            p.relative_to(folder) for p in folder.rglob(layout.INSTABILITY) if f"trial_{trial}" in p.parts
        )

    write_record(run, out, trials=[0])
    # At k = 0 the dense network is level 0 itself, at the run's k the ticket is level 1: four
    # points, two of them in level directories, two under instability/.
    assert len(measured(run, 0)) == 4 and measured(out, 0) == measured(run, 0) and measured(out, 1) == []
    in_run = rewind.read(run)
    assert rewind.read(out).equals(in_run[in_run.trial == 0].reset_index(drop=True))
    assert check_record(out) == []
    assert "`instability/rewind.csv`" in (out / layout.RECORD_README).read_text()

    write_record(run, out)  # trial 1 too: the run's table, byte for byte
    table = out / layout.INSTABILITY_DIR / layout.REWIND_CSV
    assert table.read_bytes() == (run / layout.INSTABILITY_DIR / layout.REWIND_CSV).read_bytes()
    from_run, from_record = (build_report([p], tmp_path / f"report-{p.name}") for p in (run, out))
    assert from_record.runs[0].stability.rewinds.equals(from_run.runs[0].stability.rewinds)

    edited = pd.read_csv(table)
    edited.loc[2, "instability"] = 0.5
    edited.to_csv(table, index=False)
    assert check_record(out) == [
        f"{layout.REWIND_CSV} line 4: instability is '0.5', its instability.json says "
        f"{float(in_run.instability[2])!r}"
    ]
    point = layout.rewind_point_dir(out, 1, 1, 0) / layout.INSTABILITY
    point.unlink()
    assert check_record(out) == [f"{point.relative_to(out).as_posix()} is missing"]
