"""Sweeps: sweep files expand into runs; units run in local worker processes or Ray tasks; a
worker killed with SIGKILL mid-level is retried and the sweep ends with the summaries of an
undisturbed one; a failing unit is reported without stopping the others; a bad root is refused."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from lth.config import load_preset, with_overrides
from lth.errors import ConfigError, LthError
from lth.sweep import expand, load_sweep, run_sweep, sweep_states
from lth.sweep.worker import Outcome
from tests.helpers import LEVEL_1_CHECKPOINT, alive, kill_inside_level_1, lth, wait_for

# Tiny real work: LeNet-300-100 on MNIST, level 0 and level 1, the ticket only.
TINY = {"training.steps": "100it", "lottery.levels": 1, "lottery.variants": ["imp"]}
# Long enough to kill a worker inside level 1 (checkpoints every 100 with --checkpoint-every 0),
# and for a sweep still to be training when a test interrupts it after its first result: the fused
# engine trains 300 iterations in about a second, and a loaded machine can starve the test's polling.
KILLABLE = {**TINY, "training.steps": "1000it"}


def write_sweep(path: Path, *, fixed: dict, grid: dict | None = None, trials: int = 2) -> Path:
    lines = ['base = "lenet-mnist-quick"', f"trials = {trials}", "", "[set]"]
    lines += [f'"{key}" = {json.dumps(value)}' for key, value in fixed.items()]
    if grid:
        lines += ["", "[grid]", *(f'"{key}" = {json.dumps(values)}' for key, values in grid.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def summaries(root: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted(root.glob("*/summary.csv"))}


def processes(marker: str, parent: int | None = None) -> list[int]:
    """Live processes whose command line contains `marker` (children of `parent` if given)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmdline and (parent is None or ppid == parent):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_root):
    """The killable sweep, undisturbed, two workers writing one run's summary.csv side by side."""
    folder = tmp_path_factory.mktemp("reference")
    sweep = write_sweep(folder / "sweep.toml", fixed=KILLABLE)
    out = lth(
        "sweep",
        str(sweep),
        "--out",
        str(folder / "runs"),
        "--workers",
        "2",
        "--threads-per-worker",
        "1",
        "--quiet",
        data_dir=mnist_root,
    )
    assert out.returncode == 0, out.stderr
    result = summaries(folder / "runs")
    assert len(result) == 1 and next(iter(result.values())).count("\n") == 5  # 2 trials × levels 0, 1
    return result


# --- sweep files --------------------------------------------------------------------------------


def test_a_sweep_file_expands_into_one_run_per_grid_point_in_order(tmp_path):
    path = tmp_path / "fig.toml"
    path.write_text(
        'base = "lenet-mnist-quick"\ntrials = 3\nout = "results"\n'
        '[set]\nlottery.levels = 2\n"pruning.rates" = {fc = 0.5, output = 0.5}\n'
        '[grid]\n"lottery.strategy" = ["reset", "continue"]\nlottery.rewind_step = ["0it", "500it"]\n'
    )
    sweep = load_sweep(path)
    assert [run.label for run in sweep.runs] == [
        "lottery.strategy=reset lottery.rewind_step=0it",
        "lottery.strategy=reset lottery.rewind_step=500it",
        "lottery.strategy=continue lottery.rewind_step=0it",
        "lottery.strategy=continue lottery.rewind_step=500it",
    ]
    base = load_preset("lenet-mnist-quick")
    first = with_overrides(
        base, ["lottery.levels=2", "lottery.trials=3", "pruning.rates={fc = 0.5, output = 0.5}"]
    )
    assert sweep.runs[0].config == first
    assert sweep.runs[0].config.pruning.rates == {"fc": 0.5, "output": 0.5}  # a table value is taken whole
    assert sweep.runs[3].config.lottery.strategy == "continue"
    assert sweep.runs[3].config.lottery.rewind_step == "500it"
    assert sweep.out == Path("results") and sweep.runs[0].path.parent == Path("results")
    assert len({run.path for run in sweep.runs}) == 4
    assert [(u.run.path, u.trial) for u in sweep.units][:3] == [(sweep.runs[0].path, t) for t in range(3)]
    assert load_sweep(path, out=tmp_path / "elsewhere").out == tmp_path / "elsewhere"


