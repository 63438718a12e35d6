"""The Ray backend: the same units as Ray tasks, on a local Ray instance or an existing cluster.

Imported only for `--backend ray`: Ray is an optional extra (`pip install 'lth[ray]'`).
Tasks write straight into the results root, so that root must be one path that this machine
and every node see (a shared filesystem); `check_root` proves it from inside a task on each node
before any unit runs. Retrying a lost unit is the driver's job (tasks run with max_retries=0),
so both backends retry the same way.
"""

from __future__ import annotations

import logging
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from lth.errors import LthError
from lth.sweep.worker import Outcome, Task, run_unit

try:
    import ray
    import ray.exceptions
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError:  # pragma: no cover - depends on the environment
    ray = None

PROBE_TIMEOUT_S = 180.0


class RayBackend:
    name = "ray"

    def __init__(
        self,
        *,
        address: str | None,
        cpus_per_task: float,
        gpus_per_task: float,
        threads: int | None,
        max_in_flight: int | None,
    ):
        if ray is None:
            raise LthError("--backend ray needs Ray, an optional extra: pip install 'lth[ray]'")
        self._owned = not ray.is_initialized()
        if self._owned:
            try:
                ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = f"at {address}" if address else "on this machine"
                raise LthError(
                    f"cannot connect to a Ray cluster {where} ({str(err).splitlines()[0]}); start one with "
                    "`ray start --head`, or leave out --address for a local instance"
                ) from None
        # A cluster given by --address, or one the caller joined, may autoscale; a local instance
        # started here may not.
        self._check_resources(cpus_per_task, gpus_per_task, can_grow=address is not None or not self._owned)
        self.threads = threads or max(1, int(cpus_per_task))
        self.capacity = max_in_flight or 1_000_000  # Ray queues what the cluster cannot yet place
        self._options = {"num_cpus": cpus_per_task, "num_gpus": gpus_per_task, "max_retries": 0}
        self._remote = ray.remote(lth_sweep_unit)
        self._refs: dict[Any, Any] = {}  # ObjectRef → the unit's key

    def task_threads(self) -> int | None:
        return self.threads

    def check_root(self, root: Path) -> None:
        """From inside a task on every node: the root can be written, and what is written there
        is what this machine sees. Refuses, with the reason, a root that fails either."""
        token = uuid.uuid4().hex[:12]
        probe = ray.remote(lth_sweep_probe)
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        refs = [
            probe.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(str(root), token)
            for node in nodes
        ]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise LthError(
                f"the Ray cluster ran no task within {PROBE_TIMEOUT_S:.0f} s to check the results root "
                f"{root}; is it overloaded, or are its nodes still starting?"
            ) from None
        for host, error, written in answers:
            if error:
                raise LthError(
                    f"a Ray worker on {host} cannot write the results root {root} ({error}); give --out a "
                    "directory that every node can write, on a filesystem this machine and all nodes share"
                )
            path = Path(written)
            if not path.exists():
                raise LthError(
                    f"the results root {root} is not shared: a file a Ray worker on {host} wrote there is "
                    "not visible on this machine; give --out a path on a filesystem this machine and every "
                    "node mount at the same place (NFS, a cluster filesystem)"
                )
            path.unlink(missing_ok=True)

    def submit(self, key: Any, task: Task) -> None:
        self._refs[self._remote.options(**self._options).remote(task)] = key

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        return [(self._refs.pop(ref), _outcome(ref)) for ref in ready]

    def close(self) -> None:
        for ref in self._refs:  # an interrupted sweep: stop its tasks; a re-run resumes them
            ray.cancel(ref, force=True)
        self._refs = {}
        if self._owned:
            ray.shutdown()

    @staticmethod
    def _check_resources(cpus: float, gpus: float, *, can_grow: bool) -> None:
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        why = unplaceable(nodes, cpus, gpus)
        if why is None:
            return
        if not can_grow:  # a local instance cannot add nodes: its units would wait forever
            raise LthError(f"{why}; lower --cpus-per-task or --gpus-per-task")
        # A cluster that lth joined may autoscale: Ray holds the units until a node that fits
        # joins, so say so and go on.
        print(
            f"lth: warning: {why}; the units wait until the cluster adds a node that fits "
            "(an autoscaling cluster does; otherwise stop with Ctrl-C and lower --cpus-per-task "
            "or --gpus-per-task)",
            file=sys.stderr,
        )


def unplaceable(nodes: list[dict[str, float]], cpus: float, gpus: float) -> str | None:
    """Why no node that is up now (given as Ray's resource dicts) can run a task of `cpus` CPUs
    and `gpus` GPUs, or None when one can."""
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return None
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    return (
        f"no node of the Ray cluster that is up now can run a task with {cpus:g} CPUs and {gpus:g} GPUs "
        f"(the largest has {most_cpus:g} CPUs, {most_gpus:g} GPUs)"
    )


def _outcome(ref: Any) -> Outcome:
    try:
        return ray.get(ref)
    except (ray.exceptions.RayTaskError, ray.exceptions.RuntimeEnvSetupError) as err:
        # the task ran and raised (run_unit itself never does), or could never start: not a loss
        return Outcome(error=f"the Ray task failed: {_first_line(err)}", detail=str(err))
    except ray.exceptions.RayError as err:  # worker crashed, node died, out of memory, cancelled
        return Outcome(error=f"its Ray task was lost: {_first_line(err)}", died=True)


def lth_sweep_unit(task: Task) -> Outcome:
    """A unit as a Ray task (its worker shows as `ray::lth_sweep_unit` in ps)."""
    return run_unit(task)


def lth_sweep_probe(root: str, token: str) -> tuple[str, str | None, str]:
    """On one node: (host, why the root cannot be written or None, the file it left there)."""
    host = socket.gethostname()
    path = Path(root) / f".lth-probe-{token}-{uuid.uuid4().hex[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(host)
        if path.read_text() != host:
            return host, "what was written there reads back differently", str(path)
    except OSError as err:
        return host, err.strerror or str(err), str(path)
    return host, None, str(path)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
