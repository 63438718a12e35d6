"""Small data and models for tests that need training but not a real data set; running `lth` as a
user does, in its own process; and waiting for, and killing, such a process part-way."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lth.config import Config, with_overrides
from lth.data import Split, Splits


def tiny_splits(
    n_train: int = 600,
    n_val: int = 200,
    n_test: int = 200,
    seed: int = 0,
    shape: tuple[int, ...] = (1, 8, 8),
    classes: int = 4,
) -> Splits:
    """A learnable toy problem: the class is which quarter of the pixels is brightest."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        y = torch.randint(0, classes, (n,), generator=g)
        x = torch.randn(n, *shape, generator=g)
        flat = x.view(n, -1)
        width = flat.shape[1] // classes
        for c in range(classes):
            flat[y == c, c * width : (c + 1) * width] += 1.5
        return Split(x, y)

    return Splits(
        name="tiny", train=split(n_train), val=split(n_val), test=split(n_test), num_classes=classes
    )


def overfitting_splits() -> Splits:
    """`tiny_splits` with few, partly (30%) mislabelled training examples: a network overfits
    them, so its validation loss turns up after a minimum."""
    data = tiny_splits(n_train=120)
    g = torch.Generator().manual_seed(1)
    noisy = torch.rand(120, generator=g) < 0.3
    data.train.y[noisy] = torch.randint(0, data.num_classes, (int(noisy.sum()),), generator=g)
    return data


class RecordingCheckpoint:
    """A training checkpoint that saves every evaluation into `saved` and has nothing to load."""

    interval_s = 0.0

    def __init__(self) -> None:
        self.saved: list[dict] = []

    def load(self) -> None:
        return None

    def save(self, state: dict) -> None:
        self.saved.append(state)


def tiny_config(*overrides: str, trials: int = 1) -> Config:
    """A LeNet config small enough for `tiny_splits`: 40 iterations per level, 3 levels."""
    base = [
        "training.steps='40it'",
        "training.eval_every='10it'",
        "training.batch_size=30",
        "lottery.levels=3",
        f"lottery.trials={trials}",
    ]
    return with_overrides(Config(), [*base, *overrides])


def tiny_run(
    root: Path, config: Config, data: Splits, hidden: tuple[int, ...] = (32, 16), **runtime: object
) -> Path:
    """A real run of `config` on `data` under `root`, with a small LeNet (`hidden` units): every
    level's masks, weights and results stored, as `lth run` stores them; `runtime`: `Runtime`'s
    options beyond progress=False. Returns its directory."""
    from lth.lottery import Experiment, Runtime
    from lth.models import build
    from lth.store import RunStore

    store = RunStore(root, config)

    def make_model():
        return build("lenet300", data.input_shape, data.num_classes, hidden=hidden)

    Experiment(config, data, make_model, store, Runtime(progress=False, **runtime)).run()
    return store.path


def lth(*args: str, data_dir: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m lth ARGS` in a fresh process, as a user runs it (with `data_dir` as LTH_DATA_DIR)."""
    env = os.environ | ({"LTH_DATA_DIR": str(data_dir)} if data_dir else {})
    return subprocess.run(
        [sys.executable, "-m", "lth", *args], capture_output=True, text=True, env=env, timeout=600, **kwargs
    )


def wait_for(
    pattern: str, root: Path, running: Callable[[], bool] = lambda: True, timeout: float = 300
) -> Path:
    """The first path under `root` matching `pattern`, polled for while `running()` holds (the
    process that should write it has not exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running():
        found = list(root.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared under {root}")


def alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# Level 1 of trial 0's ticket while it trains: a checkpoint is stored, its result.json is not yet.
LEVEL_1_CHECKPOINT = "*/trial_0/imp/level_01/checkpoint.pt"


def kill_inside_level_1(out: Path, kill: Callable[[], object], running: Callable[[], bool]) -> None:
    """Wait (while `running()`) until trial 0's level 1 has checkpointed under the runs root `out`,
    call `kill`, and check that the level had not finished: a kill-and-resume test must interrupt
    a level, not land between two."""
    checkpoint = wait_for(LEVEL_1_CHECKPOINT, out, running)
    kill()
    assert not (checkpoint.parent / "result.json").exists(), "killed too late: level 1 had finished"