def test_a_presets_name_is_the_sweep_of_its_trials_in_the_directory_lth_run_uses(tmp_path):
    from lth.store import run_name

    sweep = load_sweep("lenet-mnist", out=tmp_path)
    [run] = sweep.runs
    assert run.config == load_preset("lenet-mnist") and run.path == tmp_path / run_name(run.config)
    assert [u.trial for u in sweep.units] == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="sweep file lenet-mnist-nope does not exist"):
        load_sweep("lenet-mnist-nope")


def test_several_grids_sweep_their_union_once(tmp_path):
    sweep = expand(
        {
            "base": "lenet-mnist-quick",
            "grid": [{"lottery.rewind_step": ["0it", "500it"]}, {"lottery.rewind_step": ["500it", "1000it"]}],
        }
    )
    assert [run.label for run in sweep.runs] == [
        f"lottery.rewind_step={s}" for s in ("0it", "500it", "1000it")
    ]


def test_a_base_config_file_is_found_beside_the_sweep_file(tmp_path):
    config = with_overrides(load_preset("lenet-mnist-quick"), ["training.lr=0.01"])
    (tmp_path / "mine.toml").write_text(config.to_toml())
    (tmp_path / "sweep.toml").write_text('base = "mine.toml"\n')
    [run] = load_sweep(tmp_path / "sweep.toml").runs
    assert run.config.training.lr == 0.01 and run.label == "(base)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base": "lenet-mnist-quick", "grids": {}}, "unknown key 'grids'"),
        ({"grid": {}}, "give a base config"),
        ({"base": "no-such-preset"}, "unknown preset 'no-such-preset'"),
        (
            {"base": "lenet-mnist-quick", "set": {"training.nesterov": True}},
            "unknown config key 'training.nesterov'",
        ),
        ({"base": "lenet-mnist-quick", "grid": {"training.lr": 0.1}}, "training.lr must be a non-empty list"),
        (
            {"base": "lenet-mnist-quick", "grid": {"lottery.strategy": ["reset", "sideways"]}},
            r"\[grid\] lottery.strategy=sideways: lottery.strategy must be one of",
        ),
        ({"base": "lenet-mnist-quick", "trials": 2, "set": {"lottery.trials": 3}}, "give the trials once"),
        ({"base": "lenet-mnist-quick", "grid": {"lottery.levels": [2, 4]}}, "share the run directory"),
    ],
)
def test_a_bad_sweep_file_is_refused_before_anything_runs(spec, message):
    with pytest.raises(ConfigError, match=message):
        expand(spec)


