"""TensorBoard streams (`lth run --tensorboard DIR`, lottery/tensorboard.py): one per trial,
variant and level, each step once however the run was interrupted, resumed or run again."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lth import cli, layout
from lth.errors import LthError
from lth.lottery import Runtime, tensorboard
from tests.helpers import tiny_config, tiny_run, tiny_splits

DATA = tiny_splits(n_train=300)
TAGS = {"loss/val", "accuracy/val", "loss/test", "accuracy/test", "pm", "lr"}


def _streams(root: Path) -> dict[Path, EventAccumulator]:
    found = {}
    for marker in sorted(root.glob(f"*/trial_*/*/level_*/{tensorboard.COMPLETE}")):
        events = EventAccumulator(str(marker.parent))
        events.Reload()
        found[marker.parent.relative_to(root)] = events
    return found


def _check(root: Path, run: Path) -> dict[Path, EventAccumulator]:
    """Every stored level has a stream whose every tag has each of its steps once, the steps of
    its history.csv (the test set's where it was evaluated)."""
    streams = _streams(root)
    levels = {p.parent.relative_to(run) for p in run.glob(f"trial_*/*/level_*/{layout.RESULT}")}
    assert {p.relative_to(run.name) for p in streams} == levels
    for where, events in streams.items():
        history = pd.read_csv(run / where.relative_to(run.name) / layout.HISTORY)
        assert set(events.Tags()["scalars"]) <= TAGS and {"loss/val", "pm", "lr"} <= set(
            events.Tags()["scalars"]
        )
        for tag in events.Tags()["scalars"]:
            steps = [e.step for e in events.Scalars(tag)]
            column = {"loss": "loss", "accuracy": "accuracy"}.get(tag.split("/")[0])
            expected = (
                history.iteration
                if column is None
                else history.dropna(subset=[f"{tag.split('/')[1]}_{column}"]).iteration
            )
            assert steps == list(expected), (where, tag)
    return streams


def test_streams_hold_each_step_once_after_an_extension_a_cut_off_stream_and_a_rerun(tmp_path):
    logs = tmp_path / "tb"
    config = tiny_config("lottery.levels=1", "training.test_curve=true")
    run = tiny_run(tmp_path / "runs", config, DATA, tensorboard=str(logs))
    assert len(_check(logs, run)) == 4  # dense, and level 1's ticket and its two controls
    # Extended with two more levels (as a resumed run continues): earlier streams are left alone.
    before = sorted(logs.rglob("events.out.tfevents.*"))
    deeper = tiny_config("lottery.levels=3", "training.test_curve=true")
    assert tiny_run(tmp_path / "runs", deeper, DATA, tensorboard=str(logs)) == run
    assert set(before) <= set(logs.rglob("events.out.tfevents.*"))
    streams = _check(logs, run)
    assert len(streams) == 1 + 3 * 3
    # A stream cut off before its marker (the process killed while writing) is written again.
    cut = logs / run.name / "trial_0" / "imp" / "level_02"
    (cut / tensorboard.COMPLETE).unlink()
    assert tiny_run(tmp_path / "runs", deeper, DATA, tensorboard=str(logs)) == run
    assert len(list(cut.glob("events.out.tfevents.*"))) == 1
    # Run again unchanged: nothing is written twice.
    files = sorted(logs.rglob("events.out.tfevents.*"))
    tiny_run(tmp_path / "runs", deeper, DATA, tensorboard=str(logs))
    assert sorted(logs.rglob("events.out.tfevents.*")) == files
    streams = _check(logs, run)
    lr = streams[Path(run.name) / "trial_0" / "imp" / "level_01"].Scalars("lr")
    assert [e.value for e in lr] == pytest.approx([deeper.training.lr] * len(lr))
    pm = streams[Path(run.name) / "trial_0" / "random" / "level_03"].Scalars("pm")
    summary = pd.read_csv(run / layout.SUMMARY)
    expected = summary[(summary.variant == "random") & (summary.level == 3)].percent_remaining.item()
    assert [e.value for e in pm] == pytest.approx([expected] * len(pm))


def test_the_environment_variable_sets_the_default_and_no_flag_means_none(monkeypatch, tmp_path):
    monkeypatch.delenv(tensorboard.ENV, raising=False)
    assert Runtime().tensorboard is None
    monkeypatch.setenv(tensorboard.ENV, str(tmp_path))
    assert Runtime().tensorboard == str(tmp_path)


def test_lth_run_help_names_the_flag_and_the_variable(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--tensorboard DIR" in text and "$LTH_TENSORBOARD" in text


def test_without_the_package_the_run_stops_first_with_the_pip_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(LthError, match="pip install 'lth\\[tensorboard\\]'"):
        Runtime(tensorboard=str(tmp_path))
    out = tmp_path / "runs"
    args = ["run", "lenet-mnist-quick", "--tensorboard", str(tmp_path / "tb"), "--out", str(out)]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "pip install 'lth[tensorboard]'" in err and err.count("\n") == 1
    assert not out.exists()  # refused before a run directory was written


def test_a_sweep_task_carries_the_drivers_directory_to_a_worker_that_lacks_the_variable(
    monkeypatch, tmp_path, mnist_root
):
    # A Ray worker on another node never sees the driver's environment: the task says where.
    from lth.config import load_preset, with_overrides
    from lth.sweep.worker import Task, run_unit

    config = with_overrides(
        load_preset("lenet-mnist-quick"),
        ["training.steps='100it'", "lottery.levels=1", "lottery.variants=['imp']"],
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tensorboard.ENV, "tb")
    tasks = [
        Task(config, str(tmp_path / "runs"), 0, level, ("imp",), data_dir=str(mnist_root), threads=1)
        for level in (0, 1)
    ]
    assert tasks[0].tensorboard == str(tmp_path / "tb")  # resolved where the driver stands
    monkeypatch.delenv(tensorboard.ENV)
    assert all(run_unit(task).ok for task in tasks)
    [run] = (tmp_path / "runs").iterdir()
    assert len(_check(tmp_path / "tb", run)) == 2  # levels 0 and 1
