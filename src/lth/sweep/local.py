"""The local backend: units run in worker processes on this machine.

Each worker is a spawned process with its own pipe, running one unit at a time. The driver
watches both the pipe and the process: a worker that exits without answering (SIGKILL, the
out-of-memory killer, a crash in native code) is reported as died, so its unit can be retried,
and a fresh worker takes its place. A pipe per worker (not a shared queue) means a worker killed
mid-message can damage nothing but its own pipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from lth.sweep.worker import Outcome, Task, run_unit


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process
    conn: Any  # multiprocessing.connection.Connection
    key: Any = None  # the unit it is running


class LocalBackend:
    name = "local"

    def __init__(self, workers: int, threads: int | None):
        self.capacity = workers
        self.threads = threads
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []

    def task_threads(self) -> int | None:
        return self.threads

    def submit(self, key: Any, task: Task) -> None:
        while self._idle:
            worker = self._idle.pop()
            try:
                worker.conn.send(task)
                break
            except OSError:  # it died while idle: let it go and try the next
                self._bury(worker)
        else:
            worker = self._start()
            worker.conn.send(task)
        worker.key = key
        self._busy.append(worker)

    def wait(self, timeout: float) -> list[tuple[Any, Outcome]]:
        """The units that ended within `timeout` seconds, with how they ended."""
        if not self._busy:
            return []
        watched = [w.conn for w in self._busy] + [w.process.sentinel for w in self._busy]
        ready = set(multiprocessing.connection.wait(watched, timeout))
        ended = []
        for worker in list(self._busy):
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            outcome = self._answer(worker)
            self._busy.remove(worker)
            if outcome is None:
                outcome = self._bury(worker)
            else:
                self._idle.append(worker)
            ended.append((worker.key, outcome))
        return ended

    def close(self) -> None:
        """Stop every worker: idle ones are told to exit; busy ones (an interrupted sweep) are
        terminated, which loses at most their progress since the last checkpoint."""
        for worker in self._idle:
            with contextlib.suppress(OSError):  # it died meanwhile: joined below
                worker.conn.send(None)
        for worker in self._busy:
            worker.process.terminate()
        for worker in self._idle + self._busy:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._idle, self._busy = [], []

    # --- workers ---------------------------------------------------------------------------------

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self.threads), daemon=True, name="lth-sweep-worker"
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    @staticmethod
    def _answer(worker: _Worker) -> Outcome | None:
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except Exception:  # EOF, a cut pipe or half a message: the worker died
            pass
        return None

    @staticmethod
    def _bury(worker: _Worker) -> Outcome:
        worker.process.join(timeout=10)
        if worker.process.is_alive():  # its pipe broke but it lives on: end it
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
        code = worker.process.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return Outcome(error=f"its worker process (pid {worker.process.pid}) {how}", died=True)


def _serve(conn: Any, threads: int | None) -> None:
    """A worker's life: run the units it is sent, one at a time, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    threading.Thread(target=_exit_with, args=(os.getppid(),), daemon=True).start()
    if threads:
        import torch

        torch.set_num_threads(threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if task is None:
            return
        conn.send(run_unit(task))


def _exit_with(driver: int) -> None:
    """End this worker once its driver is gone (killed, say), rather than train on unwatched:
    a sweep run again would otherwise find the same level being trained twice."""
    while os.getppid() == driver:
        time.sleep(1.0)
    os._exit(1)