def test_a_bad_sweep_file_is_one_line_on_stderr(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('base = "lenet-mnist-quick"\n[grid]\n"lottery.strategy" = ["reset", "sideways"]\n')
    for args in (["sweep", str(path)], ["sweep", str(tmp_path / "missing.toml"), "--dry-run"]):
        out = lth(*args)
        assert out.returncode == 1
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


def test_one_trial_of_a_config_runs_alone_and_the_summary_holds_every_stored_trial(tmp_path):
    """The hook a unit uses: `Experiment.run(trials=[t])` touches trial t only."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep's worker runs; tiny work is slow on threads of a busy machine
    try:
        _check_one_trial_alone(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_one_trial_alone(tmp_path):
    from lth.lottery import Experiment, Runtime
    from lth.models import build
    from lth.store import RunStore
    from tests.helpers import tiny_splits

    data = tiny_splits()
    config = with_overrides(
        load_preset("lenet-mnist-quick"),
        ["training.steps='20it'", "training.eval_every='10it'", "lottery.levels=1", "lottery.trials=2"],
    )

    def run(root: Path, trials=None) -> list[dict]:
        def make_model():
            return build("lenet300", data.input_shape, data.num_classes, hidden=(16, 8))

        return Experiment(config, data, make_model, RunStore(root, config), Runtime(progress=False)).run(
            trials
        )

    rows = run(tmp_path / "split", [1])
    assert {row["trial"] for row in rows} == {1}
    [run_dir] = (tmp_path / "split").iterdir()
    assert not (run_dir / "trial_0").exists()
    assert run(tmp_path / "split", [0]) == run(tmp_path / "whole")
    with pytest.raises(ConfigError, match="not all among"):
        run(tmp_path / "split", [2])


# --- pieces: one level's trainings at a time -------------------------------------------------------

SPREAD = {"training.steps": "100it", "lottery.levels": 2}  # the ticket and both controls at levels 1, 2


def test_a_unit_is_cut_into_one_piece_per_training_or_per_level_and_only_what_is_missing(tmp_path):
    from lth.sweep.pieces import pieces, ready

    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=SPREAD, trials=1), out=tmp_path / "runs")
    [unit] = sweep.units
    apart = [(p.level, p.variants) for p in pieces(unit, apart=True)]
    assert apart == [(0, ("imp",))] + [(lv, (v,)) for lv in (1, 2) for v in ("imp", "reinit", "random")]
    together = [(p.level, p.variants) for p in pieces(unit, apart=False)]
    assert together == [(0, ("imp",)), (1, ("imp", "reinit", "random")), (2, ("imp", "reinit", "random"))]
    first, second = pieces(unit, apart=True)[:2]
    assert ready(first) and not ready(second)


def test_a_training_stored_but_not_yet_measured_is_not_done_and_a_rerun_measures_it(
    tmp_path, mnist_root, monkeypatch
):
    """A worker that dies after a training's result.json and before its instability.json leaves a
    unit that is not done: its piece is handed out again, which trains nothing and measures it."""
    from lth import layout
    from lth.sweep import local
    from lth.sweep.pieces import pieces

    monkeypatch.setattr(local, "LocalBackend", InProcess)
    monkeypatch.setenv("LTH_DATA_DIR", str(mnist_root))
    fixed = {**TINY, "lottery.instability": [0, 1]}
    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=fixed, trials=1), out=tmp_path / "runs")
    assert run_sweep(sweep, workers=1, progress_bar=False, echo=lambda line: None).ok
    [unit] = sweep.units
    level_1 = layout.level_dir(unit.run.path, 0, "imp", 1)
    result, measured = (level_1 / layout.RESULT).read_bytes(), (level_1 / layout.INSTABILITY).read_text()
    assert sweep_states(sweep)[0].done and pieces(unit, apart=True) == []

    (level_1 / layout.INSTABILITY).unlink()
    assert not sweep_states(sweep)[0].done
    assert [(p.level, p.variants) for p in pieces(unit, apart=True)] == [(1, ("imp",))]
    InProcess.rounds = []
    assert run_sweep(sweep, workers=1, progress_bar=False, echo=lambda line: None).ok
    assert InProcess.rounds == [[(0, 1, ("imp",))]]
    assert (level_1 / layout.RESULT).read_bytes() == result  # not trained again
    again = json.loads((level_1 / layout.INSTABILITY).read_text())
    assert again.pop("wall_time_s") > 0 and sweep_states(sweep)[0].done
    assert again == {k: v for k, v in json.loads(measured).items() if k != "wall_time_s"}  # same numbers


class InProcess:
    """A local backend that runs the pieces handed to it in this process when the driver waits,
    and records which were handed out side by side."""

    rounds: ClassVar[list[list[tuple[int, int, tuple[str, ...]]]]] = []

    def __init__(self, workers: int, threads: int | None):
        self.capacity, self.busy = workers, []

    def task_threads(self) -> int:
        return 1

    def submit(self, key, task) -> None:
        self.busy.append((key, task))

    def wait(self, timeout: float):
        from lth.sweep.worker import run_unit

        InProcess.rounds.append([(t.trial, t.level, t.variants) for _, t in self.busy])
        ended, self.busy = [(key, run_unit(task)) for key, task in self.busy], []
        return ended

    def close(self) -> None:
        pass


def _spread(tmp_path, mnist_root, monkeypatch, trials: int) -> list[list[tuple[int, int, tuple[str, ...]]]]:
    """Sweep `trials` trials of SPREAD on two in-process workers; check that the summary is `lth
    run`'s to the last digit, and return the rounds of pieces handed out."""
    import torch

    from lth.sweep import local

    monkeypatch.setattr(local, "LocalBackend", InProcess)
    monkeypatch.setenv("LTH_DATA_DIR", str(mnist_root))
    InProcess.rounds = []
    sweep = load_sweep(
        write_sweep(tmp_path / "sweep.toml", fixed=SPREAD, trials=trials), out=tmp_path / "runs"
    )
    threads = torch.get_num_threads()
    try:
        result = run_sweep(sweep, workers=2, progress_bar=False, echo=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    assert result.ok and len(result.done) == trials

    sets = [f"--set={key}={json.dumps(value)}" for key, value in SPREAD.items()]
    run = tmp_path / "run"
    out = lth(
        "run", "lenet-mnist-quick", *sets, f"--set=lottery.trials={trials}", "--quiet", "--out", str(run)
    )
    assert out.returncode == 0, out.stderr
    assert summaries(tmp_path / "runs") == summaries(run)
    return InProcess.rounds


def test_a_sweep_spreads_each_trials_trainings_over_the_workers_and_equals_lth_run(
    tmp_path, mnist_root, monkeypatch
):
    """Three trials on two workers: every round but the last hands out two trainings (21 in 11
    rounds, where a trial per worker takes 14), lowest level first, each once the ticket of the
    level before is stored; the summary is `lth run`'s to the last digit."""
    rounds = _spread(tmp_path, mnist_root, monkeypatch, trials=3)
    assert [len(r) for r in rounds] == [2] * 10 + [1]
    handed = [piece for r in rounds for piece in r]
    assert sorted(handed) == sorted(
        [(t, 0, ("imp",)) for t in range(3)]
        + [(t, lv, (v,)) for t in range(3) for lv in (1, 2) for v in ("imp", "reinit", "random")]
    )
    assert [lv for _, lv, _ in handed] == sorted(lv for _, lv, _ in handed)  # level by level
    assert rounds[1] == [(2, 0, ("imp",)), (0, 1, ("imp",))]


def test_one_trial_on_two_workers_runs_its_ticket_ahead_of_its_controls(tmp_path, mnist_root, monkeypatch):
    """A level waits only for the ticket of the level before, not its controls: one trial's 7
    trainings in 4 rounds (waiting for whole levels: 5), the same summary as `lth run`'s."""
    assert _spread(tmp_path, mnist_root, monkeypatch, trials=1) == [
        [(0, 0, ("imp",))],
        [(0, 1, ("imp",)), (0, 1, ("reinit",))],
        [(0, 1, ("random",)), (0, 2, ("imp",))],
        [(0, 2, ("reinit",)), (0, 2, ("random",))],
    ]


class Idle(InProcess):
    """A backend whose workers answer "done" without storing anything."""

    def wait(self, timeout: float):
        ended, self.busy = [(key, Outcome()) for key, _ in self.busy], []
        return ended


def test_a_level_left_incomplete_fails_its_unit_rather_than_wait_forever(tmp_path, monkeypatch):
    from lth.sweep import local

    monkeypatch.setattr(local, "LocalBackend", Idle)
    monkeypatch.setattr("lth.sweep.run._check_data", lambda sweep, data_dir: None)
    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=SPREAD, trials=2), out=tmp_path / "runs")
    result = run_sweep(sweep, workers=2, progress_bar=False, echo=lambda line: None)
    assert [(u.trial, error) for u, error in result.failed] == [
        (t, "level 0 is incomplete after its trainings ran (a bug in lth)") for t in (0, 1)
    ]


