"""A disk that fills up mid-run, on a real small filesystem (a tmpfs, so the test needs root and
is skipped without it): one clear error naming the folder, nothing half-written left to be read
back, and a rerun with space that ends with the numbers of an unbroken run."""

import subprocess

import pytest

from lth.errors import StoreError
from lth.lottery import Experiment, Runtime
from lth.models import build
from lth.store import RunStore
from tests.helpers import tiny_config, tiny_splits

DATA = tiny_splits()
# The whole tiny run takes about 370 KB on a tmpfs (4 KB pages per file): 200 KB fills mid-run.
TOO_SMALL, ENOUGH = "200k", "20m"


def _mount(folder, size: str, *options: str) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([*options, f"size={size}"]), "tmpfs", str(folder)],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        _mount(folder, TOO_SMALL)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {err}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def _run(root) -> str:
    config = tiny_config()
    store = RunStore(root, config)

    def make_model():
        return build("lenet300", DATA.input_shape, DATA.num_classes, hidden=(32, 16))

    # Checkpoints at every evaluation: the disk also fills while a level is under way.
    Experiment(config, DATA, make_model, store, Runtime(progress=False, checkpoint_interval_s=0)).run()
    return (store.path / "summary.csv").read_text()


def test_a_full_disk_stops_cleanly_and_a_rerun_with_space_finishes_as_if_unbroken(small_disk, tmp_path):
    unbroken = _run(tmp_path / "unbroken")
    with pytest.raises(StoreError) as failure:
        _run(small_disk)
    message = str(failure.value)
    assert "\n" not in message and str(small_disk) in message
    assert "No space left on device" in message and "run the same command again" in message
    assert not list(small_disk.rglob("*.tmp"))  # no partial file under any name
    done = list(small_disk.rglob("result.json"))
    assert done and len(done) < 10  # it stopped part-way, after some levels were stored
    _mount(small_disk, ENOUGH, "remount")
    assert _run(small_disk) == unbroken
