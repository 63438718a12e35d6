"""What a result was computed with, and the settings that keep results comparable.

Imported first by `lth/__init__.py`, before anything loads PyTorch, because of
`REPRODUCIBLE_SUMS`: Intel MKL (PyTorch's CPU BLAS) splits a matrix product's sums by thread
count unless its conditional numerical reproducibility mode is strict, so the same run on 1 and
2 threads differed in every row of summary.csv. `MKL_CBWR=AUTO,STRICT` keeps MKL's fastest code
path for the CPU and makes the sums independent of the thread count; measured on 2 cores, a
LeNet and a Conv-2 training gave bit-identical weights at 1 and 2 threads, equal to the 1-thread
numbers without it, at no measurable cost (benchmarks/RESULTS.md). MKL reads the variable once,
at its first call, so it must be set before any matrix product runs in the process; a value the
user set is kept.

Every result.json carries `engine()`; `signature()` is the part of it that can change numbers,
which `lth run` and the report compare to find a trial whose levels came from different engines.
Strict sums do not make the CPU itself irrelevant: MKL and PyTorch's own kernels take the code
path of the processor they run on, and the same trial (same torch build, seed and settings) on an
AMD EPYC and on an Intel Xeon parted at level 0 (early stop at 3,800 and 3,700 iterations; the
record `docs/reproductions/lenet-mnist-oneshot`, trial 3). So the signature names the CPU model.
"""

from __future__ import annotations

import os

REPRODUCIBLE_SUMS = "AUTO,STRICT"
os.environ.setdefault("MKL_CBWR", REPRODUCIBLE_SUMS)

import functools  # noqa: E402  (after the environment variable, on purpose)
import platform  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

# Fused CPU Adam and SGD (`fused=True` in training/loop.py) arrived in PyTorch 2.4.
MIN_TORCH = (2, 4)


def require_torch(version: str) -> None:
    """Refuse a PyTorch older than MIN_TORCH with one line naming the fix."""
    try:
        found = tuple(int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build with an odd version string: let it try
    if found < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise ImportError(
            f"lth needs torch>={need} (fused CPU optimisers), found {version}: pip install 'torch>={need}'"
        )


require_torch(torch.__version__)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.cache
def commit() -> str | None:
    """The git commit of lth's source, when it runs from a checkout (an editable install)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def reproducible_sums() -> bool:
    """Whether MKL's sums are independent of the thread count in this process (see above)."""
    return os.environ.get("MKL_CBWR", "").upper().endswith(",STRICT")


def engine(device: torch.device, max_replicas: int) -> dict[str, Any]:
    """What trained a result: stored in its result.json. `max_replicas` is the process's limit
    on a replica group (1: one model at a time), which decides how a level's trainings group;
    result.json's `replicas` is the size of the group a result actually trained in."""
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu_model(),
        # The vector instructions PyTorch's own CPU kernels were dispatched to (ATEN_CPU_CAPABILITY
        # can lower it on the same processor); recorded, not in the signature (see there).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "max_replicas": max_replicas,
        "torch": torch.__version__,
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
        "lth_commit": commit(),
    }


def signature(engine: dict[str, Any] | None) -> str:
    """The settings of `engine` that change numbers beyond the last digit, as one label:
    the device (a GPU's name; on a CPU its model), the PyTorch build, the thread count unless
    MKL's sums are strict, and an engine whose numbers are not one model's bit for bit (vmapped
    replicas, the sparse engine: training/engines.py). Results stored before engines were
    recorded say "unrecorded". The CPU capability is left out, so that results stored before it
    was recorded do not read as another engine; it changes only where a user lowers it."""
    if not engine:
        return "unrecorded"
    strict = str(engine.get("mkl_cbwr", "")).upper().endswith(",STRICT")
    cpu = engine["device"] == "cpu"
    device = f"cpu ({engine.get('cpu') or 'model unrecorded'})" if cpu else engine["device"]
    sums = "" if strict or not cpu else f", {engine['threads']} threads"
    exact = engine.get("trainer_exact")  # absent before engines were named
    if exact is None:
        trainer = f"replicas up to {engine['max_replicas']}" if engine["max_replicas"] > 1 else "one model"
    elif exact:  # one model's numbers, however computed (training/engines.py)
        trainer = "one model"
    else:
        trainer = f"{engine['trainer']} engine, groups up to {engine['max_replicas']}"
    return f"torch {engine['torch']} on {device}, {trainer}{sums}"


def trial_signatures(trainings: Iterable[tuple[int, dict[str, Any] | None]]) -> dict[int, list[str]]:
    """Each trial's engine signatures, sorted, from (trial, a result's engine) pairs, in trial
    order. A trial with more than one mixes engines: its later levels are not what one engine's
    unbroken run gives to the last digit."""
    by_trial: dict[int, set[str]] = {}
    for trial, engine in trainings:
        by_trial.setdefault(trial, set()).add(signature(engine))
    return {trial: sorted(labels) for trial, labels in sorted(by_trial.items())}