def test_a_sweep_trains_with_the_engine_it_is_given_and_refuses_an_unknown_one(tmp_path, mnist_root):
    from lth.sweep.worker import Task, run_unit

    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=TINY, trials=1), out=tmp_path / "runs")
    with pytest.raises(ConfigError, match="unknown engine 'turbo'; choose one of: auto, fused, sparse"):
        run_sweep(sweep, engine="turbo", progress_bar=False)
    [unit] = sweep.units
    task = Task(unit.run.config, str(sweep.out), 0, 0, ("imp",), data_dir=str(mnist_root), engine="autograd")
    assert run_unit(task).ok
    [result] = sweep.out.glob("*/trial_0/imp/level_00/result.json")
    assert json.loads(result.read_text())["engine"]["trainer"] == "autograd"


def test_a_piece_of_a_level_that_is_not_in_the_config_is_refused(tmp_path):
    from lth.lottery import Experiment, Runtime
    from lth.models import build
    from lth.store import RunStore
    from tests.helpers import tiny_config, tiny_splits

    data, config = tiny_splits(), tiny_config("lottery.levels=1")

    def make_model():
        return build("lenet300", data.input_shape, data.num_classes, hidden=(16, 8))

    experiment = Experiment(config, data, make_model, RunStore(tmp_path, config), Runtime(progress=False))
    with pytest.raises(ConfigError, match="no trial 0, level 2"):
        experiment.run_trainings(0, 2, ["imp"])
    with pytest.raises(ConfigError, match="level 1 trains imp, reinit, random; not path"):
        experiment.run_trainings(0, 1, ["path"])


# --- the local backend ----------------------------------------------------------------------------


