"""The command line as a user meets it: real processes, real MNIST, real SIGKILL."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import kill_inside_level_1, lth

QUICK = ["--set", "training.steps='300it'", "--set", "lottery.levels=2", "--quiet"]


def test_presets_lists_name_description_and_runtime():
    out = lth("presets")
    assert out.returncode == 0
    line = next(row for row in out.stdout.splitlines() if row.startswith("lenet-mnist-quick "))
    assert "LeNet-300-100" in line and "minutes" in line


def test_criteria_lists_name_description_and_whether_it_needs_data():
    out = lth("criteria")
    assert out.returncode == 0, out.stderr
    rows = {row.split()[0]: row for row in out.stdout.splitlines()}
    assert {"magnitude", "random"} <= set(rows)
    assert "smallest weights go first" in rows["magnitude"] and rows["magnitude"].endswith("[weights only]")
    needs = ("[weights only]", "[scores the network on training batches]")
    assert all(row.endswith(needs) for row in rows.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["run", "lenet-mnist", "--set", "pruning.rates.fc=1.5"], "pruning.rates.fc must be in"),
        (["run", "lenet-mnist", "--set", "training.steps='-5it'"], "bad step"),
        (["run", "lenet-mnist", "--set", "training.nesterov=true"], "unknown config key 'training.nesterov'"),
        (["run", "missing.toml"], "config file missing.toml does not exist"),
        (["data", "fetch", "imagenet"], "imagenet"),
        (["report", "/no/such/run"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_a_nonzero_exit(args, message):
    out = lth(*args)
    assert out.returncode == 1
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_missing_data_names_the_fetch_command(tmp_path):
    out = lth(
        "run", "lenet-mnist-quick", *QUICK, "--out", str(tmp_path / "runs"), data_dir=tmp_path / "empty"
    )
    assert out.returncode == 1
    assert "lth data fetch mnist" in out.stderr


def test_an_unwritable_out_directory_is_refused(tmp_path, mnist_root):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = lth("run", "lenet-mnist-quick", *QUICK, "--out", str(blocker / "runs"), data_dir=mnist_root)
    assert out.returncode == 1 and "cannot write the run directory" in out.stderr


def test_a_config_file_runs_like_a_preset(tmp_path, mnist_root):
    import lth as api

    config = api.with_overrides(
        api.load_preset("lenet-mnist-quick"),
        ["training.steps='200it'", "lottery.levels=1", "lottery.variants=['imp']"],
    )
    path = tmp_path / "mine.toml"
    path.write_text(config.to_toml())
    out = lth("run", str(path), "--out", str(tmp_path / "runs"), data_dir=mnist_root)
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1].removeprefix("results: "))
    assert (run_dir / "summary.csv").read_text().count("\n") == 3  # header + levels 0 and 1
    report = lth("report", str(run_dir))
    assert report.returncode == 0 and "imp" in report.stdout


@pytest.mark.parametrize("retrain", ["weights", "lr", "finetune"])
def test_sigkill_in_the_middle_of_a_level_then_rerun_gives_the_same_summary(tmp_path, mnist_root, retrain):
    """Kill -9 while level 1's ticket is training (a checkpoint exists, no result yet), run the
    same command again, and compare with a run that was never interrupted; for each way of
    retraining the ticket (weight rewinding, learning-rate rewinding, fine-tuning)."""
    args = ["run", "lenet-mnist-quick", *QUICK, "--checkpoint-every", "0"]
    args += ["--set", f"lottery.retrain={retrain}"]
    clean = lth(*args, "--out", str(tmp_path / "clean"), data_dir=mnist_root)
    assert clean.returncode == 0, clean.stderr

    env = os.environ | {"LTH_DATA_DIR": str(mnist_root)}
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "lth", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill() -> None:
        process.send_signal(signal.SIGKILL)
        process.wait()

    kill_inside_level_1(out, kill, running=lambda: process.poll() is None)

    resumed = lth(*args, "--out", str(out), data_dir=mnist_root)
    assert resumed.returncode == 0, resumed.stderr
    [clean_summary] = (tmp_path / "clean").glob("*/summary.csv")
    [resumed_summary] = out.glob("*/summary.csv")
    assert resumed_summary.read_text() == clean_summary.read_text()
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"


def test_run_trials_runs_only_the_trials_named(tmp_path):
    """`lth run --trials 1` trains trial 1 alone (a long record is run and committed trial by trial);
    a trial outside the config is one line."""
    sets = ["--set", "training.steps='20it'", "--set", "lottery.levels=0", "--set", "lottery.trials=2"]
    out = lth("run", "lenet-mnist-quick", *sets, "--trials", "1", "--quiet", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    (run_dir,) = tmp_path.iterdir()
    assert sorted(p.name for p in run_dir.glob("trial_*")) == ["trial_1"]
    bad = lth("run", "lenet-mnist-quick", *sets, "--trials", "2", "--quiet", "--out", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stderr.strip() == "lth: error: trials [2] are not all among the config's 0..1"
