"""What the numbers were measured on: commit, PyTorch, CPU, threads, load, date."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from lth.environment import cpu_model

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.rstrip("\n")  # not strip(): a porcelain status line starts with a space


def describe() -> dict[str, Any]:
    """The machine and code state, for the JSON. `modified` lists uncommitted files: a
    benchmark of a dirty tree measures code that `commit` alone does not identify."""
    status = _git("status", "--porcelain")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "modified": [line[3:] for line in status.splitlines()] if status else [],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),  # "AUTO,STRICT": sums independent of threads
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load: a load above the core count means the timings were contended."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