def test_a_local_sweep_reports_a_failing_unit_finishes_the_others_and_never_imports_ray(tmp_path, mnist_root):
    """In a fresh process, as `lth sweep` runs: dry run, sweep, status, and a unit run as a worker
    runs it. One run's rewind step is past its training, so its unit fails inside its worker."""
    sweep = write_sweep(
        tmp_path / "sweep.toml", fixed=TINY, grid={"lottery.rewind_step": ["0it", "1000it"]}, trials=1
    )
    runs = tmp_path / "runs"
    script = f"""
import sys
from lth.cli import main
args = [{str(sweep)!r}, "--out", {str(runs)!r}, "--quiet"]
assert main(["sweep", *args, "--dry-run"]) == 0
assert main(["sweep", *args, "--workers", "2"]) == 1
assert main(["sweep", *args, "--status"]) == 0
from lth.sweep import load_sweep
from lth.sweep.worker import Task, run_unit
unit = load_sweep({str(sweep)!r}, out={str(runs)!r}).units[0]
assert run_unit(Task(unit.run.config, {str(runs)!r}, 0, 0, ("imp",))).ok
print("ray imported:", "ray" in sys.modules)
"""
    env = os.environ | {"LTH_DATA_DIR": str(mnist_root)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "ray imported: False" in out.stdout
    [line] = out.stderr.strip().splitlines()  # the failure is one line on stderr
    assert line.startswith("lth: error: 1 of 2 units failed (listed above); fix the cause and run the same")
    dry_run, _, after = out.stdout.partition(
        "2 units: 0 done, 0 started, 0 failed, 2 not started; 0/4 levels\n"
    )
    assert "2 runs, 2 units (run × trial)" in dry_run and "lottery.rewind_step=1000it  0/2" in dry_run
    assert (
        after.count("2 units: 1 done, 0 started, 1 failed, 0 not started; 2/4 levels") == 2
    )  # sweep, status
    assert after.count("must be less than training.steps") == 3  # as it fails, after the sweep, by --status
    assert "lottery.rewind_step=1000it  0/2!" in after
    good, bad = load_sweep(sweep, out=runs).runs
    assert (good.path / "config.toml").exists()
    lines = (good.path / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("trial,seed,variant,level,percent_remaining") and len(lines) == 3
    assert (
        "must be less than training.steps"
        in json.loads((bad.path / "failed-trial_0.json").read_text())["error"]
    )


def test_a_worker_killed_mid_level_is_retried_and_the_sweep_ends_as_if_undisturbed(
    tmp_path, mnist_root, reference
):
    sweep = write_sweep(tmp_path / "sweep.toml", fixed=KILLABLE)
    out = tmp_path / "runs"
    env = os.environ | {"LTH_DATA_DIR": str(mnist_root)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lth",
            "sweep",
            str(sweep),
            "--out",
            str(out),
            "--workers",
            "1",
            "--threads-per-worker",
            "1",
            "--checkpoint-every",
            "0",
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def kill_the_worker() -> None:
        [worker] = processes("multiprocessing.spawn", parent=process.pid)
        os.kill(worker, signal.SIGKILL)

    kill_inside_level_1(out, kill_the_worker, running=lambda: process.poll() is None)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert "was killed by SIGKILL; retrying from its stored progress (attempt 2 of 3)" in stdout
    assert summaries(out) == reference
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("checkpoint.pt"))


def test_a_sweep_interrupted_or_killed_then_run_again_finishes_only_what_is_missing(
    tmp_path, mnist_root, reference
):
    """Ctrl-C stops the driver and its workers; a driver killed outright leaves no worker training
    on; each time, running the same command again continues, and ends as an undisturbed sweep."""
    sweep = write_sweep(tmp_path / "sweep.toml", fixed=KILLABLE)
    out = tmp_path / "runs"
    args = ["sweep", str(sweep), "--out", str(out), "--workers", "1", "--threads-per-worker", "1", "--quiet"]
    env = os.environ | {"LTH_DATA_DIR": str(mnist_root)}

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "lth", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            # Ctrl-C as a terminal delivers it: a suite started in the background (`make test &`)
            # inherits SIGINT ignored, and an ignored signal stays ignored across exec.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    process = start()
    first = wait_for("*/trial_0/imp/level_00/result.json", out, lambda: process.poll() is None)
    workers = processes("multiprocessing.spawn", parent=process.pid)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "run the same command again" in stderr
    assert workers and not any(alive(pid) for pid in workers), "a worker outlived the sweep"
    states = sweep_states(load_sweep(sweep, out=out))  # what --status reads
    # Lowest level first: trial 1's dense level may have begun after trial 0's, never finished.
    assert (states[0].state, states[0].levels_done, states[1].levels_done) == ("started", 1, 0)
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("result.json")}

    process = start()
    second = wait_for("*/trial_1/imp/level_00/result.json", out, lambda: process.poll() is None)
    workers = processes("multiprocessing.spawn", parent=process.pid)
    process.kill()  # SIGKILL the driver alone: its worker notices and stops
    process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not any(alive(pid) for pid in workers), "a worker trained on without its driver"
    stamps |= {second: second.stat().st_mtime_ns}

    again = lth(*args, data_dir=mnist_root)
    assert again.returncode == 0, again.stderr
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # no finished level was redone
    assert first in stamps and summaries(out) == reference


# --- the Ray backend ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_a_ray_sweep_survives_a_killed_task_and_matches_the_local_one(
    tmp_path, mnist_root, reference, local_ray
):
    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=KILLABLE), out=tmp_path / "runs")
    killed = []

    def kill_a_task():
        checkpoint = wait_for(LEVEL_1_CHECKPOINT, tmp_path / "runs")
        for pid in processes("ray::lth_sweep_unit"):
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, (checkpoint.parent / "result.json").exists()))

    killer = threading.Thread(target=kill_a_task, daemon=True)
    killer.start()
    messages = []
    result = run_sweep(
        sweep,
        backend="ray",
        workers=1,
        checkpoint_interval_s=0.0,
        data_dir=mnist_root,
        progress_bar=False,
        echo=messages.append,
    )
    killer.join(timeout=5)
    assert killed and not killed[0][1], "no task was killed inside level 1"
    assert result.ok and len(result.done) == 2
    assert any("its Ray task was lost" in m and "retrying" in m for m in messages), messages
    assert summaries(tmp_path / "runs") == reference
    assert all(s.done for s in sweep_states(sweep))


def test_ray_reports_a_failing_unit_and_finishes_the_others(tmp_path, mnist_root, local_ray):
    sweep = load_sweep(
        write_sweep(
            tmp_path / "sweep.toml", fixed=TINY, grid={"lottery.rewind_step": ["0it", "1000it"]}, trials=1
        ),
        out=tmp_path / "runs",
    )
    result = run_sweep(sweep, backend="ray", data_dir=mnist_root, progress_bar=False, echo=lambda line: None)
    [(unit, error)] = result.failed
    assert unit.run is sweep.runs[1] and "must be less than training.steps" in error
    assert [u.run for u in result.done] == [sweep.runs[0]]


def test_ray_refuses_a_results_root_its_workers_cannot_write(tmp_path, local_ray):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    sweep = load_sweep(write_sweep(tmp_path / "sweep.toml", fixed=TINY), out=blocker / "runs")
    with pytest.raises(LthError, match=r"a Ray worker on .* cannot write the results root .*a-file/runs"):
        run_sweep(sweep, backend="ray", progress_bar=False)


def test_the_ray_backend_without_ray_installed_names_the_extra(tmp_path):
    sweep = write_sweep(tmp_path / "sweep.toml", fixed=TINY)
    script = f"""
import sys
sys.modules["ray"] = None  # as if Ray were not installed
from lth.cli import main
sys.exit(main(["sweep", {str(sweep)!r}, "--backend", "ray", "--out", {str(tmp_path / "runs")!r}]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert (
        out.stderr.strip() == "lth: error: --backend ray needs Ray, an optional extra: pip install 'lth[ray]'"
    )


def test_a_task_no_node_fits_is_refused_on_a_local_instance_and_waited_for_on_a_cluster(local_ray, capsys):
    from lth.sweep.ray_backend import RayBackend, unplaceable

    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert unplaceable(nodes, 8, 1) is None
    assert unplaceable(nodes, 16, 0) == (
        "no node of the Ray cluster that is up now can run a task with 16 CPUs and 0 GPUs "
        "(the largest has 8 CPUs, 1 GPUs)"
    )
    with pytest.raises(LthError, match=r"can run a task with 64 CPUs .*; lower --cpus-per-task"):
        RayBackend._check_resources(64, 0, can_grow=False)
    # An autoscaling cluster adds the node later: a warning, and the sweep goes on.
    RayBackend._check_resources(64, 0, can_grow=True)
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lth: warning: no node of the Ray cluster") and "autoscaling" in line


def test_a_local_sweep_without_its_data_set_stops_before_any_unit_runs(tmp_path):
    sweep = write_sweep(tmp_path / "sweep.toml", fixed=TINY)
    (tmp_path / "empty").mkdir()
    out = lth("sweep", str(sweep), "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "empty"))
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("lth: error: ") and "lth data fetch mnist" in line, line
    assert not list((tmp_path / "runs").glob("*/config.toml"))  # nothing was started
